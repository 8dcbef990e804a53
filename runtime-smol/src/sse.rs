//! Serves a hub over SSE + POST on the bundled `tiny_http` binding.
//!
//! Worker threads take requests off `tiny_http`, route them and wait for
//! the hub's answer. Each event stream gets a writer that drains its queue,
//! coalescing whatever is waiting into one chunk per write: an async task on
//! the raw, non-blocking socket (plain HTTP, the common case), or a
//! small-stack thread when `tiny_http` keeps the socket. A write error or
//! timeout ends the stream and tells the hub.

use std::io;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use async_channel::Receiver;
use smol::Async;
use smol::io::AsyncWriteExt;
use tidings_core::OsEntropy;
use tidings_core::router::ConnId;
use tidings_sse::event::{DEFAULT_RETRY_MS, EventEncoder, LAST_CHUNK};
use tidings_sse::http::{HttpResponse, Route, route};
use tidings_sse::server::{
    OwnedRequest, ServerConfig, SseStream, bind, frame_events, read_request, respond, stream_head,
};
use tidings_sse::session::{Session, SessionKeys};

use crate::handle::HubHandle;
use crate::hub::{Frame, HubMsg};

/// Stack size of each stream's writer thread (64 KiB).
pub const WRITER_STACK: usize = 64 * 1024;

/// Most bytes coalesced into one write (64 KiB).
pub const MAX_COALESCED_BYTES: usize = 64 * 1024;

/// How the SSE endpoint is served.
#[derive(Debug, Clone)]
pub struct SseConfig {
    /// Listener settings.
    pub server: ServerConfig,
    /// Request worker threads (16): each waits for the hub on one request,
    /// a parked command for up to the park TTL.
    pub workers: usize,
    /// Per-stream outbound queue, in frames.
    pub outbound_queue: usize,
    /// The `retry:` hint for browsers, in ms.
    pub retry_ms: u32,
    /// The REST broadcast endpoints' limits ([`crate::rest`]).
    pub rest: crate::rest::RestConfig,
}

impl SseConfig {
    /// Defaults on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            server: ServerConfig::new(addr),
            workers: 16,
            outbound_queue: crate::hub::DEFAULT_OUTBOUND_QUEUE,
            retry_ms: DEFAULT_RETRY_MS,
            rest: crate::rest::RestConfig::default(),
        }
    }
}

/// A running SSE server.
pub struct SseServer {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    addr: SocketAddr,
    stop_responder: async_channel::Sender<()>,
}

impl SseServer {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking requests and joins the workers. Call
    /// [`HubHandle::shutdown`] first to close the streams.
    pub fn stop(self) {
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
        let _ = self.stop_responder.try_send(());
    }
}

/// Starts serving `hub` over SSE + POST; `keys` must be the hub's.
pub fn serve(hub: &HubHandle, keys: &SessionKeys, config: &SseConfig) -> io::Result<SseServer> {
    let server = Arc::new(bind(&config.server)?);
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| io::Error::other("not an IP listener"))?;
    let responder = Arc::new(smol::Executor::new());
    let (stop_responder, stopped) = async_channel::bounded::<()>(1);
    let ex = responder.clone();
    thread::Builder::new()
        .name("tidings-responder".into())
        .spawn(move || {
            smol::block_on(ex.run(async {
                let _ = stopped.recv().await;
            }));
        })?;
    let workers = (0..config.workers.max(1))
        .map(|i| {
            let server = server.clone();
            let ctx = Ctx {
                hub: hub.clone(),
                keys: keys.clone(),
                queue: config.outbound_queue,
                retry_ms: config.retry_ms,
                rest: config.rest,
                write_timeout: config.server.write_timeout,
                responder: responder.clone(),
            };
            thread::Builder::new()
                .name(format!("tidings-http-{i}"))
                .spawn(move || {
                    while let Ok(rq) = server.recv() {
                        ctx.handle(rq);
                    }
                })
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok(SseServer {
        server,
        workers,
        addr,
        stop_responder,
    })
}

#[derive(Clone)]
struct Ctx {
    hub: HubHandle,
    keys: SessionKeys,
    queue: usize,
    retry_ms: u32,
    rest: crate::rest::RestConfig,
    write_timeout: Duration,
    /// Answers parked commands when they finish, off the worker threads.
    responder: Arc<smol::Executor<'static>>,
}

/// A command's answer: ready, or parked until its stream attaches.
enum Answer {
    Now(HttpResponse),
    Later(Receiver<HttpResponse>),
}

impl Ctx {
    /// Sends a command and waits until it is answered or parked.
    fn command(&self, session: Session, req: tidings_sse::wire::CommandRequest) -> Answer {
        let (tx, reply) = async_channel::bounded(1);
        let (on_park, parked) = async_channel::bounded(1);
        let msg = HubMsg::Command {
            session,
            req,
            reply: tx,
            on_park: Some(on_park),
        };
        if self.hub.tx.send_blocking(msg).is_err() {
            return Answer::Now(Self::unavailable());
        }
        let answered = smol::block_on(smol::future::or(
            async { Some(reply.recv().await) },
            async {
                let _ = parked.recv().await;
                None
            },
        ));
        match answered {
            Some(resp) => Answer::Now(resp.unwrap_or_else(|_| Self::unavailable())),
            None => Answer::Later(reply),
        }
    }

    /// Sends a message built around a reply channel and waits for the answer.
    fn ask<T>(&self, make: impl FnOnce(async_channel::Sender<T>) -> HubMsg) -> Option<T> {
        let (tx, rx) = async_channel::bounded(1);
        self.hub.tx.send_blocking(make(tx)).ok()?;
        rx.recv_blocking().ok()
    }

    fn unavailable() -> HttpResponse {
        HttpResponse::error(503, "unavailable", "the hub is not running")
    }

    fn handle(&self, mut rq: tiny_http::Request) {
        if crate::ws::is_upgrade(&rq) {
            if let Err((rq, resp)) = crate::ws::upgrade(rq, &self.hub, &self.keys, self.queue) {
                let _ = respond(rq, resp);
            }
            return;
        }
        if crate::rest::is_rest(&rq) {
            crate::rest::serve(rq, &self.hub, &self.keys, &self.rest);
            return;
        }
        let req = match read_request(&mut rq) {
            Ok(r) => r,
            Err(resp) => {
                let _ = respond(rq, resp);
                return;
            }
        };
        let resp = match route(&req.as_http(), &self.keys) {
            Err(resp) => resp,
            Ok(None) => self.page(&req),
            Ok(Some(Route::ClientJs)) => HttpResponse {
                status: 200,
                content_type: "application/javascript; charset=utf-8",
                headers: vec![("Cache-Control", "no-cache".to_owned())],
                body: tidings_sse::CLIENT_JS.as_bytes().to_vec(),
            },
            Ok(Some(Route::Handshake(session, req))) => self
                .ask(|reply| HubMsg::Handshake {
                    session,
                    req,
                    reply,
                })
                .unwrap_or_else(Self::unavailable),
            Ok(Some(Route::Command(session, req))) => match self.command(session, req) {
                Answer::Now(resp) => resp,
                Answer::Later(reply) => {
                    // Parked until its stream attaches: answer from the
                    // responder, not from this worker.
                    self.responder
                        .spawn(async move {
                            let resp = reply.recv().await.unwrap_or_else(|_| Ctx::unavailable());
                            let _ = smol::unblock(move || respond(rq, resp)).await;
                        })
                        .detach();
                    return;
                }
            },
            Ok(Some(Route::Navigate(session, req))) => self
                .ask(|reply| HubMsg::Navigate {
                    session,
                    req,
                    reply,
                })
                .unwrap_or_else(Self::unavailable),
            Ok(Some(Route::Events {
                session,
                instance,
                handshake_id,
            })) => {
                // Unbounded storage, bounded by the hub's length check: a
                // bounded channel allocates every slot up front (40 KiB a
                // stream at 1 024 frames).
                let (tx, frames) = async_channel::unbounded();
                let queue = (tx, frames.clone(), self.queue);
                match self.ask(|reply| HubMsg::Open {
                    session,
                    instance,
                    handshake_id,
                    queue,
                    reply,
                }) {
                    Some(Ok(conn)) => {
                        self.stream(rq, conn, frames);
                        return;
                    }
                    Some(Err(resp)) => resp,
                    None => Self::unavailable(),
                }
            }
        };
        let _ = respond(rq, resp);
    }

    /// Any other GET is a page of the app, rendered by the hub.
    fn page(&self, req: &OwnedRequest) -> HttpResponse {
        if req.method != "GET" {
            return HttpResponse::error(404, "not_found", "no such endpoint");
        }
        let existing = req
            .cookie
            .as_deref()
            .and_then(|c| self.keys.from_cookie_header(c));
        let fresh = existing.is_none();
        let session: Session = existing.unwrap_or_else(|| self.keys.mint(&mut OsEntropy));
        let path = req.url.split('?').next().unwrap_or("/").to_owned();
        let set_cookie = self.keys.set_cookie(&session);
        let mut resp = self
            .ask(|reply| HubMsg::Page {
                session,
                path,
                reply,
            })
            .unwrap_or_else(Self::unavailable);
        if fresh && !resp.headers.iter().any(|(k, _)| *k == "Set-Cookie") {
            resp.headers.push(("Set-Cookie", set_cookie));
        }
        resp
    }

    /// Hands the connection to a writer for the stream's lifetime: an async
    /// task on a non-blocking socket when tiny_http gives up the raw socket
    /// (plain HTTP), else a small-stack thread.
    fn stream(&self, mut rq: tiny_http::Request, conn: ConnId, frames: Receiver<Frame>) {
        let hub = self.hub.clone();
        let retry_ms = self.retry_ms;
        if let Some(tcp) = rq.take_raw_stream() {
            let chunked = *rq.http_version() != tiny_http::HTTPVersion(1, 0);
            let timeout = self.write_timeout;
            // Holding tiny_http's writer keeps it from answering the request
            // itself; dropping it shuts the socket's write side: the end.
            let guard = rq.into_writer();
            smol::spawn(async move {
                if let Ok(tcp) = Async::new(tcp) {
                    write_stream_async(tcp, chunked, retry_ms, timeout, &frames).await;
                }
                drop(guard);
                let _ = hub.tx.send(HubMsg::Closed { conn }).await;
            })
            .detach();
            return;
        }
        let spawned = thread::Builder::new()
            .name("tidings-sse-writer".into())
            .stack_size(WRITER_STACK)
            .spawn(move || {
                write_stream(rq, retry_ms, &frames);
                let _ = hub.tx.send_blocking(HubMsg::Closed { conn });
            });
        if spawned.is_err() {
            let _ = self.hub.tx.send_blocking(HubMsg::Closed { conn });
        }
    }
}

/// Writes `bytes`, giving up after `timeout` (a client that stopped reading).
async fn write_within(tcp: &mut Async<TcpStream>, bytes: &[u8], timeout: Duration) -> bool {
    smol::future::or(async { tcp.write_all(bytes).await.is_ok() }, async {
        smol::Timer::after(timeout).await;
        false
    })
    .await
}

/// [`write_stream`] without a thread: queued frames are coalesced and
/// written to the non-blocking socket until the queue closes or a write
/// fails or times out.
async fn write_stream_async(
    mut tcp: Async<TcpStream>,
    chunked: bool,
    retry_ms: u32,
    timeout: Duration,
    frames: &Receiver<Frame>,
) {
    let mut enc = EventEncoder::new(retry_ms);
    let mut events = Vec::with_capacity(256);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(stream_head(chunked));
    enc.preamble(&mut events);
    frame_events(&mut out, &events, chunked);
    if !write_within(&mut tcp, &out, timeout).await {
        return;
    }
    while let Ok(first) = frames.recv().await {
        events.clear();
        enc.event(&mut events, first.name, &first.data);
        while events.len() < MAX_COALESCED_BYTES {
            let Ok(next) = frames.try_recv() else { break };
            enc.event(&mut events, next.name, &next.data);
        }
        out.clear();
        frame_events(&mut out, &events, chunked);
        if !write_within(&mut tcp, &out, timeout).await {
            return;
        }
        // Idle streams should not keep a big buffer from a burst.
        if out.capacity() > 4 * 1024 {
            out = Vec::with_capacity(512);
            events = Vec::with_capacity(256);
        }
    }
    if chunked {
        let _ = write_within(&mut tcp, LAST_CHUNK, timeout).await;
    }
}

/// Writes queued frames until the queue closes (the hub dropped the stream)
/// or a write fails (the client left or stalled past the write timeout).
fn write_stream(rq: tiny_http::Request, retry_ms: u32, frames: &Receiver<Frame>) {
    let mut enc = EventEncoder::new(retry_ms);
    let mut buf = Vec::with_capacity(512);
    enc.preamble(&mut buf);
    let Ok(mut stream) = SseStream::start(rq, &buf) else {
        return;
    };
    while let Ok(first) = frames.recv_blocking() {
        buf.clear();
        enc.event(&mut buf, first.name, &first.data);
        while buf.len() < MAX_COALESCED_BYTES {
            let Ok(next) = frames.try_recv() else { break };
            enc.event(&mut buf, next.name, &next.data);
        }
        if stream.send(&buf).is_err() {
            return;
        }
    }
    let _ = stream.finish();
}
