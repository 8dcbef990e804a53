//! Harness for the SSE integration tests: a hub + SSE server on a loopback
//! port, HTTP calls through `ureq`, and a small Server-Sent Events reader
//! over a raw `TcpStream` (chunked transfer encoding, `event:`/`id:`/`data:`
//! lines, bounded waits so no test hangs); a blocking Phoenix socket client
//! in [`phoenix`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidings_core::{InstanceId, SessionId};
use tidings_smol::sse::{SseConfig, SseServer, serve};
use tidings_smol::{App, Hub, HubConfig, HubHandle};
use tidings_sse::session::SessionKeys;

// The Phoenix socket client is for the WebSocket tests; `sse.rs` includes
// this module without it in use (it has no `allow(dead_code)` of its own).
#[allow(dead_code)]
pub(crate) mod phoenix;

/// The hub's receipt secret (tests that craft receipts sign with it too).
pub(crate) const RECEIPT_SECRET: &[u8] = b"tidings-test/receipts";
/// The hub's session-cookie secret.
pub(crate) const SESSION_SECRET: &[u8] = b"tidings-test/sessions";

/// How long any single expected event or response may take.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A hub and its SSE server on `127.0.0.1:<ephemeral>`, stopped on drop.
pub(crate) struct TestServer {
    pub(crate) hub: HubHandle,
    pub(crate) keys: SessionKeys,
    pub(crate) addr: SocketAddr,
    server: Option<SseServer>,
    hub_thread: Option<JoinHandle<()>>,
    shut_down: bool,
    agent: ureq::Agent,
    /// Released after the teardown (fields drop after `Drop::drop`).
    _guard: Guard,
}

/// Test servers run side by side, load tests alone.
static RUNNING: RwLock<()> = RwLock::new(());

/// Held for a test server's lifetime: shared, or alone.
type Guard = (
    Option<RwLockReadGuard<'static, ()>>,
    Option<RwLockWriteGuard<'static, ()>>,
);

impl TestServer {
    /// Starts `app` with test secrets, a 200 ms heartbeat, and whatever
    /// `tweak` changes in the hub's and the server's settings. Runs beside
    /// other such tests, never beside an [`TestServer::start_alone`] one.
    pub(crate) fn start(app: impl App, tweak: impl FnOnce(&mut HubConfig, &mut SseConfig)) -> Self {
        let guard = (
            Some(RUNNING.read().unwrap_or_else(PoisonError::into_inner)),
            None,
        );
        Self::start_guarded(app, tweak, guard)
    }

    /// Like [`TestServer::start`], for a load test: it runs while no other
    /// test server does, so neither skews the other's timings.
    pub(crate) fn start_alone(
        app: impl App,
        tweak: impl FnOnce(&mut HubConfig, &mut SseConfig),
    ) -> Self {
        let guard = (
            None,
            Some(RUNNING.write().unwrap_or_else(PoisonError::into_inner)),
        );
        Self::start_guarded(app, tweak, guard)
    }

    fn start_guarded(
        app: impl App,
        tweak: impl FnOnce(&mut HubConfig, &mut SseConfig),
        guard: Guard,
    ) -> Self {
        let mut hub_config = HubConfig::new(RECEIPT_SECRET, SESSION_SECRET);
        hub_config.heartbeat = Duration::from_millis(200);
        let mut sse_config = SseConfig::new("127.0.0.1:0".parse().expect("an address"));
        tweak(&mut hub_config, &mut sse_config);
        let (hub, handle) = Hub::new(app, hub_config);
        let keys = hub.keys().clone();
        let hub_thread = std::thread::Builder::new()
            .name("test-hub".into())
            .spawn(move || smol::block_on(hub.run()))
            .expect("spawning the hub");
        let server = serve(&handle, &keys, &sse_config).expect("serving on loopback");
        let addr = server.addr();
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(15)))
                .build(),
        );
        Self {
            hub: handle,
            keys,
            addr,
            server: Some(server),
            hub_thread: Some(hub_thread),
            shut_down: false,
            agent,
            _guard: guard,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path`, optionally with a cookie header.
    pub(crate) fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        let mut rq = self.agent.get(self.url(path));
        if let Some(c) = cookie {
            rq = rq.header("Cookie", c);
        }
        Resp::from(rq.call().expect("GET reaches the server"))
    }

    /// `POST path` with a raw body.
    pub(crate) fn post_raw(&self, path: &str, cookie: Option<&str>, body: &str) -> Resp {
        let mut rq = self
            .agent
            .post(self.url(path))
            .header("Content-Type", "application/json");
        if let Some(c) = cookie {
            rq = rq.header("Cookie", c);
        }
        Resp::from(rq.send(body).expect("POST reaches the server"))
    }

    /// `POST path` with a JSON body.
    pub(crate) fn post(&self, path: &str, cookie: Option<&str>, body: &Value) -> Resp {
        self.post_raw(path, cookie, &body.to_string())
    }

    /// Loads a page as a browser would: a fresh instance, the boot data,
    /// and the session cookie (a new one when `cookie` is `None`).
    pub(crate) fn load(&self, path: &str, cookie: Option<&str>) -> Tab {
        let resp = self.get(path, cookie);
        assert_eq!(resp.status, 200, "page {path}: {}", resp.text);
        let cookie = resp
            .cookie
            .clone()
            .or_else(|| cookie.map(str::to_owned))
            .expect("a first page load sets the session cookie");
        let boot = boot_data(&resp.text);
        Tab {
            cookie,
            instance: boot["instance_id"]
                .as_str()
                .expect("boot data has the instance id")
                .to_owned(),
            receipts: boot["receipts"]
                .as_array()
                .expect("boot data has receipts")
                .clone(),
            boot_self_echoes: boot["self_echoes"].clone(),
        }
    }

    /// `POST /tidings/handshake` with `tokens`; asserts it succeeds.
    pub(crate) fn handshake(&self, tab: &Tab, tokens: &[String]) -> Handshake {
        let resp = self.handshake_resp(tab, tokens);
        assert_eq!(resp.status, 200, "handshake: {}", resp.text);
        Handshake {
            id: resp.body["handshake_id"]
                .as_str()
                .expect("handshake id")
                .to_owned(),
            receipts: resp.body["receipts"].as_array().expect("receipts").clone(),
        }
    }

    /// `POST /tidings/handshake`, whatever it answers.
    pub(crate) fn handshake_resp(&self, tab: &Tab, tokens: &[String]) -> Resp {
        self.post(
            "/tidings/handshake",
            Some(&tab.cookie),
            &json!({"instance_id": tab.instance, "receipts": tokens}),
        )
    }

    /// `GET /tidings/events` for `tab` with a handshake id.
    pub(crate) fn open(&self, tab: &Tab, handshake_id: &str) -> Result<EventStream, Resp> {
        EventStream::open(
            self.addr,
            Some(&tab.cookie),
            &events_path(&tab.instance, handshake_id),
        )
    }

    /// Handshake with every receipt the tab holds, then open its stream.
    pub(crate) fn connect(&self, tab: &Tab) -> EventStream {
        let hs = self.handshake(tab, &tab.tokens());
        self.open(tab, &hs.id)
            .unwrap_or_else(|r| panic!("opening the stream: {} {}", r.status, r.text))
    }

    /// `POST /tidings/command`.
    pub(crate) fn command(&self, tab: &Tab, target: &str, name: &str, params: &Value) -> Resp {
        self.post(
            "/tidings/command",
            Some(&tab.cookie),
            &json!({"instance_id": tab.instance, "target": target, "name": name, "params": params}),
        )
    }

    /// `POST /tidings/navigate`.
    pub(crate) fn navigate(&self, tab: &Tab, path: &str, claimed: &Value) -> Resp {
        self.post(
            "/tidings/navigate",
            Some(&tab.cookie),
            &json!({"instance_id": tab.instance, "path": path, "claimed": claimed}),
        )
    }

    /// The session behind a tab's cookie.
    pub(crate) fn session_of(&self, tab: &Tab) -> SessionId {
        self.keys
            .from_cookie_header(&tab.cookie)
            .expect("the tab's cookie is valid")
            .id
    }
}

impl TestServer {
    /// Shuts the hub down now (the server stops on drop).
    pub(crate) fn shutdown(&mut self) {
        self.shut_down = true;
        self.hub.shutdown();
    }
}

impl Drop for TestServer {
    /// Shuts the hub down (once), stops the server and joins the hub, on a
    /// helper thread: a teardown that hangs fails the test after 5 s instead
    /// of hanging the run.
    fn drop(&mut self) {
        let hub = (!self.shut_down).then(|| self.hub.clone());
        let server = self.server.take();
        let hub_thread = self.hub_thread.take();
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            if let Some(hub) = hub {
                hub.shutdown();
            }
            if let Some(server) = server {
                server.stop();
            }
            if let Some(t) = hub_thread {
                let _ = t.join();
            }
            let _ = done.send(());
        });
        let torn_down = finished.recv_timeout(WAIT).is_ok();
        assert!(
            torn_down || std::thread::panicking(),
            "tearing the test server down hung (hub shutdown or joining the workers)"
        );
    }
}

/// The path of the events endpoint.
pub(crate) fn events_path(instance: &str, handshake_id: &str) -> String {
    format!("/tidings/events?instance_id={instance}&handshake_id={handshake_id}")
}

/// The JSON in a page's `<script id="tidings-boot">`.
fn boot_data(html: &str) -> Value {
    let start = html
        .find(r#"<script id="tidings-boot" type="application/json">"#)
        .expect("the page embeds the boot data");
    let rest = &html[start..];
    let open = rest.find('>').expect("script tag") + 1;
    let close = rest.find("</script>").expect("script end");
    serde_json::from_str(&rest[open..close].replace("<\\/", "</")).expect("boot data is JSON")
}

/// One browser tab: its session cookie, instance and receipts.
#[derive(Debug, Clone)]
pub(crate) struct Tab {
    /// `tidings_session=…`, ready for a `Cookie` header.
    pub(crate) cookie: String,
    pub(crate) instance: String,
    /// `[{channel, cid, token}]`.
    pub(crate) receipts: Vec<Value>,
    pub(crate) boot_self_echoes: Value,
}

impl Tab {
    pub(crate) fn tokens(&self) -> Vec<String> {
        tokens(&self.receipts)
    }

    pub(crate) fn instance_id(&self) -> InstanceId {
        InstanceId::parse(&self.instance).expect("instance ids are UUIDv4")
    }

    /// Takes the new cookie a response set, if any.
    pub(crate) fn absorb(&mut self, resp: &Resp) {
        if let Some(c) = &resp.cookie {
            self.cookie.clone_from(c);
        }
    }
}

/// The tokens of `[{channel, cid, token}]`.
pub(crate) fn tokens(receipts: &[Value]) -> Vec<String> {
    receipts
        .iter()
        .map(|r| {
            r["token"]
                .as_str()
                .expect("a receipt has a token")
                .to_owned()
        })
        .collect()
}

/// `[{channel, cid}]` of `[{channel, cid, token}]`, as a navigation claims them.
pub(crate) fn keys_of(receipts: &[Value]) -> Value {
    receipts
        .iter()
        .map(|r| json!({"channel": r["channel"], "cid": r["cid"]}))
        .collect()
}

/// The JSON form of `{:room, n}`.
pub(crate) fn room_json(n: i64) -> Value {
    json!({"t": "room", "v": [n]})
}

/// A redeemed handshake.
#[derive(Debug)]
pub(crate) struct Handshake {
    pub(crate) id: String,
    pub(crate) receipts: Vec<Value>,
}

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub(crate) body: Value,
    /// `tidings_session=…` from a `Set-Cookie` header.
    pub(crate) cookie: Option<String>,
}

impl Resp {
    fn new(status: u16, text: String, cookie: Option<String>) -> Self {
        Self {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            cookie,
        }
    }

    /// Asserts a 200 and returns the JSON body.
    pub(crate) fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "expected 200, got: {}", self.text);
        &self.body
    }

    /// Asserts an error response `{"error": {code, message}}` with this status and code.
    pub(crate) fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.body["error"]["code"].as_str()),
            (status, Some(code)),
            "body: {}",
            self.text
        );
        let message = self.body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "an error has a message: {}", self.text);
    }
}

impl From<ureq::http::Response<ureq::Body>> for Resp {
    fn from(resp: ureq::http::Response<ureq::Body>) -> Self {
        let status = resp.status().as_u16();
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("tidings_session="))
            .map(|v| v.split(';').next().unwrap_or(v).to_owned());
        let text = resp
            .into_body()
            .read_to_string()
            .expect("the body reads as text");
        Self::new(status, text, cookie)
    }
}

// -- a Server-Sent Events reader ---------------------------------------------

/// One event off a stream.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) id: Option<u64>,
    pub(crate) data: String,
}

impl Event {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event {} data is not JSON ({e}): {}", self.name, self.data))
    }

    /// The `action` of a `broadcast` event (`None` for other events).
    pub(crate) fn action(&self) -> Option<String> {
        (self.name == "broadcast")
            .then(|| self.json()["action"].as_str().map(str::to_owned))
            .flatten()
    }
}

/// What waiting on a stream gave.
#[derive(Debug)]
pub(crate) enum Next {
    Event(Event),
    Timeout,
    /// The server ended the body (last chunk) or closed the connection.
    Ended,
}

enum Fill {
    Data,
    Timeout,
    Eof,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A `text/event-stream` response being read off a raw socket.
pub(crate) struct EventStream {
    sock: TcpStream,
    /// Bytes received and not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked event text not yet parsed, from `body_at`.
    body: Vec<u8>,
    body_at: usize,
    chunked: bool,
    ended: bool,
    /// Whether the body ended with the last chunk (not a bare close).
    pub(crate) clean_end: bool,
    /// The `retry:` hint, once seen.
    pub(crate) retry: Option<u64>,
}

impl EventStream {
    /// Sends `GET path` on a fresh connection (no response is read).
    pub(crate) fn send_request(addr: SocketAddr, cookie: Option<&str>, path: &str) -> TcpStream {
        let mut sock = TcpStream::connect(addr).expect("connecting to the server");
        sock.set_nodelay(true).expect("nodelay");
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );
        sock.write_all(head.as_bytes())
            .expect("sending the request");
        sock
    }

    /// Opens an event stream: `Err` with the (complete) response unless it is a 200 stream.
    pub(crate) fn open(addr: SocketAddr, cookie: Option<&str>, path: &str) -> Result<Self, Resp> {
        Self::read_head(
            Self::send_request(addr, cookie, path),
            Instant::now() + WAIT,
        )
    }

    /// Reads the response head off a socket [`EventStream::send_request`]
    /// wrote to. No head by `deadline` (or a closed connection): `Err` with
    /// status 0.
    pub(crate) fn read_head(sock: TcpStream, deadline: Instant) -> Result<Self, Resp> {
        let mut s = Self {
            sock,
            raw: Vec::new(),
            body: Vec::new(),
            body_at: 0,
            chunked: false,
            ended: false,
            clean_end: false,
            retry: None,
        };
        let end = loop {
            if let Some(end) = find(&s.raw, b"\r\n\r\n") {
                break end;
            }
            match s.fill(deadline) {
                Fill::Data => {}
                Fill::Timeout => {
                    return Err(Resp::new(
                        0,
                        "no response head before the deadline".into(),
                        None,
                    ));
                }
                Fill::Eof => {
                    return Err(Resp::new(0, "closed before the response head".into(), None));
                }
            }
        };
        let head = String::from_utf8_lossy(&s.raw[..end]).into_owned();
        s.raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let mut content_length = None;
        let mut content_type = String::new();
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "transfer-encoding" => s.chunked = v.eq_ignore_ascii_case("chunked"),
                "content-length" => content_length = v.parse::<usize>().ok(),
                "content-type" => v.clone_into(&mut content_type),
                _ => {}
            }
        }
        if status == 200 && content_type.starts_with("text/event-stream") {
            s.decode();
            return Ok(s);
        }
        // A complete (error) response: read its body.
        let body = if let Some(len) = content_length {
            while s.raw.len() < len {
                if !matches!(s.fill(deadline), Fill::Data) {
                    break;
                }
            }
            String::from_utf8_lossy(&s.raw[..len.min(s.raw.len())]).into_owned()
        } else {
            s.decode();
            while !s.ended && matches!(s.fill(deadline), Fill::Data) {
                s.decode();
            }
            String::from_utf8_lossy(&s.body).into_owned()
        };
        Err(Resp::new(status, body, None))
    }

    fn fill(&mut self, deadline: Instant) -> Fill {
        let now = Instant::now();
        if now >= deadline {
            return Fill::Timeout;
        }
        let wait = (deadline - now).max(Duration::from_millis(1));
        self.sock
            .set_read_timeout(Some(wait))
            .expect("setting a read timeout");
        let filled = self.raw.len();
        self.raw.resize(filled + 64 * 1024, 0);
        let read = self.sock.read(&mut self.raw[filled..]);
        self.raw.truncate(filled + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => Fill::Eof,
            Ok(_) => Fill::Data,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Fill::Timeout
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Fill::Data,
            // Reset and the like: the stream is gone.
            Err(_) => Fill::Eof,
        }
    }

    /// Moves complete chunks from `raw` to `body`.
    fn decode(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        let mut at = 0;
        while !self.ended {
            let Some(eol) = find(&self.raw[at..], b"\r\n") else {
                break;
            };
            let size_text = String::from_utf8_lossy(&self.raw[at..at + eol]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
            if size == 0 {
                self.ended = true;
                self.clean_end = true;
                break;
            }
            let start = at + eol + 2;
            if self.raw.len() < start + size + 2 {
                break;
            }
            assert_eq!(
                &self.raw[start + size..start + size + 2],
                b"\r\n",
                "a chunk ends with CRLF"
            );
            self.body.extend_from_slice(&self.raw[start..start + size]);
            at = start + size + 2;
        }
        self.raw.drain(..at);
    }

    /// Parses the next complete event out of `body`, skipping field-less
    /// blocks (the `retry:` preamble).
    fn parse(&mut self) -> Option<Event> {
        loop {
            let rest = &self.body[self.body_at..];
            let end = find(rest, b"\n\n")?;
            let block = String::from_utf8(rest[..end].to_vec()).expect("events are UTF-8");
            self.body_at += end + 2;
            if self.body_at > 1 << 20 {
                self.body.drain(..self.body_at);
                self.body_at = 0;
            }
            let mut name = None;
            let mut id = None;
            let mut data: Option<String> = None;
            for line in block.split('\n') {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => name = Some(value.to_owned()),
                    "id" => id = Some(value.parse().expect("ids are numbers")),
                    "retry" => self.retry = Some(value.parse().expect("retry is a number")),
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    },
                    _ => {}
                }
            }
            if let Some(data) = data {
                return Some(Event {
                    name: name.unwrap_or_else(|| "message".into()),
                    id,
                    data,
                });
            }
        }
    }

    /// The next event within `timeout`.
    pub(crate) fn next_event(&mut self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.parse() {
                return Next::Event(ev);
            }
            if self.ended {
                return Next::Ended;
            }
            match self.fill(deadline) {
                Fill::Data => self.decode(),
                Fill::Timeout => return Next::Timeout,
                Fill::Eof => self.ended = true,
            }
        }
    }

    /// The next event that is not a heartbeat, within `timeout`.
    pub(crate) fn next_message(&mut self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Next::Event(ev) if ev.name == "heartbeat" => {}
                other => return other,
            }
        }
    }

    /// The next non-heartbeat event, which must be `name`; returns its data.
    pub(crate) fn expect(&mut self, name: &str) -> Value {
        match self.next_message(WAIT) {
            Next::Event(ev) if ev.name == name => ev.json(),
            other => panic!("expected a {name} event, got {other:?}"),
        }
    }

    /// The next non-heartbeat event, which must broadcast `action`; returns its data.
    pub(crate) fn expect_broadcast(&mut self, action: &str) -> Value {
        let data = self.expect("broadcast");
        assert_eq!(data["action"], action, "broadcast: {data}");
        data
    }

    /// The actions of the broadcasts before the one whose action is
    /// `marker` (which must come within [`WAIT`]); any other event fails.
    pub(crate) fn actions_until(&mut self, marker: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.next_message(WAIT) {
                Next::Event(ev) if ev.name == "broadcast" => {
                    let action = ev.action().expect("a broadcast has an action");
                    if action == marker {
                        return seen;
                    }
                    seen.push(action);
                }
                other => panic!("waiting for broadcast {marker:?} after {seen:?}: got {other:?}"),
            }
        }
    }

    /// Reads until the server ends the stream (within `timeout`); returns
    /// the events read on the way.
    pub(crate) fn read_to_end(&mut self, timeout: Duration) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            match self.next_event(deadline.saturating_duration_since(Instant::now())) {
                Next::Event(ev) => events.push(ev),
                Next::Ended => return events,
                Next::Timeout => panic!(
                    "the stream did not end within {timeout:?} ({} events read)",
                    events.len()
                ),
            }
        }
    }
}
