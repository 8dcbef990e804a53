//! The fixed-capacity path: `ChannelBuf::<256>` parses text and checks topic
//! bytes exactly like the heap-backed `Channel`, except that it may fail with
//! `Capacity` (and then only for channels whose topic needs > 256 bytes).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tidings_core::{Channel, ChannelBuf};

const N: usize = 256;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        common::compare_alloc_and_fixed(
            "parse_text",
            &text,
            Channel::parse(text),
            ChannelBuf::<N>::parse_text(text),
        );
    }
    common::compare_alloc_and_fixed(
        "from_topic",
        &data,
        Channel::from_topic(data),
        ChannelBuf::<N>::from_topic(data),
    );
});
