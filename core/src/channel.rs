//! The heap-backed channel model: [`Atom`], [`Value`], [`Channel`].

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use crate::error::ChannelError;
use crate::limits::ChannelLimits;
use crate::lit::Lit;
use crate::sink::{LitValue, Sink, check_arity, check_atom, push_value};
use crate::text;

/// An atom: any UTF-8 text of at most
/// [`MAX_ATOM_CHARS`](crate::limits::MAX_ATOM_CHARS) characters.
///
/// ```
/// use tidings_core::Atom;
/// assert_eq!(Atom::new("room").unwrap().to_string(), ":room");
/// assert_eq!(Atom::new("room:42").unwrap().to_string(), ":\"room:42\"");
/// assert_eq!(Atom::new("nil").unwrap().to_string(), "nil");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom(Box<str>);

impl Atom {
    /// Checks the length and makes the atom.
    pub fn new(name: &str) -> Result<Self, ChannelError> {
        check_atom(Lit::Plain(name))?;
        Ok(Self(name.into()))
    }

    /// The atom's name, without the leading `:`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn from_lit(lit: Lit<'_>) -> Self {
        match lit.as_plain() {
            Some(s) => Self(s.into()),
            None => Self(lit.chars().collect::<String>().into_boxed_str()),
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text::write_atom(f, self.0.chars())
    }
}

impl fmt::Debug for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One value of a tagged tuple: an atom, a signed 64-bit integer or a string.
///
/// `true`, `false` and `nil` are atoms.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// An atom such as `:red` or `nil`.
    Atom(Atom),
    /// A signed 64-bit integer.
    Int(i64),
    /// A UTF-8 string; its length is checked when it joins a [`Channel`].
    Str(Box<str>),
}

impl Value {
    /// An atom value.
    pub fn atom(name: &str) -> Result<Self, ChannelError> {
        Atom::new(name).map(Value::Atom)
    }

    /// A string value.
    pub fn str(s: &str) -> Self {
        Value::Str(s.into())
    }

    pub(crate) fn as_lit(&self) -> LitValue<'_> {
        match self {
            Value::Atom(a) => LitValue::Atom(Lit::Plain(a.as_str())),
            Value::Int(i) => LitValue::Int(*i),
            Value::Str(s) => LitValue::Str(Lit::Plain(s)),
        }
    }

    fn from_lit(v: LitValue<'_>) -> Self {
        match v {
            LitValue::Atom(a) => Value::Atom(Atom::from_lit(a)),
            LitValue::Int(i) => Value::Int(i),
            LitValue::Str(s) => Value::Str(match s.as_plain() {
                Some(p) => p.into(),
                None => s.chars().collect::<String>().into_boxed_str(),
            }),
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}

impl From<Atom> for Value {
    fn from(a: Atom) -> Self {
        Value::Atom(a)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text::write_value(f, self.as_lit())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A channel: a bare atom (`:notifications`) or a tagged tuple (`{:room, 42}`).
///
/// Every constructor validates; a `Channel` in hand is always valid under the
/// limits it was built with. Its `Display` is the canonical text form,
/// [`Channel::topic`] the routing key and its serde form the JSON codec.
///
/// ```
/// use tidings_core::Channel;
/// let ch: Channel = "{:room,42}".parse().unwrap();
/// assert_eq!(ch.to_string(), "{:room, 42}");
/// assert_eq!(ch.to_json(), r#"{"t":"room","v":[42]}"#);
/// assert_eq!(Channel::from_topic(ch.topic().as_bytes()).unwrap(), ch);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// A bare atom channel.
    Atom(Atom),
    /// A tag and 1..=`max_arity` values.
    Tuple(Atom, Box<[Value]>),
}

impl Channel {
    /// An atom channel.
    pub fn atom(name: &str) -> Result<Self, ChannelError> {
        Atom::new(name).map(Channel::Atom)
    }

    /// A tagged tuple under the default limits.
    ///
    /// ```
    /// use tidings_core::{Channel, Value};
    /// let ch = Channel::tuple("doc", [Value::str("abc-123"), Value::str("v2")]).unwrap();
    /// assert_eq!(ch.to_string(), r#"{:doc, "abc-123", "v2"}"#);
    /// ```
    pub fn tuple(tag: &str, values: impl IntoIterator<Item = Value>) -> Result<Self, ChannelError> {
        Self::tuple_with(tag, values, &ChannelLimits::DEFAULT)
    }

    /// A tagged tuple under `limits`.
    pub fn tuple_with(
        tag: &str,
        values: impl IntoIterator<Item = Value>,
        limits: &ChannelLimits,
    ) -> Result<Self, ChannelError> {
        let tag = Atom::new(tag)?;
        let values: Box<[Value]> = values.into_iter().collect();
        let ch = Channel::Tuple(tag, values);
        ch.validate_with(limits)?;
        Ok(ch)
    }

    /// Checks this channel against `limits` (it may have been built under
    /// looser ones).
    pub fn validate_with(&self, limits: &ChannelLimits) -> Result<(), ChannelError> {
        match self {
            Channel::Atom(_) => Ok(()),
            Channel::Tuple(tag, values) => {
                if values.is_empty() {
                    return Err(ChannelError::TooFewElements {
                        size: 1,
                        channel: crate::error::Quote::from_fmt(format_args!("{{{tag}}}")),
                    });
                }
                check_arity(values.len(), limits)?;
                values
                    .iter()
                    .try_for_each(|v| push_value(&mut crate::sink::Discard, v.as_lit(), limits))
            }
        }
    }

    /// Parses the text form under the default limits (also `str::parse`).
    pub fn parse(text: &str) -> Result<Self, ChannelError> {
        Self::parse_with(text, &ChannelLimits::DEFAULT)
    }

    /// Parses the text form under `limits`.
    pub fn parse_with(text: &str, limits: &ChannelLimits) -> Result<Self, ChannelError> {
        let mut b = Builder::default();
        text::parse(text, limits, &mut b)?;
        Ok(b.finish())
    }

    /// The tag of a tuple, or the atom itself.
    pub fn tag(&self) -> &Atom {
        match self {
            Channel::Atom(a) | Channel::Tuple(a, _) => a,
        }
    }

    /// The values after the tag; empty for an atom channel.
    pub fn values(&self) -> &[Value] {
        match self {
            Channel::Atom(_) => &[],
            Channel::Tuple(_, v) => v,
        }
    }
}

impl FromStr for Channel {
    type Err = ChannelError;
    fn from_str(s: &str) -> Result<Self, ChannelError> {
        Channel::parse(s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Atom(a) => fmt::Display::fmt(a, f),
            Channel::Tuple(tag, values) => {
                write!(f, "{{{tag}")?;
                for v in values {
                    write!(f, ", {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Builds a [`Channel`] from validated parts.
#[derive(Default)]
pub(crate) struct Builder {
    tag: Option<Atom>,
    values: Vec<Value>,
    tuple: bool,
}

impl Builder {
    pub(crate) fn finish(self) -> Channel {
        let tag = self.tag.unwrap_or_else(|| Atom(Box::from("nil")));
        if self.tuple {
            Channel::Tuple(tag, self.values.into_boxed_slice())
        } else {
            Channel::Atom(tag)
        }
    }
}

impl Sink for Builder {
    fn atom_channel(&mut self, name: Lit<'_>) -> Result<(), ChannelError> {
        self.tag = Some(Atom::from_lit(name));
        Ok(())
    }

    fn tuple(&mut self, tag: Lit<'_>, arity: usize) -> Result<(), ChannelError> {
        self.tag = Some(Atom::from_lit(tag));
        self.tuple = true;
        // The arity comes from the input: never reserve more than the default limit up front.
        self.values
            .reserve_exact(arity.min(crate::limits::MAX_ARITY));
        Ok(())
    }

    fn value(&mut self, value: LitValue<'_>) -> Result<(), ChannelError> {
        self.values.push(Value::from_lit(value));
        Ok(())
    }
}

/// Anything that names a channel: a [`Channel`] (always valid) or its text
/// form (validated, so it may fail with the channel error).
pub trait IntoChannel {
    /// The channel, or why the input is not one.
    fn into_channel(self) -> Result<Channel, ChannelError>;
}

impl IntoChannel for Channel {
    fn into_channel(self) -> Result<Channel, ChannelError> {
        Ok(self)
    }
}

impl IntoChannel for &Channel {
    fn into_channel(self) -> Result<Channel, ChannelError> {
        Ok(self.clone())
    }
}

impl IntoChannel for &str {
    fn into_channel(self) -> Result<Channel, ChannelError> {
        Channel::parse(self)
    }
}
