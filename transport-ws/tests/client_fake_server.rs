//! The client against a scripted fake server: a blocking tungstenite server
//! on 127.0.0.1:0 in a thread, each test scripting what it sends, drops or
//! withholds (fault injection). Intervals are tens of milliseconds.

// Each test crate uses its own part of the shared helpers.
#[allow(dead_code)]
mod support;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{WAIT, connect, wait_for};
use tidings_ws::client::{
    Binding, ChannelEvent, ChannelOptions, ChannelState, Client, ClientConfig, ConnectionEvent,
    ConnectionState, ErrorCode, Event,
};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the server saw of one connection's upgrade.
#[derive(Debug, Clone, Default)]
struct Upgrade {
    uri: String,
    authorization: Option<String>,
}

struct Fake {
    url: String,
    conns: mpsc::Receiver<(Conn, Instant)>,
    attempts: mpsc::Receiver<Instant>,
    refuse: Arc<AtomicUsize>,
    gate: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
}

impl Fake {
    fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}/socket", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::channel();
        let (atx, attempts) = mpsc::channel();
        let refuse = Arc::new(AtomicUsize::new(0));
        let gate: Arc<Mutex<Option<mpsc::Receiver<()>>>> = Arc::new(Mutex::new(None));
        let (r, g) = (Arc::clone(&refuse), Arc::clone(&gate));
        thread::spawn(move || {
            loop {
                let gate_rx = g.lock().unwrap().take();
                if let Some(rx) = gate_rx {
                    let _ = rx.recv();
                }
                let Ok((tcp, _)) = listener.accept() else {
                    return;
                };
                let _ = atx.send(Instant::now());
                if r.load(Ordering::SeqCst) > 0 {
                    r.fetch_sub(1, Ordering::SeqCst);
                    drop(tcp); // before the handshake: the connect fails
                    continue;
                }
                let seen = Arc::new(Mutex::new(Upgrade::default()));
                let s2 = Arc::clone(&seen);
                let cb = move |req: &Request, resp: Response| {
                    let mut s = s2.lock().unwrap();
                    s.uri = req.uri().to_string();
                    s.authorization = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    Ok(resp)
                };
                let Ok(ws) = tungstenite::accept_hdr(tcp, cb) else {
                    continue;
                };
                ws.get_ref().set_read_timeout(Some(ms(20))).unwrap();
                let upgrade = seen.lock().unwrap().clone();
                if tx.send((Conn { ws, upgrade }, Instant::now())).is_err() {
                    return;
                }
            }
        });
        Fake {
            url,
            conns,
            attempts,
            refuse,
            gate,
        }
    }

    fn accept(&self) -> (Conn, Instant) {
        self.conns.recv_timeout(WAIT).expect("the client connects")
    }

    fn config(&self) -> ClientConfig {
        ClientConfig::new(self.url.clone()).apikey("k")
    }
}

struct Conn {
    ws: WebSocket<TcpStream>,
    upgrade: Upgrade,
}

enum Got {
    Frame(Value),
    Close(Option<CloseFrame>),
    Gone,
    Nothing,
}

impl Conn {
    fn next(&mut self, within: Duration) -> Got {
        let end = Instant::now() + within;
        while Instant::now() < end {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return Got::Frame(serde_json::from_str(t.as_str()).unwrap());
                }
                Ok(Message::Binary(b)) => panic!("the client sent binary: {b:?}"),
                Ok(Message::Close(f)) => return Got::Close(f),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Got::Gone,
            }
        }
        Got::Nothing
    }

    /// The next frame (panics on close or after 5 s).
    fn recv(&mut self) -> Value {
        match self.next(WAIT) {
            Got::Frame(v) => v,
            Got::Close(f) => panic!("closed: {f:?}"),
            Got::Gone => panic!("gone"),
            Got::Nothing => panic!("no frame in {WAIT:?}"),
        }
    }

    /// The next frame with this event, answering heartbeats on the way.
    fn recv_event(&mut self, event: &str) -> Value {
        loop {
            let v = self.recv();
            if v[3] == event {
                return v;
            }
            if v[3] == "heartbeat" {
                self.reply(&v, "ok", &json!({}));
            }
        }
    }

    fn send(&mut self, v: &Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    fn reply(&mut self, to: &Value, status: &str, response: &Value) {
        let r = json!([to[0], to[1], to[2], "phx_reply", {"status": status, "response": response}]);
        self.send(&r);
    }

    /// Receives a join and accepts it; returns the join frame.
    fn accept_join(&mut self) -> Value {
        let j = self.recv_event("phx_join");
        self.reply(&j, "ok", &json!({"postgres_changes": []}));
        j
    }

    /// Drops the TCP connection without a close frame (the client sees 1006).
    fn drop_tcp(self) {
        let _ = self.ws.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

fn joined(topic: &'static str) -> impl FnMut(&Event) -> Option<()> {
    move |e| match e {
        Event::Channel {
            topic: t,
            change:
                ChannelEvent::StateChange {
                    new: ChannelState::Joined,
                    ..
                },
        } if t == topic => Some(()),
        _ => None,
    }
}

#[test]
fn upgrade_url_auth_header_and_join_token_come_from_the_config() {
    let fake = Fake::start();
    let client =
        Client::connect(fake.config().access_token_fn(|| Some("fn-token".into()))).unwrap();
    let room = client.channel("room1", ChannelOptions::default());
    client.subscribe(&room).unwrap();
    let (mut c, _) = fake.accept();
    assert_eq!(c.upgrade.uri, "/socket/websocket?apikey=k&vsn=2.0.0");
    assert_eq!(c.upgrade.authorization.as_deref(), Some("Bearer fn-token"));
    let j = c.accept_join();
    assert_eq!(
        (&j[0], &j[2], &j[4]["access_token"]),
        (&j[1], &json!("realtime:room1"), &json!("fn-token"))
    );
    let events = client.events();
    client.set_auth(Some("new-token".into()));
    let push = c.recv_event("access_token");
    assert_eq!(
        (&push[0], &push[4]),
        (&j[0], &json!({"access_token": "new-token"}))
    );
    drop(events);
}

#[test]
fn heartbeat_timeout_closes_1000_then_reconnects_after_the_backoff() {
    use ConnectionState::{Closed, Closing, Connecting, Open};
    let fake = Fake::start();
    let cfg = fake
        .config()
        .heartbeat_interval(ms(100))
        .reconnect_after(|_| ms(150));
    // The driver starts after the stream exists, so it sees every change.
    let (client, events) = connect(cfg);
    let room = client.channel("room1", ChannelOptions::default());
    client.subscribe(&room).unwrap();
    let (mut c, _) = fake.accept();
    let j1 = c.accept_join();
    // A heartbeat comes one interval after open; it gets no reply.
    let hb = c.recv_event("heartbeat");
    let hb_at = Instant::now();
    assert_eq!(
        (&hb[0], &hb[2], &hb[4]),
        (&Value::Null, &json!("phoenix"), &json!({}))
    );
    let close = loop {
        match c.next(WAIT) {
            Got::Close(f) => break f.expect("a close frame"),
            Got::Frame(v) => assert_ne!(
                v[3], "heartbeat",
                "no second heartbeat while one is pending"
            ),
            other => panic!("expected a close, got {}", matches!(other, Got::Gone)),
        }
    };
    let closed_at = Instant::now();
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1000, "heartbeat timeout")
    );
    assert!(
        closed_at - hb_at >= ms(80),
        "timeout after one interval, got {:?}",
        closed_at - hb_at
    );
    let (mut c2, opened_at) = fake.accept();
    assert!(
        opened_at - closed_at >= ms(130),
        "reconnect after the 150 ms backoff, got {:?}",
        opened_at - closed_at
    );
    let j2 = c2.accept_join();
    assert_ne!(j2[0], j1[0], "the rejoin has a new join_ref");
    // State changes, in order, across the whole episode.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        seen.push(wait_for(&events, |e| match e {
            Event::Connection(ConnectionEvent::StateChange { old, new }) => Some((*old, *new)),
            _ => None,
        }));
    }
    assert_eq!(
        seen,
        [
            (Closed, Connecting),
            (Connecting, Open),
            (Open, Closing),
            (Closing, Closed),
            (Closed, Connecting),
            (Connecting, Open)
        ]
    );
}

#[test]
fn dropped_tcp_1006_reconnects_and_rejoins_with_a_new_join_ref() {
    let fake = Fake::start();
    let client = Client::connect(fake.config().reconnect_after(|_| ms(30))).unwrap();
    let events = client.events();
    let room = client.channel("room1", ChannelOptions::default());
    client.subscribe(&room).unwrap();
    let (mut c, _) = fake.accept();
    let j1 = c.accept_join();
    wait_for(&events, joined("realtime:room1"));
    c.drop_tcp();
    let err = wait_for(&events, |e| match e {
        Event::Channel {
            change: ChannelEvent::Error(err),
            ..
        } => Some(err.clone()),
        _ => None,
    });
    assert_eq!(
        (err.code, err.context("code")),
        (ErrorCode::Closed, Some("1006")),
        "{err}"
    );
    let (mut c2, _) = fake.accept();
    let j2 = c2.accept_join();
    assert_eq!(j2[3], "phx_join");
    assert_ne!(j2[0], j1[0]);
    assert_eq!(j2[0], j2[1]);
    wait_for(&events, joined("realtime:room1"));
    assert_eq!(client.store().state("room1"), Some(ChannelState::Joined));
}

#[test]
fn failed_connects_back_off_by_the_configured_function() {
    let fake = Fake::start();
    fake.refuse.store(3, Ordering::SeqCst);
    let client = Client::connect(
        fake.config()
            .reconnect_after(|tries| ms(60 * u64::from(tries))),
    )
    .unwrap();
    let times: Vec<Instant> = (0..4)
        .map(|_| fake.attempts.recv_timeout(WAIT).unwrap())
        .collect();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([60, 120, 180]) {
        assert!(*gap >= ms(want - 10), "gaps {gaps:?}");
    }
    assert!(gaps[0] < gaps[1] && gaps[1] < gaps[2], "growing: {gaps:?}");
    let _ = fake.accept();
    drop(client);
}

#[test]
fn messages_sent_while_not_open_keep_the_last_100_and_arrive_in_order() {
    let fake = Fake::start();
    let (go, gate) = mpsc::channel();
    *fake.gate.lock().unwrap() = Some(gate);
    let client = Client::connect(fake.config()).unwrap();
    let room = client.channel("room1", ChannelOptions::default());
    client.subscribe(&room).unwrap();
    for i in 0..105 {
        client
            .send("realtime:room1", "raw", &json!({"i": i}))
            .unwrap();
        client.broadcast(&room, "b", &json!({"i": i})).unwrap();
    }
    assert_ne!(client.connection_state(), ConnectionState::Open);
    go.send(()).unwrap();
    let (mut c, _) = fake.accept();
    // The send buffer is flushed first, in order: the 6th to the 105th.
    let raw: Vec<i64> = (0..100)
        .map(|_| c.recv())
        .map(|v| {
            assert_eq!(v[3], "raw");
            v[4]["i"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(raw, (5..105).collect::<Vec<_>>());
    // Then the join; the channel's push buffer goes out once it is accepted.
    let j = c.accept_join();
    let b: Vec<i64> = (0..100)
        .map(|_| c.recv())
        .map(|v| {
            assert_eq!((&v[0], &v[3]), (&j[0], &json!("broadcast")));
            v[4]["payload"]["i"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(b, (5..105).collect::<Vec<_>>());
}

#[test]
fn join_error_rejoins_with_the_rejoin_backoff() {
    let fake = Fake::start();
    let client = Client::connect(
        fake.config()
            .rejoin_after(|tries| ms(50 * u64::from(tries))),
    )
    .unwrap();
    let events = client.events();
    let room = client.channel("room1", ChannelOptions::default());
    client.subscribe(&room).unwrap();
    let (mut c, _) = fake.accept();
    let mut refs = Vec::new();
    let mut at = Vec::new();
    for _ in 0..2 {
        let j = c.recv_event("phx_join");
        at.push(Instant::now());
        refs.push(j[0].clone());
        c.reply(
            &j,
            "error",
            &json!({"reason": "RealtimeRestarting: Realtime is restarting, please standby"}),
        );
        let err = wait_for(&events, |e| match e {
            Event::Channel {
                change: ChannelEvent::Error(err),
                ..
            } => Some(err.clone()),
            _ => None,
        });
        assert_eq!(err.code, ErrorCode::JoinRejected);
    }
    let j = c.accept_join();
    at.push(Instant::now());
    refs.push(j[0].clone());
    wait_for(&events, joined("realtime:room1"));
    assert!(
        at[1] - at[0] >= ms(40) && at[2] - at[1] >= ms(90),
        "{:?}",
        [at[1] - at[0], at[2] - at[1]]
    );
    assert!(
        refs[0] != refs[1] && refs[1] != refs[2],
        "new join_ref each time: {refs:?}"
    );
}

#[test]
fn ack_is_ok_on_reply_and_timeout_without_one() {
    let fake = Fake::start();
    let client = Client::connect(fake.config().timeout(ms(300))).unwrap();
    let room = client.channel("room1", ChannelOptions::default().broadcast_ack(true));
    client.subscribe(&room).unwrap();
    let (mut c, _) = fake.accept();
    c.accept_join();
    // Replied: acknowledged, correlated by the push's ref.
    let a = client
        .broadcast_with_ack(&room, "e", &json!({"n": 1}))
        .unwrap();
    let got = c.recv_event("broadcast");
    assert_eq!(got[1], json!(a.push_ref()));
    assert_eq!(
        got[4],
        json!({"type": "broadcast", "event": "e", "payload": {"n": 1}})
    );
    c.reply(&got, "ok", &json!({}));
    assert!(smol::block_on(client.wait_for_ack(&a, WAIT)).is_ok());
    // Not replied: wait_for_ack's own timeout…
    let b = client
        .broadcast_with_ack(&room, "e", &json!({"n": 2}))
        .unwrap();
    let t = Instant::now();
    let err = smol::block_on(client.wait_for_ack(&b, ms(100))).unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout);
    assert!(t.elapsed() < ms(250));
    // …and the push timeout, when waiting longer.
    let err = smol::block_on(client.wait_for_ack(&b, WAIT)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout, "{err}");
    assert!(
        t.elapsed() >= ms(280) && t.elapsed() < ms(2000),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn stale_join_ref_messages_are_ignored() {
    let fake = Fake::start();
    let client = Client::connect(fake.config()).unwrap();
    let events = client.events();
    let room = client.channel("room1", ChannelOptions::default());
    client.on(&room, Binding::broadcast("*")).unwrap();
    client.subscribe(&room).unwrap();
    let (mut c, _) = fake.accept();
    c.accept_join();
    wait_for(&events, joined("realtime:room1"));
    let b = |jr: Value, n: i64| json!([jr, null, "realtime:room1", "broadcast", {"type":"broadcast","event":"e","payload":{"n": n}}]);
    c.send(&json!(["999", "999", "realtime:room1", "phx_close", {}]));
    c.send(&b(json!("999"), 1));
    c.send(&b(Value::Null, 2));
    let first = wait_for(&events, |e| match e {
        Event::Broadcast { payload, .. } => Some(payload.as_json().unwrap()["n"].clone()),
        Event::Channel {
            change:
                ChannelEvent::StateChange {
                    new: ChannelState::Closed,
                    ..
                },
            ..
        } => Some(json!("closed")),
        _ => None,
    });
    assert_eq!(
        first,
        json!(2),
        "the stale close and broadcast were dropped"
    );
    assert_eq!(client.store().state("room1"), Some(ChannelState::Joined));
}

#[test]
fn server_phx_close_closes_the_channel_without_rejoin() {
    let fake = Fake::start();
    let client = Client::connect(fake.config().rejoin_after(|_| ms(20))).unwrap();
    let events = client.events();
    let room = client.channel("room1", ChannelOptions::default());
    client.subscribe(&room).unwrap();
    let (mut c, _) = fake.accept();
    let j = c.accept_join();
    wait_for(&events, joined("realtime:room1"));
    c.send(&json!([j[0], j[0], "realtime:room1", "phx_close", {}]));
    wait_for(&events, |e| match e {
        Event::Channel {
            change:
                ChannelEvent::StateChange {
                    new: ChannelState::Closed,
                    ..
                },
            ..
        } => Some(()),
        _ => None,
    });
    assert_eq!(client.store().state("room1"), Some(ChannelState::Closed));
    match c.next(ms(300)) {
        Got::Nothing => {}
        Got::Frame(v) => panic!("nothing may follow a phx_close, got {v}"),
        _ => panic!("the socket stays up"),
    }
}

#[test]
fn broadcasts_and_presence_reach_the_callback_and_the_stream() {
    let fake = Fake::start();
    let (tx, rx) = mpsc::channel::<Event>();
    let tx = Mutex::new(tx);
    let client = Client::connect(fake.config().handler(move |e: &Event| {
        let _ = tx.lock().unwrap().send(e.clone());
    }))
    .unwrap();
    let room = client.channel("room1", ChannelOptions::default().presence_key("me"));
    client.on(&room, Binding::broadcast("cursor")).unwrap();
    client.on(&room, Binding::presence("*")).unwrap();
    client.subscribe(&room).unwrap();
    let (mut c, _) = fake.accept();
    let j = c.accept_join();
    assert_eq!(
        j[4]["config"]["presence"],
        json!({"key": "me", "enabled": true})
    );
    client.track(&room, &json!({"name": "me"})).unwrap();
    let t = c.recv_event("presence");
    assert_eq!(
        t[4],
        json!({"type":"presence","event":"track","payload":{"name":"me"}})
    );
    c.send(&json!([j[0], null, "realtime:room1", "presence_state", {"me": {"metas": [{"phx_ref": "A", "name": "me"}]}}]));
    c.send(&json!([null, null, "realtime:room1", "broadcast", {"type":"broadcast","event":"Cursor","payload":{"x":1}}]));
    let mut more = Vec::new();
    while more.len() < 3 {
        let e = rx.recv_timeout(WAIT).unwrap();
        if !matches!(e, Event::Connection(_) | Event::Channel { .. }) {
            more.push(e);
        }
    }
    assert!(
        matches!(&more[0], Event::Presence { change: tidings_ws::client::PresenceChange::Join { key, .. }, .. } if key == "me")
    );
    assert!(
        matches!(&more[1], Event::Presence { change: tidings_ws::client::PresenceChange::Sync(s), .. } if s["me"][0]["presence_ref"] == "A")
    );
    assert!(matches!(&more[2], Event::Broadcast { event, .. } if event == "Cursor"));
    assert_eq!(client.presence_state(&room)["me"][0]["name"], "me");
}

#[test]
fn access_token_fn_is_consulted_after_every_heartbeat_and_changes_are_pushed() {
    let fake = Fake::start();
    // Answers, in order: the connect, then one per heartbeat.
    let script = ["t0", "t0", "t1", "t2"];
    let calls = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&calls);
    let client = Client::connect(fake.config().heartbeat_interval(ms(40)).access_token_fn(
        move || {
            let i = n.fetch_add(1, Ordering::SeqCst);
            Some(script[i.min(script.len() - 1)].to_owned())
        },
    ))
    .unwrap();
    let room = client.channel("room1", ChannelOptions::default());
    client.subscribe(&room).unwrap();
    let (mut c, _) = fake.accept();
    assert_eq!(c.upgrade.authorization.as_deref(), Some("Bearer t0"));
    let j = c.accept_join();
    assert_eq!(j[4]["access_token"], "t0");
    // Heartbeats are answered; the pushes that follow carry only changes.
    let mut heartbeats = 0;
    let mut pushes = Vec::new();
    while pushes.len() < 2 {
        let v = c.recv();
        match v[3].as_str() {
            Some("heartbeat") => {
                heartbeats += 1;
                c.reply(&v, "ok", &json!({}));
            }
            Some("access_token") => {
                assert_eq!(v[0], j[0], "pushed on the joined channel");
                pushes.push((heartbeats, v[4]["access_token"].clone()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        pushes.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(),
        [json!("t1"), json!("t2")],
        "t0 again is not pushed"
    );
    assert!(
        pushes[0].0 >= 2 && pushes[1].0 >= 3,
        "each token follows its heartbeat: {pushes:?}"
    );
    assert!(calls.load(Ordering::SeqCst) >= 4);
}
