//! Supabase's REST broadcast endpoints (`tidings_smol::rest`) against a real
//! hub on loopback: `POST /api/broadcast` and
//! `POST /api/broadcast/<topic>/events/<event>` (also under `/realtime/v1`)
//! reach Phoenix sockets of both protocol versions joined to
//! `realtime:<topic>`, and pages bound to its channel, and no one else; an
//! `application/octet-stream` body on the single endpoint reaches V2 sockets
//! as a kind-4 frame and no V1 socket or page; every refusal has its status
//! and a JSON `{"error": …}` that says why; bad input never stops the hub.

#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use support::TestServer;
use support::phoenix::Ws;
use tidings_core::{Channel, Cid, Effects, Peer};
use tidings_smol::{Access, App, AppError, NextAction, Page};
use tidings_ws::server::topic::realtime_channel;

struct RestApp;

impl App for RestApp {
    fn render(&self, path: &str, page: &mut Page) -> Result<Option<String>, AppError> {
        if path != "/lobby" {
            return Ok(None);
        }
        page.component(Cid::PAGE)
            .put_subscription(realtime_channel("lobby").expect("a valid channel"))?;
        Ok(Some("<html><head></head><body>rest</body></html>".into()))
    }

    fn command(
        &self,
        _: &mut Effects,
        name: &str,
        _: &Value,
    ) -> Result<Option<NextAction>, AppError> {
        Err(AppError::unknown_command(name))
    }

    fn authenticate(&self, apikey: Option<&str>) -> Result<(), String> {
        match apikey {
            Some("bad-key") => Err("API key is not valid".into()),
            _ => Ok(()),
        }
    }

    fn authorize(
        &self,
        _: &Peer,
        access: Access,
        ch: &Channel,
        token: Option<&str>,
    ) -> Result<(), String> {
        let name = ch.to_string();
        assert!(
            !name.contains("panic") || access != Access::Broadcast,
            "the app's authorize hook panics on {name}"
        );
        if name.contains("secret") {
            return Err(format!("no {access:?} here"));
        }
        if token == Some("revoked") {
            return Err("Token has been revoked".into());
        }
        Ok(())
    }
}

fn start() -> TestServer {
    TestServer::start(RestApp, |_, sse| {
        sse.rest.max_messages = 3;
        sse.rest.max_body_bytes = 512;
    })
}

// -- sockets -------------------------------------------------------------------

/// A broadcast push as a socket sees it.
fn pushed(topic: &str, event: &str, payload: &Value) -> Value {
    json!([null, null, topic, "broadcast", {"type": "broadcast", "event": event, "payload": payload}])
}

/// A binary user broadcast as a V2 socket sees it: kind 4, no metadata,
/// encoding 0 (P§1.2), spelled out byte by byte.
fn kind4(topic: &str, event: &str, payload: &[u8]) -> Value {
    let mut b = vec![
        4,
        u8::try_from(topic.len()).expect("a short topic"),
        u8::try_from(event.len()).expect("a short event"),
        0,
        0,
    ];
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(event.as_bytes());
    b.extend_from_slice(payload);
    json!(["binary", b])
}

/// A V1 and a V2 socket joined to `realtime:room 1/a`, and a V2 socket
/// joined to `realtime:room`.
fn room_1a_sockets(srv: &TestServer) -> (Ws, Ws, Ws) {
    let mut v1 = Ws::connect_vsn(srv.addr, "1.0.0");
    let mut v2 = Ws::connect_vsn(srv.addr, "2.0.0");
    let mut other = Ws::connect_vsn(srv.addr, "2.0.0");
    v1.join_ok("realtime:room 1/a");
    v2.join_ok("realtime:room 1/a");
    other.join_ok("realtime:room");
    (v1, v2, other)
}

/// Asserts that `ws` gets no broadcast, text or binary, within `ms`.
#[track_caller]
fn assert_no_broadcasts(ws: &mut Ws, ms: u64, why: &str) {
    assert_eq!(
        ws.broadcasts(Duration::from_millis(ms)),
        Vec::<Value>::new(),
        "{why}"
    );
}

// -- HTTP ---------------------------------------------------------------------

struct Resp {
    status: u16,
    text: String,
}

impl Resp {
    /// Asserts this status and a JSON `{"error": …}` containing `says`.
    fn assert_error(&self, status: u16, says: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        let body: Value = serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("an error body is JSON ({e}): {}", self.text));
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("an error body is {{\"error\": <string>}}: {}", self.text));
        assert!(error.contains(says), "{error:?} should say {says:?}");
    }

    fn assert_accepted(&self) {
        assert_eq!(
            (self.status, self.text.as_str()),
            (202, ""),
            "a call is accepted"
        );
    }
}

/// `method path` with `headers` and `body`, whatever it answers.
fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .build(),
    );
    let url = format!("http://{addr}{path}");
    let rq = ureq::http::Request::builder().method(method).uri(&url);
    let rq = headers.iter().fold(rq, |rq, (k, v)| rq.header(*k, *v));
    let rq = rq.body(body.to_vec()).expect("a valid request");
    let resp = agent.run(rq).expect("the request reaches the server");
    Resp {
        status: resp.status().as_u16(),
        text: resp
            .into_body()
            .read_to_string()
            .expect("the body reads as text"),
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const OCTETS: (&str, &str) = ("Content-Type", "application/octet-stream");
const KEY: (&str, &str) = ("apikey", "k");

/// `POST path` with a JSON body, an API key and `extra` headers.
fn post(addr: SocketAddr, path: &str, extra: &[(&str, &str)], body: &str) -> Resp {
    let mut headers = vec![JSON, KEY];
    headers.extend_from_slice(extra);
    call(addr, "POST", path, &headers, body.as_bytes())
}

/// `POST path` with a binary body and an API key.
fn post_bytes(addr: SocketAddr, path: &str, body: &[u8]) -> Resp {
    call(addr, "POST", path, &[OCTETS, KEY], body)
}

fn batch(messages: &Value) -> String {
    json!({ "messages": messages }).to_string()
}

// -- the tests ----------------------------------------------------------------

#[test]
fn a_batch_reaches_joined_sockets_of_both_versions_in_order_and_no_one_else() {
    let srv = start();
    let mut a1 = Ws::connect_vsn(srv.addr, "1.0.0");
    let mut a2 = Ws::connect_vsn(srv.addr, "2.0.0");
    let mut b = Ws::connect_vsn(srv.addr, "2.0.0");
    a1.join_ok("realtime:room-a");
    a2.join_ok("realtime:room-a");
    b.join_ok("realtime:room-b");

    for path in ["/api/broadcast", "/realtime/v1/api/broadcast"] {
        let resp = post(
            srv.addr,
            path,
            &[],
            &batch(&json!([
                {"topic": "room-a", "event": "first", "payload": {"n": 1, "path": path}},
                {"topic": "room-b", "event": "other", "payload": [path], "private": false},
                {"topic": "room-a", "event": "second", "payload": "two", "private": true},
            ])),
        );
        resp.assert_accepted();
        for a in [&mut a1, &mut a2] {
            assert_eq!(
                a.broadcast(),
                pushed("realtime:room-a", "first", &json!({"n": 1, "path": path}))
            );
            assert_eq!(
                a.broadcast(),
                pushed("realtime:room-a", "second", &json!("two"))
            );
        }
        assert_eq!(
            b.broadcast(),
            pushed("realtime:room-b", "other", &json!([path]))
        );
    }
    for ws in [&mut a1, &mut a2, &mut b] {
        assert_no_broadcasts(ws, 200, "each socket got its topic's messages, once");
    }
}

#[test]
fn the_single_endpoint_decodes_topic_and_event_and_relays_the_raw_payload() {
    let srv = start();
    let (mut v1, mut v2, mut other) = room_1a_sockets(&srv);

    for (base, private) in [("", ""), ("/realtime/v1", "&private=true")] {
        let path =
            format!("{base}/api/broadcast/room%201%2Fa/events/evt%202?apikey=k&vsn=2.0.0{private}");
        post(srv.addr, &path, &[], r#" {"x": [1, 2.5, "é"]} "#).assert_accepted();
        for ws in [&mut v1, &mut v2] {
            assert_eq!(
                ws.broadcast(),
                pushed("realtime:room 1/a", "evt 2", &json!({"x": [1, 2.5, "é"]}))
            );
        }
    }
    post(srv.addr, "/api/broadcast/room%201%2Fa/events/n", &[], "42").assert_accepted();
    assert_eq!(v2.broadcast(), pushed("realtime:room 1/a", "n", &json!(42)));
    assert_no_broadcasts(&mut other, 200, "another topic hears nothing");
}

#[test]
fn an_octet_stream_body_reaches_v2_sockets_as_kind_4_and_no_v1_socket() {
    let srv = start();
    let (mut v1, mut v2, mut other) = room_1a_sockets(&srv);

    // Every byte value a JSON or UTF-8 reading would mangle: NUL, 0x80,
    // 0xff, a lone `{`.
    let bytes: Vec<u8> = vec![0, 1, 0x7f, 0x80, 0xc3, 0xff, b'{', 0];
    for (base, private) in [("", ""), ("/realtime/v1", "?private=true")] {
        let path = format!("{base}/api/broadcast/room%201%2Fa/events/bin%20e{private}");
        post_bytes(srv.addr, &path, &bytes).assert_accepted();
        assert_eq!(
            v2.next_frame(),
            kind4("realtime:room 1/a", "bin e", &bytes),
            "{path}: the V2 socket gets the exact kind-4 frame"
        );
        // The V1 socket gets nothing for it: the JSON broadcast that
        // follows is its very next frame.
        post(
            srv.addr,
            &path.replace("bin%20e", "after"),
            &[],
            r#"{"n":1}"#,
        )
        .assert_accepted();
        let after = pushed("realtime:room 1/a", "after", &json!({"n": 1}));
        assert_eq!(v1.next_frame(), after, "{path}: nothing binary reached V1");
        assert_eq!(v2.next_frame(), after, "{path}: and V2 gets it in order");
    }

    // An empty body is an empty payload; the content type may carry
    // parameters and any case.
    call(
        srv.addr,
        "POST",
        "/api/broadcast/room%201%2Fa/events/empty",
        &[("Content-Type", "Application/Octet-Stream; x=1"), KEY],
        b"",
    )
    .assert_accepted();
    assert_eq!(v2.next_frame(), kind4("realtime:room 1/a", "empty", b""));
    assert_no_broadcasts(&mut other, 200, "another topic hears nothing");
    assert_no_broadcasts(&mut v1, 100, "V1 never gets a binary payload");
}

#[test]
fn pages_bound_to_the_channel_get_rest_broadcasts_too() {
    let srv = start();
    let page = srv.load("/lobby", None);
    let mut stream = srv.connect(&page);
    post(
        srv.addr,
        "/api/broadcast/lobby/events/toast",
        &[],
        r#"{"text": "from REST"}"#,
    )
    .assert_accepted();
    assert_eq!(
        stream.expect("broadcast"),
        json!({"action": "toast", "params": {"text": "from REST"}, "cids": ["page"]})
    );

    // A binary payload has no JSON form for the SSE wire: the page gets
    // nothing for it, and the next broadcast is its next event.
    post_bytes(srv.addr, "/api/broadcast/lobby/events/bin", &[1, 2, 3]).assert_accepted();
    post(srv.addr, "/api/broadcast/lobby/events/after", &[], "2").assert_accepted();
    assert_eq!(
        stream.expect("broadcast"),
        json!({"action": "after", "params": 2, "cids": ["page"]})
    );
}

/// Posts each `(path, body)` and asserts a 422 saying `says`; then that the
/// socket joined to `realtime:room` heard nothing and that a good call
/// still goes through.
fn assert_422s(cases: &[(&str, String, &str)]) {
    let srv = start();
    let mut a = Ws::connect_vsn(srv.addr, "2.0.0");
    a.join_ok("realtime:room");
    for (path, body, says) in cases {
        post(srv.addr, path, &[], body).assert_error(422, says);
    }
    assert_no_broadcasts(
        &mut a,
        200,
        "a refused call broadcasts nothing, not even its valid messages",
    );
    post(srv.addr, "/api/broadcast/room/events/e", &[], "{}").assert_accepted();
    assert_eq!(
        a.broadcast(),
        pushed("realtime:room", "e", &json!({})),
        "the hub goes on"
    );
}

#[test]
fn batch_validation_errors_are_422_with_what_was_wrong() {
    let ok = json!({"topic": "room", "event": "e", "payload": {}});
    let with = |field: &str, value: Value| {
        let mut m = ok.clone();
        m[field] = value;
        batch(&json!([ok, m]))
    };
    let without = |field: &str| {
        let mut m = ok.clone();
        m.as_object_mut().expect("an object").remove(field);
        batch(&json!([m]))
    };
    let b = "/api/broadcast";
    assert_422s(&[
        (b, "{".into(), "invalid request body"),
        (b, "[]".into(), "invalid request body"),
        (b, "{}".into(), "messages is missing or empty"),
        (b, batch(&json!([])), "messages is missing or empty"),
        (b, without("topic"), "messages[0].topic is missing"),
        (b, without("event"), "messages[0].event is missing"),
        (b, without("payload"), "messages[0].payload is missing"),
        (
            b,
            with("payload", Value::Null),
            "messages[1].payload is missing or null",
        ),
        (b, with("private", json!("no")), "expected a boolean"),
        (b, with("extra", json!(1)), "unknown field `extra`"),
        (b, with("topic", json!("")), "messages[1].topic is empty"),
        (
            b,
            with("topic", json!("x".repeat(300))),
            "does not make a valid channel",
        ),
        (
            b,
            with("event", json!("")),
            "messages[1].event must be 1 to 128 bytes",
        ),
        (
            b,
            batch(&json!([ok, ok, ok, ok])),
            "Too many messages to broadcast, please reduce the batch size: got 4; at most 3 are allowed",
        ),
    ]);
}

#[test]
fn single_endpoint_validation_errors_are_422_with_what_was_wrong() {
    let e = "/api/broadcast/room/events/e";
    assert_422s(&[
        (e, String::new(), "the body must be the payload as JSON"),
        (e, "{nope".into(), "the body must be the payload as JSON"),
        (e, "null".into(), "the payload is null"),
        (
            "/api/broadcast/room/events/e?private=maybe",
            "{}".into(),
            "private query parameter must be true or false",
        ),
        (
            "/api/broadcast/room/events/e?persist=true",
            "{}".into(),
            "persist is not supported",
        ),
        ("/api/broadcast/%FF/events/e", "{}".into(), "not UTF-8"),
        (
            e,
            "{nope".into(),
            "or raw bytes with Content-Type: application/octet-stream",
        ),
        (
            "/api/broadcast/%20/events/%C3",
            "{}".into(),
            "event in the URL is not UTF-8",
        ),
    ]);
}

#[test]
fn other_http_refusals_have_their_statuses() {
    let srv = start();
    let addr = srv.addr;
    call(addr, "GET", "/api/broadcast", &[KEY], b"").assert_error(405, "only POST");
    call(
        addr,
        "PUT",
        "/realtime/v1/api/broadcast/r/events/e",
        &[JSON],
        b"{}",
    )
    .assert_error(405, "method PUT is not allowed");
    post(addr, "/api/broadcast/room", &[], "{}")
        .assert_error(404, "no endpoint at /api/broadcast/room");
    post(addr, "/api/broadcast/r/events/e/x", &[], "{}")
        .assert_error(404, "POST <base>/api/broadcast");
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(600));
    post(addr, "/api/broadcast/r/events/e", &[], &big).assert_error(413, "exceeds 512 bytes");
    let big = vec![0xff; 513];
    post_bytes(addr, "/api/broadcast/r/events/e", &big).assert_error(413, "exceeds 512 bytes");
    post_bytes(addr, "/realtime/v1/api/broadcast", &[0, 1, 2, 255]).assert_error(
        415,
        "the batch endpoint takes JSON only (Content-Type: application/json); \
         send a binary payload (application/octet-stream) on its own to \
         POST <base>/api/broadcast/<topic>/events/<event>",
    );
    for path in ["/api/broadcast", "/api/broadcast/r/events/e"] {
        call(
            addr,
            "POST",
            path,
            &[("Content-Type", "text/plain"), KEY],
            b"{}",
        )
        .assert_error(
            415,
            "Content-Type must be application/json, or application/octet-stream for a binary \
             payload to POST <base>/api/broadcast/<topic>/events/<event>; got \"text/plain\"",
        );
    }
    // `realtime:` and a 247-byte name make 256 bytes: a valid channel, but
    // more than a kind-4 frame's topic can hold.
    let long = format!("/api/broadcast/{}/events/e", "n".repeat(247));
    post_bytes(addr, &long, b"x").assert_error(
        422,
        "topic (realtime:<topic>) is at most 255 bytes; got 256",
    );
    post(addr, &long, &[], "{}").assert_accepted();
    let resp = call(addr, "POST", "/api/broadcast/room/events/e", &[KEY], b"{}");
    resp.assert_accepted();
}

#[test]
fn authenticate_and_authorize_refusals_are_401_and_403_and_broadcast_nothing() {
    let srv = start();
    let addr = srv.addr;
    let mut a = Ws::connect_vsn(addr, "2.0.0");
    a.join_ok("realtime:room");
    let body = batch(&json!([{"topic": "room", "event": "e", "payload": {}}]));

    // The API key: the header, else the query parameter.
    let send =
        |path: &str, headers: &[(&str, &str)]| call(addr, "POST", path, headers, body.as_bytes());
    send("/api/broadcast", &[JSON, ("apikey", "bad-key")])
        .assert_error(401, "API key is not valid");
    send("/api/broadcast", &[JSON, ("x-api-key", "bad-key")])
        .assert_error(401, "API key is not valid");
    send("/api/broadcast?apikey=bad-key", &[JSON]).assert_error(401, "API key is not valid");
    send("/api/broadcast?apikey=bad-key", &[JSON, KEY]).assert_accepted();
    assert_eq!(a.broadcast(), pushed("realtime:room", "e", &json!({})));

    // The access token: `Authorization: Bearer <token>` beside the API key.
    let authorized = |authorization: &str| {
        post(
            addr,
            "/api/broadcast",
            &[("Authorization", authorization)],
            &body,
        )
    };
    authorized("Basic dTpw").assert_error(401, "Bearer <token>");
    authorized("Bearer revoked").assert_error(
        403,
        "Unauthorized: cannot broadcast on realtime:room: Token has been revoked",
    );
    post(addr, "/api/broadcast/secret-room/events/e", &[], "{}").assert_error(
        403,
        "Unauthorized: cannot broadcast on realtime:secret-room: no Broadcast here",
    );
    let mixed = batch(&json!([
        {"topic": "room", "event": "e", "payload": {}},
        {"topic": "secret", "event": "e", "payload": {}},
    ]));
    post(addr, "/api/broadcast", &[], &mixed).assert_error(403, "realtime:secret");
    assert_no_broadcasts(
        &mut a,
        200,
        "a refused call broadcasts nothing, not even the allowed messages of its batch",
    );

    // A panicking hook is a 500; the hub goes on.
    post(addr, "/api/broadcast/panic/events/e", &[], "{}")
        .assert_error(500, "authorize hook panicked");
    authorized("Bearer fine").assert_accepted();
    assert_eq!(a.broadcast(), pushed("realtime:room", "e", &json!({})));
}

#[test]
fn after_shutdown_calls_are_503() {
    let mut srv = start();
    srv.shutdown();
    post(srv.addr, "/api/broadcast/room/events/e", &[], "{}")
        .assert_error(503, "the hub is not running");
}
