//! Shared by the client tests against fake servers: the wait bound, a
//! client whose driver runs on smol's global executor, waiting for an event,
//! and the HTTP request a fake server saw.

use std::time::{Duration, Instant};

use serde_json::Value;
use tidings_ws::client::{Client, ClientConfig, Event, Events};

/// How long any single expected event, frame or request may take.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A client on `cfg` and its events; the driver starts after the stream
/// exists, so it sees every change.
pub(crate) fn connect(cfg: ClientConfig) -> (Client, Events) {
    let (client, driver) = Client::new(cfg).unwrap();
    let events = client.events();
    smol::spawn(driver.run()).detach();
    (client, events)
}

/// Waits for the first event matching `f`.
pub(crate) fn wait_for<T>(events: &Events, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    smol::block_on(async {
        let end = Instant::now() + WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let e = smol::future::or(events.recv(), async {
                smol::Timer::after(left).await;
                None
            })
            .await
            .expect("an event in time");
            if let Some(t) = f(&e) {
                return t;
            }
        }
    })
}

/// One HTTP request as a fake server saw it.
#[derive(Debug)]
pub(crate) struct Post {
    pub(crate) method: String,
    pub(crate) target: String,
    /// Lowercased names, trimmed values, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Post {
    /// The request line and headers of `head` (everything up to the blank
    /// line); the body is for the caller to read, `content_length()` bytes.
    pub(crate) fn from_head(head: &str) -> Post {
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split_whitespace();
        let method = request_line.next().unwrap_or_default().to_owned();
        let target = request_line.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Post {
            method,
            target,
            headers,
            body: Vec::new(),
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `content-length` header's value, 0 without one.
    pub(crate) fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The body as text (it must be UTF-8).
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}
