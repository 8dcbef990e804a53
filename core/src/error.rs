//! The typed channel error and its bounded quotes of the offending input.

use core::fmt::{self, Write as _};

use crate::limits::MAX_ERROR_QUOTE_BYTES;

/// A bounded, owned quote of offending input inside an error message.
///
/// Quotes longer than [`MAX_ERROR_QUOTE_BYTES`] are cut on a character
/// boundary and end in `…`, so an error never echoes a megabyte of input.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Quote(heapless::String<{ MAX_ERROR_QUOTE_BYTES + 3 }>);

impl Quote {
    /// The quoted text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_fmt(args: fmt::Arguments<'_>) -> Self {
        let mut q = QuoteWriter {
            out: Quote::default(),
            full: false,
        };
        let _ = q.write_fmt(args);
        q.out
    }
}

struct QuoteWriter {
    out: Quote,
    full: bool,
}

impl fmt::Write for QuoteWriter {
    /// Never fails: past the limit it appends `…` once and ignores the
    /// rest (some `Display` impls assert that their writes succeed).
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.full {
            return Ok(());
        }
        for c in s.chars() {
            if self.out.0.len() + c.len_utf8() > MAX_ERROR_QUOTE_BYTES {
                let _ = self.out.0.push('…');
                self.full = true;
                return Ok(());
            }
            let _ = self.out.0.push(c);
        }
        Ok(())
    }
}

impl fmt::Display for Quote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Quote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

/// Why a channel was rejected.
///
/// The first five variants carry Hologram's messages word for word; the rest
/// are ours, for the limits and for the three encodings. Every message says
/// what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A bare string where a channel was expected.
    #[error("channel must be a bare atom or tagged tuple; got bare string {got}")]
    BareString {
        /// The string, in text syntax.
        got: Quote,
    },
    /// Anything else that is neither an atom nor a tuple (a number, a list…).
    #[error("channel must be a bare atom or tagged tuple; got {got}")]
    NotAChannel {
        /// The value, in text syntax.
        got: Quote,
    },
    /// A tuple whose first element is not an atom.
    #[error("channel tuple's first element must be an atom; got {channel}")]
    TagNotAtom {
        /// The whole tuple.
        channel: Quote,
    },
    /// A tuple element after the tag that is not an atom, integer or string.
    #[error(
        "channel tuple elements after the tag must be primitive (atom, integer, string); got {element} in {channel}"
    )]
    NotPrimitive {
        /// The first offending element.
        element: Quote,
        /// The whole tuple.
        channel: Quote,
    },
    /// A tuple of 0 or 1 elements.
    #[error("channel tuple must have at least 2 elements; got {size}-tuple {channel}")]
    TooFewElements {
        /// The tuple's size, tag included.
        size: usize,
        /// The whole tuple.
        channel: Quote,
    },
    /// A tuple with more values than [`ChannelLimits::max_arity`](crate::ChannelLimits).
    #[error("channel tuple has {size} elements; at most {max} are allowed (the tag and {max_arity} values)", max = max_arity + 1)]
    TooManyElements {
        /// The tuple's size, tag included.
        size: usize,
        /// The limit on values after the tag.
        max_arity: usize,
    },
    /// An atom longer than [`MAX_ATOM_CHARS`](crate::limits::MAX_ATOM_CHARS).
    #[error("atom has {chars} characters; at most {max} are allowed")]
    AtomTooLong {
        /// Its length in characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A string value longer than [`ChannelLimits::max_str_bytes`](crate::ChannelLimits).
    #[error("channel tuple string has {bytes} bytes; at most {max} are allowed")]
    StringTooLong {
        /// Its length in bytes.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// An integer outside the signed 64-bit range.
    #[error(
        "channel tuple integer {literal} is out of range; integers must fit in a signed 64-bit integer (-9223372036854775808..=9223372036854775807)"
    )]
    IntegerOutOfRange {
        /// The integer as written.
        literal: Quote,
    },
    /// Text input that is not Elixir term syntax.
    #[error("invalid channel text at byte {at}: {problem}")]
    Syntax {
        /// Byte offset into the input.
        at: usize,
        /// What was expected or found there.
        problem: &'static str,
    },
    /// JSON input that does not have the channel JSON shape.
    #[error(
        "invalid channel JSON: {reason}; expected {{\"t\": \"<atom>\"}} or {{\"t\": \"<atom>\", \"v\": [<value>, …]}}"
    )]
    Json {
        /// What was wrong.
        reason: Quote,
    },
    /// Topic bytes that are not the canonical encoding of a channel.
    #[error("invalid topic bytes at offset {at}: {problem}")]
    Topic {
        /// Byte offset into the input.
        at: usize,
        /// What was wrong there.
        problem: &'static str,
    },
    /// The channel does not fit a fixed-capacity [`ChannelBuf`](crate::ChannelBuf).
    #[error(
        "channel needs more than {capacity} bytes of topic encoding; this ChannelBuf holds at most {capacity}"
    )]
    Capacity {
        /// The buffer's capacity in bytes.
        capacity: usize,
    },
}
