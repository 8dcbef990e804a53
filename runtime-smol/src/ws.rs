//! Serves Phoenix sockets (`/socket/websocket`, `/realtime/v1/websocket`)
//! on the same listener as SSE: the upgrade is answered by a worker, then
//! one async task per socket runs `tungstenite` on the non-blocking raw
//! socket — no thread per connection. The task feeds client frames to the
//! socket's sans-IO state and its requests to the hub, and writes what the
//! hub queued, flushing only when the socket is writable.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_channel::{Receiver, Sender};
use smol::Async;
use tidings_core::OsEntropy;
use tidings_core::router::ConnId;
use tidings_sse::http::{HttpResponse, query_param, split_url};
use tidings_sse::session::SessionKeys;
use tidings_ws::frame::{FrameIn, Vsn};
use tidings_ws::server::socket::{OutFrame, PhoenixSocket, SocketConfig, Step, WsOut};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::handle::HubHandle;
use crate::hub::HubMsg;

/// The paths Phoenix clients connect to.
pub const WS_PATHS: [&str; 2] = ["/socket/websocket", "/realtime/v1/websocket"];

/// tungstenite's read buffer per socket (4 KiB; its default of 128 KiB
/// would cost 1.3 GiB at 10 000 sockets).
pub const WS_READ_BUFFER: usize = 4 * 1024;

/// Largest message a client may send (1 MiB, SPEC §10).
pub const WS_MAX_MESSAGE: usize = 1 << 20;

/// Most queued items written before the socket is read again (64).
pub const WS_WRITE_BATCH: usize = 64;

/// How long a close handshake may take before the socket is dropped (2 s).
pub const WS_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Whether a request asks for a Phoenix socket.
pub(crate) fn is_upgrade(rq: &tiny_http::Request) -> bool {
    let (path, _) = split_url(rq.url());
    WS_PATHS.contains(&path)
        && rq
            .headers()
            .iter()
            .any(|h| h.field.equiv("Upgrade") && h.value.as_str().eq_ignore_ascii_case("websocket"))
}

fn header<'a>(rq: &'a tiny_http::Request, name: &'static str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

fn json_error(status: u16, msg: &str) -> HttpResponse {
    HttpResponse::json(status, &serde_json::json!({ "error": msg }))
}

/// Answers an upgrade request: checks it, asks the hub to open a socket,
/// then hands the raw socket to a task. Errors are answered as HTTP JSON
/// `{"error": …}` (400 bad request or vsn, 401 refused, 503 hub gone).
pub(crate) fn upgrade(
    mut rq: tiny_http::Request,
    hub: &HubHandle,
    keys: &SessionKeys,
    queue: usize,
) -> Result<(), (tiny_http::Request, HttpResponse)> {
    let (_, query) = split_url(rq.url());
    let vsn = match Vsn::from_query(query_param(query, "vsn")) {
        Ok(v) => v,
        Err(e) => return Err((rq, json_error(400, &e.to_string()))),
    };
    let key = header(&rq, "Sec-WebSocket-Key").map(str::to_owned);
    let Some(key) = key.filter(|_| header(&rq, "Sec-WebSocket-Version") == Some("13")) else {
        let msg = "a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13";
        return Err((rq, json_error(400, msg)));
    };
    let apikey = query_param(query, "apikey")
        .map(str::to_owned)
        .or_else(|| header(&rq, "x-api-key").map(str::to_owned));
    let session = header(&rq, "Cookie")
        .and_then(|c| keys.from_cookie_header(c))
        .unwrap_or_else(|| keys.mint(&mut OsEntropy));
    let (tx, frames) = async_channel::unbounded();
    let (reply, answer) = async_channel::bounded(1);
    let msg = HubMsg::WsOpen {
        session,
        apikey,
        queue: (tx, frames.clone(), queue),
        reply,
    };
    if hub.tx.send_blocking(msg).is_err() {
        return Err((rq, json_error(503, "the hub is not running")));
    }
    let conn = match answer.recv_blocking() {
        Ok(Ok(conn)) => conn,
        Ok(Err(resp)) => return Err((rq, resp)),
        Err(_) => return Err((rq, json_error(503, "the hub is not running"))),
    };
    let raw = rq.take_raw_stream();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = tiny_http::Response::empty(101).with_header(
        tiny_http::Header::from_bytes(&b"Sec-WebSocket-Accept"[..], accept.as_bytes())
            .expect("an accept key is a valid header"),
    );
    // The upgraded stream keeps tiny_http from shutting the socket; the
    // task does its I/O on the raw, non-blocking handle.
    let guard = rq.upgrade("websocket", response);
    let hub_tx = hub.tx.clone();
    smol::spawn(async move {
        if let Some(tcp) = raw.and_then(|t| Async::new(t).ok()) {
            run(Arc::new(tcp), vsn, conn, &frames, &hub_tx).await;
        }
        drop(guard);
        let _ = hub_tx.send(HubMsg::WsClosed { socket: conn }).await;
    })
    .detach();
    Ok(())
}

/// `Read + Write` over the shared non-blocking socket for tungstenite.
struct Io(Arc<Async<TcpStream>>);

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s: &TcpStream = self.0.get_ref();
        s.read(buf)
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s: &TcpStream = self.0.get_ref();
        s.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

enum Wake {
    Readable,
    Writable,
    Item(WsOut),
    QueueClosed,
    Deadline,
}

/// Why the socket ends.
enum End {
    /// The peer closed or the connection failed: just drop it.
    Gone,
    /// We close with this code (idle timeout, hub asked, queue dropped).
    Close(u16),
}

struct Task<'a> {
    ws: WebSocket<Io>,
    socket: PhoenixSocket,
    hub: &'a Sender<HubMsg>,
    id: ConnId,
    steps: Vec<Step>,
    entropy: OsEntropy,
}

impl Task<'_> {
    /// Queues a frame in tungstenite's buffer (WouldBlock means queued).
    fn write(&mut self, frame: OutFrame) -> Result<(), End> {
        let msg = match frame {
            OutFrame::Text(t) => Message::Text(t),
            OutFrame::Close(code) => return Err(End::Close(code)),
        };
        match self.ws.write(msg) {
            Ok(()) => Ok(()),
            Err(e) if would_block(&e) => Ok(()),
            Err(_) => Err(End::Gone),
        }
    }

    /// Reads every complete message available, answering what the socket
    /// answers itself and forwarding requests to the hub in order.
    async fn read_all(&mut self) -> Result<(), End> {
        loop {
            let msg = match self.ws.read() {
                Ok(m) => m,
                Err(e) if would_block(&e) => return Ok(()),
                Err(_) => return Err(End::Gone),
            };
            let now = now_ms();
            let frame = match &msg {
                Message::Text(t) => FrameIn::Text(t.as_str()),
                Message::Binary(b) => FrameIn::Binary(b),
                Message::Close(_) => return Err(End::Gone),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            // A frame that does not decode is dropped; the socket goes on.
            let _ = self
                .socket
                .handle(now, frame, &mut self.entropy, &mut self.steps);
            let steps = std::mem::take(&mut self.steps);
            for step in steps {
                match step {
                    Step::Send(f) => self.write(f)?,
                    Step::Hub(req) => {
                        let msg = HubMsg::Ws {
                            socket: self.id,
                            req,
                        };
                        if self.hub.send(msg).await.is_err() {
                            return Err(End::Close(1012));
                        }
                    }
                }
            }
        }
    }

    fn deliver(&mut self, item: &WsOut) -> Result<(), End> {
        match self.socket.render(item) {
            Some(f) => self.write(f),
            None => Ok(()),
        }
    }

    /// Flushes tungstenite's buffer; `Ok(true)` when it all went out.
    fn flush(&mut self) -> Result<bool, End> {
        match self.ws.flush() {
            Ok(()) => Ok(true),
            Err(e) if would_block(&e) => Ok(false),
            Err(_) => Err(End::Gone),
        }
    }
}

async fn run(
    tcp: Arc<Async<TcpStream>>,
    vsn: Vsn,
    conn: ConnId,
    frames: &Receiver<WsOut>,
    hub: &Sender<HubMsg>,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(WS_MAX_MESSAGE))
        .max_frame_size(Some(WS_MAX_MESSAGE));
    let mut c = Task {
        ws: WebSocket::from_raw_socket(Io(tcp.clone()), Role::Server, Some(config)),
        socket: PhoenixSocket::new(vsn, SocketConfig::default(), now_ms()),
        hub,
        id: conn,
        steps: Vec::new(),
        entropy: OsEntropy,
    };
    let end = serve(&mut c, &tcp, frames).await;
    if let End::Close(code) = end {
        let _ = c.ws.close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        }));
        let deadline = Instant::now() + WS_CLOSE_GRACE;
        // Flush the close frame, then wait for the client's close.
        loop {
            let done = match c.ws.flush() {
                Ok(()) => match c.ws.read() {
                    Err(e) if would_block(&e) => false,
                    Err(_) => true,
                    Ok(_) => continue,
                },
                Err(e) if would_block(&e) => false,
                Err(_) => true,
            };
            if done || Instant::now() >= deadline {
                break;
            }
            let wait = smol::future::or(
                async {
                    let _ = smol::future::or(tcp.readable(), tcp.writable()).await;
                },
                async {
                    smol::Timer::at(deadline).await;
                },
            );
            wait.await;
        }
    }
}

async fn serve(c: &mut Task<'_>, tcp: &Async<TcpStream>, frames: &Receiver<WsOut>) -> End {
    let mut flushed = true;
    loop {
        if let Err(end) = c.read_all().await {
            return end;
        }
        if flushed {
            for _ in 0..WS_WRITE_BATCH {
                let Ok(item) = frames.try_recv() else { break };
                if let Err(end) = c.deliver(&item) {
                    return end;
                }
            }
        }
        flushed = match c.flush() {
            Ok(f) => f,
            Err(end) => return end,
        };
        let deadline = c.socket.deadline();
        let now = now_ms();
        if now >= deadline {
            return End::Close(1001);
        }
        let at = Instant::now() + Duration::from_millis(deadline - now);
        let wake = smol::future::or(
            async {
                let _ = tcp.readable().await;
                Wake::Readable
            },
            smol::future::or(
                async {
                    if flushed {
                        match frames.recv().await {
                            Ok(item) => Wake::Item(item),
                            Err(_) => Wake::QueueClosed,
                        }
                    } else {
                        let _ = tcp.writable().await;
                        Wake::Writable
                    }
                },
                async {
                    smol::Timer::at(at).await;
                    Wake::Deadline
                },
            ),
        )
        .await;
        match wake {
            Wake::Item(item) => {
                if let Err(end) = c.deliver(&item) {
                    return end;
                }
            }
            // The hub dropped this socket (slow consumer or shutdown).
            Wake::QueueClosed => return End::Close(1001),
            Wake::Readable | Wake::Writable | Wake::Deadline => {}
        }
    }
}
