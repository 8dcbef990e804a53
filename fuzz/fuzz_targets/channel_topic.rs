//! The topic codec: `Channel::from_topic` never panics and accepts only
//! canonical bytes, so an accepted input re-encodes to exactly itself; the
//! decoded channel agrees with the text, JSON and fixed-capacity codecs, and
//! `Topic::from_bytes` / `ChannelBuf::from_topic` accept and reject alike.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use tidings_core::{Channel, ChannelBuf, Topic};

fuzz_target!(|data: &[u8]| {
    let decoded = Channel::from_topic(data);
    match &decoded {
        Ok(ch) => {
            assert_eq!(
                ch.topic().as_bytes(),
                data,
                "accepted topic bytes are not canonical: they decode to {ch:?}"
            );
            let t = Topic::from_bytes(data)
                .unwrap_or_else(|e| panic!("Channel::from_topic accepts, Topic::from_bytes: {e}"));
            assert_eq!(t.as_bytes(), data);
            assert_eq!(&t.channel(), ch);
        }
        Err(e) => {
            common::check_error(e);
            assert_eq!(
                Topic::from_bytes(data).err().as_ref(),
                Some(e),
                "Topic::from_bytes and Channel::from_topic disagree"
            );
        }
    }
    common::compare_alloc_and_fixed(
        "from_topic",
        &data,
        decoded,
        ChannelBuf::<{ common::BIG }>::from_topic(data),
    );
});
