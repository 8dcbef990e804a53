//! SSE transport setup shared by the `sse_fanout` and `sse_idle_rss`
//! examples: a one-page app, an in-process server, and a client that does
//! what the browser client does (page, handshake, event stream) on raw
//! sockets and parses the stream fully (chunked framing, SSE fields, the
//! JSON of each `data`).

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;
use smol::Async;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tidings_core::{Cid, Effects};
use tidings_smol::sse::{SseConfig, SseServer, serve};
use tidings_smol::{App, AppError, Hub, HubConfig, HubHandle, NextAction, Page};

/// The channel every subscriber's page binds (on cid `page`).
pub const ROOM: &str = "{:room, 1}";

/// A page at `/` whose `page` component subscribes to [`ROOM`]; no commands.
pub struct RoomApp;

impl App for RoomApp {
    fn render(&self, path: &str, page: &mut Page) -> Result<Option<String>, AppError> {
        if path != "/" {
            return Ok(None);
        }
        page.component(Cid::PAGE).put_subscription(ROOM)?;
        Ok(Some(
            "<!doctype html><html><head><title>room</title></head><body>room 1</body></html>"
                .into(),
        ))
    }

    fn command(
        &self,
        _: &mut Effects,
        name: &str,
        _: &Value,
    ) -> Result<Option<NextAction>, AppError> {
        Err(AppError::unknown_command(name))
    }
}

/// A hub running [`RoomApp`] and an SSE server in front of it.
pub struct Server {
    /// The hub's immediate API.
    pub handle: HubHandle,
    /// The HTTP server.
    pub server: SseServer,
    hub: JoinHandle<()>,
}

impl Server {
    /// Starts the hub on its own thread and serves it on `127.0.0.1:0`.
    /// `read_timeout` overrides `ServerConfig::read_timeout` (30 s).
    pub fn start(read_timeout: Option<Duration>) -> io::Result<Self> {
        let (hub, handle) = Hub::new(
            RoomApp,
            HubConfig::new(b"bench receipts", b"bench sessions"),
        );
        let keys = hub.keys().clone();
        let hub = thread::Builder::new()
            .name("tidings-hub".into())
            .spawn(move || smol::block_on(hub.run()))?;
        let mut config = SseConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        if let Some(t) = read_timeout {
            config.server.read_timeout = t;
        }
        let server = serve(&handle, &keys, &config)?;
        Ok(Self {
            handle,
            server,
            hub,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Closes every stream, stops the server and the hub.
    pub fn stop(self) {
        self.handle.shutdown();
        self.server.stop();
        let _ = self.hub.join();
    }
}

/// A setup or stream error, with what was going on.
pub fn err(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

/// Decodes `Transfer-Encoding: chunked` incrementally.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    state: ChunkState,
    size_line: Vec<u8>,
    chunks: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size line.
    #[default]
    Size,
    /// This many payload bytes to go.
    Data(usize),
    /// The CRLF after a chunk's payload; the number of bytes still expected.
    DataEnd(u8),
    /// After the last (empty) chunk: the trailer's final CRLF.
    Trailer,
    /// The body has ended.
    Done,
}

impl ChunkDecoder {
    /// Feeds `input`, appending payload bytes to `out`. Returns how many
    /// bytes of `input` were consumed (all of them unless the body ended).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                ChunkState::Done => return Ok(i),
                ChunkState::Size | ChunkState::Trailer => {
                    let b = input[i];
                    i += 1;
                    if b != b'\n' {
                        self.size_line.push(b);
                        if self.size_line.len() > 64 {
                            return Err(err("chunk size line too long"));
                        }
                        continue;
                    }
                    let line = std::mem::take(&mut self.size_line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    if self.state == ChunkState::Trailer {
                        if line.is_empty() {
                            self.state = ChunkState::Done;
                        }
                        continue;
                    }
                    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
                    let hex = std::str::from_utf8(hex).map_err(|_| err("chunk size not ASCII"))?;
                    let size = usize::from_str_radix(hex.trim(), 16)
                        .map_err(|_| err(format!("bad chunk size {hex:?}")))?;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        self.chunks += 1;
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let n = left.min(input.len() - i);
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    self.state = if n == left {
                        ChunkState::DataEnd(2)
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataEnd(left) => {
                    let expected = if left == 2 { b'\r' } else { b'\n' };
                    if input[i] != expected {
                        return Err(err("chunk payload not followed by CRLF"));
                    }
                    i += 1;
                    self.state = if left == 2 {
                        ChunkState::DataEnd(1)
                    } else {
                        ChunkState::Size
                    };
                }
            }
        }
        Ok(i)
    }

    /// Whether the last chunk has been read.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Non-empty chunks started so far. The server writes one chunk per
    /// write, so this counts its writes.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }
}

/// One dispatched SSE event, its `data` parsed as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The `event:` field (`message` when absent).
    pub name: String,
    /// The `id:` field.
    pub id: Option<u64>,
    /// The `data:` lines joined with `\n`, parsed as JSON.
    pub data: Value,
}

/// Parses an SSE body (already de-chunked) into [`Event`]s, per the
/// `EventSource` rules: fields up to a blank line, `data:` lines joined.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    name: String,
    id: Option<u64>,
    data: Vec<u8>,
    has_data: bool,
    /// The last `retry:` value seen.
    pub retry: Option<u64>,
}

impl SseParser {
    /// Feeds de-chunked body bytes; calls `on_event` for each dispatched event.
    pub fn feed(&mut self, input: &[u8], mut on_event: impl FnMut(Event)) -> io::Result<()> {
        for &b in input {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(ev) = self.line_done(&line)? {
                on_event(ev);
            }
            line.clear();
            self.line = line;
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8]) -> io::Result<Option<Event>> {
        if line.is_empty() {
            let name = std::mem::take(&mut self.name);
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            let data = serde_json::from_slice(&self.data).map_err(|e| {
                err(format!(
                    "event {name:?} data is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&self.data)
                ))
            })?;
            self.data.clear();
            return Ok(Some(Event {
                name: if name.is_empty() {
                    "message".into()
                } else {
                    name
                },
                id: self.id,
                data,
            }));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(at) => {
                let v = &line[at + 1..];
                (&line[..at], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let text = || std::str::from_utf8(value).map_err(|_| err("SSE field is not UTF-8"));
        match field {
            b"event" => text()?.clone_into(&mut self.name),
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"id" => {
                self.id = Some(text()?.parse().map_err(|_| err("SSE id is not a number"))?);
            }
            b"retry" => self.retry = text()?.parse().ok(),
            _ => {}
        }
        Ok(None)
    }
}

/// A response's status line and headers.
#[derive(Debug)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 client connection on a non-blocking socket.
pub struct Conn {
    io: Async<TcpStream>,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    scratch: Box<[u8]>,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let io = Async::<TcpStream>::connect(addr).await?;
        io.get_ref().set_nodelay(true)?;
        Ok(Self {
            io,
            buf: Vec::new(),
            scratch: vec![0; 4096].into_boxed_slice(),
        })
    }

    /// Reads more bytes into `buf`; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let n = self.io.read(&mut self.scratch).await?;
        self.buf.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// Sends a request. `body` gets a `Content-Length`.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            let _ = write!(req, "{k}: {v}\r\n");
        }
        if !body.is_empty() || method == "POST" {
            let _ = write!(req, "Content-Length: {}\r\n", body.len());
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.io.write_all(&bytes).await?;
        self.io.flush().await
    }

    /// Reads a status line and headers.
    pub async fn read_head(&mut self) -> io::Result<Head> {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if self.buf.len() > 64 * 1024 {
                return Err(err("response head over 64 KiB"));
            }
            if self.fill().await? == 0 {
                return Err(err("connection closed before the response head"));
            }
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let head = std::str::from_utf8(&head[..end]).map_err(|_| err("head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err(format!("bad status line {status_line:?}")))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok(Head { status, headers })
    }

    /// Reads a whole response (`Content-Length` or chunked body).
    pub async fn read_response(&mut self) -> io::Result<(Head, Vec<u8>)> {
        let head = self.read_head().await?;
        let mut body = Vec::new();
        if head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            let mut dec = ChunkDecoder::default();
            loop {
                let used = dec.feed(&self.buf, &mut body)?;
                self.buf.drain(..used);
                if dec.done() {
                    break;
                }
                if self.fill().await? == 0 {
                    return Err(err("connection closed in a chunked body"));
                }
            }
        } else {
            let len: usize = head
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| err("response without a length"))?;
            while self.buf.len() < len {
                if self.fill().await? == 0 {
                    return Err(err("connection closed in a body"));
                }
            }
            body = self.buf.drain(..len).collect();
        }
        Ok((head, body))
    }
}

/// What the page told the client.
#[derive(Debug)]
pub struct Boot {
    /// `tidings_session=…`, ready for a `Cookie` header.
    pub cookie: String,
    /// The tab's instance id.
    pub instance_id: String,
    /// The receipt tokens from `<script id="tidings-boot">`.
    pub tokens: Vec<String>,
}

/// What precedes the boot JSON in a page.
const BOOT_OPEN: &str = r#"<script id="tidings-boot" type="application/json">"#;

/// The boot data and session cookie of a page response.
pub fn parse_boot(head: &Head, body: &[u8]) -> io::Result<Boot> {
    let cookie = head
        .header("set-cookie")
        .and_then(|v| v.split(';').next())
        .filter(|c| c.starts_with("tidings_session="))
        .ok_or_else(|| err("page set no session cookie"))?
        .to_owned();
    let html = std::str::from_utf8(body).map_err(|_| err("page is not UTF-8"))?;
    let start = html
        .find(BOOT_OPEN)
        .ok_or_else(|| err("page has no tidings-boot script"))?
        + BOOT_OPEN.len();
    let len = html[start..]
        .find("</script>")
        .ok_or_else(|| err("boot script not closed"))?;
    let boot: Value = serde_json::from_str(&html[start..start + len])
        .map_err(|e| err(format!("boot data is not JSON: {e}")))?;
    let instance_id = boot["instance_id"]
        .as_str()
        .ok_or_else(|| err("boot data has no instance_id"))?
        .to_owned();
    let tokens = boot["receipts"]
        .as_array()
        .ok_or_else(|| err("boot data has no receipts"))?
        .iter()
        .map(|r| r["token"].as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| err("a receipt has no token"))?;
    if tokens.is_empty() {
        return Err(err("the page issued no receipt"));
    }
    Ok(Boot {
        cookie,
        instance_id,
        tokens,
    })
}

/// How a client opens its stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Send `Connection: close` on the events request (a browser's
    /// `EventSource` does not): tiny_http then stops reading the connection
    /// after handing the request over, which frees its connection thread.
    pub connection_close: bool,
}

/// An open event stream: the head has been read and the `retry:` preamble
/// parsed.
pub struct EventStream {
    conn: Conn,
    chunks: ChunkDecoder,
    body: Vec<u8>,
    sse: SseParser,
    early: Vec<Event>,
}

/// Does what the browser client does, on one keep-alive connection:
/// `GET /` (session cookie and boot receipts), `POST /tidings/handshake`
/// with the receipts, `GET /tidings/events?…` with the cookie; returns once
/// the stream's head and `retry:` preamble have been read.
pub async fn open_stream(addr: SocketAddr, opts: OpenOptions) -> io::Result<EventStream> {
    let mut conn = Conn::connect(addr).await?;
    conn.send("GET", "/", &[], b"").await?;
    let (head, body) = conn.read_response().await?;
    if head.status != 200 {
        return Err(err(format!("GET / answered {}", head.status)));
    }
    let boot = parse_boot(&head, &body)?;
    let hs = serde_json::json!({"instance_id": boot.instance_id, "receipts": boot.tokens});
    let hs = serde_json::to_vec(&hs).map_err(err)?;
    conn.send(
        "POST",
        "/tidings/handshake",
        &[
            ("Cookie", &boot.cookie),
            ("Content-Type", "application/json"),
        ],
        &hs,
    )
    .await?;
    let (head, body) = conn.read_response().await?;
    if head.status != 200 {
        return Err(err(format!(
            "handshake answered {}: {}",
            head.status,
            String::from_utf8_lossy(&body)
        )));
    }
    let hs: Value = serde_json::from_slice(&body).map_err(err)?;
    let handshake_id = hs["handshake_id"]
        .as_str()
        .ok_or_else(|| err("handshake answer has no handshake_id"))?;
    let accepted = hs["receipts"].as_array().map_or(0, Vec::len);
    if accepted != boot.tokens.len() {
        return Err(err(format!(
            "handshake accepted {accepted} of {} receipts",
            boot.tokens.len()
        )));
    }
    let path = format!(
        "/tidings/events?instance_id={}&handshake_id={handshake_id}",
        boot.instance_id
    );
    let mut headers = vec![
        ("Cookie", boot.cookie.as_str()),
        ("Accept", "text/event-stream"),
    ];
    if opts.connection_close {
        headers.push(("Connection", "close"));
    }
    conn.send("GET", &path, &headers, b"").await?;
    let head = conn.read_head().await?;
    if head.status != 200 {
        let body = conn.read_response_body_lossy(&head).await;
        return Err(err(format!("events answered {}: {body}", head.status)));
    }
    if head.header("content-type") != Some("text/event-stream")
        || head.header("transfer-encoding") != Some("chunked")
    {
        return Err(err(format!(
            "events head is not a chunked event stream: {head:?}"
        )));
    }
    let mut stream = EventStream {
        conn,
        chunks: ChunkDecoder::default(),
        body: Vec::new(),
        sse: SseParser::default(),
        early: Vec::new(),
    };
    let mut early = Vec::new();
    while stream.sse.retry.is_none() {
        if !stream.read_more(|e| early.push(e)).await? {
            return Err(err("stream ended before its retry: preamble"));
        }
    }
    stream.early = early;
    Ok(stream)
}

impl Conn {
    /// The body of an error response, for messages (empty if unreadable).
    async fn read_response_body_lossy(&mut self, head: &Head) -> String {
        let len = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0usize);
        while self.buf.len() < len {
            if !matches!(self.fill().await, Ok(n) if n > 0) {
                break;
            }
        }
        String::from_utf8_lossy(&self.buf[..len.min(self.buf.len())]).into_owned()
    }
}

impl EventStream {
    /// Parses what is already buffered, then reads once more from the
    /// socket and parses that; `Ok(false)` when the stream has ended.
    pub async fn read_more(&mut self, mut on_event: impl FnMut(Event)) -> io::Result<bool> {
        loop {
            if !self.conn.buf.is_empty() {
                let used = self.chunks.feed(&self.conn.buf, &mut self.body)?;
                self.conn.buf.drain(..used);
                self.sse.feed(&self.body, &mut on_event)?;
                self.body.clear();
                if self.chunks.done() {
                    return Ok(false);
                }
                return Ok(true);
            }
            if self.conn.fill().await? == 0 {
                return Err(err("connection closed inside the event stream"));
            }
        }
    }

    /// Reads whatever has arrived, without waiting, and parses it;
    /// `Ok(false)` if the server has closed or ended the stream.
    pub fn poll_now(&mut self, mut on_event: impl FnMut(Event)) -> io::Result<bool> {
        use std::io::Read as _;
        let mut open = true;
        let mut socket: &TcpStream = self.conn.io.get_ref();
        loop {
            match socket.read(&mut self.conn.scratch) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => self.conn.buf.extend_from_slice(&self.conn.scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let used = self.chunks.feed(&self.conn.buf, &mut self.body)?;
        self.conn.buf.drain(..used);
        self.sse.feed(&self.body, &mut on_event)?;
        self.body.clear();
        Ok(open && !self.chunks.done())
    }

    /// Chunks (server writes) received so far, the preamble's included.
    pub fn chunks(&self) -> u64 {
        self.chunks.chunks()
    }

    /// Events that arrived together with the preamble (none expected).
    pub fn take_early(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.early)
    }

    /// The `retry:` hint the stream started with.
    pub fn retry(&self) -> Option<u64> {
        self.sse.retry
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns `(soft, hard)`
/// as they are afterwards. Children inherit the raised limit.
#[allow(
    unsafe_code,
    reason = "getrlimit/setrlimit have no safe wrapper in std; both only read or write the struct passed"
)]
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid `rlimit`; the kernel only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// The `p`-th percentile (`p` in 1..=100) of `sorted`, by nearest rank:
/// the smallest value with at least `p`% of the values at or below it.
pub fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Nanoseconds as milliseconds with 2 decimals.
#[allow(clippy::cast_precision_loss, reason = "for display")]
pub fn ms(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_sse_with_json_data() {
        let body = b"retry: 1000\n\nevent: broadcast\nid: 1\ndata: {\"action\":\"ping\",\n\
                     data: \"params\":{\"t\":3}}\n\n: comment\n\n";
        let mut wire = Vec::new();
        let (a, b) = body.split_at(17);
        for part in [a, b] {
            wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            wire.extend_from_slice(part);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        // Feed one byte at a time: every state boundary is crossed.
        let mut dec = ChunkDecoder::default();
        let mut sse = SseParser::default();
        let mut events = Vec::new();
        let mut payload = Vec::new();
        for byte in wire.chunks(1) {
            assert_eq!(dec.feed(byte, &mut payload).unwrap(), 1);
            sse.feed(&payload, |e| events.push(e)).unwrap();
            payload.clear();
        }
        assert!(dec.done());
        assert_eq!(dec.chunks(), 2);
        assert_eq!(sse.retry, Some(1000));
        assert_eq!(
            events,
            vec![Event {
                name: "broadcast".into(),
                id: Some(1),
                data: serde_json::json!({"action": "ping", "params": {"t": 3}}),
            }]
        );
    }

    #[test]
    fn percentiles() {
        let xs: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&xs, 50), 50);
        assert_eq!(percentile(&xs, 99), 99);
        assert_eq!(percentile(&xs, 100), 100);
        assert_eq!(percentile(&xs[..50], 99), 50);
        assert_eq!(percentile(&xs[..50], 50), 25);
    }
}
