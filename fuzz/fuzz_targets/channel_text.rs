//! The text codec: `Channel::parse` never panics; every accepted input
//! round-trips canonically and agrees with the JSON, topic and fixed-capacity
//! codecs; every rejected input is rejected identically by `ChannelBuf`.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tidings_core::{Channel, ChannelBuf};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Channel::parse(text);
    match &parsed {
        Ok(ch) => {
            // Parsing the canonical form gives the same channel (checked in
            // check_channel); printing is canonical, so parsing our own
            // output again must be a fixed point.
            let canon = ch.to_string();
            assert_eq!(
                Channel::parse(&canon).as_ref(),
                Ok(ch),
                "input {text:?} -> {canon:?} does not re-parse to the same channel"
            );
        }
        Err(e) => common::check_error(e),
    }
    common::compare_alloc_and_fixed(
        "parse_text",
        &text,
        parsed,
        ChannelBuf::<{ common::BIG }>::parse_text(text),
    );
});
