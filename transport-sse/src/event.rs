//! Server-Sent Events framing for one stream: numbered events, a `retry:`
//! hint once at the start, multi-line data split into `data:` lines.

use std::io::Write as _;

/// How long the browser waits before its own reconnect attempt, sent once.
pub const DEFAULT_RETRY_MS: u32 = 1000;

/// The event names of the Tidings stream.
pub mod names {
    /// `{action, params, cids}`: run an action on components.
    pub const BROADCAST: &str = "broadcast";
    /// `[{channel, cid, token}]`: store new receipts.
    pub const ADD_SUB_RECEIPTS: &str = "add_sub_receipts";
    /// `[{channel, cid}]`: forget receipts.
    pub const DROP_SUB_RECEIPTS: &str = "drop_sub_receipts";
    /// `[{channel, cid, token}]`: every receipt, re-signed.
    pub const REFRESH_SUB_RECEIPTS: &str = "refresh_sub_receipts";
    /// `{}` every heartbeat interval, so the client can see the stream is alive.
    pub const HEARTBEAT: &str = "heartbeat";
}

/// Numbers and frames the events of one stream.
///
/// ```
/// use tidings_sse::event::EventEncoder;
/// let mut enc = EventEncoder::new(2000);
/// let mut out = Vec::new();
/// enc.preamble(&mut out);
/// enc.event(&mut out, "heartbeat", b"{}");
/// assert_eq!(out, b"retry: 2000\n\nevent: heartbeat\nid: 1\ndata: {}\n\n");
/// ```
#[derive(Debug, Clone)]
pub struct EventEncoder {
    next_id: u64,
    retry_ms: u32,
}

impl EventEncoder {
    /// An encoder whose first id is 1.
    pub fn new(retry_ms: u32) -> Self {
        Self {
            next_id: 1,
            retry_ms,
        }
    }

    /// The first bytes of a stream: the `retry:` hint.
    pub fn preamble(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "retry: {}\n\n", self.retry_ms);
    }

    /// Appends one event. `data` may hold newlines: each line becomes its own
    /// `data:` field, which the browser joins back with `\n`.
    pub fn event(&mut self, out: &mut Vec<u8>, name: &str, data: &[u8]) {
        let _ = write!(out, "event: {name}\nid: {}\n", self.next_id);
        self.next_id += 1;
        for line in data.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.push(b'\n');
    }

    /// The id the next event will carry.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }
}

/// Wraps `payload` as one HTTP/1.1 chunk (`Transfer-Encoding: chunked`).
pub fn chunk(out: &mut Vec<u8>, payload: &[u8]) {
    if payload.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", payload.len());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
