//! Serves Phoenix sockets (`/socket/websocket`, `/realtime/v1/websocket`)
//! on the same listener as SSE: the upgrade is answered by a worker, then
//! one async task per socket runs `tungstenite` on the non-blocking raw
//! socket — no thread per connection. The task feeds client frames to the
//! socket's sans-IO state and its requests to the hub, and writes what the
//! hub queued: frames are appended to one write buffer per socket (tungstenite
//! writes its control frames into the same buffer), sent with one `write`
//! per batch, and the rest is flushed when the socket is writable.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_channel::{Receiver, Sender};
use smol::stream::Stream;
use smol::{Async, Timer};
use tidings_core::OsEntropy;
use tidings_core::router::ConnId;
use tidings_sse::http::{HttpResponse, query_param, split_url};
use tidings_sse::session::SessionKeys;
use tidings_ws::frame::{FrameIn, Vsn};
use tidings_ws::server::socket::{OutFrame, PhoenixSocket, SocketConfig, Step, WsOut};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::handle::HubHandle;
use crate::hub::HubMsg;

/// The paths Phoenix clients connect to.
pub const WS_PATHS: [&str; 2] = ["/socket/websocket", "/realtime/v1/websocket"];

/// tungstenite's read buffer per socket (512 B: Phoenix client frames are
/// small, a larger message grows the buffer for as long as it takes; the
/// default of 128 KiB would cost 1.3 GiB at 10 000 sockets, and 4 KiB was
/// half of an idle socket's memory).
pub const WS_READ_BUFFER: usize = 512;

/// Largest message a client may send (1 MiB, SPEC §10).
pub const WS_MAX_MESSAGE: usize = 1 << 20;

/// Most queued items taken from the socket's queue into its write buffer
/// per wake-up (64): one `write` syscall carries them all, and the socket is
/// read again before more are taken.
pub const WS_WRITE_BATCH: usize = 64;

/// Bytes in a socket's write buffer past which no more queued items are
/// taken in a batch (64 KiB): with large frames, the rest waits in the
/// queue (bounded by the outbound queue policy) rather than in memory here.
pub const WS_WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Capacity a socket's write buffer may keep once everything in it went out
/// and its queue is empty (1 KiB); a larger buffer, grown by a burst, is
/// then freed so that idle sockets stay small.
pub const WS_WRITE_BUFFER_KEEP: usize = 1024;

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
    rq: tiny_http::Request,
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
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = tiny_http::Response::empty(101).with_header(
        tiny_http::Header::from_bytes(&b"Sec-WebSocket-Accept"[..], accept.as_bytes())
            .expect("an accept key is a valid header"),
    );
    // tiny_http writes the 101 and hands the socket over whole: its worker
    // thread and its two handles on the socket are released at once.
    let raw = rq.upgrade_detached("websocket", response);
    let hub_tx = hub.tx.clone();
    smol::spawn(async move {
        if let Some(tcp) = raw.and_then(|t| Async::new(t).ok()) {
            run(tcp, vsn, conn, frames, &hub_tx).await;
        }
        let _ = hub_tx.send(HubMsg::WsClosed { socket: conn }).await;
    })
    .detach();
    Ok(())
}

/// The socket as tungstenite sees it: reads go to the non-blocking socket,
/// writes (control frames: pongs, the close) are appended to `out`, the same
/// buffer the task appends its text frames to, so nothing interleaves.
struct Io {
    tcp: Async<TcpStream>,
    out: Vec<u8>,
    /// How much of `out` already went to the socket.
    sent: usize,
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s: &TcpStream = self.tcp.get_ref();
        s.read(buf)
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Io {
    /// Appends an unmasked data frame (server role).
    fn push_frame(&mut self, data: Data, payload: &[u8]) {
        let header = FrameHeader {
            opcode: OpCode::Data(data),
            ..FrameHeader::default()
        };
        // Writing into a Vec cannot fail.
        let _ = header.format(payload.len() as u64, &mut self.out);
        self.out.extend_from_slice(payload);
    }

    /// Sends what it can; `Ok(true)` once the buffer is empty.
    fn send(&mut self) -> io::Result<bool> {
        let mut s: &TcpStream = self.tcp.get_ref();
        while self.sent < self.out.len() {
            match s.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.sent = 0;
        self.out.clear();
        Ok(true)
    }

    /// Frees a write buffer grown past [`WS_WRITE_BUFFER_KEEP`] once the
    /// socket has nothing more to send (kept while a burst goes on, so the
    /// buffer is not regrown for every batch).
    fn release_if_idle(&mut self) {
        if self.out.is_empty() && self.out.capacity() > WS_WRITE_BUFFER_KEEP {
            self.out = Vec::new();
        }
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

/// What woke a waiting socket task (several can at once).
#[derive(Default)]
struct Wake {
    readable: bool,
    item: Option<WsOut>,
    queue_closed: bool,
    deadline: bool,
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
    /// Appends a frame to the write buffer.
    fn write(&mut self, frame: OutFrame) -> Result<(), End> {
        match frame {
            OutFrame::Text(t) => {
                self.ws.get_mut().push_frame(Data::Text, t.as_bytes());
                Ok(())
            }
            OutFrame::Binary(b) => {
                self.ws.get_mut().push_frame(Data::Binary, &b);
                Ok(())
            }
            OutFrame::Close(code) => Err(End::Close(code)),
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

    /// Sends the write buffer; `Ok(true)` when it all went out.
    fn flush(&mut self) -> Result<bool, End> {
        // tungstenite may hold a pong from the last read: into the buffer.
        match self.ws.flush() {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            Err(_) => return Err(End::Gone),
        }
        self.ws.get_mut().send().map_err(|_| End::Gone)
    }
}

async fn run(
    tcp: Async<TcpStream>,
    vsn: Vsn,
    conn: ConnId,
    frames: Receiver<WsOut>,
    hub: &Sender<HubMsg>,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(WS_MAX_MESSAGE))
        .max_frame_size(Some(WS_MAX_MESSAGE));
    let io = Io {
        tcp,
        out: Vec::new(),
        sent: 0,
    };
    let mut c = Task {
        ws: WebSocket::from_raw_socket(io, Role::Server, Some(config)),
        socket: PhoenixSocket::new(vsn, SocketConfig::default(), now_ms()),
        hub,
        id: conn,
        steps: Vec::new(),
        entropy: OsEntropy,
    };
    let end = serve(&mut c, frames).await;
    if let End::Close(code) = end {
        close(&mut c, code).await;
    }
}

/// Sends a close frame with `code`, then waits (at most
/// [`WS_CLOSE_GRACE`]) for the client's close.
async fn close(c: &mut Task<'_>, code: u16) {
    let _ = c.ws.close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    }));
    let deadline = Instant::now() + WS_CLOSE_GRACE;
    loop {
        let done = match c.flush() {
            Ok(true) => match c.ws.read() {
                Err(e) if would_block(&e) => false,
                Err(_) => true,
                Ok(_) => continue,
            },
            Ok(false) => false,
            Err(_) => true,
        };
        if done || Instant::now() >= deadline {
            break;
        }
        let tcp = &c.ws.get_ref().tcp;
        let wait = smol::future::or(
            async {
                let _ = smol::future::or(tcp.readable(), tcp.writable()).await;
            },
            async {
                Timer::at(deadline).await;
            },
        );
        wait.await;
    }
}

/// Waits for the socket to be readable, for a queued item (only when the
/// write buffer is empty: the queue is the backpressure), for the socket to
/// be writable (only when it is not), or for the deadline. The socket's and
/// the queue's wakers stay registered across calls, so a wake-up costs no
/// syscall beyond re-arming a readiness that fired.
fn wait<'a>(
    tcp: &'a Async<TcpStream>,
    frames: Pin<&'a mut Receiver<WsOut>>,
    flushed: bool,
    timer: &'a mut Timer,
) -> impl Future<Output = Wake> + 'a {
    let mut frames = frames;
    std::future::poll_fn(move |cx| {
        let mut wake = Wake {
            readable: tcp.poll_readable(cx).is_ready(),
            ..Wake::default()
        };
        if flushed {
            match frames.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => wake.item = Some(item),
                Poll::Ready(None) => wake.queue_closed = true,
                Poll::Pending => {}
            }
        } else if tcp.poll_writable(cx).is_ready() {
            // Writable: the loop flushes.
            return Poll::Ready(wake);
        }
        wake.deadline = Pin::new(&mut *timer).poll(cx).is_ready();
        if wake.readable || wake.item.is_some() || wake.queue_closed || wake.deadline {
            Poll::Ready(wake)
        } else {
            Poll::Pending
        }
    })
}

async fn serve(c: &mut Task<'_>, frames: Receiver<WsOut>) -> End {
    let mut frames = pin!(frames);
    let mut timer = Timer::never();
    let mut armed = u64::MAX;
    let mut flushed = true;
    let mut wake = Wake {
        readable: true,
        ..Wake::default()
    };
    loop {
        if wake.readable
            && let Err(end) = c.read_all().await
        {
            return end;
        }
        // The hub dropped this socket (slow consumer or shutdown): seen by
        // `wait` once the queue is drained, or here while a flush is stuck
        // (a peer that sends but does not read is not waited for).
        if wake.queue_closed || (!flushed && frames.is_closed()) {
            return End::Close(1001);
        }
        if let Some(item) = wake.item.take()
            && let Err(end) = c.deliver(&item)
        {
            return end;
        }
        // Items wait in the queue while the last batch is still going out.
        if flushed {
            for _ in 0..WS_WRITE_BATCH {
                if c.ws.get_ref().out.len() >= WS_WRITE_BATCH_BYTES {
                    break;
                }
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
        if flushed && frames.is_empty() {
            c.ws.get_mut().release_if_idle();
        }
        let deadline = c.socket.deadline();
        let now = now_ms();
        if now >= deadline {
            return End::Close(1001);
        }
        // A timer that fired is re-armed even for the same deadline.
        if deadline != armed || wake.deadline {
            armed = deadline;
            timer.set_at(Instant::now() + Duration::from_millis(deadline - now));
        }
        wake = wait(&c.ws.get_ref().tcp, frames.as_mut(), flushed, &mut timer).await;
    }
}
