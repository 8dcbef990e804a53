//! What a Phoenix topic names: a Supabase channel, a Tidings instance
//! stream, or the socket itself.

use tidings_core::{Channel, ChannelError, InstanceId, Value};

/// The prefix of Supabase Realtime topics: `realtime:<name>` is the channel
/// `{:realtime, "<name>"}`.
pub const REALTIME_PREFIX: &str = "realtime:";

/// The prefix of instance-stream topics: `tidings:<instance_id>`.
pub const INSTANCE_PREFIX: &str = "tidings:";

/// The socket-level topic (heartbeats).
pub const PHOENIX_TOPIC: &str = "phoenix";

/// A topic a client may join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicKind {
    /// `realtime:<name>`: the channel `{:realtime, "<name>"}`.
    Realtime(Channel),
    /// `tidings:<instance_id>`: a page instance's stream (SPEC §7).
    Instance(InstanceId),
}

/// Why a topic cannot be joined; rendered as Supabase's `Code: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// `realtime:` with nothing after it.
    #[error("TopicNameRequired: You must provide a topic name")]
    NameRequired,
    /// The name does not make a valid channel (too long, …).
    #[error("InvalidTopic: {0}")]
    Channel(Box<ChannelError>),
    /// `tidings:` followed by something that is not a UUID.
    #[error("InvalidTopic: tidings:<instance_id> needs a UUID instance id")]
    Instance,
    /// No route serves this topic.
    #[error("unmatched topic")]
    Unmatched,
}

/// The channel a Supabase topic name maps to.
///
/// ```
/// use tidings_ws::server::topic::{realtime_channel, realtime_topic};
/// let ch = realtime_channel("lobby").unwrap();
/// assert_eq!(ch.to_string(), r#"{:realtime, "lobby"}"#);
/// assert_eq!(realtime_topic(&ch).as_deref(), Some("realtime:lobby"));
/// ```
pub fn realtime_channel(name: &str) -> Result<Channel, ChannelError> {
    Channel::tuple("realtime", [Value::str(name)])
}

/// The Supabase topic of a channel, if it is a `{:realtime, "<name>"}` channel.
pub fn realtime_topic(channel: &Channel) -> Option<String> {
    match (channel.tag().as_str(), channel.values()) {
        ("realtime", [Value::Str(name)]) => Some(format!("{REALTIME_PREFIX}{name}")),
        _ => None,
    }
}

/// Classifies a topic a client wants to join.
///
/// ```
/// use tidings_ws::server::topic::{parse_topic, TopicError, TopicKind};
/// assert!(matches!(parse_topic("realtime:room1"), Ok(TopicKind::Realtime(_))));
/// assert_eq!(parse_topic("realtime:"), Err(TopicError::NameRequired));
/// assert_eq!(parse_topic("rooms:1"), Err(TopicError::Unmatched));
/// ```
pub fn parse_topic(topic: &str) -> Result<TopicKind, TopicError> {
    if let Some(name) = topic.strip_prefix(REALTIME_PREFIX) {
        if name.is_empty() {
            return Err(TopicError::NameRequired);
        }
        return realtime_channel(name)
            .map(TopicKind::Realtime)
            .map_err(|e| TopicError::Channel(Box::new(e)));
    }
    if let Some(id) = topic.strip_prefix(INSTANCE_PREFIX) {
        return InstanceId::parse(id)
            .map(TopicKind::Instance)
            .map_err(|_| TopicError::Instance);
    }
    Err(TopicError::Unmatched)
}
