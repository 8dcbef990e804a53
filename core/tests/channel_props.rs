//! Properties over generated channels: each codec round-trips exactly, each
//! output is canonical, and the three codecs (plus the heapless form) agree.

use proptest::prelude::*;
use tidings_core::limits::{MAX_ARITY, MAX_STR_BYTES};
use tidings_core::{Atom, Channel, ChannelBuf, Topic, Value};

/// Text that stresses the escaper: quotes, backslashes, `#{`, controls,
/// non-ASCII, empty.
fn nasty_text(max_chars: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("#{".to_string()),
        Just("#".to_string()),
        Just("\n".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{7f}".to_string()),
        Just("é".to_string()),
        Just("😀".to_string()),
        Just(":".to_string()),
        Just("?".to_string()),
        "[a-z_]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..=max_chars)
        .prop_map(move |v| v.concat().chars().take(max_chars).collect())
}

fn atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_@]{0,8}[?!]?",
        Just("true".to_string()),
        Just("nil".to_string()),
        nasty_text(20),
        Just("x".repeat(255)),
    ]
    .prop_map(|s| Atom::new(&s).unwrap())
}

fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        nasty_text(40).prop_filter("fits", |s| s.len() <= MAX_STR_BYTES),
        Just(String::new()),
        Just("a".repeat(MAX_STR_BYTES)),
        Just("é".repeat(MAX_STR_BYTES / 2)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        atom().prop_map(Value::Atom),
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            Just(-1),
            any::<i64>()
        ]
        .prop_map(Value::Int),
        string_value().prop_map(|s| Value::str(&s)),
    ]
}

fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![
        atom().prop_map(Channel::Atom),
        (atom(), prop::collection::vec(value(), 1..=MAX_ARITY))
            .prop_map(|(tag, values)| Channel::tuple(tag.as_str(), values).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn text_round_trips_and_is_canonical(ch in channel()) {
        let text = ch.to_string();
        let back = Channel::parse(&text).unwrap();
        prop_assert_eq!(&back, &ch);
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn json_round_trips_and_is_canonical(ch in channel()) {
        let json = ch.to_json();
        let back = Channel::from_json(&json).unwrap();
        prop_assert_eq!(&back, &ch);
        prop_assert_eq!(back.to_json(), json);
    }

    #[test]
    fn topic_round_trips_and_is_canonical(ch in channel()) {
        let topic = ch.topic();
        prop_assert_eq!(Channel::from_topic(topic.as_bytes()).unwrap(), ch.clone());
        prop_assert_eq!(Topic::from_bytes(topic.as_bytes()).unwrap(), topic.clone());
        prop_assert_eq!(topic.channel(), ch.clone());
        let mut buf = [0u8; 8192];
        prop_assert_eq!(&*ch.encode_topic(&mut buf).unwrap(), topic.as_bytes());
    }

    #[test]
    fn heapless_agrees_with_the_heap_form(ch in channel()) {
        let text = ch.to_string();
        let buf = ChannelBuf::<8192>::parse_text(&text).unwrap();
        let topic = ch.topic();
        prop_assert_eq!(buf.as_topic_bytes(), topic.as_bytes());
        prop_assert_eq!(buf.to_string(), text);
        prop_assert_eq!(ChannelBuf::<8192>::from_topic(ch.topic().as_bytes()).unwrap(), buf);
    }

    #[test]
    fn equal_channels_iff_equal_topics(a in channel(), b in channel()) {
        prop_assert_eq!(a == b, a.topic() == b.topic());
        prop_assert_eq!(a == b, a.to_string() == b.to_string());
        prop_assert_eq!(a == b, a.to_json() == b.to_json());
    }

    #[test]
    fn any_text_input_never_panics_and_accepted_text_reprints_canonically(s in "\\PC{0,40}|[{}:\\[\\]%,\"a-z0-9 =>.\\\\-]{0,30}") {
        if let Ok(ch) = Channel::parse(&s) {
            let canon = ch.to_string();
            prop_assert_eq!(Channel::parse(&canon).unwrap(), ch);
        }
        let heapless = ChannelBuf::<512>::parse_text(&s);
        let heap = Channel::parse(&s);
        prop_assert_eq!(heapless.is_ok(), heap.is_ok());
    }

    #[test]
    fn any_topic_bytes_never_panic_and_accepted_bytes_are_canonical(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(ch) = Channel::from_topic(&bytes) {
            let topic = ch.topic();
            prop_assert_eq!(topic.as_bytes(), &bytes[..]);
        }
    }
}
