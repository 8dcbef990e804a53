//! The session cookie: the session id and the logged-in user, signed with
//! HMAC-SHA256 so a client can read but never forge it.
//!
//! Value: `base64url(json) "." base64url(mac)`, where json is
//! `{"s": "<session uuid>", "u": <user id or null>}`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tidings_core::{Entropy, SessionId, UserId};

/// The cookie's name.
pub const COOKIE_NAME: &str = "tidings_session";

/// Most bytes of a session cookie value that are even looked at.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// Who a request is, read from its cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session.
    #[serde(rename = "s")]
    pub id: SessionId,
    /// The logged-in user.
    #[serde(rename = "u")]
    pub user: Option<UserId>,
}

/// Signs and reads session cookies.
#[derive(Clone)]
pub struct SessionKeys {
    keyed: Hmac<Sha256>,
}

impl SessionKeys {
    /// Keys from a server secret (use a different one than for receipts).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            keyed: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// A fresh anonymous session.
    pub fn mint(&self, entropy: &mut impl Entropy) -> Session {
        Session {
            id: SessionId::mint(entropy),
            user: None,
        }
    }

    /// The cookie value for `session`.
    pub fn seal(&self, session: &Session) -> String {
        let json = serde_json::to_vec(session).expect("a session always serializes");
        let mut mac = self.keyed.clone();
        mac.update(&json);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The session in a cookie value, if it is one we signed.
    pub fn open(&self, value: &str) -> Option<Session> {
        if value.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let (json, tag) = value.split_once('.')?;
        let json = URL_SAFE_NO_PAD.decode(json).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.keyed.clone();
        mac.update(&json);
        mac.verify_slice(&tag).ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// A `Set-Cookie` header value for `session` (HttpOnly, SameSite=Lax).
    pub fn set_cookie(&self, session: &Session) -> String {
        format!(
            "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Lax",
            self.seal(session)
        )
    }

    /// The session in a `Cookie` request header, if any valid one is there.
    pub fn from_cookie_header(&self, header: &str) -> Option<Session> {
        header
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| *k == COOKIE_NAME)
            .find_map(|(_, v)| self.open(v))
    }
}

#[cfg(test)]
mod tests {
    use tidings_core::SeededEntropy;

    use super::*;

    #[test]
    fn sealed_sessions_open_and_forgeries_do_not() {
        let keys = SessionKeys::new(b"k");
        let mut s = keys.mint(&mut SeededEntropy::new(1));
        s.user = Some(UserId::str("alice"));
        let v = keys.seal(&s);
        assert_eq!(keys.open(&v), Some(s.clone()));
        assert_eq!(SessionKeys::new(b"other").open(&v), None);
        let (json, tag) = v.split_once('.').unwrap();
        let forged_json =
            URL_SAFE_NO_PAD.encode(br#"{"s":"0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6b","u":"admin"}"#);
        assert_eq!(keys.open(&format!("{forged_json}.{tag}")), None);
        assert_eq!(keys.open(json), None);
        assert_eq!(keys.open(""), None);
        let header = format!("a=b; {COOKIE_NAME}=junk; {COOKIE_NAME}={v}");
        assert_eq!(keys.from_cookie_header(&header), Some(s));
    }
}
