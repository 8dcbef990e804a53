//! The bundled binding on `tiny_http` (patched, see `vendor/tiny_http`).
//!
//! What it solves beyond plain `tiny_http`:
//! * **Streaming.** `tiny_http` never delivers a never-ending `Response`
//!   body; [`SseStream`] writes the head itself on the raw writer from
//!   `Request::into_writer`, frames each write as one HTTP chunk and flushes.
//! * **Timeouts.** [`bind`] sets `SO_SNDTIMEO`, `SO_RCVTIMEO` and
//!   `TCP_NODELAY` on the listening socket; Linux copies them to each accepted
//!   socket. A client that stops reading makes its writer fail after
//!   [`ServerConfig::write_timeout`] instead of blocking forever, and an idle
//!   connection's thread is released after [`ServerConfig::read_timeout`]
//!   (an SSE stream keeps its write half).
//! * **Bursts.** A 4 096-deep listen backlog, and the patched task pool that
//!   serves every connection of a burst.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::event::{LAST_CHUNK, chunk};
use crate::http::{HttpRequest, HttpResponse, MAX_BODY_BYTES};

/// How the listener is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Listen backlog (4 096): a reconnect storm must not overflow it.
    pub backlog: i32,
    /// A blocked write fails after this long (10 s): a stalled reader is dropped.
    pub write_timeout: Duration,
    /// An idle read fails after this long (30 s): idle keep-alive
    /// connections and the read side of streams free their threads.
    pub read_timeout: Duration,
}

impl ServerConfig {
    /// Defaults for `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            backlog: 4096,
            write_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// Binds a listener as [`ServerConfig`] says and starts `tiny_http` on it.
pub fn bind(config: &ServerConfig) -> io::Result<tiny_http::Server> {
    let socket = Socket::new(
        Domain::for_address(config.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_write_timeout(Some(config.write_timeout))?;
    socket.set_read_timeout(Some(config.read_timeout))?;
    socket.bind(&config.addr.into())?;
    socket.listen(config.backlog)?;
    let listener: TcpListener = socket.into();
    tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)
}

/// A request read off `tiny_http`: what [`crate::http::route`] needs.
#[derive(Debug)]
pub struct OwnedRequest {
    /// The method.
    pub method: String,
    /// Path and query.
    pub url: String,
    /// The `Cookie` header.
    pub cookie: Option<String>,
    /// The body (at most [`MAX_BODY_BYTES`]).
    pub body: Vec<u8>,
}

impl OwnedRequest {
    /// Borrows it as an [`HttpRequest`].
    pub fn as_http(&self) -> HttpRequest<'_> {
        HttpRequest {
            method: &self.method,
            url: &self.url,
            cookie: self.cookie.as_deref(),
            body: &self.body,
        }
    }
}

/// Reads the method, URL, cookie and body (bounded) of a request.
pub fn read_request(rq: &mut tiny_http::Request) -> Result<OwnedRequest, HttpResponse> {
    let too_large = || {
        HttpResponse::error(
            413,
            "body_too_large",
            format!("request body exceeds {MAX_BODY_BYTES} bytes"),
        )
    };
    if rq.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    rq.as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| {
            HttpResponse::error(400, "bad_request", format!("could not read the body: {e}"))
        })?;
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let cookie = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("Cookie"))
        .map(|h| h.value.as_str().to_owned());
    Ok(OwnedRequest {
        method: rq.method().as_str().to_owned(),
        url: rq.url().to_owned(),
        cookie,
        body,
    })
}

/// Sends a complete response.
pub fn respond(rq: tiny_http::Request, resp: HttpResponse) -> io::Result<()> {
    let mut out = tiny_http::Response::from_data(resp.body).with_status_code(resp.status);
    let mut headers = vec![("Content-Type", resp.content_type.to_owned())];
    headers.extend(resp.headers);
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            out.add_header(h);
        }
    }
    rq.respond(out)
}

/// The response head of an event stream: chunked on HTTP/1.1, a plain
/// body that ends with the connection on HTTP/1.0.
pub fn stream_head(chunked: bool) -> &'static [u8] {
    if chunked {
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"
    } else {
        b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
    }
}

/// Appends `events` to `out` as the body of an event stream: one chunk when
/// `chunked`, raw otherwise.
pub fn frame_events(out: &mut Vec<u8>, events: &[u8], chunked: bool) {
    if chunked {
        chunk(out, events);
    } else {
        out.extend_from_slice(events);
    }
}

/// An open `text/event-stream` response. Each [`SseStream::send`] is one
/// chunk, flushed; an error means the client is gone (or stalled past the
/// write timeout) and the stream should be dropped.
pub struct SseStream {
    writer: Box<dyn Write + Send + 'static>,
    chunked: bool,
    buf: Vec<u8>,
}

impl SseStream {
    /// Takes over the request's connection and writes the response head and
    /// `preamble` (e.g. the `retry:` hint).
    pub fn start(rq: tiny_http::Request, preamble: &[u8]) -> io::Result<Self> {
        let chunked = *rq.http_version() != tiny_http::HTTPVersion(1, 0);
        let mut writer = rq.into_writer();
        writer.write_all(stream_head(chunked))?;
        let mut stream = Self {
            writer,
            chunked,
            buf: Vec::with_capacity(256),
        };
        stream.send(preamble)?;
        Ok(stream)
    }

    /// Writes `events` (already framed SSE events) as one chunk and flushes.
    pub fn send(&mut self, events: &[u8]) -> io::Result<()> {
        if events.is_empty() {
            return self.writer.flush();
        }
        self.buf.clear();
        frame_events(&mut self.buf, events, self.chunked);
        self.writer.write_all(&self.buf)?;
        self.writer.flush()
    }

    /// Ends the response cleanly (the client's `EventSource` will reconnect).
    pub fn finish(mut self) -> io::Result<()> {
        if self.chunked {
            self.writer.write_all(LAST_CHUNK)?;
        }
        self.writer.flush()
    }
}
