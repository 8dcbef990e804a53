//! # tidings-ws
//!
//! Tidings over WebSocket, speaking the Phoenix Channels wire protocol that
//! the official `phoenix` and `@supabase/realtime-js` clients speak.
//!
//! [`frame`] is the sans-IO codec for V1 (JSON objects) and V2 (JSON arrays,
//! Supabase binary kinds 3 in and 4 out) frames; [`server`] holds one
//! socket's protocol state, sans-IO, which `tidings-smol` drives over
//! `tungstenite`.
#![forbid(unsafe_code)]

pub mod frame;

/// The Rust realtime client (SPEC §9): connection, channels, store, acks, presence.
pub mod client;
pub mod server;
