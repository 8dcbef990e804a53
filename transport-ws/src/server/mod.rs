//! The server side, sans-IO: what a Phoenix topic names ([`topic`]), the
//! Supabase join settings ([`join`]), one socket's protocol state
//! ([`socket`]) and Supabase's REST broadcast requests ([`rest`]). A
//! runtime (e.g. `tidings-smol`) owns the sockets, feeds them frames and
//! the hub's answers, and writes what they return.

pub mod join;
pub mod presence;
pub mod rest;
pub mod socket;
pub mod topic;
