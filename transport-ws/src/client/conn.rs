//! The client's sans-IO state machine: [`Connection`].
//!
//! It owns no socket and reads no clock. Inputs are method calls carrying
//! `now` ([`Connection::handle_open`], [`handle_text`](Connection::handle_text),
//! [`handle_timeout`](Connection::handle_timeout), user commands such as
//! [`subscribe`](Connection::subscribe)); outputs are drained with
//! [`poll_output`](Connection::poll_output) (frames to send, connect/close
//! requests, events, push replies) and the next deadline with
//! [`poll_timeout`](Connection::poll_timeout). After every input, drain
//! `poll_output` until it returns `None`, then sleep until `poll_timeout`.
//!
//! Every timing rule lives here: heartbeat and its timeout, reconnect and
//! rejoin backoff, join and push timeouts, and both buffers.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tidings_core::presence::{ClientPresence, Diff, Meta, PresenceEvent, Presences};

use crate::frame::{self, Payload, Vsn};

use super::error::{Error, ErrorCode};
use super::types::{
    Binding, BroadcastPayload, ChangeKind, ChannelEvent, ChannelInfo, ChannelOptions, ChannelState,
    ConnectionEvent, ConnectionState, Event, Frame, PresenceChange, PresenceState,
};
use super::wire;

/// A backoff function: the delay before try number `tries` (1-based).
pub type Backoff = Arc<dyn Fn(u32) -> Duration + Send + Sync>;

/// Default heartbeat interval (realtime-js): 25 s.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(25);
/// Default join and push timeout: 10 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default capacity of the socket send buffer (messages kept while the
/// socket is not open; the oldest is dropped past it).
pub const DEFAULT_SEND_BUFFER_CAPACITY: usize = 100;
/// Default capacity of each channel's push buffer (pushes kept until the
/// channel is joined; the oldest is dropped past it).
pub const DEFAULT_PUSH_BUFFER_CAPACITY: usize = 100;
/// Most `presence_diff`s kept while waiting for a `presence_state`.
pub const MAX_PENDING_PRESENCE_DIFFS: usize = 1000;
/// Default delay before the socket closes once its last channel was
/// unsubscribed (realtime-js's `disconnectOnEmptyChannelsAfterMs`: two
/// heartbeat intervals, 50 s).
pub const DEFAULT_DISCONNECT_WHEN_EMPTY_AFTER: Duration = Duration::from_secs(50);

/// realtime-js's reconnect backoff: 1 s, 2 s, 5 s, 10 s, then 10 s.
///
/// ```
/// use std::time::Duration;
/// use tidings_ws::client::default_reconnect_after;
/// let s: Vec<u64> = (1..=6).map(|t| default_reconnect_after(t).as_secs()).collect();
/// assert_eq!(s, [1, 2, 5, 10, 10, 10]);
/// ```
pub fn default_reconnect_after(tries: u32) -> Duration {
    Duration::from_secs(match tries {
        0 | 1 => 1,
        2 => 2,
        3 => 5,
        _ => 10,
    })
}

/// phoenix.js's rejoin backoff: 1 s, 2 s, 5 s, then 10 s.
///
/// ```
/// use tidings_ws::client::default_rejoin_after;
/// let s: Vec<u64> = (1..=5).map(|t| default_rejoin_after(t).as_secs()).collect();
/// assert_eq!(s, [1, 2, 5, 10, 10]);
/// ```
pub fn default_rejoin_after(tries: u32) -> Duration {
    Duration::from_secs(match tries {
        0 | 1 => 1,
        2 => 2,
        3 => 5,
        _ => 10,
    })
}

/// The state machine's settings.
#[derive(Clone)]
pub struct ConnectionConfig {
    /// Serializer: [`Vsn::V1`] (JSON objects) or [`Vsn::V2`] (JSON arrays).
    pub vsn: Vsn,
    /// Time between a heartbeat reply and the next heartbeat, and how long
    /// a heartbeat may go unanswered before the socket is closed.
    pub heartbeat_interval: Duration,
    /// Delay before reconnect try `n` (reset when a socket opens).
    pub reconnect_after: Backoff,
    /// Delay before channel rejoin try `n` (reset when a join succeeds).
    pub rejoin_after: Backoff,
    /// Join and push timeout.
    pub timeout: Duration,
    /// Socket send buffer capacity.
    pub send_buffer_capacity: usize,
    /// Channel push buffer capacity.
    pub push_buffer_capacity: usize,
    /// The token sent in joins until `set_auth` changes it.
    pub access_token: Option<String>,
    /// Broadcasts on a channel that cannot push (socket not open, or the
    /// channel not joined) go out as [`Output::HttpBroadcast`] instead of
    /// being buffered or refused (realtime-js's implicit REST fallback).
    pub http_fallback: bool,
    /// Emit [`Output::RefreshToken`] with every heartbeat sent (the driver
    /// then consults `access_token_fn` and feeds the token back through
    /// [`Connection::set_auth`]).
    pub refresh_token_on_heartbeat: bool,
    /// Close the socket this long after its last channel was unsubscribed
    /// (`None`: keep it open). A new channel cancels the pending close, and
    /// subscribing after such a close connects again.
    pub disconnect_when_empty_after: Option<Duration>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            vsn: Vsn::V2,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            reconnect_after: Arc::new(default_reconnect_after),
            rejoin_after: Arc::new(default_rejoin_after),
            timeout: DEFAULT_TIMEOUT,
            send_buffer_capacity: DEFAULT_SEND_BUFFER_CAPACITY,
            push_buffer_capacity: DEFAULT_PUSH_BUFFER_CAPACITY,
            access_token: None,
            http_fallback: false,
            refresh_token_on_heartbeat: false,
            disconnect_when_empty_after: Some(DEFAULT_DISCONNECT_WHEN_EMPTY_AFTER),
        }
    }
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("vsn", &self.vsn)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("timeout", &self.timeout)
            .field("send_buffer_capacity", &self.send_buffer_capacity)
            .field("push_buffer_capacity", &self.push_buffer_capacity)
            .field("access_token", &self.access_token.as_ref().map(|_| "<set>"))
            .field("http_fallback", &self.http_fallback)
            .field(
                "refresh_token_on_heartbeat",
                &self.refresh_token_on_heartbeat,
            )
            .finish_non_exhaustive()
    }
}

/// Names a channel inside one [`Connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(u64);

/// A broadcast to POST because its channel could not push it
/// ([`ConnectionConfig::http_fallback`]): a JSON payload goes to the REST
/// batch endpoint (`POST <http base>/api/broadcast`, body [`body`](Self::body)),
/// a binary one to the single endpoint (`POST <http
/// base>/api/broadcast/<subtopic>/events/<event>`) as
/// `application/octet-stream`, since the batch endpoint is JSON only.
/// Report the outcome with [`Connection::handle_http_result`].
#[derive(Clone, PartialEq, Eq)]
pub struct HttpBroadcast {
    /// The ref [`Output::Reply`] will carry when `report` is set.
    pub push_ref: String,
    /// The channel's topic (`realtime:<name>`).
    pub topic: String,
    /// The user event.
    pub event: String,
    /// The user payload: JSON text, or bytes.
    pub payload: Payload,
    /// The channel's `private` option.
    pub private: bool,
    /// The bearer token: the channel's own, else the socket's.
    pub token: Option<String>,
    /// Someone waits for the result (`broadcast_with_ack`).
    pub report: bool,
}

impl HttpBroadcast {
    /// The topic without `realtime:`, as the REST endpoints want it.
    pub fn subtopic(&self) -> &str {
        wire::subtopic(&self.topic)
    }

    /// The batch endpoint's request body realtime-js sends for a JSON
    /// payload: `{"messages":[{"topic":…,"event":…,"payload":…,"private":…}]}`;
    /// `None` for a binary payload (it goes to the single endpoint as is).
    ///
    /// ```
    /// use tidings_ws::client::HttpBroadcast;
    /// use tidings_ws::frame::Payload;
    /// let mut b = HttpBroadcast {
    ///     push_ref: "1".into(),
    ///     topic: "realtime:room1".into(),
    ///     event: "evt".into(),
    ///     payload: Payload::json(r#"{"a":1}"#).unwrap(),
    ///     private: true,
    ///     token: None,
    ///     report: false,
    /// };
    /// assert_eq!(
    ///     b.body().unwrap(),
    ///     r#"{"messages":[{"topic":"room1","event":"evt","payload":{"a":1},"private":true}]}"#
    /// );
    /// b.payload = Payload::Binary(vec![1, 2]);
    /// assert_eq!(b.body(), None);
    /// ```
    pub fn body(&self) -> Option<String> {
        let Payload::Json(payload) = &self.payload else {
            return None;
        };
        Some(format!(
            r#"{{"messages":[{{"topic":{},"event":{},"payload":{},"private":{}}}]}}"#,
            json_str(self.subtopic()),
            json_str(&self.event),
            payload.get(),
            self.private
        ))
    }
}

impl fmt::Debug for HttpBroadcast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBroadcast")
            .field("push_ref", &self.push_ref)
            .field("topic", &self.topic)
            .field("event", &self.event)
            .field("payload", &self.payload)
            .field("private", &self.private)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("report", &self.report)
            .finish()
    }
}

/// What the state machine wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this frame on the open socket.
    Transmit(Frame),
    /// Open a socket, then call [`Connection::handle_open`] (or
    /// [`Connection::handle_connect_error`]).
    Connect,
    /// Close the socket with this code and reason, then call
    /// [`Connection::handle_close`].
    Close {
        /// The close code (1000 for a heartbeat timeout or a disconnect).
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Deliver this event to the application.
    Event(Event),
    /// The outcome of a push that asked for one (acked broadcasts, track,
    /// untrack, [`Connection::push`]): `Ok` on a reply with status `ok`.
    Reply {
        /// The push's ref.
        push_ref: String,
        /// `Ok(())`, or why not (`Timeout`, `Rejected`, `Closed`, `Overflow`).
        result: Result<(), Error>,
    },
    /// A heartbeat went out: ask the token source (`access_token_fn`) for
    /// a fresh token and, if it gives one, pass it to
    /// [`Connection::set_auth`] (realtime-js refreshes on every heartbeat;
    /// only with [`ConnectionConfig::refresh_token_on_heartbeat`]).
    RefreshToken,
    /// POST this broadcast to the REST endpoint, then call
    /// [`Connection::handle_http_result`] (only with
    /// [`ConnectionConfig::http_fallback`]).
    HttpBroadcast(HttpBroadcast),
}

/// A change to mirror into a channel store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUpdate {
    /// The channel was created or changed.
    Upsert(ChannelInfo),
    /// The channel was removed (unsubscribed).
    Remove(String),
}

/// What a channel push carries, encoded once its join_ref is known.
#[derive(Debug)]
enum PushBody {
    /// A text frame: a Phoenix event and its JSON payload.
    Text { event: String, payload_json: String },
    /// A binary kind-3 user broadcast (V2 only).
    UserBroadcast { event: String, payload: Payload },
}

impl PushBody {
    fn encode(
        &self,
        vsn: Vsn,
        join_ref: Option<&str>,
        push_ref: &str,
        topic: &str,
    ) -> Result<Frame, Error> {
        match self {
            PushBody::Text {
                event,
                payload_json,
            } => Ok(Frame::Text(wire::encode_push(
                vsn,
                join_ref,
                Some(push_ref),
                topic,
                event,
                payload_json,
            ))),
            PushBody::UserBroadcast { event, payload } => {
                wire::encode_user_broadcast_push(join_ref, Some(push_ref), topic, event, payload)
                    .map(Frame::Binary)
                    .map_err(|e| field_too_long(&e, topic, event))
            }
        }
    }
}

fn field_too_long(e: &frame::FieldTooLong, topic: &str, event: &str) -> Error {
    let len = match e.0 {
        "topic" => topic.len(),
        "user event" => event.len(),
        _ => 0,
    };
    Error::new(ErrorCode::InvalidInput, e.to_string())
        .with("field", e.0)
        .with("bytes", len.to_string())
}

#[derive(Debug)]
struct Buffered {
    push_ref: String,
    body: PushBody,
    deadline: Instant,
    report: bool,
}

#[derive(Debug)]
struct Pending {
    chan: ChannelId,
    deadline: Instant,
}

#[derive(Debug)]
struct Chan {
    topic: String,
    opts: ChannelOptions,
    state: ChannelState,
    join_ref: Option<String>,
    join_deadline: Option<Instant>,
    rejoin_tries: u32,
    rejoin_at: Option<Instant>,
    bindings: Vec<Binding>,
    pg_ids: Vec<Option<Value>>,
    buffer: VecDeque<Buffered>,
    token: Option<String>,
    /// The token the last join carried.
    join_token: Option<String>,
    presence: ClientPresence,
    presence_join_ref: Option<String>,
    pending_diffs: VecDeque<Diff>,
}

impl Chan {
    fn info(&self) -> ChannelInfo {
        ChannelInfo {
            topic: self.topic.clone(),
            state: self.state,
            join_ref: self.join_ref.clone(),
            options: self.opts.clone(),
        }
    }

    fn bound(&self, f: impl Fn(&Binding) -> bool) -> bool {
        self.bindings.iter().any(f)
    }
}

/// The realtime client's protocol state machine (sans-IO).
///
/// ```
/// use std::time::Instant;
/// use tidings_ws::client::{ChannelOptions, Connection, ConnectionConfig, Frame, Output};
/// let now = Instant::now();
/// let mut c = Connection::new(ConnectionConfig::default());
/// c.connect(now);
/// assert!(c.poll_output().is_some_and(|o| matches!(o, Output::Event(_))));
/// assert_eq!(c.poll_output(), Some(Output::Connect));
/// c.handle_open(now);
/// let room = c.channel("room1", ChannelOptions::default());
/// c.subscribe(room, now).unwrap();
/// let join = std::iter::from_fn(|| c.poll_output())
///     .find_map(|o| match o { Output::Transmit(Frame::Text(t)) => Some(t), _ => None })
///     .unwrap();
/// assert!(join.starts_with(r#"["1","1","realtime:room1","phx_join",{"config":"#));
/// ```
pub struct Connection {
    cfg: ConnectionConfig,
    state: ConnectionState,
    want_open: bool,
    /// When the socket closes for having no channel left.
    empty_close_at: Option<Instant>,
    /// The socket was closed for having no channel: the next subscribe
    /// connects again.
    closed_empty: bool,
    next_ref: u64,
    access_token: Option<String>,
    out: VecDeque<Output>,
    store: VecDeque<StoreUpdate>,
    send_buffer: VecDeque<Frame>,
    hb_next: Option<Instant>,
    hb_pending: Option<(String, Instant)>,
    reconnect_tries: u32,
    reconnect_at: Option<Instant>,
    chans: BTreeMap<ChannelId, Chan>,
    topics: HashMap<String, ChannelId>,
    next_chan: u64,
    pending: HashMap<String, Pending>,
    deadlines: BTreeSet<(Instant, String)>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state)
            .field("channels", &self.chans.len())
            .field("send_buffer", &self.send_buffer.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// `realtime:<topic>` unless it already starts with `realtime:`.
///
/// ```
/// use tidings_ws::client::normalize_topic;
/// assert_eq!(normalize_topic("room1"), "realtime:room1");
/// assert_eq!(normalize_topic("realtime:room1"), "realtime:room1");
/// ```
pub fn normalize_topic(topic: &str) -> String {
    if topic.starts_with("realtime:") {
        topic.to_owned()
    } else {
        format!("realtime:{topic}")
    }
}

fn json_str(s: &str) -> String {
    Value::from(s).to_string()
}

fn json_payload(payload_json: &str) -> Result<Payload, Error> {
    Payload::json(payload_json).map_err(|e| {
        Error::new(ErrorCode::InvalidInput, "payload is not valid JSON")
            .with("reason", e.to_string())
    })
}

fn check_json(payload_json: &str) -> Result<(), Error> {
    serde_json::from_str::<serde::de::IgnoredAny>(payload_json)
        .map(|_| ())
        .map_err(|e| {
            Error::new(ErrorCode::InvalidInput, "payload is not valid JSON")
                .with("reason", e.to_string())
        })
}

fn parse_presences(v: &Value) -> Presences {
    let mut out = Presences::new();
    let Some(obj) = v.as_object() else {
        return out;
    };
    for (key, entry) in obj {
        let metas: Vec<Meta> = entry
            .get("metas")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let mo = m.as_object()?;
                let phx_ref = mo.get("phx_ref")?.as_str()?.to_owned();
                let phx_ref_prev = mo
                    .get("phx_ref_prev")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let mut rest = mo.clone();
                rest.remove("phx_ref");
                rest.remove("phx_ref_prev");
                let bytes = serde_json::to_vec(&Value::Object(rest)).unwrap_or_default();
                Some(Meta {
                    phx_ref,
                    phx_ref_prev,
                    payload: tidings_core::Payload::new(bytes),
                })
            })
            .collect();
        if !metas.is_empty() {
            out.insert(key.clone(), metas);
        }
    }
    out
}

fn meta_value(m: &Meta) -> Value {
    let mut o: Map<String, Value> =
        serde_json::from_slice(m.payload.as_bytes()).unwrap_or_default();
    o.insert("presence_ref".into(), Value::from(m.phx_ref.as_str()));
    Value::Object(o)
}

fn metas_value(ms: &[Meta]) -> Vec<Value> {
    ms.iter().map(meta_value).collect()
}

/// realtime-js's `presenceState()`: key → metas with `presence_ref`.
fn presence_state(p: &ClientPresence) -> PresenceState {
    p.state
        .iter()
        .map(|(k, ms)| (k.clone(), metas_value(ms)))
        .collect()
}

fn same_opt(server: Option<&Value>, client: Option<&str>) -> bool {
    match (server.filter(|v| !v.is_null()), client) {
        (None, None) => true,
        (Some(v), Some(c)) => v.as_str() == Some(c),
        _ => false,
    }
}

impl Connection {
    /// A closed connection with no channels.
    pub fn new(cfg: ConnectionConfig) -> Self {
        Self {
            access_token: cfg.access_token.clone(),
            cfg,
            state: ConnectionState::Closed,
            want_open: false,
            empty_close_at: None,
            closed_empty: false,
            next_ref: 0,
            out: VecDeque::new(),
            store: VecDeque::new(),
            send_buffer: VecDeque::new(),
            hb_next: None,
            hb_pending: None,
            reconnect_tries: 0,
            reconnect_at: None,
            chans: BTreeMap::new(),
            topics: HashMap::new(),
            next_chan: 0,
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
        }
    }

    /// The socket state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// The settings.
    pub fn config(&self) -> &ConnectionConfig {
        &self.cfg
    }

    /// The token joins carry (set by [`set_auth`](Self::set_auth)).
    pub fn access_token(&self) -> Option<&str> {
        self.access_token.as_deref()
    }

    /// A channel's own token (set by [`set_channel_auth`](Self::set_channel_auth)).
    pub fn channel_token(&self, id: ChannelId) -> Option<&str> {
        self.chans.get(&id).and_then(|c| c.token.as_deref())
    }

    /// The next output, or `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next store change, or `None` when drained.
    pub fn poll_store_update(&mut self) -> Option<StoreUpdate> {
        self.store.pop_front()
    }

    fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    fn emit(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn reply(&mut self, push_ref: String, result: Result<(), Error>) {
        self.out.push_back(Output::Reply { push_ref, result });
    }

    fn set_state(&mut self, new: ConnectionState) {
        let old = self.state;
        if old != new {
            self.state = new;
            self.emit(Event::Connection(ConnectionEvent::StateChange { old, new }));
        }
    }

    fn chan(&self, id: ChannelId) -> Result<&Chan, Error> {
        self.chans
            .get(&id)
            .ok_or_else(|| Error::new(ErrorCode::Closed, "the channel was removed (unsubscribed)"))
    }

    fn chan_mut(&mut self, id: ChannelId) -> Result<&mut Chan, Error> {
        self.chans
            .get_mut(&id)
            .ok_or_else(|| Error::new(ErrorCode::Closed, "the channel was removed (unsubscribed)"))
    }

    fn set_chan_state(&mut self, id: ChannelId, new: ChannelState) {
        let Some(c) = self.chans.get_mut(&id) else {
            return;
        };
        let old = c.state;
        c.state = new;
        let info = c.info();
        let topic = c.topic.clone();
        self.store.push_back(StoreUpdate::Upsert(info));
        if old != new {
            self.emit(Event::Channel {
                topic,
                change: ChannelEvent::StateChange { old, new },
            });
        }
    }

    // ---- socket lifecycle ----------------------------------------------

    /// Asks for an open socket: emits [`Output::Connect`] now if closed
    /// (cancelling a scheduled reconnect), and keeps reconnecting after
    /// every close until [`disconnect`](Self::disconnect).
    pub fn connect(&mut self, _now: Instant) {
        self.want_open = true;
        self.closed_empty = false;
        if self.state == ConnectionState::Closed {
            self.reconnect_at = None;
            self.set_state(ConnectionState::Connecting);
            self.out.push_back(Output::Connect);
        }
    }

    /// Closes the socket (1000) and stops reconnecting. Channels stay, and
    /// rejoin on the next [`connect`](Self::connect).
    pub fn disconnect(&mut self, _now: Instant) {
        self.want_open = false;
        self.reconnect_at = None;
        self.empty_close_at = None;
        self.closed_empty = false;
        if matches!(
            self.state,
            ConnectionState::Open | ConnectionState::Connecting
        ) {
            self.set_state(ConnectionState::Closing);
            self.out.push_back(Output::Close {
                code: 1000,
                reason: "client disconnect".into(),
            });
        }
    }

    /// The socket is open: resets the reconnect tries, flushes the send
    /// buffer in order, starts the heartbeat and (re)joins every channel
    /// that wants to be joined, each with a new join_ref.
    pub fn handle_open(&mut self, now: Instant) {
        self.set_state(ConnectionState::Open);
        self.reconnect_tries = 0;
        self.reconnect_at = None;
        while let Some(f) = self.send_buffer.pop_front() {
            self.out.push_back(Output::Transmit(f));
        }
        self.hb_pending = None;
        self.hb_next = Some(now + self.cfg.heartbeat_interval);
        let rejoin: Vec<ChannelId> = self
            .chans
            .iter()
            .filter(|(_, c)| matches!(c.state, ChannelState::Joining | ChannelState::Errored))
            .map(|(id, _)| *id)
            .collect();
        for id in rejoin {
            self.send_join(id, now);
        }
    }

    /// A connect attempt failed: reports `error`, then behaves as
    /// [`handle_close`](Self::handle_close).
    pub fn handle_connect_error(&mut self, now: Instant, error: Error) {
        self.emit(Event::Connection(ConnectionEvent::Error(error)));
        self.handle_close(now, None);
    }

    /// The socket is gone (closed by either side, dropped, or never
    /// opened). Joined channels become errored (they rejoin on the next
    /// open), pushes waiting for a reply fail with `Closed`, and a
    /// reconnect is scheduled with the backoff unless the user disconnected.
    pub fn handle_close(&mut self, now: Instant, code: Option<u16>) {
        if self.state == ConnectionState::Closed {
            return;
        }
        self.hb_next = None;
        self.hb_pending = None;
        self.set_state(ConnectionState::Closed);
        let code_text = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        let ids: Vec<ChannelId> = self.chans.keys().copied().collect();
        for id in ids {
            let c = &self.chans[&id];
            let sent = c.state == ChannelState::Joined
                || (c.state == ChannelState::Joining && c.join_deadline.is_some());
            if sent {
                let err = Error::new(ErrorCode::Closed, "socket closed")
                    .with("topic", c.topic.clone())
                    .with("code", code_text.clone());
                self.error_channel(id, err, now, false);
            }
        }
        let pending: Vec<String> = self.pending.drain().map(|(r, _)| r).collect();
        self.deadlines.clear();
        for r in pending {
            let err = Error::new(ErrorCode::Closed, "socket closed before the reply")
                .with("ref", r.clone());
            self.reply(r, Err(err));
        }
        if self.want_open {
            self.reconnect_tries += 1;
            self.reconnect_at = Some(now + (self.cfg.reconnect_after)(self.reconnect_tries));
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut add = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        add(self.hb_pending.as_ref().map(|(_, d)| *d));
        if self.state == ConnectionState::Open {
            add(self.hb_next);
        }
        add(self.reconnect_at);
        add(self.empty_close_at);
        for c in self.chans.values() {
            add(c.join_deadline);
            add(c.rejoin_at);
            add(c.buffer.front().map(|b| b.deadline));
        }
        add(self.deadlines.first().map(|(d, _)| *d));
        t
    }

    /// Fires every deadline at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Heartbeat: time out, or send the next one.
        if self.hb_pending.as_ref().is_some_and(|(_, d)| *d <= now) {
            self.hb_pending = None;
            self.hb_next = None;
            self.emit(Event::Connection(ConnectionEvent::Error(Error::new(
                ErrorCode::Timeout,
                "heartbeat timeout",
            ))));
            let ids: Vec<ChannelId> = self.chans.keys().copied().collect();
            for id in ids {
                let c = &self.chans[&id];
                if matches!(c.state, ChannelState::Joined | ChannelState::Joining) {
                    let err = Error::new(ErrorCode::Timeout, "heartbeat timeout")
                        .with("topic", c.topic.clone());
                    self.error_channel(id, err, now, false);
                }
            }
            self.set_state(ConnectionState::Closing);
            self.out.push_back(Output::Close {
                code: 1000,
                reason: "heartbeat timeout".into(),
            });
        } else if self.state == ConnectionState::Open && self.hb_next.is_some_and(|t| t <= now) {
            let r = self.make_ref();
            let f = wire::encode_push(self.cfg.vsn, None, Some(&r), "phoenix", "heartbeat", "{}");
            self.out.push_back(Output::Transmit(Frame::Text(f)));
            self.hb_pending = Some((r, now + self.cfg.heartbeat_interval));
            self.hb_next = None;
            if self.cfg.refresh_token_on_heartbeat {
                self.out.push_back(Output::RefreshToken);
            }
        }
        // No channel left for long enough: close (realtime-js).
        if self.empty_close_at.is_some_and(|t| t <= now) {
            self.empty_close_at = None;
            if self.chans.is_empty() && self.want_open {
                self.disconnect(now);
                self.closed_empty = true;
            }
        }
        // Reconnect.
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.reconnect_at = None;
            if self.state == ConnectionState::Closed && self.want_open {
                self.set_state(ConnectionState::Connecting);
                self.out.push_back(Output::Connect);
            }
        }
        // Channels: join timeouts, rejoins, expired buffered pushes.
        let ids: Vec<ChannelId> = self.chans.keys().copied().collect();
        for id in ids {
            self.channel_timeouts(id, now);
        }
        // Pushes waiting for a reply.
        while let Some((d, r)) = self.deadlines.first().cloned() {
            if d > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(p) = self.pending.remove(&r) {
                let topic = self
                    .chans
                    .get(&p.chan)
                    .map(|c| c.topic.clone())
                    .unwrap_or_default();
                let err = Error::new(ErrorCode::Timeout, "push timed out waiting for its reply")
                    .with("topic", topic)
                    .with("ref", r.clone());
                self.reply(r, Err(err));
            }
        }
    }

    fn channel_timeouts(&mut self, id: ChannelId, now: Instant) {
        let open = self.state == ConnectionState::Open;
        let Some(c) = self.chans.get_mut(&id) else {
            return;
        };
        if c.state == ChannelState::Joining && c.join_deadline.is_some_and(|d| d <= now) {
            // phoenix.js: a join timeout sends a leave, errors the channel and
            // schedules a rejoin.
            c.join_deadline = None;
            let topic = c.topic.clone();
            let jr = c.join_ref.clone();
            if open {
                let r = self.make_ref();
                let f = wire::encode_push(
                    self.cfg.vsn,
                    jr.as_deref(),
                    Some(&r),
                    &topic,
                    "phx_leave",
                    "{}",
                );
                self.out.push_back(Output::Transmit(Frame::Text(f)));
            }
            let err = Error::new(ErrorCode::Timeout, "join timed out").with("topic", topic);
            self.error_channel(id, err, now, true);
        }
        let Some(c) = self.chans.get_mut(&id) else {
            return;
        };
        if c.state == ChannelState::Errored && c.rejoin_at.is_some_and(|t| t <= now) {
            c.rejoin_at = None;
            if open {
                self.send_join(id, now);
            }
        }
        let Some(c) = self.chans.get_mut(&id) else {
            return;
        };
        let mut expired = Vec::new();
        while c.buffer.front().is_some_and(|b| b.deadline <= now) {
            if let Some(b) = c.buffer.pop_front() {
                expired.push((b.push_ref, b.report));
            }
        }
        let topic = c.topic.clone();
        for (r, report) in expired {
            if report {
                let err = Error::new(
                    ErrorCode::Timeout,
                    "push timed out before the channel joined",
                )
                .with("topic", topic.clone())
                .with("ref", r.clone());
                self.reply(r, Err(err));
            }
        }
    }

    fn error_channel(&mut self, id: ChannelId, err: Error, now: Instant, schedule: bool) {
        let open = self.state == ConnectionState::Open;
        let rejoin_after = Arc::clone(&self.cfg.rejoin_after);
        let Some(c) = self.chans.get_mut(&id) else {
            return;
        };
        c.join_deadline = None;
        c.rejoin_at = None;
        if schedule && open {
            c.rejoin_tries += 1;
            c.rejoin_at = Some(now + rejoin_after(c.rejoin_tries));
        }
        let topic = c.topic.clone();
        self.emit(Event::Channel {
            topic,
            change: ChannelEvent::Error(err),
        });
        self.set_chan_state(id, ChannelState::Errored);
    }

    fn join_payload(&self, c: &Chan) -> String {
        let pg: Vec<Value> = c
            .bindings
            .iter()
            .filter_map(|b| match b {
                Binding::PostgresChanges(f) => Some(f.to_json()),
                _ => None,
            })
            .collect();
        let presence_enabled =
            c.opts.presence_enabled || c.bound(|b| matches!(b, Binding::Presence { .. }));
        // Written by hand to keep realtime-js's key order.
        let mut p = format!(
            r#"{{"config":{{"broadcast":{{"ack":{},"self":{}}},"presence":{{"key":{},"enabled":{}}},"postgres_changes":{},"private":{}}}"#,
            c.opts.broadcast_ack,
            c.opts.broadcast_self,
            json_str(&c.opts.presence_key),
            presence_enabled,
            Value::Array(pg),
            c.opts.private,
        );
        if let Some(t) = c.token.as_ref().or(self.access_token.as_ref()) {
            p.push_str(r#","access_token":"#);
            p.push_str(&json_str(t));
        }
        p.push('}');
        p
    }

    fn send_join(&mut self, id: ChannelId, now: Instant) {
        let jr = self.make_ref();
        let timeout = self.cfg.timeout;
        let Some(c) = self.chans.get_mut(&id) else {
            return;
        };
        c.join_ref = Some(jr.clone());
        c.join_deadline = Some(now + timeout);
        c.rejoin_at = None;
        c.join_token = c.token.clone().or_else(|| self.access_token.clone());
        let c = &self.chans[&id];
        let payload = self.join_payload(c);
        let f = wire::encode_push(
            self.cfg.vsn,
            Some(&jr),
            Some(&jr),
            &c.topic,
            "phx_join",
            &payload,
        );
        self.out.push_back(Output::Transmit(Frame::Text(f)));
        self.set_chan_state(id, ChannelState::Joining);
    }

    // ---- channels ---------------------------------------------------------

    /// The channel for `topic` (prefixed with `realtime:` when missing),
    /// created closed with `opts` if new; an existing channel is returned
    /// as it is (its options unchanged).
    pub fn channel(&mut self, topic: &str, opts: ChannelOptions) -> ChannelId {
        let topic = normalize_topic(topic);
        if let Some(id) = self.topics.get(&topic) {
            return *id;
        }
        self.next_chan += 1;
        let id = ChannelId(self.next_chan);
        let c = Chan {
            topic: topic.clone(),
            opts,
            state: ChannelState::Closed,
            join_ref: None,
            join_deadline: None,
            rejoin_tries: 0,
            rejoin_at: None,
            bindings: Vec::new(),
            pg_ids: Vec::new(),
            buffer: VecDeque::new(),
            token: None,
            join_token: None,
            presence: ClientPresence::default(),
            presence_join_ref: None,
            pending_diffs: VecDeque::new(),
        };
        self.store.push_back(StoreUpdate::Upsert(c.info()));
        self.chans.insert(id, c);
        self.topics.insert(topic, id);
        self.empty_close_at = None;
        id
    }

    /// The channel registered for `topic` (normalized), if any.
    pub fn channel_id(&self, topic: &str) -> Option<ChannelId> {
        self.topics.get(&normalize_topic(topic)).copied()
    }

    /// A channel's store view.
    pub fn channel_info(&self, id: ChannelId) -> Option<ChannelInfo> {
        self.chans.get(&id).map(Chan::info)
    }

    /// Every channel's store view, in creation order.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        self.chans.values().map(Chan::info).collect()
    }

    /// A channel's presence state (realtime-js `presenceState()`).
    pub fn presence_state(&self, id: ChannelId) -> Option<PresenceState> {
        self.chans.get(&id).map(|c| presence_state(&c.presence))
    }

    /// Adds a binding. Presence bindings turn `presence.enabled` on, and
    /// postgres bindings are listed in the join, so add them before
    /// [`subscribe`](Self::subscribe) (later ones apply from the next join).
    pub fn on(&mut self, id: ChannelId, binding: Binding) -> Result<(), Error> {
        let c = self.chan_mut(id)?;
        match &binding {
            Binding::Broadcast { event } if event.is_empty() => {
                return Err(Error::new(
                    ErrorCode::InvalidInput,
                    "a broadcast binding needs an event name or *",
                ));
            }
            Binding::Presence { event }
                if !["join", "leave", "sync", "*"]
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(event)) =>
            {
                return Err(Error::new(
                    ErrorCode::InvalidInput,
                    "a presence binding's event is join, leave, sync or *",
                )
                .with("event", event.chars().take(64).collect::<String>()));
            }
            Binding::PostgresChanges(f) => {
                if c.bound(|b| b == &binding) {
                    return Err(Error::new(
                        ErrorCode::InvalidInput,
                        "duplicate postgres_changes binding",
                    )
                    .with("topic", c.topic.clone()));
                }
                if ChangeKind::parse(&f.event).is_none() && f.event != "*" {
                    return Err(Error::new(
                        ErrorCode::InvalidInput,
                        "a postgres_changes event is *, INSERT, UPDATE or DELETE",
                    )
                    .with("event", f.event.chars().take(64).collect::<String>()));
                }
                c.pg_ids.push(None);
            }
            _ => {}
        }
        c.bindings.push(binding);
        Ok(())
    }

    /// Joins the channel: now if the socket is open, else as soon as it
    /// opens. A joined or joining channel is left as it is.
    pub fn subscribe(&mut self, id: ChannelId, now: Instant) -> Result<(), Error> {
        if self.closed_empty && self.chans.contains_key(&id) {
            self.closed_empty = false;
            self.connect(now);
        }
        let open = self.state == ConnectionState::Open;
        let c = self.chan_mut(id)?;
        match c.state {
            ChannelState::Joined | ChannelState::Joining => Ok(()),
            ChannelState::Leaving => Err(Error::new(ErrorCode::Closed, "the channel is leaving")),
            ChannelState::Closed | ChannelState::Errored => {
                c.rejoin_tries = 0;
                if open {
                    self.send_join(id, now);
                } else {
                    c.join_ref = None;
                    c.join_deadline = None;
                    c.rejoin_at = None;
                    self.set_chan_state(id, ChannelState::Joining);
                }
                Ok(())
            }
        }
    }

    /// Leaves the channel (a `phx_leave` if it was joined) and removes it:
    /// buffered and unanswered pushes fail with `Closed`; the same topic
    /// makes a new channel afterwards. The last channel's removal schedules
    /// the socket's close after
    /// [`disconnect_when_empty_after`](ConnectionConfig::disconnect_when_empty_after).
    pub fn unsubscribe(&mut self, id: ChannelId, now: Instant) -> Result<(), Error> {
        let open = self.state == ConnectionState::Open;
        let c = self.chans.remove(&id).ok_or_else(|| {
            Error::new(ErrorCode::Closed, "the channel was removed (unsubscribed)")
        })?;
        if self.chans.is_empty() && self.want_open {
            self.empty_close_at = self.cfg.disconnect_when_empty_after.map(|d| now + d);
        }
        self.topics.remove(&c.topic);
        let sent = c.state == ChannelState::Joined
            || (c.state == ChannelState::Joining && c.join_deadline.is_some());
        if open && sent {
            let r = self.make_ref();
            let f = wire::encode_push(
                self.cfg.vsn,
                c.join_ref.as_deref(),
                Some(&r),
                &c.topic,
                "phx_leave",
                "{}",
            );
            self.out.push_back(Output::Transmit(Frame::Text(f)));
        }
        let closed = |r: &str| {
            Error::new(ErrorCode::Closed, "the channel was unsubscribed")
                .with("topic", c.topic.clone())
                .with("ref", r.to_owned())
        };
        for b in &c.buffer {
            if b.report {
                self.out.push_back(Output::Reply {
                    push_ref: b.push_ref.clone(),
                    result: Err(closed(&b.push_ref)),
                });
            }
        }
        let mine: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.chan == id)
            .map(|(r, _)| r.clone())
            .collect();
        for r in mine {
            if let Some(p) = self.pending.remove(&r) {
                self.deadlines.remove(&(p.deadline, r.clone()));
            }
            let e = closed(&r);
            self.reply(r, Err(e));
        }
        if c.state != ChannelState::Closed {
            self.emit(Event::Channel {
                topic: c.topic.clone(),
                change: ChannelEvent::StateChange {
                    old: c.state,
                    new: ChannelState::Closed,
                },
            });
        }
        self.store.push_back(StoreUpdate::Remove(c.topic));
        Ok(())
    }

    fn channel_push(
        &mut self,
        id: ChannelId,
        event: &str,
        payload: String,
        now: Instant,
        report: bool,
    ) -> Result<String, Error> {
        let body = PushBody::Text {
            event: event.to_owned(),
            payload_json: payload,
        };
        self.channel_push_body(id, body, now, report)
    }

    /// Sends a push now if the channel is joined on an open socket, else
    /// keeps it in the channel's push buffer (oldest dropped past its
    /// capacity) until the join succeeds.
    fn channel_push_body(
        &mut self,
        id: ChannelId,
        body: PushBody,
        now: Instant,
        report: bool,
    ) -> Result<String, Error> {
        let open = self.state == ConnectionState::Open;
        let (vsn, timeout, cap) = (
            self.cfg.vsn,
            self.cfg.timeout,
            self.cfg.push_buffer_capacity,
        );
        let r = self.make_ref();
        let c = self.chan_mut(id)?;
        if matches!(c.state, ChannelState::Closed | ChannelState::Leaving) {
            return Err(Error::new(
                ErrorCode::Closed,
                "subscribe the channel before pushing to it",
            )
            .with("topic", c.topic.clone())
            .with("state", c.state.as_str()));
        }
        if open && c.state == ChannelState::Joined {
            let f = body.encode(vsn, c.join_ref.as_deref(), &r, &c.topic)?;
            self.out.push_back(Output::Transmit(f));
            if report {
                let deadline = now + timeout;
                self.pending
                    .insert(r.clone(), Pending { chan: id, deadline });
                self.deadlines.insert((deadline, r.clone()));
            }
            return Ok(r);
        }
        let mut dropped = None;
        if c.buffer.len() >= cap.max(1) {
            dropped = c.buffer.pop_front();
        }
        c.buffer.push_back(Buffered {
            push_ref: r.clone(),
            body,
            deadline: now + timeout,
            report,
        });
        let topic = c.topic.clone();
        if let Some(d) = dropped.filter(|d| d.report) {
            let err = Error::new(ErrorCode::Overflow, "discarded push due to buffer overflow")
                .with("topic", topic)
                .with("ref", d.push_ref.clone());
            self.reply(d.push_ref, Err(err));
        }
        Ok(r)
    }

    /// Sends a broadcast (`{type: "broadcast", event, payload}`) with no
    /// reply expected; buffered until the channel is joined.
    pub fn broadcast(
        &mut self,
        id: ChannelId,
        event: &str,
        payload_json: &str,
        now: Instant,
    ) -> Result<String, Error> {
        let payload = json_payload(payload_json)?;
        self.push_broadcast(id, event, payload, now, false)
    }

    /// Sends a broadcast whose server reply is reported as
    /// [`Output::Reply`] under the returned ref. Needs `broadcast.ack`.
    pub fn broadcast_with_ack(
        &mut self,
        id: ChannelId,
        event: &str,
        payload_json: &str,
        now: Instant,
    ) -> Result<String, Error> {
        self.check_ack(id, "broadcast_with_ack")?;
        let payload = json_payload(payload_json)?;
        self.push_broadcast(id, event, payload, now, true)
    }

    /// Sends a broadcast with a binary payload and no reply expected
    /// (realtime-js `send` with an `ArrayBuffer`): on V2 a binary kind-3
    /// frame with payload encoding 0, buffered until the channel is joined
    /// like any push. V1 has no binary user broadcast: an `Unsupported`
    /// error. The topic and event must fit the frame header (255 bytes
    /// each), else `InvalidInput`. With
    /// [`http_fallback`](ConnectionConfig::http_fallback), a channel that
    /// cannot push emits an [`Output::HttpBroadcast`] for the single
    /// endpoint instead.
    ///
    /// ```
    /// use std::time::Instant;
    /// use tidings_ws::client::{ChannelOptions, Connection, ConnectionConfig, Frame, Output};
    /// let now = Instant::now();
    /// let mut c = Connection::new(ConnectionConfig::default()); // vsn 2.0.0
    /// let room = c.channel("r", ChannelOptions::default());
    /// c.connect(now);
    /// c.handle_open(now);
    /// c.subscribe(room, now).unwrap(); // join ref "1"
    /// c.handle_text(now, r#"["1","1","realtime:r","phx_reply",{"status":"ok","response":{}}]"#).unwrap();
    /// c.broadcast_binary(room, "e", &[0xff], now).unwrap(); // ref "2"
    /// let sent = std::iter::from_fn(|| c.poll_output())
    ///     .find_map(|o| match o { Output::Transmit(Frame::Binary(b)) => Some(b), _ => None })
    ///     .unwrap();
    /// assert_eq!(sent, b"\x03\x01\x01\x0a\x01\x00\x00" /* header */
    ///     .iter().chain(b"12realtime:re\xff").copied().collect::<Vec<u8>>());
    /// ```
    pub fn broadcast_binary(
        &mut self,
        id: ChannelId,
        event: &str,
        bytes: &[u8],
        now: Instant,
    ) -> Result<String, Error> {
        self.push_broadcast(id, event, Payload::Binary(bytes.to_vec()), now, false)
    }

    /// [`broadcast_binary`](Self::broadcast_binary) whose server reply is
    /// reported as [`Output::Reply`] under the returned ref (correlated by
    /// ref, as for JSON broadcasts). Needs `broadcast.ack`.
    pub fn broadcast_binary_with_ack(
        &mut self,
        id: ChannelId,
        event: &str,
        bytes: &[u8],
        now: Instant,
    ) -> Result<String, Error> {
        self.check_ack(id, "broadcast_binary_with_ack")?;
        self.push_broadcast(id, event, Payload::Binary(bytes.to_vec()), now, true)
    }

    fn check_ack(&self, id: ChannelId, what: &str) -> Result<(), Error> {
        let c = self.chan(id)?;
        if c.opts.broadcast_ack {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::InvalidInput,
            format!("{what} needs the channel option broadcast.ack"),
        )
        .with("topic", c.topic.clone()))
    }

    /// The one broadcast path: JSON goes in a text push, bytes in a binary
    /// kind-3 frame; either goes over HTTP when the fallback applies.
    fn push_broadcast(
        &mut self,
        id: ChannelId,
        event: &str,
        payload: Payload,
        now: Instant,
        ack: bool,
    ) -> Result<String, Error> {
        let open = self.state == ConnectionState::Open;
        let c = self.chan(id)?;
        if let Payload::Binary(_) = payload {
            if self.cfg.vsn == Vsn::V1 {
                return Err(Error::new(
                    ErrorCode::Unsupported,
                    "binary broadcasts need vsn 2.0.0 (V1 has no binary user broadcast); \
                     use http_send_binary, or connect with Vsn::V2",
                )
                .with("topic", c.topic.clone()));
            }
            // The same checks whichever way it goes, so the outcome does not
            // depend on the socket's state.
            wire::encode_user_broadcast_push(None, None, &c.topic, event, &Payload::Binary(vec![]))
                .map_err(|e| field_too_long(&e, &c.topic, event))?;
        }
        // realtime-js `send`: a channel that cannot push (`!canPush()`)
        // sends broadcasts over HTTP instead.
        if self.cfg.http_fallback && !(open && c.state == ChannelState::Joined) {
            let req = HttpBroadcast {
                push_ref: String::new(),
                topic: c.topic.clone(),
                event: event.to_owned(),
                payload,
                private: c.opts.private,
                token: c.token.clone().or_else(|| self.access_token.clone()),
                report: ack,
            };
            let r = self.make_ref();
            self.out.push_back(Output::HttpBroadcast(HttpBroadcast {
                push_ref: r.clone(),
                ..req
            }));
            return Ok(r);
        }
        let body = match payload {
            Payload::Json(j) => PushBody::Text {
                event: "broadcast".to_owned(),
                payload_json: format!(
                    r#"{{"type":"broadcast","event":{},"payload":{}}}"#,
                    json_str(event),
                    j.get()
                ),
            },
            bin @ Payload::Binary(_) => PushBody::UserBroadcast {
                event: event.to_owned(),
                payload: bin,
            },
        };
        self.channel_push_body(id, body, now, ack)
    }

    /// Tracks this client's presence with `payload_json` (an object).
    pub fn track(
        &mut self,
        id: ChannelId,
        payload_json: &str,
        now: Instant,
    ) -> Result<String, Error> {
        check_json(payload_json)?;
        let p = format!(r#"{{"type":"presence","event":"track","payload":{payload_json}}}"#);
        self.channel_push(id, "presence", p, now, true)
    }

    /// Stops tracking this client's presence.
    pub fn untrack(&mut self, id: ChannelId, now: Instant) -> Result<String, Error> {
        self.channel_push(
            id,
            "presence",
            r#"{"type":"presence","event":"untrack"}"#.into(),
            now,
            true,
        )
    }

    /// Any push on a channel, its reply reported as [`Output::Reply`].
    pub fn push(
        &mut self,
        id: ChannelId,
        event: &str,
        payload_json: &str,
        now: Instant,
    ) -> Result<String, Error> {
        check_json(payload_json)?;
        self.channel_push(id, event, payload_json.to_owned(), now, true)
    }

    /// A socket-level message outside any channel (the seed's lower-level
    /// `send`): sent now if open, else kept in the send buffer (oldest
    /// dropped past its capacity) and flushed in order on open.
    pub fn push_raw(
        &mut self,
        topic: &str,
        event: &str,
        payload_json: &str,
        _now: Instant,
    ) -> Result<String, Error> {
        check_json(payload_json)?;
        let r = self.make_ref();
        let f = Frame::Text(wire::encode_push(
            self.cfg.vsn,
            None,
            Some(&r),
            topic,
            event,
            payload_json,
        ));
        if self.state == ConnectionState::Open {
            self.out.push_back(Output::Transmit(f));
        } else {
            if self.send_buffer.len() >= self.cfg.send_buffer_capacity.max(1) {
                self.send_buffer.pop_front();
            }
            self.send_buffer.push_back(f);
        }
        Ok(r)
    }

    /// Sets the token for every channel: future joins carry it, and every
    /// joined channel (without its own token) gets an `access_token` push
    /// when it changed.
    pub fn set_auth(&mut self, token: Option<String>, now: Instant) {
        if self.access_token == token {
            return;
        }
        self.access_token.clone_from(&token);
        let Some(t) = token else {
            return;
        };
        let joined: Vec<ChannelId> = self
            .chans
            .iter()
            .filter(|(_, c)| c.state == ChannelState::Joined && c.token.is_none())
            .map(|(id, _)| *id)
            .collect();
        let payload = format!(r#"{{"access_token":{}}}"#, json_str(&t));
        for id in joined {
            let _ = self.channel_push(id, "access_token", payload.clone(), now, false);
        }
    }

    /// The outcome of an [`Output::HttpBroadcast`]: an [`Output::Reply`]
    /// when someone waits for it, else a failure is reported as a
    /// [`ChannelEvent::Error`] on its topic (the channel's state is
    /// unchanged).
    pub fn handle_http_result(
        &mut self,
        _now: Instant,
        req: &HttpBroadcast,
        result: Result<(), Error>,
    ) {
        if req.report {
            self.reply(req.push_ref.clone(), result);
        } else if let Err(e) = result {
            self.emit(Event::Channel {
                topic: req.topic.clone(),
                change: ChannelEvent::Error(e),
            });
        }
    }

    /// Sets one channel's token (overriding [`set_auth`](Self::set_auth)'s):
    /// its joins carry it, and it is pushed now if the channel is joined.
    pub fn set_channel_auth(
        &mut self,
        id: ChannelId,
        token: &str,
        now: Instant,
    ) -> Result<(), Error> {
        let c = self.chan_mut(id)?;
        c.token = Some(token.to_owned());
        if c.state == ChannelState::Joined {
            let payload = format!(r#"{{"access_token":{}}}"#, json_str(token));
            self.channel_push(id, "access_token", payload, now, false)?;
        }
        Ok(())
    }

    // ---- inbound ----------------------------------------------------------

    /// A text frame from the server. Malformed frames are an error, and
    /// change nothing.
    pub fn handle_text(&mut self, now: Instant, text: &str) -> Result<(), Error> {
        let m = frame::decode_text(self.cfg.vsn, text)
            .map_err(|e| Error::new(ErrorCode::Protocol, e.to_string()))?;
        let payload: Value = match &m.payload {
            Payload::Json(j) => serde_json::from_str(j.get()).unwrap_or(Value::Null),
            Payload::Binary(_) => Value::Null,
        };
        self.handle_message(now, &m, &payload);
        Ok(())
    }

    /// A binary frame from the server (V2: Supabase kind 4, a broadcast).
    pub fn handle_binary(&mut self, _now: Instant, bytes: &[u8]) -> Result<(), Error> {
        if self.cfg.vsn == Vsn::V1 {
            return Err(Error::new(
                ErrorCode::Protocol,
                "binary frame on a vsn=1.0.0 socket",
            ));
        }
        let b = wire::decode_server_binary(bytes)?;
        let Some(id) = self.topics.get(&b.topic).copied() else {
            return Ok(());
        };
        let payload = match b.payload {
            Payload::Json(j) => {
                BroadcastPayload::Json(serde_json::from_str(j.get()).unwrap_or(Value::Null))
            }
            Payload::Binary(v) => BroadcastPayload::Binary(v),
        };
        let meta = b.metadata.and_then(|m| serde_json::from_str(m.get()).ok());
        self.deliver_broadcast(id, b.user_event, payload, meta);
        Ok(())
    }

    fn deliver_broadcast(
        &mut self,
        id: ChannelId,
        event: String,
        payload: BroadcastPayload,
        meta: Option<Value>,
    ) {
        let Some(c) = self.chans.get(&id) else {
            return;
        };
        let lower = event.to_lowercase();
        let hit = c.bound(|b| match b {
            Binding::Broadcast { event: e } => e == "*" || e.to_lowercase() == lower,
            _ => false,
        });
        if hit {
            let topic = c.topic.clone();
            self.emit(Event::Broadcast {
                topic,
                event,
                payload,
                meta,
            });
        }
    }

    fn handle_message(&mut self, now: Instant, m: &frame::Message, payload: &Value) {
        if m.topic == "phoenix" {
            if m.event == "phx_reply"
                && self
                    .hb_pending
                    .as_ref()
                    .is_some_and(|(r, _)| Some(r) == m.msg_ref.as_ref())
            {
                self.hb_pending = None;
                self.hb_next = Some(now + self.cfg.heartbeat_interval);
            }
            return;
        }
        let Some(id) = self.topics.get(&m.topic).copied() else {
            return;
        };
        let c = &self.chans[&id];
        // phoenix.js `isMember`: a non-null join_ref must be the current one.
        if m.join_ref.is_some() && m.join_ref != c.join_ref {
            return;
        }
        let own_ref = m.msg_ref.is_some() && m.msg_ref == c.join_ref;
        match m.event.as_str() {
            "phx_reply" => {
                let status = payload.get("status").and_then(Value::as_str).unwrap_or("");
                let response = payload.get("response").cloned().unwrap_or(Value::Null);
                if c.state == ChannelState::Joining && own_ref {
                    self.on_join_reply(id, now, status, &response);
                } else if let Some(r) = &m.msg_ref
                    && let Some(p) = self.pending.remove(r)
                {
                    self.deadlines.remove(&(p.deadline, r.clone()));
                    let result = if status == "ok" {
                        Ok(())
                    } else {
                        Err(Error::new(ErrorCode::Rejected, reason_text(&response))
                            .with("topic", m.topic.clone())
                            .with("ref", r.clone()))
                    };
                    self.reply(r.clone(), result);
                }
            }
            // realtime-js `_notThisChannelEvent`: lifecycle events must carry
            // this join's ref.
            "phx_close" if own_ref => self.close_channel(id),
            "phx_error" if own_ref => {
                if matches!(c.state, ChannelState::Joined | ChannelState::Joining) {
                    let err = Error::new(
                        ErrorCode::Closed,
                        "the server's channel crashed (phx_error)",
                    )
                    .with("topic", m.topic.clone());
                    self.error_channel(id, err, now, true);
                }
            }
            "presence_state" => {
                let state = parse_presences(payload);
                let c = self.chans.get_mut(&id).expect("looked up above");
                c.presence_join_ref.clone_from(&c.join_ref);
                let mut evs = c.presence.sync_state(&state);
                while let Some(d) = c.pending_diffs.pop_front() {
                    evs.extend(c.presence.sync_diff(&d));
                }
                self.deliver_presence(id, evs);
            }
            "presence_diff" => {
                let diff = Diff {
                    joins: parse_presences(payload.get("joins").unwrap_or(&Value::Null)),
                    leaves: parse_presences(payload.get("leaves").unwrap_or(&Value::Null)),
                };
                let c = self.chans.get_mut(&id).expect("looked up above");
                if c.presence_join_ref.is_none() || c.presence_join_ref != c.join_ref {
                    if c.pending_diffs.len() >= MAX_PENDING_PRESENCE_DIFFS {
                        c.pending_diffs.pop_front();
                    }
                    c.pending_diffs.push_back(diff);
                } else {
                    let evs = c.presence.sync_diff(&diff);
                    self.deliver_presence(id, evs);
                }
            }
            "broadcast" => {
                let Some(event) = payload.get("event").and_then(Value::as_str) else {
                    return;
                };
                let inner = payload.get("payload").cloned().unwrap_or(Value::Null);
                let meta = payload.get("meta").cloned();
                self.deliver_broadcast(id, event.to_owned(), BroadcastPayload::Json(inner), meta);
            }
            "postgres_changes" => self.deliver_postgres(id, payload),
            "system" if c.bound(|b| matches!(b, Binding::System)) => {
                let topic = c.topic.clone();
                self.emit(Event::System {
                    topic,
                    payload: payload.clone(),
                });
            }
            _ => {}
        }
    }

    fn on_join_reply(&mut self, id: ChannelId, now: Instant, status: &str, response: &Value) {
        let vsn = self.cfg.vsn;
        let open = self.state == ConnectionState::Open;
        let c = self.chans.get_mut(&id).expect("caller looked it up");
        c.join_deadline = None;
        if status != "ok" {
            let reason = reason_text(response);
            let code = if reason.starts_with("Unauthorized")
                || reason.contains("JWT")
                || reason.contains("Token")
                || reason.contains("permission")
            {
                ErrorCode::Unauthorized
            } else {
                ErrorCode::JoinRejected
            };
            let err = Error::new(code, reason).with("topic", c.topic.clone());
            self.error_channel(id, err, now, true);
            return;
        }
        // realtime-js `_updatePostgresBindings`: the server echoes each
        // postgres binding, in order, with an id.
        if let Some(server) = response.get("postgres_changes").and_then(Value::as_array) {
            let client: Vec<&super::types::PostgresChangesFilter> = c
                .bindings
                .iter()
                .filter_map(|b| match b {
                    Binding::PostgresChanges(f) => Some(f),
                    _ => None,
                })
                .collect();
            let matches = server.len() == client.len()
                && server.iter().zip(&client).all(|(s, f)| {
                    s.get("event").and_then(Value::as_str) == Some(f.event.as_str())
                        && s.get("schema").and_then(Value::as_str) == Some(f.schema.as_str())
                        && same_opt(s.get("table"), f.table.as_deref())
                        && same_opt(s.get("filter"), f.filter.as_deref())
                });
            if !matches {
                let err = Error::new(
                    ErrorCode::Protocol,
                    "mismatch between server and client bindings for postgres changes",
                )
                .with("topic", c.topic.clone());
                let topic = c.topic.clone();
                self.emit(Event::Channel {
                    topic,
                    change: ChannelEvent::Error(err),
                });
                let _ = self.unsubscribe(id, now);
                return;
            }
            c.pg_ids = server.iter().map(|s| s.get("id").cloned()).collect();
        }
        c.rejoin_tries = 0;
        let jr = c.join_ref.clone();
        let topic = c.topic.clone();
        let flushed: Vec<Buffered> = c.buffer.drain(..).collect();
        // The token changed while the join was in flight: push the new one.
        let token = c.token.clone().or_else(|| self.access_token.clone());
        let stale_token = token.is_some() && token != c.join_token;
        self.set_chan_state(id, ChannelState::Joined);
        if let Some(t) = token.filter(|_| stale_token && open) {
            let r = self.make_ref();
            let payload = format!(r#"{{"access_token":{}}}"#, json_str(&t));
            let f = wire::encode_push(
                vsn,
                jr.as_deref(),
                Some(&r),
                &topic,
                "access_token",
                &payload,
            );
            self.out.push_back(Output::Transmit(Frame::Text(f)));
            if let Some(c) = self.chans.get_mut(&id) {
                c.join_token = Some(t);
            }
        }
        for b in flushed {
            if !open {
                break;
            }
            // Fields were checked when the push was made; only the join_ref
            // (a short number) is new, so this cannot fail in practice.
            match b.body.encode(vsn, jr.as_deref(), &b.push_ref, &topic) {
                Ok(f) => self.out.push_back(Output::Transmit(f)),
                Err(e) => {
                    if b.report {
                        self.reply(b.push_ref, Err(e));
                    }
                    continue;
                }
            }
            if b.report {
                self.pending.insert(
                    b.push_ref.clone(),
                    Pending {
                        chan: id,
                        deadline: b.deadline,
                    },
                );
                self.deadlines.insert((b.deadline, b.push_ref));
            }
        }
    }

    fn close_channel(&mut self, id: ChannelId) {
        let Some(c) = self.chans.get_mut(&id) else {
            return;
        };
        c.join_deadline = None;
        c.rejoin_at = None;
        let topic = c.topic.clone();
        let buffered: Vec<Buffered> = c.buffer.drain(..).collect();
        for b in buffered.into_iter().filter(|b| b.report) {
            let err = Error::new(ErrorCode::Closed, "the server closed the channel")
                .with("topic", topic.clone())
                .with("ref", b.push_ref.clone());
            self.reply(b.push_ref, Err(err));
        }
        let mine: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.chan == id)
            .map(|(r, _)| r.clone())
            .collect();
        for r in mine {
            if let Some(p) = self.pending.remove(&r) {
                self.deadlines.remove(&(p.deadline, r.clone()));
            }
            let err = Error::new(ErrorCode::Closed, "the server closed the channel")
                .with("topic", topic.clone())
                .with("ref", r.clone());
            self.reply(r, Err(err));
        }
        self.set_chan_state(id, ChannelState::Closed);
    }

    fn deliver_presence(&mut self, id: ChannelId, evs: Vec<PresenceEvent>) {
        let Some(c) = self.chans.get(&id) else {
            return;
        };
        let wants = |name: &str| {
            c.bound(|b| matches!(b, Binding::Presence { event } if event == "*" || event.eq_ignore_ascii_case(name)))
        };
        let mut out = Vec::new();
        for e in evs {
            let change = match e {
                PresenceEvent::Join {
                    key,
                    current,
                    joined,
                } => PresenceChange::Join {
                    key,
                    current: metas_value(&current),
                    joined: metas_value(&joined),
                },
                PresenceEvent::Leave { key, current, left } => PresenceChange::Leave {
                    key,
                    current: metas_value(&current),
                    left: metas_value(&left),
                },
            };
            out.push(change);
        }
        out.push(PresenceChange::Sync(presence_state(&c.presence)));
        let topic = c.topic.clone();
        let out: Vec<PresenceChange> = out.into_iter().filter(|ch| wants(ch.name())).collect();
        for change in out {
            self.emit(Event::Presence {
                topic: topic.clone(),
                change,
            });
        }
    }

    fn deliver_postgres(&mut self, id: ChannelId, payload: &Value) {
        let Some(c) = self.chans.get(&id) else {
            return;
        };
        let Some(data) = payload.get("data") else {
            return;
        };
        let Some(kind) = data
            .get("type")
            .and_then(Value::as_str)
            .and_then(ChangeKind::parse)
        else {
            return;
        };
        let ids: &[Value] = payload
            .get("ids")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let kind_name = data.get("type").and_then(Value::as_str).unwrap_or("");
        let hit = c
            .bindings
            .iter()
            .filter_map(|b| match b {
                Binding::PostgresChanges(f) => Some(f),
                _ => None,
            })
            .zip(&c.pg_ids)
            .any(|(f, id)| {
                id.as_ref().is_some_and(|id| ids.contains(id))
                    && (f.event == "*" || f.event.eq_ignore_ascii_case(kind_name))
            });
        if hit {
            let topic = c.topic.clone();
            self.emit(Event::PostgresChanges {
                topic,
                kind,
                payload: data.clone(),
            });
        }
    }
}

fn reason_text(response: &Value) -> String {
    match response.get("reason") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => response.to_string(),
    }
}
