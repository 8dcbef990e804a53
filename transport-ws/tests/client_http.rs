//! The client's REST side against a fake HTTP server (std `TcpListener` on
//! 127.0.0.1:0) that records each request exactly and answers with a
//! scripted status: the HTTP broadcast fallback (`POST /api/broadcast`) and
//! `Client::http_send` / `http_send_binary` (`POST
//! /api/broadcast/<topic>/events/<event>`). The
//! WebSocket upgrade the client also tries on that port is refused with
//! 503, so its channels can never push.

// Each test crate uses its own part of the shared helpers.
#[allow(dead_code)]
mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Post, WAIT, connect, wait_for};
use tidings_ws::client::{ChannelEvent, ChannelOptions, ClientConfig, ErrorCode, Event};

struct FakeHttp {
    addr: String,
    posts: mpsc::Receiver<Post>,
    /// `(status, body)` for the next POSTs, in order; 202 once empty.
    answers: Arc<Mutex<Vec<(u16, String)>>>,
}

/// One request, its head and its body.
fn read_request(s: &TcpStream) -> io::Result<Post> {
    let mut r = BufReader::new(s);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        if r.read_line(&mut head)? == 0 {
            break;
        }
    }
    let mut post = Post::from_head(&head);
    post.body = vec![0; post.content_length()];
    r.read_exact(&mut post.body)?;
    Ok(post)
}

impl FakeHttp {
    fn start() -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, posts) = mpsc::channel();
        let answers: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
        let script = Arc::clone(&answers);
        thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                s.set_read_timeout(Some(WAIT)).unwrap();
                let Ok(post) = read_request(&s) else {
                    continue;
                };
                let post_request = post.method == "POST";
                let (status, reply) = if post_request {
                    let mut a = script.lock().unwrap();
                    if a.is_empty() {
                        (202, String::new())
                    } else {
                        a.remove(0)
                    }
                } else {
                    // The WebSocket upgrade: refused.
                    (503, String::new())
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = s.flush();
                if post_request && tx.send(post).is_err() {
                    return;
                }
            }
        });
        FakeHttp {
            addr,
            posts,
            answers,
        }
    }

    /// A client whose socket URL points here; it never reconnects during a
    /// test.
    fn config(&self) -> ClientConfig {
        ClientConfig::new(format!("ws://{}/socket", self.addr))
            .apikey("KEY")
            .reconnect_after(|_| Duration::from_secs(600))
    }

    fn answer(&self, status: u16, body: &str) {
        self.answers.lock().unwrap().push((status, body.to_owned()));
    }

    fn post(&self) -> Post {
        self.posts.recv_timeout(WAIT).expect("a POST in time")
    }
}

#[test]
fn fallback_broadcast_posts_the_realtime_js_batch_request() {
    let fake = FakeHttp::start();
    let (client, _events) = connect(
        fake.config()
            .param("log_level", "info")
            .access_token("tok")
            .http_fallback(true),
    );
    // Never subscribed, socket refused: the channel cannot push.
    let room = client.channel("room1", ChannelOptions::default().private(true));
    client.broadcast(&room, "evt", &json!({"a": 1})).unwrap();
    let p = fake.post();
    assert_eq!(
        p.target,
        "/api/broadcast?apikey=KEY&log_level=info&vsn=2.0.0"
    );
    assert_eq!(p.header("apikey"), Some("KEY"));
    assert_eq!(p.header("content-type"), Some("application/json"));
    assert_eq!(p.header("authorization"), Some("Bearer tok"));
    assert_eq!(
        p.text(),
        r#"{"messages":[{"topic":"room1","event":"evt","payload":{"a":1},"private":true}]}"#
    );
}

#[test]
fn fallback_acks_resolve_from_the_http_status_and_failures_are_reported() {
    let fake = FakeHttp::start();
    let (client, events) = connect(fake.config().http_fallback(true));
    let room = client.channel("room1", ChannelOptions::default().broadcast_ack(true));
    // Subscribed but never joined (the upgrade is refused): still HTTP.
    client.subscribe(&room).unwrap();
    fake.answer(202, "");
    fake.answer(500, r#"{"message":"boom"}"#);
    fake.answer(429, r#"{"error":"You have exceeded your rate limit"}"#);
    smol::block_on(async {
        let ok = client.broadcast_with_ack(&room, "a", &1).unwrap();
        client.wait_for_ack(&ok, WAIT).await.unwrap();
        let refused = client.broadcast_with_ack(&room, "b", &2).unwrap();
        let e = client.wait_for_ack(&refused, WAIT).await.unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Rejected, "boom"));
        assert_eq!(e.context("status"), Some("500"));
    });
    let first = fake.post();
    assert_eq!(first.header("authorization"), None, "no token, no header");
    assert_eq!(first.json()["messages"][0]["private"], false);
    assert_eq!(fake.post().json()["messages"][0]["event"], "b");
    // A broadcast nobody waits on reports its failure as a channel error.
    client.broadcast(&room, "c", &3).unwrap();
    let e = wait_for(&events, |e| match e {
        Event::Channel {
            topic,
            change: ChannelEvent::Error(e),
        } if topic == "realtime:room1" && e.code == ErrorCode::Rejected => Some(e.clone()),
        _ => None,
    });
    assert_eq!(e.message, "You have exceeded your rate limit");
}

#[test]
fn http_send_posts_the_single_endpoint_and_maps_statuses() {
    let fake = FakeHttp::start();
    // The fallback is off (the default): only http_send posts.
    let (client, _events) = connect(fake.config().access_token("tok"));
    let room = client.channel("room 1", ChannelOptions::default().private(true));
    let public = client.channel("lobby", ChannelOptions::default());
    assert_eq!(
        client.broadcast(&public, "x", &1).unwrap_err().code,
        ErrorCode::Closed,
        "without the fallback an unsubscribed channel refuses, and posts nothing"
    );
    fake.answer(202, "");
    fake.answer(404, "");
    fake.answer(
        429,
        r#"{"error":"Too many messages to broadcast, please reduce the batch size"}"#,
    );
    smol::block_on(async {
        client
            .http_send(&room, "evt 2", &json!({"a": 1}))
            .await
            .unwrap();
        let old = client
            .http_send(&public, "e", &json!({}))
            .await
            .unwrap_err();
        assert_eq!(old.code, ErrorCode::Unsupported);
        assert!(old.message.contains("too old"), "{old}");
        let limited = client
            .http_send(&public, "e", &json!({}))
            .await
            .unwrap_err();
        assert_eq!(
            (limited.code, limited.message.as_str()),
            (
                ErrorCode::Rejected,
                "Too many messages to broadcast, please reduce the batch size"
            )
        );
        let empty = client.http_send(&public, "", &json!({})).await.unwrap_err();
        assert_eq!(empty.code, ErrorCode::InvalidInput);
    });
    let p = fake.post();
    assert_eq!(
        p.target,
        "/api/broadcast/room%201/events/evt%202?apikey=KEY&vsn=2.0.0&private=true"
    );
    assert_eq!(p.header("apikey"), Some("KEY"));
    assert_eq!(p.header("content-type"), Some("application/json"));
    assert_eq!(p.header("authorization"), Some("Bearer tok"));
    assert_eq!(p.text(), r#"{"a":1}"#);
    assert_eq!(
        fake.post().target,
        "/api/broadcast/lobby/events/e?apikey=KEY&vsn=2.0.0"
    );
}

#[test]
fn an_unreachable_server_is_an_io_error_not_a_hang() {
    // A port with no listener: the connect is refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ClientConfig::new(format!("ws://127.0.0.1:{port}/socket"))
        .reconnect_after(|_| Duration::from_secs(600));
    let (client, _events) = connect(cfg);
    let room = client.channel("room1", ChannelOptions::default());
    let started = Instant::now();
    let e = smol::block_on(client.http_send(&room, "e", &1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io, "{e}");
    assert!(started.elapsed() < WAIT);
}

/// Every byte value, including the ones text would mangle.
const BYTES: &[u8] = &[0x00, 0x80, 0xff, b'"', b'\n', 0x7f];

#[test]
fn http_send_binary_posts_the_raw_bytes_as_octet_stream() {
    let fake = FakeHttp::start();
    let (client, _events) = connect(fake.config().access_token("tok"));
    let room = client.channel("room 1", ChannelOptions::default().private(true));
    fake.answer(202, "");
    fake.answer(404, "");
    smol::block_on(async {
        client
            .http_send_binary(&room, "evt 2", BYTES)
            .await
            .unwrap();
        let old = client
            .http_send_binary(&room, "e", BYTES)
            .await
            .unwrap_err();
        assert_eq!(old.code, ErrorCode::Unsupported, "404: server too old");
        let empty = client.http_send_binary(&room, "", BYTES).await.unwrap_err();
        assert_eq!(empty.code, ErrorCode::InvalidInput);
    });
    let p = fake.post();
    assert_eq!(
        p.target,
        "/api/broadcast/room%201/events/evt%202?apikey=KEY&vsn=2.0.0&private=true"
    );
    assert_eq!(p.header("content-type"), Some("application/octet-stream"));
    assert_eq!(p.header("apikey"), Some("KEY"));
    assert_eq!(p.header("authorization"), Some("Bearer tok"));
    assert_eq!(p.body, BYTES, "the raw bytes, not JSON");
    assert_eq!(fake.post().body, BYTES);
}

#[test]
fn a_binary_fallback_broadcast_posts_the_single_endpoint_as_octet_stream() {
    let fake = FakeHttp::start();
    let (client, _events) = connect(fake.config().access_token("tok").http_fallback(true));
    let room = client.channel("room1", ChannelOptions::default().broadcast_ack(true));
    client.subscribe(&room).unwrap();
    fake.answer(202, "");
    fake.answer(500, r#"{"message":"boom"}"#);
    smol::block_on(async {
        let ok = client
            .broadcast_binary_with_ack(&room, "bin", BYTES)
            .unwrap();
        client.wait_for_ack(&ok, WAIT).await.unwrap();
        let refused = client
            .broadcast_binary_with_ack(&room, "bin", BYTES)
            .unwrap();
        let e = client.wait_for_ack(&refused, WAIT).await.unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Rejected, "boom"));
    });
    let p = fake.post();
    // Not the batch endpoint: it is JSON only.
    assert_eq!(
        p.target,
        "/api/broadcast/room1/events/bin?apikey=KEY&vsn=2.0.0"
    );
    assert_eq!(p.header("content-type"), Some("application/octet-stream"));
    assert_eq!(p.header("authorization"), Some("Bearer tok"));
    assert_eq!(p.body, BYTES);
    // JSON broadcasts on the same channel still use the batch endpoint.
    client.broadcast(&room, "j", &json!({"a": 1})).unwrap();
    let _ = fake.post();
    let p = fake.post();
    assert_eq!(p.target, "/api/broadcast?apikey=KEY&vsn=2.0.0");
    assert_eq!(p.header("content-type"), Some("application/json"));
}
