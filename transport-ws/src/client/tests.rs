//! The state machine's timing and wire rules, with injected time: no
//! sockets, no sleeping.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

const S: Duration = Duration::from_secs(1);

struct H {
    c: Connection,
    now: Instant,
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

impl H {
    fn new(cfg: ConnectionConfig) -> Self {
        Self {
            c: Connection::new(cfg),
            now: Instant::now(),
        }
    }

    /// Connected and open, outputs drained.
    fn open(cfg: ConnectionConfig) -> Self {
        let mut h = Self::new(cfg);
        h.c.connect(h.now);
        h.c.handle_open(h.now);
        h.drain();
        h
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.c.poll_output()).collect()
    }

    /// Fires every deadline up to `now + d`, in order, collecting outputs.
    fn advance(&mut self, d: Duration) -> Vec<Output> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.c.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.c.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = end;
        out
    }

    fn recv(&mut self, v: &Value) -> Vec<Output> {
        self.c.handle_text(self.now, &v.to_string()).unwrap();
        self.drain()
    }

    /// Opens a channel with a `broadcast *` binding and joins it.
    fn joined(&mut self, topic: &str, opts: ChannelOptions) -> (ChannelId, String) {
        let id = self.c.channel(topic, opts);
        self.c.on(id, Binding::broadcast("*")).unwrap();
        self.c.subscribe(id, self.now).unwrap();
        let f = frames(&self.drain());
        let jr = f.last().unwrap()[0].as_str().unwrap().to_owned();
        let topic = normalize_topic(topic);
        self.recv(&json!([jr, jr, topic, "phx_reply", {"status":"ok","response":{}}]));
        (id, jr)
    }
}

/// Every transmitted text frame, parsed.
fn frames(out: &[Output]) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit(Frame::Text(t)) => Some(serde_json::from_str(t).unwrap()),
            _ => None,
        })
        .collect()
}

fn events(out: &[Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn replies(out: &[Output]) -> Vec<(String, Result<(), ErrorCode>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Reply { push_ref, result } => {
                Some((push_ref.clone(), result.clone().map_err(|e| e.code)))
            }
            _ => None,
        })
        .collect()
}

fn by_event<'a>(f: &'a [Value], event: &str) -> Vec<&'a Value> {
    f.iter().filter(|v| v[3] == event).collect()
}

fn quick() -> ConnectionConfig {
    ConnectionConfig::default()
}

#[test]
fn join_payload_defaults_match_realtime_js() {
    let mut h = H::open(quick());
    let id = h.c.channel("room1", ChannelOptions::default());
    h.c.subscribe(id, h.now).unwrap();
    let out = h.drain();
    let Output::Transmit(Frame::Text(t)) = &out[0] else {
        panic!("{out:?}")
    };
    // The frame realtime-js sends for a default channel (reference Appendix A).
    assert_eq!(
        t,
        r#"["1","1","realtime:room1","phx_join",{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"","enabled":false},"postgres_changes":[],"private":false}}]"#
    );
}

#[test]
fn join_payload_carries_options_bindings_and_token() {
    let mut cfg = quick();
    cfg.access_token = Some("JWT".into());
    let mut h = H::open(cfg);
    let opts = ChannelOptions::default()
        .broadcast_self(true)
        .broadcast_ack(true)
        .presence_key("u1")
        .private(true);
    let id = h.c.channel("realtime:room1", opts);
    h.c.on(id, Binding::presence("sync")).unwrap();
    h.c.on(
        id,
        Binding::PostgresChanges(PostgresChangesFilter::new("INSERT", "public").table("todos")),
    )
    .unwrap();
    h.c.subscribe(id, h.now).unwrap();
    let f = frames(&h.drain());
    assert_eq!(
        f[0][4],
        json!({"config":{"broadcast":{"self":true,"ack":true},"presence":{"key":"u1","enabled":true},
               "postgres_changes":[{"event":"INSERT","schema":"public","table":"todos"}],"private":true},
               "access_token":"JWT"})
    );
}

#[test]
fn same_topic_same_channel_and_prefix() {
    let mut h = H::new(quick());
    let a = h.c.channel("room1", ChannelOptions::default());
    let b = h.c.channel(
        "realtime:room1",
        ChannelOptions::default().broadcast_self(true),
    );
    assert_eq!(a, b);
    assert_eq!(h.c.channels().len(), 1);
    assert_eq!(h.c.channel_info(a).unwrap().topic, "realtime:room1");
    assert!(!h.c.channel_info(a).unwrap().options.broadcast_self);
}

#[test]
fn refs_come_from_one_socket_wide_counter() {
    let mut h = H::open(quick());
    let (a, jr_a) = h.joined("a", ChannelOptions::default());
    let (_, jr_b) = h.joined("b", ChannelOptions::default());
    h.c.broadcast(a, "x", "{}", h.now).unwrap();
    let f = frames(&h.drain());
    let refs: Vec<u64> = [&jr_a, &jr_b, f[0][1].as_str().unwrap()]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
    assert!(refs.windows(2).all(|w| w[0] < w[1]), "{refs:?}");
    assert_eq!(f[0][0], json!(jr_a), "pushes carry the join's ref");
}

#[test]
fn heartbeat_every_interval_and_timeout_after_one_interval() {
    let mut h = H::open(quick());
    assert!(frames(&h.advance(secs(24))).is_empty());
    let f = frames(&h.advance(S));
    assert_eq!(f.len(), 1);
    assert_eq!(
        (&f[0][0], &f[0][2], &f[0][3], &f[0][4]),
        (
            &Value::Null,
            &json!("phoenix"),
            &json!("heartbeat"),
            &json!({})
        )
    );
    // The reply clears it; the next goes one interval after the reply.
    let r = f[0][1].clone();
    h.advance(secs(3));
    h.recv(&json!([null, r, "phoenix", "phx_reply", {"status":"ok","response":{}}]));
    assert!(frames(&h.advance(secs(24))).is_empty());
    let f = frames(&h.advance(S));
    assert_eq!(f[0][3], "heartbeat");
    // No reply within one interval: close 1000 "heartbeat timeout".
    let out = h.advance(secs(24));
    assert!(!out.iter().any(|o| matches!(o, Output::Close { .. })));
    let out = h.advance(S);
    assert!(
        out.contains(&Output::Close {
            code: 1000,
            reason: "heartbeat timeout".into()
        }),
        "{out:?}"
    );
    assert_eq!(h.c.state(), ConnectionState::Closing);
    assert!(events(&out).iter().any(|e| matches!(e,
        Event::Connection(ConnectionEvent::Error(err)) if err.code == ErrorCode::Timeout)));
    // The driver closes; a reconnect follows after the first backoff step.
    h.c.handle_close(h.now, Some(1000));
    assert!(
        !h.advance(Duration::from_millis(999))
            .contains(&Output::Connect)
    );
    assert!(
        h.advance(Duration::from_millis(1))
            .contains(&Output::Connect)
    );
}

#[test]
fn reconnect_backoff_1_2_5_10_then_10_and_reset_on_open() {
    let mut h = H::new(quick());
    h.c.connect(h.now);
    h.drain();
    let mut gaps = Vec::new();
    for _ in 0..6 {
        h.c.handle_connect_error(h.now, Error::new(ErrorCode::Io, "refused"));
        h.drain();
        let start = h.now;
        let waited = loop {
            let t = h.c.poll_timeout().unwrap();
            if h.advance(t - h.now).contains(&Output::Connect) {
                break t - start;
            }
        };
        gaps.push(waited.as_secs());
    }
    assert_eq!(gaps, [1, 2, 5, 10, 10, 10]);
    h.c.handle_open(h.now);
    h.c.handle_close(h.now, Some(1006));
    assert_eq!(h.c.poll_timeout(), Some(h.now + S), "tries reset on open");
}

#[test]
fn configured_backoff_function_is_used() {
    let mut cfg = quick();
    cfg.reconnect_after = Arc::new(|tries| Duration::from_millis(100 * u64::from(tries)));
    let mut h = H::open(cfg);
    h.c.handle_close(h.now, Some(1006));
    h.drain();
    assert_eq!(h.c.poll_timeout(), Some(h.now + Duration::from_millis(100)));
}

#[test]
fn disconnect_stops_reconnecting() {
    let mut h = H::open(quick());
    h.c.disconnect(h.now);
    assert!(h.drain().contains(&Output::Close {
        code: 1000,
        reason: "client disconnect".into()
    }));
    h.c.handle_close(h.now, Some(1000));
    assert!(!h.advance(secs(60)).contains(&Output::Connect));
    h.c.connect(h.now);
    assert!(h.drain().contains(&Output::Connect));
}

#[test]
fn state_change_events_in_order() {
    let mut h = H::new(quick());
    let mut seen = Vec::new();
    let mut note = |out: Vec<Output>| {
        for e in events(&out) {
            if let Event::Connection(ConnectionEvent::StateChange { old, new }) = e {
                seen.push((old.as_str(), new.as_str()));
            }
        }
    };
    h.c.connect(h.now);
    note(h.drain());
    h.c.handle_open(h.now);
    note(h.drain());
    h.c.disconnect(h.now);
    note(h.drain());
    h.c.handle_close(h.now, Some(1000));
    note(h.drain());
    assert_eq!(
        seen,
        [
            ("closed", "connecting"),
            ("connecting", "open"),
            ("open", "closing"),
            ("closing", "closed")
        ]
    );
}

#[test]
fn send_buffer_keeps_the_last_100_and_flushes_them_in_order_on_open() {
    let mut h = H::new(quick());
    for i in 0..105 {
        h.c.push_raw("realtime:x", "msg", &format!(r#"{{"i":{i}}}"#), h.now)
            .unwrap();
    }
    assert!(
        frames(&h.drain()).is_empty(),
        "nothing goes out while closed"
    );
    h.c.connect(h.now);
    h.c.handle_open(h.now);
    let f = frames(&h.drain());
    let is: Vec<i64> = f.iter().map(|v| v[4]["i"].as_i64().unwrap()).collect();
    assert_eq!(is, (5..105).collect::<Vec<_>>());
}

#[test]
fn push_buffer_until_joined_keeps_the_last_100_with_the_new_join_ref() {
    let mut h = H::new(quick());
    let id =
        h.c.channel("room", ChannelOptions::default().broadcast_ack(true));
    h.c.subscribe(id, h.now).unwrap();
    let first =
        h.c.broadcast_with_ack(id, "e", r#"{"i":0}"#, h.now)
            .unwrap();
    for i in 1..105 {
        h.c.broadcast(id, "e", &format!(r#"{{"i":{i}}}"#), h.now)
            .unwrap();
    }
    // The oldest (acked) push was dropped and says so.
    assert_eq!(replies(&h.drain()), [(first, Err(ErrorCode::Overflow))]);
    h.c.connect(h.now);
    h.c.handle_open(h.now);
    let f = frames(&h.drain());
    assert_eq!(f.len(), 1, "only the join until it is accepted: {f:?}");
    let jr = f[0][0].clone();
    let out = h.recv(&json!([jr, jr, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    let f = frames(&out);
    let is: Vec<i64> = f
        .iter()
        .map(|v| v[4]["payload"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(is, (5..105).collect::<Vec<_>>(), "the last 100, in order");
    assert!(
        f.iter().all(|v| v[0] == jr),
        "sent under the join made after the socket opened"
    );
}

#[test]
fn push_buffer_flushes_in_order_on_join_ok() {
    let mut h = H::open(quick());
    let id = h.c.channel("room", ChannelOptions::default());
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    for i in 0..105 {
        h.c.broadcast(id, "e", &format!(r#"{{"i":{i}}}"#), h.now)
            .unwrap();
    }
    assert!(frames(&h.drain()).is_empty());
    let out = h.recv(&json!([jr, jr, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    let f = frames(&out);
    let is: Vec<i64> = f
        .iter()
        .map(|v| v[4]["payload"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(is, (5..105).collect::<Vec<_>>());
    assert!(f.iter().all(|v| v[0] == jr
        && v[3] == "broadcast"
        && v[4]["type"] == "broadcast"
        && v[4]["event"] == "e"));
}

#[test]
fn buffered_push_expires_after_the_push_timeout_and_is_never_sent() {
    let mut h = H::open(quick());
    let id =
        h.c.channel("room", ChannelOptions::default().broadcast_ack(true));
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    let r = h.c.broadcast_with_ack(id, "e", "{}", h.now).unwrap();
    let out = h.advance(secs(10));
    assert!(
        replies(&out).contains(&(r, Err(ErrorCode::Timeout))),
        "{out:?}"
    );
    // The join timed out too at 10 s; a late ok for the old join is stale.
    let out = h.recv(&json!([jr, jr, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    assert!(by_event(&frames(&out), "broadcast").is_empty());
}

#[test]
fn ack_is_correlated_by_the_push_ref_and_times_out() {
    let mut h = H::open(quick());
    let (id, jr) = h.joined("room", ChannelOptions::default().broadcast_ack(true));
    let a = h.c.broadcast_with_ack(id, "e", "{}", h.now).unwrap();
    let b = h.c.broadcast_with_ack(id, "e", "{}", h.now).unwrap();
    let f = frames(&h.drain());
    assert_eq!(
        (f[0][1].as_str().unwrap(), f[1][1].as_str().unwrap()),
        (a.as_str(), b.as_str())
    );
    let out = h.recv(&json!([jr, b, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    assert_eq!(replies(&out), [(b.clone(), Ok(()))]);
    assert!(replies(&h.advance(secs(9))).is_empty());
    assert_eq!(replies(&h.advance(S)), [(a, Err(ErrorCode::Timeout))]);
    // Without broadcast.ack there is no ack to wait for.
    let (plain, _) = h.joined("plain", ChannelOptions::default());
    assert_eq!(
        h.c.broadcast_with_ack(plain, "e", "{}", h.now)
            .unwrap_err()
            .code,
        ErrorCode::InvalidInput
    );
}

#[test]
fn error_reply_rejects_the_push() {
    let mut h = H::open(quick());
    let (id, jr) = h.joined("room", ChannelOptions::default());
    let r = h.c.track(id, r#"{"a":1}"#, h.now).unwrap();
    let f = frames(&h.drain());
    assert_eq!(
        f[0][4],
        json!({"type":"presence","event":"track","payload":{"a":1}})
    );
    let out = h.recv(&json!([jr, r, "realtime:room", "phx_reply",
        {"status":"error","response":{"reason":"Presence track payload must be a map"}}]));
    assert_eq!(replies(&out), [(r, Err(ErrorCode::Rejected))]);
}

#[test]
fn reconnect_rejoins_every_channel_with_a_new_join_ref() {
    let mut h = H::open(quick());
    let (a, jr_a) = h.joined("a", ChannelOptions::default());
    let (_, jr_b) = h.joined("b", ChannelOptions::default());
    h.c.handle_close(h.now, Some(1006));
    let out = h.drain();
    assert_eq!(h.c.channel_info(a).unwrap().state, ChannelState::Errored);
    assert!(events(&out).iter().any(|e| matches!(e, Event::Channel { change: ChannelEvent::Error(err), .. } if err.code == ErrorCode::Closed)));
    assert!(h.advance(S).contains(&Output::Connect));
    h.c.handle_open(h.now);
    let joins = frames(&h.drain());
    assert_eq!(joins.len(), 2);
    for (j, old) in joins.iter().zip([&jr_a, &jr_b]) {
        assert_eq!(j[3], "phx_join");
        assert_eq!(j[0], j[1], "join_ref == ref");
        assert_ne!(j[0], json!(old), "a new join_ref");
    }
}

#[test]
fn join_error_rejoins_with_backoff_1_2_5_10_and_reset_on_ok() {
    let mut h = H::open(quick());
    let id = h.c.channel("room", ChannelOptions::default());
    h.c.subscribe(id, h.now).unwrap();
    let mut jr = frames(&h.drain())[0][0].clone();
    let mut gaps = Vec::new();
    for _ in 0..5 {
        let out = h.recv(&json!([jr, jr, "realtime:room", "phx_reply",
            {"status":"error","response":{"reason":"RealtimeRestarting: Realtime is restarting, please standby"}}]));
        assert!(events(&out).iter().any(|e| matches!(e, Event::Channel { change: ChannelEvent::Error(err), .. } if err.code == ErrorCode::JoinRejected)));
        let start = h.now;
        let join = loop {
            let t = h.c.poll_timeout().unwrap();
            let f = frames(&h.advance(t - h.now));
            if let Some(j) = by_event(&f, "phx_join").first() {
                break (*j).clone();
            }
        };
        gaps.push((h.now - start).as_secs());
        assert_ne!(join[0], jr, "a new join_ref");
        let join = [join];
        jr = join[0][0].clone();
    }
    assert_eq!(gaps, [1, 2, 5, 10, 10]);
    h.recv(&json!([jr, jr, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    assert_eq!(h.c.channel_info(id).unwrap().state, ChannelState::Joined);
    h.recv(&json!([jr, jr, "realtime:room", "phx_error", {"reason":"channel_crash"}]));
    assert_eq!(h.c.channel_info(id).unwrap().state, ChannelState::Errored);
    assert_eq!(
        h.c.poll_timeout(),
        Some(h.now + S),
        "rejoin tries reset on join ok"
    );
}

#[test]
fn unauthorized_join_error_has_its_own_code() {
    let mut h = H::open(quick());
    let id = h.c.channel("room", ChannelOptions::default());
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    let out = h.recv(&json!([jr, jr, "realtime:room", "phx_reply",
        {"status":"error","response":{"reason":"Unauthorized: You do not have permissions to read from this Channel topic: room"}}]));
    let err = events(&out)
        .into_iter()
        .find_map(|e| match e {
            Event::Channel {
                change: ChannelEvent::Error(err),
                ..
            } => Some(err),
            _ => None,
        })
        .unwrap();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert!(
        err.to_string()
            .starts_with("unauthorized: Unauthorized: You do not have"),
        "{err}"
    );
    assert_eq!(err.context("topic"), Some("realtime:room"));
}

#[test]
fn join_timeout_leaves_errors_and_rejoins() {
    let mut h = H::open(quick());
    let id = h.c.channel("room", ChannelOptions::default());
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    // Heartbeats are answered so only the join times out.
    let out = h.advance(secs(10));
    let f = frames(&out);
    let leave = by_event(&f, "phx_leave");
    assert_eq!(leave.len(), 1);
    assert_eq!(leave[0][0], jr);
    assert_eq!(h.c.channel_info(id).unwrap().state, ChannelState::Errored);
    let f = frames(&h.advance(S));
    assert_eq!(by_event(&f, "phx_join").len(), 1);
}

#[test]
fn stale_join_ref_messages_are_dropped() {
    let mut h = H::open(quick());
    let (id, old) = h.joined("room", ChannelOptions::default());
    h.c.handle_close(h.now, Some(1006));
    h.advance(S);
    h.c.handle_open(h.now);
    let jr = frames(&h.drain())[0][0].clone();
    h.recv(&json!([jr, jr, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    // A broadcast pushed under the old join, and a phx_close for it: ignored.
    let out = h.recv(&json!([old, null, "realtime:room", "broadcast", {"type":"broadcast","event":"e","payload":{}}]));
    assert!(events(&out).is_empty());
    h.recv(&json!([old, old, "realtime:room", "phx_close", {}]));
    assert_eq!(h.c.channel_info(id).unwrap().state, ChannelState::Joined);
    // V1 servers send no join_ref; a phx_close whose ref is not this join's is ignored too.
    h.recv(&json!([null, "999", "realtime:room", "phx_close", {}]));
    assert_eq!(h.c.channel_info(id).unwrap().state, ChannelState::Joined);
    // null join_ref (fan-out broadcasts) always passes.
    let out = h.recv(&json!([null, null, "realtime:room", "broadcast", {"type":"broadcast","event":"e","payload":{"x":1}}]));
    assert_eq!(events(&out).len(), 1);
}

#[test]
fn server_phx_close_closes_without_rejoin() {
    let mut h = H::open(quick());
    let (id, jr) = h.joined("room", ChannelOptions::default().broadcast_ack(true));
    let r = h.c.broadcast_with_ack(id, "e", "{}", h.now).unwrap();
    h.drain();
    let out = h.recv(&json!([jr, jr, "realtime:room", "phx_close", {}]));
    assert_eq!(replies(&out), [(r, Err(ErrorCode::Closed))]);
    assert_eq!(h.c.channel_info(id).unwrap().state, ChannelState::Closed);
    let f = frames(&h.advance(secs(120)));
    assert!(by_event(&f, "phx_join").is_empty(), "{f:?}");
    // Nor on reconnect.
    h.c.handle_close(h.now, Some(1006));
    h.advance(S);
    h.c.handle_open(h.now);
    assert!(by_event(&frames(&h.drain()), "phx_join").is_empty());
    assert_eq!(
        h.c.broadcast(id, "e", "{}", h.now).unwrap_err().code,
        ErrorCode::Closed
    );
}

#[test]
fn broadcast_matching_is_wildcard_or_case_insensitive() {
    let mut h = H::open(quick());
    let id = h.c.channel("room", ChannelOptions::default());
    h.c.on(id, Binding::broadcast("cursor")).unwrap();
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    h.recv(&json!([jr, jr, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    let b = |e: &str| json!([null, null, "realtime:room", "broadcast", {"type":"broadcast","event":e,"payload":{"x":1},"meta":{"id":"u"}}]);
    let out = h.recv(&b("Cursor"));
    assert_eq!(
        events(&out),
        [Event::Broadcast {
            topic: "realtime:room".into(),
            event: "Cursor".into(),
            payload: BroadcastPayload::Json(json!({"x":1})),
            meta: Some(json!({"id":"u"})),
        }]
    );
    assert!(events(&h.recv(&b("other"))).is_empty());
    // Binary kind 4 (what a Supabase server relays from realtime-js's kind 3).
    let p = crate::frame::Payload::json(r#"{"y":2}"#).unwrap();
    let f = crate::frame::encode_user_broadcast("realtime:room", "CURSOR", None, &p).unwrap();
    h.c.handle_binary(h.now, &f).unwrap();
    let ev = events(&h.drain());
    assert!(
        matches!(&ev[..], [Event::Broadcast { event, payload: BroadcastPayload::Json(p), .. }] if event == "CURSOR" && p["y"] == 2)
    );
}

#[test]
fn unbound_kinds_are_not_delivered() {
    let mut h = H::open(quick());
    let id = h.c.channel("room", ChannelOptions::default());
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    h.recv(&json!([jr, jr, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    let out = h.recv(&json!([null, null, "realtime:room", "broadcast", {"type":"broadcast","event":"e","payload":{}}]));
    assert!(events(&out).is_empty());
    let out = h.recv(&json!([jr, null, "realtime:room", "system", {"extension":"system","status":"ok","message":"m","channel":"room"}]));
    assert!(events(&out).is_empty());
    h.c.on(id, Binding::System).unwrap();
    let out = h.recv(&json!([jr, null, "realtime:room", "system", {"extension":"system","status":"ok","message":"m","channel":"room"}]));
    assert!(
        matches!(&events(&out)[..], [Event::System { payload, .. }] if payload["message"] == "m")
    );
}

#[test]
fn presence_uses_the_phoenix_merge_with_join_leave_sync() {
    let mut h = H::open(quick());
    let id = h.c.channel("room", ChannelOptions::default());
    h.c.on(id, Binding::presence("*")).unwrap();
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    h.recv(&json!([jr, jr, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    // A diff before the state waits for it (phoenix.js pendingDiffs).
    let out = h.recv(&json!([null, null, "realtime:room", "presence_diff",
        {"joins":{"u2":{"metas":[{"phx_ref":"BBB","name":"bob"}]}},"leaves":{}}]));
    assert!(events(&out).is_empty());
    let out = h.recv(&json!([jr, null, "realtime:room", "presence_state",
        {"u1":{"metas":[{"phx_ref":"AAA","name":"alice"}]}}]));
    let changes: Vec<PresenceChange> = events(&out)
        .into_iter()
        .map(|e| match e {
            Event::Presence { change, .. } => change,
            other => panic!("{other:?}"),
        })
        .collect();
    let alice = json!({"name":"alice","presence_ref":"AAA"});
    let bob = json!({"name":"bob","presence_ref":"BBB"});
    assert_eq!(
        changes,
        [
            PresenceChange::Join {
                key: "u1".into(),
                current: vec![],
                joined: vec![alice.clone()]
            },
            PresenceChange::Join {
                key: "u2".into(),
                current: vec![],
                joined: vec![bob.clone()]
            },
            PresenceChange::Sync(
                [
                    ("u1".to_owned(), vec![alice.clone()]),
                    ("u2".to_owned(), vec![bob.clone()])
                ]
                .into()
            ),
        ]
    );
    let out = h.recv(&json!([null, null, "realtime:room", "presence_diff",
        {"joins":{},"leaves":{"u2":{"metas":[{"phx_ref":"BBB","name":"bob"}]}}}]));
    assert!(
        matches!(&events(&out)[0], Event::Presence { change: PresenceChange::Leave { key, current, left }, .. }
        if key == "u2" && current.is_empty() && left == &vec![bob.clone()])
    );
    assert_eq!(
        h.c.presence_state(id).unwrap(),
        [("u1".to_owned(), vec![alice])].into()
    );
    // The join asked for presence because of the binding.
    let id2 = h.c.channel("other", ChannelOptions::default());
    h.c.on(id2, Binding::presence("sync")).unwrap();
    h.c.subscribe(id2, h.now).unwrap();
    assert_eq!(
        frames(&h.drain())[0][4]["config"]["presence"]["enabled"],
        true
    );
}

#[test]
fn track_and_untrack_frames() {
    let mut h = H::open(quick());
    let (id, jr) = h.joined("room", ChannelOptions::default().presence_key("u1"));
    h.c.track(id, r#"{"online_at":"now"}"#, h.now).unwrap();
    h.c.untrack(id, h.now).unwrap();
    let f = frames(&h.drain());
    assert_eq!((&f[0][0], &f[0][3]), (&json!(jr), &json!("presence")));
    assert_eq!(
        f[0][4],
        json!({"type":"presence","event":"track","payload":{"online_at":"now"}})
    );
    assert_eq!(f[1][4], json!({"type":"presence","event":"untrack"}));
}

#[test]
fn set_auth_pushes_access_token_to_joined_channels_and_into_joins() {
    let mut h = H::open(quick());
    let (_, jr) = h.joined("a", ChannelOptions::default());
    let waiting = h.c.channel("b", ChannelOptions::default());
    h.c.subscribe(waiting, h.now).unwrap();
    h.drain();
    h.c.set_auth(Some("T1".into()), h.now);
    let f = frames(&h.drain());
    assert_eq!(f.len(), 1, "only the joined channel gets a push: {f:?}");
    assert_eq!(
        (&f[0][0], &f[0][2], &f[0][3], &f[0][4]),
        (
            &json!(jr),
            &json!("realtime:a"),
            &json!("access_token"),
            &json!({"access_token":"T1"})
        )
    );
    h.c.set_auth(Some("T1".into()), h.now);
    assert!(
        frames(&h.drain()).is_empty(),
        "an unchanged token is not pushed again"
    );
    // Joins after it carry it; a channel's own token wins for that channel.
    let c = h.c.channel("c", ChannelOptions::default());
    h.c.set_channel_auth(c, "T-C", h.now).unwrap();
    h.c.subscribe(c, h.now).unwrap();
    assert_eq!(frames(&h.drain())[0][4]["access_token"], "T-C");
    let d = h.c.channel("d", ChannelOptions::default());
    h.c.subscribe(d, h.now).unwrap();
    assert_eq!(frames(&h.drain())[0][4]["access_token"], "T1");
}

#[test]
fn unsubscribe_leaves_and_fails_waiting_pushes() {
    let mut h = H::open(quick());
    let (id, jr) = h.joined("room", ChannelOptions::default().broadcast_ack(true));
    let r = h.c.broadcast_with_ack(id, "e", "{}", h.now).unwrap();
    h.drain();
    h.c.unsubscribe(id, h.now).unwrap();
    let out = h.drain();
    let f = frames(&out);
    assert_eq!(
        (&f[0][0], &f[0][3], &f[0][4]),
        (&json!(jr), &json!("phx_leave"), &json!({}))
    );
    assert_eq!(replies(&out), [(r, Err(ErrorCode::Closed))]);
    assert!(h.c.channel_id("room").is_none());
    let mut store = Vec::new();
    while let Some(u) = h.c.poll_store_update() {
        store.push(u);
    }
    assert_eq!(
        store.last(),
        Some(&StoreUpdate::Remove("realtime:room".into()))
    );
    assert_eq!(
        h.c.subscribe(id, h.now).unwrap_err().code,
        ErrorCode::Closed
    );
}

#[test]
fn postgres_changes_match_server_ids_and_event() {
    let mut h = H::open(quick());
    let id = h.c.channel("db", ChannelOptions::default());
    h.c.on(
        id,
        Binding::PostgresChanges(PostgresChangesFilter::new("INSERT", "public").table("todos")),
    )
    .unwrap();
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    h.recv(
        &json!([jr, jr, "realtime:db", "phx_reply", {"status":"ok","response":{"postgres_changes":[
        {"event":"INSERT","schema":"public","table":"todos","id":12_345_678}]}}]),
    );
    assert_eq!(h.c.channel_info(id).unwrap().state, ChannelState::Joined);
    let change = |ids: Value, ty: &str| {
        json!([null, null, "realtime:db", "postgres_changes",
        {"ids":ids,"data":{"schema":"public","table":"todos","type":ty,"record":{"id":7}}}])
    };
    let ev = events(&h.recv(&change(json!([12_345_678]), "INSERT")));
    assert!(
        matches!(&ev[..], [Event::PostgresChanges { kind: ChangeKind::Insert, payload, .. }] if payload["record"]["id"] == 7)
    );
    assert!(events(&h.recv(&change(json!([1]), "INSERT"))).is_empty());
    assert!(events(&h.recv(&change(json!([12_345_678]), "DELETE"))).is_empty());
}

#[test]
fn postgres_binding_mismatch_is_an_error() {
    let mut h = H::open(quick());
    let id = h.c.channel("db", ChannelOptions::default());
    h.c.on(
        id,
        Binding::PostgresChanges(PostgresChangesFilter::new("INSERT", "public")),
    )
    .unwrap();
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    let out = h.recv(&json!([jr, jr, "realtime:db", "phx_reply", {"status":"ok","response":{"postgres_changes":[]}}]));
    assert!(events(&out).iter().any(|e| matches!(e, Event::Channel { change: ChannelEvent::Error(err), .. } if err.code == ErrorCode::Protocol)));
    assert!(h.c.channel_id("db").is_none());
}

#[test]
fn v1_frames_are_objects_with_join_ref() {
    let mut cfg = quick();
    cfg.vsn = Vsn::V1;
    let mut h = H::open(cfg);
    let id = h.c.channel("room", ChannelOptions::default());
    h.c.subscribe(id, h.now).unwrap();
    let f = frames(&h.drain());
    assert_eq!(
        (
            &f[0]["topic"],
            &f[0]["event"],
            &f[0]["ref"],
            &f[0]["join_ref"]
        ),
        (
            &json!("realtime:room"),
            &json!("phx_join"),
            &json!("1"),
            &json!("1")
        )
    );
    // A V1 server reply (no join_ref) joins it.
    h.recv(&json!({"topic":"realtime:room","event":"phx_reply","ref":"1","payload":{"status":"ok","response":{}}}));
    assert_eq!(h.c.channel_info(id).unwrap().state, ChannelState::Joined);
    assert!(
        h.c.handle_binary(h.now, &[4, 0, 0, 0, 1]).is_err(),
        "no binary on V1"
    );
}

#[test]
fn bad_input_is_an_error_never_a_panic() {
    let mut h = H::open(quick());
    let (id, _) = h.joined("room", ChannelOptions::default());
    for t in [
        "",
        "nope",
        "[]",
        "[1,2,3,4,5]",
        "{}",
        r#"[null,null,"realtime:room","broadcast",7]"#,
        r#"[null,null,"realtime:room","presence_state",[1]]"#,
        r#"[null,null,"realtime:room","presence_diff",{"joins":5}]"#,
        r#"[null,null,"realtime:room","postgres_changes",{"ids":"x","data":{"type":"INSERT"}}]"#,
        r#"["x","y","realtime:room","phx_reply",null]"#,
        r#"[null,null,"phoenix","phx_reply",null]"#,
    ] {
        let _ = h.c.handle_text(h.now, t);
    }
    for b in [
        &[][..],
        &[4, 255, 255, 255, 1],
        &[0, 1, 2, 3],
        &[4, 13, 0, 0, 7, b'r'],
    ] {
        assert!(h.c.handle_binary(h.now, b).is_err());
    }
    assert_eq!(
        h.c.broadcast(id, "e", "{not json", h.now).unwrap_err().code,
        ErrorCode::InvalidInput
    );
    assert_eq!(
        h.c.on(id, Binding::presence("bogus")).unwrap_err().code,
        ErrorCode::InvalidInput
    );
    h.drain();
    assert_eq!(h.c.channel_info(id).unwrap().state, ChannelState::Joined);
}

#[test]
fn a_token_set_while_joining_is_pushed_once_joined() {
    let mut h = H::open(quick());
    let id = h.c.channel("a", ChannelOptions::default());
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    h.c.set_auth(Some("T2".into()), h.now);
    assert!(frames(&h.drain()).is_empty(), "not joined yet");
    let f =
        frames(&h.recv(&json!([jr, jr, "realtime:a", "phx_reply", {"status":"ok","response":{}}])));
    assert_eq!(
        (&f[0][0], &f[0][3], &f[0][4]),
        (&jr, &json!("access_token"), &json!({"access_token":"T2"}))
    );
    // A join that already carried the token gets no push.
    let b = h.c.channel("b", ChannelOptions::default());
    h.c.subscribe(b, h.now).unwrap();
    let jr = frames(&h.drain())[0][0].clone();
    let f =
        frames(&h.recv(&json!([jr, jr, "realtime:b", "phx_reply", {"status":"ok","response":{}}])));
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Client>();
    send_sync::<Store>();
    send_sync::<Events>();
    send_sync::<AckRef>();
    send_sync::<Error>();
    send::<Driver>();
    send::<Connection>();
    let (client, driver) = Client::new(ClientConfig::new("ws://127.0.0.1:1/socket")).unwrap();
    let run = driver.run();
    let _: &dyn Send = &run;
    drop(client);
}

fn http_requests(out: &[Output]) -> Vec<HttpBroadcast> {
    out.iter()
        .filter_map(|o| match o {
            Output::HttpBroadcast(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn refreshes(out: &[Output]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::RefreshToken))
        .count()
}

#[test]
fn token_refresh_is_asked_for_with_every_heartbeat_only_when_configured() {
    let mut off = H::open(quick());
    let out = off.advance(secs(25));
    assert_eq!(by_event(&frames(&out), "heartbeat").len(), 1);
    assert_eq!(refreshes(&out), 0, "no access_token_fn, no refresh");

    let mut h = H::open(ConnectionConfig {
        refresh_token_on_heartbeat: true,
        ..quick()
    });
    assert_eq!(refreshes(&h.advance(secs(24))), 0);
    let out = h.advance(S);
    let f = frames(&out);
    assert_eq!(
        (by_event(&f, "heartbeat").len(), refreshes(&out)),
        (1, 1),
        "{out:?}"
    );
    // Once per heartbeat: reply, and the next one asks again.
    let r = f[0][1].clone();
    h.recv(&json!([null, r, "phoenix", "phx_reply", {"status":"ok","response":{}}]));
    assert_eq!(refreshes(&h.advance(secs(24))), 0);
    assert_eq!(refreshes(&h.advance(S)), 1);
}

#[test]
fn refreshed_token_is_pushed_to_joined_channels_only_when_it_changed() {
    let mut h = H::open(ConnectionConfig {
        refresh_token_on_heartbeat: true,
        access_token: Some("T0".into()),
        ..quick()
    });
    let (_, jr) = h.joined("a", ChannelOptions::default());
    let joining = h.c.channel("b", ChannelOptions::default());
    h.c.subscribe(joining, h.now).unwrap();
    h.drain();
    let mut tokens = ["T1", "T1", "T2"].into_iter();
    let mut pushed = Vec::new();
    for _ in 0..3 {
        let out = h.advance(secs(25));
        let hb = by_event(&frames(&out), "heartbeat")[0].clone();
        assert_eq!(refreshes(&out), 1);
        // What the driver does with the token source's answer.
        h.c.set_auth(tokens.next().map(str::to_owned), h.now);
        let f = frames(&h.drain());
        pushed.push(
            by_event(&f, "access_token")
                .iter()
                .map(|p| (p[0].clone(), p[2].clone(), p[4]["access_token"].clone()))
                .collect::<Vec<_>>(),
        );
        h.recv(&json!([null, hb[1], "phoenix", "phx_reply", {"status":"ok","response":{}}]));
    }
    let a = |t: &str| vec![(json!(jr), json!("realtime:a"), json!(t))];
    assert_eq!(pushed, [a("T1"), vec![], a("T2")]);
    // A later join carries the refreshed token.
    let b_join = h.c.channel("c", ChannelOptions::default());
    h.c.subscribe(b_join, h.now).unwrap();
    assert_eq!(frames(&h.drain())[0][4]["access_token"], "T2");
}

fn fallback() -> ConnectionConfig {
    ConnectionConfig {
        http_fallback: true,
        ..quick()
    }
}

#[test]
fn http_fallback_posts_broadcasts_a_channel_cannot_push() {
    // Socket not open, channel never subscribed.
    let mut h = H::new(ConnectionConfig {
        access_token: Some("tok".into()),
        ..fallback()
    });
    let id =
        h.c.channel("room1", ChannelOptions::default().private(true));
    let r = h.c.broadcast(id, "evt", r#"{"a":1}"#, h.now).unwrap();
    let reqs = http_requests(&h.drain());
    assert_eq!(
        reqs,
        [HttpBroadcast {
            push_ref: r,
            topic: "realtime:room1".into(),
            event: "evt".into(),
            payload: crate::frame::Payload::json(r#"{"a":1}"#).unwrap(),
            private: true,
            token: Some("tok".into()),
            report: false,
        }]
    );
    assert_eq!(
        reqs[0].body().unwrap(),
        r#"{"messages":[{"topic":"room1","event":"evt","payload":{"a":1},"private":true}]}"#
    );
    // Socket open, channel joining: still HTTP (realtime-js `!canPush()`),
    // and the channel's own token wins.
    h.c.connect(h.now);
    h.c.handle_open(h.now);
    h.c.subscribe(id, h.now).unwrap();
    h.c.set_channel_auth(id, "own", h.now).unwrap();
    h.drain();
    h.c.broadcast(id, "evt", "2", h.now).unwrap();
    let out = h.drain();
    assert!(frames(&out).is_empty(), "nothing on the socket: {out:?}");
    let reqs = http_requests(&out);
    assert_eq!((reqs.len(), reqs[0].token.as_deref()), (1, Some("own")));
    // No broadcast was buffered for the join either.
    let jr = h.c.channel_info(id).unwrap().join_ref.unwrap();
    let f = frames(
        &h.recv(&json!([jr, jr, "realtime:room1", "phx_reply", {"status":"ok","response":{}}])),
    );
    assert!(by_event(&f, "broadcast").is_empty(), "{f:?}");
}

#[test]
fn a_joined_channel_does_not_use_http() {
    let mut h = H::open(fallback());
    let (id, jr) = h.joined("room", ChannelOptions::default().broadcast_ack(true));
    h.c.broadcast(id, "e", "1", h.now).unwrap();
    let r = h.c.broadcast_with_ack(id, "e", "2", h.now).unwrap();
    let out = h.drain();
    assert!(http_requests(&out).is_empty(), "{out:?}");
    let f = by_event(&frames(&out), "broadcast")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(f.len(), 2);
    assert_eq!((&f[1][0], &f[1][1]), (&json!(jr), &json!(r)));
    // Once the socket drops, the same channel falls back to HTTP.
    h.c.handle_close(h.now, Some(1006));
    h.drain();
    h.c.broadcast(id, "e", "3", h.now).unwrap();
    assert_eq!(http_requests(&h.drain()).len(), 1);
}

#[test]
fn without_fallback_broadcasts_buffer_or_fail_as_before() {
    let mut h = H::new(quick());
    let id = h.c.channel("room", ChannelOptions::default());
    let e = h.c.broadcast(id, "e", "1", h.now).unwrap_err();
    assert_eq!(e.code, ErrorCode::Closed);
    h.c.subscribe(id, h.now).unwrap();
    h.c.broadcast(id, "e", "1", h.now).unwrap();
    assert!(http_requests(&h.drain()).is_empty());
}

#[test]
fn http_results_resolve_acks_and_report_unacked_failures() {
    let mut h = H::new(fallback());
    let id =
        h.c.channel("room", ChannelOptions::default().broadcast_ack(true));
    h.c.broadcast_with_ack(id, "e", "1", h.now).unwrap();
    h.c.broadcast_with_ack(id, "e", "2", h.now).unwrap();
    h.c.broadcast(id, "e", "3", h.now).unwrap();
    h.c.broadcast(id, "e", "4", h.now).unwrap();
    let reqs = http_requests(&h.drain());
    assert_eq!(
        reqs.iter().map(|r| r.report).collect::<Vec<_>>(),
        [true, true, false, false]
    );
    let refused = || Error::new(ErrorCode::Rejected, "HTTP 500");
    h.c.handle_http_result(h.now, &reqs[0], Ok(()));
    h.c.handle_http_result(h.now, &reqs[1], Err(refused()));
    h.c.handle_http_result(h.now, &reqs[2], Ok(()));
    h.c.handle_http_result(h.now, &reqs[3], Err(refused()));
    let out = h.drain();
    assert_eq!(
        replies(&out),
        [
            (reqs[0].push_ref.clone(), Ok(())),
            (reqs[1].push_ref.clone(), Err(ErrorCode::Rejected))
        ]
    );
    assert_eq!(
        events(&out),
        [Event::Channel {
            topic: "realtime:room".into(),
            change: ChannelEvent::Error(refused()),
        }]
    );
    assert_eq!(
        h.c.channel_info(id).unwrap().state,
        ChannelState::Closed,
        "a failed HTTP broadcast leaves the channel as it was"
    );
}

/// `Close` outputs among `out`.
fn closes(out: &[Output]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::Close { .. }))
        .count()
}

#[test]
fn the_socket_closes_50_s_after_its_last_channel_and_a_subscribe_reopens_it() {
    // Heartbeats far apart, so only the empty-socket rule can close it.
    let cfg = ConnectionConfig {
        heartbeat_interval: secs(3600),
        ..ConnectionConfig::default()
    };
    let mut h = H::open(cfg.clone());
    let (a, _) = h.joined("a", ChannelOptions::default());
    let (b, _) = h.joined("b", ChannelOptions::default());
    h.c.unsubscribe(a, h.now).unwrap();
    assert_eq!(closes(&h.advance(secs(120))), 0, "one channel is left");
    h.c.unsubscribe(b, h.now).unwrap();
    h.drain();
    assert_eq!(closes(&h.advance(secs(49))), 0, "not before 50 s");
    let out = h.advance(S);
    assert!(out.contains(&Output::Close {
        code: 1000,
        reason: "client disconnect".into()
    }));
    h.c.handle_close(h.now, Some(1000));
    assert!(
        !h.advance(secs(60)).contains(&Output::Connect),
        "no reconnect"
    );
    let c = h.c.channel("c", ChannelOptions::default());
    assert!(
        !h.drain().contains(&Output::Connect),
        "a new channel alone does not connect"
    );
    h.c.subscribe(c, h.now).unwrap();
    assert!(
        h.drain().contains(&Output::Connect),
        "subscribing reopens it"
    );

    // A channel made while the close is pending cancels it.
    let mut h = H::open(cfg.clone());
    let (a, _) = h.joined("a", ChannelOptions::default());
    h.c.unsubscribe(a, h.now).unwrap();
    h.advance(secs(10));
    h.c.channel("b", ChannelOptions::default());
    assert_eq!(
        closes(&h.advance(secs(300))),
        0,
        "cancelled by a new channel"
    );

    // `None` keeps an empty socket open.
    let mut h = H::open(ConnectionConfig {
        disconnect_when_empty_after: None,
        ..cfg
    });
    let (a, _) = h.joined("a", ChannelOptions::default());
    h.c.unsubscribe(a, h.now).unwrap();
    assert_eq!(closes(&h.advance(secs(300))), 0, "disabled");
}

// ---- binary broadcasts (kind 3) -------------------------------------------

/// Every transmitted binary frame.
fn binary_frames(out: &[Output]) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit(Frame::Binary(b)) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

/// The kind-3 frame realtime-js would send: header, then the fields.
fn kind3(join_ref: &str, push_ref: &str, topic: &str, event: &str, bytes: &[u8]) -> Vec<u8> {
    let len = |s: &str| u8::try_from(s.len()).unwrap();
    let mut f = vec![
        3,
        len(join_ref),
        len(push_ref),
        len(topic),
        len(event),
        0,
        0,
    ];
    for field in [join_ref, push_ref, topic, event] {
        f.extend_from_slice(field.as_bytes());
    }
    f.extend_from_slice(bytes);
    f
}

const BYTES: &[u8] = &[0x00, 0x80, 0xff, b'{'];

#[test]
fn binary_broadcast_is_the_exact_kind_3_frame_on_v2() {
    let mut h = H::open(quick());
    let (id, jr) = h.joined("room1", ChannelOptions::default());
    let r = h.c.broadcast_binary(id, "cursor", BYTES, h.now).unwrap();
    let out = h.drain();
    assert!(frames(&out).is_empty(), "no text frame: {out:?}");
    let f = binary_frames(&out);
    assert_eq!(f, [kind3(&jr, &r, "realtime:room1", "cursor", BYTES)]);
    // Byte for byte: join_ref "1", ref "2", topic 14 bytes, event 6 bytes,
    // no metadata, encoding 0.
    assert_eq!(&f[0][..7], &[3, 1, 1, 14, 6, 0, 0]);
    assert_eq!(&f[0][7..], b"12realtime:room1cursor\x00\x80\xff{");
    // The server's decoder reads it back.
    let crate::frame::Inbound::UserBroadcast(b) = crate::frame::decode_binary(&f[0]).unwrap()
    else {
        panic!("kind 3")
    };
    assert_eq!(
        (
            b.join_ref.as_deref(),
            b.msg_ref.as_deref(),
            b.user_event.as_str()
        ),
        (Some(jr.as_str()), Some(r.as_str()), "cursor")
    );
    assert_eq!(b.payload, crate::frame::Payload::Binary(BYTES.to_vec()));
    // Empty payloads are fine.
    h.c.broadcast_binary(id, "e", &[], h.now).unwrap();
    assert_eq!(binary_frames(&h.drain())[0].len(), 7 + 1 + 1 + 14 + 1);
}

#[test]
fn binary_broadcast_on_v1_is_unsupported() {
    let mut h = H::open(ConnectionConfig {
        vsn: Vsn::V1,
        ..quick()
    });
    let id =
        h.c.channel("room1", ChannelOptions::default().broadcast_ack(true));
    h.c.subscribe(id, h.now).unwrap();
    let jr = frames(&h.drain())[0]["join_ref"].clone();
    h.recv(&json!({"topic":"realtime:room1","event":"phx_reply",
        "payload":{"status":"ok","response":{}},"ref":jr,"join_ref":jr}));
    assert_eq!(h.c.channel_info(id).unwrap().state, ChannelState::Joined);
    let e = h.c.broadcast_binary(id, "e", BYTES, h.now).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported);
    assert!(e.message.contains("vsn 2.0.0"), "{e}");
    assert_eq!(e.context("topic"), Some("realtime:room1"));
    let e =
        h.c.broadcast_binary_with_ack(id, "e", BYTES, h.now)
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported);
    // Even with the HTTP fallback on and the channel unable to push.
    let mut f = H::new(ConnectionConfig {
        vsn: Vsn::V1,
        ..fallback()
    });
    let id = f.c.channel("room1", ChannelOptions::default());
    let e = f.c.broadcast_binary(id, "e", BYTES, f.now).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported);
    assert!(h.drain().is_empty() && f.drain().is_empty());
}

#[test]
fn binary_broadcast_ack_is_correlated_by_ref_and_times_out() {
    let mut h = H::open(quick());
    let (plain, _) = h.joined("plain", ChannelOptions::default());
    let e =
        h.c.broadcast_binary_with_ack(plain, "e", BYTES, h.now)
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput, "needs broadcast.ack");
    let (id, jr) = h.joined("room", ChannelOptions::default().broadcast_ack(true));
    let r1 =
        h.c.broadcast_binary_with_ack(id, "e", BYTES, h.now)
            .unwrap();
    let r2 =
        h.c.broadcast_binary_with_ack(id, "e", BYTES, h.now)
            .unwrap();
    let f = binary_frames(&h.drain());
    assert_eq!(
        f,
        [
            kind3(&jr, &r1, "realtime:room", "e", BYTES),
            kind3(&jr, &r2, "realtime:room", "e", BYTES)
        ]
    );
    // The second is answered first: each reply resolves its own ref.
    let out = h.recv(&json!([jr, r2, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    assert_eq!(replies(&out), [(r2.clone(), Ok(()))]);
    let out = h.advance(secs(10));
    assert_eq!(replies(&out), [(r1, Err(ErrorCode::Timeout))]);
}

#[test]
fn binary_broadcast_is_buffered_until_joined_with_the_new_join_ref() {
    let mut h = H::new(quick());
    let id =
        h.c.channel("room", ChannelOptions::default().broadcast_ack(true));
    h.c.subscribe(id, h.now).unwrap();
    let r1 =
        h.c.broadcast_binary_with_ack(id, "a", BYTES, h.now)
            .unwrap();
    h.c.broadcast(id, "j", "1", h.now).unwrap();
    let r3 = h.c.broadcast_binary(id, "b", &[7], h.now).unwrap();
    h.c.connect(h.now);
    h.c.handle_open(h.now);
    let out = h.drain();
    assert!(
        binary_frames(&out).is_empty(),
        "not before the join: {out:?}"
    );
    let jr = frames(&out)[0][0].as_str().unwrap().to_owned();
    let out = h.recv(&json!([jr, jr, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    // In order, text and binary interleaved, each with the join's ref.
    let kinds: Vec<&str> = out
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(Frame::Text(_)) => Some("text"),
            Output::Transmit(Frame::Binary(_)) => Some("binary"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["binary", "text", "binary"]);
    assert_eq!(
        binary_frames(&out),
        [
            kind3(&jr, &r1, "realtime:room", "a", BYTES),
            kind3(&jr, &r3, "realtime:room", "b", &[7])
        ]
    );
    // The buffered ack now waits for its reply.
    let out = h.recv(&json!([jr, r1, "realtime:room", "phx_reply", {"status":"ok","response":{}}]));
    assert_eq!(replies(&out), [(r1, Ok(()))]);
}

#[test]
fn binary_broadcast_fields_over_255_bytes_are_an_error_not_a_panic() {
    let mut h = H::open(quick());
    let (id, _) = h.joined("room", ChannelOptions::default());
    let e =
        h.c.broadcast_binary(id, &"e".repeat(256), BYTES, h.now)
            .unwrap_err();
    assert_eq!(
        (e.code, e.context("field"), e.context("bytes")),
        (ErrorCode::InvalidInput, Some("user event"), Some("256"))
    );
    h.c.broadcast_binary(id, &"e".repeat(255), BYTES, h.now)
        .unwrap();
    assert_eq!(binary_frames(&h.drain()).len(), 1, "255 fits");
    // realtime:<247 bytes> is 256 bytes.
    let long = h.c.channel(&"t".repeat(247), ChannelOptions::default());
    h.c.subscribe(long, h.now).unwrap();
    let e = h.c.broadcast_binary(long, "e", BYTES, h.now).unwrap_err();
    assert_eq!(
        (e.code, e.context("field")),
        (ErrorCode::InvalidInput, Some("topic"))
    );
    // Nothing was buffered for the join either.
    let jr = h.c.channel_info(long).unwrap().join_ref.unwrap();
    h.drain();
    let topic = format!("realtime:{}", "t".repeat(247));
    let out = h.recv(&json!([jr, jr, topic, "phx_reply", {"status":"ok","response":{}}]));
    assert!(binary_frames(&out).is_empty(), "{out:?}");
}

#[test]
fn binary_broadcast_falls_back_to_http_with_the_bytes() {
    let mut h = H::new(ConnectionConfig {
        access_token: Some("tok".into()),
        ..fallback()
    });
    let id =
        h.c.channel("room1", ChannelOptions::default().broadcast_ack(true));
    let r =
        h.c.broadcast_binary_with_ack(id, "evt", BYTES, h.now)
            .unwrap();
    let reqs = http_requests(&h.drain());
    assert_eq!(
        reqs,
        [HttpBroadcast {
            push_ref: r.clone(),
            topic: "realtime:room1".into(),
            event: "evt".into(),
            payload: crate::frame::Payload::Binary(BYTES.to_vec()),
            private: false,
            token: Some("tok".into()),
            report: true,
        }]
    );
    assert_eq!(reqs[0].body(), None, "the batch endpoint is JSON only");
    h.c.handle_http_result(h.now, &reqs[0], Ok(()));
    assert_eq!(replies(&h.drain()), [(r, Ok(()))]);
    // Joined on an open socket: the socket, not HTTP.
    let mut h = H::open(fallback());
    let (id, _) = h.joined("room1", ChannelOptions::default());
    h.c.broadcast_binary(id, "evt", BYTES, h.now).unwrap();
    let out = h.drain();
    assert!(http_requests(&out).is_empty());
    assert_eq!(binary_frames(&out).len(), 1);
}
