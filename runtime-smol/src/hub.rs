//! The hub: one task that owns the router and the application, turns
//! transport requests into router inputs and router outputs into frames on
//! each connection's bounded outbound queue.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_channel::{Receiver, Sender};
use serde_json::json;
use tidings_core::router::{
    Action, Cids, Committed, ConnId, Millis, Output, Router, RouterConfig, RouterError,
};
use tidings_core::{
    Channel, Cid, Effects, HandshakeId, Identity, InstanceId, OsEntropy, Payload, Peer,
};
use tidings_sse::event::names;
use tidings_sse::http::HttpResponse;
use tidings_sse::session::{Session, SessionKeys};
use tidings_sse::wire::{
    BroadcastJson, CommandRequest, HandshakeRequest, HandshakeResponse, KeyJson, NavigateRequest,
    ReceiptDiff, ReceiptJson, raw_params, self_echoes,
};

use crate::app::{App, AppError, Page};

mod rest;
mod ws;
use crate::handle::HubHandle;

/// Frames one connection may have queued (1 024) before the slow-consumer
/// policy applies.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;

/// Messages the hub's inbox holds (65 536) before callers are told it is overloaded.
pub const DEFAULT_INBOX: usize = 65_536;

/// What to do with a connection whose outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumer {
    /// Close it; the client reconnects with its receipts (default).
    #[default]
    Disconnect,
    /// Drop its oldest queued frame to make room.
    DropOldest,
}

/// The hub's settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Signs receipts. Keep it stable across restarts so receipts stay valid.
    pub receipt_secret: Vec<u8>,
    /// Signs session cookies.
    pub session_secret: Vec<u8>,
    /// The router's limits and timings.
    pub router: RouterConfig,
    /// Heartbeat event interval (15 s).
    pub heartbeat: Duration,

    /// The slow-consumer policy.
    pub slow_consumer: SlowConsumer,
    /// Inbox capacity ([`DEFAULT_INBOX`]).
    pub inbox: usize,
}

impl HubConfig {
    /// Defaults with the given secrets.
    pub fn new(receipt_secret: &[u8], session_secret: &[u8]) -> Self {
        Self {
            receipt_secret: receipt_secret.to_vec(),
            session_secret: session_secret.to_vec(),
            router: RouterConfig::default(),
            heartbeat: Duration::from_secs(15),

            slow_consumer: SlowConsumer::default(),
            inbox: DEFAULT_INBOX,
        }
    }
}

/// One event for a connection's writer; `data` is shared by every
/// connection that gets identical bytes.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The SSE event name.
    pub name: &'static str,
    /// The event's JSON data.
    pub data: Arc<[u8]>,
}

pub(crate) type Reply<T> = Sender<T>;

pub(crate) enum Immediate {
    Broadcast {
        except: Vec<Identity>,
        channel: Channel,
        action: Action,
        params: Payload,
    },
    Subscribe {
        identity: Identity,
        channel: Channel,
        cid: Cid,
    },
    Unsubscribe {
        identity: Identity,
        channel: Channel,
        cid: Cid,
    },
    UnsubscribeAll {
        identity: Identity,
        channel: Channel,
    },
}

pub(crate) enum HubMsg {
    Page {
        session: Session,
        path: String,
        reply: Reply<HttpResponse>,
    },
    Handshake {
        session: Session,
        req: HandshakeRequest,
        reply: Reply<HttpResponse>,
    },
    Open {
        session: Session,
        instance: InstanceId,
        handshake_id: HandshakeId,
        /// The sender, a receiver clone and the most frames it may hold.
        queue: (Sender<Frame>, Receiver<Frame>, usize),
        reply: Reply<Result<ConnId, HttpResponse>>,
    },
    Closed {
        conn: ConnId,
    },
    Command {
        session: Session,
        req: CommandRequest,
        reply: Reply<HttpResponse>,
        /// Told when the command is parked, so the caller can stop waiting
        /// on a worker thread.
        on_park: Option<Sender<()>>,
    },
    Navigate {
        session: Session,
        req: NavigateRequest,
        reply: Reply<HttpResponse>,
    },
    Immediate(Immediate),
    /// A WebSocket upgrade asks to open a socket.
    WsOpen {
        session: Session,
        apikey: Option<String>,
        queue: (
            Sender<tidings_ws::server::socket::WsOut>,
            Receiver<tidings_ws::server::socket::WsOut>,
            usize,
        ),
        reply: Reply<Result<ConnId, HttpResponse>>,
    },
    /// A socket's request, in the order its client sent it.
    Ws {
        socket: ConnId,
        req: Box<tidings_ws::server::socket::Request>,
    },
    /// A socket ended.
    WsClosed {
        socket: ConnId,
    },
    /// A validated REST broadcast call (`crate::rest`).
    Rest {
        session: Session,
        call: crate::rest::RestCall,
        reply: Reply<Result<(), crate::rest::RestError>>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

struct ConnQueue {
    tx: Sender<Frame>,
    /// A receiver clone, to drop the oldest frame under `DropOldest`.
    rx: Receiver<Frame>,
    /// The slow-consumer threshold, in frames.
    cap: usize,
}

struct Parked {
    session: Session,
    req: CommandRequest,
    reply: Reply<HttpResponse>,
}

/// Wall-clock milliseconds: receipts must stay verifiable across restarts.
fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

fn router_error(e: &RouterError) -> HttpResponse {
    let (status, code) = match e {
        RouterError::SessionMismatch => (403, "forbidden"),
        RouterError::TooManyConnections { .. } => (429, "too_many_connections"),
        RouterError::NotAttached => (409, "not_connected"),
        RouterError::TooManyHandshakes { .. } | RouterError::ParkFull { .. } => (503, "overloaded"),
        RouterError::TooManyReceipts { .. } | RouterError::TooManyBindings { .. } => {
            (413, "too_many")
        }
        _ => (400, "bad_request"),
    };
    HttpResponse::error(status, code, e.to_string())
}

/// Refuses effects whose broadcast params are not JSON: the SSE wire embeds
/// them as JSON, and nothing must be committed when they cannot be sent.
fn json_params(effects: &[Effects]) -> Result<(), HttpResponse> {
    let bad = effects
        .iter()
        .flat_map(Effects::broadcasts)
        .find(|b| serde_json::from_slice::<serde::de::IgnoredAny>(b.params.as_bytes()).is_err());
    match bad {
        Some(b) => Err(HttpResponse::error(
            500,
            "bad_params",
            format!(
                "the params of broadcast {:?} on {} are not JSON; nothing was committed",
                b.action.as_str(),
                b.channel
            ),
        )),
        None => Ok(()),
    }
}

fn app_error(e: &AppError) -> HttpResponse {
    HttpResponse::error(e.status, &e.code, e.message.clone())
}

/// The hub task's state.
pub struct Hub {
    router: Router,
    app: Arc<dyn App>,
    keys: SessionKeys,
    config: HubConfig,
    entropy: OsEntropy,
    rx: Receiver<HubMsg>,
    conns: HashMap<ConnId, ConnQueue>,
    parked: HashMap<u64, Parked>,
    next_ticket: u64,
    next_heartbeat: Instant,
    ws: ws::WsState,
}

impl Hub {
    /// A hub for `app` and a handle to it. Run it with [`Hub::run`] (e.g.
    /// on its own thread under `smol::block_on`) or use [`Hub::spawn`].
    pub fn new(app: impl App, config: HubConfig) -> (Self, HubHandle) {
        let (tx, rx) = async_channel::bounded(config.inbox);
        let hub = Self {
            router: Router::new(&config.receipt_secret, config.router.clone()),
            app: Arc::new(app),
            keys: SessionKeys::new(&config.session_secret),
            next_heartbeat: Instant::now() + config.heartbeat,
            config,
            entropy: OsEntropy,
            rx,
            conns: HashMap::new(),
            parked: HashMap::new(),
            next_ticket: 1,
            ws: ws::WsState::default(),
        };
        (hub, HubHandle { tx })
    }

    /// Runs a hub on its own thread.
    pub fn spawn(app: impl App, config: HubConfig) -> (HubHandle, std::thread::JoinHandle<()>) {
        let (hub, handle) = Self::new(app, config);
        let thread = std::thread::Builder::new()
            .name("tidings-hub".into())
            .spawn(move || smol::block_on(hub.run()))
            .expect("spawning the hub thread");
        (handle, thread)
    }

    /// The session cookie keys this hub signs with.
    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// Processes messages and timers until shut down.
    pub async fn run(mut self) {
        loop {
            let now = now_ms();
            let router_at = self
                .router
                .poll_timeout()
                .map(|at| Instant::now() + Duration::from_millis(at.saturating_sub(now)));
            let deadline = router_at.map_or(self.next_heartbeat, |at| at.min(self.next_heartbeat));
            let msg = smol::future::or(async { Some(self.rx.recv().await) }, async {
                smol::Timer::at(deadline).await;
                None
            })
            .await;
            match msg {
                Some(Ok(HubMsg::Shutdown { reply })) => {
                    self.shut_down();
                    let _ = reply.try_send(());
                    return;
                }
                Some(Ok(msg)) => self.handle(msg),
                Some(Err(_)) => return,
                None => self.tick(),
            }
            self.drain_outputs();
        }
    }

    /// Closes every stream (clients reconnect elsewhere), answers parked
    /// commands, then closes the inbox and answers or drops what is queued
    /// in it, so no caller waits for a reply that will never come.
    fn shut_down(&mut self) {
        self.conns.clear();
        self.ws_shutdown();
        let gone = || HttpResponse::error(503, "shutting_down", "the server is shutting down");
        for (_, p) in self.parked.drain() {
            let _ = p.reply.try_send(gone());
        }
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                HubMsg::Page { reply, .. }
                | HubMsg::Handshake { reply, .. }
                | HubMsg::Command { reply, .. }
                | HubMsg::Navigate { reply, .. } => {
                    let _ = reply.try_send(gone());
                }
                HubMsg::Open { reply, .. } | HubMsg::WsOpen { reply, .. } => {
                    let _ = reply.try_send(Err(gone()));
                }
                HubMsg::Rest { reply, .. } => {
                    let _ = reply.try_send(Err(crate::rest::RestError::Unavailable));
                }
                HubMsg::Shutdown { reply } => {
                    let _ = reply.try_send(());
                }
                HubMsg::Closed { .. }
                | HubMsg::Immediate(_)
                | HubMsg::Ws { .. }
                | HubMsg::WsClosed { .. } => {}
            }
        }
    }

    fn tick(&mut self) {
        self.router.handle_timeout(now_ms());
        if Instant::now() >= self.next_heartbeat {
            self.next_heartbeat = Instant::now() + self.config.heartbeat;
            let frame = Frame {
                name: names::HEARTBEAT,
                data: Arc::from(&b"{}"[..]),
            };
            let conns: Vec<ConnId> = self.conns.keys().copied().collect();
            for conn in conns {
                self.push(conn, frame.clone());
            }
        }
    }

    fn peer(instance: InstanceId, session: &Session) -> Peer {
        Peer {
            instance,
            session: session.id,
            user: session.user.clone(),
        }
    }

    fn handle(&mut self, msg: HubMsg) {
        let now = now_ms();
        match msg {
            HubMsg::Page {
                session,
                path,
                reply,
            } => {
                let _ = reply.try_send(self.page(now, &session, &path));
            }
            HubMsg::Handshake {
                session,
                req,
                reply,
            } => {
                let peer = Self::peer(req.instance_id, &session);
                let tokens: Vec<&str> = req.receipts.iter().map(String::as_str).collect();
                let resp = match self
                    .router
                    .handshake(now, &mut self.entropy, &peer, &tokens)
                {
                    Ok(hs) => HttpResponse::json(
                        200,
                        &HandshakeResponse {
                            handshake_id: hs.handshake_id,
                            receipts: hs.receipts.into_iter().map(ReceiptJson::from).collect(),
                        },
                    ),
                    Err(e) => router_error(&e),
                };
                let _ = reply.try_send(resp);
            }
            HubMsg::Open {
                session,
                instance,
                handshake_id,
                queue: (tx, rx, cap),
                reply,
            } => {
                let peer = Self::peer(instance, &session);
                let result = match self.router.attach(now, &handshake_id, &peer) {
                    Ok(conn) => {
                        self.conns.insert(conn, ConnQueue { tx, rx, cap });
                        Ok(conn)
                    }
                    Err(e) => Err(router_error(&e)),
                };
                let _ = reply.try_send(result);
            }
            HubMsg::Closed { conn } => {
                self.conns.remove(&conn);
                self.router.detach(conn);
            }
            HubMsg::Command {
                session,
                req,
                reply,
                on_park,
            } => self.command(now, session, req, reply, on_park.as_ref()),
            HubMsg::Navigate {
                session,
                req,
                reply,
            } => {
                let _ = reply.try_send(self.navigate(now, &session, &req));
            }
            HubMsg::Immediate(op) => self.immediate(now, op),
            HubMsg::WsOpen {
                session,
                apikey,
                queue,
                reply,
            } => {
                let _ = reply.try_send(self.ws_open(session, apikey.as_deref(), queue));
            }
            HubMsg::Ws { socket, req } => self.ws_request(now, socket, *req),
            HubMsg::WsClosed { socket } => self.ws_closed(socket),
            HubMsg::Rest {
                session,
                call,
                reply,
            } => {
                let _ = reply.try_send(self.rest_broadcast(&session, call));
            }
            HubMsg::Shutdown { .. } => {}
        }
    }

    fn immediate(&mut self, now: Millis, op: Immediate) {
        // Inputs were validated by the handle; the router cannot refuse them.
        let _ = match op {
            Immediate::Broadcast {
                except,
                channel,
                action,
                params,
            } => self
                .router
                .broadcast_action_except(&except, channel, action.as_str(), params),
            Immediate::Subscribe {
                identity,
                channel,
                cid,
            } => self
                .router
                .subscribe(now, &identity, channel, cid)
                .map(|_| ()),
            Immediate::Unsubscribe {
                identity,
                channel,
                cid,
            } => self.router.unsubscribe(now, &identity, channel, cid),
            Immediate::UnsubscribeAll { identity, channel } => {
                self.router.unsubscribe_all(now, &identity, channel)
            }
        };
    }

    /// Renders a page for a fresh instance and embeds the boot data.
    /// Runs the app's render for `path`; a panic or refusal becomes the
    /// error response (nothing is committed).
    fn render(&self, path: &str, peer: &Peer) -> Result<(String, Page), HttpResponse> {
        let mut page = Page::new(peer.clone());
        match catch_unwind(AssertUnwindSafe(|| self.app.render(path, &mut page))) {
            Err(_) => Err(HttpResponse::error(
                500,
                "handler_panicked",
                "the page's init handler panicked",
            )),
            Ok(Err(e)) => Err(app_error(&e)),
            Ok(Ok(None)) => Err(HttpResponse::error(
                404,
                "not_found",
                format!("no page at {path}"),
            )),
            Ok(Ok(Some(html))) => json_params(&page.components).map(|()| (html, page)),
        }
    }

    fn page(&mut self, now: Millis, session: &Session, path: &str) -> HttpResponse {
        let peer = Self::peer(InstanceId::mint(&mut self.entropy), session);
        let (html, page) = match self.render(path, &peer) {
            Ok(rendered) => rendered,
            Err(resp) => return resp,
        };
        let committed = match self.router.commit_page(now, &peer, page.components, &[]) {
            Ok(c) => c,
            Err(e) => return router_error(&e),
        };
        let boot = json!({
            "instance_id": peer.instance,
            "receipts": committed.receipt_adds.iter().cloned().map(ReceiptJson::from).collect::<Vec<_>>(),
            "self_echoes": self_echoes(&committed.self_echoes),
        });
        // `</` cannot appear in the JSON's strings unescaped inside a script.
        let boot = boot.to_string().replace("</", "<\\/");
        let script =
            format!(r#"<script id="tidings-boot" type="application/json">{boot}</script>"#);
        let html = if html.contains("<!--tidings-boot-->") {
            html.replacen("<!--tidings-boot-->", &script, 1)
        } else {
            html.replacen("</head>", &format!("{script}</head>"), 1)
        };
        let mut resp = HttpResponse {
            status: 200,
            content_type: "text/html; charset=utf-8",
            headers: vec![("Cache-Control", "no-store".to_owned())],
            body: html.into_bytes(),
        };
        self.identity_cookie(session, &committed, &mut resp);
        resp
    }

    fn identity_cookie(&self, session: &Session, committed: &Committed, resp: &mut HttpResponse) {
        if committed.session != session.id || committed.user != session.user {
            let new = Session {
                id: committed.session,
                user: committed.user.clone(),
            };
            resp.headers
                .push(("Set-Cookie", self.keys.set_cookie(&new)));
        }
    }

    fn command(
        &mut self,
        now: Millis,
        session: Session,
        req: CommandRequest,
        reply: Reply<HttpResponse>,
        on_park: Option<&Sender<()>>,
    ) {
        match self
            .router
            .command(req.instance_id, session.id, req.target.clone())
        {
            Ok(fx) => {
                let _ = reply.try_send(self.run_command(now, &session, fx, &req));
            }
            Err(RouterError::NotAttached) => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                let instance = req.instance_id;
                self.parked.insert(
                    ticket,
                    Parked {
                        session,
                        req,
                        reply,
                    },
                );
                match self.router.park(now, instance, ticket) {
                    Err(e) => {
                        if let Some(p) = self.parked.remove(&ticket) {
                            let _ = p.reply.try_send(router_error(&e));
                        }
                    }
                    Ok(()) => {
                        if let Some(tell) = on_park {
                            let _ = tell.try_send(());
                        }
                    }
                }
            }
            Err(e) => {
                let _ = reply.try_send(router_error(&e));
            }
        }
    }

    fn run_command(
        &mut self,
        now: Millis,
        session: &Session,
        mut fx: Effects,
        req: &CommandRequest,
    ) -> HttpResponse {
        let params: serde_json::Value = match serde_json::from_str(req.params.get()) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => return HttpResponse::error(400, "bad_request", "params must be a JSON object"),
        };
        let next = match catch_unwind(AssertUnwindSafe(|| {
            self.app.command(&mut fx, &req.name, &params)
        })) {
            Err(_) => {
                return HttpResponse::error(
                    500,
                    "handler_panicked",
                    "the command handler panicked; nothing was committed",
                );
            }
            Ok(Err(e)) => return app_error(&e),
            Ok(Ok(next)) => next,
        };
        // Everything the response and the broadcasts need is checked and
        // encoded before the commit: bad params fail the handler cleanly.
        if let Err(resp) = json_params(std::slice::from_ref(&fx)) {
            return resp;
        }
        let action = next.map(|n| {
            json!({"action": n.action, "params": n.params, "cid": n.cid.unwrap_or_else(|| req.target.as_str().to_owned())})
        });
        let committed = match self.router.commit(now, fx) {
            Ok(c) => c,
            Err(e) => return router_error(&e),
        };
        let mut resp = HttpResponse::json(
            200,
            &json!({
                "action": action,
                "self_echoes": self_echoes(&committed.self_echoes),
                "receipts": Self::diff(&committed),
            }),
        );
        self.identity_cookie(session, &committed, &mut resp);
        resp
    }

    fn diff(committed: &Committed) -> ReceiptDiff {
        ReceiptDiff {
            adds: committed
                .receipt_adds
                .iter()
                .cloned()
                .map(ReceiptJson::from)
                .collect(),
            drops: committed
                .receipt_drops
                .iter()
                .cloned()
                .map(KeyJson::from)
                .collect(),
        }
    }

    fn navigate(&mut self, now: Millis, session: &Session, req: &NavigateRequest) -> HttpResponse {
        let peer = Self::peer(req.instance_id, session);
        let path = req.path.split('?').next().unwrap_or("/");
        let (html, page) = match self.render(path, &peer) {
            Ok(rendered) => rendered,
            Err(resp) => return resp,
        };
        let claimed: Vec<_> = req.claimed.iter().cloned().map(Into::into).collect();
        let committed = match self
            .router
            .commit_page(now, &peer, page.components, &claimed)
        {
            Ok(c) => c,
            Err(e) => return router_error(&e),
        };
        let mut resp = HttpResponse::json(
            200,
            &json!({
                "html": html,
                "self_echoes": self_echoes(&committed.self_echoes),
                "receipts": Self::diff(&committed),
            }),
        );
        self.identity_cookie(session, &committed, &mut resp);
        resp
    }

    /// Queues a frame for a connection, applying the slow-consumer policy.
    fn push(&mut self, conn: ConnId, frame: Frame) {
        if self.ws_stream_push(conn, frame.name, &frame.data) {
            return;
        }
        let Some(q) = self.conns.get(&conn) else {
            return;
        };
        if q.tx.len() >= q.cap {
            match self.config.slow_consumer {
                SlowConsumer::DropOldest => {
                    let _ = q.rx.try_recv();
                }
                SlowConsumer::Disconnect => {
                    self.disconnect(conn);
                    return;
                }
            }
        }
        if q.tx.try_send(frame).is_err() {
            self.disconnect(conn);
        }
    }

    fn disconnect(&mut self, conn: ConnId) {
        // Dropping the queue ends the writer, which ends the stream.
        self.conns.remove(&conn);
        self.router.detach(conn);
    }

    fn drain_outputs(&mut self) {
        while let Some(out) = self.router.poll_output() {
            match out {
                Output::Fanout {
                    broadcast,
                    recipients,
                } => {
                    // One encoding per distinct cid set, shared by every
                    // tab with that set; params are written as they are.
                    let (sockets, recipients): (Vec<_>, Vec<_>) = recipients
                        .into_iter()
                        .partition(|r| self.ws.sockets.contains_key(&r.conn));
                    if !sockets.is_empty() {
                        let conns: Vec<ConnId> = sockets.iter().map(|r| r.conn).collect();
                        self.ws_fanout(
                            &broadcast.channel,
                            broadcast.action.as_str(),
                            &broadcast.params,
                            &conns,
                        );
                    }
                    // The SSE wire embeds params as JSON: pages do not get
                    // binary payloads (as Phoenix V1 sockets do not).
                    if broadcast.params.is_binary() {
                        continue;
                    }
                    let params = raw_params(broadcast.params.as_bytes());
                    let mut frames: HashMap<Cids, Frame> = HashMap::new();
                    for r in recipients {
                        let frame = if let Some(f) = frames.get(&r.cids) {
                            f.clone()
                        } else {
                            let data = serde_json::to_vec(&BroadcastJson {
                                action: broadcast.action.as_str(),
                                params,
                                cids: r.cids.as_slice().iter().map(Cid::as_str).collect(),
                            })
                            .expect("broadcast frames serialize");
                            let f = Frame {
                                name: names::BROADCAST,
                                data: data.into(),
                            };
                            frames.insert(r.cids.clone(), f.clone());
                            f
                        };
                        self.push(r.conn, frame);
                    }
                }
                Output::AddReceipts { conn, receipts } => {
                    let data: Vec<ReceiptJson> =
                        receipts.into_iter().map(ReceiptJson::from).collect();
                    self.push_json(conn, names::ADD_SUB_RECEIPTS, &data);
                }
                Output::RefreshReceipts { conn, receipts } => {
                    let data: Vec<ReceiptJson> =
                        receipts.into_iter().map(ReceiptJson::from).collect();
                    self.push_json(conn, names::REFRESH_SUB_RECEIPTS, &data);
                }
                Output::DropReceipts { conn, keys } => {
                    let data: Vec<KeyJson> = keys.into_iter().map(KeyJson::from).collect();
                    self.push_json(conn, names::DROP_SUB_RECEIPTS, &data);
                }
                Output::Close { conn, .. } => {
                    if !self.ws_stream_closed(conn) {
                        self.conns.remove(&conn);
                    }
                }
                Output::PresenceDiff {
                    channel,
                    diff,
                    recipients,
                } => self.ws_presence(&channel, &diff, &recipients),
                Output::CommandReady { ticket } => {
                    if let Some(p) = self.parked.remove(&ticket) {
                        let now = now_ms();
                        self.command(now, p.session, p.req, p.reply, None);
                    }
                }
                Output::CommandExpired { ticket } => {
                    if let Some(p) = self.parked.remove(&ticket) {
                        let _ = p.reply.try_send(HttpResponse::error(
                            409,
                            "not_connected",
                            "the instance's stream did not attach in time; reconnect and retry",
                        ));
                    }
                }
                // The SSE client learns identity changes from the command's
                // cookie; a single node has no cluster bus to tell.
                Output::IdentityChanged { .. } | Output::ChannelUp(_) | Output::ChannelDown(_) => {}
            }
        }
    }

    fn push_json(&mut self, conn: ConnId, name: &'static str, data: &impl serde::Serialize) {
        let data = serde_json::to_vec(data).expect("receipt frames serialize");
        self.push(
            conn,
            Frame {
                name,
                data: data.into(),
            },
        );
    }
}
