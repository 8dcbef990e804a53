//! Client-side framing that `frame` (written for the server) does not
//! cover: V1 pushes carry `join_ref`, the client's binary kind 3 (`frame`
//! only decodes it), and decoding the server's binary kind 4.

use std::fmt::Write as _;

use serde_json::value::RawValue;

use crate::frame::{
    self, FieldTooLong, KIND_USER_BROADCAST, KIND_USER_BROADCAST_PUSH, Payload, RawJson, Vsn,
};

use super::error::{Error, ErrorCode};

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn json_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), json_str)
}

/// Encodes a client push as a text frame. V2 is the server's array form;
/// V1 is an object that, unlike a server's, carries `join_ref` (realtime-js
/// and phoenix.js send it, and the server uses it to drop stale pushes).
pub(crate) fn encode_push(
    vsn: Vsn,
    join_ref: Option<&str>,
    msg_ref: Option<&str>,
    topic: &str,
    event: &str,
    payload_json: &str,
) -> String {
    match vsn {
        Vsn::V2 => frame::encode_text(vsn, join_ref, msg_ref, topic, event, payload_json),
        Vsn::V1 => format!(
            r#"{{"topic":{},"event":{},"payload":{payload_json},"ref":{},"join_ref":{}}}"#,
            json_str(topic),
            json_str(event),
            json_opt(msg_ref),
            json_opt(join_ref)
        ),
    }
}

/// Encodes a Supabase user broadcast push as a binary kind-3 frame (client
/// → server, V2 only), the layout `frame::decode_binary` reads:
/// `[3, join_ref_len, ref_len, topic_len, event_len, metadata_len, encoding]`
/// then join_ref, ref, topic, user event, metadata and the payload. Encoding
/// 0 carries bytes, 1 JSON; metadata is empty, as realtime-js sends it.
/// A missing ref is an empty field. Any field over 255 bytes is an error.
pub(crate) fn encode_user_broadcast_push(
    join_ref: Option<&str>,
    msg_ref: Option<&str>,
    topic: &str,
    user_event: &str,
    payload: &Payload,
) -> Result<Vec<u8>, FieldTooLong> {
    let (join_ref, msg_ref) = (join_ref.unwrap_or(""), msg_ref.unwrap_or(""));
    let len = |s: &str, what| u8::try_from(s.len()).map_err(|_| FieldTooLong(what));
    let (encoding, body): (u8, &[u8]) = match payload {
        Payload::Binary(b) => (0, b),
        Payload::Json(j) => (1, j.get().as_bytes()),
    };
    let header = [
        KIND_USER_BROADCAST_PUSH,
        len(join_ref, "join_ref")?,
        len(msg_ref, "ref")?,
        len(topic, "topic")?,
        len(user_event, "user event")?,
        0,
        encoding,
    ];
    let mut out = Vec::with_capacity(
        header.len() + join_ref.len() + msg_ref.len() + topic.len() + user_event.len() + body.len(),
    );
    out.extend_from_slice(&header);
    for field in [join_ref, msg_ref, topic, user_event] {
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(body);
    Ok(out)
}

/// A decoded server kind-4 frame (Supabase user broadcast).
#[derive(Debug)]
pub(crate) struct ServerBroadcast {
    pub(crate) topic: String,
    pub(crate) user_event: String,
    pub(crate) metadata: Option<RawJson>,
    pub(crate) payload: Payload,
}

fn protocol(msg: &str) -> Error {
    Error::new(ErrorCode::Protocol, msg.to_owned())
}

/// Decodes a server binary frame. Only kind 4 exists server → client in the
/// Supabase dialect; kinds 0–2 (plain Phoenix) are refused as realtime-js
/// refuses them.
pub(crate) fn decode_server_binary(bytes: &[u8]) -> Result<ServerBroadcast, Error> {
    if bytes.len() > frame::MAX_FRAME_BYTES {
        return Err(
            protocol("binary frame over the size limit").with("bytes", bytes.len().to_string())
        );
    }
    let [kind, tl, el, ml, enc, rest @ ..] = bytes else {
        return Err(protocol("binary frame shorter than its header"));
    };
    if *kind != KIND_USER_BROADCAST {
        return Err(
            protocol("binary frame kind is not 4 (user broadcast)").with("kind", kind.to_string())
        );
    }
    let (tl, el, ml) = (usize::from(*tl), usize::from(*el), usize::from(*ml));
    if rest.len() < tl + el + ml {
        return Err(protocol("binary frame truncated"));
    }
    let text = |b: &[u8], what: &'static str| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| protocol("binary frame field is not UTF-8").with("field", what))
    };
    let json = |b: &[u8], what: &'static str| -> Result<RawJson, Error> {
        let s = std::str::from_utf8(b)
            .map_err(|_| protocol("binary frame field is not UTF-8").with("field", what))?;
        serde_json::from_str::<&RawValue>(s)
            .map(|r| RawJson(r.to_owned()))
            .map_err(|e| {
                protocol("binary frame field is not JSON")
                    .with("field", what)
                    .with("reason", e.to_string())
            })
    };
    let topic = text(&rest[..tl], "topic")?;
    let user_event = text(&rest[tl..tl + el], "user event")?;
    let meta = &rest[tl + el..tl + el + ml];
    let body = &rest[tl + el + ml..];
    let metadata = if meta.is_empty() {
        None
    } else {
        Some(json(meta, "metadata")?)
    };
    let payload = match enc {
        0 => Payload::Binary(body.to_vec()),
        1 => Payload::Json(json(body, "payload")?),
        other => {
            return Err(protocol("unknown payload encoding").with("encoding", other.to_string()));
        }
    };
    Ok(ServerBroadcast {
        topic,
        user_event,
        metadata,
        payload,
    })
}

fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The WebSocket URL realtime-js builds: `<endpoint>/websocket?apikey=…&<params>&vsn=…`.
/// `http(s)://` becomes `ws(s)://`; an endpoint already ending in
/// `/websocket` is kept.
pub(crate) fn socket_url(
    endpoint: &str,
    apikey: Option<&str>,
    params: &[(String, String)],
    vsn: Vsn,
) -> Result<String, Error> {
    let endpoint = endpoint.trim();
    let rest = if let Some(r) = endpoint.strip_prefix("ws://") {
        ("ws://", r)
    } else if let Some(r) = endpoint.strip_prefix("http://") {
        ("ws://", r)
    } else if let Some(r) = endpoint.strip_prefix("wss://") {
        ("wss://", r)
    } else if let Some(r) = endpoint.strip_prefix("https://") {
        ("wss://", r)
    } else {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            "the URL must start with ws://, wss://, http:// or https://",
        )
        .with("url", endpoint.chars().take(200).collect::<String>()));
    };
    let (scheme, rest) = rest;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::new(ErrorCode::InvalidInput, "the URL has no host")
            .with("url", endpoint.chars().take(200).collect::<String>()));
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = path.trim_end_matches('/');
    let mut url = String::with_capacity(endpoint.len() + 64);
    url.push_str(scheme);
    url.push_str(path);
    if !path.ends_with("/websocket") {
        url.push_str("/websocket");
    }
    url.push('?');
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push_str(q);
        url.push('&');
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(k) = apikey {
        pairs.push(("apikey", k));
    }
    for (k, v) in params {
        if k != "vsn" && !(k == "apikey" && apikey.is_some()) {
            pairs.push((k, v));
        }
    }
    for (k, v) in pairs {
        percent_encode(k, &mut url);
        url.push('=');
        percent_encode(v, &mut url);
        url.push('&');
    }
    url.push_str(match vsn {
        Vsn::V1 => "vsn=1.0.0",
        Vsn::V2 => "vsn=2.0.0",
    });
    Ok(url)
}

/// JavaScript's `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`
/// is percent-encoded as UTF-8, so paths match realtime-js's byte for byte.
pub(crate) fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            )
        {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The REST base realtime-js derives from the socket URL (`httpEndpointURL`):
/// `ws` → `http`, `wss` → `https`, a trailing `/socket/websocket`, `/socket`
/// or `/websocket` (any case, one optional `/` after) removed, trailing
/// slashes trimmed, and the query string kept for every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpEndpoint {
    /// `http(s)://host[:port][/path]`, no trailing slash.
    pub(crate) base: String,
    /// The socket URL's query (`apikey=…&vsn=…`), maybe empty.
    pub(crate) query: String,
}

impl HttpEndpoint {
    pub(crate) fn from_socket_url(socket_url: &str) -> Result<Self, Error> {
        let (scheme, rest) = if let Some(r) = socket_url.strip_prefix("ws://") {
            ("http://", r)
        } else if let Some(r) = socket_url.strip_prefix("wss://") {
            ("https://", r)
        } else {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                "the socket URL must start with ws:// or wss://",
            )
            .with("url", socket_url.chars().take(200).collect::<String>()));
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut path = path.strip_suffix('/').unwrap_or(path);
        for suffix in ["/socket/websocket", "/socket", "/websocket"] {
            let b = path.as_bytes();
            if b.len() >= suffix.len()
                && b[b.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            {
                // The suffix is ASCII, so the cut is a char boundary.
                path = &path[..path.len() - suffix.len()];
                break;
            }
        }
        Ok(Self {
            base: format!("{scheme}{}", path.trim_end_matches('/')),
            query: query.to_owned(),
        })
    }

    fn with_query(&self, mut url: String, extra: Option<&str>) -> String {
        let parts: Vec<&str> = [Some(self.query.as_str()), extra]
            .into_iter()
            .flatten()
            .filter(|q| !q.is_empty())
            .collect();
        if !parts.is_empty() {
            url.push('?');
            url.push_str(&parts.join("&"));
        }
        url
    }

    /// `POST <base>/api/broadcast?<query>`: the batch endpoint.
    pub(crate) fn batch_url(&self) -> String {
        self.with_query(format!("{}/api/broadcast", self.base), None)
    }

    /// `POST <base>/api/broadcast/<subtopic>/events/<event>?<query>[&private=true]`.
    pub(crate) fn single_url(&self, subtopic: &str, event: &str, private: bool) -> String {
        let url = format!(
            "{}/api/broadcast/{}/events/{}",
            self.base,
            encode_uri_component(subtopic),
            encode_uri_component(event)
        );
        self.with_query(url, private.then_some("private=true"))
    }
}

/// The topic without its `realtime:` prefix (any case), as the REST
/// endpoints want it.
pub(crate) fn subtopic(topic: &str) -> &str {
    match topic.get(..9) {
        Some(p) if p.eq_ignore_ascii_case("realtime:") => &topic[9..],
        _ => topic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_push_carries_join_ref() {
        let f = encode_push(
            Vsn::V1,
            Some("6"),
            Some("7"),
            "realtime:r",
            "broadcast",
            "{}",
        );
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["join_ref"], "6");
        assert_eq!(v["ref"], "7");
        let m = frame::decode_text(Vsn::V1, &f).unwrap();
        assert_eq!(m.join_ref.as_deref(), Some("6"));
    }

    #[test]
    fn v2_heartbeat_matches_realtime_js() {
        assert_eq!(
            encode_push(Vsn::V2, None, Some("10"), "phoenix", "heartbeat", "{}"),
            r#"[null,"10","phoenix","heartbeat",{}]"#
        );
    }

    #[test]
    fn kind3_matches_realtime_js_and_the_server_decoder() {
        // The observed realtime-js frame (reference §1.2, fact 2).
        let p = Payload::json(r#"{"msg":"hi"}"#).unwrap();
        let f = encode_user_broadcast_push(Some("6"), Some("7"), "realtime:room1", "hello", &p)
            .unwrap();
        let mut expected = vec![3, 1, 1, 14, 5, 0, 1];
        expected.extend_from_slice(b"67realtime:room1hello{\"msg\":\"hi\"}");
        assert_eq!(f, expected);
        // Binary, encoding 0, decoded by the server's own decoder.
        let bytes = Payload::Binary(vec![0x00, 0x80, 0xff]);
        let f = encode_user_broadcast_push(None, Some("12"), "realtime:r", "bin", &bytes).unwrap();
        assert_eq!(&f[..7], &[3, 0, 2, 10, 3, 0, 0]);
        let frame::Inbound::UserBroadcast(b) = frame::decode_binary(&f).unwrap() else {
            panic!("kind 3")
        };
        assert_eq!(
            (b.join_ref, b.msg_ref.as_deref(), b.topic.as_str()),
            (None, Some("12"), "realtime:r")
        );
        assert_eq!(
            (b.user_event.as_str(), b.metadata, b.payload),
            ("bin", None, bytes)
        );
        let long = "e".repeat(256);
        assert_eq!(
            encode_user_broadcast_push(None, None, "t", &long, &Payload::Binary(vec![])),
            Err(FieldTooLong("user event"))
        );
        assert!(
            encode_user_broadcast_push(None, None, &"t".repeat(255), "e", &Payload::Binary(vec![]))
                .is_ok()
        );
    }

    #[test]
    fn kind4_round_trips_with_the_server_encoder() {
        let p = Payload::json(r#"{"a":"b"}"#).unwrap();
        let f = frame::encode_user_broadcast("top", "user-event", Some(r#"{"replayed":true}"#), &p)
            .unwrap();
        let b = decode_server_binary(&f).unwrap();
        assert_eq!(
            (b.topic.as_str(), b.user_event.as_str()),
            ("top", "user-event")
        );
        assert_eq!(b.metadata.unwrap().get(), r#"{"replayed":true}"#);
        assert_eq!(b.payload, p);
    }

    #[test]
    fn bad_binary_is_an_error_not_a_panic() {
        for f in [
            &[][..],
            &[4],
            &[4, 200, 0, 0, 1],
            &[2, 0, 0, 0, 1],
            &[4, 0, 0, 0, 9],
            &[4, 1, 0, 0, 1, 0xff],
        ] {
            assert!(decode_server_binary(f).is_err(), "{f:?}");
        }
    }

    #[test]
    fn urls_like_realtime_js() {
        let params = vec![("log_level".to_owned(), "info".to_owned())];
        assert_eq!(
            socket_url("ws://127.0.0.1:4000/socket", Some("KEY"), &params, Vsn::V2).unwrap(),
            "ws://127.0.0.1:4000/socket/websocket?apikey=KEY&log_level=info&vsn=2.0.0"
        );
        assert_eq!(
            socket_url("https://abc.supabase.co/realtime/v1/", None, &[], Vsn::V1).unwrap(),
            "wss://abc.supabase.co/realtime/v1/websocket?vsn=1.0.0"
        );
        assert_eq!(
            socket_url("ws://h/socket/websocket?x=1", Some("a b&"), &[], Vsn::V2).unwrap(),
            "ws://h/socket/websocket?x=1&apikey=a%20b%26&vsn=2.0.0"
        );
        assert!(socket_url("ftp://h", None, &[], Vsn::V2).is_err());
        assert!(socket_url("ws://", None, &[], Vsn::V2).is_err());
    }

    #[test]
    fn http_endpoints_like_realtime_js() {
        let e = HttpEndpoint::from_socket_url(
            "ws://127.0.0.1:4000/socket/websocket?apikey=KEY&vsn=2.0.0",
        )
        .unwrap();
        assert_eq!(
            e.batch_url(),
            "http://127.0.0.1:4000/api/broadcast?apikey=KEY&vsn=2.0.0"
        );
        assert_eq!(
            e.single_url("room1", "evt 2", true),
            "http://127.0.0.1:4000/api/broadcast/room1/events/evt%202?apikey=KEY&vsn=2.0.0&private=true"
        );
        let s =
            HttpEndpoint::from_socket_url("wss://abc.supabase.co/realtime/v1/websocket?vsn=2.0.0")
                .unwrap();
        assert_eq!(
            s.batch_url(),
            "https://abc.supabase.co/realtime/v1/api/broadcast?vsn=2.0.0"
        );
        let bare = HttpEndpoint::from_socket_url("ws://h/Socket/WebSocket/").unwrap();
        assert_eq!(bare.batch_url(), "http://h/api/broadcast");
        assert_eq!(
            bare.single_url("a/b:c", "é*(x)", false),
            "http://h/api/broadcast/a%2Fb%3Ac/events/%C3%A9*(x)"
        );
        assert!(HttpEndpoint::from_socket_url("http://h").is_err());
        assert_eq!(subtopic("realtime:room1"), "room1");
        assert_eq!(subtopic("REALTIME:x"), "x");
        assert_eq!(subtopic("room1"), "room1");
        assert_eq!(subtopic("é"), "é");
    }
}
