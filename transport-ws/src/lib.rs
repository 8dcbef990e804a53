//! # tidings-ws (not built yet)
//!
//! This crate will make a Tidings server speak the Phoenix Channels wire
//! protocol (V1 JSON objects, V2 JSON arrays and Supabase binary frames) on
//! `tungstenite`, so the official `phoenix` and `@supabase/realtime-js`
//! clients work unmodified, and will hold the Rust client
//! (`tidings_ws::client`). Until its issue lands it exports nothing.
#![forbid(unsafe_code)]
