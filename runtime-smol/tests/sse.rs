//! SSE + POST end to end over real loopback sockets (SPEC §3–§6, §10): a
//! small test app on a hub, `ureq` for the POSTs and a raw-socket SSE reader
//! for the streams.
//!
//! Absence is never checked by sleeping: after the broadcast that must not
//! arrive, a marker broadcast that must arrive is sent through the same hub
//! inbox, and the stream must show the marker with nothing before it (frames
//! reach one instance in the order the router emitted them, SPEC §5).

mod support;

use std::sync::{Once, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tidings_core::router::{Millis, Router, RouterConfig};
use tidings_core::{Channel, Cid, Effects, Identity, InstanceId, OsEntropy, Peer, UserId};
use tidings_smol::sse::SseConfig;
use tidings_smol::{App, AppError, HubError, NextAction, Page, params};

use support::{EventStream, Next, TestServer, WAIT, events_path, keys_of, room_json, tokens};

// -- the test app -------------------------------------------------------------

/// Pages `/` (room 1) and `/r/1,2,…` bind `{:room, n}` on cid `page`; a
/// logged-in user's pages also bind `{:user, name}` on cid `toast`.
struct TestApp;

fn room(n: i64) -> Channel {
    Channel::tuple("room", [tidings_core::Value::Int(n)]).expect("room channels are valid")
}

fn user_channel(name: &str) -> Channel {
    Channel::tuple("user", [tidings_core::Value::str(name)]).expect("user channels are valid")
}

/// `params.room`, else the component's first bound channel.
fn target_room(fx: &Effects, p: &Value) -> Result<Channel, AppError> {
    if let Some(n) = p.get("room").and_then(Value::as_i64) {
        return Ok(room(n));
    }
    fx.subscriptions()
        .first()
        .cloned()
        .ok_or_else(|| AppError::bad_request("this component is in no room"))
}

/// `params.action` (default `message`) and `params.params` (default `{}`).
fn broadcast_of(p: &Value) -> (String, Value) {
    let action = p.get("action").and_then(Value::as_str).unwrap_or("message");
    let params = p.get("params").cloned().unwrap_or_else(|| json!({}));
    (action.to_owned(), params)
}

/// `params.except`: `["instance:<uuid>" | "session:<uuid>" | "user:<name>"]`.
fn except_of(p: &Value) -> Result<Vec<Identity>, AppError> {
    let bad = |what: &str| AppError::bad_request(format!("bad except entry {what:?}"));
    p.get("except")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let text = e.as_str().ok_or_else(|| bad(&e.to_string()))?;
            match text.split_once(':') {
                Some(("instance", id)) => id.parse().map(Identity::Instance).map_err(|_| bad(text)),
                Some(("session", id)) => id.parse().map(Identity::Session).map_err(|_| bad(text)),
                Some(("user", name)) => Ok(Identity::User(UserId::str(name))),
                _ => Err(bad(text)),
            }
        })
        .collect()
}

impl App for TestApp {
    fn render(&self, path: &str, page: &mut Page) -> Result<Option<String>, AppError> {
        let rooms: Vec<i64> = if path == "/" {
            vec![1]
        } else if let Some(list) = path.strip_prefix("/r/") {
            match list.split(',').map(str::parse).collect() {
                Ok(rooms) => rooms,
                Err(_) => return Ok(None),
            }
        } else {
            return Ok(None);
        };
        for n in rooms {
            page.component(Cid::PAGE).put_subscription(room(n))?;
        }
        if let Some(user) = page.peer().user.clone()
            && let tidings_core::Value::Str(name) = user.as_value()
        {
            page.component(Cid::new("toast").expect("a valid cid"))
                .put_subscription(user_channel(name))?;
        }
        Ok(Some(format!(
            "<!doctype html><html><head><title>rooms</title></head><body>page {path}</body></html>"
        )))
    }

    fn command(
        &self,
        fx: &mut Effects,
        name: &str,
        p: &Value,
    ) -> Result<Option<NextAction>, AppError> {
        let said = || Ok(Some(NextAction::new("said", json!({}))));
        match name {
            "say" => {
                let ch = target_room(fx, p)?;
                let (action, body) = broadcast_of(p);
                fx.put_broadcast(&ch, &action, params(&body))?;
                said()
            }
            "say_except" => {
                let ch = target_room(fx, p)?;
                let (action, body) = broadcast_of(p);
                let except = except_of(p)?;
                fx.put_broadcast_except(&except, &ch, &action, params(&body))?;
                said()
            }
            "leave" => {
                let ch = target_room(fx, p)?;
                fx.delete_subscription(&ch)?;
                Ok(Some(NextAction::new("left", json!({}))))
            }
            "login" => {
                let who = p
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| AppError::bad_request("login needs a name"))?;
                fx.set_user_id(Some(UserId::str(who)));
                fx.put_subscription(user_channel(who))?;
                Ok(Some(NextAction::new("logged_in", json!({"name": who}))))
            }
            "ping" => Ok(Some(NextAction::new("pong", json!({})))),
            "slow" => {
                // Holds the hub for `params.ms`, so that later messages queue up.
                let ms = p.get("ms").and_then(Value::as_u64).unwrap_or(100);
                thread::sleep(Duration::from_millis(ms));
                Ok(None)
            }
            "panic" => {
                let ch = target_room(fx, p)?;
                fx.put_broadcast(&ch, "leaked_by_panic", params(&json!({})))?;
                panic!("{PLANNED_PANIC}");
            }
            "bad_params" => {
                // Params that are not JSON cannot be sent: nothing commits.
                let ch = target_room(fx, p)?;
                fx.put_broadcast(
                    &ch,
                    "leaked_by_bad_params",
                    tidings_core::Payload::new(&b"not json"[..]),
                )?;
                Ok(None)
            }
            "fail" => {
                let ch = target_room(fx, p)?;
                fx.put_broadcast(&ch, "leaked_by_error", params(&json!({})))?;
                Err(AppError {
                    status: 422,
                    code: "refused".into(),
                    message: "the test handler refuses".into(),
                })
            }
            _ => Err(AppError::unknown_command(name)),
        }
    }
}

const PLANNED_PANIC: &str = "the test app's panic command panics on purpose";

/// Keeps the planned handler panic out of the test output.
fn quiet_planned_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let planned = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|s| s == PLANNED_PANIC);
            if !planned {
                default(info);
            }
        }));
    });
}

fn start() -> TestServer {
    TestServer::start(TestApp, |_, _| {})
}

fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as Millis
}

const HOUR_MS: Millis = 3_600_000;

fn no_actions() -> Vec<String> {
    Vec::new()
}

// -- 1. the basic round trip --------------------------------------------------

#[test]
fn command_broadcast_reaches_other_tabs_and_the_originator_only_as_a_self_echo() {
    let srv = start();
    let a = srv.load("/r/1", None);
    let b = srv.load("/r/1", None);
    assert_eq!(
        keys_of(&a.receipts),
        json!([{"channel": room_json(1), "cid": "page"}])
    );
    assert_eq!(a.boot_self_echoes, json!([]));

    let hs = srv.handshake(&a, &a.tokens());
    assert_eq!(
        keys_of(&hs.receipts),
        keys_of(&a.receipts),
        "the receipt is re-signed"
    );
    let mut sa = srv.open(&a, &hs.id).expect("a's stream opens");
    let mut sb = srv.connect(&b);

    let resp = srv.command(
        &a,
        "page",
        "say",
        &json!({"action": "message", "params": {"text": "hi"}}),
    );
    assert_eq!(
        resp.ok(),
        &json!({
            "action": {"action": "said", "params": {}, "cid": "page"},
            "self_echoes": [{"action": "message", "params": {"text": "hi"}, "cid": "page"}],
            "receipts": {"adds": [], "drops": []},
        })
    );
    assert_eq!(
        sb.expect("broadcast"),
        json!({"action": "message", "params": {"text": "hi"}, "cids": ["page"]})
    );

    srv.hub
        .broadcast_action("{:room, 1}", "marker", &json!({}))
        .unwrap();
    assert_eq!(
        sa.actions_until("marker"),
        no_actions(),
        "no copy on the originator's stream"
    );
    assert_eq!(sb.actions_until("marker"), no_actions());
}

// -- 2. exclusion -------------------------------------------------------------

#[test]
fn exclusion_by_instance_session_and_user_never_excludes_anonymous_tabs() {
    let srv = start();
    let mut a1 = srv.load("/r/1", None);
    let a2 = srv.load("/r/1", Some(&a1.cookie)); // same session as a1
    let c = srv.load("/r/1", None); // anonymous, own session
    let mut d = srv.load("/r/1", None); // another session, will log in as "u"
    let mut streams: Vec<EventStream> = [&a1, &a2, &c, &d].map(|t| srv.connect(t)).into();

    for tab in [&mut a1, &mut d] {
        let resp = srv.command(tab, "toast", "login", &json!({"name": "u"}));
        assert_eq!(resp.ok()["action"]["action"], "logged_in");
        assert_eq!(
            keys_of(resp.body["receipts"]["adds"].as_array().unwrap()),
            json!([{"channel": {"t": "user", "v": ["u"]}, "cid": "toast"}])
        );
        tab.absorb(&resp);
    }
    let u = || Identity::User(UserId::str("u"));
    let send = |except: &[Identity], action: &str| {
        srv.hub
            .broadcast_action_except(except, "{:room, 1}", action, &json!({}))
            .unwrap();
    };
    send(&[Identity::Instance(a1.instance_id())], "x_instance");
    send(&[Identity::Session(srv.session_of(&a1))], "x_session");
    // a2 logged in along with a1 (same session), d on its own.
    send(&[u()], "x_user");
    // `{:user, :u}` is not `{:user, "u"}`: exact matching excludes no one.
    send(&[Identity::User(UserId::atom("u").unwrap())], "x_atom_user");
    send(
        &[
            Identity::Instance(c.instance_id()),
            Identity::Session(srv.session_of(&d)),
        ],
        "x_list",
    );

    // The same through a handler's put_broadcast_except.
    let by_instance = srv.command(
        &c,
        "page",
        "say_except",
        &json!({"action": "h_instance", "except": [format!("instance:{}", a1.instance)]}),
    );
    assert_eq!(
        by_instance.ok()["self_echoes"],
        json!([{"action": "h_instance", "params": {}, "cid": "page"}])
    );
    let by_user = srv.command(
        &d,
        "page",
        "say_except",
        &json!({"action": "h_user", "except": ["user:u"]}),
    );
    assert_eq!(
        by_user.ok()["self_echoes"],
        json!([]),
        "the exclusion covers the originator"
    );

    srv.hub
        .broadcast_action("{:room, 1}", "end", &json!({}))
        .unwrap();
    let got: Vec<Vec<String>> = streams.iter_mut().map(|s| s.actions_until("end")).collect();
    assert_eq!(
        got,
        [
            vec!["x_atom_user", "x_list"],                             // a1
            vec!["x_instance", "x_atom_user", "x_list", "h_instance"], // a2
            vec!["x_instance", "x_session", "x_user", "x_atom_user", "h_user"], // c
            vec!["x_instance", "x_session", "x_atom_user", "h_instance"], // d
        ]
        .map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
    );
}

// -- 3. kick ------------------------------------------------------------------

#[test]
fn kick_holds_across_reconnect_until_regranted() {
    let srv = start();
    let mut t = srv.load("/r/1", None);
    let mut old_stream = srv.connect(&t);
    let login = srv.command(&t, "toast", "login", &json!({"name": "kicked"}));
    let toast_receipt = login.ok()["receipts"]["adds"][0].clone();
    t.absorb(&login);
    let old_room_receipt = t.receipts[0].clone();
    let kicked = || Identity::User(UserId::str("kicked"));

    srv.hub.unsubscribe_all(kicked(), "{:room, 1}").unwrap();
    assert_eq!(
        old_stream.expect("drop_sub_receipts"),
        json!([{"channel": room_json(1), "cid": "page"}])
    );

    // Reconnect presenting the old receipt: the tombstone rejects it.
    let hs = srv.handshake(
        &t,
        &tokens(&[old_room_receipt.clone(), toast_receipt.clone()]),
    );
    assert_eq!(
        keys_of(&hs.receipts),
        json!([{"channel": {"t": "user", "v": ["kicked"]}, "cid": "toast"}]),
        "the kicked room's receipt must not survive the handshake"
    );
    // The old stream is still attached, so this one supersedes it.
    let mut stream = srv.open(&t, &hs.id).expect("the new stream opens");
    let leftovers = old_stream.read_to_end(WAIT);
    assert!(
        leftovers.iter().all(|e| e.name == "heartbeat"),
        "the superseded stream just ends: {leftovers:?}"
    );
    // A superseding attach keeps the prior bindings and resyncs the
    // client's store with them (R2): the toast binding, not the kicked room.
    let refreshed = stream.expect("refresh_sub_receipts");
    assert_eq!(
        keys_of(refreshed.as_array().unwrap()),
        json!([{"channel": {"t": "user", "v": ["kicked"]}, "cid": "toast"}])
    );
    srv.hub
        .broadcast_action("{:room, 1}", "after_kick", &json!({}))
        .unwrap();
    srv.hub
        .broadcast_action(r#"{:user, "kicked"}"#, "marker", &json!({}))
        .unwrap();
    assert_eq!(stream.actions_until("marker"), no_actions());

    // Re-grant.
    srv.hub
        .subscribe(kicked(), "{:room, 1}", Cid::PAGE)
        .unwrap();
    let added = stream.expect("add_sub_receipts");
    assert_eq!(
        keys_of(added.as_array().unwrap()),
        json!([{"channel": room_json(1), "cid": "page"}])
    );
    srv.hub
        .broadcast_action("{:room, 1}", "back", &json!({"n": 1}))
        .unwrap();
    assert_eq!(
        stream.expect("broadcast"),
        json!({"action": "back", "params": {"n": 1}, "cids": ["page"]})
    );
    // The re-granted receipt is good for the next reconnect.
    let regranted = added[0].clone();
    let hs = srv.handshake(&t, &tokens(&[regranted, toast_receipt]));
    assert_eq!(
        hs.receipts.len(),
        2,
        "both receipts accepted: {:?}",
        hs.receipts
    );
}

// -- 4. navigation ------------------------------------------------------------

#[test]
fn navigation_applies_the_receipt_diff_without_interrupting_kept_bindings() {
    let srv = start();
    let t = srv.load("/r/1,2", None);
    let mut stream = srv.connect(&t);

    // A feeder broadcasts numbered ticks on room 2 (declared on both pages)
    // for the whole navigation.
    let (stop, stopped) = mpsc::channel::<()>();
    let hub = srv.hub.clone();
    let feeder = thread::spawn(move || {
        let mut n = 0u64;
        while stopped.try_recv().is_err() {
            hub.broadcast_action("{:room, 2}", "tick", &json!({"n": n}))
                .unwrap();
            n += 1;
            thread::sleep(Duration::from_millis(1));
        }
        n
    });
    let first = stream.expect_broadcast("tick");
    assert_eq!(first["params"]["n"], 0);

    let nav = srv.navigate(&t, "/r/2,3", &keys_of(&t.receipts));
    let body = nav.ok();
    assert!(
        body["html"].as_str().unwrap().contains("page /r/2,3"),
        "{body}"
    );
    assert_eq!(
        keys_of(body["receipts"]["adds"].as_array().unwrap()),
        json!([{"channel": room_json(3), "cid": "page"}])
    );
    assert_eq!(
        body["receipts"]["drops"],
        json!([{"channel": room_json(1), "cid": "page"}])
    );
    assert_eq!(body["self_echoes"], json!([]));
    // The same page again with what the client now holds: no change.
    let claimed =
        json!([{"channel": room_json(2), "cid": "page"}, {"channel": room_json(3), "cid": "page"}]);
    let again = srv.navigate(&t, "/r/2,3", &claimed);
    assert_eq!(again.ok()["receipts"], json!({"adds": [], "drops": []}));

    thread::sleep(Duration::from_millis(20)); // a few more ticks after the navigation
    stop.send(()).unwrap();
    let ticks = feeder.join().unwrap();
    srv.hub
        .broadcast_action("{:room, 1}", "left_room", &json!({}))
        .unwrap();
    srv.hub
        .broadcast_action("{:room, 3}", "new_room", &json!({}))
        .unwrap();
    srv.hub
        .broadcast_action("{:room, 2}", "end", &json!({}))
        .unwrap();

    let mut next_tick = 1;
    let rest = loop {
        let data = match stream.next_message(WAIT) {
            Next::Event(ev) if ev.name == "broadcast" => ev.json(),
            other => panic!("after tick {next_tick} of {ticks}: {other:?}"),
        };
        if data["action"] != "tick" {
            break data;
        }
        assert_eq!(data["params"]["n"], next_tick, "ticks arrive without a gap");
        assert_eq!(data["cids"], json!(["page"]));
        next_tick += 1;
    };
    assert_eq!(next_tick, ticks, "every tick arrived");
    assert_eq!(
        rest["action"], "new_room",
        "room 1 was dropped, room 3 added"
    );
    assert_eq!(stream.actions_until("end"), no_actions());
}

// -- 5. bad receipts ----------------------------------------------------------

/// A receipt for `channel` on cid `page` signed with the hub's secret at `at`.
fn craft_receipt(peer: &Peer, channel: &str, at: Millis) -> String {
    let mut router = Router::new(support::RECEIPT_SECRET, RouterConfig::default());
    let mut fx = Effects::init(peer, Cid::PAGE);
    fx.put_subscription(channel).unwrap();
    let committed = router.commit_page(at, peer, vec![fx], &[]).unwrap();
    committed.receipt_adds[0].token.clone()
}

/// Changes one character in the middle of a token.
fn tamper(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn forged_expired_foreign_and_wrong_user_receipts_are_rejected_by_the_handshake() {
    let srv = start();
    let t = srv.load("/r/1", None);
    let other = srv.load("/r/7", Some(&t.cookie)); // same session, another tab
    let peer = Peer {
        instance: t.instance_id(),
        session: srv.session_of(&t),
        user: None,
    };
    let now = now_ms();
    let fresh = craft_receipt(&peer, "{:room, 5}", now - HOUR_MS);
    let expired = craft_receipt(&peer, "{:room, 6}", now - 73 * HOUR_MS);
    let someone = Peer {
        user: Some(UserId::str("someone")),
        ..peer.clone()
    };
    let wrong_user = craft_receipt(&someone, "{:room, 8}", now);
    let good = t.tokens()[0].clone();
    let forged = tamper(&good);
    let foreign = other.tokens()[0].clone();

    for (what, bad) in [
        ("forged", &forged),
        ("expired", &expired),
        ("another instance's", &foreign),
        ("another user's", &wrong_user),
    ] {
        let hs = srv.handshake(&t, std::slice::from_ref(bad));
        assert_eq!(
            hs.receipts,
            Vec::<Value>::new(),
            "the {what} receipt was accepted"
        );
    }
    let hs = srv.handshake(&t, &[forged, foreign, expired, fresh, wrong_user, good]);
    assert_eq!(
        keys_of(&hs.receipts),
        json!([{"channel": room_json(5), "cid": "page"}, {"channel": room_json(1), "cid": "page"}]),
        "only the valid receipts, in input order"
    );

    let mut stream = srv.open(&t, &hs.id).expect("the stream opens");
    for n in [7, 6, 8, 5] {
        srv.hub
            .broadcast_action(room(n), &format!("to_{n}"), &json!({}))
            .unwrap();
    }
    srv.hub
        .broadcast_action("{:room, 1}", "marker", &json!({}))
        .unwrap();
    assert_eq!(stream.actions_until("marker"), ["to_5"]);
}

// -- 6. handshake ids ---------------------------------------------------------

#[test]
fn a_replayed_or_foreign_handshake_id_is_rejected() {
    let srv = start();
    let t = srv.load("/r/1", None);
    let other = srv.load("/r/1", None);
    let hs = srv.handshake(&t, &t.tokens());
    let mut stream = srv
        .open(&t, &hs.id)
        .expect("the first use opens the stream");

    let replay = srv.open(&t, &hs.id).err().expect("a replay is refused");
    replay.assert_error(400, "bad_request");
    assert!(replay.text.contains("handshake"), "{}", replay.text);

    // Another tab's handshake id is refused, and spent by the attempt.
    let theirs = srv.handshake(&other, &other.tokens());
    srv.open(&t, &theirs.id)
        .err()
        .expect("another instance's handshake id is refused")
        .assert_error(400, "bad_request");
    srv.open(&other, &theirs.id)
        .err()
        .expect("a refused handshake id is spent")
        .assert_error(400, "bad_request");
    // Not a UUID at all.
    EventStream::open(srv.addr, Some(&t.cookie), &events_path(&t.instance, "nope"))
        .err()
        .expect("a malformed handshake id is refused")
        .assert_error(400, "bad_request");

    // The first stream is untouched.
    srv.hub
        .broadcast_action("{:room, 1}", "still_here", &json!({}))
        .unwrap();
    stream.expect_broadcast("still_here");
}

#[test]
fn an_expired_handshake_id_is_rejected() {
    let srv = TestServer::start(TestApp, |hub, _| hub.router.handshake_ttl = 100);
    let t = srv.load("/r/1", None);
    let hs = srv.handshake(&t, &t.tokens());
    thread::sleep(Duration::from_millis(250));
    srv.open(&t, &hs.id)
        .err()
        .expect("an expired handshake id is refused")
        .assert_error(400, "bad_request");
    // A fresh one works.
    let _stream = srv.connect(&t);
}

// -- 7. parked commands -------------------------------------------------------

#[test]
fn a_command_before_attach_is_parked_and_applied_on_attach() {
    let srv = start();
    let p = srv.load("/r/1", None);
    let b = srv.load("/r/1", None);
    let mut sb = srv.connect(&b);
    let hs = srv.handshake(&p, &p.tokens());

    let resp = thread::scope(|s| {
        let early = s.spawn(|| {
            srv.command(
                &p,
                "page",
                "say",
                &json!({"action": "early", "params": {"k": 1}}),
            )
        });
        thread::sleep(Duration::from_millis(150));
        assert!(
            !early.is_finished(),
            "the command waits for the stream (parked)"
        );
        let _sp = srv.open(&p, &hs.id).expect("the stream opens");
        early.join().unwrap()
    });
    assert_eq!(
        resp.ok(),
        &json!({
            "action": {"action": "said", "params": {}, "cid": "page"},
            "self_echoes": [{"action": "early", "params": {"k": 1}, "cid": "page"}],
            "receipts": {"adds": [], "drops": []},
        })
    );
    assert_eq!(
        sb.expect("broadcast"),
        json!({"action": "early", "params": {"k": 1}, "cids": ["page"]})
    );
}

#[test]
fn a_parked_command_whose_stream_never_attaches_fails_after_the_park_ttl() {
    let srv = TestServer::start(TestApp, |hub, _| hub.router.park_ttl = 300);
    let p = srv.load("/r/1", None);
    let b = srv.load("/r/1", None);
    let mut sb = srv.connect(&b);
    let started = Instant::now();
    let resp = srv.command(&p, "page", "say", &json!({"action": "never"}));
    let waited = started.elapsed();
    resp.assert_error(409, "not_connected");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "answered after {waited:?}, expected about the 300 ms park TTL"
    );
    srv.hub
        .broadcast_action("{:room, 1}", "marker", &json!({}))
        .unwrap();
    assert_eq!(
        sb.actions_until("marker"),
        no_actions(),
        "the expired command never ran"
    );
}

// -- 8. heartbeats ------------------------------------------------------------

#[test]
fn heartbeat_events_arrive_at_the_configured_interval() {
    let srv = start(); // 200 ms heartbeat
    let t = srv.load("/r/1", None);
    let mut stream = srv.connect(&t);
    let started = Instant::now();
    let mut beats = Vec::new();
    while beats.len() < 6 {
        match stream.next_event(WAIT) {
            Next::Event(ev) => beats.push(ev),
            other => panic!("after {} heartbeats: {other:?}", beats.len()),
        }
    }
    let span = started.elapsed();
    assert_eq!(stream.retry, Some(1000), "the retry hint comes first");
    for (i, ev) in beats.iter().enumerate() {
        assert_eq!((ev.name.as_str(), ev.data.as_str()), ("heartbeat", "{}"));
        assert_eq!(ev.id, Some(i as u64 + 1), "ids count the stream's events");
    }
    // Six beats span at least five intervals (1 s); at the 15 s default
    // they would take over a minute.
    assert!(
        span >= Duration::from_millis(900) && span < Duration::from_secs(10),
        "6 heartbeats took {span:?} at a 200 ms interval"
    );
}

// -- 9. slow consumers --------------------------------------------------------

#[test]
fn a_slow_reader_is_disconnected_without_stalling_others() {
    let srv = TestServer::start_alone(TestApp, |hub, sse| {
        sse.outbound_queue = 8;
        hub.heartbeat = Duration::from_secs(60);
        hub.router.park_ttl = 200;
    });
    let healthy = srv.load("/r/1", None);
    let slow = srv.load("/r/1", None);
    let mut healthy_stream = srv.connect(&healthy);
    let mut slow_stream = srv.connect(&slow); // and then not read for a while

    let (tx, rx) = mpsc::channel::<u64>();
    let reader = thread::spawn(move || {
        loop {
            let data = match healthy_stream.next_message(Duration::from_secs(10)) {
                Next::Event(ev) if ev.name == "broadcast" => ev.json(),
                other => panic!("the healthy stream: {other:?}"),
            };
            if data["action"] == "end" {
                return healthy_stream;
            }
            tx.send(data["params"]["n"].as_u64().unwrap()).unwrap();
        }
    });

    let blob = "x".repeat(16 * 1024);
    let (mut sent, mut received, mut slowest) = (0u64, 0u64, Duration::ZERO);
    loop {
        // At most four broadcasts in flight to the healthy tab (its queue holds eight).
        while sent - received >= 4 {
            let waited = Instant::now();
            let n = rx.recv_timeout(WAIT).expect("the healthy tab stalled");
            assert_eq!(n, received, "the healthy tab gets every broadcast in order");
            received += 1;
            slowest = slowest.max(waited.elapsed());
        }
        srv.hub
            .broadcast_action("{:room, 1}", "big", &json!({"n": sent, "blob": blob}))
            .unwrap();
        sent += 1;
        // Parked (then expired) instead of run: the slow tab was detached.
        if sent % 32 == 0 && srv.command(&slow, "page", "ping", &json!({})).status == 409 {
            break;
        }
        assert!(
            sent < 4096,
            "the slow tab was never disconnected ({sent} broadcasts of 16 KiB)"
        );
    }
    srv.hub
        .broadcast_action("{:room, 1}", "end", &json!({}))
        .unwrap();
    let mut healthy_stream = reader.join().expect("the healthy reader");
    let rest: Vec<u64> = rx.try_iter().collect();
    assert_eq!(rest, (received..sent).collect::<Vec<_>>());
    assert!(
        slowest < Duration::from_secs(2),
        "the healthy tab waited {slowest:?}"
    );

    // The slow tab now reads: a prefix of the broadcasts, then the end.
    let events = slow_stream.read_to_end(WAIT);
    assert!(slow_stream.clean_end, "the stream ends with the last chunk");
    let got: Vec<u64> = events
        .iter()
        .filter(|e| e.name == "broadcast")
        .map(|e| e.json()["params"]["n"].as_u64().unwrap())
        .collect();
    assert!(
        (got.len() as u64) < sent && got.iter().copied().eq(0..got.len() as u64),
        "the slow tab got {} of {sent} broadcasts, in order from the first",
        got.len()
    );

    eprintln!(
        "slow reader: disconnected within {sent} broadcasts of 16 KiB, got {} before the end; \
         the healthy tab waited at most {slowest:?}",
        got.len()
    );

    // It reconnects with its receipts and is served again.
    let mut back = srv.connect(&slow);
    srv.hub
        .broadcast_action("{:room, 1}", "again", &json!({}))
        .unwrap();
    back.expect_broadcast("again");
    healthy_stream.expect_broadcast("again");
}

// -- 10. a thousand streams ---------------------------------------------------

/// Raises this process's soft `RLIMIT_NOFILE` to at least `needed` (up to the
/// hard limit) with `prlimit(1)`; std has no setrlimit and this crate forbids
/// unsafe code.
fn ensure_fd_limit(needed: u64) {
    fn read_limits() -> (u64, u64) {
        let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("an open files line");
        let mut nums = line["Max open files".len()..]
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(u64::MAX));
        (nums.next().unwrap(), nums.next().unwrap())
    }
    let (soft, hard) = read_limits();
    if soft >= needed {
        return;
    }
    let target = needed.max(soft).min(hard);
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={target}:"))
        .status();
    let (now, _) = read_limits();
    assert!(
        now >= needed,
        "this test needs {needed} file descriptors; the soft limit is {soft} (hard {hard}) and \
         raising it with prlimit gave {status:?}: raise `ulimit -n` where the tests run"
    );
}

#[test]
fn a_thousand_streams_opened_at_once_are_all_streaming_within_five_seconds() {
    const CLIENTS: usize = 1000;
    // Each stream: the client socket, the server's socket and its clone, plus slack.
    ensure_fd_limit(3 * CLIENTS as u64 + 512);
    let srv = TestServer::start_alone(TestApp, |_, _| {}); // 200 ms heartbeat

    // Page loads (one session each) and handshakes, beforehand.
    let prepared: Vec<(String, String)> = thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..CLIENTS / 4)
                        .map(|_| {
                            let tab = srv.load("/r/1", None);
                            let hs = srv.handshake(&tab, &tab.tokens());
                            (tab.cookie.clone(), events_path(&tab.instance, &hs.id))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    let sockets: Vec<_> = prepared
        .iter()
        .map(|(cookie, path)| EventStream::send_request(srv.addr, Some(cookie), path))
        .collect();
    let connected = started.elapsed();
    let mut streams = Vec::with_capacity(CLIENTS);
    let mut failures = Vec::new();
    for (i, sock) in sockets.into_iter().enumerate() {
        match EventStream::read_head(sock, deadline) {
            Ok(mut s) => {
                match s.next_event(deadline.saturating_duration_since(Instant::now())) {
                    Next::Event(ev) if ev.name == "heartbeat" || ev.name == "broadcast" => {}
                    other => failures.push(format!("stream {i}: {other:?}")),
                }
                streams.push(s);
            }
            Err(r) => failures.push(format!("stream {i}: {} {}", r.status, r.text)),
        }
    }
    let all = started.elapsed();
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} streams were not streaming within 5 s (all connected after {connected:?}): {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(all < Duration::from_secs(5), "took {all:?}");
    eprintln!(
        "{CLIENTS} streams: connected in {connected:?}, all streaming after {all:?}; {fds} fds open"
    );
}

// -- 11. errors ---------------------------------------------------------------

#[test]
fn bad_requests_get_typed_errors_and_failed_handlers_commit_nothing() {
    quiet_planned_panics();
    let srv = start();
    let t = srv.load("/r/1", None);
    let w = srv.load("/r/1", None); // a witness in another session
    let mut st = srv.connect(&t);
    let mut sw = srv.connect(&w);
    let cmd = |name: &str| json!({"instance_id": t.instance, "target": "page", "name": name, "params": {}});

    // No or forged session cookie → 401.
    srv.post("/tidings/command", None, &cmd("say"))
        .assert_error(401, "unauthorized");
    srv.post(
        "/tidings/handshake",
        None,
        &json!({"instance_id": t.instance, "receipts": []}),
    )
    .assert_error(401, "unauthorized");
    srv.post(
        "/tidings/command",
        Some("tidings_session=e30.AAAA"),
        &cmd("say"),
    )
    .assert_error(401, "unauthorized");
    let hs = srv.handshake(&t, &[]);
    EventStream::open(srv.addr, None, &events_path(&t.instance, &hs.id))
        .err()
        .expect("no cookie, no stream")
        .assert_error(401, "unauthorized");

    // Malformed, mistyped or unknown input → 400.
    for body in [
        r#"{"instance_id": "#.to_owned(),
        "[]".to_owned(),
        json!({"instance_id": t.instance, "target": "page", "name": "say"}).to_string(),
        json!({"instance_id": "42", "target": "page", "name": "say", "params": {}}).to_string(),
        json!({"instance_id": t.instance, "target": "page", "name": "say", "params": {}, "extra": 1})
            .to_string(),
        json!({"instance_id": t.instance, "target": "page", "name": "say", "params": [1]}).to_string(),
    ] {
        srv.post_raw("/tidings/command", Some(&t.cookie), &body)
            .assert_error(400, "bad_request");
    }

    // Wrong method, oversize body, no such page.
    srv.post("/tidings/events", Some(&t.cookie), &json!({}))
        .assert_error(405, "method_not_allowed");
    let huge = format!(r#"{{"pad": "{}"}}"#, "x".repeat(1 << 20));
    srv.post_raw("/tidings/command", Some(&t.cookie), &huge)
        .assert_error(413, "body_too_large");
    srv.get("/nowhere", Some(&t.cookie))
        .assert_error(404, "not_found");

    srv.command(&t, "page", "dance", &json!({}))
        .assert_error(404, "unknown_command");
    srv.command(&t, "page", "panic", &json!({}))
        .assert_error(500, "handler_panicked");
    srv.command(&t, "page", "fail", &json!({}))
        .assert_error(422, "refused");
    srv.command(&t, "page", "bad_params", &json!({}))
        .assert_error(500, "bad_params");

    // Another session may not drive this tab.
    let mut impostor = t.clone();
    impostor.cookie.clone_from(&w.cookie);
    srv.command(&impostor, "page", "say", &json!({}))
        .assert_error(403, "forbidden");
    srv.navigate(&impostor, "/r/2", &json!([]))
        .assert_error(403, "forbidden");
    let hs = srv.handshake(&impostor, &[]);
    srv.open(&impostor, &hs.id)
        .err()
        .expect("no second stream from another session")
        .assert_error(403, "forbidden");

    // Nothing leaked, and the hub still works.
    let after = srv.command(&t, "page", "say", &json!({"action": "after"}));
    assert_eq!(after.ok()["self_echoes"][0]["action"], "after");
    assert_eq!(sw.actions_until("after"), no_actions());
    srv.hub
        .broadcast_action("{:room, 1}", "marker", &json!({}))
        .unwrap();
    assert_eq!(st.actions_until("marker"), no_actions());
}

// -- 12. the immediate API ----------------------------------------------------

#[test]
fn broadcast_action_from_another_thread_reaches_tabs_and_invalid_channels_fail_synchronously() {
    let srv = start();
    let a = srv.load("/r/4", None);
    let b = srv.load("/r/4,5", None);
    let mut sa = srv.connect(&a);
    let mut sb = srv.connect(&b);

    let hub = srv.hub.clone();
    thread::spawn(move || hub.broadcast_action("{:room, 4}", "from_thread", &json!({"k": [1, 2]})))
        .join()
        .unwrap()
        .expect("a valid broadcast is queued");
    let expected = json!({"action": "from_thread", "params": {"k": [1, 2]}, "cids": ["page"]});
    assert_eq!(sa.expect("broadcast"), expected);
    assert_eq!(sb.expect("broadcast"), expected);

    let invalid = |r: Result<(), HubError>| match r {
        Err(HubError::Invalid(e)) => e.to_string(),
        other => panic!("expected HubError::Invalid, got {other:?}"),
    };
    let message = invalid(srv.hub.broadcast_action("{:room}", "x", &json!({})));
    assert_eq!(
        message,
        "channel tuple must have at least 2 elements; got 1-tuple {:room}"
    );
    let message = invalid(srv.hub.broadcast_action(r#""room-4""#, "x", &json!({})));
    assert!(
        message.starts_with("channel must be a bare atom or tagged tuple"),
        "{message}"
    );
    invalid(srv.hub.broadcast_action("{:room, 1.5}", "x", &json!({})));
    invalid(srv.hub.broadcast_action("{:room, 4}", "", &json!({})));
    invalid(
        srv.hub
            .broadcast_action_except(&[], "{:room, [4]}", "x", &json!({})),
    );
    invalid(
        srv.hub
            .subscribe(Identity::Session(srv.session_of(&a)), "{:room,", Cid::PAGE),
    );
    invalid(
        srv.hub
            .unsubscribe(Identity::User(UserId::int(1)), "{}", Cid::PAGE),
    );
    invalid(srv.hub.unsubscribe_all(Identity::User(UserId::int(1)), ""));

    srv.hub
        .broadcast_action("{:room, 4}", "marker", &json!({}))
        .unwrap();
    assert_eq!(sa.actions_until("marker"), no_actions());
    assert_eq!(sb.actions_until("marker"), no_actions());
}

// -- beyond the list ----------------------------------------------------------

#[test]
fn a_stream_outlives_the_servers_read_timeout() {
    // The read timeout frees idle keep-alive connections; a stream's client
    // never sends again, and its stream must go on regardless.
    let srv = TestServer::start(TestApp, |_, sse| {
        sse.server.read_timeout = Duration::from_millis(200);
    });
    let t = srv.load("/r/1", None);
    let mut stream = srv.connect(&t);
    // Well past the read timeout, heartbeats keep coming.
    let until = Instant::now() + Duration::from_secs(1);
    let mut beats = 0;
    while beats < 4 || Instant::now() < until {
        match stream.next_event(WAIT) {
            Next::Event(ev) if ev.name == "heartbeat" => beats += 1,
            other => panic!("after {beats} heartbeats: {other:?}"),
        }
    }
    srv.hub
        .broadcast_action("{:room, 1}", "still_open", &json!({}))
        .unwrap();
    stream.expect_broadcast("still_open");
}

#[test]
fn receipts_are_refreshed_on_the_stream_at_the_refresh_interval() {
    let srv = TestServer::start(TestApp, |hub, _| {
        hub.router.refresh_interval = 300;
        hub.heartbeat = Duration::from_secs(60);
    });
    let t = srv.load("/r/1,2", None);
    let mut stream = srv.connect(&t);
    let started = Instant::now();
    let refreshed = stream.expect("refresh_sub_receipts");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "refreshed after {waited:?}"
    );
    let refreshed = refreshed.as_array().unwrap().clone();
    assert_eq!(keys_of(&refreshed), keys_of(&t.receipts));
    // The refreshed tokens are good for the next reconnect.
    let hs = srv.handshake(&t, &tokens(&refreshed));
    assert_eq!(keys_of(&hs.receipts), keys_of(&t.receipts));
}

#[test]
fn shutdown_ends_every_stream_cleanly() {
    let mut srv = start();
    let mut streams: Vec<_> = (0..3)
        .map(|_| srv.connect(&srv.load("/r/1", None)))
        .collect();
    srv.shutdown();
    for s in &mut streams {
        let events = s.read_to_end(WAIT);
        assert!(events.iter().all(|e| e.name == "heartbeat"), "{events:?}");
        assert!(s.clean_end, "the stream ends with the last chunk");
    }
}

// Was a bug: a parked command held an HTTP worker for the whole park TTL, so
// as many commands for unattached (e.g. made-up) instances as there are
// workers stalled every other request, including the handshakes that would
// attach them. Parked commands are now answered off the workers.
#[test]
fn parked_commands_do_not_starve_other_requests() {
    let srv = TestServer::start(TestApp, |hub, _| hub.router.park_ttl = 1500);
    let t = srv.load("/r/1", None);
    let workers = SseConfig::new("127.0.0.1:0".parse().unwrap()).workers;
    thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                // Any session can name an instance that never attaches.
                let mut bogus = t.clone();
                bogus.instance = InstanceId::mint(&mut OsEntropy).to_string();
                srv.command(&bogus, "page", "ping", &json!({}))
                    .assert_error(409, "not_connected");
            });
        }
        thread::sleep(Duration::from_millis(100)); // let them park
        let started = Instant::now();
        let hs = srv.handshake(&t, &t.tokens());
        let _stream = srv.open(&t, &hs.id).expect("the stream opens");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "a handshake and a stream open took {took:?} while {workers} commands were parked"
        );
    });
}

// Was a bug: when the hub stopped, messages still queued in its inbox kept
// their reply senders alive, so a second shutdown() and every HTTP request
// queued behind the Shutdown waited forever. The hub now drains its inbox.
#[test]
fn calls_queued_behind_a_shutdown_are_answered() {
    let srv = start();
    let t = srv.load("/r/1", None);
    let _stream = srv.connect(&t);
    let (tx, rx) = mpsc::channel::<String>();
    // The slow command holds the hub while a shutdown and then two more
    // calls queue up behind it.
    let slow = thread::scope(|s| {
        let busy = s.spawn(|| srv.command(&t, "page", "slow", &json!({"ms": 400})));
        thread::sleep(Duration::from_millis(100));
        let hub = srv.hub.clone();
        let first = thread::spawn(move || hub.shutdown());
        thread::sleep(Duration::from_millis(100));
        let (hub, done) = (srv.hub.clone(), tx.clone());
        thread::spawn(move || {
            hub.shutdown();
            let _ = done.send("second shutdown returned".into());
        });
        let (addr, cookie, done) = (srv.addr, t.cookie.clone(), tx.clone());
        let path = events_path(&t.instance, "00000000-0000-4000-8000-000000000000");
        thread::spawn(move || {
            // Any HTTP answer will do (a 503 most likely); none is the bug.
            let status = match EventStream::open(addr, Some(&cookie), &path) {
                Ok(_) => 200,
                Err(r) => r.status,
            };
            let _ = done.send(format!("queued request answered: {}", status != 0));
        });
        first.join().unwrap();
        busy.join().unwrap()
    });
    assert_eq!(slow.status, 200, "the slow command ran: {}", slow.text);
    let mut answered: Vec<String> = (0..2)
        .filter_map(|_| rx.recv_timeout(Duration::from_secs(2)).ok())
        .collect();
    answered.sort_unstable();
    assert_eq!(
        answered,
        ["queued request answered: true", "second shutdown returned"],
        "calls queued behind the shutdown must return"
    );
}
