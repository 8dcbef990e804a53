//! Named limits for channels. Every limit has a default here and can be
//! tightened or widened per call through [`ChannelLimits`].

/// Most values a tagged tuple may carry after its tag (default 16).
pub const MAX_ARITY: usize = 16;

/// Most bytes in one string value of a tagged tuple (default 256).
pub const MAX_STR_BYTES: usize = 256;

/// Most characters in an atom: Elixir's own rule, not configurable.
pub const MAX_ATOM_CHARS: usize = 255;

/// Deepest bracket nesting the text parser follows before it gives up.
///
/// Channels never nest, but the parser still reads nested terms so it can
/// say *which* element was not primitive; this bounds its recursion.
pub const MAX_NESTING: usize = 32;

/// Most bytes of the offending input an error message quotes; longer
/// quotes are cut and end in `…`.
pub const MAX_ERROR_QUOTE_BYTES: usize = 120;

/// The configurable channel limits, passed to the `*_with` parse functions.
///
/// ```
/// use tidings_core::{Channel, ChannelLimits};
/// let strict = ChannelLimits { max_arity: 1, ..ChannelLimits::DEFAULT };
/// assert!(Channel::parse_with("{:room, 42}", &strict).is_ok());
/// assert!(Channel::parse_with("{:doc, 1, 2}", &strict).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelLimits {
    /// Most values after the tag ([`MAX_ARITY`] by default).
    pub max_arity: usize,
    /// Most bytes in one string value ([`MAX_STR_BYTES`] by default).
    pub max_str_bytes: usize,
}

impl ChannelLimits {
    /// The defaults: [`MAX_ARITY`] and [`MAX_STR_BYTES`].
    pub const DEFAULT: Self = Self {
        max_arity: MAX_ARITY,
        max_str_bytes: MAX_STR_BYTES,
    };

    /// No arity or string limit: for re-reading bytes this crate already
    /// validated (possibly under limits wider than the defaults).
    pub(crate) const UNBOUNDED: Self = Self {
        max_arity: usize::MAX,
        max_str_bytes: usize::MAX,
    };
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
