//! # tidings-ws
//!
//! Tidings over WebSocket, speaking the Phoenix Channels wire protocol that
//! the official `phoenix` and `@supabase/realtime-js` clients speak.
//!
//! Built so far: [`frame`], the sans-IO codec for V1 (JSON objects) and V2
//! (JSON arrays, Supabase binary kinds 3 in and 4 out) frames. The server on
//! `tungstenite`, presence, the instance stream and the Rust client come next.
#![forbid(unsafe_code)]

pub mod frame;
