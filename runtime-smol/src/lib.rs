//! # tidings-smol (not built yet)
//!
//! This crate will drive the sans-IO `tidings-core` router and the transports
//! on the `smol` executor: a `Hub` that owns the router, a cloneable
//! `HubHandle` for the immediate API, per-connection outbound queues and
//! timers, and the runnable chat example. Until its issue lands it exports
//! nothing.
#![forbid(unsafe_code)]
