//! The JSON and topic codecs: exact mapping, errors, canonical-only decoding.

use tidings_core::{Channel, ChannelBuf, ChannelError, Topic, Value};

fn ch(text: &str) -> Channel {
    Channel::parse(text).unwrap()
}

#[test]
fn json_mapping_is_exact() {
    assert_eq!(ch(":notifications").to_json(), r#"{"t":"notifications"}"#);
    assert_eq!(ch("{:room, 42}").to_json(), r#"{"t":"room","v":[42]}"#);
    assert_eq!(
        ch("{:tag, :red, true, false, nil, \"s\", -7}").to_json(),
        r#"{"t":"tag","v":[{"a":"red"},true,false,null,"s",-7]}"#
    );
    assert_eq!(ch(":\"room:42\"").to_json(), r#"{"t":"room:42"}"#);
    for text in [
        ":notifications",
        "{:room, 42}",
        "{:tag, :red, true, nil, \"\\\"q\\\"\", -1}",
        "nil",
    ] {
        let c = ch(text);
        assert_eq!(Channel::from_json(&c.to_json()).unwrap(), c, "{text}");
    }
}

#[test]
fn json_errors_follow_hologram_and_name_the_shape() {
    let e = |j: &str| Channel::from_json(j).expect_err(j).to_string();
    assert_eq!(
        e(r#""my-channel""#),
        r#"channel must be a bare atom or tagged tuple; got bare string "my-channel""#
    );
    assert_eq!(
        e("1.5"),
        "channel must be a bare atom or tagged tuple; got 1.5"
    );
    assert_eq!(
        e(r#"{"t":"room","v":[{"x":1}]}"#),
        r#"channel tuple elements after the tag must be primitive (atom, integer, string); got {"x":1} in {"t":"room","v":[{"x":1}]}"#
    );
    assert_eq!(
        e(r#"{"t":"room","v":[]}"#),
        r#"channel tuple must have at least 2 elements; got 1-tuple {"t":"room","v":[]}"#
    );
    assert!(e(r#"{"t":"room","x":1}"#).contains("unknown field \"x\""));
    assert!(e(r#"{"v":[1]}"#).contains("missing field \"t\""));
    assert!(e(r#"{"t":5}"#).contains("\"t\" must be a string"));
    assert!(e(r#"{"t":"a","v":3}"#).contains("\"v\" must be an array"));
    assert!(e("{").starts_with("invalid channel JSON: "));
    assert!(matches!(
        Channel::from_json(r#"{"t":"n","v":[18446744073709551615]}"#),
        Err(ChannelError::IntegerOutOfRange { .. })
    ));
    assert!(matches!(
        Channel::from_json(r#"{"t":"n","v":[1.0]}"#),
        Err(ChannelError::NotPrimitive { .. })
    ));
    let many = format!(r#"{{"t":"n","v":[{}]}}"#, vec!["1"; 17].join(","));
    assert!(matches!(
        Channel::from_json(&many),
        Err(ChannelError::TooManyElements { .. })
    ));
    let long = format!(r#"{{"t":"n","v":["{}"]}}"#, "x".repeat(257));
    assert!(matches!(
        Channel::from_json(&long),
        Err(ChannelError::StringTooLong { .. })
    ));
}

#[test]
fn channels_embed_in_json_messages_through_serde() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Msg {
        channel: Channel,
    }
    let m = Msg {
        channel: ch("{:room, 42}"),
    };
    let text = serde_json::to_string(&m).unwrap();
    assert_eq!(text, r#"{"channel":{"t":"room","v":[42]}}"#);
    assert_eq!(serde_json::from_str::<Msg>(&text).unwrap(), m);
    assert!(serde_json::from_str::<Msg>(r#"{"channel":"x"}"#).is_err());
}

#[test]
fn topics_are_injective_where_hologram_collides() {
    let topics = [
        ch("{:room, 42}").topic(),
        ch("{:room, \"42\"}").topic(),
        ch("{:room, :\"42\"}").topic(),
        ch(":\"room:42\"").topic(),
        ch("{:room, \"a:b\"}").topic(),
        ch("{:room, \"a\", \"b\"}").topic(),
    ];
    for (i, a) in topics.iter().enumerate() {
        for b in &topics[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn topic_bytes_are_postcard_over_the_canonical_form() {
    assert_eq!(ch(":a").topic().as_bytes(), &[0, 1, b'a']);
    assert_eq!(ch("{:a, -1}").topic().as_bytes(), &[1, 1, b'a', 1, 1, 1]);
    assert_eq!(
        ch("{:a, :b, \"c\"}").topic().as_bytes(),
        &[1, 1, b'a', 2, 0, 1, b'b', 2, 1, b'c']
    );
}

#[test]
fn topic_decoding_rejects_non_canonical_and_malformed_bytes() {
    let bad: &[(&[u8], &str)] = &[
        (&[], "unexpected end of input"),
        (&[0x80, 0x00, 1, b'a'], "overlong varint"),
        (&[0, 0x81, 0x00, b'a'], "overlong string length"),
        (&[1, 1, b'a', 1, 1, 0x82, 0x00], "overlong varint"),
        (&[2, 1, b'a'], "unknown channel kind"),
        (&[1, 1, b'a', 1, 7, 1], "unknown value kind"),
        (&[0, 1, b'a', 9], "trailing bytes"),
        (&[0, 2, 0xff, 0xfe], "not valid UTF-8"),
        (&[0, 5, b'a'], "unexpected end of input"),
    ];
    for (bytes, why) in bad {
        let e = Channel::from_topic(bytes).expect_err(why).to_string();
        assert!(e.contains(why), "{bytes:?}: {e}");
        assert!(Topic::from_bytes(bytes).is_err());
        assert!(ChannelBuf::<64>::from_topic(bytes).is_err());
    }
    assert!(matches!(
        Channel::from_topic(&[1, 1, b'a', 0]),
        Err(ChannelError::TooFewElements { size: 1, .. })
    ));
    assert!(matches!(
        Channel::from_topic(&[1, 1, b'a', 17]),
        Err(ChannelError::TooManyElements { size: 18, .. })
    ));
}

#[test]
fn heapless_parses_room_42_and_matches_the_topic() {
    let buf = ChannelBuf::<32>::parse_text("{:room, 42}").unwrap();
    assert_eq!(buf.as_topic_bytes(), ch("{:room, 42}").topic().as_bytes());
    assert_eq!(buf.to_string(), "{:room, 42}");
    assert_eq!(buf.to_channel(), ch("{:room, 42}"));
    assert_eq!(
        ChannelBuf::<32>::from_topic(buf.as_topic_bytes()).unwrap(),
        buf
    );
}

#[test]
fn heapless_reports_capacity_and_the_same_errors() {
    assert_eq!(
        ChannelBuf::<4>::parse_text("{:room, 42}").unwrap_err(),
        ChannelError::Capacity { capacity: 4 }
    );
    for bad in [
        "\"s\"",
        "{:a}",
        "{\"a\", 1}",
        "{:a, [1]}",
        "1.5",
        "{:a, 99999999999999999999}",
    ] {
        assert_eq!(
            ChannelBuf::<256>::parse_text(bad).unwrap_err(),
            Channel::parse(bad).unwrap_err(),
            "{bad}"
        );
    }
}

#[test]
fn escaped_text_encodes_like_plain_text() {
    let escaped = ChannelBuf::<64>::parse_text(r#"{:"r\u{6F}om", "a\nb"}"#).unwrap();
    let plain = Channel::tuple("room", [Value::str("a\nb")]).unwrap();
    assert_eq!(escaped.as_topic_bytes(), plain.topic().as_bytes());
}

#[test]
fn a_huge_claimed_arity_is_an_error_not_an_overflow() {
    // Found by fuzzing: tuple, tag "a", arity usize::MAX in a canonical varint.
    let bytes = [
        0x01, 0x01, b'a', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    let err = Channel::from_topic(&bytes).unwrap_err();
    assert_eq!(
        err,
        ChannelError::TooManyElements {
            size: usize::MAX,
            max_arity: 16
        }
    );
    assert!(ChannelBuf::<64>::from_topic(&bytes).is_err());
    // With no arity limit the claim is still not trusted for allocation.
    let wide = tidings_core::ChannelLimits {
        max_arity: usize::MAX,
        ..tidings_core::ChannelLimits::DEFAULT
    };
    let claim = [
        0x01, 0x01, b'a', 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40,
    ];
    assert!(Channel::from_topic_with(&claim, &wide).is_err());
}

#[test]
fn long_json_quotes_are_cut_without_failing_the_formatter() {
    // Found by fuzzing: serde_json's Display asserts its writes succeed.
    let long = format!("\"{}\"", "x".repeat(119));
    let msg = Channel::from_json(&long).unwrap_err().to_string();
    assert!(msg.ends_with('…'), "{msg}");
    let e =
        Channel::from_json(r#"{"t":[1e15,1e15,1e15,1e15,1e15,1e15,1e15,1e15,1e15]}"#).unwrap_err();
    assert!(e.to_string().contains("\"t\" must be a string"));
}
