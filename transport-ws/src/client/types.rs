//! Values the client hands in and out: states, options, bindings, events.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::error::{Error, ErrorCode};

/// The socket's state (realtime-js `connectionState()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Opening the TCP connection and the WebSocket handshake.
    Connecting,
    /// The WebSocket is up.
    Open,
    /// The client asked the socket to close and waits for it to go.
    Closing,
    /// No socket; a reconnect may be scheduled.
    Closed,
}

impl ConnectionState {
    /// `connecting`, `open`, `closing` or `closed`.
    ///
    /// ```
    /// use tidings_ws::client::ConnectionState;
    /// assert_eq!(ConnectionState::Open.as_str(), "open");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Open => "open",
            ConnectionState::Closing => "closing",
            ConnectionState::Closed => "closed",
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel's state (phoenix.js channel states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelState {
    /// Not joined, and not trying to be: created but not subscribed, closed
    /// by the server (`phx_close`), or unsubscribed.
    Closed,
    /// The join failed, timed out, or the socket went away; a rejoin is
    /// scheduled (or happens when the socket reopens).
    Errored,
    /// The server accepted the join.
    Joined,
    /// The join is sent, or will be once the socket is open.
    Joining,
    /// A leave was sent.
    Leaving,
}

impl ChannelState {
    /// `closed`, `errored`, `joined`, `joining` or `leaving`.
    ///
    /// ```
    /// use tidings_ws::client::ChannelState;
    /// assert_eq!(ChannelState::Joined.as_str(), "joined");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelState::Closed => "closed",
            ChannelState::Errored => "errored",
            ChannelState::Joined => "joined",
            ChannelState::Joining => "joining",
            ChannelState::Leaving => "leaving",
        }
    }
}

impl fmt::Display for ChannelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel's join options (the `config` of the join payload).
///
/// ```
/// use tidings_ws::client::ChannelOptions;
/// let o = ChannelOptions::default().broadcast_self(true).broadcast_ack(true).presence_key("u1");
/// assert!(o.broadcast_self && o.broadcast_ack && !o.private);
/// assert_eq!(o.presence_key, "u1");
/// ```
// The flags mirror the join payload's `config` one for one.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelOptions {
    /// `config.broadcast.self`: receive your own broadcasts.
    pub broadcast_self: bool,
    /// `config.broadcast.ack`: the server replies to each broadcast, so
    /// [`broadcast_with_ack`](super::Client::broadcast_with_ack) works.
    pub broadcast_ack: bool,
    /// `config.presence.key` (empty: the server picks one).
    pub presence_key: String,
    /// `config.presence.enabled` even without a presence binding.
    pub presence_enabled: bool,
    /// `config.private`: a private (RLS-checked) channel.
    pub private: bool,
}

impl ChannelOptions {
    /// Sets `broadcast.self`.
    #[must_use]
    pub fn broadcast_self(mut self, on: bool) -> Self {
        self.broadcast_self = on;
        self
    }

    /// Sets `broadcast.ack`.
    #[must_use]
    pub fn broadcast_ack(mut self, on: bool) -> Self {
        self.broadcast_ack = on;
        self
    }

    /// Sets `presence.key`.
    #[must_use]
    pub fn presence_key(mut self, key: impl Into<String>) -> Self {
        self.presence_key = key.into();
        self
    }

    /// Sets `presence.enabled`.
    #[must_use]
    pub fn presence_enabled(mut self, on: bool) -> Self {
        self.presence_enabled = on;
        self
    }

    /// Sets `private`.
    #[must_use]
    pub fn private(mut self, on: bool) -> Self {
        self.private = on;
        self
    }
}

/// A `postgres_changes` subscription (sent in the join; the server answers
/// with an id per entry, matched by index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresChangesFilter {
    /// `*`, `INSERT`, `UPDATE` or `DELETE`.
    pub event: String,
    /// The schema, e.g. `public`.
    pub schema: String,
    /// The table, if any.
    pub table: Option<String>,
    /// A filter such as `room_id=eq.42`, if any.
    pub filter: Option<String>,
}

impl PostgresChangesFilter {
    /// A filter on one event of one schema.
    ///
    /// ```
    /// use tidings_ws::client::PostgresChangesFilter;
    /// let f = PostgresChangesFilter::new("INSERT", "public").table("todos");
    /// assert_eq!(f.table.as_deref(), Some("todos"));
    /// ```
    pub fn new(event: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            event: event.into(),
            schema: schema.into(),
            table: None,
            filter: None,
        }
    }

    /// Sets the table.
    #[must_use]
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// Sets the row filter.
    #[must_use]
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        o.insert("event".into(), Value::from(self.event.as_str()));
        o.insert("schema".into(), Value::from(self.schema.as_str()));
        if let Some(t) = &self.table {
            o.insert("table".into(), Value::from(t.as_str()));
        }
        if let Some(f) = &self.filter {
            o.insert("filter".into(), Value::from(f.as_str()));
        }
        Value::Object(o)
    }
}

/// What a channel listens to: `on(channel, binding)`.
///
/// Only bound kinds are delivered as events (realtime-js semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// Broadcasts whose event equals this one, ignoring case, or all with `*`.
    Broadcast {
        /// A user event name, or `*`.
        event: String,
    },
    /// Presence events: `join`, `leave`, `sync`, or `*`. Also turns
    /// `presence.enabled` on in the join.
    Presence {
        /// `join`, `leave`, `sync` or `*`.
        event: String,
    },
    /// `system` messages.
    System,
    /// Database changes.
    PostgresChanges(PostgresChangesFilter),
}

impl Binding {
    /// `Binding::Broadcast { event }`.
    ///
    /// ```
    /// use tidings_ws::client::Binding;
    /// assert_eq!(Binding::broadcast("*"), Binding::Broadcast { event: "*".into() });
    /// ```
    pub fn broadcast(event: impl Into<String>) -> Self {
        Binding::Broadcast {
            event: event.into(),
        }
    }

    /// `Binding::Presence { event }`.
    pub fn presence(event: impl Into<String>) -> Self {
        Binding::Presence {
            event: event.into(),
        }
    }

    /// A binding from the seed's string form: `("broadcast", event)`,
    /// `("presence", event)`, `("system", _)`; `"all"` means `*`.
    ///
    /// ```
    /// use tidings_ws::client::{Binding, ErrorCode};
    /// assert_eq!(Binding::parse("broadcast", "all").unwrap(), Binding::broadcast("*"));
    /// assert_eq!(Binding::parse("nope", "x").unwrap_err().code, ErrorCode::InvalidInput);
    /// ```
    pub fn parse(kind: &str, event: &str) -> Result<Self, Error> {
        let event = if event == "all" { "*" } else { event };
        match kind {
            "broadcast" => Ok(Binding::broadcast(event)),
            "presence" => Ok(Binding::presence(event)),
            "system" => Ok(Binding::System),
            _ => Err(Error::new(
                ErrorCode::InvalidInput,
                "unknown binding kind; expected broadcast, presence or system (use Binding::PostgresChanges for postgres_changes)",
            )
            .with("kind", kind.chars().take(64).collect::<String>())),
        }
    }
}

/// A broadcast's user payload.
#[derive(Debug, Clone, PartialEq)]
pub enum BroadcastPayload {
    /// JSON (text frames, and binary kind 4 with encoding 1).
    Json(Value),
    /// Bytes (binary kind 4 with encoding 0).
    Binary(Vec<u8>),
}

impl BroadcastPayload {
    /// The JSON payload, if it is one.
    ///
    /// ```
    /// use tidings_ws::client::BroadcastPayload;
    /// let p = BroadcastPayload::Json(serde_json::json!({"x": 1}));
    /// assert_eq!(p.as_json().unwrap()["x"], 1);
    /// assert!(BroadcastPayload::Binary(vec![1]).as_json().is_none());
    /// ```
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            BroadcastPayload::Json(v) => Some(v),
            BroadcastPayload::Binary(_) => None,
        }
    }
}

/// A channel's presence state as realtime-js shows it: key → metas, each
/// meta the tracked object plus `presence_ref` (its `phx_ref`).
pub type PresenceState = BTreeMap<String, Vec<Value>>;

/// A presence change (the seed's `{:presence, :join | :leave | :sync, …}`).
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceChange {
    /// Metas joined a key.
    Join {
        /// The key.
        key: String,
        /// The key's metas before the join.
        current: Vec<Value>,
        /// The metas that joined.
        joined: Vec<Value>,
    },
    /// Metas left a key.
    Leave {
        /// The key.
        key: String,
        /// The key's metas after the leave.
        current: Vec<Value>,
        /// The metas that left.
        left: Vec<Value>,
    },
    /// The whole state after a `presence_state` or `presence_diff`.
    Sync(PresenceState),
}

impl PresenceChange {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            PresenceChange::Join { .. } => "join",
            PresenceChange::Leave { .. } => "leave",
            PresenceChange::Sync(_) => "sync",
        }
    }
}

/// A database change kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl ChangeKind {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("INSERT") {
            Some(ChangeKind::Insert)
        } else if s.eq_ignore_ascii_case("UPDATE") {
            Some(ChangeKind::Update)
        } else if s.eq_ignore_ascii_case("DELETE") {
            Some(ChangeKind::Delete)
        } else {
            None
        }
    }
}

/// A socket event (the seed's `{:connection, …}`).
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionEvent {
    /// The state moved from `old` to `new`.
    StateChange {
        /// The state before.
        old: ConnectionState,
        /// The state now.
        new: ConnectionState,
    },
    /// A connect attempt failed, or the heartbeat timed out.
    Error(Error),
}

/// A channel lifecycle event.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelEvent {
    /// The channel's state moved from `old` to `new`.
    StateChange {
        /// The state before.
        old: ChannelState,
        /// The state now.
        new: ChannelState,
    },
    /// A join was refused or timed out, the server's channel crashed
    /// (`phx_error`), or the socket closed under it; or a broadcast sent
    /// through the HTTP fallback without an ack failed (the channel's
    /// state is unchanged then).
    Error(Error),
}

/// Everything the client reports, in the seed's shapes, each with its topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `{:broadcast, event, payload}`: a broadcast that matched a binding.
    Broadcast {
        /// The channel's topic.
        topic: String,
        /// The user event name as sent.
        event: String,
        /// The user payload.
        payload: BroadcastPayload,
        /// `meta` (`{id, replayed?}`) when the server added one.
        meta: Option<Value>,
    },
    /// `{:presence, :join | :leave | :sync, …}`.
    Presence {
        /// The channel's topic.
        topic: String,
        /// What changed.
        change: PresenceChange,
    },
    /// `{:postgres_changes, kind, payload}`; `payload` is the wire `data`.
    PostgresChanges {
        /// The channel's topic.
        topic: String,
        /// INSERT, UPDATE or DELETE.
        kind: ChangeKind,
        /// `{schema, table, commit_timestamp, type, columns, record, old_record, errors}`.
        payload: Value,
    },
    /// `{:connection, :state_change, %{old, new}}`, or a connection error.
    Connection(ConnectionEvent),
    /// A channel's state changed or it failed.
    Channel {
        /// The channel's topic.
        topic: String,
        /// What happened.
        change: ChannelEvent,
    },
    /// A `system` message: `{extension, status, message, channel}`.
    System {
        /// The channel's topic.
        topic: String,
        /// The message as sent.
        payload: Value,
    },
}

/// One channel as the store shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// `realtime:<name>`.
    pub topic: String,
    /// The current state.
    pub state: ChannelState,
    /// The current join's ref (new on every join and rejoin).
    pub join_ref: Option<String>,
    /// The join options.
    pub options: ChannelOptions,
}

/// A WebSocket data frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame (V1 JSON object or V2 JSON array).
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}
