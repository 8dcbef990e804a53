//! Runs a [`Connection`] over a non-blocking `tungstenite` client socket on
//! async-io (smol's reactor): the only place with sockets and clocks.
//!
//! The driver future uses only async-io, async-channel and futures-lite, so
//! any executor can poll it; [`Spawn`](super::Spawn) picks the executor.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use smol::{Async, Timer, future};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode};
use tungstenite::{Message, WebSocket};

use super::conn::{Connection, HttpBroadcast, Output};
use super::error::{Error, ErrorCode};
use super::http::Http;
use super::store::Store;
use super::types::{Event, Frame};
use super::{HandleEvent, TokenFn};

/// Locks a mutex, ignoring poisoning (a panicking event handler must not
/// wedge the client; the state itself is never left half-updated by one).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Most inbound messages handled per loop turn before writing again.
const READ_BATCH: usize = 64;

pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) apikey: Option<String>,
    pub(crate) access_token_fn: Option<TokenFn>,
    pub(crate) connect_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) max_message_bytes: usize,
    pub(crate) http: Arc<Http>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

/// Runs `access_token_fn` (a panic counts as "no token").
fn call_token_fn(f: &TokenFn) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| f())).ok().flatten()
}

/// State shared by the [`Client`](super::Client) handles and the driver.
pub(crate) struct Shared {
    pub(crate) core: Mutex<Connection>,
    pub(crate) store: Store,
    pub(crate) replies: Mutex<HashMap<String, Sender<Result<(), Error>>>>,
    pub(crate) handler: Option<Arc<dyn HandleEvent>>,
    pub(crate) subscribers: Mutex<Vec<Sender<Event>>>,
    pub(crate) wake: Sender<()>,
    pub(crate) shutdown: AtomicBool,
    /// An `access_token_fn` call for a heartbeat is running.
    pub(crate) token_refreshing: AtomicBool,
    pub(crate) settings: Settings,
}

impl Shared {
    /// Runs `f` on the state machine, mirrors store changes, wakes the driver.
    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut Connection, Instant) -> R) -> R {
        let r = {
            let mut core = lock(&self.core);
            let r = f(&mut core, Instant::now());
            while let Some(u) = core.poll_store_update() {
                self.store.apply(u);
            }
            r
        };
        self.wake();
        r
    }

    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    fn dispatch(&self, e: &Event) {
        if let Some(h) = &self.handler {
            // A panicking handler loses that event, not the connection.
            let _ = catch_unwind(AssertUnwindSafe(|| h.handle_event(e)));
        }
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| !s.is_closed());
        for s in subs.iter() {
            let _ = s.force_send(e.clone());
        }
    }

    fn resolve(&self, push_ref: &str, result: Result<(), Error>) {
        if let Some(tx) = lock(&self.replies).remove(push_ref) {
            let _ = tx.try_send(result);
        }
    }
}

/// The future that runs one client's socket: spawn [`Driver::run`] on any
/// executor (see [`Client::new`](super::Client::new)). It ends when every
/// [`Client`](super::Client) handle is dropped.
pub struct Driver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) wake_rx: Receiver<()>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

/// A std socket seen through async-io: reads and writes never block, and a
/// write that would block is remembered so the handshake waits for the
/// right readiness.
struct Io {
    tcp: Arc<Async<TcpStream>>,
    write_blocked: Arc<AtomicBool>,
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s: &TcpStream = self.tcp.get_ref();
        s.read(buf)
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s: &TcpStream = self.tcp.get_ref();
        let r = s.write(buf);
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.write_blocked.store(true, Ordering::Relaxed);
        }
        r
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut s: &TcpStream = self.tcp.get_ref();
        s.flush()
    }
}

/// What the WebSocket runs over: the TCP socket, or rustls on it.
#[cfg(feature = "tls")]
type Stream = tungstenite::stream::MaybeTlsStream<Io>;
#[cfg(not(feature = "tls"))]
type Stream = Io;

struct Sock {
    ws: WebSocket<Stream>,
    tcp: Arc<Async<TcpStream>>,
    flush_pending: bool,
    /// rustls cannot read while its own output is stuck (every read first
    /// completes pending writes), so a TLS socket waiting to flush waits
    /// for writability only, instead of spinning on a readable socket.
    tls: bool,
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

enum Read1 {
    Idle,
    Progress,
    Closed(Option<u16>),
}

impl Sock {
    fn send(&mut self, f: Frame) -> Result<(), ()> {
        let m = match f {
            Frame::Text(t) => Message::text(t),
            Frame::Binary(b) => Message::binary(b),
        };
        match self.ws.write(m) {
            Ok(()) => Ok(()),
            Err(e) if would_block(&e) => {
                self.flush_pending = true;
                Ok(())
            }
            Err(_) => Err(()),
        }
    }

    fn flush(&mut self) -> Result<(), ()> {
        match self.ws.flush() {
            Ok(()) => {
                self.flush_pending = false;
                Ok(())
            }
            Err(e) if would_block(&e) => {
                self.flush_pending = true;
                Ok(())
            }
            Err(_) => Err(()),
        }
    }

    /// Feeds up to [`READ_BATCH`] available messages to the state machine.
    fn read_some(&mut self, shared: &Shared) -> Read1 {
        let mut core = lock(&shared.core);
        let mut got = 0;
        let mut close_code = None;
        loop {
            if got == READ_BATCH {
                return Read1::Progress;
            }
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    got += 1;
                    // A malformed frame is dropped; the socket stays up.
                    let _ = core.handle_text(Instant::now(), t.as_str());
                }
                Ok(Message::Binary(b)) => {
                    got += 1;
                    let _ = core.handle_binary(Instant::now(), &b);
                }
                Ok(Message::Close(f)) => {
                    close_code = Some(f.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(_) => {}
                Err(e) if would_block(&e) => {
                    return if got > 0 {
                        Read1::Progress
                    } else {
                        Read1::Idle
                    };
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Read1::Closed(close_code.or(Some(1005)));
                }
                Err(_) => return Read1::Closed(close_code.or(Some(1006))),
            }
        }
    }

    /// Sends a close frame and waits (at most `grace`) for the server's.
    async fn close(mut self, code: u16, reason: &str, grace: Duration) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        if self.ws.close(Some(frame)).is_err() {
            return;
        }
        let deadline = Instant::now() + grace;
        loop {
            let _ = self.ws.flush();
            match self.ws.read() {
                Ok(_) => {}
                Err(e) if would_block(&e) => {
                    let ready = async {
                        let _ = self.tcp.readable().await;
                        true
                    };
                    let late = async {
                        Timer::at(deadline).await;
                        false
                    };
                    if !future::or(ready, late).await {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

impl Driver {
    /// Runs the client until every [`Client`](super::Client) handle is
    /// dropped: connects, reconnects, heartbeats, and moves frames and
    /// events between the socket and the state machine.
    ///
    /// ```no_run
    /// use tidings_ws::client::{Client, ClientConfig};
    /// let (client, driver) = Client::new(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// std::thread::spawn(move || smol::block_on(driver.run()));
    /// # drop(client);
    /// ```
    pub async fn run(self) {
        let shared = &*self.shared;
        let mut sock: Option<Sock> = None;
        loop {
            if shared.shutdown.load(Ordering::Acquire) {
                if let Some(s) = sock.take() {
                    s.close(1000, "client dropped", shared.settings.close_timeout)
                        .await;
                }
                return;
            }
            // 1. Fire due timers and drain what the state machine wants.
            let outputs: Vec<Output> = {
                let mut core = lock(&shared.core);
                let now = Instant::now();
                if core.poll_timeout().is_some_and(|t| t <= now) {
                    core.handle_timeout(now);
                }
                while let Some(u) = core.poll_store_update() {
                    shared.store.apply(u);
                }
                std::iter::from_fn(|| core.poll_output()).collect()
            };
            let mut progressed = !outputs.is_empty();
            let mut broken = false;
            for o in outputs {
                match o {
                    Output::Transmit(f) => {
                        if let Some(s) = sock.as_mut() {
                            broken |= s.send(f).is_err();
                        }
                    }
                    Output::Connect => {
                        sock = None;
                        let opened = self.open().await;
                        let mut core = lock(&shared.core);
                        match opened {
                            Ok(s) => {
                                sock = Some(s);
                                core.handle_open(Instant::now());
                            }
                            Err(e) => core.handle_connect_error(Instant::now(), e),
                        }
                    }
                    Output::Close { code, reason } => {
                        if let Some(s) = sock.take() {
                            s.close(code, &reason, shared.settings.close_timeout).await;
                        }
                        lock(&shared.core).handle_close(Instant::now(), Some(code));
                    }
                    Output::Event(e) => shared.dispatch(&e),
                    Output::Reply { push_ref, result } => shared.resolve(&push_ref, result),
                    Output::RefreshToken => self.refresh_token(),
                    Output::HttpBroadcast(req) => self.post_broadcast(req),
                }
            }
            // 2. Write, then read what has arrived.
            if let Some(s) = sock.as_mut() {
                broken |= s.flush().is_err();
            }
            if broken {
                sock = None;
                lock(&shared.core).handle_close(Instant::now(), Some(1006));
                continue;
            }
            if let Some(s) = sock.as_mut() {
                match s.read_some(shared) {
                    Read1::Idle => {}
                    Read1::Progress => progressed = true,
                    Read1::Closed(code) => {
                        sock = None;
                        lock(&shared.core).handle_close(Instant::now(), code);
                        continue;
                    }
                }
            }
            if progressed {
                continue;
            }
            // 3. Sleep until a command, a deadline, or the socket.
            self.sleep(sock.as_ref()).await;
        }
    }

    async fn sleep(&self, sock: Option<&Sock>) {
        let deadline = lock(&self.shared.core).poll_timeout();
        let command = async {
            let _ = self.wake_rx.recv().await;
        };
        let timer = async {
            match deadline {
                Some(d) => Timer::at(d).await,
                None => Timer::never().await,
            };
        };
        let socket = async {
            match sock {
                Some(s) if s.flush_pending && s.tls => {
                    let _ = s.tcp.writable().await;
                }
                Some(s) if s.flush_pending => {
                    future::or(
                        async {
                            let _ = s.tcp.readable().await;
                        },
                        async {
                            let _ = s.tcp.writable().await;
                        },
                    )
                    .await;
                }
                Some(s) => {
                    let _ = s.tcp.readable().await;
                }
                None => future::pending::<()>().await,
            }
        };
        future::or(command, future::or(timer, socket)).await;
    }

    /// A heartbeat went out: consult `access_token_fn` on the blocking
    /// pool (it may do I/O) and hand a token it returns to the state
    /// machine, which pushes `access_token` to joined channels if it
    /// changed. One call at a time; the driver does not wait for it.
    fn refresh_token(&self) {
        let Some(f) = self.shared.settings.access_token_fn.clone() else {
            return;
        };
        if self.shared.token_refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        smol::unblock(move || {
            if let Some(t) = call_token_fn(&f) {
                shared.with_core(|c, now| c.set_auth(Some(t), now));
            }
            shared.token_refreshing.store(false, Ordering::Release);
        })
        .detach();
    }

    /// POSTs a fallback broadcast on the blocking pool and feeds the
    /// outcome back to the state machine (which wakes the driver).
    fn post_broadcast(&self, req: HttpBroadcast) {
        let shared = Arc::clone(&self.shared);
        smol::unblock(move || {
            let result = shared.settings.http.broadcast(&req);
            shared.with_core(|c, now| c.handle_http_result(now, &req, result));
        })
        .detach();
    }

    /// The token for the upgrade: `access_token_fn` (run on the blocking
    /// pool), then the state machine's token (`access_token` or the last
    /// `set_auth`), then the apikey. A token from the function also goes
    /// into the joins.
    async fn resolve_token(&self) -> Option<String> {
        let shared = &*self.shared;
        let from_fn = match shared.settings.access_token_fn.clone() {
            Some(f) => smol::unblock(move || call_token_fn(&f)).await,
            None => None,
        };
        let mut core = lock(&shared.core);
        if let Some(t) = from_fn {
            core.set_auth(Some(t.clone()), Instant::now());
            return Some(t);
        }
        core.access_token()
            .map(str::to_owned)
            .or_else(|| shared.settings.apikey.clone())
    }

    async fn open(&self) -> Result<Sock, Error> {
        let timeout = self.shared.settings.connect_timeout;
        let url = self.shared.settings.url.clone();
        let attempt = self.open_inner();
        let late = async {
            Timer::after(timeout).await;
            Err(Error::new(ErrorCode::Timeout, "connect timed out")
                .with("url", url)
                .with("after_ms", timeout.as_millis().to_string()))
        };
        future::or(attempt, late).await
    }

    async fn open_inner(&self) -> Result<Sock, Error> {
        let settings = &self.shared.settings;
        let url = settings.url.as_str();
        let mut req = url.into_client_request().map_err(|e| {
            Error::new(ErrorCode::InvalidInput, e.to_string()).with("url", url.to_owned())
        })?;
        let tls = req.uri().scheme_str() == Some("wss");
        #[cfg(not(feature = "tls"))]
        if tls {
            return Err(Error::new(
                ErrorCode::Unsupported,
                "wss:// needs TLS, which this build does not include (feature `tls`); use ws://",
            )
            .with("url", url.to_owned()));
        }
        let token = self.resolve_token().await;
        if let Some(t) = token
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
        {
            req.headers_mut().insert("authorization", v);
        }
        req.headers_mut().insert(
            "x-client-info",
            HeaderValue::from_static(concat!("tidings-ws/", env!("CARGO_PKG_VERSION"))),
        );
        let host = req
            .uri()
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = req.uri().port_u16().unwrap_or(if tls { 443 } else { 80 });
        let tcp = Arc::new(tcp_connect(&host, port, url).await?);
        let _ = tcp.get_ref().set_nodelay(true);
        let write_blocked = Arc::new(AtomicBool::new(false));
        let io = Io {
            tcp: Arc::clone(&tcp),
            write_blocked: Arc::clone(&write_blocked),
        };
        let cfg = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(settings.max_message_bytes))
            .max_frame_size(Some(settings.max_message_bytes));
        // TLS runs inside the same non-blocking handshake loop: rustls only
        // buffers until the socket has room or data, and every
        // `WouldBlock` surfaces as `Interrupted`, resumed below on the
        // readiness it waits for.
        #[cfg(feature = "tls")]
        let mut hs = {
            let connector = if tls {
                tungstenite::Connector::Rustls(Arc::clone(&settings.tls))
            } else {
                tungstenite::Connector::Plain
            };
            tungstenite::client_tls_with_config(req, io, Some(cfg), Some(connector))
        };
        #[cfg(not(feature = "tls"))]
        let mut hs = tungstenite::client::client_with_config(req, io, Some(cfg));
        loop {
            match hs {
                Ok((ws, _resp)) => {
                    return Ok(Sock {
                        ws,
                        tcp,
                        flush_pending: false,
                        tls,
                    });
                }
                Err(HandshakeError::Interrupted(mid)) => {
                    if write_blocked.swap(false, Ordering::Relaxed) {
                        let _ = tcp.writable().await;
                    } else {
                        let _ = tcp.readable().await;
                    }
                    hs = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(handshake_error(&e, url)),
            }
        }
    }
}

/// A failed handshake as a typed error: the server's HTTP refusal, a TLS
/// failure, or an I/O error.
fn handshake_error(e: &tungstenite::Error, url: &str) -> Error {
    if let tungstenite::Error::Http(resp) = e {
        let status = resp.status().as_u16();
        let body = resp
            .body()
            .as_deref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned())
            .unwrap_or_default();
        let code = if matches!(status, 401 | 403) {
            ErrorCode::Unauthorized
        } else {
            ErrorCode::Protocol
        };
        return Error::new(
            code,
            format!("the server refused the upgrade with HTTP {status}"),
        )
        .with("url", url.to_owned())
        .with("body", body);
    }
    match tls_failure(e) {
        Some(reason) => Error::new(ErrorCode::Tls, "the TLS handshake failed")
            .with("url", url.to_owned())
            .with("reason", reason),
        None => Error::new(ErrorCode::Io, format!("WebSocket handshake failed: {e}"))
            .with("url", url.to_owned()),
    }
}

/// The TLS reason behind a handshake failure, if TLS is what failed.
#[cfg(feature = "tls")]
fn tls_failure(e: &tungstenite::Error) -> Option<String> {
    match e {
        tungstenite::Error::Tls(t) => Some(t.to_string()),
        tungstenite::Error::Io(io) => super::tls::tls_failure(io),
        _ => None,
    }
}

#[cfg(not(feature = "tls"))]
fn tls_failure(_: &tungstenite::Error) -> Option<String> {
    None
}

async fn tcp_connect(host: &str, port: u16, url: &str) -> Result<Async<TcpStream>, Error> {
    let io_err = |what: &str, e: &dyn std::fmt::Display| {
        Error::new(ErrorCode::Io, format!("{what}: {e}")).with("url", url.to_owned())
    };
    let addrs = smol::net::resolve((host, port))
        .await
        .map_err(|e| io_err("cannot resolve the host", &e))?;
    let mut last = None;
    for a in addrs {
        match Async::<TcpStream>::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => io_err("cannot connect", &e),
        None => io_err("cannot connect", &"the host resolved to no address"),
    })
}
