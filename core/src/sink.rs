//! The one place where every decoder (text, topic, JSON) checks a channel's
//! parts against the limits before handing them to a builder.

use crate::error::ChannelError;
use crate::limits::{ChannelLimits, MAX_ATOM_CHARS};
use crate::lit::Lit;

/// One value of a tagged tuple, as found in the input.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LitValue<'a> {
    Atom(Lit<'a>),
    Int(i64),
    Str(Lit<'a>),
}

/// Receives a channel's parts, already validated, in order: either one
/// `atom_channel`, or one `tuple` followed by exactly `arity` `value`s.
pub(crate) trait Sink {
    fn atom_channel(&mut self, name: Lit<'_>) -> Result<(), ChannelError>;
    fn tuple(&mut self, tag: Lit<'_>, arity: usize) -> Result<(), ChannelError>;
    fn value(&mut self, value: LitValue<'_>) -> Result<(), ChannelError>;
}

/// A sink that keeps nothing: validation only.
pub(crate) struct Discard;

impl Sink for Discard {
    fn atom_channel(&mut self, _: Lit<'_>) -> Result<(), ChannelError> {
        Ok(())
    }
    fn tuple(&mut self, _: Lit<'_>, _: usize) -> Result<(), ChannelError> {
        Ok(())
    }
    fn value(&mut self, _: LitValue<'_>) -> Result<(), ChannelError> {
        Ok(())
    }
}

pub(crate) fn check_atom(name: Lit<'_>) -> Result<(), ChannelError> {
    // Fast path: a name of at most MAX_ATOM_CHARS bytes cannot have more chars.
    if let Some(s) = name.as_plain()
        && s.len() <= MAX_ATOM_CHARS
    {
        return Ok(());
    }
    let chars = name.char_count();
    if chars > MAX_ATOM_CHARS {
        return Err(ChannelError::AtomTooLong {
            chars,
            max: MAX_ATOM_CHARS,
        });
    }
    Ok(())
}

pub(crate) fn check_str(s: Lit<'_>, limits: &ChannelLimits) -> Result<(), ChannelError> {
    let bytes = s.decoded_len();
    if bytes > limits.max_str_bytes {
        return Err(ChannelError::StringTooLong {
            bytes,
            max: limits.max_str_bytes,
        });
    }
    Ok(())
}

pub(crate) fn check_arity(arity: usize, limits: &ChannelLimits) -> Result<(), ChannelError> {
    if arity > limits.max_arity {
        return Err(ChannelError::TooManyElements {
            size: arity.saturating_add(1),
            max_arity: limits.max_arity,
        });
    }
    Ok(())
}

/// Checks a value's own limits, then hands it on.
pub(crate) fn push_value<S: Sink>(
    sink: &mut S,
    value: LitValue<'_>,
    limits: &ChannelLimits,
) -> Result<(), ChannelError> {
    match value {
        LitValue::Atom(a) => check_atom(a)?,
        LitValue::Str(s) => check_str(s, limits)?,
        LitValue::Int(_) => {}
    }
    sink.value(value)
}
