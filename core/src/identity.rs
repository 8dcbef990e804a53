//! Identities: who a connection is, at three nested levels
//! (instance ⊂ session ⊂ user), and component ids.

use alloc::sync::Arc;
use core::cmp::Ordering;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::str::FromStr;

use uuid::Uuid;

use crate::channel::{Channel, Value};
use crate::error::{ChannelError, Quote};

/// Most bytes in a component id (`Cid`).
pub const MAX_CID_BYTES: usize = 128;

/// A source of random bytes, passed in by the caller: the core never reaches
/// for randomness itself.
pub trait Entropy {
    /// Fills `dest` with random bytes.
    fn fill_bytes(&mut self, dest: &mut [u8]);
}

/// The operating system's CSPRNG, through `getrandom`.
///
/// # Panics
/// If the operating system cannot provide randomness at all, which on the
/// platforms `getrandom` supports does not happen after boot.
#[cfg(feature = "std")]
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

#[cfg(feature = "std")]
impl Entropy for OsEntropy {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        getrandom::fill(dest).expect("the operating system's random number generator failed");
    }
}

/// A deterministic, **not cryptographic** generator (SplitMix64) for
/// simulations and tests that must replay exactly.
#[derive(Debug, Clone)]
pub struct SeededEntropy {
    state: u64,
}

impl SeededEntropy {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Entropy for SeededEntropy {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Why an identity or component id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not a hyphenated UUIDv4.
    #[error(
        "{kind} must be a UUIDv4 in hyphenated form like \"0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6b\"; got {got:?}"
    )]
    NotUuidV4 {
        /// Which id.
        kind: &'static str,
        /// The input, quoted.
        got: Quote,
    },
    /// A component id that is empty or too long.
    #[error("component id must have 1 to {max} bytes; got {len}")]
    CidLength {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A channel that is not `{:instance, id}`, `{:session, id}` or `{:user, id}`.
    #[error(
        "identity must be {{:instance, \"<uuid>\"}}, {{:session, \"<uuid>\"}} or {{:user, <atom | integer | string>}}; got {got}"
    )]
    NotIdentity {
        /// The channel, quoted.
        got: Quote,
    },
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// Mints a fresh random id (UUIDv4: 122 random bits).
            pub fn mint(entropy: &mut impl Entropy) -> Self {
                let mut bytes = [0u8; 16];
                entropy.fill_bytes(&mut bytes);
                Self(uuid::Builder::from_random_bytes(bytes).into_uuid())
            }

            /// Parses the hyphenated UUIDv4 form (either case).
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let err = || IdError::NotUuidV4 { kind: $kind, got: Quote::from_fmt(format_args!("{text}")) };
                if text.len() != 36 {
                    return Err(err());
                }
                let uuid = Uuid::try_parse(text).map_err(|_| err())?;
                if uuid.get_version_num() != 4 || uuid.get_variant() != uuid::Variant::RFC4122 {
                    return Err(err());
                }
                Ok(Self(uuid))
            }

            /// The 16 raw bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// Rebuilds an id from raw bytes (no version check: for storage
            /// formats that only ever held minted ids).
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.hyphenated())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// One browser tab or JS context: stable across reconnects and in-page
    /// navigation, new on reload or a new tab.
    ///
    /// ```
    /// use tidings_core::{InstanceId, SeededEntropy};
    /// let id = InstanceId::mint(&mut SeededEntropy::new(1));
    /// assert_eq!(InstanceId::parse(&id.to_string()).unwrap(), id);
    /// assert!(InstanceId::parse("not-a-uuid").is_err());
    /// ```
    InstanceId,
    "instance_id"
);

uuid_id!(
    /// A browser session, kept in a signed cookie; spans the session's tabs.
    SessionId,
    "session_id"
);

uuid_id!(
    /// A single-use ticket from a handshake to the stream it opens.
    HandshakeId,
    "handshake_id"
);

/// A user id: an atom, integer or string. Matching is exact:
/// `UserId::int(1) != UserId::str("1")`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UserId(Value);

impl UserId {
    /// An integer user id.
    pub fn int(id: i64) -> Self {
        Self(Value::Int(id))
    }

    /// A string user id.
    pub fn str(id: &str) -> Self {
        Self(Value::str(id))
    }

    /// An atom user id.
    pub fn atom(name: &str) -> Result<Self, ChannelError> {
        Value::atom(name).map(Self)
    }

    /// The id as a channel value.
    pub fn as_value(&self) -> &Value {
        &self.0
    }
}

impl From<Value> for UserId {
    fn from(v: Value) -> Self {
        Self(v)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

/// One identity level, used to address connections (`subscribe`,
/// `unsubscribe`) and to exclude them from a broadcast.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Identity {
    /// One tab.
    Instance(InstanceId),
    /// Every tab of a session.
    Session(SessionId),
    /// Every tab whose connection is logged in as this user.
    User(UserId),
}

impl Identity {
    /// The identity channel by convention: `{:instance, "<uuid>"}`,
    /// `{:session, "<uuid>"}` or `{:user, <id>}`.
    pub fn to_channel(&self) -> Channel {
        let (tag, value) = match self {
            Identity::Instance(i) => ("instance", Value::str(&alloc::format!("{i}"))),
            Identity::Session(s) => ("session", Value::str(&alloc::format!("{s}"))),
            Identity::User(u) => ("user", u.0.clone()),
        };
        Channel::tuple(tag, [value]).expect("identity channels are valid")
    }

    /// Reads an identity from its channel form.
    ///
    /// ```
    /// use tidings_core::{Channel, Identity, UserId};
    /// let ch = Channel::parse("{:user, 7}").unwrap();
    /// assert_eq!(Identity::from_channel(&ch).unwrap(), Identity::User(UserId::int(7)));
    /// ```
    pub fn from_channel(ch: &Channel) -> Result<Self, IdError> {
        let err = || IdError::NotIdentity {
            got: Quote::from_fmt(format_args!("{ch}")),
        };
        let [value] = ch.values() else {
            return Err(err());
        };
        match (ch.tag().as_str(), value) {
            ("instance", Value::Str(s)) => InstanceId::parse(s).map(Identity::Instance),
            ("session", Value::Str(s)) => SessionId::parse(s).map(Identity::Session),
            ("user", v) => Ok(Identity::User(UserId(v.clone()))),
            _ => Err(err()),
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Peer {
    /// The tab.
    pub instance: InstanceId,
    /// The session the tab belongs to.
    pub session: SessionId,
    /// The logged-in user, if any.
    pub user: Option<UserId>,
}

impl Peer {
    /// Whether any entry of `except` names this peer, matching exact values.
    /// An anonymous peer is never excluded by a user entry.
    ///
    /// ```
    /// use tidings_core::{Identity, InstanceId, Peer, SeededEntropy, SessionId, UserId};
    /// let mut e = SeededEntropy::new(7);
    /// let peer = Peer { instance: InstanceId::mint(&mut e), session: SessionId::mint(&mut e), user: Some(UserId::int(1)) };
    /// assert!(peer.is_excluded_by(&[Identity::User(UserId::int(1))]));
    /// assert!(!peer.is_excluded_by(&[Identity::User(UserId::str("1"))]));
    /// ```
    pub fn is_excluded_by(&self, except: &[Identity]) -> bool {
        except.iter().any(|id| match id {
            Identity::Instance(i) => *i == self.instance,
            Identity::Session(s) => *s == self.session,
            Identity::User(u) => self.user.as_ref() == Some(u),
        })
    }
}

/// A component id: which component on the page a binding belongs to.
/// `"page"` and `"layout"` are reserved for the page and its layout.
///
/// Cheap to clone (static or reference-counted).
#[derive(Clone)]
pub struct Cid(CidRepr);

#[derive(Clone)]
enum CidRepr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Cid {
    /// The page's own cid.
    pub const PAGE: Cid = Cid(CidRepr::Static("page"));
    /// The layout's cid.
    pub const LAYOUT: Cid = Cid(CidRepr::Static("layout"));

    /// Checks the length (1..=[`MAX_CID_BYTES`]) and makes the cid.
    pub fn new(id: &str) -> Result<Self, IdError> {
        if id.is_empty() || id.len() > MAX_CID_BYTES {
            return Err(IdError::CidLength {
                len: id.len(),
                max: MAX_CID_BYTES,
            });
        }
        Ok(match id {
            "page" => Cid::PAGE,
            "layout" => Cid::LAYOUT,
            _ => Cid(CidRepr::Shared(Arc::from(id))),
        })
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            CidRepr::Static(s) => s,
            CidRepr::Shared(s) => s,
        }
    }
}

impl PartialEq for Cid {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Cid {}

impl Hash for Cid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Cid {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cid {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({:?})", self.as_str())
    }
}

impl serde::Serialize for Cid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Cid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
        Cid::new(&s).map_err(serde::de::Error::custom)
    }
}
