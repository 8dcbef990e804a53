//! One Phoenix socket, sans-IO: client frames in, frames to send and
//! requests for the hub out; the hub's answers come back as [`WsOut`] and
//! are rendered against the socket's joins. Time is passed in.
//!
//! The join_ref discipline of P§1.3 lives here: a message whose non-null
//! `join_ref` is not its topic's current one is dropped; replies, closes
//! and channel pushes carry the current join_ref; fan-out frames carry
//! none. A duplicate join closes the old join first.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_json::value::RawValue;
use tidings_core::{Channel, Entropy, InstanceId};
use tungstenite::{Bytes, Utf8Bytes};

use super::join::JoinConfig;
use super::topic::{PHOENIX_TOPIC, TopicError, TopicKind, parse_topic};
use crate::frame::{self, FrameError, FrameIn, Inbound, Message, Payload, UserBroadcast, Vsn};

/// Most channels one socket may join (100, Supabase's per-client default).
pub const MAX_CHANNELS_PER_SOCKET: usize = 100;

/// A socket with no inbound frame for this long is closed (60 s, Phoenix's
/// default; clients heartbeat every 25–30 s).
pub const IDLE_TIMEOUT_MS: u64 = 60_000;

/// A socket's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketConfig {
    /// Most channels joined at once ([`MAX_CHANNELS_PER_SOCKET`]).
    pub max_channels: usize,
    /// Idle timeout in ms ([`IDLE_TIMEOUT_MS`]).
    pub idle_timeout_ms: u64,
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self {
            max_channels: MAX_CHANNELS_PER_SOCKET,
            idle_timeout_ms: IDLE_TIMEOUT_MS,
        }
    }
}

/// Where a reply goes: the push's topic, join_ref and ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The topic.
    pub topic: Arc<str>,
    /// The join the push was made under.
    pub join_ref: Option<String>,
    /// The push's ref.
    pub msg_ref: Option<String>,
}

/// What the hub must do for a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Join a topic; answer with a [`WsOut::Reply`] with `join: true`.
    Join {
        /// Where the reply goes.
        to: ReplyTo,
        /// What the topic is.
        kind: TopicKind,
        /// The Supabase settings.
        config: JoinConfig,
        /// The presence key (the configured one, else generated).
        presence_key: String,
        /// The raw join payload (an instance join carries its receipts).
        payload: String,
    },
    /// Leave a topic (already answered to the client).
    Leave {
        /// What the topic was.
        kind: TopicKind,
    },
    /// Broadcast on a channel; answer with a reply only when `ack` is set.
    Broadcast {
        /// The channel.
        channel: Channel,
        /// The user event.
        event: String,
        /// The user payload.
        payload: UserPayload,
        /// Whether the sender gets it too.
        self_: bool,
        /// Where to send the ok reply, if the join asked for acks.
        ack: Option<ReplyTo>,
    },
    /// Track presence; always answered.
    Track {
        /// Where the reply goes.
        to: ReplyTo,
        /// The channel.
        channel: Channel,
        /// The key.
        key: String,
        /// The meta, a JSON object.
        payload: String,
    },
    /// Untrack presence; always answered.
    Untrack {
        /// Where the reply goes.
        to: ReplyTo,
        /// The channel.
        channel: Channel,
    },
    /// A new access token for a joined topic (no reply unless refused).
    AccessToken {
        /// The topic's reply target (for the refusal's `system` push).
        to: ReplyTo,
        /// What the topic is.
        kind: TopicKind,
        /// The token.
        token: String,
    },
    /// A component command on an instance stream; always answered.
    Command {
        /// Where the reply goes.
        to: ReplyTo,
        /// The instance.
        instance: InstanceId,
        /// `{target, name, params}`, JSON text.
        payload: String,
    },
}

/// A user broadcast's payload as a client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserPayload {
    /// JSON text (every text broadcast, binary kind 3 with encoding 1).
    Json(String),
    /// Opaque bytes (binary kind 3 with encoding 0, e.g. a realtime-js
    /// `ArrayBuffer`): relayed as kind 4 to V2 sockets only.
    Binary(Vec<u8>),
}

/// A frame that goes to many sockets, encoded once per protocol version.
#[derive(Debug)]
pub struct SharedFrame {
    topic: Arc<str>,
    body: Body,
    encoded: [OnceLock<Option<OutFrame>>; 2],
}

#[derive(Debug)]
enum Body {
    /// A text event with a JSON payload.
    Json {
        event: &'static str,
        payload: String,
    },
    /// A user broadcast with a binary payload (kind 4, encoding 0).
    Binary { user_event: String, bytes: Vec<u8> },
}

impl SharedFrame {
    /// A fan-out frame (`join_ref` and `ref` null) with a JSON payload.
    pub fn new(topic: Arc<str>, event: &'static str, payload: String) -> Self {
        Self::with_body(topic, Body::Json { event, payload })
    }

    fn with_body(topic: Arc<str>, body: Body) -> Self {
        Self {
            topic,
            body,
            encoded: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// A Supabase broadcast: `{"type":"broadcast","event":E,"payload":P}`.
    pub fn broadcast(topic: Arc<str>, event: &str, payload_json: &str) -> Self {
        let event = serde_json::to_string(event).expect("strings serialize");
        Self::new(
            topic,
            "broadcast",
            format!(r#"{{"type":"broadcast","event":{event},"payload":{payload_json}}}"#),
        )
    }

    /// A Supabase broadcast with a binary payload: a kind-4 frame (encoding
    /// 0) for V2 sockets, nothing for V1 ones (their wire has no binary
    /// user payloads; the Realtime server drops them too).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tidings_ws::frame::Vsn;
    /// use tidings_ws::server::socket::{OutFrame, SharedFrame};
    /// let f = SharedFrame::binary_broadcast(Arc::from("realtime:r"), "bin", &[1, 2]);
    /// assert_eq!(f.frame(Vsn::V1), None);
    /// let Some(OutFrame::Binary(b)) = f.frame(Vsn::V2) else { panic!() };
    /// assert_eq!(&b[..], b"\x04\x0a\x03\x00\x00realtime:rbin\x01\x02");
    /// ```
    pub fn binary_broadcast(topic: Arc<str>, user_event: &str, bytes: &[u8]) -> Self {
        Self::with_body(
            topic,
            Body::Binary {
                user_event: user_event.to_owned(),
                bytes: bytes.to_vec(),
            },
        )
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The frame for `vsn`, encoded on first use; `None` when the version
    /// cannot carry it (a binary payload for V1, or a kind-4 field over
    /// 255 bytes).
    pub fn frame(&self, vsn: Vsn) -> Option<OutFrame> {
        let slot = &self.encoded[usize::from(vsn == Vsn::V2)];
        slot.get_or_init(|| match &self.body {
            Body::Json { event, payload } => Some(OutFrame::Text(
                frame::encode_text(vsn, None, None, &self.topic, event, payload).into(),
            )),
            Body::Binary { user_event, bytes } => (vsn == Vsn::V2)
                .then(|| {
                    let payload = Payload::Binary(bytes.clone());
                    frame::encode_user_broadcast(&self.topic, user_event, None, &payload).ok()
                })
                .flatten()
                .map(|b| OutFrame::Binary(b.into())),
        })
        .clone()
    }
}

/// What the hub sends a socket. Kept to 24 bytes (the rare, large variants
/// are boxed): an idle socket's outbound queue holds a block of 31 slots.
#[derive(Debug, Clone)]
pub enum WsOut {
    /// A fan-out frame (broadcast, presence diff).
    Shared(Arc<SharedFrame>),
    /// A reply to a push.
    Reply(Box<Reply>),
    /// A channel push on the topic's current join (`presence_state`,
    /// `system`, instance-stream events).
    Push(Box<Push>),
    /// The server stops a channel: `phx_close`.
    Close {
        /// The topic.
        topic: Arc<str>,
    },
    /// Close the socket with this code (1001/1012: please reconnect).
    Disconnect(u16),
}

// An idle socket keeps one queue block of 31 slots: keep the slot small.
const _: () = assert!(size_of::<WsOut>() <= 24, "WsOut grew: box the new variant");

impl WsOut {
    /// A reply to a push: `ok` or `error` with `response`, a JSON object;
    /// `join` marks the answer to a join (an error forgets the join).
    pub fn reply(to: ReplyTo, ok: bool, response: String, join: bool) -> Self {
        Self::Reply(Box::new(Reply {
            to,
            ok,
            response,
            join,
        }))
    }

    /// A push of `event` with `payload` (JSON) on `topic`'s current join.
    pub fn push(topic: Arc<str>, event: impl Into<String>, payload: Arc<str>) -> Self {
        Self::Push(Box::new(Push {
            topic,
            event: event.into(),
            payload,
        }))
    }
}

/// A reply to a push ([`WsOut::Reply`]).
#[derive(Debug, Clone)]
pub struct Reply {
    /// Where it goes.
    pub to: ReplyTo,
    /// `ok` or `error`.
    pub ok: bool,
    /// The response, a JSON object.
    pub response: String,
    /// It answers a join: an error forgets the join.
    pub join: bool,
}

/// A channel push ([`WsOut::Push`]).
#[derive(Debug, Clone)]
pub struct Push {
    /// The topic.
    pub topic: Arc<str>,
    /// The event.
    pub event: String,
    /// The payload, JSON.
    pub payload: Arc<str>,
}

/// A frame to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutFrame {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame (a kind-4 user broadcast).
    Binary(Bytes),
    /// A WebSocket close with a code.
    Close(u16),
}

/// What handling a client frame produced, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write a frame now.
    Send(OutFrame),
    /// Ask the hub.
    Hub(Box<Request>),
}

impl Step {
    fn hub(req: Request) -> Self {
        Step::Hub(Box::new(req))
    }
}

#[derive(Debug, Clone)]
struct Joined {
    join_ref: Option<String>,
    kind: TopicKind,
    config: JoinConfig,
    presence_key: String,
    token: Option<String>,
}

/// One socket's Phoenix state. See the [module docs](self).
///
/// ```
/// use tidings_core::SeededEntropy;
/// use tidings_ws::frame::{FrameIn, Vsn};
/// use tidings_ws::server::socket::{OutFrame, PhoenixSocket, SocketConfig, Step};
///
/// let mut socket = PhoenixSocket::new(Vsn::V2, SocketConfig::default(), 0);
/// let mut steps = Vec::new();
/// let hb = r#"[null,"3","phoenix","heartbeat",{}]"#;
/// socket.handle(10, FrameIn::Text(hb), &mut SeededEntropy::new(1), &mut steps).unwrap();
/// assert_eq!(steps, [Step::Send(OutFrame::Text(
///     r#"[null,"3","phoenix","phx_reply",{"status":"ok","response":{}}]"#.into()))]);
/// ```
#[derive(Debug)]
pub struct PhoenixSocket {
    vsn: Vsn,
    config: SocketConfig,
    topics: HashMap<Arc<str>, Joined>,
    last_inbound: u64,
}

#[derive(Deserialize)]
struct BroadcastJson<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PresenceJson<'a> {
    event: Option<String>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TokenJson {
    access_token: Option<String>,
}

impl PhoenixSocket {
    /// A socket speaking `vsn`, opened at `now` (ms).
    pub fn new(vsn: Vsn, config: SocketConfig, now: u64) -> Self {
        Self {
            vsn,
            config,
            topics: HashMap::new(),
            last_inbound: now,
        }
    }

    /// The protocol version.
    pub fn vsn(&self) -> Vsn {
        self.vsn
    }

    /// Topics joined (or being joined).
    pub fn joined(&self) -> usize {
        self.topics.len()
    }

    /// When the socket idles out unless a frame arrives.
    pub fn deadline(&self) -> u64 {
        self.last_inbound
            .saturating_add(self.config.idle_timeout_ms)
    }

    /// Handles one client frame. A frame that does not decode is refused
    /// with the error and changes nothing; the socket goes on.
    pub fn handle(
        &mut self,
        now: u64,
        frame: FrameIn<'_>,
        entropy: &mut impl Entropy,
        out: &mut Vec<Step>,
    ) -> Result<(), FrameError> {
        self.last_inbound = now;
        match frame::decode(self.vsn, frame)? {
            Inbound::Message(m) => self.message(&m, entropy, out),
            Inbound::UserBroadcast(b) => self.user_broadcast(b, out),
        }
        Ok(())
    }

    fn text(&self, jr: Option<&str>, r: Option<&str>, topic: &str, ev: &str, p: &str) -> Step {
        Step::Send(OutFrame::Text(
            frame::encode_text(self.vsn, jr, r, topic, ev, p).into(),
        ))
    }

    fn reply(&self, to: &ReplyTo, ok: bool, response: &str) -> Step {
        let status = if ok { "ok" } else { "error" };
        self.text(
            to.join_ref.as_deref(),
            to.msg_ref.as_deref(),
            &to.topic,
            "phx_reply",
            &format!(r#"{{"status":"{status}","response":{response}}}"#),
        )
    }

    fn reason(reason: &str) -> String {
        serde_json::json!({ "reason": reason }).to_string()
    }

    fn close_step(&self, topic: &str, join_ref: Option<&str>) -> Step {
        self.text(join_ref, join_ref, topic, "phx_close", "{}")
    }

    fn message(&mut self, m: &Message, entropy: &mut impl Entropy, out: &mut Vec<Step>) {
        let topic: Arc<str> = m.topic.as_str().into();
        let to = ReplyTo {
            topic: topic.clone(),
            join_ref: m.join_ref.clone(),
            msg_ref: m.msg_ref.clone(),
        };
        let payload = match &m.payload {
            Payload::Json(j) => j.get(),
            Payload::Binary(_) => "null",
        };
        if m.topic == PHOENIX_TOPIC && m.event == "heartbeat" {
            out.push(self.reply(
                &ReplyTo {
                    join_ref: None,
                    ..to
                },
                true,
                "{}",
            ));
            return;
        }
        if m.event == "phx_join" {
            self.join(to, payload, entropy, out);
            return;
        }
        let Some(joined) = self.topics.get(&topic) else {
            if m.event == "phx_leave" {
                out.push(self.reply(&to, true, "{}"));
            } else {
                let to = ReplyTo {
                    join_ref: None,
                    ..to
                };
                out.push(self.reply(&to, false, &Self::reason("unmatched topic")));
            }
            return;
        };
        if m.join_ref.is_some() && m.join_ref != joined.join_ref {
            return; // stale: a message for an earlier join of this topic
        }
        // Borrowed, not cloned: this runs for every push (broadcasts).
        match (m.event.as_str(), &joined.kind) {
            ("phx_leave", _) => {
                let Some(joined) = self.topics.remove(&topic) else {
                    return;
                };
                let to = ReplyTo {
                    join_ref: joined.join_ref.clone(),
                    ..to
                };
                out.push(self.reply(&to, true, "{}"));
                out.push(self.close_step(&topic, joined.join_ref.as_deref()));
                out.push(Step::hub(Request::Leave { kind: joined.kind }));
            }
            ("broadcast", TopicKind::Realtime(channel)) => {
                self.broadcast(joined, channel, to, payload, out);
            }
            ("presence", TopicKind::Realtime(channel)) => {
                self.presence(joined, channel, to, payload, out);
            }
            ("access_token", kind) => {
                let token = serde_json::from_str::<TokenJson>(payload)
                    .ok()
                    .and_then(|t| t.access_token);
                let Some(token) = token else { return };
                if token.starts_with("sb_") || joined.token.as_deref() == Some(token.as_str()) {
                    return;
                }
                let kind = kind.clone();
                if let Some(j) = self.topics.get_mut(&topic) {
                    j.token = Some(token.clone());
                }
                out.push(Step::hub(Request::AccessToken { to, kind, token }));
            }
            ("command", TopicKind::Instance(instance)) => out.push(Step::hub(Request::Command {
                to,
                instance: *instance,
                payload: payload.to_owned(),
            })),
            _ => {} // Supabase ignores other events
        }
    }

    fn broadcast(
        &self,
        joined: &Joined,
        channel: &Channel,
        to: ReplyTo,
        payload: &str,
        out: &mut Vec<Step>,
    ) {
        let Ok(b) = serde_json::from_str::<BroadcastJson<'_>>(payload) else {
            let why = "InvalidBroadcast: payload must be a JSON object";
            self.refuse_broadcast(joined, &to, why, out);
            return;
        };
        let Some(event) = b
            .event
            .and_then(|e| serde_json::from_str::<String>(e.get()).ok())
        else {
            let why = "InvalidBroadcast: event must be a string";
            self.refuse_broadcast(joined, &to, why, out);
            return;
        };
        let user_payload = b.payload.map_or("{}", RawValue::get);
        out.push(Step::hub(Request::Broadcast {
            channel: channel.clone(),
            event,
            payload: UserPayload::Json(user_payload.to_owned()),
            self_: joined.config.broadcast.self_.0,
            ack: joined.config.broadcast.ack.0.then_some(to),
        }));
    }

    fn presence(
        &self,
        joined: &Joined,
        channel: &Channel,
        to: ReplyTo,
        payload: &str,
        out: &mut Vec<Step>,
    ) {
        let p = serde_json::from_str::<PresenceJson<'_>>(payload).ok();
        match p.as_ref().and_then(|p| p.event.as_deref()) {
            Some("track") => {
                let meta = p.and_then(|p| p.payload).map(RawValue::get);
                match meta {
                    Some(meta) if meta.trim_start().starts_with('{') => {
                        out.push(Step::hub(Request::Track {
                            to,
                            channel: channel.clone(),
                            key: joined.presence_key.clone(),
                            payload: meta.to_owned(),
                        }));
                    }
                    _ => out.push(self.reply(
                        &to,
                        false,
                        &Self::reason("Presence track payload must be a map"),
                    )),
                }
            }
            Some("untrack") => out.push(Step::hub(Request::Untrack {
                to,
                channel: channel.clone(),
            })),
            _ => out.push(self.reply(
                &to,
                false,
                &Self::reason("presence event must be \"track\" or \"untrack\""),
            )),
        }
    }

    fn refuse_broadcast(&self, joined: &Joined, to: &ReplyTo, why: &str, out: &mut Vec<Step>) {
        if joined.config.broadcast.ack.0 {
            out.push(self.reply(to, false, &Self::reason(why)));
        }
    }

    fn join(
        &mut self,
        to: ReplyTo,
        payload: &str,
        entropy: &mut impl Entropy,
        out: &mut Vec<Step>,
    ) {
        let kind = match parse_topic(&to.topic) {
            Ok(kind) => kind,
            Err(TopicError::Unmatched) => {
                let to = ReplyTo {
                    join_ref: None,
                    ..to
                };
                out.push(self.reply(&to, false, &Self::reason("unmatched topic")));
                return;
            }
            Err(e) => {
                out.push(self.reply(&to, false, &Self::reason(&e.to_string())));
                return;
            }
        };
        if let Some(old) = self.topics.remove(&to.topic) {
            out.push(self.close_step(&to.topic, old.join_ref.as_deref()));
            out.push(Step::hub(Request::Leave { kind: old.kind }));
        }
        if self.topics.len() >= self.config.max_channels {
            let why = format!(
                "ChannelRateLimitReached: Too many channels (at most {} per socket)",
                self.config.max_channels
            );
            out.push(self.reply(&to, false, &Self::reason(&why)));
            return;
        }
        let config = JoinConfig::parse(payload);
        let presence_key = match config.presence.key.as_deref() {
            Some(k) if !k.is_empty() => k.to_owned(),
            _ => InstanceId::mint(entropy).to_string(),
        };
        self.topics.insert(
            to.topic.clone(),
            Joined {
                join_ref: to.join_ref.clone(),
                kind: kind.clone(),
                config: config.clone(),
                presence_key: presence_key.clone(),
                token: config.access_token.clone(),
            },
        );
        out.push(Step::hub(Request::Join {
            to,
            kind,
            config,
            presence_key,
            payload: payload.to_owned(),
        }));
    }

    fn user_broadcast(&mut self, b: UserBroadcast, out: &mut Vec<Step>) {
        let topic: Arc<str> = b.topic.as_str().into();
        let to = ReplyTo {
            topic: topic.clone(),
            join_ref: b.join_ref.clone(),
            msg_ref: b.msg_ref.clone(),
        };
        let Some(joined) = self.topics.get(&topic) else {
            let to = ReplyTo {
                join_ref: None,
                ..to
            };
            out.push(self.reply(&to, false, &Self::reason("unmatched topic")));
            return;
        };
        if b.join_ref.is_some() && b.join_ref != joined.join_ref {
            return;
        }
        let TopicKind::Realtime(channel) = &joined.kind else {
            return;
        };
        let payload = match b.payload {
            Payload::Json(p) => UserPayload::Json(p.get().to_owned()),
            Payload::Binary(bytes) => UserPayload::Binary(bytes),
        };
        out.push(Step::hub(Request::Broadcast {
            channel: channel.clone(),
            event: b.user_event,
            payload,
            self_: joined.config.broadcast.self_.0,
            ack: joined.config.broadcast.ack.0.then_some(to),
        }));
    }

    /// Renders what the hub sent into the frame to write, if any: fan-out
    /// for a topic no longer joined is dropped, pushes take the topic's
    /// current join_ref, a refused join is forgotten.
    pub fn render(&mut self, item: &WsOut) -> Option<OutFrame> {
        let text = |s: String| Some(OutFrame::Text(s.into()));
        match item {
            WsOut::Shared(f) => {
                if self.topics.contains_key(f.topic()) {
                    f.frame(self.vsn)
                } else {
                    None
                }
            }
            WsOut::Reply(reply) => {
                let Reply {
                    to,
                    ok,
                    response,
                    join,
                } = &**reply;
                if *join
                    && !*ok
                    && self
                        .topics
                        .get(&to.topic)
                        .is_some_and(|j| j.join_ref == to.join_ref)
                {
                    self.topics.remove(&to.topic);
                }
                let status = if *ok { "ok" } else { "error" };
                text(frame::encode_text(
                    self.vsn,
                    to.join_ref.as_deref(),
                    to.msg_ref.as_deref(),
                    &to.topic,
                    "phx_reply",
                    &format!(r#"{{"status":"{status}","response":{response}}}"#),
                ))
            }
            WsOut::Push(push) => {
                let Push {
                    topic,
                    event,
                    payload,
                } = &**push;
                let jr = self.topics.get(topic)?.join_ref.clone();
                text(frame::encode_text(
                    self.vsn,
                    jr.as_deref(),
                    None,
                    topic,
                    event,
                    payload,
                ))
            }
            WsOut::Close { topic } => {
                let j = self.topics.remove(topic)?;
                let jr = j.join_ref.as_deref();
                text(frame::encode_text(
                    self.vsn,
                    jr,
                    jr,
                    topic,
                    "phx_close",
                    "{}",
                ))
            }
            WsOut::Disconnect(code) => Some(OutFrame::Close(*code)),
        }
    }
}
