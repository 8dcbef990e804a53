//! Supabase's REST broadcast endpoints (P§3.4, checklist P§10 item 12),
//! sans-IO: what a request means, or why it is refused. `tidings-smol`
//! serves them on the same listener as SSE and the Phoenix sockets:
//!
//! * `POST /api/broadcast` with
//!   `{"messages":[{"topic":"<name>","event":"…","payload":<json>,"private":<bool>?}]}`;
//! * `POST /api/broadcast/<topic>/events/<event>[?private=true]` with the raw
//!   payload as the body (`channel.httpSend`): JSON, or any bytes with
//!   `Content-Type: application/octet-stream` (what realtime-js sends for an
//!   `ArrayBuffer` or typed array); topic and event are percent-decoded;
//!
//! both also under `/realtime/v1` (the base supabase-js gives realtime-js;
//! realtime-js derives `<base>/api/broadcast` from its socket URL). `topic`
//! is the Supabase sub-topic, without `realtime:`: each message goes to the
//! sockets joined to `realtime:<topic>`, i.e. the channel
//! `{:realtime, "<topic>"}` (pages bound to it too), as the text `broadcast`
//! event `{"type":"broadcast","event":…,"payload":…}`. There is no sender to
//! echo to.
//!
//! A binary body is broadcast as a binary [`Payload`]
//! ([`Payload::binary`]), as a realtime-js V2 client's `ArrayBuffer`
//! broadcast over the socket is: V2 sockets get it as a kind-4 frame
//! (`4, topic_len, event_len, 0, 0, topic, event, bytes`: no metadata,
//! encoding 0), which realtime-js hands over as an `ArrayBuffer`; V1 sockets
//! and pages get nothing, since their wires embed the payload as JSON (the
//! Realtime server drops binary for V1 sockets too, P§1.2).
//!
//! | status | when |
//! |---|---|
//! | 202, empty body | every message was broadcast |
//! | 401 | the app's `authenticate` hook (`tidings_smol::App::authenticate`) refused the API key (the `apikey` header, else `x-api-key`, else the `apikey` query parameter), or `Authorization` is not `Bearer <token>` |
//! | 403 | the app's `authorize` hook (`tidings_smol::App::authorize`) denied `Access::Broadcast` on a message's channel, given the bearer token |
//! | 404 | a path under the endpoints that is neither shape |
//! | 405 | not a `POST` |
//! | 413 | the body exceeds [`RestConfig::max_body_bytes`] |
//! | 415 | an `application/octet-stream` body on the batch endpoint (it takes JSON only), or another content type that is neither JSON nor `application/octet-stream` |
//! | 422 | bad JSON, a missing or mistyped field, an unknown field, no messages or more than [`RestConfig::max_messages`], a topic that makes no valid channel, an event name that is empty or too long, a binary payload whose `realtime:<topic>` exceeds the kind-4 frame's 255 bytes, `persist` |
//! | 500 | an app hook panicked |
//! | 503 | the hub is not running |
//!
//! Every error body is `{"error": "<what was wrong and what is allowed>"}`
//! ([`RestError::body_json`]; realtime-js shows `body.error`). A batch is
//! all or nothing: it is validated, authenticated and authorized whole
//! before its first message is broadcast, in order.
//!
//! Differences from Supabase, deliberate: a batch over the limit is a 422
//! (Supabase answers 429, as its cap is tied to the events-per-second
//! budget; ours is fixed, so retrying cannot help); a batch with a denied
//! message is refused whole (Supabase skips denied private messages);
//! `private` is checked to be a boolean but routes nowhere different, since
//! Tidings has one channel per name and always asks `authorize`; a message
//! `id` is accepted and ignored (no `meta`); `persist` (replay storage) is
//! refused, as Tidings stores no broadcasts.
//!
//! Parsing and validation ([`route`], [`parse`]) are pure, over a
//! [`RestHead`] and the body. A runtime (`tidings_smol::rest`) reads the
//! request off its listener, answers a refusal with [`RestError::status`],
//! [`RestError::body_json`] and [`RestError::allow`], and hands the
//! validated [`RestCall`] to its hub, which authenticates, authorizes and
//! broadcasts it through the router; the 401 of a refused key, the 403,
//! the 500 and the 503 come from there.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use tidings_core::router::{Action, MAX_ACTION_BYTES};
use tidings_core::{Channel, Payload};

use crate::server::topic::{REALTIME_PREFIX, realtime_channel};

/// The batch endpoint's paths; the single endpoint is
/// `<path>/<topic>/events/<event>`.
pub const BROADCAST_PATHS: [&str; 2] = ["/api/broadcast", "/realtime/v1/api/broadcast"];

/// Default [`RestConfig::max_body_bytes`]: 1 MiB, as a WebSocket message
/// (SPEC §10).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Default [`RestConfig::max_messages`]: 100 per batch (Supabase's free
/// tier allows 100 messages a second).
pub const DEFAULT_MAX_MESSAGES: usize = 100;

/// The REST endpoints' limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestConfig {
    /// Most bytes in a request body ([`DEFAULT_MAX_BODY_BYTES`]); more is a 413.
    pub max_body_bytes: usize,
    /// Most messages in one batch ([`DEFAULT_MAX_MESSAGES`]); more is a 422.
    pub max_messages: usize,
}

impl Default for RestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_messages: DEFAULT_MAX_MESSAGES,
        }
    }
}

/// What the endpoints read of a request besides its body.
#[derive(Debug, Clone, Copy)]
pub struct RestHead<'a> {
    /// `POST`, ….
    pub method: &'a str,
    /// Path and query, as received.
    pub url: &'a str,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The `apikey` header, else `x-api-key`.
    pub apikey: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
}

/// Which endpoint a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST <base>/api/broadcast`: a JSON batch.
    Batch,
    /// `POST <base>/api/broadcast/<topic>/events/<event>`: one message.
    Single {
        /// The channel `{:realtime, "<topic>"}`.
        channel: Channel,
        /// The decoded event name.
        event: Action,
        /// `?private=true`.
        private: bool,
        /// `Content-Type: application/octet-stream`: the body is the
        /// payload's bytes, broadcast as a binary [`Payload`].
        binary: bool,
    },
}

/// One validated broadcast.
#[derive(Debug, Clone)]
pub struct RestMessage {
    /// `{:realtime, "<topic>"}`.
    pub channel: Channel,
    /// The event name.
    pub event: Action,
    /// The payload: JSON as sent (surrounding whitespace trimmed), or a
    /// binary body's bytes as they came ([`Payload::is_binary`]).
    pub payload: Payload,
    /// `private`, as sent (see the module docs).
    pub private: bool,
}

/// A validated request: who calls, and what to broadcast, in order.
#[derive(Debug, Clone)]
pub struct RestCall {
    /// The API key, for the app's `authenticate` hook.
    pub apikey: Option<String>,
    /// The bearer token, for the app's `authorize` hook.
    pub token: Option<String>,
    /// At least one message.
    pub messages: Vec<RestMessage>,
}

/// Why a REST call was refused; [`RestError::status`],
/// [`RestError::body_json`] and [`RestError::allow`] say how it is
/// answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// A path under the endpoints that is neither shape.
    #[error(
        "no endpoint at {path}; use POST <base>/api/broadcast or \
         POST <base>/api/broadcast/<topic>/events/<event>, with <base> empty or /realtime/v1"
    )]
    NotFound {
        /// The path.
        path: String,
    },
    /// Not a `POST`.
    #[error("method {method} is not allowed here; only POST is")]
    MethodNotAllowed {
        /// The method.
        method: String,
    },
    /// The body is larger than allowed.
    #[error("the request body exceeds {max} bytes; at most {max} are allowed")]
    BodyTooLarge {
        /// [`RestConfig::max_body_bytes`].
        max: usize,
    },
    /// The body could not be read.
    #[error("could not read the request body: {0}")]
    BodyUnreadable(String),
    /// An `application/octet-stream` body on the batch endpoint.
    #[error(
        "the batch endpoint takes JSON only (Content-Type: application/json); \
         send a binary payload (application/octet-stream) on its own to \
         POST <base>/api/broadcast/<topic>/events/<event>"
    )]
    BinaryBatch,
    /// A content type that is neither JSON nor `application/octet-stream`.
    #[error(
        "Content-Type must be application/json, or application/octet-stream for a \
         binary payload to POST <base>/api/broadcast/<topic>/events/<event>; got {got:?}"
    )]
    UnsupportedMediaType {
        /// The header's value.
        got: String,
    },
    /// The body or a field is not what the endpoint takes.
    #[error("{0}")]
    Invalid(String),
    /// More messages than allowed in one batch.
    #[error(
        "Too many messages to broadcast, please reduce the batch size: \
         got {got}; at most {max} are allowed"
    )]
    TooManyMessages {
        /// How many came.
        got: usize,
        /// [`RestConfig::max_messages`].
        max: usize,
    },
    /// `Authorization` is present but not `Bearer <token>`.
    #[error("the Authorization header must be `Bearer <token>`")]
    BadAuthorization,
    /// The app's `authenticate` hook refused the key.
    #[error("{0}")]
    Unauthenticated(String),
    /// The app's `authorize` hook denied a broadcast.
    #[error("Unauthorized: cannot broadcast on {topic}: {reason}")]
    Forbidden {
        /// `realtime:<topic>`.
        topic: String,
        /// The app's message.
        reason: String,
    },
    /// An app hook panicked; nothing was broadcast.
    #[error("the app's {hook} hook panicked; nothing was broadcast")]
    HookPanicked {
        /// `authenticate` or `authorize`.
        hook: &'static str,
    },
    /// The hub is not running (or shutting down).
    #[error("the hub is not running")]
    Unavailable,
}

impl RestError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::BodyTooLarge { .. } => 413,
            Self::BodyUnreadable(_) => 400,
            Self::BinaryBatch | Self::UnsupportedMediaType { .. } => 415,
            Self::Invalid(_) | Self::TooManyMessages { .. } => 422,
            Self::BadAuthorization | Self::Unauthenticated(_) => 401,
            Self::Forbidden { .. } => 403,
            Self::HookPanicked { .. } => 500,
            Self::Unavailable => 503,
        }
    }

    /// The JSON body it is answered with, `{"error": "<message>"}` (the
    /// message is its `Display`), as `application/json`.
    ///
    /// ```
    /// use tidings_ws::server::rest::RestError;
    /// let e = RestError::MethodNotAllowed { method: "GET".into() };
    /// assert_eq!(
    ///     e.body_json(),
    ///     r#"{"error":"method GET is not allowed here; only POST is"}"#
    /// );
    /// assert_eq!((e.status(), e.allow()), (405, Some("POST")));
    /// ```
    pub fn body_json(&self) -> String {
        serde_json::json!({ "error": self.to_string() }).to_string()
    }

    /// The `Allow` header a 405 carries (`POST`); `None` for the others.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            Self::MethodNotAllowed { .. } => Some("POST"),
            _ => None,
        }
    }
}

/// Whether `path` (no query) is one of the endpoints or under them.
///
/// ```
/// use tidings_ws::server::rest::is_rest_path;
/// assert!(is_rest_path("/api/broadcast"));
/// assert!(is_rest_path("/realtime/v1/api/broadcast/room1/events/e"));
/// assert!(!is_rest_path("/api/broadcasts"));
/// ```
pub fn is_rest_path(path: &str) -> bool {
    BROADCAST_PATHS.iter().any(|base| {
        path.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Decodes a percent-encoded URL part (`+` stays `+`: realtime-js encodes
/// with `encodeURIComponent`).
fn decode<'a>(part: &'a str, what: &str) -> Result<Cow<'a, str>, RestError> {
    percent_decode_str(part)
        .decode_utf8()
        .map_err(|_| RestError::Invalid(format!("the {what} in the URL is not UTF-8 once decoded")))
}

/// The decoded value of query parameter `name` (`+` is a space there).
fn query_value(query: &str, name: &str) -> Result<Option<String>, RestError> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode_str(k).decode_utf8_lossy() == name {
            let v = v.replace('+', " ");
            return Ok(Some(decode(&v, "query")?.into_owned()));
        }
    }
    Ok(None)
}

/// Whether the query asks for `persist` (replay storage).
fn asks_persist(query: &str) -> bool {
    query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        let key = percent_decode_str(key).decode_utf8_lossy();
        key == "persist" || key.starts_with("persist[")
    })
}

/// The channel a REST topic names, or why it names none.
fn topic_channel(topic: &str, at: &str) -> Result<Channel, RestError> {
    if topic.is_empty() {
        return Err(RestError::Invalid(format!(
            "{at} is empty; a topic is the name after `realtime:`, e.g. \"room1\""
        )));
    }
    realtime_channel(topic).map_err(|e| {
        RestError::Invalid(format!(
            "{at} {topic:?} does not make a valid channel {{:realtime, name}}: {e}"
        ))
    })
}

fn event_action(event: &str, at: &str) -> Result<Action, RestError> {
    Action::new(event).map_err(|_| {
        RestError::Invalid(format!(
            "{at} must be 1 to {MAX_ACTION_BYTES} bytes; got {}",
            event.len()
        ))
    })
}

/// Routes a request to its endpoint: method, path shape, query and
/// content type, without the body.
///
/// ```
/// use tidings_ws::server::rest::{route, Endpoint, RestError, RestHead};
/// let head = |method, url| RestHead {
///     method, url, content_type: Some("application/json"), apikey: None, authorization: None,
/// };
/// assert_eq!(route(&head("POST", "/api/broadcast?apikey=k")), Ok(Endpoint::Batch));
/// let Ok(Endpoint::Single { channel, event, private, binary }) =
///     route(&head("POST", "/api/broadcast/room%201/events/evt%202?private=true"))
/// else { panic!() };
/// assert_eq!(channel.to_string(), r#"{:realtime, "room 1"}"#);
/// assert_eq!((event.as_str(), private, binary), ("evt 2", true, false));
/// let mut bin = RestHead {
///     content_type: Some("application/octet-stream"),
///     ..head("POST", "/api/broadcast/r/events/e")
/// };
/// assert!(matches!(route(&bin), Ok(Endpoint::Single { binary: true, .. })));
/// bin.url = "/api/broadcast";
/// assert_eq!(route(&bin), Err(RestError::BinaryBatch));
/// assert_eq!(route(&head("GET", "/api/broadcast")).unwrap_err().status(), 405);
/// ```
pub fn route(head: &RestHead<'_>) -> Result<Endpoint, RestError> {
    let (path, query) = split_url(head.url);
    let rest = BROADCAST_PATHS
        .iter()
        .find_map(|base| path.strip_prefix(base))
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .ok_or_else(|| RestError::NotFound {
            path: path.to_owned(),
        })?;
    let endpoint = match rest.split('/').collect::<Vec<_>>()[..] {
        [""] => None,
        ["", topic, "events", event] if !event.is_empty() => Some((topic, event)),
        _ => {
            return Err(RestError::NotFound {
                path: path.to_owned(),
            });
        }
    };
    if head.method != "POST" {
        return Err(RestError::MethodNotAllowed {
            method: head.method.to_owned(),
        });
    }
    if asks_persist(query) {
        return Err(RestError::Invalid(
            "persist is not supported: Tidings stores no broadcasts (no replay)".into(),
        ));
    }
    let binary = content_type(head.content_type)? == Body::Binary;
    let Some((topic, event)) = endpoint else {
        return if binary {
            Err(RestError::BinaryBatch)
        } else {
            Ok(Endpoint::Batch)
        };
    };
    let private = match query_value(query, "private")?.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(RestError::Invalid(format!(
                "the private query parameter must be true or false; got {other:?}"
            )));
        }
    };
    let topic = decode(topic, "topic")?;
    let channel = topic_channel(&topic, "the topic")?;
    let topic_bytes = REALTIME_PREFIX.len() + topic.len();
    if binary && topic_bytes > MAX_KIND4_FIELD {
        // The channel takes the name, but no frame could carry it.
        return Err(RestError::Invalid(format!(
            "a binary payload goes out in a kind-4 frame, whose topic \
             ({REALTIME_PREFIX}<topic>) is at most {MAX_KIND4_FIELD} bytes; got {topic_bytes}"
        )));
    }
    Ok(Endpoint::Single {
        channel,
        event: event_action(&decode(event, "event")?, "the event")?,
        private,
        binary,
    })
}

/// The most bytes a kind-4 frame's topic (or event) can have: its length
/// is one byte.
const MAX_KIND4_FIELD: usize = u8::MAX as usize;

/// What a body is, by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// JSON: `application/json`, `application/*+json`, or no content type.
    Json,
    /// `application/octet-stream`: opaque bytes.
    Binary,
}

/// Reads the content type: JSON (or none) or binary; refuses the rest.
fn content_type(value: Option<&str>) -> Result<Body, RestError> {
    let Some(value) = value else {
        return Ok(Body::Json);
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime == "application/octet-stream" {
        Ok(Body::Binary)
    } else if mime == "application/json"
        || (mime.starts_with("application/") && mime.ends_with("+json"))
    {
        Ok(Body::Json)
    } else {
        Err(RestError::UnsupportedMediaType {
            got: value.to_owned(),
        })
    }
}

/// The caller's API key and bearer token.
fn credentials(head: &RestHead<'_>) -> Result<(Option<String>, Option<String>), RestError> {
    let apikey = match head.apikey {
        Some(k) => Some(k.to_owned()),
        None => query_value(split_url(head.url).1, "apikey")?,
    };
    let token = match head.authorization.map(str::trim) {
        None => None,
        Some(value) => {
            let (scheme, token) = value.split_once(' ').ok_or(RestError::BadAuthorization)?;
            let token = token.trim();
            if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
                return Err(RestError::BadAuthorization);
            }
            Some(token.to_owned())
        }
    };
    Ok((apikey, token))
}

const BATCH_SHAPE: &str = r#"expected {"messages": [{"topic": "<name>", "event": "<event>", "payload": <json>, "private": <bool>}]}"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchJson {
    messages: Option<Vec<MessageJson>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageJson {
    topic: Option<String>,
    event: Option<String>,
    payload: Option<Box<RawValue>>,
    private: Option<bool>,
    /// Supabase's optional message id: accepted, not relayed.
    #[allow(dead_code)]
    id: Option<IgnoredAny>,
}

fn payload_of(raw: &RawValue) -> Payload {
    Payload::new(raw.get().as_bytes())
}

fn batch(body: &[u8], config: &RestConfig) -> Result<Vec<RestMessage>, RestError> {
    let json: BatchJson = serde_json::from_slice(body)
        .map_err(|e| RestError::Invalid(format!("invalid request body: {e}; {BATCH_SHAPE}")))?;
    let messages = json.messages.unwrap_or_default();
    if messages.is_empty() {
        return Err(RestError::Invalid(format!(
            "messages is missing or empty; {BATCH_SHAPE}"
        )));
    }
    if messages.len() > config.max_messages {
        return Err(RestError::TooManyMessages {
            got: messages.len(),
            max: config.max_messages,
        });
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let missing = |field: &str| {
                RestError::Invalid(format!(
                    "messages[{i}].{field} is missing or null; {BATCH_SHAPE}"
                ))
            };
            let topic = m.topic.ok_or_else(|| missing("topic"))?;
            let event = m.event.ok_or_else(|| missing("event"))?;
            let payload = m.payload.ok_or_else(|| missing("payload"))?;
            Ok(RestMessage {
                channel: topic_channel(&topic, &format!("messages[{i}].topic"))?,
                event: event_action(&event, &format!("messages[{i}].event"))?,
                payload: payload_of(&payload),
                private: m.private.unwrap_or(false),
            })
        })
        .collect()
}

fn single(body: &[u8]) -> Result<Payload, RestError> {
    let raw: Box<RawValue> = serde_json::from_slice(body).map_err(|e| {
        RestError::Invalid(format!(
            "the body must be the payload as JSON \
             (or raw bytes with Content-Type: application/octet-stream): {e}"
        ))
    })?;
    if raw.get() == "null" {
        return Err(RestError::Invalid(
            "the payload is null; send any other JSON value".into(),
        ));
    }
    Ok(payload_of(&raw))
}

/// Validates a whole request: [`route`], the credentials, then the body.
///
/// ```
/// use tidings_ws::server::rest::{parse, RestConfig, RestHead};
/// let head = RestHead {
///     method: "POST", url: "/api/broadcast", content_type: Some("application/json"),
///     apikey: Some("key"), authorization: Some("Bearer tok"),
/// };
/// let body = br#"{"messages":[{"topic":"room1","event":"e","payload":{"a":1}}]}"#;
/// let call = parse(&head, body, &RestConfig::default()).unwrap();
/// assert_eq!((call.apikey.as_deref(), call.token.as_deref()), (Some("key"), Some("tok")));
/// assert_eq!(call.messages[0].payload.as_bytes(), br#"{"a":1}"#);
/// let bad = parse(&head, br#"{"messages":[]}"#, &RestConfig::default()).unwrap_err();
/// assert_eq!(bad.status(), 422);
///
/// let bin = RestHead {
///     url: "/api/broadcast/room1/events/e", content_type: Some("application/octet-stream"), ..head
/// };
/// let call = parse(&bin, &[0, 0x80, 0xff], &RestConfig::default()).unwrap();
/// assert!(call.messages[0].payload.is_binary());
/// assert_eq!(call.messages[0].payload.as_bytes(), &[0, 0x80, 0xff]);
/// ```
pub fn parse(head: &RestHead<'_>, body: &[u8], config: &RestConfig) -> Result<RestCall, RestError> {
    let endpoint = route(head)?;
    if body.len() > config.max_body_bytes {
        return Err(RestError::BodyTooLarge {
            max: config.max_body_bytes,
        });
    }
    let (apikey, token) = credentials(head)?;
    let messages = match endpoint {
        Endpoint::Batch => batch(body, config)?,
        Endpoint::Single {
            channel,
            event,
            private,
            binary,
        } => vec![RestMessage {
            channel,
            event,
            payload: if binary {
                Payload::binary(body)
            } else {
                single(body)?
            },
            private,
        }],
    };
    Ok(RestCall {
        apikey,
        token,
        messages,
    })
}

/// Path and query of a request target (the query without its `?`; empty
/// if there is none).
fn split_url(url: &str) -> (&str, &str) {
    url.split_once('?').unwrap_or((url, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(method: &'a str, url: &'a str) -> RestHead<'a> {
        RestHead {
            method,
            url,
            content_type: Some("application/json"),
            apikey: None,
            authorization: None,
        }
    }

    fn post(url: &str, body: &str) -> Result<RestCall, RestError> {
        parse(&head("POST", url), body.as_bytes(), &RestConfig::default())
    }

    fn invalid(url: &str, body: &str) -> String {
        match post(url, body) {
            Err(e @ RestError::Invalid(_)) => e.to_string(),
            other => panic!("expected a 422 for {body}; got {other:?}"),
        }
    }

    #[test]
    fn both_bases_and_both_shapes_route() {
        for base in BROADCAST_PATHS {
            assert_eq!(route(&head("POST", base)), Ok(Endpoint::Batch));
            let url = format!("{base}/a%2Fb/events/x?apikey=k&vsn=2.0.0");
            let Ok(Endpoint::Single {
                channel, private, ..
            }) = route(&head("POST", &url))
            else {
                panic!("{url} is the single endpoint");
            };
            assert_eq!(channel.to_string(), r#"{:realtime, "a/b"}"#);
            assert!(!private);
        }
        for path in [
            "/api/broadcast/",
            "/api/broadcast/room",
            "/api/broadcast/room/events",
            "/api/broadcast/room/events/",
            "/api/broadcast/room/event/e",
            "/api/broadcast/room/events/e/more",
            "/socket/api/broadcast",
        ] {
            assert!(
                matches!(route(&head("POST", path)), Err(RestError::NotFound { .. })),
                "{path}"
            );
        }
        assert!(!is_rest_path("/api/broadcaster"));
        assert!(!is_rest_path("/socket/websocket"));
    }

    #[test]
    fn method_and_content_type_are_checked_first() {
        let e = route(&head("PUT", "/api/broadcast")).unwrap_err();
        assert_eq!(e.status(), 405);
        assert_eq!(e.allow(), Some("POST"), "a 405 says what is allowed");
        let with = |ct: Option<&'static str>| {
            route(&RestHead {
                content_type: ct,
                ..head("POST", "/api/broadcast/r/events/e")
            })
        };
        assert!(matches!(
            with(Some("application/octet-stream")),
            Ok(Endpoint::Single { binary: true, .. })
        ));
        assert!(matches!(
            with(Some("Application/Octet-Stream; foo=bar")),
            Ok(Endpoint::Single { binary: true, .. })
        ));
        assert!(matches!(
            with(Some("application/json")),
            Ok(Endpoint::Single { binary: false, .. })
        ));
        let batch = |ct| {
            route(&RestHead {
                content_type: Some(ct),
                ..head("POST", "/realtime/v1/api/broadcast")
            })
        };
        let e = batch("application/octet-stream").unwrap_err();
        assert_eq!((e.status(), &e), (415, &RestError::BinaryBatch));
        assert!(
            e.to_string()
                .contains("send a binary payload (application/octet-stream) on its own to"),
            "{e}"
        );
        for ct in [
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/xml",
        ] {
            for e in [with(Some(ct)).unwrap_err(), batch(ct).unwrap_err()] {
                assert_eq!(e.status(), 415, "{ct}");
                let msg = e.to_string();
                assert!(
                    msg.starts_with(
                        "Content-Type must be application/json, or application/octet-stream"
                    ) && msg.ends_with(&format!("got {ct:?}")),
                    "{msg}"
                );
            }
        }
        assert!(with(Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(with(Some("application/vnd.api+json")).is_ok());
        assert!(with(None).is_ok(), "no content type: read as JSON");
    }

    #[test]
    fn a_batch_keeps_order_payloads_and_flags() {
        let call = post(
            "/api/broadcast",
            r#"{"messages":[
                {"topic":"r1","event":"a","payload":{"x":[1, 2]},"private":true},
                {"topic":"r2","event":"b","payload":"text","id":"abc"}
            ]}"#,
        )
        .unwrap();
        let got: Vec<_> = call
            .messages
            .iter()
            .map(|m| {
                (
                    m.channel.to_string(),
                    m.event.as_str().to_owned(),
                    String::from_utf8(m.payload.as_bytes().to_vec()).unwrap(),
                    m.private,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    r#"{:realtime, "r1"}"#.into(),
                    "a".into(),
                    r#"{"x":[1, 2]}"#.into(),
                    true
                ),
                (
                    r#"{:realtime, "r2"}"#.into(),
                    "b".into(),
                    r#""text""#.into(),
                    false
                ),
            ]
        );
    }

    #[test]
    fn batch_validation_names_what_is_wrong() {
        let url = "/api/broadcast";
        for (body, says) in [
            ("", "invalid request body"),
            ("{", "invalid request body"),
            ("[]", "invalid request body"),
            (r#"{"messages":{}}"#, "invalid request body"),
            (r#"{"msgs":[]}"#, "unknown field `msgs`"),
            ("{}", "messages is missing or empty"),
            (r#"{"messages":[]}"#, "messages is missing or empty"),
            (
                r#"{"messages":[{"event":"e","payload":{}}]}"#,
                "messages[0].topic is missing",
            ),
            (
                r#"{"messages":[{"topic":"t","payload":{}}]}"#,
                "messages[0].event is missing",
            ),
            (
                r#"{"messages":[{"topic":"t","event":"e"}]}"#,
                "messages[0].payload is missing",
            ),
            (
                r#"{"messages":[{"topic":"t","event":"e","payload":null}]}"#,
                "payload is missing or null",
            ),
            (
                r#"{"messages":[{"topic":1,"event":"e","payload":{}}]}"#,
                "invalid type",
            ),
            (
                r#"{"messages":[{"topic":"t","event":"e","payload":{},"private":"yes"}]}"#,
                "invalid type",
            ),
            (
                r#"{"messages":[{"topic":"t","event":"e","payload":{},"extra":1}]}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"messages":[{"topic":"","event":"e","payload":{}}]}"#,
                "messages[0].topic is empty",
            ),
            (
                r#"{"messages":[{"topic":"t","event":"","payload":{}}]}"#,
                "messages[0].event must be 1 to 128 bytes; got 0",
            ),
        ] {
            let msg = invalid(url, body);
            assert!(msg.contains(says), "{body}: {msg}");
        }
        let long = "x".repeat(300);
        let msg = invalid(
            url,
            &format!(
                r#"{{"messages":[{{"topic":"ok","event":"e","payload":1}},{{"topic":"{long}","event":"e","payload":1}}]}}"#
            ),
        );
        assert!(msg.starts_with("messages[1].topic"), "{msg}");
        assert!(msg.contains("does not make a valid channel"), "{msg}");
    }

    #[test]
    fn the_batch_size_is_capped() {
        let config = RestConfig {
            max_messages: 2,
            ..RestConfig::default()
        };
        let body = |n: usize| {
            let m = r#"{"topic":"t","event":"e","payload":{}}"#;
            format!(r#"{{"messages":[{}]}}"#, vec![m; n].join(","))
        };
        let h = head("POST", "/api/broadcast");
        assert_eq!(
            parse(&h, body(2).as_bytes(), &config)
                .unwrap()
                .messages
                .len(),
            2
        );
        let e = parse(&h, body(3).as_bytes(), &config).unwrap_err();
        assert_eq!(e, RestError::TooManyMessages { got: 3, max: 2 });
        assert_eq!(e.status(), 422);
        assert!(
            e.to_string()
                .starts_with("Too many messages to broadcast, please reduce the batch size"),
            "Supabase's own words: {e}"
        );
    }

    #[test]
    fn the_body_size_is_capped() {
        let config = RestConfig {
            max_body_bytes: 8,
            ..RestConfig::default()
        };
        let h = head("POST", "/api/broadcast/t/events/e");
        assert!(parse(&h, b"12345678", &config).is_ok());
        let e = parse(&h, b"123456789", &config).unwrap_err();
        assert_eq!((e.status(), e), (413, RestError::BodyTooLarge { max: 8 }));
    }

    #[test]
    fn the_single_endpoint_decodes_its_path_and_takes_any_json_but_null() {
        let call = post(
            "/realtime/v1/api/broadcast/caf%C3%A9%20%2B1/events/evt%202?private=true",
            " [1, 2] ",
        )
        .unwrap();
        let m = &call.messages[0];
        assert_eq!(m.channel.to_string(), r#"{:realtime, "café +1"}"#);
        assert_eq!(m.event.as_str(), "evt 2");
        assert_eq!(m.payload.as_bytes(), b"[1, 2]");
        assert!(m.private);
        assert!(post("/api/broadcast/t/events/e", "42").is_ok());
        let url = "/api/broadcast/t/events/e";
        assert!(invalid(url, "").contains("the body must be the payload as JSON"));
        assert!(
            invalid(url, "").contains("or raw bytes with Content-Type: application/octet-stream")
        );
        assert!(invalid(url, "{nope").contains("the body must be the payload as JSON"));
        assert!(invalid(url, "null").contains("the payload is null"));
        assert!(
            invalid("/api/broadcast/t/events/e?private=1", "{}")
                .contains("private query parameter must be true or false")
        );
        assert!(invalid("/api/broadcast/%FF/events/e", "{}").contains("not UTF-8"));
        assert!(invalid("/api/broadcast/%20/events/%FF", "{}").contains("event in the URL"));
        let long = "e".repeat(129);
        assert!(
            invalid(&format!("/api/broadcast/t/events/{long}"), "{}")
                .contains("the event must be 1 to 128 bytes; got 129")
        );
        assert!(invalid("/api/broadcast/t/events/e?persist=true", "{}").contains("persist"));
        assert!(invalid("/api/broadcast/t/events/e?persist%5Bttl%5D=5", "{}").contains("persist"));
    }

    fn post_binary(url: &str, body: &[u8]) -> Result<RestCall, RestError> {
        let h = RestHead {
            content_type: Some("application/octet-stream"),
            ..head("POST", url)
        };
        parse(&h, body, &RestConfig::default())
    }

    #[test]
    fn the_single_endpoint_takes_any_bytes_as_a_binary_payload() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xff, b'{'];
        let call = post_binary("/api/broadcast/caf%C3%A9/events/bin?private=true", &bytes).unwrap();
        let m = &call.messages[0];
        assert_eq!(m.channel.to_string(), r#"{:realtime, "café"}"#);
        assert_eq!((m.event.as_str(), m.private), ("bin", true));
        assert!(m.payload.is_binary());
        assert_eq!(
            m.payload.as_bytes(),
            bytes,
            "as sent: not trimmed, not parsed"
        );
        for body in [&b""[..], b"null", b" [1] ", b"\xff\xfe"] {
            let call = post_binary("/api/broadcast/t/events/e", body).unwrap();
            let p = &call.messages[0].payload;
            assert!(p.is_binary() && p.as_bytes() == body, "{body:?}");
        }
        let json = post("/api/broadcast/t/events/e", "[1]").unwrap();
        assert!(!json.messages[0].payload.is_binary());

        // The size cap holds for bytes too.
        let config = RestConfig {
            max_body_bytes: 4,
            ..RestConfig::default()
        };
        let h = RestHead {
            content_type: Some("application/octet-stream"),
            ..head("POST", "/api/broadcast/t/events/e")
        };
        assert!(parse(&h, &[9; 4], &config).is_ok());
        assert_eq!(
            parse(&h, &[9; 5], &config).unwrap_err(),
            RestError::BodyTooLarge { max: 4 }
        );
    }

    #[test]
    fn a_binary_payload_needs_a_topic_a_kind_4_frame_can_carry() {
        // `realtime:` is 9 bytes: a name of 246 makes a 255-byte topic.
        let name = |n| "n".repeat(n);
        let url = |n| format!("/api/broadcast/{}/events/e", name(n));
        assert!(post_binary(&url(246), b"x").is_ok());
        match post_binary(&url(247), b"x") {
            Err(e @ RestError::Invalid(_)) => assert!(
                e.to_string()
                    .contains("topic (realtime:<topic>) is at most 255 bytes; got 256"),
                "{e}"
            ),
            other => panic!("expected a 422; got {other:?}"),
        }
        // As JSON, the same topic is fine: text frames have no such limit.
        assert!(post(&url(247), "{}").is_ok());
    }

    #[test]
    fn credentials_come_from_headers_or_the_query() {
        let h = |url, apikey, authorization| RestHead {
            apikey,
            authorization,
            ..head("POST", url)
        };
        let body = br#"{"messages":[{"topic":"t","event":"e","payload":{}}]}"#;
        let cfg = RestConfig::default();
        let got = |h: RestHead<'_>| parse(&h, body, &cfg).map(|c| (c.apikey, c.token));
        assert_eq!(
            got(h(
                "/api/broadcast?apikey=q%2Bk",
                Some("hk"),
                Some("Bearer t1")
            )),
            Ok((Some("hk".into()), Some("t1".into()))),
            "the header wins over the query"
        );
        assert_eq!(
            got(h(
                "/api/broadcast?vsn=2.0.0&apikey=q%2Bk+1",
                None,
                Some("bearer  t2 ")
            )),
            Ok((Some("q+k 1".into()), Some("t2".into())))
        );
        assert_eq!(got(h("/api/broadcast", None, None)), Ok((None, None)));
        for bad in ["Basic abc", "Bearer", "Bearer   ", "token"] {
            assert_eq!(
                got(h("/api/broadcast", None, Some(bad))),
                Err(RestError::BadAuthorization),
                "{bad}"
            );
        }
        assert_eq!(RestError::BadAuthorization.status(), 401);
    }

    #[test]
    fn every_error_answers_json_with_its_message() {
        let e = RestError::Forbidden {
            topic: "realtime:x".into(),
            reason: "no".into(),
        };
        assert_eq!((e.status(), e.allow()), (403, None));
        let body: serde_json::Value = serde_json::from_str(&e.body_json()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "Unauthorized: cannot broadcast on realtime:x: no"})
        );
        let e = RestError::Invalid("say \"what\"\n".into());
        assert_eq!(
            e.body_json(),
            r#"{"error":"say \"what\"\n"}"#,
            "escaped JSON"
        );
    }
}
