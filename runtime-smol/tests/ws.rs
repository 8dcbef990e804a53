//! The WebSocket transport against a real hub on loopback: the instance
//! stream over a Phoenix socket (SPEC §7) with the SSE scenarios, a
//! Supabase channel shared with pages, and the socket's lifecycle.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::phoenix::Ws;
use support::{TestServer, keys_of, room_json};
use tidings_core::{Channel, Cid, Effects, Peer};
use tidings_smol::{Access, App, AppError, NextAction, Page, params};
use tidings_ws::server::topic::realtime_channel;

struct WsApp;

fn room(n: i64) -> Channel {
    Channel::tuple("room", [n.into()]).expect("a valid channel")
}

impl App for WsApp {
    fn render(&self, path: &str, page: &mut Page) -> Result<Option<String>, AppError> {
        let ch = match path {
            "/" => room(1),
            "/lobby" => realtime_channel("lobby").expect("a valid channel"),
            _ => return Ok(None),
        };
        page.component(Cid::PAGE).put_subscription(ch)?;
        Ok(Some("<html><head></head><body>ws</body></html>".into()))
    }

    fn command(
        &self,
        fx: &mut Effects,
        name: &str,
        p: &Value,
    ) -> Result<Option<NextAction>, AppError> {
        match name {
            "say" => {
                let ch = fx
                    .subscriptions()
                    .first()
                    .cloned()
                    .ok_or_else(|| AppError::bad_request("not subscribed"))?;
                fx.put_broadcast(&ch, "message", params(&p["params"]))?;
                Ok(Some(NextAction::new("said", json!({}))))
            }
            _ => Err(AppError::unknown_command(name)),
        }
    }

    fn authenticate(&self, apikey: Option<&str>) -> Result<(), String> {
        match apikey {
            Some("bad-key") => Err("API key is not valid".into()),
            _ => Ok(()),
        }
    }

    fn authorize(&self, _: &Peer, _: Access, ch: &Channel, _: Option<&str>) -> Result<(), String> {
        if ch.to_string().contains("secret") {
            Err("no entry".into())
        } else {
            Ok(())
        }
    }
}

fn start() -> TestServer {
    TestServer::start(WsApp, |_, _| {})
}

fn instance_topic(tab: &support::Tab) -> String {
    format!("tidings:{}", tab.instance)
}

#[test]
fn the_instance_stream_over_a_socket_carries_commands_broadcasts_and_self_echoes() {
    let srv = start();
    let a = srv.load("/", None);
    let b = srv.load("/", None);
    let mut wa = Ws::connect(srv.addr, Some(&a.cookie));
    let mut wb = Ws::connect(srv.addr, Some(&b.cookie));
    let (jra, reply) = wa.join(&instance_topic(&a), &json!({"receipts": a.tokens()}));
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(
        keys_of(reply["response"]["receipts"].as_array().unwrap()),
        json!([{"channel": room_json(1), "cid": "page"}]),
        "the join is a handshake: the receipt comes back re-signed"
    );
    let (_, reply) = wb.join(&instance_topic(&b), &json!({"receipts": b.tokens()}));
    assert_eq!(reply["status"], "ok");

    let r = wa.push(
        Some(&jra),
        &instance_topic(&a),
        "command",
        &json!({"target": "page", "name": "say", "params": {"params": {"text": "hi"}}}),
    );
    let reply = wa.expect(|m| m[1] == json!(r));
    assert_eq!(reply[0], json!(jra), "the reply carries the join ref");
    assert_eq!(
        reply[4],
        json!({"status": "ok", "response": {
            "action": {"action": "said", "params": {}, "cid": "page"},
            "self_echoes": [{"action": "message", "params": {"text": "hi"}, "cid": "page"}],
            "receipts": {"adds": [], "drops": []},
        }})
    );
    let pushed = wb.expect(|m| m[3] == "broadcast");
    assert_eq!(pushed[2], json!(instance_topic(&b)));
    assert_eq!(
        pushed[4],
        json!({"action": "message", "params": {"text": "hi"}, "cids": ["page"]})
    );
    assert!(
        wa.drain(Duration::from_millis(300))
            .iter()
            .all(|m| m[3] != "broadcast"),
        "the originator gets its echo in the reply, not on the stream"
    );

    // Server code reaches both.
    srv.hub
        .broadcast_action("{:room, 1}", "marker", &json!({"n": 1}))
        .unwrap();
    for ws in [&mut wa, &mut wb] {
        let m = ws.expect(|m| m[3] == "broadcast");
        assert_eq!(m[4]["action"], "marker");
    }
}

#[test]
fn a_failed_command_is_an_error_reply_with_a_reason() {
    let srv = start();
    let a = srv.load("/", None);
    let mut wa = Ws::connect(srv.addr, Some(&a.cookie));
    let (jr, _) = wa.join(&instance_topic(&a), &json!({"receipts": a.tokens()}));
    let r = wa.push(
        Some(&jr),
        &instance_topic(&a),
        "command",
        &json!({"target": "page", "name": "nope", "params": {}}),
    );
    let reply = wa.expect(|m| m[1] == json!(r));
    assert_eq!(reply[4]["status"], "error");
    assert_eq!(reply[4]["response"]["error"]["code"], "unknown_command");
    assert_eq!(
        reply[4]["response"]["status"], 404,
        "the HTTP status rides along"
    );
    assert!(
        reply[4]["response"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("unknown_command: ")
    );
    let r = wa.push(
        Some(&jr),
        &instance_topic(&a),
        "command",
        &json!({"name": 1}),
    );
    let reply = wa.expect(|m| m[1] == json!(r));
    assert_eq!(
        reply[4]["status"], "error",
        "a malformed command is refused"
    );
}

#[test]
fn forged_receipts_are_dropped_and_another_sessions_instance_is_unauthorized() {
    let srv = start();
    let a = srv.load("/", None);
    let mut wa = Ws::connect(srv.addr, Some(&a.cookie));
    let mut forged = a.tokens();
    forged[0].push('x');
    let (_, reply) = wa.join(&instance_topic(&a), &json!({"receipts": forged}));
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["response"]["receipts"], json!([]));

    // Another session cannot take over a live instance.
    let other = srv.load("/", None);
    let mut wo = Ws::connect(srv.addr, Some(&other.cookie));
    let (_, reply) = wo.join(&instance_topic(&a), &json!({"receipts": []}));
    assert_eq!(reply["status"], "error");
    assert!(
        reply["response"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("Unauthorized: "),
        "{reply}"
    );
    let (_, reply) = wo.join("tidings:not-a-uuid", &json!({}));
    assert_eq!(reply["status"], "error");
}

#[test]
fn a_second_socket_for_the_same_instance_supersedes_the_first() {
    let srv = start();
    let a = srv.load("/", None);
    let mut w1 = Ws::connect(srv.addr, Some(&a.cookie));
    let (jr1, _) = w1.join(&instance_topic(&a), &json!({"receipts": a.tokens()}));
    let mut w2 = Ws::connect(srv.addr, Some(&a.cookie));
    let (_, reply) = w2.join(&instance_topic(&a), &json!({"receipts": a.tokens()}));
    assert_eq!(reply["status"], "ok");
    let close = w1.expect(|m| m[3] == "phx_close");
    assert_eq!(close[0], json!(jr1));
    // The bindings carried over: the new socket gets broadcasts.
    srv.hub
        .broadcast_action("{:room, 1}", "marker", &json!({}))
        .unwrap();
    assert_eq!(w2.expect(|m| m[3] == "broadcast")[4]["action"], "marker");
    assert!(
        w1.drain(Duration::from_millis(200))
            .iter()
            .all(|m| m[3] != "broadcast")
    );
}

#[test]
fn pages_and_supabase_clients_share_a_realtime_channel() {
    let srv = start();
    let page = srv.load("/lobby", None);
    let mut stream = srv.connect(&page);
    let mut sb = Ws::connect(srv.addr, None);
    let config = json!({"config": {"broadcast": {"self": false, "ack": true}}});
    let (jr, reply) = sb.join("realtime:lobby", &config);
    assert_eq!(
        reply,
        json!({"status": "ok", "response": {"postgres_changes": []}})
    );

    // Supabase → page.
    let r = sb.push(
        Some(&jr),
        "realtime:lobby",
        "broadcast",
        &json!({"type": "broadcast", "event": "message", "payload": {"text": "from js"}}),
    );
    assert_eq!(
        sb.expect(|m| m[1] == json!(r))[4],
        json!({"status": "ok", "response": {}})
    );
    assert_eq!(
        stream.expect("broadcast"),
        json!({"action": "message", "params": {"text": "from js"}, "cids": ["page"]})
    );
    // Page → Supabase.
    let resp = srv.command(
        &page,
        "page",
        "say",
        &json!({"params": {"text": "from page"}}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text);
    let m = sb.expect(|m| m[3] == "broadcast");
    assert_eq!(
        m,
        json!([null, null, "realtime:lobby", "broadcast",
            {"type": "broadcast", "event": "message", "payload": {"text": "from page"}}])
    );
    assert!(
        sb.drain(Duration::from_millis(200))
            .iter()
            .all(|m| m[3] != "broadcast"),
        "no echo of its own broadcast without self"
    );
}

#[test]
fn authorize_refuses_joins_and_authenticate_refuses_sockets() {
    let srv = start();
    let mut sb = Ws::connect(srv.addr, None);
    let (_, reply) = sb.join("realtime:secret-room", &json!({}));
    assert_eq!(
        reply,
        json!({"status": "error", "response": {"reason": "Unauthorized: no entry"}})
    );
    assert_eq!(
        Ws::try_connect(srv.addr, None, "vsn=2.0.0&apikey=bad-key").err(),
        Some(401)
    );
    assert_eq!(
        Ws::try_connect(srv.addr, None, "vsn=3.0.0").err(),
        Some(400)
    );
}

#[test]
fn presence_state_after_join_and_diffs_to_every_member() {
    let srv = start();
    let mut a = Ws::connect(srv.addr, None);
    let mut b = Ws::connect(srv.addr, None);
    let cfg = |key: &str| json!({"config": {"presence": {"key": key, "enabled": true}}});
    let (jra, _) = a.join("realtime:room", &cfg("alice"));
    assert_eq!(a.expect(|m| m[3] == "presence_state")[4], json!({}));
    let r = a.push(
        Some(&jra),
        "realtime:room",
        "presence",
        &json!({"type": "presence", "event": "track", "payload": {"name": "alice"}}),
    );
    assert_eq!(a.expect(|m| m[1] == json!(r))[4]["status"], "ok");
    let diff = a.expect(|m| m[3] == "presence_diff");
    assert_eq!(diff[0], Value::Null, "diffs carry no join ref");
    assert_eq!(diff[4]["joins"]["alice"]["metas"][0]["name"], "alice");

    let (jrb, _) = b.join("realtime:room", &cfg("bob"));
    let state = b.expect(|m| m[3] == "presence_state");
    assert_eq!(state[0], json!(jrb), "the state carries the join ref");
    assert_eq!(state[4]["alice"]["metas"][0]["name"], "alice");
    assert!(state[4]["alice"]["metas"][0]["phx_ref"].is_string());

    drop(b);
    drop(a.drain(Duration::from_millis(100)));
    let left = {
        let mut c = Ws::connect(srv.addr, None);
        let (jrc, _) = c.join("realtime:room", &cfg("carol"));
        let r = c.push(
            Some(&jrc),
            "realtime:room",
            "presence",
            &json!({"type": "presence", "event": "track", "payload": {}}),
        );
        c.expect(|m| m[1] == json!(r));
        a.expect(|m| m[3] == "presence_diff" && m[4]["joins"]["carol"].is_object());
        drop(c);
        a.expect(|m| m[3] == "presence_diff" && m[4]["leaves"]["carol"].is_object())
    };
    assert_eq!(left[4]["joins"], json!({}), "a disconnect is a leave");
}

#[test]
fn shutdown_closes_sockets_with_1012_so_clients_reconnect() {
    let mut srv = start();
    let mut sb = Ws::connect(srv.addr, None);
    sb.join("realtime:room", &json!({}));
    srv.shutdown();
    let close = sb.expect(|m| m[0] == "close");
    assert_eq!(close[1], 1012);
}

#[test]
fn a_socket_dropped_as_a_slow_consumer_is_closed_though_its_peer_sends_and_never_reads() {
    let srv = TestServer::start(WsApp, |_, sse| sse.outbound_queue = 4);
    let mut slow = Ws::connect_vsn(srv.addr, "2.0.0");
    slow.join_ok("realtime:slow");
    // Far more than the kernel buffers, the socket's write batch and the
    // 4-item queue hold: the hub drops the socket as a slow consumer.
    let blob = "x".repeat(64 * 1024);
    let channel = realtime_channel("slow").expect("a valid channel");
    for _ in 0..400 {
        srv.hub
            .broadcast_action(channel.clone(), "big", &json!({ "blob": blob }))
            .unwrap();
    }
    // The peer keeps the socket from idling out (heartbeats) but reads
    // nothing: the server must still close it, so a write soon fails.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let closed = loop {
        if slow.try_heartbeat().is_err() {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(closed, "the dropped socket was still open after 10 s");
}
