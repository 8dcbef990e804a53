//! Assertions shared by the channel fuzz targets.
//!
//! `check_channel` takes a channel that some decoder accepted and checks that
//! every codec round-trips it canonically and that the codecs agree with one
//! another; the `same_rejection` helpers check that the heap-backed and the
//! fixed-capacity decoders reject the same inputs with the same error.

#![allow(dead_code)]

use tidings_core::{Channel, ChannelBuf, ChannelError, Topic};

/// Capacity of the `ChannelBuf` used for cross-checks. Large enough for most
/// channels; bigger ones (long multi-byte atoms) must fail with `Capacity`.
pub const BIG: usize = 4096;

/// Every codec re-encodes `ch` canonically and decodes back to `ch`, and all
/// of them agree on what `ch` is.
pub fn check_channel(ch: &Channel) {
    // Text: canonical printing re-parses to the same channel and prints the
    // identical string again.
    let text = ch.to_string();
    let from_text = Channel::parse(&text)
        .unwrap_or_else(|e| panic!("canonical text {text:?} of {ch:?} does not re-parse: {e}"));
    assert_eq!(
        &from_text, ch,
        "text round trip changed the channel ({text:?})"
    );
    assert_eq!(from_text.to_string(), text, "text printing is not stable");
    assert_eq!(
        text.parse::<Channel>().as_ref(),
        Ok(ch),
        "FromStr disagrees with parse"
    );

    // JSON: the same, through to_json / from_json.
    let json = ch.to_json();
    let from_json = Channel::from_json(&json)
        .unwrap_or_else(|e| panic!("JSON {json} of {ch:?} does not re-parse: {e}"));
    assert_eq!(
        &from_json, ch,
        "JSON round trip changed the channel ({json})"
    );
    assert_eq!(from_json.to_json(), json, "JSON printing is not stable");

    // Topic: the bytes decode to the same channel and re-encode identically.
    let topic = ch.topic();
    let bytes = topic.as_bytes();
    let from_topic = Channel::from_topic(bytes)
        .unwrap_or_else(|e| panic!("topic {bytes:?} of {ch:?} does not decode: {e}"));
    assert_eq!(
        &from_topic, ch,
        "topic round trip changed the channel ({bytes:?})"
    );
    assert_eq!(from_topic.topic(), topic, "topic encoding is not stable");
    let wrapped = Topic::from_bytes(bytes)
        .unwrap_or_else(|e| panic!("Topic::from_bytes rejects {bytes:?} of {ch:?}: {e}"));
    assert_eq!(wrapped, topic, "Topic::from_bytes changed the bytes");
    assert_eq!(&wrapped.channel(), ch, "Topic::channel disagrees");

    // encode_topic: fits exactly in topic.len() bytes, and not in one fewer.
    let mut buf = vec![0u8; bytes.len()];
    assert_eq!(
        ch.encode_topic(&mut buf).as_deref(),
        Some(bytes),
        "encode_topic disagrees with topic()"
    );
    let mut short = vec![0u8; bytes.len() - 1];
    assert!(
        ch.encode_topic(&mut short).is_none(),
        "encode_topic fit in too small a buffer"
    );

    // The fixed-capacity form, from text and from topic bytes.
    let buf_text = ChannelBuf::<BIG>::parse_text(&text);
    let buf_topic = ChannelBuf::<BIG>::from_topic(bytes);
    if bytes.len() <= BIG {
        let b = buf_text.unwrap_or_else(|e| panic!("ChannelBuf::parse_text({text:?}): {e}"));
        check_buf(&b, ch);
        let t = buf_topic.unwrap_or_else(|e| panic!("ChannelBuf::from_topic({bytes:?}): {e}"));
        check_buf(&t, ch);
        assert_eq!(b, t, "ChannelBufs of the same channel differ");
    } else {
        assert_eq!(
            buf_text.err(),
            Some(ChannelError::Capacity { capacity: BIG })
        );
        assert_eq!(
            buf_topic.err(),
            Some(ChannelError::Capacity { capacity: BIG })
        );
    }
}

/// A `ChannelBuf` holding `ch` agrees with it in every view.
pub fn check_buf<const N: usize>(b: &ChannelBuf<N>, ch: &Channel) {
    assert_eq!(
        b.as_topic_bytes(),
        ch.topic().as_bytes(),
        "ChannelBuf topic bytes differ from Channel::topic for {ch:?}"
    );
    assert_eq!(
        b.to_string(),
        ch.to_string(),
        "ChannelBuf Display differs from Channel's"
    );
    assert_eq!(&b.to_channel(), ch, "ChannelBuf::to_channel differs");
    // Debug must not panic either.
    let _ = format!("{b:?}");
}

/// Errors must format without panicking (they quote the input).
pub fn check_error(e: &ChannelError) {
    let _ = e.to_string();
    let _ = format!("{e:?}");
}

/// Compares the alloc path (`Channel`) with the fixed-capacity path
/// (`ChannelBuf<N>`) on one input: they accept and reject alike, with the
/// same error, except that the fixed path may fail with `Capacity`, and then
/// only when the channel really needs more than `N` bytes.
pub fn compare_alloc_and_fixed<const N: usize>(
    what: &str,
    input: &dyn core::fmt::Debug,
    alloc: Result<Channel, ChannelError>,
    fixed: Result<ChannelBuf<N>, ChannelError>,
) {
    match (alloc, fixed) {
        (Ok(ch), Ok(b)) => {
            check_buf(&b, &ch);
            check_channel(&ch);
        }
        (Ok(ch), Err(ChannelError::Capacity { capacity })) => {
            assert_eq!(
                capacity, N,
                "{what}: Capacity error names the wrong capacity"
            );
            let len = ch.topic().as_bytes().len();
            assert!(
                len > N,
                "{what}({input:?}): Capacity error for a {len}-byte topic in a {N}-byte buffer"
            );
            check_channel(&ch);
        }
        (Ok(ch), Err(e)) => {
            panic!("{what}({input:?}): alloc path accepts {ch:?}, fixed path rejects: {e:?}")
        }
        (Err(e), Ok(b)) => {
            panic!("{what}({input:?}): alloc path rejects ({e:?}), fixed path accepts {b:?}")
        }
        (Err(e), Err(ChannelError::Capacity { capacity })) => {
            // The fixed path may run out of room before it reaches the
            // problem the alloc path reports.
            assert_eq!(
                capacity, N,
                "{what}: Capacity error names the wrong capacity"
            );
            check_error(&e);
        }
        (Err(e), Err(f)) => {
            assert_eq!(
                e, f,
                "{what}({input:?}): alloc and fixed paths reject differently"
            );
            check_error(&e);
        }
    }
}
