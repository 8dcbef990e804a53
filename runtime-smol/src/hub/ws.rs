//! The hub's side of WebSocket sockets: each socket is a router stream
//! (R14) whose Supabase joins are bindings, plus one more stream per
//! instance topic (`tidings:<id>`) it joins. Requests come from the
//! socket's task in order; answers and fan-out go back on its queue in
//! router order, encoded once per protocol version and shared.

use hashbrown::HashMap;
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use serde::Deserialize;
use serde_json::value::RawValue;
use tidings_core::router::{Action, ConnId, Millis, RouterError};
use tidings_core::{Channel, Cid, Identity, InstanceId, Payload, Peer};
use tidings_sse::http::HttpResponse;
use tidings_sse::session::Session;
use tidings_sse::wire::{CommandRequest, ReceiptJson};
use tidings_ws::server::presence::{diff_json, state_json};
use tidings_ws::server::socket::{ReplyTo, Request, SharedFrame, UserPayload, WsOut};
use tidings_ws::server::topic::{REALTIME_PREFIX, TopicKind, realtime_topic};

use super::{Hub, Reply, SlowConsumer, router_error};
use crate::app::Access;

/// A socket as the hub knows it.
pub(crate) struct WsSocket {
    tx: Sender<WsOut>,
    rx: Receiver<WsOut>,
    cap: usize,
    session: Session,
    peer: Peer,
    /// Its instance streams: instance → (stream, topic).
    streams: HashMap<InstanceId, (ConnId, Arc<str>)>,
}

/// The hub's WebSocket state.
#[derive(Default)]
pub(crate) struct WsState {
    pub(crate) sockets: HashMap<ConnId, WsSocket>,
    /// Instance stream → (its socket, its topic).
    pub(crate) streams: HashMap<ConnId, (ConnId, Arc<str>)>,
}

#[derive(Deserialize)]
struct InstanceJoin {
    #[serde(default)]
    receipts: Vec<String>,
}

#[derive(Deserialize)]
struct CommandPush {
    target: Cid,
    name: String,
    params: Box<RawValue>,
}

fn reason(text: &str) -> String {
    serde_json::json!({ "reason": text }).to_string()
}

fn subtopic(topic: &str) -> &str {
    topic.strip_prefix(REALTIME_PREFIX).unwrap_or(topic)
}

impl Hub {
    /// Registers a socket after `authenticate` accepted it.
    pub(crate) fn ws_open(
        &mut self,
        session: Session,
        apikey: Option<&str>,
        queue: (Sender<WsOut>, Receiver<WsOut>, usize),
    ) -> Result<ConnId, HttpResponse> {
        if let Err(msg) = self.app.authenticate(apikey) {
            return Err(HttpResponse::json(
                401,
                &serde_json::json!({ "error": msg }),
            ));
        }
        let peer = Peer {
            instance: InstanceId::mint(&mut self.entropy),
            session: session.id,
            user: session.user.clone(),
        };
        let conn = self.router.connect(&peer).map_err(|e| router_error(&e))?;
        let (tx, rx, cap) = queue;
        self.ws.sockets.insert(
            conn,
            WsSocket {
                tx,
                rx,
                cap,
                session,
                peer,
                streams: HashMap::new(),
            },
        );
        Ok(conn)
    }

    /// The socket ended: forget it and its instance streams.
    pub(crate) fn ws_closed(&mut self, socket: ConnId) {
        if let Some(s) = self.ws.sockets.remove(&socket) {
            for (conn, _) in s.streams.into_values() {
                self.ws.streams.remove(&conn);
                self.router.detach(conn);
            }
        }
        self.router.detach(socket);
    }

    /// Queues an item for a socket, applying the slow-consumer policy.
    pub(crate) fn ws_push(&mut self, socket: ConnId, item: WsOut) {
        let Some(s) = self.ws.sockets.get(&socket) else {
            return;
        };
        if s.tx.len() >= s.cap {
            match self.config.slow_consumer {
                SlowConsumer::DropOldest => {
                    let _ = s.rx.try_recv();
                }
                SlowConsumer::Disconnect => {
                    // Dropping the queue ends the socket's task.
                    self.ws_closed(socket);
                    return;
                }
            }
        }
        if s.tx.try_send(item).is_err() {
            self.ws_closed(socket);
        }
    }

    fn ws_reply(&mut self, socket: ConnId, to: ReplyTo, ok: bool, response: String, join: bool) {
        self.ws_push(socket, WsOut::reply(to, ok, response, join));
    }

    fn authorize(
        &self,
        socket: ConnId,
        access: Access,
        channel: &Channel,
        token: Option<&str>,
    ) -> Result<(), String> {
        let Some(s) = self.ws.sockets.get(&socket) else {
            return Err("the socket is gone".into());
        };
        self.app
            .authorize(&s.peer, access, channel, token)
            .map_err(|msg| format!("Unauthorized: {msg}"))
    }

    /// Handles one request of a socket.
    pub(crate) fn ws_request(&mut self, now: Millis, socket: ConnId, req: Request) {
        if !self.ws.sockets.contains_key(&socket) {
            return;
        }
        match req {
            Request::Join {
                to,
                kind: TopicKind::Realtime(channel),
                config,
                ..
            } => self.ws_join_realtime(socket, to, &channel, &config),
            Request::Join {
                to,
                kind: TopicKind::Instance(instance),
                payload,
                ..
            } => self.ws_join_instance(now, socket, to, instance, &payload),
            Request::Leave {
                kind: TopicKind::Realtime(channel),
            } => {
                let _ = self.router.leave(socket, &channel, &Cid::PAGE);
            }
            Request::Leave {
                kind: TopicKind::Instance(instance),
            } => {
                if let Some(s) = self.ws.sockets.get_mut(&socket)
                    && let Some((conn, _)) = s.streams.remove(&instance)
                {
                    self.ws.streams.remove(&conn);
                    self.router.detach(conn);
                }
            }
            Request::Broadcast {
                channel,
                event,
                payload,
                self_,
                ack,
            } => self.ws_broadcast(socket, channel, &event, payload, self_, ack),
            Request::Track {
                to,
                channel,
                key,
                payload,
            } => {
                let result = self
                    .authorize(socket, Access::Presence, &channel, None)
                    .and_then(|()| {
                        self.router
                            .track(
                                socket,
                                &channel,
                                &key,
                                Payload::new(payload.into_bytes()),
                                &mut self.entropy,
                            )
                            .map_err(|e| e.to_string())
                    });
                match result {
                    Ok(()) => self.ws_reply(socket, to, true, "{}".into(), false),
                    Err(why) => self.ws_reply(socket, to, false, reason(&why), false),
                }
            }
            Request::Untrack { to, channel } => {
                let _ = self.router.untrack(socket, &channel);
                self.ws_reply(socket, to, true, "{}".into(), false);
            }
            Request::AccessToken {
                to,
                kind: TopicKind::Realtime(channel),
                token,
            } => self.ws_access_token(socket, to, &channel, &token),
            Request::AccessToken { .. } => {}
            Request::Command {
                to,
                instance,
                payload,
            } => self.ws_command(now, socket, to, instance, &payload),
        }
    }

    fn ws_join_realtime(
        &mut self,
        socket: ConnId,
        to: ReplyTo,
        channel: &Channel,
        config: &tidings_ws::server::join::JoinConfig,
    ) {
        let token = config.access_token.as_deref();
        if let Err(why) = self.authorize(socket, Access::Join, channel, token) {
            self.ws_reply(socket, to, false, reason(&why), true);
            return;
        }
        if let Err(e) = self.router.join(socket, channel, &Cid::PAGE) {
            let why = format!("ChannelRateLimitReached: {e}");
            self.ws_reply(socket, to, false, reason(&why), true);
            return;
        }
        let topic = to.topic.clone();
        self.ws_reply(socket, to, true, config.reply_response(), true);
        if config.presence.enabled.0 {
            let state = self.router.presence_state(channel).unwrap_or_default();
            self.ws_push(
                socket,
                WsOut::push(topic, "presence_state", state_json(&state).into()),
            );
        }
    }

    fn ws_broadcast(
        &mut self,
        socket: ConnId,
        channel: Channel,
        event: &str,
        payload: UserPayload,
        self_: bool,
        ack: Option<ReplyTo>,
    ) {
        let refused = self
            .authorize(socket, Access::Broadcast, &channel, None)
            .and_then(|()| Action::new(event).map_err(|e| format!("InvalidEvent: {e}")));
        let action = match refused {
            Ok(action) => action,
            Err(why) => {
                if let Some(to) = ack {
                    self.ws_reply(socket, to, false, reason(&why), false);
                }
                return;
            }
        };
        let me = self.ws.sockets[&socket].peer.instance;
        let except: &[Identity] = if self_ {
            &[]
        } else {
            &[Identity::Instance(me)]
        };
        let params = match payload {
            UserPayload::Json(text) => Payload::new(text.into_bytes()),
            UserPayload::Binary(bytes) => Payload::binary(bytes),
        };
        let _ = self
            .router
            .broadcast_action_except(except, channel, action.as_str(), params);
        if let Some(to) = ack {
            self.ws_reply(socket, to, true, "{}".into(), false);
        }
    }

    fn ws_access_token(&mut self, socket: ConnId, to: ReplyTo, channel: &Channel, token: &str) {
        if let Err(why) = self.authorize(socket, Access::Join, channel, Some(token)) {
            let system = serde_json::json!({
                "extension": "system",
                "status": "error",
                "message": why,
                "channel": subtopic(&to.topic),
            });
            self.ws_push(
                socket,
                WsOut::push(to.topic.clone(), "system", system.to_string().into()),
            );
            self.ws_push(socket, WsOut::Close { topic: to.topic });
            let _ = self.router.leave(socket, channel, &Cid::PAGE);
        }
    }

    fn ws_join_instance(
        &mut self,
        now: Millis,
        socket: ConnId,
        to: ReplyTo,
        instance: InstanceId,
        payload: &str,
    ) {
        let Ok(join) = serde_json::from_str::<InstanceJoin>(payload) else {
            let why = "InvalidJoinPayload: expected {\"receipts\": [token, …]}";
            self.ws_reply(socket, to, false, reason(why), true);
            return;
        };
        let s = &self.ws.sockets[&socket];
        let peer = Peer {
            instance,
            session: s.session.id,
            user: s.session.user.clone(),
        };
        let tokens: Vec<&str> = join.receipts.iter().map(String::as_str).collect();
        let attached = self
            .router
            .handshake(now, &mut self.entropy, &peer, &tokens)
            .and_then(|hs| {
                let conn = self.router.attach(now, &hs.handshake_id, &peer)?;
                Ok((conn, hs.receipts))
            });
        match attached {
            Ok((conn, receipts)) => {
                let receipts: Vec<ReceiptJson> =
                    receipts.into_iter().map(ReceiptJson::from).collect();
                let response = serde_json::json!({ "receipts": receipts }).to_string();
                let topic = to.topic.clone();
                self.ws_reply(socket, to, true, response, true);
                self.ws.streams.insert(conn, (socket, topic.clone()));
                if let Some(s) = self.ws.sockets.get_mut(&socket) {
                    s.streams.insert(instance, (conn, topic));
                }
            }
            Err(e) => {
                let why = match e {
                    RouterError::SessionMismatch => format!("Unauthorized: {e}"),
                    _ => format!("JoinRejected: {e}"),
                };
                self.ws_reply(socket, to, false, reason(&why), true);
            }
        }
    }

    fn ws_command(
        &mut self,
        now: Millis,
        socket: ConnId,
        to: ReplyTo,
        instance: InstanceId,
        payload: &str,
    ) {
        let req = match serde_json::from_str::<CommandPush>(payload) {
            Ok(c) => CommandRequest {
                instance_id: instance,
                target: c.target,
                name: c.name,
                params: c.params,
            },
            Err(e) => {
                let why = format!("bad_request: a command is {{target, name, params}}: {e}");
                self.ws_reply(socket, to, false, reason(&why), false);
                return;
            }
        };
        let session = self.ws.sockets[&socket].session.clone();
        let (reply, answer): (Reply<HttpResponse>, _) = async_channel::bounded(1);
        self.command(now, session, req, reply, None);
        if let Ok(resp) = answer.try_recv() {
            let (ok, response) = Self::ws_answer(&resp);
            self.ws_reply(socket, to, ok, response, false);
        } else if let Some(s) = self.ws.sockets.get(&socket) {
            // Parked until the instance attaches: answer when it does.
            let tx = s.tx.clone();
            smol::spawn(async move {
                if let Ok(resp) = answer.recv().await {
                    let (ok, response) = Self::ws_answer(&resp);
                    let _ = tx.send(WsOut::reply(to, ok, response, false)).await;
                }
            })
            .detach();
        }
    }

    /// A command's HTTP-shaped answer as a reply: the body is the response;
    /// an error also carries Supabase's `reason` and the HTTP `status`.
    fn ws_answer(resp: &HttpResponse) -> (bool, String) {
        let body = String::from_utf8_lossy(&resp.body).into_owned();
        if resp.status < 300 {
            return (true, body);
        }
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let text = format!(
            "{}: {}",
            v["error"]["code"].as_str().unwrap_or("error"),
            v["error"]["message"].as_str().unwrap_or("")
        );
        if let Some(o) = v.as_object_mut() {
            o.insert("reason".into(), text.into());
            o.insert("status".into(), resp.status.into());
        }
        (false, v.to_string())
    }

    /// A channel push for an instance stream riding a socket; `false` if
    /// `conn` is not one.
    pub(crate) fn ws_stream_push(&mut self, conn: ConnId, event: &str, data: &[u8]) -> bool {
        let Some((socket, topic)) = self.ws.streams.get(&conn).cloned() else {
            return false;
        };
        let payload: Arc<str> = String::from_utf8_lossy(data).into();
        self.ws_push(socket, WsOut::push(topic, event, payload));
        true
    }

    /// The router closed an instance stream (superseded): `phx_close` it.
    pub(crate) fn ws_stream_closed(&mut self, conn: ConnId) -> bool {
        let Some((socket, topic)) = self.ws.streams.remove(&conn) else {
            return false;
        };
        if let Some(s) = self.ws.sockets.get_mut(&socket) {
            s.streams.retain(|_, (c, _)| *c != conn);
        }
        self.ws_push(socket, WsOut::Close { topic });
        true
    }

    /// Fan-out to sockets joined to a `{:realtime, name}` channel: one
    /// shared frame for all of them (a binary payload goes as kind 4 to V2
    /// sockets only).
    pub(crate) fn ws_fanout(
        &mut self,
        channel: &Channel,
        event: &str,
        payload: &Payload,
        conns: &[ConnId],
    ) {
        let Some(topic) = realtime_topic(channel) else {
            return;
        };
        let frame = if payload.is_binary() {
            SharedFrame::binary_broadcast(topic.into(), event, payload.as_bytes())
        } else {
            let json = std::str::from_utf8(payload.as_bytes()).unwrap_or("null");
            SharedFrame::broadcast(topic.into(), event, json)
        };
        let frame = Arc::new(frame);
        for &c in conns {
            self.ws_push(c, WsOut::Shared(frame.clone()));
        }
    }

    /// A presence diff to every socket joined to the channel.
    pub(crate) fn ws_presence(
        &mut self,
        channel: &Channel,
        diff: &tidings_core::presence::Diff,
        conns: &[ConnId],
    ) {
        let Some(topic) = realtime_topic(channel) else {
            return;
        };
        let frame = Arc::new(SharedFrame::new(
            topic.into(),
            "presence_diff",
            diff_json(diff),
        ));
        for &c in conns {
            if self.ws.sockets.contains_key(&c) {
                self.ws_push(c, WsOut::Shared(frame.clone()));
            }
        }
    }

    /// Tells every socket to reconnect elsewhere (1012: service restart).
    pub(crate) fn ws_shutdown(&mut self) {
        for s in self.ws.sockets.values() {
            let _ = s.tx.try_send(WsOut::Disconnect(1012));
        }
        self.ws.sockets.clear();
        self.ws.streams.clear();
    }
}
