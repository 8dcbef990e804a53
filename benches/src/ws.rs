//! WebSocket (Phoenix Channels V2) client shared by the `ws_fanout` and
//! `ws_idle_rss` examples: `tungstenite` in client role on a non-blocking
//! `Async<TcpStream>`, driven by `smol`, with a 4 KiB read buffer so that
//! thousands of clients fit in one process. Every text frame it receives is
//! parsed as a V2 array `[join_ref, ref, topic, event, payload]` with
//! `serde_json`.
//!
//! The server side is [`crate::sse::Server`]: `tidings_smol::sse::serve`
//! answers `GET /socket/websocket?vsn=2.0.0` upgrades on the same listener.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use smol::Async;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::sse::err;

/// The client's read buffer (tungstenite's default is 128 KiB).
pub const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// How often a client heartbeats; the server closes a socket after 60 s
/// without an inbound frame.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(25);

/// The join payload of a plain Supabase broadcast channel (no self, no ack,
/// no presence, no postgres changes, public).
pub const JOIN_PAYLOAD: &str = r#"{"config":{"broadcast":{"self":false,"ack":false},"presence":{"key":"","enabled":false},"postgres_changes":[],"private":false}}"#;

/// One received V2 frame, its JSON parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PhxFrame {
    /// The join reference (`null` for broadcasts).
    pub join_ref: Option<String>,
    /// The message reference.
    pub msg_ref: Option<String>,
    /// `realtime:<name>`, `phoenix`, …
    pub topic: String,
    /// `phx_reply`, `broadcast`, …
    pub event: String,
    /// The payload object.
    pub payload: Value,
}

impl PhxFrame {
    /// Parses a V2 text frame.
    pub fn parse(text: &str) -> io::Result<Self> {
        type V2 = (Option<String>, Option<String>, String, String, Value);
        let (join_ref, msg_ref, topic, event, payload): V2 = serde_json::from_str(text)
            .map_err(|e| err(format!("frame is not a V2 array ({e}): {text:?}")))?;
        Ok(Self {
            join_ref,
            msg_ref,
            topic,
            event,
            payload,
        })
    }

    /// Whether this is `phx_reply` `{"status":"ok",…}` to `msg_ref`.
    pub fn is_ok_reply_to(&self, msg_ref: &str) -> bool {
        self.event == "phx_reply"
            && self.msg_ref.as_deref() == Some(msg_ref)
            && self.payload["status"] == "ok"
    }
}

/// `Read + Write` over the shared non-blocking socket, for tungstenite.
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

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

/// The client's tungstenite configuration: 4 KiB read buffer, every write
/// sent at once.
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(CLIENT_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// A Phoenix V2 socket client.
pub struct WsClient {
    tcp: Arc<Async<TcpStream>>,
    ws: WebSocket<Io>,
    next_ref: u64,
    /// When the client last sent a frame.
    pub last_sent: Instant,
    /// Set once the server closed the socket.
    pub closed: bool,
}

impl WsClient {
    /// Connects to `/socket/websocket?vsn=2.0.0` and completes the upgrade.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let tcp = Arc::new(Async::<TcpStream>::connect(addr).await?);
        tcp.get_ref().set_nodelay(true)?;
        let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0");
        let mut step =
            tungstenite::client::client_with_config(url, Io(tcp.clone()), Some(client_config()));
        let ws = loop {
            match step {
                Ok((ws, resp)) => {
                    if resp.status() != 101 {
                        return Err(err(format!("upgrade answered {}", resp.status())));
                    }
                    break ws;
                }
                Err(HandshakeError::Interrupted(mid)) => {
                    tcp.readable().await?;
                    step = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(err(format!("upgrade: {e}"))),
            }
        };
        Ok(Self {
            tcp,
            ws,
            next_ref: 1,
            last_sent: Instant::now(),
            closed: false,
        })
    }

    /// A fresh message reference.
    pub fn next_ref(&mut self) -> String {
        let r = self.next_ref;
        self.next_ref += 1;
        r.to_string()
    }

    /// Sends a text frame, waiting while the socket is not writable.
    pub async fn send_text(&mut self, text: String) -> io::Result<()> {
        match self.ws.write(Message::text(text)) {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(err(format!("write: {e}"))),
        }
        loop {
            match self.ws.flush() {
                Ok(()) => break,
                Err(e) if would_block(&e) => self.tcp.writable().await?,
                Err(e) => return Err(err(format!("flush: {e}"))),
            }
        }
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Joins `topic` with [`JOIN_PAYLOAD`]; returns once the `ok` reply has
    /// arrived. Any other frame before it is an error.
    pub async fn join(&mut self, topic: &str) -> io::Result<()> {
        let r = self.next_ref();
        let topic_json = serde_json::to_string(topic).map_err(err)?;
        self.send_text(format!(
            r#"["{r}","{r}",{topic_json},"phx_join",{JOIN_PAYLOAD}]"#
        ))
        .await?;
        let reply = self.next_frame().await?;
        if reply.topic != topic
            || !reply.is_ok_reply_to(&r)
            || reply.payload["response"]["postgres_changes"] != Value::Array(Vec::new())
        {
            return Err(err(format!("join of {topic} answered {reply:?}")));
        }
        Ok(())
    }

    /// Sends `[null,"<ref>","phoenix","heartbeat",{}]`; returns the ref.
    pub async fn send_heartbeat(&mut self) -> io::Result<String> {
        let r = self.next_ref();
        self.send_text(format!(r#"[null,"{r}","phoenix","heartbeat",{{}}]"#))
            .await?;
        Ok(r)
    }

    /// Reads every complete frame already received, without waiting, and
    /// parses each; `Ok(false)` once the server has closed the socket.
    pub fn read_now(&mut self, mut on_frame: impl FnMut(PhxFrame)) -> io::Result<bool> {
        if self.closed {
            return Ok(false);
        }
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => on_frame(PhxFrame::parse(t.as_str())?),
                Ok(Message::Close(_)) => {
                    // tungstenite queued the close reply; send it if it can.
                    let _ = self.ws.flush();
                    self.closed = true;
                    return Ok(false);
                }
                Ok(Message::Binary(_)) => return Err(err("unexpected binary frame")),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(e) if would_block(&e) => return Ok(true),
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                ) => {
                    self.closed = true;
                    return Ok(false);
                }
                Err(e) => return Err(err(format!("read: {e}"))),
            }
        }
    }

    /// Waits until the socket has something to read.
    pub async fn readable(&self) -> io::Result<()> {
        self.tcp.readable().await
    }

    /// Waits for the next frame; the socket closing is an error.
    pub async fn next_frame(&mut self) -> io::Result<PhxFrame> {
        loop {
            let mut got = None;
            let mut extra = 0;
            let open = self.read_one(&mut got, &mut extra)?;
            if extra > 0 {
                return Err(err("more than one frame where one was expected"));
            }
            if let Some(f) = got {
                return Ok(f);
            }
            if !open {
                return Err(err("the server closed the socket"));
            }
            self.readable().await?;
        }
    }

    fn read_one(&mut self, got: &mut Option<PhxFrame>, extra: &mut usize) -> io::Result<bool> {
        self.read_now(|f| {
            if got.is_none() {
                *got = Some(f);
            } else {
                *extra += 1;
            }
        })
    }

    /// Heartbeats and waits for its `ok` reply; anything else is an error.
    pub async fn heartbeat_round_trip(&mut self) -> io::Result<()> {
        let r = self.send_heartbeat().await?;
        let reply = self.next_frame().await?;
        if reply.topic != "phoenix"
            || !reply.is_ok_reply_to(&r)
            || reply.payload["response"] != serde_json::json!({})
        {
            return Err(err(format!("heartbeat {r} answered {reply:?}")));
        }
        Ok(())
    }
}

/// Connects and joins `topic`.
pub async fn connect_joined(addr: SocketAddr, topic: &str) -> io::Result<WsClient> {
    let mut c = WsClient::connect(addr).await?;
    c.join(topic).await?;
    Ok(c)
}
