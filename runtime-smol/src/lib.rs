//! # tidings-smol
//!
//! Drives the sans-IO [`tidings_core::Router`] and the transports on `smol`:
//! a [`Hub`] task owns the router and the [`App`]; a cloneable
//! [`HubHandle`] offers the immediate API from any thread; [`sse::serve`]
//! serves the hub over SSE + POST, Phoenix WebSockets ([`ws`]) and
//! Supabase's REST broadcast endpoints ([`rest`]) on one port.
//!
//! ```no_run
//! use tidings_smol::{App, AppError, Hub, HubConfig, NextAction, Page, sse};
//! use tidings_core::{Cid, Effects};
//!
//! struct Hello;
//! impl App for Hello {
//!     fn render(&self, _: &str, page: &mut Page) -> Result<Option<String>, AppError> {
//!         page.component(Cid::PAGE).put_subscription(":news")?;
//!         Ok(Some("<html><head></head><body>hi</body></html>".into()))
//!     }
//!     fn command(&self, _: &mut Effects, name: &str, _: &serde_json::Value) -> Result<Option<NextAction>, AppError> {
//!         Err(AppError::unknown_command(name))
//!     }
//! }
//! let (hub, handle) = Hub::new(Hello, HubConfig::new(b"receipts", b"sessions"));
//! let keys = hub.keys().clone();
//! std::thread::spawn(move || smol::block_on(hub.run()));
//! let server = sse::serve(&handle, &keys, &sse::SseConfig::new("127.0.0.1:4000".parse().unwrap())).unwrap();
//! handle.broadcast_action(":news", "headline", &serde_json::json!({"text": "hello"})).unwrap();
//! ```
#![forbid(unsafe_code)]

mod app;
mod handle;
mod hub;
pub mod rest;
pub mod sse;
pub mod ws;

pub use app::{Access, App, AppError, NextAction, Page, params};
pub use handle::{HubError, HubHandle};
pub use hub::{DEFAULT_INBOX, DEFAULT_OUTBOUND_QUEUE, Frame, Hub, HubConfig, SlowConsumer};
