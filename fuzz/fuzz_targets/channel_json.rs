//! The JSON codec: `Channel::from_json` never panics; every accepted input
//! re-encodes to canonical JSON that re-parses to the same channel, and the
//! channel agrees with the text, topic and fixed-capacity codecs.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tidings_core::Channel;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    match Channel::from_json(json) {
        Ok(ch) => {
            let canon = ch.to_json();
            let again = Channel::from_json(&canon)
                .unwrap_or_else(|e| panic!("input {json:?} -> {canon} does not re-parse: {e}"));
            assert_eq!(again, ch, "input {json:?} -> {canon} re-parses differently");
            assert_eq!(again.to_json(), canon, "JSON printing is not stable");
            common::check_channel(&ch);
        }
        Err(e) => common::check_error(&e),
    }
});
