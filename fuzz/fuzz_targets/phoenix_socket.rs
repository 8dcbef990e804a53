//! A Phoenix socket fed a session of arbitrary frames (split on 0xFF; text
//! when UTF-8, else binary) in both versions: it never panics, every frame
//! it sends is valid JSON of its version, the join count stays within the
//! limit, and rendering hub answers for whatever it joined never panics.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tidings_core::SeededEntropy;
use tidings_ws::frame::{FrameIn, Vsn};
use tidings_ws::server::socket::{OutFrame, PhoenixSocket, Request, SocketConfig, Step, WsOut};

fuzz_target!(|data: &[u8]| {
    for vsn in [Vsn::V1, Vsn::V2] {
        let config = SocketConfig { max_channels: 3, ..SocketConfig::default() };
        let mut socket = PhoenixSocket::new(vsn, config, 0);
        let mut e = SeededEntropy::new(1);
        let mut out = Vec::new();
        for (i, chunk) in data.split(|&b| b == 0xFF).enumerate() {
            let frame = match std::str::from_utf8(chunk) {
                Ok(t) => FrameIn::Text(t),
                Err(_) => FrameIn::Binary(chunk),
            };
            let _ = socket.handle(i as u64, frame, &mut e, &mut out);
            assert!(socket.joined() <= 3);
            for step in out.drain(..) {
                match step {
                    Step::Send(OutFrame::Text(t)) => {
                        let v: serde_json::Value = serde_json::from_str(&t).expect("sent frames are JSON");
                        assert_eq!(v.is_array(), vsn == Vsn::V2);
                    }
                    Step::Send(OutFrame::Close(_) | OutFrame::Binary(_)) => {}
                    Step::Hub(req) => {
                        // Answer like a hub would; refuse every other join.
                        if let Request::Join { to, .. } = *req {
                            let refuse = i % 2 == 1;
                            let reply = WsOut::reply(to.clone(), !refuse, "{}".into(), true);
                            let _ = socket.render(&reply);
                            let push = WsOut::push(to.topic.clone(), "x", Arc::from("{}"));
                            let _ = socket.render(&push);
                            let _ = socket.render(&WsOut::Close { topic: to.topic });
                        }
                    }
                }
            }
        }
    }
});
