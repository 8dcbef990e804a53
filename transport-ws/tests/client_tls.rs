//! The client over TLS: an in-process fake Phoenix server behind rustls
//! with a self-signed certificate (rcgen) on 127.0.0.1:0. The same port
//! answers the REST single endpoint over HTTPS, as a Supabase server does.

#![cfg(feature = "tls")]

// Each test crate uses its own part of the shared helpers.
#[allow(dead_code)]
mod support;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConnection, StreamOwned};
use serde_json::{Value, json};
use support::{Post, WAIT, connect, wait_for};
use tidings_ws::client::{
    Binding, BroadcastPayload, ChannelOptions, Client, ClientConfig, ConnectionEvent, ErrorCode,
    Event,
};
use tungstenite::{Message, WebSocket};

type Tls = StreamOwned<ServerConnection, TcpStream>;

/// A self-signed certificate for 127.0.0.1 and its server config.
fn server_config() -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    (Arc::new(cfg), cert)
}

/// A stream that first replays bytes already read (the request head the
/// server peeked at), then reads from the inner stream.
struct Replay<S> {
    head: io::Cursor<Vec<u8>>,
    inner: S,
}

impl<S: Read> Read for Replay<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Replay<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Reads up to the end of an HTTP request head (`None` if the peer goes
/// away, e.g. a client that refused the certificate).
fn read_head(s: &mut Tls) -> Option<Vec<u8>> {
    let end = Instant::now() + WAIT;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if Instant::now() > end {
            return None;
        }
        match s.read(&mut b) {
            Ok(0) => return None,
            Ok(_) => head.push(b[0]),
            Err(e) if retryable(&e) => {}
            Err(_) => return None,
        }
    }
    Some(head)
}

/// The request with this `head`, its body read off `s`.
fn parse_post(head: &[u8], s: &mut Tls) -> Post {
    let mut post = Post::from_head(&String::from_utf8_lossy(head));
    let len = post.content_length();
    let mut body = vec![0; len];
    let mut got = 0;
    while got < len {
        match s.read(&mut body[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if retryable(&e) => {}
            Err(_) => break,
        }
    }
    post.body = body;
    post
}

/// What the TLS server hands to the test.
enum Accepted {
    Ws(Box<WebSocket<Replay<Tls>>>),
    Post(Post),
    /// The TLS handshake or the request failed.
    Failed,
}

struct TlsFake {
    url: String,
    cert: CertificateDer<'static>,
    accepted: mpsc::Receiver<Accepted>,
}

impl TlsFake {
    fn start() -> TlsFake {
        let (cfg, cert) = server_config();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("wss://{}/socket", listener.local_addr().unwrap());
        let (tx, accepted) = mpsc::channel();
        thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                tcp.set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                let Ok(conn) = ServerConnection::new(Arc::clone(&cfg)) else {
                    return;
                };
                let mut tls = StreamOwned::new(conn, tcp);
                let got = match read_head(&mut tls) {
                    None => Accepted::Failed,
                    Some(head)
                        if String::from_utf8_lossy(&head)
                            .to_ascii_lowercase()
                            .contains("upgrade: websocket") =>
                    {
                        let replay = Replay {
                            head: io::Cursor::new(head),
                            inner: tls,
                        };
                        match tungstenite::accept(replay) {
                            Ok(ws) => Accepted::Ws(Box::new(ws)),
                            Err(_) => Accepted::Failed,
                        }
                    }
                    Some(head) => {
                        let post = parse_post(&head, &mut tls);
                        let _ = tls.write_all(
                            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        );
                        let _ = tls.flush();
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                        Accepted::Post(post)
                    }
                };
                if tx.send(got).is_err() {
                    return;
                }
            }
        });
        TlsFake {
            url,
            cert,
            accepted,
        }
    }

    fn next(&self) -> Accepted {
        self.accepted
            .recv_timeout(WAIT)
            .expect("the client connects")
    }

    fn ws(&self) -> WebSocket<Replay<Tls>> {
        match self.next() {
            Accepted::Ws(ws) => *ws,
            Accepted::Post(p) => panic!("expected an upgrade, got {p:?}"),
            Accepted::Failed => panic!("the TLS handshake failed"),
        }
    }

    fn trusting(&self) -> ClientConfig {
        ClientConfig::new(self.url.clone())
            .apikey("k")
            .root_certificate(self.cert.to_vec())
    }
}

/// The next text frame with `event`, answering heartbeats on the way.
fn recv_event(ws: &mut WebSocket<Replay<Tls>>, event: &str) -> Value {
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v[3] == event {
                    return v;
                }
                if v[3] == "heartbeat" {
                    let r =
                        json!([null, v[1], "phoenix", "phx_reply", {"status":"ok","response":{}}]);
                    ws.send(Message::text(r.to_string())).unwrap();
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if retryable(&e) => {}
            Err(e) => panic!("the socket failed: {e}"),
        }
    }
    panic!("no {event} in {WAIT:?}");
}

#[test]
fn wss_joins_and_receives_a_broadcast_from_a_tls_server() {
    let fake = TlsFake::start();
    let (client, events) = connect(fake.trusting());
    let room = client.channel("room1", ChannelOptions::default());
    client.on(&room, Binding::broadcast("*")).unwrap();
    client.subscribe(&room).unwrap();
    let mut ws = fake.ws();
    let j = recv_event(&mut ws, "phx_join");
    assert_eq!(j[2], "realtime:room1");
    let ok =
        json!([j[0], j[1], j[2], "phx_reply", {"status":"ok","response":{"postgres_changes":[]}}]);
    ws.send(Message::text(ok.to_string())).unwrap();
    let hi = json!([null, null, "realtime:room1", "broadcast", {"type":"broadcast","event":"hi","payload":{"x":1}}]);
    ws.send(Message::text(hi.to_string())).unwrap();
    let (event, payload) = wait_for(&events, |e| match e {
        Event::Broadcast { event, payload, .. } => Some((event.clone(), payload.clone())),
        _ => None,
    });
    assert_eq!(
        (event.as_str(), payload),
        ("hi", BroadcastPayload::Json(json!({"x": 1})))
    );
    // And the client's pushes travel back over TLS.
    client.broadcast(&room, "back", &json!({"y": 2})).unwrap();
    let b = recv_event(&mut ws, "broadcast");
    assert_eq!(
        b[4],
        json!({"type":"broadcast","event":"back","payload":{"y":2}})
    );
}

#[test]
fn an_untrusted_certificate_is_a_typed_connect_error() {
    let fake = TlsFake::start();
    // The built-in Mozilla roots do not trust a self-signed certificate.
    let cfg = ClientConfig::new(fake.url.clone())
        .apikey("k")
        .reconnect_after(|_| Duration::from_secs(60));
    let (_client, events) = connect(cfg);
    let started = Instant::now();
    let err = wait_for(&events, |e| match e {
        Event::Connection(ConnectionEvent::Error(err)) => Some(err.clone()),
        _ => None,
    });
    assert_eq!(err.code, ErrorCode::Tls, "{err}");
    assert!(
        err.context("reason")
            .is_some_and(|r| r.contains("certificate")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "fails at once, not at the connect timeout"
    );
    assert!(matches!(fake.next(), Accepted::Failed));
}

#[test]
fn http_send_goes_over_https_with_the_configured_root() {
    let fake = TlsFake::start();
    let client = Client::connect(fake.trusting().access_token("tok")).unwrap();
    let room = client.channel("room 1", ChannelOptions::default().private(true));
    let sent = smol::block_on(client.http_send(&room, "evt", &json!({"a": 1})));
    sent.unwrap();
    // The WebSocket connects to the same port; find the POST.
    let post = loop {
        match fake.next() {
            Accepted::Post(p) => break p,
            Accepted::Ws(_) | Accepted::Failed => {}
        }
    };
    assert_eq!(
        post.target,
        "/api/broadcast/room%201/events/evt?apikey=k&vsn=2.0.0&private=true"
    );
    assert_eq!(post.header("authorization"), Some("Bearer tok"));
    assert_eq!(post.header("apikey"), Some("k"));
    assert_eq!(
        serde_json::from_slice::<Value>(&post.body).unwrap(),
        json!({"a": 1})
    );
}
