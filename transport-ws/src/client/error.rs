//! The client's one error type: a code, a message and some context.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Nothing came back in time: a push reply, an ack, a join, a heartbeat,
    /// or a connect.
    Timeout,
    /// The socket or the channel is closed, or was closed while waiting.
    Closed,
    /// The server refused a join (its reason is the message).
    JoinRejected,
    /// The server refused the credentials (a 401/403 upgrade, or a join
    /// refused for a token or permission reason).
    Unauthorized,
    /// The server sent something that is not the Phoenix wire.
    Protocol,
    /// The caller passed something unusable (a payload that does not
    /// serialize, a URL that is not `ws://`/`wss://`, an unknown binding).
    InvalidInput,
    /// The server answered a push with status `error`, or an HTTP
    /// broadcast with an error status.
    Rejected,
    /// A buffered push was discarded because its buffer was full.
    Overflow,
    /// A network error.
    Io,
    /// Something this client or the server does not support (`wss://` in
    /// a build without the `tls` feature; a server too old for an HTTP
    /// endpoint).
    Unsupported,
    /// The TLS handshake failed: an untrusted or invalid certificate, a
    /// name mismatch, or no common protocol version.
    Tls,
}

impl ErrorCode {
    /// The code's name, as rendered by [`Error`]'s `Display`.
    ///
    /// ```
    /// use tidings_ws::client::ErrorCode;
    /// assert_eq!(ErrorCode::JoinRejected.as_str(), "join_rejected");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Timeout => "timeout",
            ErrorCode::Closed => "closed",
            ErrorCode::JoinRejected => "join_rejected",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Protocol => "protocol",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Rejected => "rejected",
            ErrorCode::Overflow => "overflow",
            ErrorCode::Io => "io",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Tls => "tls",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client error: `Error { code, message, context }`, the shape of the
/// Elixir client's `Supabase.Realtime.Error`.
///
/// `Display` renders `"<code>: <message> (<context>)"`, the context as
/// `key: value` pairs; the parenthesis is left out when there is no context.
///
/// ```
/// use tidings_ws::client::{Error, ErrorCode};
/// let e = Error::new(ErrorCode::Timeout, "channel join timed out").with("topic", "realtime:room1");
/// assert_eq!(e.to_string(), "timeout: channel join timed out (topic: realtime:room1)");
/// assert_eq!(Error::new(ErrorCode::Closed, "socket closed").to_string(), "closed: socket closed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kind of failure.
    pub code: ErrorCode,
    /// What happened, for people.
    pub message: String,
    /// Where: `(key, value)` pairs such as `("topic", "realtime:room1")`.
    pub context: Vec<(&'static str, String)>,
}

impl Error {
    /// An error with no context.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            context: Vec::new(),
        }
    }

    /// Adds one `key: value` of context.
    #[must_use]
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.context.push((key, value.into()));
        self
    }

    /// The value of a context key, if present.
    pub fn context(&self, key: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if !self.context.is_empty() {
            f.write_str(" (")?;
            for (i, (k, v)) in self.context.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k}: {v}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
