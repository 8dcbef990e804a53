//! The Rust realtime client (`tidings_ws::client`) against the real Tidings
//! WebSocket server on loopback: joins, broadcasts (self, ack, wildcard and
//! case-insensitive bindings), presence between two Rust clients and between
//! a Rust client and realtime-js, `set_auth`, refused joins, broadcasts
//! from server code, and binary broadcasts (V2 only).

#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{TestServer, WAIT};
use tidings_core::{Channel, Effects, Peer};
use tidings_smol::{Access, App, AppError, NextAction, Page};
use tidings_ws::client::{
    Acknowledged, Binding, BroadcastPayload, ChannelEvent, ChannelOptions, ChannelState, Client,
    ClientConfig, ConnectionEvent, ConnectionState, ErrorCode, Event, Events, PresenceChange,
    PresenceState,
};
use tidings_ws::frame::Vsn;
use tidings_ws::server::topic::realtime_channel;

/// Refuses topics containing `denied` and the access token `revoked`, with
/// the interop server's messages.
struct AuthApp;

impl App for AuthApp {
    fn render(&self, _: &str, _: &mut Page) -> Result<Option<String>, AppError> {
        Ok(None)
    }

    fn command(
        &self,
        _: &mut Effects,
        name: &str,
        _: &Value,
    ) -> Result<Option<NextAction>, AppError> {
        Err(AppError::unknown_command(name))
    }

    fn authorize(
        &self,
        _: &Peer,
        access: Access,
        channel: &Channel,
        token: Option<&str>,
    ) -> Result<(), String> {
        let name = channel.to_string();
        if name.contains("denied") {
            return Err(format!(
                "You do not have permissions to {} this Channel topic",
                match access {
                    Access::Join => "read from",
                    Access::Broadcast => "write to",
                    Access::Presence => "track presence on",
                }
            ));
        }
        if token == Some("revoked") {
            return Err("Token has been revoked".into());
        }
        Ok(())
    }
}

fn start() -> TestServer {
    TestServer::start(AuthApp, |_, _| {})
}

fn endpoint(srv: &TestServer) -> String {
    format!("ws://{}/socket", srv.addr)
}

/// A client whose event stream exists before its driver runs, so it sees
/// every event from the first connect on.
fn connect_cfg(cfg: ClientConfig) -> (Client, Events) {
    let (client, driver) = Client::new(cfg).expect("a valid config");
    let events = client.events();
    smol::spawn(driver.run()).detach();
    (client, events)
}

fn connect(srv: &TestServer) -> (Client, Events) {
    connect_cfg(ClientConfig::new(endpoint(srv)).apikey("k"))
}

/// The next event, if one comes within `left`.
fn next_within(events: &Events, left: Duration) -> Option<Event> {
    smol::block_on(smol::future::or(events.recv(), async {
        smol::Timer::after(left).await;
        None
    }))
}

/// Waits (at most [`WAIT`]) for the first event `f` maps to `Some`.
fn wait_for<T>(events: &Events, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    let end = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let Some(e) = next_within(events, left) else {
            panic!("timed out waiting for {what}; saw {seen:#?}");
        };
        if let Some(t) = f(&e) {
            return t;
        }
        seen.push(e);
    }
}

/// Every event before the first one `marker` accepts (within [`WAIT`]).
fn events_until(events: &Events, what: &str, mut marker: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut before = Vec::new();
    wait_for(events, what, |e| {
        if marker(e) {
            Some(())
        } else {
            before.push(e.clone());
            None
        }
    });
    before
}

fn is_state(e: &Event, topic: &str, state: ChannelState) -> bool {
    matches!(e, Event::Channel { topic: t, change: ChannelEvent::StateChange { new, .. } }
        if t == topic && *new == state)
}

fn wait_joined(events: &Events, topic: &str) {
    wait_for(events, &format!("{topic} joined"), |e| {
        is_state(e, topic, ChannelState::Joined).then_some(())
    });
}

/// A broadcast's `(event, payload)` on `topic`.
fn broadcast_of(e: &Event, topic: &str) -> Option<(String, Value)> {
    match e {
        Event::Broadcast {
            topic: t,
            event,
            payload,
            ..
        } if t == topic => Some((
            event.clone(),
            payload.as_json().expect("a JSON payload").clone(),
        )),
        _ => None,
    }
}

fn wait_broadcast(events: &Events, topic: &str, event: &str) -> Value {
    wait_for(events, &format!("broadcast {event} on {topic}"), |e| {
        broadcast_of(e, topic).and_then(|(ev, p)| (ev == event).then_some(p))
    })
}

/// Metas without their `presence_ref` (which the server assigns).
fn plain_metas(metas: &[Value]) -> Vec<Value> {
    metas
        .iter()
        .map(|m| {
            let mut m = m.clone();
            let obj = m.as_object_mut().expect("a meta is an object");
            let r = obj.remove("presence_ref");
            assert!(
                r.as_ref()
                    .and_then(Value::as_str)
                    .is_some_and(|r| !r.is_empty()),
                "every meta carries a presence_ref: {r:?}"
            );
            m
        })
        .collect()
}

fn plain_state(state: &PresenceState) -> Value {
    Value::Object(
        state
            .iter()
            .map(|(k, metas)| (k.clone(), Value::Array(plain_metas(metas))))
            .collect(),
    )
}

fn wait_sync(events: &Events, topic: &str, expected: &Value) {
    wait_for(
        events,
        &format!("presence sync {expected} on {topic}"),
        |e| match e {
            Event::Presence {
                topic: t,
                change: PresenceChange::Sync(s),
            } if t == topic && plain_state(s) == *expected => Some(()),
            _ => None,
        },
    );
}

/// `(current, joined)` of the presence join of `key`.
fn wait_presence_join(events: &Events, topic: &str, key: &str) -> (Vec<Value>, Vec<Value>) {
    wait_for(
        events,
        &format!("presence join {key} on {topic}"),
        |e| match e {
            Event::Presence {
                topic: t,
                change:
                    PresenceChange::Join {
                        key: k,
                        current,
                        joined,
                    },
            } if t == topic && k == key => Some((plain_metas(current), plain_metas(joined))),
            _ => None,
        },
    )
}

/// `(current, left)` of the presence leave of `key`.
fn wait_presence_leave(events: &Events, topic: &str, key: &str) -> (Vec<Value>, Vec<Value>) {
    wait_for(
        events,
        &format!("presence leave {key} on {topic}"),
        |e| match e {
            Event::Presence {
                topic: t,
                change:
                    PresenceChange::Leave {
                        key: k,
                        current,
                        left,
                    },
            } if t == topic && k == key => Some((plain_metas(current), plain_metas(left))),
            _ => None,
        },
    )
}

fn ack(client: &Client, r: &tidings_ws::client::AckRef) -> Acknowledged {
    smol::block_on(client.wait_for_ack(r, WAIT)).unwrap_or_else(|e| panic!("ack: {e}"))
}

#[test]
fn join_reports_open_then_joined_with_state_changes_in_order() {
    let srv = start();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let (client, events) = connect_cfg(ClientConfig::new(endpoint(&srv)).apikey("k").handler(
        move |e: &Event| {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(e.clone());
        },
    ));
    let room = client.channel("room", ChannelOptions::default());
    assert_eq!(room.topic(), "realtime:room");
    client.on(&room, Binding::broadcast("*")).expect("binding");
    client.subscribe(&room).expect("subscribe");
    wait_joined(&events, "realtime:room");

    assert_eq!(client.connection_state(), ConnectionState::Open);
    let info = client
        .store()
        .channel("realtime:room")
        .expect("in the store");
    assert_eq!(info.state, ChannelState::Joined);
    assert!(info.join_ref.is_some_and(|r| !r.is_empty()));

    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let conn: Vec<(ConnectionState, ConnectionState)> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Connection(ConnectionEvent::StateChange { old, new }) => Some((*old, *new)),
            _ => None,
        })
        .collect();
    assert_eq!(
        conn,
        [
            (ConnectionState::Closed, ConnectionState::Connecting),
            (ConnectionState::Connecting, ConnectionState::Open)
        ],
        "{seen:#?}"
    );
    let chan: Vec<(ChannelState, ChannelState)> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Channel {
                change: ChannelEvent::StateChange { old, new },
                ..
            } => Some((*old, *new)),
            _ => None,
        })
        .collect();
    assert_eq!(
        chan,
        [
            (ChannelState::Closed, ChannelState::Joining),
            (ChannelState::Joining, ChannelState::Joined)
        ],
        "{seen:#?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            Event::Connection(ConnectionEvent::Error(_))
                | Event::Channel {
                    change: ChannelEvent::Error(_),
                    ..
                }
        )),
        "{seen:#?}"
    );
}

#[test]
fn broadcast_self_reaches_the_sender_only_when_asked() {
    let srv = start();
    let (me, my_events) = connect(&srv);
    let (selfish, selfish_events) = connect(&srv);
    let (other, other_events) = connect(&srv);
    let topic = "realtime:room";

    let plain = me.channel("room", ChannelOptions::default());
    me.on(&plain, Binding::broadcast("*")).expect("binding");
    me.subscribe(&plain).expect("subscribe");
    let echo = selfish.channel("room", ChannelOptions::default().broadcast_self(true));
    selfish.on(&echo, Binding::broadcast("*")).expect("binding");
    selfish.subscribe(&echo).expect("subscribe");
    let room = other.channel("room", ChannelOptions::default());
    other.on(&room, Binding::broadcast("*")).expect("binding");
    other.subscribe(&room).expect("subscribe");
    wait_joined(&my_events, topic);
    wait_joined(&selfish_events, topic);
    wait_joined(&other_events, topic);

    // with broadcast.self the sender gets its own broadcast
    selfish
        .broadcast(&echo, "mine", &json!({"from": "selfish"}))
        .expect("broadcast");
    assert_eq!(
        wait_broadcast(&selfish_events, topic, "mine"),
        json!({"from": "selfish"})
    );

    // without it: the others get it, the sender does not (the marker from
    // another client comes after it on the sender's socket)
    me.broadcast(&plain, "one", &json!({"n": 1}))
        .expect("broadcast");
    assert_eq!(wait_broadcast(&other_events, topic, "one"), json!({"n": 1}));
    assert_eq!(
        wait_broadcast(&selfish_events, topic, "one"),
        json!({"n": 1})
    );
    other
        .broadcast(&room, "marker", &json!({"n": 2}))
        .expect("broadcast");
    let before = events_until(&my_events, "the marker", |e| {
        broadcast_of(e, topic).is_some_and(|(ev, p)| ev == "marker" && p == json!({"n": 2}))
    });
    let mine: Vec<_> = before
        .iter()
        .filter_map(|e| broadcast_of(e, topic))
        .collect();
    assert_eq!(mine, [("mine".to_owned(), json!({"from": "selfish"}))]);
}

#[test]
fn broadcast_with_ack_is_acknowledged_and_delivered() {
    let srv = start();
    let (a, a_events) = connect(&srv);
    let (b, b_events) = connect(&srv);
    let topic = "realtime:acked";
    let ch = a.channel("acked", ChannelOptions::default().broadcast_ack(true));
    a.subscribe(&ch).expect("subscribe");
    let bch = b.channel("acked", ChannelOptions::default());
    b.on(&bch, Binding::broadcast("*")).expect("binding");
    b.subscribe(&bch).expect("subscribe");
    wait_joined(&a_events, topic);
    wait_joined(&b_events, topic);

    let r = a
        .broadcast_with_ack(&ch, "hello", &json!({"body": "hi"}))
        .expect("broadcast");
    assert!(!r.push_ref().is_empty());
    assert_eq!(ack(&a, &r), Acknowledged);
    assert_eq!(
        wait_broadcast(&b_events, topic, "hello"),
        json!({"body": "hi"})
    );
    // a second one gets its own ref and its own ack
    let r2 = a
        .broadcast_with_ack(&ch, "hello", &json!({"body": "again"}))
        .expect("broadcast");
    assert_ne!(r2.push_ref(), r.push_ref());
    assert_eq!(ack(&a, &r2), Acknowledged);
    assert_eq!(
        wait_broadcast(&b_events, topic, "hello"),
        json!({"body": "again"})
    );
}

#[test]
fn wildcard_binding_gets_everything_and_event_match_ignores_case() {
    let srv = start();
    let (sender, sender_events) = connect(&srv);
    let (all, all_events) = connect(&srv);
    let (hello, hello_events) = connect(&srv);
    let topic = "realtime:match";
    let s = sender.channel("match", ChannelOptions::default());
    sender.subscribe(&s).expect("subscribe");
    let a = all.channel("match", ChannelOptions::default());
    all.on(&a, Binding::broadcast("*")).expect("binding");
    all.subscribe(&a).expect("subscribe");
    let h = hello.channel("match", ChannelOptions::default());
    hello.on(&h, Binding::broadcast("Hello")).expect("binding");
    hello.subscribe(&h).expect("subscribe");
    wait_joined(&sender_events, topic);
    wait_joined(&all_events, topic);
    wait_joined(&hello_events, topic);

    for (ev, n) in [("hello", 1), ("other", 2), ("HELLO", 3)] {
        sender
            .broadcast(&s, ev, &json!({"n": n}))
            .expect("broadcast");
    }
    let got: Vec<_> = (0..3)
        .map(|_| wait_for(&all_events, "a broadcast at *", |e| broadcast_of(e, topic)))
        .collect();
    assert_eq!(
        got,
        [
            ("hello".to_owned(), json!({"n": 1})),
            ("other".to_owned(), json!({"n": 2})),
            ("HELLO".to_owned(), json!({"n": 3}))
        ]
    );
    // "Hello" matches hello and HELLO (event names as sent), never "other"
    let got: Vec<_> = (0..2)
        .map(|_| {
            wait_for(&hello_events, "a broadcast at Hello", |e| {
                broadcast_of(e, topic)
            })
        })
        .collect();
    assert_eq!(
        got,
        [
            ("hello".to_owned(), json!({"n": 1})),
            ("HELLO".to_owned(), json!({"n": 3}))
        ]
    );
}

#[test]
fn presence_between_two_rust_clients() {
    let srv = start();
    let (alice, a_events) = connect(&srv);
    let (bob, b_events) = connect(&srv);
    let topic = "realtime:lobby";
    let a = alice.channel("lobby", ChannelOptions::default().presence_key("alice"));
    alice.on(&a, Binding::presence("*")).expect("binding");
    alice.subscribe(&a).expect("subscribe");
    wait_joined(&a_events, topic);
    assert_eq!(
        ack(
            &alice,
            &alice.track(&a, &json!({"name": "alice"})).expect("track")
        ),
        Acknowledged
    );
    let (current, joined) = wait_presence_join(&a_events, topic, "alice");
    assert_eq!((current, joined), (vec![], vec![json!({"name": "alice"})]));
    wait_sync(&a_events, topic, &json!({"alice": [{"name": "alice"}]}));

    // bob joins late: the presence_state carries alice
    let b = bob.channel("lobby", ChannelOptions::default().presence_key("bob"));
    bob.on(&b, Binding::presence("*")).expect("binding");
    bob.subscribe(&b).expect("subscribe");
    wait_joined(&b_events, topic);
    let (_, joined) = wait_presence_join(&b_events, topic, "alice");
    assert_eq!(joined, [json!({"name": "alice"})]);
    wait_sync(&b_events, topic, &json!({"alice": [{"name": "alice"}]}));

    assert_eq!(
        ack(
            &bob,
            &bob.track(&b, &json!({"name": "bob", "n": 7}))
                .expect("track")
        ),
        Acknowledged
    );
    let both = json!({"alice": [{"name": "alice"}], "bob": [{"name": "bob", "n": 7}]});
    for events in [&a_events, &b_events] {
        let (current, joined) = wait_presence_join(events, topic, "bob");
        assert_eq!(
            (current, joined),
            (vec![], vec![json!({"name": "bob", "n": 7})])
        );
        wait_sync(events, topic, &both);
    }
    assert_eq!(plain_state(&alice.presence_state(&a)), both);
    assert_eq!(plain_state(&bob.presence_state(&b)), both);
    // one presence, one ref, seen the same by both
    assert_eq!(
        alice.presence_state(&a)["bob"][0]["presence_ref"],
        bob.presence_state(&b)["bob"][0]["presence_ref"]
    );

    // untrack → leave at both, alice remains
    assert_eq!(ack(&bob, &bob.untrack(&b).expect("untrack")), Acknowledged);
    let alone = json!({"alice": [{"name": "alice"}]});
    for events in [&a_events, &b_events] {
        let (current, left) = wait_presence_leave(events, topic, "bob");
        assert_eq!(
            (current, left),
            (vec![], vec![json!({"name": "bob", "n": 7})])
        );
        wait_sync(events, topic, &alone);
    }
    assert_eq!(plain_state(&alice.presence_state(&a)), alone);
    assert_eq!(plain_state(&bob.presence_state(&b)), alone);
}

#[test]
fn set_auth_is_accepted_and_a_revoked_token_closes_the_channel() {
    let srv = start();
    let (a, a_events) = connect(&srv);
    let (b, b_events) = connect(&srv);
    let topic = "realtime:auth";
    let ch = a.channel("auth", ChannelOptions::default().broadcast_ack(true));
    a.on(&ch, Binding::broadcast("*")).expect("binding");
    a.on(&ch, Binding::System).expect("binding");
    a.subscribe(&ch).expect("subscribe");
    let bch = b.channel("auth", ChannelOptions::default());
    b.subscribe(&bch).expect("subscribe");
    wait_joined(&a_events, topic);
    wait_joined(&b_events, topic);

    a.set_auth(Some("token-1".to_owned()));
    // the ack comes after the server handled access_token on the same socket
    let r = a
        .broadcast_with_ack(&ch, "x", &json!({}))
        .expect("broadcast");
    assert_eq!(ack(&a, &r), Acknowledged);
    b.broadcast(&bch, "after-auth", &json!({"v": 1}))
        .expect("broadcast");
    let before = events_until(&a_events, "a broadcast after set_auth", |e| {
        broadcast_of(e, topic).is_some_and(|(ev, _)| ev == "after-auth")
    });
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, Event::System { .. } | Event::Channel { .. })),
        "set_auth with an accepted token changes nothing: {before:#?}"
    );
    assert_eq!(a.store().state(topic), Some(ChannelState::Joined));

    // a token the app refuses: a system error, then the channel closes
    a.set_auth(Some("revoked".to_owned()));
    let sys = wait_for(&a_events, "a system message", |e| match e {
        Event::System { topic: t, payload } if t == topic => Some(payload.clone()),
        _ => None,
    });
    assert_eq!(sys["status"], "error", "{sys}");
    assert_eq!(
        sys["message"], "Unauthorized: Token has been revoked",
        "{sys}"
    );
    wait_for(&a_events, "the channel closed", |e| {
        is_state(e, topic, ChannelState::Closed).then_some(())
    });
    assert_eq!(a.store().state(topic), Some(ChannelState::Closed));
    // no rejoin follows
    let end = Instant::now() + Duration::from_millis(300);
    while let Some(e) = next_within(&a_events, end.saturating_duration_since(Instant::now())) {
        assert!(
            !is_state(&e, topic, ChannelState::Joining),
            "a channel closed by the server must not rejoin: {e:?}"
        );
    }
    assert_eq!(a.store().state(topic), Some(ChannelState::Closed));
}

fn join_error(events: &Events, topic: &str) -> tidings_ws::client::Error {
    wait_for(events, &format!("a join error on {topic}"), |e| match e {
        Event::Channel {
            topic: t,
            change: ChannelEvent::Error(err),
        } if t == topic => Some(err.clone()),
        _ => None,
    })
}

#[test]
fn unauthorized_joins_report_an_unauthorized_error() {
    let srv = start();
    let (c, events) = connect(&srv);
    let topic = "realtime:denied-room";
    let ch = c.channel("denied-room", ChannelOptions::default());
    c.subscribe(&ch).expect("subscribe");
    let err = join_error(&events, topic);
    assert_eq!(err.code, ErrorCode::Unauthorized, "{err}");
    assert_eq!(
        err.message,
        "Unauthorized: You do not have permissions to read from this Channel topic"
    );
    assert_eq!(err.context("topic"), Some(topic));
    assert_eq!(c.store().state(topic), Some(ChannelState::Errored));

    // a join carrying a refused token
    let (r, r_events) = connect_cfg(
        ClientConfig::new(endpoint(&srv))
            .apikey("k")
            .access_token("revoked"),
    );
    let ch = r.channel("open-room", ChannelOptions::default());
    r.subscribe(&ch).expect("subscribe");
    let err = join_error(&r_events, "realtime:open-room");
    assert_eq!(err.code, ErrorCode::Unauthorized, "{err}");
    assert_eq!(err.message, "Unauthorized: Token has been revoked");
    assert_ne!(
        r.store().state("realtime:open-room"),
        Some(ChannelState::Joined)
    );
}

#[test]
fn a_broadcast_from_server_code_reaches_the_client() {
    let srv = start();
    let (c, events) = connect(&srv);
    let topic = "realtime:room";
    let ch = c.channel("room", ChannelOptions::default());
    c.on(&ch, Binding::broadcast("ev")).expect("binding");
    c.subscribe(&ch).expect("subscribe");
    wait_joined(&events, topic);
    let payload = json!({"body": "from the server", "n": [1, 2, 3]});
    srv.hub
        .broadcast_action(realtime_channel("room").expect("a channel"), "ev", &payload)
        .expect("broadcast_action");
    assert_eq!(wait_broadcast(&events, topic, "ev"), payload);
}

// ---- realtime-js ----

/// `@supabase/realtime-js` in a `node` child: joins `mixed` with presence
/// key `js`, tracks `{who: "js"}`, prints presence events as JSON lines,
/// untracks on the stdin line `untrack`, exits on stdin EOF.
const NODE_SCRIPT: &str = r"
const { createRequire } = require('node:module')
const path = require('node:path')
const req = createRequire(path.join(process.env.INTEROP_DIR, 'package.json'))
const WebSocket = req('ws')
const { RealtimeClient } = req('@supabase/realtime-js')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const plain = (ms) => ms.map(({ presence_ref, ...m }) => m)
const client = new RealtimeClient(process.env.ENDPOINT, {
  params: { apikey: 'k' }, transport: WebSocket, vsn: '2.0.0', timeout: 3000,
  heartbeatIntervalMs: 1000, logger: () => {},
})
const ch = client.channel('mixed', { config: { presence: { key: 'js' } } })
ch.on('presence', { event: 'sync' }, () => {
  const s = ch.presenceState()
  out({ ev: 'sync', state: Object.fromEntries(Object.keys(s).sort().map((k) => [k, plain(s[k])])) })
})
ch.on('presence', { event: 'join' }, (p) => out({ ev: 'join', key: p.key, metas: plain(p.newPresences) }))
ch.on('presence', { event: 'leave' }, (p) => out({ ev: 'leave', key: p.key, metas: plain(p.leftPresences) }))
ch.subscribe(async (status, err) => {
  out({ ev: 'status', status, err: err ? String(err.message || err) : null })
  if (status === 'SUBSCRIBED') out({ ev: 'track', reply: await ch.track({ who: 'js' }) })
})
const rl = require('node:readline').createInterface({ input: process.stdin })
rl.on('line', async (l) => {
  if (l === 'untrack') out({ ev: 'untrack', reply: await ch.untrack() })
})
rl.on('close', () => process.exit(0))
setTimeout(() => process.exit(3), 30000)
";

/// The node child; closes its stdin (it exits) and reaps it on drop.
struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Node {
    fn spawn(interop: &std::path::Path, endpoint: &str) -> Self {
        let mut child = Command::new("node")
            .arg("-e")
            .arg(NODE_SCRIPT)
            .env("INTEROP_DIR", interop)
            .env("ENDPOINT", endpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning node");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"ev": "unparsed", "line": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut pipe = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut s);
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(&s);
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The first line `f` accepts, already printed or within [`WAIT`].
    fn wait(&mut self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| f(v)) {
            return v.clone();
        }
        let end = Instant::now() + WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if f(&v) {
                        return v;
                    }
                }
                Err(e) => panic!(
                    "node: {e} waiting for {what}; saw {:#?}; stderr: {}",
                    self.seen,
                    self.stderr.lock().unwrap_or_else(PoisonError::into_inner)
                ),
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("writing to node");
        stdin.flush().expect("flushing node's stdin");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `transport-ws/interop/node_modules`, when it has realtime-js and ws.
fn interop_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../transport-ws/interop");
    let nm = dir.join("node_modules");
    (nm.join("@supabase/realtime-js").is_dir() && nm.join("ws").is_dir()).then_some(dir)
}

#[test]
fn presence_between_a_rust_client_and_realtime_js() {
    let Some(interop) = interop_dir() else {
        eprintln!(
            "skipped: transport-ws/interop/node_modules is missing (run `npm ci` in transport-ws/interop)"
        );
        return;
    };
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("skipped: `node` is not on PATH");
        return;
    }
    let srv = start();
    let (rust, events) = connect(&srv);
    let topic = "realtime:mixed";
    let ch = rust.channel("mixed", ChannelOptions::default().presence_key("rust"));
    rust.on(&ch, Binding::presence("*")).expect("binding");
    rust.subscribe(&ch).expect("subscribe");
    wait_joined(&events, topic);
    assert_eq!(
        ack(
            &rust,
            &rust.track(&ch, &json!({"who": "rust"})).expect("track")
        ),
        Acknowledged
    );
    wait_sync(&events, topic, &json!({"rust": [{"who": "rust"}]}));

    let mut js = Node::spawn(&interop, &endpoint(&srv));
    js.wait("SUBSCRIBED", |v| {
        v["ev"] == "status" && v["status"] == "SUBSCRIBED"
    });
    let both = json!({"js": [{"who": "js"}], "rust": [{"who": "rust"}]});
    // realtime-js sees the Rust client's presence, then its own
    let j = js.wait("join rust at js", |v| {
        v["ev"] == "join" && v["key"] == "rust"
    });
    assert_eq!(j["metas"], json!([{"who": "rust"}]));
    let t = js.wait("track reply", |v| v["ev"] == "track");
    assert_eq!(t["reply"], "ok");
    js.wait("sync with both at js", |v| {
        v["ev"] == "sync" && v["state"] == both
    });
    // the Rust client sees realtime-js's
    let (current, joined) = wait_presence_join(&events, topic, "js");
    assert_eq!((current, joined), (vec![], vec![json!({"who": "js"})]));
    wait_sync(&events, topic, &both);
    assert_eq!(plain_state(&rust.presence_state(&ch)), both);

    // Rust untracks → realtime-js sees the leave
    assert_eq!(
        ack(&rust, &rust.untrack(&ch).expect("untrack")),
        Acknowledged
    );
    let l = js.wait("leave rust at js", |v| {
        v["ev"] == "leave" && v["key"] == "rust"
    });
    assert_eq!(l["metas"], json!([{"who": "rust"}]));
    js.wait("sync with js only", |v| {
        v["ev"] == "sync" && v["state"] == json!({"js": [{"who": "js"}]})
    });

    // realtime-js untracks → the Rust client sees the leave
    js.send("untrack");
    let u = js.wait("untrack reply", |v| v["ev"] == "untrack");
    assert_eq!(u["reply"], "ok");
    let (current, left) = wait_presence_leave(&events, topic, "js");
    assert_eq!((current, left), (vec![], vec![json!({"who": "js"})]));
    wait_sync(&events, topic, &json!({}));
    assert!(rust.presence_state(&ch).is_empty());
}

#[test]
fn a_broadcast_over_the_http_fallback_and_http_send_reach_a_joined_client() {
    let srv = start();
    let (receiver, r_events) = connect(&srv);
    let topic = "realtime:rest-room";
    let rch = receiver.channel("rest-room", ChannelOptions::default());
    receiver.on(&rch, Binding::broadcast("*")).expect("binding");
    receiver.subscribe(&rch).expect("subscribe");
    wait_joined(&r_events, topic);

    // The sender never joins: its broadcasts go to POST /api/broadcast.
    let (sender, _s_events) = connect_cfg(
        ClientConfig::new(endpoint(&srv))
            .apikey("k")
            .access_token("jwt")
            .http_fallback(true),
    );
    let sch = sender.channel("rest-room", ChannelOptions::default().broadcast_ack(true));
    let r = sender
        .broadcast_with_ack(&sch, "via-rest", &json!({"n": 1}))
        .expect("broadcast");
    assert_eq!(ack(&sender, &r), Acknowledged);
    assert_eq!(
        wait_broadcast(&r_events, topic, "via-rest"),
        json!({"n": 1})
    );
    // The explicit single endpoint, too.
    smol::block_on(sender.http_send(&sch, "via-send", &json!({"n": 2}))).expect("http_send");
    assert_eq!(
        wait_broadcast(&r_events, topic, "via-send"),
        json!({"n": 2})
    );
    assert_eq!(
        sender.store().channel("rest-room").map(|c| c.state),
        Some(ChannelState::Closed),
        "the sender's channel never joined"
    );

    // A refusal comes back typed: the app denies broadcasting on this topic.
    let denied = sender.channel("denied-rest", ChannelOptions::default().broadcast_ack(true));
    let r = sender
        .broadcast_with_ack(&denied, "x", &json!({}))
        .expect("broadcast");
    let e = smol::block_on(sender.wait_for_ack(&r, WAIT)).expect_err("refused");
    assert_eq!(e.code, ErrorCode::Unauthorized, "{e}");
    let e = smol::block_on(sender.http_send(&denied, "x", &json!({}))).expect_err("refused");
    assert_eq!(e.code, ErrorCode::Unauthorized, "{e}");
}

/// A binary broadcast's `(event, bytes)` on `topic`.
fn binary_of(e: &Event, topic: &str) -> Option<(String, Vec<u8>)> {
    match e {
        Event::Broadcast {
            topic: t,
            event,
            payload: BroadcastPayload::Binary(b),
            ..
        } if t == topic => Some((event.clone(), b.clone())),
        _ => None,
    }
}

#[test]
fn binary_broadcasts_reach_v2_clients_byte_for_byte_and_not_v1_clients() {
    let srv = start();
    let topic = "realtime:bin-room";
    let (a, a_events) = connect(&srv);
    let (b, b_events) = connect(&srv);
    let (old, old_events) = connect_cfg(ClientConfig::new(endpoint(&srv)).apikey("k").vsn(Vsn::V1));
    let ach = a.channel("bin-room", ChannelOptions::default().broadcast_ack(true));
    a.subscribe(&ach).expect("subscribe");
    for (c, events) in [(&b, &b_events), (&old, &old_events)] {
        let ch = c.channel("bin-room", ChannelOptions::default());
        c.on(&ch, Binding::broadcast("*")).expect("binding");
        c.subscribe(&ch).expect("subscribe");
        wait_joined(events, topic);
    }
    wait_joined(&a_events, topic);

    // Every byte value that would not survive as text.
    let bytes: Vec<u8> = vec![0x00, 0x80, 0xff, b'{', 0x01, 0xc3, 0x28, 0x7f];
    let r = a
        .broadcast_binary_with_ack(&ach, "blob", &bytes)
        .expect("broadcast_binary");
    assert_eq!(ack(&a, &r), Acknowledged, "acked by its ref");
    let got = wait_for(&b_events, "the binary broadcast", |e| binary_of(e, topic));
    assert_eq!(got, ("blob".to_owned(), bytes.clone()));
    a.broadcast_binary(&ach, "blob2", &[0xff])
        .expect("broadcast_binary");
    let got = wait_for(&b_events, "the second binary broadcast", |e| {
        binary_of(e, topic)
    });
    assert_eq!(got, ("blob2".to_owned(), vec![0xff]));

    // The V1 client gets nothing binary: a JSON broadcast sent afterwards
    // arrives, and nothing came before it.
    let r = a
        .broadcast_with_ack(&ach, "after", &json!({"n": 1}))
        .expect("broadcast");
    assert_eq!(ack(&a, &r), Acknowledged);
    let before = events_until(&old_events, "the JSON broadcast on V1", |e| {
        broadcast_of(e, topic).is_some_and(|(ev, p)| ev == "after" && p == json!({"n": 1}))
    });
    assert!(
        !before.iter().any(|e| matches!(e, Event::Broadcast { .. })),
        "the V1 client got no broadcast before the JSON one: {before:#?}"
    );
    assert_eq!(wait_broadcast(&b_events, topic, "after"), json!({"n": 1}));

    // A V1 client cannot send one: a typed error, nothing sent.
    let och = old.channel("bin-room", ChannelOptions::default());
    let e = old.broadcast_binary(&och, "x", &bytes).expect_err("V1");
    assert_eq!(e.code, ErrorCode::Unsupported, "{e}");

    // The REST single endpoint with the raw bytes reaches B too.
    smol::block_on(a.http_send_binary(&ach, "via-rest", &bytes)).expect("http_send_binary");
    let got = wait_for(&b_events, "the REST binary broadcast", |e| {
        binary_of(e, topic)
    });
    assert_eq!(got, ("via-rest".to_owned(), bytes));
}
