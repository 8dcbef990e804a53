//! The sans-IO Phoenix socket: P§1.3 and the checklist P§10 items it owns
//! (heartbeat, join_ref discipline, duplicate join, leave, unmatched
//! topics, channel limit, presence and broadcast pushes), without a hub.

use std::sync::Arc;

use serde_json::{Value, json};
use tidings_core::SeededEntropy;
use tidings_ws::frame::{FrameIn, Vsn};
use tidings_ws::server::socket::{
    OutFrame, PhoenixSocket, ReplyTo, Request, SharedFrame, SocketConfig, Step, UserPayload, WsOut,
};
use tidings_ws::server::topic::TopicKind;

struct T {
    socket: PhoenixSocket,
    e: SeededEntropy,
}

impl T {
    fn new(vsn: Vsn) -> Self {
        Self::with(vsn, SocketConfig::default())
    }

    fn with(vsn: Vsn, config: SocketConfig) -> Self {
        Self {
            socket: PhoenixSocket::new(vsn, config, 0),
            e: SeededEntropy::new(3),
        }
    }

    fn send(&mut self, frame: &Value) -> Vec<Step> {
        let mut out = Vec::new();
        let text = frame.to_string();
        self.socket
            .handle(1, FrameIn::Text(&text), &mut self.e, &mut out)
            .expect("the frame decodes");
        out
    }
}

/// The frames sent, as JSON, and the requests, in order.
fn split(steps: Vec<Step>) -> (Vec<Value>, Vec<Request>) {
    let mut frames = Vec::new();
    let mut reqs = Vec::new();
    for s in steps {
        match s {
            Step::Send(OutFrame::Text(t)) => frames.push(serde_json::from_str(&t).unwrap()),
            Step::Send(OutFrame::Close(c)) => frames.push(json!(["close", c])),
            Step::Send(OutFrame::Binary(b)) => frames.push(json!(["binary", b.to_vec()])),
            Step::Hub(r) => reqs.push(*r),
        }
    }
    (frames, reqs)
}

fn join(t: &mut T, jr: &str, topic: &str, payload: &Value) -> Vec<Request> {
    let (frames, reqs) = split(t.send(&json!([jr, jr, topic, "phx_join", payload])));
    assert!(
        frames.is_empty(),
        "a join is answered by the hub: {frames:?}"
    );
    reqs
}

fn to(topic: &str, jr: &str, r: &str) -> ReplyTo {
    ReplyTo {
        topic: Arc::from(topic),
        join_ref: Some(jr.into()),
        msg_ref: Some(r.into()),
    }
}

#[test]
fn heartbeats_are_answered_in_both_versions() {
    let mut v2 = T::new(Vsn::V2);
    let (frames, _) = split(v2.send(&json!([null, "9", "phoenix", "heartbeat", {}])));
    assert_eq!(
        frames,
        [json!([null, "9", "phoenix", "phx_reply", {"status": "ok", "response": {}}])]
    );
    let mut v1 = T::new(Vsn::V1);
    let (frames, _) = split(
        v1.send(&json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "9"})),
    );
    assert_eq!(
        frames,
        [json!({"topic": "phoenix", "event": "phx_reply", "ref": "9",
                "payload": {"status": "ok", "response": {}}})],
        "V1 never carries join_ref"
    );
}

#[test]
fn a_join_asks_the_hub_with_the_supabase_config_and_a_presence_key() {
    let mut t = T::new(Vsn::V2);
    let reqs = join(
        &mut t,
        "6",
        "realtime:room1",
        &json!({"config": {"broadcast": {"self": true}, "presence": {"key": ""}}, "access_token": "jwt"}),
    );
    let [
        Request::Join {
            to: reply_to,
            kind,
            config,
            presence_key,
            ..
        },
    ] = &reqs[..]
    else {
        panic!("one join request: {reqs:?}");
    };
    assert_eq!(*reply_to, to("realtime:room1", "6", "6"));
    assert!(matches!(kind, TopicKind::Realtime(ch) if ch.to_string() == r#"{:realtime, "room1"}"#));
    assert!(config.broadcast.self_.0 && !config.broadcast.ack.0);
    assert_eq!(config.access_token.as_deref(), Some("jwt"));
    assert_eq!(presence_key.len(), 36, "an empty key gets a generated id");
}

#[test]
fn unmatched_and_invalid_topics_are_refused_locally() {
    let mut t = T::new(Vsn::V2);
    let (frames, reqs) = split(t.send(&json!(["1", "1", "rooms:1", "phx_join", {}])));
    assert!(reqs.is_empty());
    assert_eq!(
        frames,
        [json!([null, "1", "rooms:1", "phx_reply",
                {"status": "error", "response": {"reason": "unmatched topic"}}])]
    );
    let (frames, _) = split(t.send(&json!(["2", "2", "realtime:", "phx_join", {}])));
    assert_eq!(
        frames[0][4]["response"]["reason"],
        "TopicNameRequired: You must provide a topic name"
    );
    let (frames, _) = split(t.send(&json!([null, "3", "realtime:x", "broadcast", {}])));
    assert_eq!(
        frames,
        [json!([null, "3", "realtime:x", "phx_reply",
                {"status": "error", "response": {"reason": "unmatched topic"}}])],
        "a push to an unjoined topic"
    );
    let (frames, reqs) = split(t.send(&json!(["4", "5", "realtime:x", "phx_leave", {}])));
    assert!(reqs.is_empty());
    assert_eq!(frames[0][4], json!({"status": "ok", "response": {}}));
}

#[test]
fn a_duplicate_join_closes_the_old_join_ref_first() {
    let mut t = T::new(Vsn::V2);
    join(&mut t, "6", "realtime:room1", &json!({}));
    let (frames, reqs) = split(t.send(&json!(["9", "9", "realtime:room1", "phx_join", {}])));
    assert_eq!(
        frames,
        [json!(["6", "6", "realtime:room1", "phx_close", {}])]
    );
    assert!(matches!(
        &reqs[..],
        [Request::Leave { .. }, Request::Join { .. }]
    ));
}

#[test]
fn stale_join_refs_are_dropped_and_current_ones_delivered() {
    let mut t = T::new(Vsn::V2);
    join(
        &mut t,
        "6",
        "realtime:r",
        &json!({"config": {"broadcast": {"ack": true}}}),
    );
    let bc = json!({"type": "broadcast", "event": "e", "payload": {"a": 1}});
    assert!(
        t.send(&json!(["5", "7", "realtime:r", "broadcast", bc]))
            .is_empty()
    );
    let (_, reqs) = split(t.send(&json!(["6", "8", "realtime:r", "broadcast", bc])));
    assert_eq!(
        reqs,
        [Request::Broadcast {
            channel: tidings_ws::server::topic::realtime_channel("r").unwrap(),
            event: "e".into(),
            payload: UserPayload::Json(r#"{"a":1}"#.into()),
            self_: false,
            ack: Some(to("realtime:r", "6", "8")),
        }]
    );
    let (_, reqs) = split(t.send(&json!([null, "9", "realtime:r", "broadcast", bc])));
    assert_eq!(reqs.len(), 1, "a null join_ref is accepted");
}

#[test]
fn leave_replies_then_closes_and_tells_the_hub() {
    let mut t = T::new(Vsn::V2);
    join(&mut t, "6", "realtime:r", &json!({}));
    let (frames, reqs) = split(t.send(&json!(["6", "11", "realtime:r", "phx_leave", {}])));
    assert_eq!(
        frames,
        [
            json!(["6", "11", "realtime:r", "phx_reply", {"status": "ok", "response": {}}]),
            json!(["6", "6", "realtime:r", "phx_close", {}]),
        ]
    );
    assert!(matches!(&reqs[..], [Request::Leave { .. }]));
    assert_eq!(t.socket.joined(), 0);
}

#[test]
fn the_channel_limit_refuses_the_next_join() {
    let mut t = T::with(
        Vsn::V2,
        SocketConfig {
            max_channels: 2,
            ..SocketConfig::default()
        },
    );
    join(&mut t, "1", "realtime:a", &json!({}));
    join(&mut t, "2", "realtime:b", &json!({}));
    let (frames, reqs) = split(t.send(&json!(["3", "3", "realtime:c", "phx_join", {}])));
    assert!(reqs.is_empty());
    assert_eq!(frames[0][4]["status"], "error");
    assert!(
        frames[0][4]["response"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("ChannelRateLimitReached:")
    );
}

#[test]
fn presence_pushes_need_a_map_and_name_the_joins_key() {
    let mut t = T::new(Vsn::V2);
    join(
        &mut t,
        "1",
        "realtime:r",
        &json!({"config": {"presence": {"key": "u1"}}}),
    );
    let (frames, _) = split(t.send(&json!(["1", "2", "realtime:r", "presence",
        {"type": "presence", "event": "track", "payload": 5}])));
    assert_eq!(
        frames[0][4]["response"]["reason"],
        "Presence track payload must be a map"
    );
    let (_, reqs) = split(t.send(&json!(["1", "3", "realtime:r", "presence",
        {"type": "presence", "event": "track", "payload": {"n": 1}}])));
    assert!(
        matches!(&reqs[..], [Request::Track { key, payload, .. }] if key == "u1" && payload == r#"{"n":1}"#)
    );
}

#[test]
fn access_tokens_are_forwarded_once_and_sb_keys_ignored() {
    let mut t = T::new(Vsn::V2);
    join(&mut t, "1", "realtime:r", &json!({"access_token": "t1"}));
    let tok = |t: &mut T, v: &str| {
        split(t.send(&json!(["1", "5", "realtime:r", "access_token", {"access_token": v}]))).1
    };
    assert!(tok(&mut t, "t1").is_empty(), "the same token again");
    assert!(tok(&mut t, "sb_publishable").is_empty());
    assert!(
        matches!(&tok(&mut t, "t2")[..], [Request::AccessToken { token, .. }] if token == "t2")
    );
    assert!(tok(&mut t, "t2").is_empty());
}

#[test]
fn rendering_uses_the_current_join_ref_and_forgets_refused_joins() {
    let mut t = T::new(Vsn::V2);
    join(&mut t, "6", "realtime:r", &json!({}));
    let push = WsOut::push(Arc::from("realtime:r"), "presence_state", Arc::from("{}"));
    assert_eq!(
        t.socket.render(&push),
        Some(OutFrame::Text(
            r#"["6",null,"realtime:r","presence_state",{}]"#.into()
        ))
    );
    let shared = WsOut::Shared(Arc::new(SharedFrame::broadcast(
        Arc::from("realtime:r"),
        "e",
        "{}",
    )));
    assert_eq!(
        t.socket.render(&shared),
        Some(OutFrame::Text(
            r#"[null,null,"realtime:r","broadcast",{"type":"broadcast","event":"e","payload":{}}]"#
                .into()
        ))
    );
    let refused = WsOut::reply(
        to("realtime:r", "6", "6"),
        false,
        r#"{"reason":"Unauthorized: no"}"#.into(),
        true,
    );
    assert!(t.socket.render(&refused).is_some());
    assert_eq!(t.socket.joined(), 0, "a refused join is forgotten");
    assert_eq!(
        t.socket.render(&shared),
        None,
        "no fan-out for an unjoined topic"
    );
    assert_eq!(t.socket.render(&push), None);
}

#[test]
fn undecodable_frames_are_errors_and_change_nothing() {
    let mut t = T::new(Vsn::V2);
    join(&mut t, "6", "realtime:r", &json!({}));
    let mut out = Vec::new();
    for bad in [
        "",
        "{",
        "[1,2]",
        r#"{"topic":"x"}"#,
        "[null,null,5,\"e\",{}]",
    ] {
        assert!(
            t.socket
                .handle(2, FrameIn::Text(bad), &mut t.e, &mut out)
                .is_err(),
            "{bad}"
        );
    }
    assert!(out.is_empty());
    assert_eq!(t.socket.joined(), 1);
    assert!(
        t.socket
            .handle(2, FrameIn::Binary(&[9, 9]), &mut t.e, &mut out)
            .is_err()
    );
    assert_eq!(
        t.socket.deadline(),
        2 + 60_000,
        "any frame counts as activity"
    );
}

/// A kind-3 user broadcast: `[3, join_ref, ref, topic, event, meta lens…,
/// encoding]` then the fields and the payload.
fn kind3(jr: &str, r: &str, topic: &str, event: &str, encoding: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![
        3,
        jr.len() as u8,
        r.len() as u8,
        topic.len() as u8,
        event.len() as u8,
        0,
        encoding,
    ];
    for part in [jr, r, topic, event] {
        f.extend_from_slice(part.as_bytes());
    }
    f.extend_from_slice(payload);
    f
}

#[test]
fn binary_user_broadcasts_are_relayed_as_bytes_to_v2_sockets_only() {
    let mut t = T::new(Vsn::V2);
    join(
        &mut t,
        "6",
        "realtime:r",
        &json!({"config": {"broadcast": {"self": true}}}),
    );
    let frame = kind3("6", "8", "realtime:r", "bin", 0, &[0, 159, 255]);
    let mut out = Vec::new();
    t.socket
        .handle(2, FrameIn::Binary(&frame), &mut t.e, &mut out)
        .expect("a kind-3 frame decodes");
    let (frames, reqs) = split(out);
    assert!(frames.is_empty(), "no ack asked: {frames:?}");
    assert_eq!(
        reqs,
        [Request::Broadcast {
            channel: tidings_ws::server::topic::realtime_channel("r").unwrap(),
            event: "bin".into(),
            payload: UserPayload::Binary(vec![0, 159, 255]),
            self_: true,
            ack: None,
        }]
    );
    // Encoding 1 is JSON, as a text broadcast.
    let mut out = Vec::new();
    let frame = kind3("6", "9", "realtime:r", "js", 1, br#"{"a":1}"#);
    t.socket
        .handle(2, FrameIn::Binary(&frame), &mut t.e, &mut out)
        .expect("a kind-3 frame decodes");
    let (_, reqs) = split(out);
    assert!(matches!(
        &reqs[..],
        [Request::Broadcast { payload: UserPayload::Json(p), .. }] if p == r#"{"a":1}"#
    ));

    let shared = WsOut::Shared(Arc::new(SharedFrame::binary_broadcast(
        Arc::from("realtime:r"),
        "bin",
        &[0, 159, 255],
    )));
    let mut expected = vec![4, 10, 3, 0, 0];
    expected.extend_from_slice(b"realtime:rbin");
    expected.extend_from_slice(&[0, 159, 255]);
    assert_eq!(
        t.socket.render(&shared),
        Some(OutFrame::Binary(expected.into())),
        "V2: kind 4, encoding 0"
    );
    let mut v1 = T::new(Vsn::V1);
    let (frames, _) = split(v1.send(&json!({"join_ref": "1", "ref": "1", "topic": "realtime:r", "event": "phx_join", "payload": {}})));
    assert!(frames.is_empty());
    assert_eq!(v1.socket.joined(), 1);
    assert_eq!(
        v1.socket.render(&shared),
        None,
        "V1 sockets get no binary payloads"
    );
}
