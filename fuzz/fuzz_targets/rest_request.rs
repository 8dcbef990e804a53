//! The REST broadcast endpoints' sans-IO half (`tidings_ws::server::rest`)
//! fed arbitrary requests: method, URL, Content-Type, `apikey`,
//! `Authorization` and body, each either arbitrary or shaped like what the
//! endpoints take (so the fuzzer reaches the body checks). `route` and
//! `parse` never panic and agree with each other; an accepted call has 1 to
//! `max_messages` messages, each on a valid `realtime:<topic>` channel with
//! a valid event and a payload of the kind the request asked for; every
//! refusal is one of the statuses they produce, with a message and a JSON
//! body that carries it.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use tidings_core::router::MAX_ACTION_BYTES;
use tidings_ws::server::rest::{Endpoint, RestConfig, RestError, RestHead, parse, route};
use tidings_ws::server::topic::{REALTIME_PREFIX, realtime_channel, realtime_topic};

/// What `route` and `parse` answer refusals with: 401 (a malformed
/// `Authorization`), 404, 405, 413, 415 and 422. The 400 of an unreadable
/// body and the 403/500/503 (and the 401 of a refused key) come from the
/// runtime and its hub, never from these two.
const STATUSES: [u16; 6] = [401, 404, 405, 413, 415, 422];

#[derive(Debug, Arbitrary)]
enum Method {
    Post,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Url {
    Batch {
        realtime_v1: bool,
        query: Vec<Param>,
    },
    Single {
        realtime_v1: bool,
        topic: String,
        event: String,
        /// Percent-encode topic and event (as realtime-js does), or not.
        encode: bool,
        query: Vec<Param>,
    },
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Param {
    Private(bool),
    PrivateRaw(String),
    Apikey(String),
    Persist,
    Other(String, String),
    Bare(String),
}

#[derive(Debug, Arbitrary)]
enum ContentType {
    None,
    Json,
    JsonCharset,
    PlusJson,
    OctetStream,
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Authorization {
    Bearer(String),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Body {
    Raw(Vec<u8>),
    Batch {
        messages: Option<Vec<Message>>,
        extra: Option<String>,
    },
}

#[derive(Debug, Arbitrary)]
struct Message {
    topic: Option<String>,
    event: Option<String>,
    payload: Option<Json>,
    private: Option<bool>,
    id: Option<String>,
    extra: Option<String>,
}

#[derive(Debug, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Ints(Vec<i64>),
    /// Spliced in as is: may be no JSON at all.
    Raw(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    method: Method,
    url: Url,
    content_type: ContentType,
    apikey: Option<String>,
    authorization: Option<Authorization>,
    body: Body,
    /// `max_messages` is 1 + this % 8.
    max_messages: u8,
    /// `max_body_bytes`; `None` is the default (1 MiB).
    max_body_bytes: Option<u16>,
}

/// `encodeURIComponent`, near enough: everything but unreserved bytes.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~!*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(params: &[Param]) -> String {
    let parts: Vec<String> = params
        .iter()
        .map(|p| match p {
            Param::Private(b) => format!("private={b}"),
            Param::PrivateRaw(v) => format!("private={v}"),
            Param::Apikey(k) => format!("apikey={}", encode(k)),
            Param::Persist => "persist=true".into(),
            Param::Other(k, v) => format!("{k}={v}"),
            Param::Bare(k) => k.clone(),
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn url(url: &Url) -> String {
    let base = |v1: bool| {
        if v1 {
            "/realtime/v1/api/broadcast"
        } else {
            "/api/broadcast"
        }
    };
    match url {
        Url::Batch {
            realtime_v1,
            query: q,
        } => format!("{}{}", base(*realtime_v1), query(q)),
        Url::Single {
            realtime_v1,
            topic,
            event,
            encode: enc,
            query: q,
        } => {
            let (topic, event) = if *enc {
                (encode(topic), encode(event))
            } else {
                (topic.clone(), event.clone())
            };
            format!("{}/{topic}/events/{event}{}", base(*realtime_v1), query(q))
        }
        Url::Raw(s) => s.clone(),
    }
}

fn json(j: &Json) -> String {
    match j {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Int(i) => i.to_string(),
        Json::Float(f) => serde_json::to_string(f).unwrap(),
        Json::Str(s) => serde_json::to_string(s).unwrap(),
        Json::Ints(v) => serde_json::to_string(v).unwrap(),
        Json::Raw(s) => s.clone(),
    }
}

fn body(b: &Body) -> Vec<u8> {
    match b {
        Body::Raw(bytes) => bytes.clone(),
        Body::Batch { messages, extra } => {
            let mut fields = Vec::new();
            if let Some(ms) = messages {
                let ms: Vec<String> = ms
                    .iter()
                    .map(|m| {
                        let mut f = Vec::new();
                        let s = |v: &String| serde_json::to_string(v).unwrap();
                        if let Some(t) = &m.topic {
                            f.push(format!(r#""topic":{}"#, s(t)));
                        }
                        if let Some(e) = &m.event {
                            f.push(format!(r#""event":{}"#, s(e)));
                        }
                        if let Some(p) = &m.payload {
                            f.push(format!(r#""payload":{}"#, json(p)));
                        }
                        if let Some(p) = m.private {
                            f.push(format!(r#""private":{p}"#));
                        }
                        if let Some(id) = &m.id {
                            f.push(format!(r#""id":{}"#, s(id)));
                        }
                        if let Some(x) = &m.extra {
                            f.push(format!(r#"{}:1"#, s(x)));
                        }
                        format!("{{{}}}", f.join(","))
                    })
                    .collect();
                fields.push(format!(r#""messages":[{}]"#, ms.join(",")));
            }
            if let Some(x) = extra {
                fields.push(format!("{}:1", serde_json::to_string(x).unwrap()));
            }
            format!("{{{}}}", fields.join(",")).into_bytes()
        }
    }
}

/// A JSON payload is one JSON value, as sent, without surrounding
/// whitespace. (Syntax only: `1e400` is JSON that `serde_json::Value`
/// cannot hold, and is relayed as is.)
fn one_json_value(bytes: &[u8]) -> String {
    let raw: Box<RawValue> = serde_json::from_slice(bytes).expect("a JSON payload is JSON");
    assert_eq!(raw.get().as_bytes(), bytes, "trimmed, otherwise as sent");
    raw.get().to_owned()
}

fuzz_target!(|input: Input| {
    let method = match &input.method {
        Method::Post => "POST".to_owned(),
        Method::Other(m) => m.clone(),
    };
    let url = url(&input.url);
    let content_type = match &input.content_type {
        ContentType::None => None,
        ContentType::Json => Some("application/json".to_owned()),
        ContentType::JsonCharset => Some("application/json; charset=utf-8".to_owned()),
        ContentType::PlusJson => Some("application/vnd.api+json".to_owned()),
        ContentType::OctetStream => Some("application/octet-stream".to_owned()),
        ContentType::Raw(s) => Some(s.clone()),
    };
    let authorization = input.authorization.as_ref().map(|a| match a {
        Authorization::Bearer(t) => format!("Bearer {t}"),
        Authorization::Raw(s) => s.clone(),
    });
    let head = RestHead {
        method: &method,
        url: &url,
        content_type: content_type.as_deref(),
        apikey: input.apikey.as_deref(),
        authorization: authorization.as_deref(),
    };
    let body = body(&input.body);
    let config = RestConfig {
        max_messages: 1 + usize::from(input.max_messages % 8),
        max_body_bytes: input
            .max_body_bytes
            .map_or(RestConfig::default().max_body_bytes, usize::from),
    };

    let routed = route(&head);
    let parsed = parse(&head, &body, &config);
    match (&routed, &parsed) {
        (Err(r), Err(p)) => assert_eq!(r, p, "parse refuses what route refuses, the same way"),
        (Err(r), Ok(_)) => panic!("route refused ({r}) but parse accepted"),
        (Ok(_), _) => {}
    }
    match parsed {
        Ok(call) => {
            let n = call.messages.len();
            assert!((1..=config.max_messages).contains(&n), "{n} messages");
            assert!(body.len() <= config.max_body_bytes);
            if let Some(token) = &call.token {
                assert!(
                    !token.is_empty() && token.trim() == token,
                    "token {token:?}"
                );
            }
            for m in &call.messages {
                let topic = realtime_topic(&m.channel)
                    .unwrap_or_else(|| panic!("{} is no realtime channel", m.channel));
                let name = topic.strip_prefix(REALTIME_PREFIX).unwrap();
                assert!(!name.is_empty());
                assert_eq!(realtime_channel(name).as_ref(), Ok(&m.channel), "{topic}");
                let event = m.event.as_str();
                assert!(!event.is_empty() && event.len() <= MAX_ACTION_BYTES);
            }
            match routed {
                Ok(Endpoint::Single {
                    channel,
                    event,
                    private,
                    binary,
                }) => {
                    assert_eq!(n, 1);
                    let m = &call.messages[0];
                    assert_eq!(
                        (&m.channel, &m.event, m.private),
                        (&channel, &event, private)
                    );
                    assert_eq!(m.payload.is_binary(), binary);
                    if binary {
                        assert_eq!(m.payload.as_bytes(), &body[..]);
                        let topic = realtime_topic(&channel).unwrap();
                        assert!(topic.len() <= 255, "a kind-4 frame carries {topic}");
                    } else {
                        assert_ne!(one_json_value(m.payload.as_bytes()), "null");
                    }
                }
                Ok(Endpoint::Batch) => {
                    for m in &call.messages {
                        assert!(!m.payload.is_binary());
                        one_json_value(m.payload.as_bytes());
                    }
                }
                Err(_) => unreachable!("parse accepted what route refused"),
            }
        }
        Err(e) => {
            let status = e.status();
            assert!(STATUSES.contains(&status), "{status} for {e:?}");
            let message = e.to_string();
            assert!(!message.is_empty(), "{e:?} says nothing");
            let json: serde_json::Value = serde_json::from_str(&e.body_json()).unwrap();
            assert_eq!(json, serde_json::json!({ "error": message }));
            assert_eq!(e.allow().is_some(), status == 405);
            if let RestError::TooManyMessages { got, max } = e {
                assert!(got > max && max == config.max_messages);
            }
        }
    }
});
