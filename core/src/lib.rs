//! # tidings-core
//!
//! The heart of Tidings, with no sockets, threads, clocks or randomness:
//! the channel model and its three canonical encodings (text, JSON, topic),
//! identities, and (with `alloc`) the state that routes broadcasts.
//!
//! * `#![no_std]`. Without features you get [`ChannelBuf`]: parse, validate,
//!   compare and print channels in fixed-capacity storage.
//! * `alloc`: [`Channel`], [`Topic`], the JSON codec, identities.
//! * `std` (default): `alloc` plus [`OsEntropy`].
//!
//! ```
//! use tidings_core::Channel;
//! let ch = Channel::parse("{:doc, \"abc-123\", \"v2\"}")?;
//! assert_eq!(ch.to_json(), r#"{"t":"doc","v":["abc-123","v2"]}"#);
//! # Ok::<(), tidings_core::ChannelError>(())
//! ```
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod buf;
#[cfg(feature = "alloc")]
mod channel;
mod error;
#[cfg(feature = "alloc")]
mod identity;
#[cfg(feature = "alloc")]
mod json;
pub mod limits;
mod lit;
#[cfg(feature = "alloc")]
pub mod presence;
#[cfg(feature = "alloc")]
pub mod router;
mod sink;
mod text;
mod topic;

pub use buf::ChannelBuf;
#[cfg(feature = "alloc")]
pub use channel::{Atom, Channel, IntoChannel, Value};
pub use error::{ChannelError, Quote};
#[cfg(feature = "std")]
pub use identity::OsEntropy;
#[cfg(feature = "alloc")]
pub use identity::{
    Cid, Entropy, HandshakeId, IdError, Identity, InstanceId, MAX_CID_BYTES, Peer, SeededEntropy,
    SessionId, UserId,
};
pub use limits::ChannelLimits;
#[cfg(feature = "alloc")]
pub use router::{Effects, Payload, Router};
#[cfg(feature = "alloc")]
pub use topic::Topic;
