//! A blocking Phoenix socket client for the tests, of either protocol
//! version, with bounded waits so no test hangs.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use super::WAIT;

/// Frames are normalized to V2's `[join_ref, ref, topic, event, payload]`
/// whatever the socket's version; a binary frame is `["binary", [bytes…]]`,
/// a close `["close", code]` and a read error `["error", message]`.
pub(crate) struct Ws {
    socket: WebSocket<TcpStream>,
    v1: bool,
    next_ref: u64,
}

impl Ws {
    /// A V2 socket with an API key, and `cookie` if given.
    pub(crate) fn connect(addr: SocketAddr, cookie: Option<&str>) -> Self {
        Self::try_connect(addr, cookie, "vsn=2.0.0&apikey=k").expect("the socket opens")
    }

    /// A socket of protocol version `vsn` with an API key.
    pub(crate) fn connect_vsn(addr: SocketAddr, vsn: &str) -> Self {
        Self::try_connect(addr, None, &format!("vsn={vsn}&apikey=k")).expect("the socket opens")
    }

    /// The socket at `/socket/websocket?<query>`, or the status of a refused
    /// upgrade.
    pub(crate) fn try_connect(
        addr: SocketAddr,
        cookie: Option<&str>,
        query: &str,
    ) -> Result<Self, u16> {
        let url = format!("ws://{addr}/socket/websocket?{query}");
        let mut req = url.into_client_request().expect("a valid url");
        if let Some(c) = cookie {
            req.headers_mut()
                .insert("Cookie", c.parse().expect("a valid header"));
        }
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        match tungstenite::client(req, tcp) {
            Ok((socket, _)) => Ok(Self {
                socket,
                v1: query.split('&').any(|kv| kv == "vsn=1.0.0"),
                next_ref: 100,
            }),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                Err(resp.status().as_u16())
            }
            Err(e) => panic!("handshake: {e}"),
        }
    }

    /// Sends a frame in the socket's version (a V1 object, a V2 array).
    fn send(&mut self, join_ref: Option<&str>, r: &str, topic: &str, event: &str, payload: &Value) {
        let frame = if self.v1 {
            json!({"join_ref": join_ref, "ref": r, "topic": topic, "event": event, "payload": payload})
        } else {
            json!([join_ref, r, topic, event, payload])
        };
        self.socket
            .send(Message::text(frame.to_string()))
            .expect("send");
    }

    /// Pushes `event` on `topic`; returns the push's ref.
    pub(crate) fn push(
        &mut self,
        join_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: &Value,
    ) -> String {
        self.next_ref += 1;
        let r = self.next_ref.to_string();
        self.send(join_ref, &r, topic, event, payload);
        r
    }

    /// Sends a heartbeat, returning the write's error instead of failing
    /// (to see whether the server still holds the socket).
    pub(crate) fn try_heartbeat(&mut self) -> Result<(), tungstenite::Error> {
        self.next_ref += 1;
        let frame = json!([null, self.next_ref.to_string(), "phoenix", "heartbeat", {}]);
        self.socket.send(Message::text(frame.to_string()))
    }

    /// Joins `topic`; returns the join ref and the reply's payload.
    pub(crate) fn join(&mut self, topic: &str, payload: &Value) -> (String, Value) {
        self.next_ref += 1;
        let r = self.next_ref.to_string();
        self.send(Some(&r), &r, topic, "phx_join", payload);
        let reply = self.expect(|m| m[1] == json!(r) && m[3] == "phx_reply");
        (r, reply[4].clone())
    }

    /// Joins `topic` for broadcasts (not its own) and waits for an ok reply.
    pub(crate) fn join_ok(&mut self, topic: &str) {
        let (_, reply) = self.join(topic, &json!({"config": {"broadcast": {"self": false}}}));
        assert_eq!(reply["status"], "ok", "joining {topic}: {reply}");
    }

    /// The next frame, or `None` after `within`.
    pub(crate) fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.socket.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                    if !self.v1 {
                        return Some(v);
                    }
                    assert!(v.is_object(), "a V1 socket gets JSON objects: {v}");
                    let jr = v.get("join_ref").cloned().unwrap_or(Value::Null);
                    return Some(json!([jr, v["ref"], v["topic"], v["event"], v["payload"]]));
                }
                Ok(Message::Binary(b)) => return Some(json!(["binary", b.to_vec()])),
                Ok(Message::Close(c)) => {
                    return Some(json!(["close", c.map(|c| u16::from(c.code))]));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Some(json!(["error", e.to_string()])),
            }
        }
        None
    }

    /// Reads until a frame matches, failing after [`WAIT`].
    pub(crate) fn expect(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Some(m) = self.next(Duration::from_millis(100)) {
                if pred(&m) {
                    return m;
                }
                seen.push(m);
            }
        }
        panic!("no matching frame within {WAIT:?}; saw {seen:#?}");
    }

    /// The very next frame, whatever it is.
    pub(crate) fn next_frame(&mut self) -> Value {
        self.next(WAIT)
            .unwrap_or_else(|| panic!("no frame within {WAIT:?}"))
    }

    /// Every frame that arrives within `within`.
    pub(crate) fn drain(&mut self, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while let Some(m) = self.next(deadline.saturating_duration_since(Instant::now())) {
            out.push(m);
        }
        out
    }

    /// The next `broadcast` push.
    pub(crate) fn broadcast(&mut self) -> Value {
        self.expect(|m| m[3] == "broadcast")
    }

    /// Every `broadcast` push (text or binary) within `within`.
    pub(crate) fn broadcasts(&mut self, within: Duration) -> Vec<Value> {
        self.drain(within)
            .into_iter()
            .filter(|m| m[3] == "broadcast" || m[0] == "binary")
            .collect()
    }
}
