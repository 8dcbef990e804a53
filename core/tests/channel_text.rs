//! The text codec: Hologram's acceptance lines (H§8.1), every error message
//! and every limit.

use tidings_core::limits::{MAX_ARITY, MAX_ATOM_CHARS, MAX_STR_BYTES};
use tidings_core::{Channel, ChannelError, ChannelLimits, Value};

fn err(text: &str) -> String {
    Channel::parse(text).expect_err(text).to_string()
}

fn canon(text: &str) -> String {
    Channel::parse(text).expect(text).to_string()
}

#[test]
fn a_bare_atom_is_accepted() {
    assert_eq!(
        Channel::parse(":notifications").unwrap(),
        Channel::atom("notifications").unwrap()
    );
}

#[test]
fn a_tag_with_an_atom_value_is_accepted() {
    assert_eq!(canon("{:tag, :value}"), "{:tag, :value}");
}

#[test]
fn a_tag_with_an_integer_is_accepted() {
    let ch = Channel::parse("{:room, 42}").unwrap();
    assert_eq!(ch, Channel::tuple("room", [Value::Int(42)]).unwrap());
}

#[test]
fn a_tag_with_a_string_is_accepted() {
    assert_eq!(canon("{:room, \"lounge\"}"), "{:room, \"lounge\"}");
}

#[test]
fn longer_tuples_with_mixed_primitives_are_accepted() {
    assert_eq!(canon("{:doc,\"abc\",\"v2\"}"), "{:doc, \"abc\", \"v2\"}");
    assert_eq!(canon("{:tag,:a,1,\"s\"}"), "{:tag, :a, 1, \"s\"}");
}

#[test]
fn a_bare_string_is_rejected_with_hologram_message() {
    assert_eq!(
        err("\"my-channel\""),
        "channel must be a bare atom or tagged tuple; got bare string \"my-channel\""
    );
}

#[test]
fn a_non_atom_tag_is_rejected_with_hologram_message() {
    assert_eq!(
        err("{\"room\",42}"),
        "channel tuple's first element must be an atom; got {\"room\", 42}"
    );
    assert!(matches!(
        Channel::parse("{1, 2}"),
        Err(ChannelError::TagNotAtom { .. })
    ));
}

#[test]
fn a_map_element_is_rejected_naming_element_and_channel() {
    assert_eq!(
        err("{:room, %{a: 1}}"),
        "channel tuple elements after the tag must be primitive (atom, integer, string); got %{a: 1} in {:room, %{a: 1}}"
    );
}

#[test]
fn the_first_bad_element_is_reported() {
    assert_eq!(
        err("{:room, 1, [2], {:x, 3}}"),
        "channel tuple elements after the tag must be primitive (atom, integer, string); got [2] in {:room, 1, [2], {:x, 3}}"
    );
    assert_eq!(
        err("{:room, 1.5}"),
        "channel tuple elements after the tag must be primitive (atom, integer, string); got 1.5 in {:room, 1.5}"
    );
    assert_eq!(
        err("{:room, %{\"k\" => [a: 1]}}"),
        "channel tuple elements after the tag must be primitive (atom, integer, string); got %{\"k\" => [a: 1]} in {:room, %{\"k\" => [a: 1]}}"
    );
}

#[test]
fn a_one_tuple_and_an_empty_tuple_are_rejected() {
    assert_eq!(
        err("{:foo}"),
        "channel tuple must have at least 2 elements; got 1-tuple {:foo}"
    );
    assert_eq!(
        err("{}"),
        "channel tuple must have at least 2 elements; got 0-tuple {}"
    );
}

#[test]
fn floats_and_other_terms_are_rejected() {
    assert_eq!(
        err("1.5"),
        "channel must be a bare atom or tagged tuple; got 1.5"
    );
    assert_eq!(
        err("42"),
        "channel must be a bare atom or tagged tuple; got 42"
    );
    assert_eq!(
        err("[1,2]"),
        "channel must be a bare atom or tagged tuple; got [1, 2]"
    );
    assert_eq!(
        err("%{a: 1}"),
        "channel must be a bare atom or tagged tuple; got %{a: 1}"
    );
}

#[test]
fn arity_limit_is_enforced_with_our_message() {
    let ok = format!("{{:t{}}}", ", 1".repeat(MAX_ARITY));
    assert!(Channel::parse(&ok).is_ok());
    let too_many = format!("{{:t{}}}", ", 1".repeat(MAX_ARITY + 1));
    assert_eq!(
        err(&too_many),
        "channel tuple has 18 elements; at most 17 are allowed (the tag and 16 values)"
    );
    let loose = ChannelLimits {
        max_arity: 20,
        ..ChannelLimits::DEFAULT
    };
    assert!(Channel::parse_with(&too_many, &loose).is_ok());
}

#[test]
fn string_limit_is_enforced_in_bytes() {
    let max = format!("{{:s, \"{}\"}}", "a".repeat(MAX_STR_BYTES));
    assert!(Channel::parse(&max).is_ok());
    let over = format!("{{:s, \"{}\"}}", "a".repeat(MAX_STR_BYTES + 1));
    assert_eq!(
        err(&over),
        "channel tuple string has 257 bytes; at most 256 are allowed"
    );
    // 129 two-byte characters: 258 bytes although only 129 characters.
    let wide = format!("{{:s, \"{}\"}}", "é".repeat(129));
    assert_eq!(
        err(&wide),
        "channel tuple string has 258 bytes; at most 256 are allowed"
    );
    // Escapes count once decoded: "\n" is one byte.
    let escaped = format!("{{:s, \"{}\"}}", "\\n".repeat(MAX_STR_BYTES));
    assert!(Channel::parse(&escaped).is_ok());
    let tight = ChannelLimits {
        max_str_bytes: 3,
        ..ChannelLimits::DEFAULT
    };
    assert!(Channel::parse_with("{:s, \"abcd\"}", &tight).is_err());
}

#[test]
fn atom_limit_is_255_characters() {
    let max = format!(":\"{}\"", "é".repeat(MAX_ATOM_CHARS));
    assert!(Channel::parse(&max).is_ok());
    let over = format!(":{}", "a".repeat(MAX_ATOM_CHARS + 1));
    assert_eq!(
        err(&over),
        "atom has 256 characters; at most 255 are allowed"
    );
    let tag = format!("{{:{}, 1}}", "a".repeat(300));
    assert_eq!(
        err(&tag),
        "atom has 300 characters; at most 255 are allowed"
    );
    let value = format!("{{:t, :{}}}", "a".repeat(256));
    assert_eq!(
        err(&value),
        "atom has 256 characters; at most 255 are allowed"
    );
    assert!(tidings_core::Atom::new(&"x".repeat(255)).is_ok());
    assert!(tidings_core::Atom::new(&"x".repeat(256)).is_err());
}

#[test]
fn integers_cover_i64_and_reject_beyond() {
    assert_eq!(
        canon("{:n, -9223372036854775808}"),
        "{:n, -9223372036854775808}"
    );
    assert_eq!(
        canon("{:n, 9223372036854775807}"),
        "{:n, 9223372036854775807}"
    );
    assert_eq!(canon("{:n, 1_000}"), "{:n, 1000}");
    assert_eq!(canon("{:n, -0}"), "{:n, 0}");
    assert_eq!(canon("{:n, 007}"), "{:n, 7}");
    assert_eq!(
        err("{:n, 9223372036854775808}"),
        "channel tuple integer 9223372036854775808 is out of range; integers must fit in a signed 64-bit integer (-9223372036854775808..=9223372036854775807)"
    );
    assert!(matches!(
        Channel::parse("{:n, -9_223_372_036_854_775_809}"),
        Err(ChannelError::IntegerOutOfRange { .. })
    ));
}

#[test]
fn canonical_text_quotes_non_identifier_atoms_and_writes_keywords_bare() {
    assert_eq!(canon(":\"room:42\""), ":\"room:42\"");
    assert_eq!(canon(":\"a b\""), ":\"a b\"");
    assert_eq!(canon(":\"plain\""), ":plain");
    assert_eq!(canon(":true"), "true");
    assert_eq!(canon("nil"), "nil");
    assert_eq!(canon("{:x, nil}"), "{:x, nil}");
    assert_eq!(canon("{:flag, :\"false\"}"), "{:flag, false}");
    assert_eq!(canon(":ok?"), ":ok?");
    assert_eq!(canon(":Foo@bar!"), ":Foo@bar!");
    assert_eq!(canon(":\"a?b\""), ":\"a?b\"");
    assert_eq!(canon(":\"\""), ":\"\"");
    assert_eq!(canon(":\"9lives\""), ":\"9lives\"");
}

#[test]
fn canonical_text_escapes_strings() {
    assert_eq!(canon(r#"{:s, "q\"b\\s"}"#), r#"{:s, "q\"b\\s"}"#);
    assert_eq!(
        canon("{:s, \"line\nbreak\ttab\"}"),
        r#"{:s, "line\nbreak\ttab"}"#
    );
    assert_eq!(canon(r#"{:s, "\u{1F600}\u00e9"}"#), "{:s, \"\u{1F600}é\"}");
    assert_eq!(canon(r#"{:s, "\e\0"}"#), r#"{:s, "\u{1B}\u{0}"}"#);
    assert_eq!(canon(r#"{:s, "\#{x}"}"#), r#"{:s, "\#{x}"}"#);
    assert_eq!(canon(r#"{:s, ""}"#), r#"{:s, ""}"#);
    assert_eq!(canon("{ :a ,\n 1 }"), "{:a, 1}");
}

#[test]
fn syntax_errors_are_typed_with_positions() {
    for (text, at) in [
        ("", 0),
        ("{:a, 1", 6),
        ("{:a 1}", 4),
        (":", 1),
        ("{:a, foo}", 5),
        ("{:a, \"unterminated}", 5),
        (r#"{:a, "\q"}"#, 6),
        (r##"{:a, "#{x}"}"##, 6),
        ("{:a, 1} extra", 8),
        ("{:a, 1,}", 7),
        ("{:a, 12abc}", 7),
        ("@", 0),
    ] {
        match Channel::parse(text) {
            Err(ChannelError::Syntax { at: got, .. }) => assert_eq!(got, at, "{text:?}"),
            other => panic!("{text:?}: expected a syntax error, got {other:?}"),
        }
    }
    assert_eq!(
        err("{:a 1}"),
        "invalid channel text at byte 4: expected ',' or a closing bracket"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{{:a, {}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        Channel::parse(&deep),
        Err(ChannelError::Syntax { .. })
    ));
    let fine = format!("{{:a, {}1{}}}", "[".repeat(10), "]".repeat(10));
    assert!(matches!(
        Channel::parse(&fine),
        Err(ChannelError::NotPrimitive { .. })
    ));
}

#[test]
fn error_quotes_are_bounded() {
    let long = format!("\"{}\"", "x".repeat(10_000));
    let msg = err(&long);
    assert!(msg.len() < 250, "{}", msg.len());
    assert!(msg.ends_with('…'));
}

#[test]
fn identity_channels_are_ordinary_channels() {
    assert!(Channel::parse("{:user, nil}").is_ok());
    assert!(Channel::parse("{:instance, \"0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6b\"}").is_ok());
}

#[test]
fn tuple_constructor_validates_like_the_parser() {
    assert!(matches!(
        Channel::tuple("t", []),
        Err(ChannelError::TooFewElements { size: 1, .. })
    ));
    let many = (0..17).map(Value::Int);
    assert!(matches!(
        Channel::tuple("t", many),
        Err(ChannelError::TooManyElements { size: 18, .. })
    ));
    assert!(Channel::tuple("t", [Value::str(&"x".repeat(257))]).is_err());
}
