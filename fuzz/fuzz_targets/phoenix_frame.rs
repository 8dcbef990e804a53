//! Phoenix frames, V1 and V2, text and binary (kinds 0 and 3): decoding
//! never panics, and what decodes re-encodes to a frame that decodes to the
//! same message (text) or to the same user broadcast (kind 3 → kind 4).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_ws::frame::{Inbound, Payload, Vsn, decode_binary, decode_text, encode_text, encode_user_broadcast};

fuzz_target!(|data: &[u8]| {
    if let Ok(Inbound::UserBroadcast(b)) = decode_binary(data) {
        let meta = b.metadata.as_ref().map(|m| m.get());
        let out = encode_user_broadcast(&b.topic, &b.user_event, meta, &b.payload).expect("decoded fields fit");
        // A kind-4 frame is a kind-3 frame without refs: patch it into one.
        let mut as_push = vec![3u8, 0, 0];
        as_push.extend_from_slice(&out[1..]);
        let Ok(Inbound::UserBroadcast(again)) = decode_binary(&as_push) else {
            panic!("re-encoded user broadcast does not decode")
        };
        assert_eq!((again.topic, again.user_event, again.metadata, again.payload), (b.topic, b.user_event, b.metadata, b.payload));
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    for vsn in [Vsn::V1, Vsn::V2] {
        let Ok(m) = decode_text(vsn, text) else { continue };
        let Payload::Json(payload) = &m.payload else { panic!("text frames carry JSON") };
        let out = encode_text(vsn, m.join_ref.as_deref(), m.msg_ref.as_deref(), &m.topic, &m.event, payload.get());
        let again = decode_text(vsn, &out).expect("re-encoded text frame decodes");
        assert_eq!((&again.msg_ref, &again.topic, &again.event, &again.payload), (&m.msg_ref, &m.topic, &m.event, &m.payload));
        if vsn == Vsn::V2 {
            assert_eq!(again.join_ref, m.join_ref);
        }
    }
});
