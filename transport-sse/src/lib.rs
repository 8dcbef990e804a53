//! # tidings-sse
//!
//! Tidings over Server-Sent Events down and HTTP POST up (SPEC §6), as a
//! framework-agnostic layer: [`http::route`] turns a request into a typed
//! [`http::Route`] or a ready error, [`event`] frames the stream, [`wire`]
//! holds the JSON bodies and [`session`] the signed session cookie.
#![forbid(unsafe_code)]

pub mod event;
pub mod http;
pub mod server;
pub mod session;
pub mod wire;

/// The browser client, served at [`http::CLIENT_JS_PATH`].
pub const CLIENT_JS: &str = include_str!("../assets/tidings.js");
