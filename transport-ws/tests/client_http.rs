//! The client's REST side against a fake HTTP server (std `TcpListener` on
//! 127.0.0.1:0) that records each request exactly and answers with a
//! scripted status: the HTTP broadcast fallback (`POST /api/broadcast`) and
//! `Client::http_send` (`POST /api/broadcast/<topic>/events/<event>`). The
//! WebSocket upgrade the client also tries on that port is refused with
//! 503, so its channels can never push.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidings_ws::client::{
    ChannelEvent, ChannelOptions, Client, ClientConfig, ErrorCode, Event, Events,
};

const WAIT: Duration = Duration::from_secs(5);

/// One POST as the server saw it.
#[derive(Debug)]
struct Post {
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Post {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

struct FakeHttp {
    addr: String,
    posts: mpsc::Receiver<Post>,
    /// `(status, body)` for the next POSTs, in order; 202 once empty.
    answers: Arc<Mutex<Vec<(u16, String)>>>,
}

/// One request: its method and the rest.
fn read_request(s: &TcpStream) -> io::Result<(String, Post)> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    Ok((
        method,
        Post {
            target,
            headers,
            body,
        },
    ))
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
                let Ok((method, post)) = read_request(&s) else {
                    continue;
                };
                let (status, reply) = if method == "POST" {
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
                if method == "POST" && tx.send(post).is_err() {
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

fn connect(cfg: ClientConfig) -> (Client, Events) {
    let (client, driver) = Client::new(cfg).unwrap();
    let events = client.events();
    smol::spawn(driver.run()).detach();
    (client, events)
}

fn wait_for<T>(events: &Events, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    smol::block_on(async {
        let end = Instant::now() + WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let e = smol::future::or(events.recv(), async {
                smol::Timer::after(left).await;
                None
            })
            .await
            .expect("an event in time");
            if let Some(t) = f(&e) {
                return t;
            }
        }
    })
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
        p.body,
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
    assert_eq!(p.body, r#"{"a":1}"#);
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
