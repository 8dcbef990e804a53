//! The topic codec: the compact, canonical binary form of a channel, used as
//! the routing key and on a cluster bus.
//!
//! The bytes are postcard's encoding of this canonical form (field order and
//! variant indexes are the format; they never change meaning):
//!
//! ```text
//! enum Topic { Atom(name: str) = 0, Tuple(tag: str, values: seq<Value>) = 1 }
//! enum Value { Atom(name: str) = 0, Int(i64) = 1, Str(str) = 2 }
//! ```
//!
//! New layouts get new variant indexes, so the leading varint doubles as a
//! version. The decoder accepts only canonical bytes: postcard itself takes
//! overlong varints, so every varint read is re-encoded and compared, which
//! keeps "equal topics ⇔ equal channels" true for decoded input too.

use serde::Serialize;

use crate::error::{ChannelError, Quote};
use crate::limits::ChannelLimits;
use crate::lit::Lit;
use crate::sink::{LitValue, Sink, check_arity, check_atom, push_value};
use crate::text;

/// Variant index of an atom channel.
pub(crate) const KIND_ATOM: u32 = 0;
/// Variant index of a tuple channel.
pub(crate) const KIND_TUPLE: u32 = 1;
/// Variant index of an atom value.
pub(crate) const VALUE_ATOM: u32 = 0;
/// Variant index of an integer value.
pub(crate) const VALUE_INT: u32 = 1;
/// Variant index of a string value.
pub(crate) const VALUE_STR: u32 = 2;

fn topic_err(at: usize, problem: &'static str) -> ChannelError {
    ChannelError::Topic { at, problem }
}

/// Reads canonical postcard pieces off a byte slice.
struct Reader<'a> {
    len: usize,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn at(&self) -> usize {
        self.len - self.rest.len()
    }

    fn take<T: serde::Deserialize<'a> + Serialize>(
        &mut self,
    ) -> Result<(T, &'a [u8]), ChannelError> {
        let at = self.at();
        let (value, rest) = postcard::take_from_bytes::<T>(self.rest).map_err(|e| {
            topic_err(
                at,
                match e {
                    postcard::Error::DeserializeUnexpectedEnd => "unexpected end of input",
                    postcard::Error::DeserializeBadUtf8 => "string is not valid UTF-8",
                    postcard::Error::DeserializeBadVarint => "malformed varint",
                    _ => "malformed postcard data",
                },
            )
        })?;
        let consumed = &self.rest[..self.rest.len() - rest.len()];
        self.rest = rest;
        Ok((value, consumed))
    }

    /// A varint-encoded integer, rejected unless minimally encoded.
    fn varint<T: serde::Deserialize<'a> + Serialize>(&mut self) -> Result<T, ChannelError> {
        let at = self.at();
        let (value, consumed) = self.take::<T>()?;
        if !is_minimal_varint(consumed) {
            return Err(topic_err(at, "overlong varint; topics must be canonical"));
        }
        Ok(value)
    }

    /// A length-prefixed UTF-8 string whose prefix is minimal.
    fn str(&mut self) -> Result<&'a str, ChannelError> {
        let at = self.at();
        let (s, consumed): (&'a str, _) = self.take()?;
        if !is_minimal_varint(&consumed[..consumed.len() - s.len()]) {
            return Err(topic_err(
                at,
                "overlong string length; topics must be canonical",
            ));
        }
        Ok(s)
    }
}

/// LEB128 (postcard's varint) is minimal exactly when it is one byte long or
/// its last 7-bit group is not zero; postcard accepts the overlong forms.
fn is_minimal_varint(bytes: &[u8]) -> bool {
    bytes.len() == 1 || bytes.last().is_some_and(|&b| b != 0)
}

/// Decodes topic bytes and feeds the channel to `sink`.
pub(crate) fn decode<S: Sink>(
    bytes: &[u8],
    limits: &ChannelLimits,
    sink: &mut S,
) -> Result<(), ChannelError> {
    let mut r = Reader {
        len: bytes.len(),
        rest: bytes,
    };
    let kind_at = r.at();
    match r.varint::<u32>()? {
        KIND_ATOM => {
            let name = Lit::Plain(r.str()?);
            check_atom(name)?;
            sink.atom_channel(name)?;
        }
        KIND_TUPLE => {
            let tag = Lit::Plain(r.str()?);
            check_atom(tag)?;
            let arity = r.varint::<usize>()?;
            if arity == 0 {
                return Err(ChannelError::TooFewElements {
                    size: 1,
                    channel: Quote::from_fmt(format_args!("{{{}}}", AtomText(tag))),
                });
            }
            check_arity(arity, limits)?;
            sink.tuple(tag, arity)?;
            for _ in 0..arity {
                let at = r.at();
                let value = match r.varint::<u32>()? {
                    VALUE_ATOM => LitValue::Atom(Lit::Plain(r.str()?)),
                    VALUE_INT => LitValue::Int(r.varint::<i64>()?),
                    VALUE_STR => LitValue::Str(Lit::Plain(r.str()?)),
                    _ => {
                        return Err(topic_err(
                            at,
                            "unknown value kind; expected 0 (atom), 1 (integer) or 2 (string)",
                        ));
                    }
                };
                push_value(sink, value, limits)?;
            }
        }
        _ => {
            return Err(topic_err(
                kind_at,
                "unknown channel kind; expected 0 (atom) or 1 (tuple)",
            ));
        }
    }
    if !r.rest.is_empty() {
        return Err(topic_err(r.at(), "trailing bytes after the channel"));
    }
    Ok(())
}

struct AtomText<'a>(Lit<'a>);

impl core::fmt::Display for AtomText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        text::write_atom(f, self.0.chars())
    }
}

/// Appends canonical topic pieces to a byte sink; shared by [`Topic`] and
/// [`ChannelBuf`](crate::ChannelBuf) so both produce identical bytes.
pub(crate) trait TopicWriter {
    /// Appends raw bytes; `Err` when out of room.
    fn put(&mut self, bytes: &[u8]) -> Result<(), ChannelError>;

    fn put_varint<T: Serialize>(&mut self, v: &T) -> Result<(), ChannelError> {
        let mut buf = [0u8; 16];
        let enc =
            postcard::to_slice(v, &mut buf).map_err(|_| topic_err(0, "varint does not fit"))?;
        self.put(enc)
    }

    fn put_lit(&mut self, lit: Lit<'_>) -> Result<(), ChannelError> {
        self.put_varint(&lit.decoded_len())?;
        match lit.as_plain() {
            Some(s) => self.put(s.as_bytes()),
            None => lit
                .chars()
                .try_for_each(|c| self.put(c.encode_utf8(&mut [0u8; 4]).as_bytes())),
        }
    }
}

/// A sink that writes the topic encoding of what it receives.
pub(crate) struct Encode<'w, W: TopicWriter>(pub(crate) &'w mut W);

impl<W: TopicWriter> Sink for Encode<'_, W> {
    fn atom_channel(&mut self, name: Lit<'_>) -> Result<(), ChannelError> {
        self.0.put_varint(&KIND_ATOM)?;
        self.0.put_lit(name)
    }

    fn tuple(&mut self, tag: Lit<'_>, arity: usize) -> Result<(), ChannelError> {
        self.0.put_varint(&KIND_TUPLE)?;
        self.0.put_lit(tag)?;
        self.0.put_varint(&arity)
    }

    fn value(&mut self, value: LitValue<'_>) -> Result<(), ChannelError> {
        match value {
            LitValue::Atom(a) => {
                self.0.put_varint(&VALUE_ATOM)?;
                self.0.put_lit(a)
            }
            LitValue::Int(i) => {
                self.0.put_varint(&VALUE_INT)?;
                self.0.put_varint(&i)
            }
            LitValue::Str(s) => {
                self.0.put_varint(&VALUE_STR)?;
                self.0.put_lit(s)
            }
        }
    }
}

#[cfg(feature = "alloc")]
pub use owned::Topic;

#[cfg(feature = "alloc")]
mod owned {
    use alloc::sync::Arc;
    use core::fmt;

    use serde::ser::{SerializeTupleVariant, Serializer};

    use super::{KIND_ATOM, KIND_TUPLE, VALUE_ATOM, VALUE_INT, VALUE_STR};
    use crate::channel::{Builder, Channel, Value};
    use crate::error::ChannelError;
    use crate::limits::ChannelLimits;
    use crate::sink::Discard;

    /// A channel's canonical binary form: the routing key.
    ///
    /// Cheap to clone (a reference count), hashable, ordered by bytes.
    /// Equal topics ⇔ equal channels, for encoded and decoded topics alike.
    ///
    /// ```
    /// use tidings_core::{Channel, Topic};
    /// let a = Channel::parse("{:room, 42}").unwrap().topic();
    /// let b = Channel::parse("{:room, \"42\"}").unwrap().topic();
    /// let c = Channel::parse(":\"room:42\"").unwrap().topic();
    /// assert!(a != b && b != c && a != c);
    /// assert_eq!(Topic::from_bytes(a.as_bytes()).unwrap(), a);
    /// ```
    #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Topic(Arc<[u8]>);

    impl Topic {
        /// Checks that `bytes` are a canonical topic (default limits) and wraps a copy.
        pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChannelError> {
            super::decode(bytes, &ChannelLimits::DEFAULT, &mut Discard)?;
            Ok(Self(Arc::from(bytes)))
        }

        /// The canonical bytes.
        pub fn as_bytes(&self) -> &[u8] {
            &self.0
        }

        /// Decodes the channel back.
        pub fn channel(&self) -> Channel {
            // A Topic only ever holds canonical bytes of a valid channel; one
            // made under wider limits may exceed the defaults, so decode
            // without limits.
            let mut b = Builder::default();
            super::decode(&self.0, &ChannelLimits::UNBOUNDED, &mut b)
                .expect("a Topic holds canonical topic bytes");
            b.finish()
        }
    }

    impl fmt::Debug for Topic {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Topic({})", self.channel())
        }
    }

    impl core::borrow::Borrow<[u8]> for Topic {
        fn borrow(&self) -> &[u8] {
            &self.0
        }
    }

    impl AsRef<[u8]> for Topic {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    /// Serializes a channel in its canonical topic form (postcard over this
    /// shape gives the topic bytes).
    struct TopicForm<'a>(&'a Channel);
    struct ValuesForm<'a>(&'a [Value]);
    struct ValueForm<'a>(&'a Value);

    impl serde::Serialize for TopicForm<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                Channel::Atom(a) => {
                    s.serialize_newtype_variant("Topic", KIND_ATOM, "Atom", a.as_str())
                }
                Channel::Tuple(tag, values) => {
                    let mut tv = s.serialize_tuple_variant("Topic", KIND_TUPLE, "Tuple", 2)?;
                    tv.serialize_field(tag.as_str())?;
                    tv.serialize_field(&ValuesForm(values))?;
                    tv.end()
                }
            }
        }
    }

    impl serde::Serialize for ValuesForm<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(ValueForm))
        }
    }

    impl serde::Serialize for ValueForm<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                Value::Atom(a) => {
                    s.serialize_newtype_variant("Value", VALUE_ATOM, "Atom", a.as_str())
                }
                Value::Int(i) => s.serialize_newtype_variant("Value", VALUE_INT, "Int", i),
                Value::Str(v) => s.serialize_newtype_variant("Value", VALUE_STR, "Str", &**v),
            }
        }
    }

    impl Channel {
        /// The canonical topic: the routing key.
        pub fn topic(&self) -> Topic {
            let mut buf = [0u8; 128];
            match postcard::to_slice(&TopicForm(self), &mut buf) {
                Ok(enc) => Topic(Arc::from(&*enc)),
                Err(_) => Topic(Arc::from(
                    postcard::to_allocvec(&TopicForm(self))
                        .expect("serializing into a Vec cannot fail"),
                )),
            }
        }

        /// Writes the topic bytes into `buf`, returning the used part, or
        /// `None` when `buf` is too small. Never allocates.
        pub fn encode_topic<'b>(&self, buf: &'b mut [u8]) -> Option<&'b mut [u8]> {
            postcard::to_slice(&TopicForm(self), buf).ok()
        }

        /// Decodes canonical topic bytes under the default limits.
        pub fn from_topic(bytes: &[u8]) -> Result<Self, ChannelError> {
            Self::from_topic_with(bytes, &ChannelLimits::DEFAULT)
        }

        /// Decodes canonical topic bytes under `limits`.
        pub fn from_topic_with(bytes: &[u8], limits: &ChannelLimits) -> Result<Self, ChannelError> {
            let mut b = Builder::default();
            super::decode(bytes, limits, &mut b)?;
            Ok(b.finish())
        }
    }

    impl From<&Channel> for Topic {
        fn from(ch: &Channel) -> Self {
            ch.topic()
        }
    }
}
