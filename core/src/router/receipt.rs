//! Signed subscription receipts: one token per binding, held by the client,
//! so that a reconnect needs no server-side state.
//!
//! A token is `base64url(payload ‖ HMAC-SHA256(secret, payload))`, where the
//! payload is postcard over [`Wire`]: a version byte, the instance, the
//! authorizing user, the channel's topic bytes, the cid and the creation time.

use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::types::Millis;
use crate::identity::{Cid, InstanceId, UserId};
use crate::{Channel, Value};

/// Most bytes in one receipt token; longer ones are rejected unread.
pub const MAX_RECEIPT_TOKEN_BYTES: usize = 32 * 1024;

const VERSION: u8 = 1;
const MAC_LEN: usize = 32;

/// A verified receipt's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The instance it was issued to.
    pub instance: InstanceId,
    /// The user that authorized the binding (`None`: anonymous).
    pub user: Option<UserId>,
    /// The binding's channel.
    pub channel: Channel,
    /// The binding's component.
    pub cid: Cid,
    /// When it was signed.
    pub created_at: Millis,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not a token this server signed (bad encoding, bad signature, bad contents).
    #[error("receipt is invalid: not signed by this server or malformed")]
    Invalid,
    /// Signed, but older than the maximum age.
    #[error("receipt has expired")]
    Expired,
}

#[derive(Serialize, Deserialize)]
enum UserWire<'a> {
    Atom(&'a str),
    Int(i64),
    Str(&'a str),
}

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    version: u8,
    instance: [u8; 16],
    #[serde(borrow)]
    user: Option<UserWire<'a>>,
    topic: &'a [u8],
    cid: &'a str,
    created_at: u64,
}

/// Signs and verifies receipts with one secret.
#[derive(Clone)]
pub(crate) struct Signer {
    keyed: Hmac<Sha256>,
}

impl Signer {
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self {
            keyed: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    pub(crate) fn sign(
        &self,
        instance: InstanceId,
        user: Option<&UserId>,
        channel: &Channel,
        cid: &Cid,
        now: Millis,
    ) -> String {
        super::table::with_topic(channel, |topic| {
            let wire = Wire {
                version: VERSION,
                instance: *instance.as_bytes(),
                user: user.map(|u| match u.as_value() {
                    Value::Atom(a) => UserWire::Atom(a.as_str()),
                    Value::Int(i) => UserWire::Int(*i),
                    Value::Str(s) => UserWire::Str(s),
                }),
                topic,
                cid: cid.as_str(),
                created_at: now,
            };
            // Small receipts are built on the stack; large ones on the heap.
            let mut stack = [0u8; 512];
            let (room, _) = stack.split_at_mut(512 - MAC_LEN);
            let mut heap = Vec::new();
            let len = if let Ok(p) = postcard::to_slice(&wire, room) {
                p.len()
            } else {
                heap = postcard::to_allocvec(&wire).expect("serializing into a Vec cannot fail");
                heap.len()
            };
            let buf: &mut [u8] = if heap.is_empty() {
                &mut stack
            } else {
                heap.resize(len + MAC_LEN, 0);
                &mut heap
            };
            let mut mac = self.keyed.clone();
            mac.update(&buf[..len]);
            buf[len..len + MAC_LEN].copy_from_slice(&mac.finalize().into_bytes());
            let mut token = String::with_capacity((len + MAC_LEN).div_ceil(3) * 4);
            URL_SAFE_NO_PAD.encode_string(&buf[..len + MAC_LEN], &mut token);
            token
        })
    }

    pub(crate) fn verify(
        &self,
        token: &str,
        now: Millis,
        max_age: Millis,
    ) -> Result<Receipt, ReceiptError> {
        if token.len() > MAX_RECEIPT_TOKEN_BYTES {
            return Err(ReceiptError::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| ReceiptError::Invalid)?;
        if bytes.len() < MAC_LEN {
            return Err(ReceiptError::Invalid);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let mut mac = self.keyed.clone();
        mac.update(payload);
        mac.verify_slice(tag).map_err(|_| ReceiptError::Invalid)?;
        let wire: Wire<'_> = postcard::from_bytes(payload).map_err(|_| ReceiptError::Invalid)?;
        if wire.version != VERSION {
            return Err(ReceiptError::Invalid);
        }
        let user = match wire.user {
            None => None,
            Some(UserWire::Atom(a)) => Some(UserId::atom(a).map_err(|_| ReceiptError::Invalid)?),
            Some(UserWire::Int(i)) => Some(UserId::int(i)),
            Some(UserWire::Str(s)) => Some(UserId::str(s)),
        };
        let receipt = Receipt {
            instance: InstanceId::from_bytes(wire.instance),
            user,
            channel: Channel::from_topic(wire.topic).map_err(|_| ReceiptError::Invalid)?,
            cid: Cid::new(wire.cid).map_err(|_| ReceiptError::Invalid)?,
            created_at: wire.created_at,
        };
        if now.saturating_sub(receipt.created_at) > max_age {
            return Err(ReceiptError::Expired);
        }
        Ok(receipt)
    }
}
