//! The frame codec against frames observed from the real clients
//! (reference: phoenix-supabase-wire.md §1.2 and Appendix A).

use proptest::prelude::*;
use tidings_ws::frame::{
    FrameError, FrameIn, Inbound, Payload, Vsn, decode, decode_binary, decode_text, encode_text,
    encode_user_broadcast,
};

fn json(p: &Payload) -> &str {
    match p {
        Payload::Json(j) => j.get(),
        Payload::Binary(_) => panic!("expected JSON"),
    }
}

#[test]
fn realtime_js_v2_join_decodes() {
    let m = decode_text(
        Vsn::V2,
        r#"["6","6","realtime:room1","phx_join",{"config":{"broadcast":{"self":true,"ack":true},"presence":{"key":"u1","enabled":true},"postgres_changes":[{"event":"INSERT","schema":"public","table":"todos"}],"private":false}}]"#,
    )
    .unwrap();
    assert_eq!(m.join_ref.as_deref(), Some("6"));
    assert_eq!(m.msg_ref.as_deref(), Some("6"));
    assert_eq!(m.topic, "realtime:room1");
    assert_eq!(m.event, "phx_join");
    assert!(json(&m.payload).starts_with(r#"{"config":{"broadcast":{"self":true"#));
}

#[test]
fn v2_heartbeat_with_null_join_ref_and_extra_elements() {
    let m = decode_text(Vsn::V2, r#"[null,"10","phoenix","heartbeat",{}]"#).unwrap();
    assert_eq!(
        (m.join_ref, m.msg_ref.as_deref(), m.topic.as_str()),
        (None, Some("10"), "phoenix")
    );
    // The server decodes [join_ref, ref, topic, event, payload | _].
    let m = decode_text(Vsn::V2, r#"[null,null,"t","e",{},"extra"]"#).unwrap();
    assert_eq!(m.msg_ref, None);
}

#[test]
fn realtime_js_v1_heartbeat_decodes_without_join_ref() {
    let m = decode_text(
        Vsn::V1,
        r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"10"}"#,
    )
    .unwrap();
    assert_eq!(
        (m.join_ref, m.msg_ref.as_deref(), m.event.as_str()),
        (None, Some("10"), "heartbeat")
    );
    let m = decode_text(
        Vsn::V1,
        r#"{"topic":"t","event":"e","payload":[],"ref":null,"join_ref":"3"}"#,
    )
    .unwrap();
    assert_eq!((m.join_ref.as_deref(), m.msg_ref), (Some("3"), None));
}

#[test]
fn malformed_text_frames_are_typed_errors() {
    for (vsn, text) in [
        (Vsn::V2, "{}"),
        (Vsn::V2, r#"["1","2","t","e"]"#),
        (Vsn::V2, r#"[1,"2","t","e",{}]"#),
        (Vsn::V2, r#"["1","2",3,"e",{}]"#),
        (Vsn::V2, "not json"),
        (Vsn::V1, "[]"),
        (Vsn::V1, r#"{"topic":"t","event":"e","payload":{}}"#),
        (Vsn::V1, r#"{"topic":"t","payload":{},"ref":"1"}"#),
    ] {
        let err = decode_text(vsn, text).unwrap_err();
        assert!(matches!(err, FrameError::Text { .. }), "{text}: {err:?}");
        assert!(err.to_string().starts_with("invalid V"), "{err}");
    }
    let big = format!("[null,null,\"t\",\"e\",\"{}\"]", "x".repeat(1 << 20));
    assert!(matches!(
        decode_text(Vsn::V2, &big),
        Err(FrameError::TooLarge(_))
    ));
}

#[test]
fn realtime_js_kind_3_user_broadcast_decodes() {
    // Observed: send({type:'broadcast', event:'hello', payload:{msg:'hi'}}), join_ref "6", ref "7".
    let hex = "03 01 01 0e 05 00 01 36 37 72 65 61 6c 74 69 6d 65 3a 72 6f 6f 6d 31 68 65 6c 6c 6f 7b 22 6d 73 67 22 3a 22 68 69 22 7d";
    let bytes: Vec<u8> = hex
        .split(' ')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let Inbound::UserBroadcast(b) = decode_binary(&bytes).unwrap() else {
        panic!("kind 3")
    };
    assert_eq!(b.join_ref.as_deref(), Some("6"));
    assert_eq!(b.msg_ref.as_deref(), Some("7"));
    assert_eq!(b.topic, "realtime:room1");
    assert_eq!(b.user_event, "hello");
    assert_eq!(b.metadata, None);
    assert_eq!(json(&b.payload), r#"{"msg":"hi"}"#);
}

#[test]
fn phoenix_kind_0_binary_push_decodes() {
    // Observed: channel.push('binary_thing', new Uint8Array([1,2,3]).buffer).
    let mut bytes = vec![0x00, 0x01, 0x01, 0x0e, 0x0c, b'3', b'5'];
    bytes.extend_from_slice(b"realtime:room1binary_thing");
    bytes.extend_from_slice(&[1, 2, 3]);
    let Inbound::Message(m) = decode_binary(&bytes).unwrap() else {
        panic!("kind 0")
    };
    assert_eq!(
        (m.join_ref.as_deref(), m.msg_ref.as_deref()),
        (Some("3"), Some("5"))
    );
    assert_eq!(
        (m.topic.as_str(), m.event.as_str()),
        ("realtime:room1", "binary_thing")
    );
    assert_eq!(m.payload, Payload::Binary(vec![1, 2, 3]));
}

#[test]
fn bad_binary_frames_are_typed_errors() {
    assert_eq!(decode_binary(&[]), Err(FrameError::Truncated("kind")));
    assert_eq!(
        decode_binary(&[4, 1, 1, 0, 1, b't', b'e']),
        Err(FrameError::Kind(4))
    );
    assert_eq!(decode_binary(&[1]), Err(FrameError::Kind(1)));
    assert_eq!(
        decode_binary(&[0, 1, 1, 5, 1, b'a']),
        Err(FrameError::Truncated("ref"))
    );
    assert_eq!(
        decode_binary(&[3, 0, 0, 1, 1, 0, 2, b't', b'e']),
        Err(FrameError::Encoding(2))
    );
    assert_eq!(
        decode_binary(&[0, 0, 0, 1, 1, 0xff, b'e']),
        Err(FrameError::Utf8("topic"))
    );
    assert!(matches!(
        decode_binary(&[3, 0, 0, 1, 1, 0, 1, b't', b'e', b'{']),
        Err(FrameError::Json {
            field: "payload",
            ..
        })
    ));
    assert!(matches!(
        decode_binary(&[3, 0, 0, 1, 1, 1, 1, b't', b'e', b'x', b'{', b'}']),
        Err(FrameError::Json {
            field: "metadata",
            ..
        })
    ));
    assert_eq!(
        decode(Vsn::V1, FrameIn::Binary(&[0])),
        Err(FrameError::BinaryOnV1)
    );
}

#[test]
fn kind_4_matches_the_realtime_js_serializer_test() {
    // realtime-js test/serializer.test.ts: \x04\x03\x0a\x11\x01 top user-event {"replayed":true} {"a":"b"}
    let frame = encode_user_broadcast(
        "top",
        "user-event",
        Some(r#"{"replayed":true}"#),
        &Payload::json(r#"{"a":"b"}"#).unwrap(),
    )
    .unwrap();
    let mut expected = vec![0x04, 0x03, 0x0a, 0x11, 0x01];
    expected.extend_from_slice(br#"topuser-event{"replayed":true}{"a":"b"}"#);
    assert_eq!(frame, expected);
    let bin = encode_user_broadcast("t", "e", None, &Payload::Binary(vec![9, 8])).unwrap();
    assert_eq!(bin, vec![4, 1, 1, 0, 0, b't', b'e', 9, 8]);
    assert!(encode_user_broadcast(&"t".repeat(256), "e", None, &Payload::Binary(vec![])).is_err());
}

#[test]
fn server_text_frames_follow_each_version() {
    assert_eq!(
        encode_text(
            Vsn::V1,
            Some("6"),
            Some("6"),
            "realtime:room1",
            "phx_reply",
            r#"{"status":"ok","response":{}}"#
        ),
        r#"{"topic":"realtime:room1","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"6"}"#
    );
    assert_eq!(
        encode_text(
            Vsn::V2,
            None,
            None,
            "realtime:room1",
            "broadcast",
            r#"{"x":1}"#
        ),
        r#"[null,null,"realtime:room1","broadcast",{"x":1}]"#
    );
    assert_eq!(
        encode_text(Vsn::V2, Some("a\"b"), None, "t", "e", "{}"),
        r#"["a\"b",null,"t","e",{}]"#
    );
}

proptest! {
    #[test]
    fn text_frames_round_trip(join in proptest::option::of("[ -~]{0,8}"), r in proptest::option::of("[0-9a-z:]{0,8}"),
                              topic in "\\PC{0,20}", event in "[a-z_]{1,12}", v2 in any::<bool>()) {
        let vsn = if v2 { Vsn::V2 } else { Vsn::V1 };
        let text = encode_text(vsn, join.as_deref(), r.as_deref(), &topic, &event, r#"{"k":[1,"x"]}"#);
        let m = decode_text(vsn, &text).unwrap();
        prop_assert_eq!(&m.topic, &topic);
        prop_assert_eq!(&m.event, &event);
        prop_assert_eq!(&m.msg_ref, &r);
        prop_assert_eq!(m.join_ref, if v2 { join } else { None });
        prop_assert_eq!(json(&m.payload), r#"{"k":[1,"x"]}"#);
    }

    #[test]
    fn any_bytes_decode_to_a_value_or_a_typed_error(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_binary(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = decode_text(Vsn::V1, text);
            let _ = decode_text(Vsn::V2, text);
        }
    }
}
