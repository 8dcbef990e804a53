//! The values that flow in and out of the router: connection handles,
//! pre-encoded payloads, broadcasts, recipients, receipts and outputs.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use crate::identity::{Cid, SessionId, UserId};
use crate::{Channel, Topic};

/// Time in milliseconds on the caller's clock (any epoch, monotonic).
pub type Millis = u64;

/// Most bytes in an action name.
pub const MAX_ACTION_BYTES: usize = 128;

/// A live stream of one instance, minted by [`Router::attach`](super::Router::attach).
///
/// The low 32 bits index the router's instance table; the high bits make
/// every handle unique, so a stale handle never addresses a newer stream.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The handle as a number (unique for the router's lifetime).
    pub fn get(self) -> u64 {
        self.0
    }

    pub(crate) fn slot(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }
}

/// Pre-encoded broadcast params (e.g. JSON bytes). The core never reads
/// them; every delivery of a broadcast shares this one allocation.
///
/// A payload is text (JSON, the default) or opaque binary; the flag is for
/// transports, which drop a binary payload where their wire cannot carry it
/// (SSE pages, Phoenix V1 sockets) and send it as bytes where it can.
///
/// ```
/// use tidings_core::router::Payload;
/// let json = Payload::new(&br#"{"a":1}"#[..]);
/// let bin = Payload::binary(&[0u8, 159, 146][..]);
/// assert!(!json.is_binary() && bin.is_binary());
/// assert_eq!(bin.as_bytes(), &[0, 159, 146]);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Payload {
    bytes: Arc<[u8]>,
    binary: bool,
}

impl Payload {
    /// Wraps encoded bytes (JSON text, as the transports expect).
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        Self {
            bytes: bytes.into(),
            binary: false,
        }
    }

    /// Wraps opaque bytes, relayed only by transports that carry binary.
    pub fn binary(bytes: impl Into<Arc<[u8]>>) -> Self {
        Self {
            bytes: bytes.into(),
            binary: true,
        }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the payload is opaque binary rather than JSON text.
    pub fn is_binary(&self) -> bool {
        self.binary
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(&self.bytes) {
            Ok(s) if !self.binary => write!(f, "Payload({s})"),
            _ => write!(f, "Payload({} bytes)", self.bytes.len()),
        }
    }
}

/// An action name (1..=[`MAX_ACTION_BYTES`] bytes), cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action(Arc<str>);

impl Action {
    /// Checks the length and makes the name.
    pub fn new(name: &str) -> Result<Self, super::RouterError> {
        if name.is_empty() || name.len() > MAX_ACTION_BYTES {
            return Err(super::RouterError::ActionName {
                len: name.len(),
                max: MAX_ACTION_BYTES,
            });
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// One published broadcast, shared by all of its deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// Where it was published.
    pub channel: Channel,
    /// The action every recipient runs.
    pub action: Action,
    /// The action's params, pre-encoded.
    pub params: Payload,
}

/// The component ids of one instance bound to one channel, sorted.
/// Cheap to clone: one cid inline, more behind a reference count.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cids(CidsRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum CidsRepr {
    One(Cid),
    Many(Arc<[Cid]>),
}

impl Cids {
    pub(crate) fn one(cid: Cid) -> Self {
        Self(CidsRepr::One(cid))
    }

    /// The cids, sorted by their text.
    pub fn as_slice(&self) -> &[Cid] {
        match &self.0 {
            CidsRepr::One(c) => core::slice::from_ref(c),
            CidsRepr::Many(m) => m,
        }
    }

    /// How many cids.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Never true for a `Cids` the router hands out.
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Whether `cid` is among them.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.as_slice().binary_search(cid).is_ok()
    }

    /// Adds `cid`; false when it was already there.
    pub(crate) fn insert(&mut self, cid: Cid) -> bool {
        let Err(at) = self.as_slice().binary_search(&cid) else {
            return false;
        };
        let mut v: Vec<Cid> = self.as_slice().to_vec();
        v.insert(at, cid);
        self.0 = CidsRepr::Many(v.into());
        true
    }

    /// Removes `cid`.
    pub(crate) fn without(&self, cid: &Cid) -> Removal {
        let Ok(at) = self.as_slice().binary_search(cid) else {
            return Removal::NotThere;
        };
        let s = self.as_slice();
        match s.len() {
            1 => Removal::Emptied,
            2 => Removal::Rest(Cids::one(s[1 - at].clone())),
            _ => {
                let mut v = s.to_vec();
                v.remove(at);
                Removal::Rest(Cids(CidsRepr::Many(v.into())))
            }
        }
    }
}

/// The result of removing a cid from a [`Cids`].
pub(crate) enum Removal {
    NotThere,
    Emptied,
    Rest(Cids),
}

impl fmt::Debug for Cids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.as_slice().iter().map(Cid::as_str))
            .finish()
    }
}

/// One instance that must receive a broadcast, with all its bound cids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Its stream.
    pub conn: ConnId,
    /// Its cids bound to the broadcast's channel; the client runs the action on each.
    pub cids: Cids,
}

/// A binding's key: a channel and the component that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingKey {
    /// The channel.
    pub channel: Channel,
    /// The component.
    pub cid: Cid,
}

/// A signed receipt for one binding, as handed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedReceipt {
    /// The channel.
    pub channel: Channel,
    /// The component.
    pub cid: Cid,
    /// The opaque signed token the client sends back at its next handshake.
    pub token: alloc::string::String,
}

/// The action a command's originator runs for one of its own broadcasts,
/// once per bound cid, after the command's own next action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfEcho {
    /// The action.
    pub action: Action,
    /// Its params.
    pub params: Payload,
    /// The originator's component that runs it.
    pub cid: Cid,
}

/// Why a stream is closed by the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A newer stream for the same instance took over.
    Superseded,
}

/// What the router asks its driver to do. Drain with
/// [`Router::poll_output`](super::Router::poll_output) after every input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Deliver `broadcast` to each recipient: one frame per recipient.
    Fanout {
        /// What to deliver (shared by every recipient).
        broadcast: Arc<Broadcast>,
        /// Who gets it.
        recipients: Vec<Recipient>,
    },
    /// Deliver a presence change on `channel` to each recipient (R15).
    PresenceDiff {
        /// The channel.
        channel: Channel,
        /// What changed (shared by every recipient).
        diff: Arc<crate::presence::Diff>,
        /// Every stream bound to the channel, the tracker included.
        recipients: Vec<ConnId>,
    },
    /// Push new receipts to a stream (`add_sub_receipts`).
    AddReceipts {
        /// The stream.
        conn: ConnId,
        /// The receipts.
        receipts: Vec<IssuedReceipt>,
    },
    /// Tell a stream to forget receipts (`drop_sub_receipts`).
    DropReceipts {
        /// The stream.
        conn: ConnId,
        /// The bindings removed.
        keys: Vec<BindingKey>,
    },
    /// Re-signed receipts for every binding of a stream (`refresh_sub_receipts`).
    RefreshReceipts {
        /// The stream.
        conn: ConnId,
        /// All its receipts, fresh.
        receipts: Vec<IssuedReceipt>,
    },
    /// The identity of a stream changed (login, logout, session rotation).
    IdentityChanged {
        /// The stream.
        conn: ConnId,
        /// Its session now.
        session: SessionId,
        /// Its user now.
        user: Option<UserId>,
    },
    /// Close a stream.
    Close {
        /// The stream.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// This node now has a binding on a channel it had none on (cluster bus: subscribe).
    ChannelUp(Topic),
    /// This node's last binding on a channel is gone (cluster bus: unsubscribe).
    ChannelDown(Topic),
    /// A parked command's instance attached: run the command now.
    CommandReady {
        /// The ticket given to [`Router::park`](super::Router::park).
        ticket: u64,
    },
    /// A parked command waited too long: answer it with an error.
    CommandExpired {
        /// The ticket given to [`Router::park`](super::Router::park).
        ticket: u64,
    },
}
