//! # tidings-sse (not built yet)
//!
//! This crate will carry Tidings over Server-Sent Events: a framework-agnostic
//! layer for the `/tidings/handshake`, `/tidings/events`, `/tidings/command` and
//! `/tidings/navigate` endpoints (request in, response or stream registration
//! out), a binding on `tiny_http`, and the small browser client served at
//! `/tidings/client.js`. Until its issue lands it exports nothing.
#![forbid(unsafe_code)]
