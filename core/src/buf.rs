//! [`ChannelBuf`]: a channel in fixed-capacity storage, for `no_std`
//! targets without an allocator.

use core::fmt;

use crate::error::ChannelError;
use crate::limits::ChannelLimits;
use crate::lit::Lit;
use crate::sink::{Discard, LitValue, Sink};
use crate::text;
use crate::topic::{self, Encode, TopicWriter};

/// A validated channel stored as its canonical topic bytes in at most `N`
/// bytes, with no allocator needed to parse, compare or print it.
///
/// Parsing applies the same validation and errors as [`Channel`](crate::Channel)
/// (plus [`ChannelError::Capacity`] when the encoding needs more than `N`
/// bytes). Two `ChannelBuf`s are equal exactly when their channels are, and
/// their bytes equal the [`Topic`](crate::Topic) of the same channel.
///
/// ```
/// use tidings_core::ChannelBuf;
/// let ch = ChannelBuf::<64>::parse_text("{:room,42}").unwrap();
/// assert_eq!(ch.as_topic_bytes(), &[1, 4, b'r', b'o', b'o', b'm', 1, 1, 84]);
/// let mut out = heapless::String::<64>::new();
/// core::fmt::write(&mut out, format_args!("{ch}")).unwrap();
/// assert_eq!(out, "{:room, 42}");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelBuf<const N: usize> {
    bytes: heapless::Vec<u8, N>,
}

struct Fixed<'a, const N: usize>(&'a mut heapless::Vec<u8, N>);

impl<const N: usize> TopicWriter for Fixed<'_, N> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.0
            .extend_from_slice(bytes)
            .map_err(|_| ChannelError::Capacity { capacity: N })
    }
}

impl<const N: usize> ChannelBuf<N> {
    /// Parses the text form under the default limits.
    pub fn parse_text(text: &str) -> Result<Self, ChannelError> {
        Self::parse_text_with(text, &ChannelLimits::DEFAULT)
    }

    /// Parses the text form under `limits`.
    pub fn parse_text_with(src: &str, limits: &ChannelLimits) -> Result<Self, ChannelError> {
        let mut bytes = heapless::Vec::new();
        text::parse(src, limits, &mut Encode(&mut Fixed(&mut bytes)))?;
        Ok(Self { bytes })
    }

    /// Checks canonical topic bytes under the default limits and copies them.
    pub fn from_topic(bytes: &[u8]) -> Result<Self, ChannelError> {
        Self::from_topic_with(bytes, &ChannelLimits::DEFAULT)
    }

    /// Checks canonical topic bytes under `limits` and copies them.
    pub fn from_topic_with(bytes: &[u8], limits: &ChannelLimits) -> Result<Self, ChannelError> {
        topic::decode(bytes, limits, &mut Discard)?;
        let bytes =
            heapless::Vec::from_slice(bytes).map_err(|_| ChannelError::Capacity { capacity: N })?;
        Ok(Self { bytes })
    }

    /// The canonical topic bytes.
    pub fn as_topic_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Converts into the heap-backed form.
    #[cfg(feature = "alloc")]
    pub fn to_channel(&self) -> crate::Channel {
        crate::Channel::from_topic_with(&self.bytes, &ChannelLimits::UNBOUNDED)
            .expect("a ChannelBuf holds canonical topic bytes")
    }
}

/// Prints the parts it receives in canonical text form.
struct Print<'f, 'g> {
    f: &'f mut fmt::Formatter<'g>,
    result: fmt::Result,
    tuple: bool,
}

impl Sink for Print<'_, '_> {
    fn atom_channel(&mut self, name: Lit<'_>) -> Result<(), ChannelError> {
        self.result = self
            .result
            .and_then(|()| text::write_atom(self.f, name.chars()));
        Ok(())
    }

    fn tuple(&mut self, tag: Lit<'_>, _: usize) -> Result<(), ChannelError> {
        self.tuple = true;
        self.result = self.result.and_then(|()| {
            self.f.write_str("{")?;
            text::write_atom(self.f, tag.chars())
        });
        Ok(())
    }

    fn value(&mut self, value: LitValue<'_>) -> Result<(), ChannelError> {
        self.result = self.result.and_then(|()| {
            self.f.write_str(", ")?;
            text::write_value(self.f, value)
        });
        Ok(())
    }
}

impl<const N: usize> fmt::Display for ChannelBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut p = Print {
            f,
            result: Ok(()),
            tuple: false,
        };
        topic::decode(&self.bytes, &ChannelLimits::UNBOUNDED, &mut p).map_err(|_| fmt::Error)?;
        p.result?;
        if p.tuple {
            p.f.write_str("}")?;
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for ChannelBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelBuf({self})")
    }
}
