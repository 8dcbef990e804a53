//! The Phoenix Channels frame codec, sans-IO: bytes in, typed messages out,
//! and back.
//!
//! * **V1** (`vsn=1.0.0`, the default): a text frame holding a JSON object
//!   `{"topic","event","payload","ref","join_ref"?}`. The server never sends
//!   `join_ref` in V1.
//! * **V2** (`vsn=2.0.0`): a text frame holding a JSON array
//!   `[join_ref, ref, topic, event, payload]` (refs may be `null`; extra
//!   elements are ignored), plus binary frames: clients send kind 0 (a push
//!   with a binary payload) and Supabase's kind 3 (a user broadcast); the
//!   server sends only kind 4 (a user broadcast), because realtime-js cannot
//!   decode kinds 0–2.
//!
//! Refs are opaque strings. Payloads stay unparsed JSON ([`RawValue`]).

use serde_json::value::RawValue;

/// Most bytes in one frame (1 MiB); larger frames are refused unread.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Binary frame kind: a push with a binary payload (client → server).
pub const KIND_PUSH: u8 = 0;
/// Binary frame kind: a Supabase user broadcast push (client → server).
pub const KIND_USER_BROADCAST_PUSH: u8 = 3;
/// Binary frame kind: a Supabase user broadcast (server → client).
pub const KIND_USER_BROADCAST: u8 = 4;

/// The serializer version a socket speaks, from its `vsn` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    /// `1.0.0`: JSON objects.
    V1,
    /// `2.0.0`: JSON arrays and binary frames.
    V2,
}

impl Vsn {
    /// The version a `vsn` query value asks for; absent means 1.0.0.
    ///
    /// ```
    /// use tidings_ws::frame::Vsn;
    /// assert_eq!(Vsn::from_query(None), Ok(Vsn::V1));
    /// assert_eq!(Vsn::from_query(Some("2.0.0")), Ok(Vsn::V2));
    /// assert!(Vsn::from_query(Some("3.0.0")).is_err());
    /// ```
    pub fn from_query(vsn: Option<&str>) -> Result<Self, FrameError> {
        match vsn {
            None | Some("1.0.0") => Ok(Vsn::V1),
            Some("2.0.0") => Ok(Vsn::V2),
            Some(other) => Err(FrameError::UnsupportedVsn(other.chars().take(32).collect())),
        }
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The `vsn` query parameter names no version we speak.
    #[error("unsupported vsn {0:?}; supported: 1.0.0 (the default) and 2.0.0")]
    UnsupportedVsn(String),
    /// The frame is over [`MAX_FRAME_BYTES`].
    #[error("frame has {0} bytes; at most {MAX_FRAME_BYTES} are allowed")]
    TooLarge(usize),
    /// A text frame that is not the JSON shape of its version.
    #[error("invalid {vsn} text frame: {reason}")]
    Text {
        /// `V1 (JSON object)` or `V2 (JSON array)`.
        vsn: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A binary frame on a V1 socket.
    #[error("binary frames need vsn=2.0.0")]
    BinaryOnV1,
    /// A binary frame of a kind clients do not send.
    #[error(
        "binary frame kind {0} is not accepted from clients; expected 0 (push) or 3 (user broadcast push)"
    )]
    Kind(u8),
    /// A binary frame shorter than its header says.
    #[error("binary frame is truncated: {0}")]
    Truncated(&'static str),
    /// A name or ref in a binary frame is not UTF-8.
    #[error("binary frame field {0} is not UTF-8")]
    Utf8(&'static str),
    /// A kind-3 frame with a payload encoding other than 0 (binary) or 1 (JSON).
    #[error("user broadcast payload encoding {0} is unknown; expected 0 (binary) or 1 (JSON)")]
    Encoding(u8),
    /// JSON inside a binary frame (metadata or payload) that does not parse.
    #[error("binary frame field {field} is not valid JSON: {reason}")]
    Json {
        /// Which field.
        field: &'static str,
        /// The parser's message.
        reason: String,
    },
}

/// Unparsed JSON text, compared by its text.
#[derive(Debug, Clone)]
pub struct RawJson(pub Box<RawValue>);

impl RawJson {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson {}

/// A message's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// JSON, unparsed.
    Json(RawJson),
    /// Bytes (binary frames only).
    Binary(Vec<u8>),
}

impl Payload {
    /// A JSON payload from text that must be valid JSON.
    pub fn json(text: &str) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.to_owned()).map(|r| Payload::Json(RawJson(r)))
    }
}

/// One logical Phoenix message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The join this message belongs to (`None` for socket-level messages).
    pub join_ref: Option<String>,
    /// The push's ref, echoed by its reply.
    pub msg_ref: Option<String>,
    /// The topic, e.g. `realtime:room1` or `phoenix`.
    pub topic: String,
    /// The event, e.g. `phx_join`, `heartbeat`, `broadcast`.
    pub event: String,
    /// The payload.
    pub payload: Payload,
}

/// A Supabase user broadcast (binary kinds 3 and 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserBroadcast {
    /// The sender's join (kind 3 only).
    pub join_ref: Option<String>,
    /// The push's ref (kind 3 only).
    pub msg_ref: Option<String>,
    /// The topic.
    pub topic: String,
    /// The user's event name (`payload.event` in realtime-js).
    pub user_event: String,
    /// Optional JSON metadata.
    pub metadata: Option<RawJson>,
    /// The user's payload: JSON (encoding 1) or bytes (encoding 0).
    pub payload: Payload,
}

/// A decoded client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A text frame, or a binary kind-0 push.
    Message(Message),
    /// A binary kind-3 user broadcast push.
    UserBroadcast(UserBroadcast),
}

fn text_err(vsn: Vsn, reason: &dyn std::fmt::Display) -> FrameError {
    FrameError::Text {
        vsn: match vsn {
            Vsn::V1 => "V1 (JSON object)",
            Vsn::V2 => "V2 (JSON array)",
        },
        reason: reason.to_string(),
    }
}

fn opt(vsn: Vsn, v: &RawValue, what: &str) -> Result<Option<String>, FrameError> {
    serde_json::from_str::<Option<String>>(v.get())
        .map_err(|_| text_err(vsn, &format!("{what} must be a string or null")))
}

fn string(vsn: Vsn, v: &RawValue, what: &str) -> Result<String, FrameError> {
    serde_json::from_str::<String>(v.get())
        .map_err(|_| text_err(vsn, &format!("{what} must be a string")))
}

/// Decodes a client text frame.
///
/// ```
/// use tidings_ws::frame::{decode_text, Vsn};
/// let m = decode_text(Vsn::V2, r#"[null,"10","phoenix","heartbeat",{}]"#).unwrap();
/// assert_eq!((m.topic.as_str(), m.event.as_str(), m.msg_ref.as_deref()), ("phoenix", "heartbeat", Some("10")));
/// ```
pub fn decode_text(vsn: Vsn, text: &str) -> Result<Message, FrameError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(text.len()));
    }
    match vsn {
        Vsn::V1 => {
            let o: std::collections::BTreeMap<&str, &RawValue> =
                serde_json::from_str(text).map_err(|e| text_err(vsn, &e))?;
            let field = |name: &str| {
                o.get(name)
                    .copied()
                    .ok_or_else(|| text_err(vsn, &format!("missing field {name:?}")))
            };
            Ok(Message {
                join_ref: o
                    .get("join_ref")
                    .map(|v| opt(vsn, v, "join_ref"))
                    .transpose()?
                    .flatten(),
                msg_ref: opt(vsn, field("ref")?, "ref")?,
                topic: string(vsn, field("topic")?, "topic")?,
                event: string(vsn, field("event")?, "event")?,
                payload: Payload::Json(RawJson(field("payload")?.to_owned())),
            })
        }
        Vsn::V2 => {
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| text_err(vsn, &e))?;
            let [join_ref, msg_ref, topic, event, payload, ..] = items.as_slice() else {
                return Err(text_err(
                    vsn,
                    &format!(
                        "expected 5 elements [join_ref, ref, topic, event, payload]; got {}",
                        items.len()
                    ),
                ));
            };
            Ok(Message {
                join_ref: opt(vsn, join_ref, "join_ref")?,
                msg_ref: opt(vsn, msg_ref, "ref")?,
                topic: string(vsn, topic, "topic")?,
                event: string(vsn, event, "event")?,
                payload: Payload::Json(RawJson((*payload).to_owned())),
            })
        }
    }
}

/// Reads length-prefixed fields off a binary frame.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, FrameError> {
        let (&b, rest) = self.rest.split_first().ok_or(FrameError::Truncated(what))?;
        self.rest = rest;
        Ok(b)
    }

    fn bytes(&mut self, len: u8, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < usize::from(len) {
            return Err(FrameError::Truncated(what));
        }
        let (field, rest) = self.rest.split_at(usize::from(len));
        self.rest = rest;
        Ok(field)
    }

    fn text(&mut self, len: u8, what: &'static str) -> Result<String, FrameError> {
        let bytes = self.bytes(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| FrameError::Utf8(what))
    }
}

fn empty_is_none(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

fn raw_json(bytes: &[u8], field: &'static str) -> Result<RawJson, FrameError> {
    let text = std::str::from_utf8(bytes).map_err(|_| FrameError::Utf8(field))?;
    serde_json::from_str::<&RawValue>(text)
        .map(|r| RawJson(r.to_owned()))
        .map_err(|e| FrameError::Json {
            field,
            reason: e.to_string(),
        })
}

/// Decodes a client binary frame (V2 only): kind 0 or kind 3.
///
/// ```
/// use tidings_ws::frame::{decode_binary, Inbound};
/// // realtime-js: send({type: 'broadcast', event: 'hello', payload: {msg: 'hi'}})
/// let mut f = vec![3, 1, 1, 14, 5, 0, 1];
/// f.extend_from_slice(b"67realtime:room1hello{\"msg\":\"hi\"}");
/// let Inbound::UserBroadcast(b) = decode_binary(&f).unwrap() else { panic!() };
/// assert_eq!((b.topic.as_str(), b.user_event.as_str()), ("realtime:room1", "hello"));
/// ```
pub fn decode_binary(frame: &[u8]) -> Result<Inbound, FrameError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(frame.len()));
    }
    let mut f = Fields { rest: frame };
    match f.byte("kind")? {
        KIND_PUSH => {
            let (jl, rl, tl, el) = (
                f.byte("join_ref size")?,
                f.byte("ref size")?,
                f.byte("topic size")?,
                f.byte("event size")?,
            );
            Ok(Inbound::Message(Message {
                join_ref: empty_is_none(f.text(jl, "join_ref")?),
                msg_ref: empty_is_none(f.text(rl, "ref")?),
                topic: f.text(tl, "topic")?,
                event: f.text(el, "event")?,
                payload: Payload::Binary(f.rest.to_vec()),
            }))
        }
        KIND_USER_BROADCAST_PUSH => {
            let (jl, rl, tl, ul, ml) = (
                f.byte("join_ref size")?,
                f.byte("ref size")?,
                f.byte("topic size")?,
                f.byte("user event size")?,
                f.byte("metadata size")?,
            );
            let encoding = f.byte("payload encoding")?;
            let join_ref = empty_is_none(f.text(jl, "join_ref")?);
            let msg_ref = empty_is_none(f.text(rl, "ref")?);
            let topic = f.text(tl, "topic")?;
            let user_event = f.text(ul, "user event")?;
            let metadata = match f.bytes(ml, "metadata")? {
                [] => None,
                meta => Some(raw_json(meta, "metadata")?),
            };
            let payload = match encoding {
                0 => Payload::Binary(f.rest.to_vec()),
                1 => Payload::Json(raw_json(f.rest, "payload")?),
                other => return Err(FrameError::Encoding(other)),
            };
            Ok(Inbound::UserBroadcast(UserBroadcast {
                join_ref,
                msg_ref,
                topic,
                user_event,
                metadata,
                payload,
            }))
        }
        other => Err(FrameError::Kind(other)),
    }
}

/// Decodes a client frame of either type on a socket speaking `vsn`.
pub fn decode(vsn: Vsn, frame: FrameIn<'_>) -> Result<Inbound, FrameError> {
    match frame {
        FrameIn::Text(t) => decode_text(vsn, t).map(Inbound::Message),
        FrameIn::Binary(_) if vsn == Vsn::V1 => Err(FrameError::BinaryOnV1),
        FrameIn::Binary(b) => decode_binary(b),
    }
}

/// A WebSocket data frame as received.
#[derive(Debug, Clone, Copy)]
pub enum FrameIn<'a> {
    /// A text frame.
    Text(&'a str),
    /// A binary frame.
    Binary(&'a [u8]),
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn json_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), json_str)
}

/// Encodes a server message with a JSON payload as a text frame.
/// V1 never carries `join_ref`.
///
/// ```
/// use tidings_ws::frame::{encode_text, Vsn};
/// let reply = encode_text(Vsn::V2, Some("6"), Some("6"), "realtime:room1", "phx_reply", r#"{"status":"ok","response":{}}"#);
/// assert_eq!(reply, r#"["6","6","realtime:room1","phx_reply",{"status":"ok","response":{}}]"#);
/// ```
pub fn encode_text(
    vsn: Vsn,
    join_ref: Option<&str>,
    msg_ref: Option<&str>,
    topic: &str,
    event: &str,
    payload_json: &str,
) -> String {
    match vsn {
        Vsn::V1 => format!(
            r#"{{"topic":{},"event":{},"payload":{payload_json},"ref":{}}}"#,
            json_str(topic),
            json_str(event),
            json_opt(msg_ref)
        ),
        Vsn::V2 => format!(
            "[{},{},{},{},{payload_json}]",
            json_opt(join_ref),
            json_opt(msg_ref),
            json_str(topic),
            json_str(event)
        ),
    }
}

/// Why a kind-4 frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} has more than 255 bytes and cannot go in a binary frame header")]
pub struct FieldTooLong(pub &'static str);

/// Encodes a Supabase user broadcast as a binary kind-4 frame (server →
/// client; realtime-js decodes it to `{type: "broadcast", event, payload, meta?}`).
pub fn encode_user_broadcast(
    topic: &str,
    user_event: &str,
    metadata_json: Option<&str>,
    payload: &Payload,
) -> Result<Vec<u8>, FieldTooLong> {
    let meta = metadata_json.unwrap_or("");
    let len = |s: &str, what| u8::try_from(s.len()).map_err(|_| FieldTooLong(what));
    let (encoding, body): (u8, &[u8]) = match payload {
        Payload::Binary(b) => (0, b),
        Payload::Json(j) => (1, j.get().as_bytes()),
    };
    let mut out = Vec::with_capacity(5 + topic.len() + user_event.len() + meta.len() + body.len());
    out.extend_from_slice(&[
        KIND_USER_BROADCAST,
        len(topic, "topic")?,
        len(user_event, "user event")?,
        len(meta, "metadata")?,
        encoding,
    ]);
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(user_event.as_bytes());
    out.extend_from_slice(meta.as_bytes());
    out.extend_from_slice(body);
    Ok(out)
}
