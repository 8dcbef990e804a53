//! The Rust realtime client: what the Elixir `supabase_realtime` client
//! gives Elixir programs, with realtime-js's wire behaviour (SPEC §9).
//!
//! * [`Client`](crate::client::Client) / [`ClientConfig`](crate::client::ClientConfig): one socket, its channels, a [`Store`](crate::client::Store)
//!   of their states, events through a [`HandleEvent`](crate::client::HandleEvent) callback or an
//!   [`Events`](crate::client::Events) stream.
//! * [`Connection`](crate::client::Connection): the sans-IO state machine under it (frames and `now`
//!   in; frames, events, connect/close requests and the next deadline out).
//!   Every timing rule is there, tested with injected time.
//! * [`Driver`](crate::client::Driver): runs a `Connection` over a non-blocking `tungstenite`
//!   client on async-io; [`Spawn`](crate::client::Spawn) lets any executor poll it (smol's by
//!   default).
//!
//! Behaviour, briefly: states `connecting | open | closing | closed` with
//! state-change events; a heartbeat every 25 s whose reply must come within
//! one interval, else close 1000 "heartbeat timeout" and reconnect;
//! reconnect backoff 1 s, 2 s, 5 s, 10 s… reset on open; a send buffer of
//! 100 messages while not open (oldest dropped) flushed in order on open;
//! per-channel push buffers (100, oldest dropped, 10 s timeout each) until
//! joined; rejoin of every channel on open with a new join_ref, and after a
//! join error, join timeout or `phx_error` with backoff 1 s, 2 s, 5 s, 10 s;
//! no rejoin after the server's `phx_close`; messages with a stale join_ref
//! dropped; broadcasts matched by `*` or their event ignoring case;
//! presence merged with phoenix.js's algorithm; `access_token_fn`
//! consulted before each connect and after every heartbeat, a changed token
//! pushed to joined channels.
//!
//! Transport: `ws://`, and `wss://` with the `tls` feature (on by default;
//! rustls, Mozilla's roots or `ClientConfig::root_certificate`). The REST
//! broadcast endpoints are reached with
//! [`Client::http_send`](crate::client::Client::http_send) and, when
//! [`ClientConfig::http_fallback`](crate::client::ClientConfig::http_fallback)
//! is on, by broadcasts on channels that cannot push (realtime-js's
//! fallback); both run on the blocking pool.
//!
//! ```no_run
//! use std::time::Duration;
//! use tidings_ws::client::{Binding, ChannelOptions, Client, ClientConfig, Event};
//!
//! let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket").apikey("k"))?;
//! let room = client.channel("lobby", ChannelOptions::default().broadcast_ack(true));
//! client.on(&room, Binding::broadcast("*"))?;
//! client.subscribe(&room)?;
//! let events = client.events();
//! smol::block_on(async {
//!     let ack = client.broadcast_with_ack(&room, "hello", &serde_json::json!({"body": "hi"}))?;
//!     client.wait_for_ack(&ack, Duration::from_secs(5)).await?;
//!     while let Some(e) = events.recv().await {
//!         if let Event::Broadcast { event, payload, .. } = e {
//!             println!("{event}: {payload:?}");
//!         }
//!     }
//!     Ok::<_, tidings_ws::client::Error>(())
//! })?;
//! # Ok::<_, tidings_ws::client::Error>(())
//! ```

mod conn;
mod driver;
mod error;
mod http;
mod store;
#[cfg(feature = "tls")]
mod tls;
mod types;
mod wire;

#[cfg(not(feature = "tls"))]
mod tls {
    /// Without the `tls` feature there is nothing to configure.
    #[derive(Clone, Default)]
    pub(crate) struct TlsOptions {}
}

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use smol::{Timer, future};

pub use conn::{
    Backoff, ChannelId, Connection, ConnectionConfig, DEFAULT_DISCONNECT_WHEN_EMPTY_AFTER,
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_PUSH_BUFFER_CAPACITY, DEFAULT_SEND_BUFFER_CAPACITY,
    DEFAULT_TIMEOUT, HttpBroadcast, MAX_PENDING_PRESENCE_DIFFS, Output, StoreUpdate,
    default_reconnect_after, default_rejoin_after, normalize_topic,
};
pub use driver::Driver;
pub use error::{Error, ErrorCode};
pub use store::Store;
pub use types::{
    Binding, BroadcastPayload, ChangeKind, ChannelEvent, ChannelInfo, ChannelOptions, ChannelState,
    ConnectionEvent, ConnectionState, Event, Frame, PostgresChangesFilter, PresenceChange,
    PresenceState,
};

pub use crate::frame::Vsn;

use crate::frame::Payload;

/// The rustls this client is built with, for [`ClientConfig::rustls_config`].
#[cfg(feature = "tls")]
pub use rustls;

use driver::{Settings, Shared, lock};

/// Called before each connect and after each heartbeat for a fresh token
/// (`None`: keep the current one; at connect, fall back to `access_token`,
/// then the apikey). Runs on the blocking thread pool, so it may block.
pub type TokenFn = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Default capacity of each [`Events`] stream (the oldest event is dropped
/// past it, so a stalled reader cannot grow memory without bound).
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Default limit on the TCP connect plus the WebSocket handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait for the server's close frame after sending ours.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default largest inbound message (5 MB, the Supabase server's frame limit).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 5_000_000;

/// Receives every [`Event`] (the seed's `handle_event/1`). Called on the
/// driver's task: return quickly. A panic loses that event only.
pub trait HandleEvent: Send + Sync + 'static {
    /// One event.
    fn handle_event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync + 'static> HandleEvent for F {
    fn handle_event(&self, event: &Event) {
        self(event);
    }
}

/// Runs a client's [`Driver`] on some executor.
pub trait Spawn {
    /// Starts `driver.run()` and returns at once.
    fn spawn(&self, driver: Driver);
}

/// Spawns on smol's global executor (`smol::spawn(..).detach()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolGlobal;

impl Spawn for SmolGlobal {
    fn spawn(&self, driver: Driver) {
        smol::spawn(driver.run()).detach();
    }
}

impl<F: Fn(Driver)> Spawn for F {
    fn spawn(&self, driver: Driver) {
        self(driver);
    }
}

/// A client's settings (builder).
///
/// ```
/// use std::time::Duration;
/// use tidings_ws::client::{ClientConfig, Vsn};
/// let c = ClientConfig::new("ws://127.0.0.1:4000/socket")
///     .apikey("anon")
///     .param("log_level", "info")
///     .vsn(Vsn::V1)
///     .heartbeat_interval(Duration::from_secs(30))
///     .reconnect_after(|tries| Duration::from_millis(100 * u64::from(tries)))
///     .access_token_fn(|| Some("jwt".to_owned()));
/// assert_eq!(
///     c.socket_url().unwrap(),
///     "ws://127.0.0.1:4000/socket/websocket?apikey=anon&log_level=info&vsn=1.0.0"
/// );
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    url: String,
    apikey: Option<String>,
    params: Vec<(String, String)>,
    conn: ConnectionConfig,
    access_token_fn: Option<TokenFn>,
    handler: Option<Arc<dyn HandleEvent>>,
    event_capacity: usize,
    connect_timeout: Duration,
    close_timeout: Duration,
    max_message_bytes: usize,
    tls: tls::TlsOptions,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("apikey", &self.apikey.as_ref().map(|_| "<set>"))
            .field("params", &self.params)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Settings for the endpoint `url` (`ws://host:port/socket`; `/websocket`
    /// and the query are added; `http(s)` becomes `ws(s)`), with the
    /// realtime-js defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            apikey: None,
            params: Vec::new(),
            conn: ConnectionConfig::default(),
            access_token_fn: None,
            handler: None,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tls: tls::TlsOptions::default(),
        }
    }

    /// The `apikey` query parameter (and the last-resort bearer token).
    #[must_use]
    pub fn apikey(mut self, key: impl Into<String>) -> Self {
        self.apikey = Some(key.into());
        self
    }

    /// One more query parameter.
    #[must_use]
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }

    /// The serializer: `Vsn::V2` (`2.0.0`, the default) or `Vsn::V1`.
    #[must_use]
    pub fn vsn(mut self, vsn: Vsn) -> Self {
        self.conn.vsn = vsn;
        self
    }

    /// The heartbeat interval (default 25 s), also the reply timeout.
    #[must_use]
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.conn.heartbeat_interval = d;
        self
    }

    /// The reconnect backoff: delay before try `n` (1-based).
    #[must_use]
    pub fn reconnect_after(mut self, f: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        self.conn.reconnect_after = Arc::new(f);
        self
    }

    /// The channel rejoin backoff: delay before try `n` (1-based).
    #[must_use]
    pub fn rejoin_after(mut self, f: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        self.conn.rejoin_after = Arc::new(f);
        self
    }

    /// The join and push timeout (default 10 s).
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.conn.timeout = d;
        self
    }

    /// The socket send buffer's capacity (default 100).
    #[must_use]
    pub fn send_buffer_capacity(mut self, n: usize) -> Self {
        self.conn.send_buffer_capacity = n;
        self
    }

    /// Each channel push buffer's capacity (default 100).
    #[must_use]
    pub fn push_buffer_capacity(mut self, n: usize) -> Self {
        self.conn.push_buffer_capacity = n;
        self
    }

    /// The token for joins and the upgrade until `set_auth` changes it.
    #[must_use]
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.conn.access_token = Some(token.into());
        self
    }

    /// A token source consulted before each connect and after every
    /// heartbeat (realtime-js's `accessToken` callback). Its token wins over
    /// `access_token` and `set_auth`, goes into the joins, and is pushed as
    /// `access_token` to joined channels whenever it changes. It runs on the
    /// blocking thread pool, so it may do I/O; `None` keeps the current token.
    #[must_use]
    pub fn access_token_fn(
        mut self,
        f: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.access_token_fn = Some(Arc::new(f));
        self.conn.refresh_token_on_heartbeat = true;
        self
    }

    /// realtime-js's implicit REST fallback (default **off**): a broadcast
    /// on a channel that cannot push (socket not open, or channel not
    /// joined, including never subscribed) is POSTed to
    /// `<http base>/api/broadcast` instead of waiting in the push buffer;
    /// `wait_for_ack` then resolves from the HTTP status.
    ///
    /// Off by default, as in the Elixir client, because realtime-js
    /// deprecates the implicit fallback (it warns and points to `httpSend`),
    /// and because buffering keeps broadcasts in order on one socket; use
    /// [`Client::http_send`] to POST explicitly.
    #[must_use]
    pub fn http_fallback(mut self, on: bool) -> Self {
        self.conn.http_fallback = on;
        self
    }

    /// Closes the socket this long after its last channel was
    /// unsubscribed (default 50 s, as realtime-js; `None` keeps it open).
    /// A new channel cancels the pending close; subscribing after it
    /// connects again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidings_ws::client::ClientConfig;
    /// let cfg = ClientConfig::new("ws://127.0.0.1:4000/socket")
    ///     .disconnect_when_empty_after(Some(Duration::from_secs(5)));
    /// # let _ = cfg;
    /// ```
    #[must_use]
    pub fn disconnect_when_empty_after(mut self, after: Option<Duration>) -> Self {
        self.conn.disconnect_when_empty_after = after;
        self
    }

    /// Trusts this root certificate (DER) for `wss://` and `https://`.
    /// Once any is given, the given roots replace the built-in Mozilla
    /// roots; call again to add more.
    ///
    /// ```
    /// use tidings_ws::client::ClientConfig;
    /// # let der: Vec<u8> = Vec::new();
    /// let c = ClientConfig::new("wss://realtime.example/socket").root_certificate(der);
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.tls.roots.push(der.into());
        self
    }

    /// A complete rustls config for `wss://` (client certificates, a custom
    /// verifier, …); it wins over [`root_certificate`](Self::root_certificate)
    /// for the WebSocket. The HTTP endpoints keep using the roots.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tidings_ws::client::{ClientConfig, rustls};
    /// let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    /// let tls = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()
    ///     .unwrap()
    ///     .with_root_certificates(rustls::RootCertStore::empty())
    ///     .with_no_client_auth();
    /// let c = ClientConfig::new("wss://realtime.example/socket").rustls_config(Arc::new(tls));
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn rustls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls.rustls = Some(config);
        self
    }

    /// The event callback (the seed's `handle_event/1`).
    #[must_use]
    pub fn handler(mut self, h: impl HandleEvent) -> Self {
        self.handler = Some(Arc::new(h));
        self
    }

    /// Each [`Events`] stream's capacity (default 1024, oldest dropped).
    #[must_use]
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(1);
        self
    }

    /// The limit on TCP connect plus handshake (default 10 s).
    #[must_use]
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long to wait for the server's close frame (default 1 s).
    #[must_use]
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// The largest inbound message accepted (default 5 MB).
    #[must_use]
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }

    /// The WebSocket URL these settings connect to.
    pub fn socket_url(&self) -> Result<String, Error> {
        wire::socket_url(
            &self.url,
            self.apikey.as_deref(),
            &self.params,
            self.conn.vsn,
        )
    }

    /// The REST batch endpoint, derived from the socket URL as realtime-js
    /// does: `ws` → `http`, `wss` → `https`, a trailing `/socket/websocket`,
    /// `/socket` or `/websocket` removed, `/api/broadcast` added, the query
    /// kept.
    ///
    /// ```
    /// use tidings_ws::client::ClientConfig;
    /// let c = ClientConfig::new("ws://127.0.0.1:4000/socket").apikey("KEY");
    /// assert_eq!(c.broadcast_url().unwrap(), "http://127.0.0.1:4000/api/broadcast?apikey=KEY&vsn=2.0.0");
    /// let s = ClientConfig::new("https://abc.supabase.co/realtime/v1");
    /// assert_eq!(s.broadcast_url().unwrap(), "https://abc.supabase.co/realtime/v1/api/broadcast?vsn=2.0.0");
    /// ```
    pub fn broadcast_url(&self) -> Result<String, Error> {
        Ok(wire::HttpEndpoint::from_socket_url(&self.socket_url()?)?.batch_url())
    }
}

/// A channel handle: cheap to clone, names one channel of one client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel {
    id: ChannelId,
    topic: Arc<str>,
}

impl Channel {
    /// `realtime:<name>`.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The id inside the client's [`Connection`].
    pub fn id(&self) -> ChannelId {
        self.id
    }
}

/// The server accepted a push (`phx_reply` with status `ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged;

/// A push whose reply can be awaited with [`Client::wait_for_ack`]; its ref
/// is the push's wire ref.
#[derive(Debug, Clone)]
pub struct AckRef {
    push_ref: String,
    rx: async_channel::Receiver<Result<(), Error>>,
}

impl AckRef {
    /// The push's ref on the wire.
    pub fn push_ref(&self) -> &str {
        &self.push_ref
    }
}

/// An async stream of every [`Event`] (also a `futures_core::Stream`).
#[derive(Debug)]
pub struct Events {
    rx: Pin<Box<async_channel::Receiver<Event>>>,
}

impl Clone for Events {
    fn clone(&self) -> Self {
        Self {
            rx: Box::pin(self.rx.as_ref().get_ref().clone()),
        }
    }
}

impl Events {
    /// The next event; `None` once the client is gone.
    pub async fn recv(&self) -> Option<Event> {
        self.rx.recv().await.ok()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl smol::stream::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.as_mut().poll_next(cx)
    }
}

struct Inner {
    shared: Arc<Shared>,
    event_capacity: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake();
    }
}

/// A realtime client: one socket and its channels. Cloning shares it; the
/// socket closes when the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.connection_state())
            .field("channels", &self.inner.shared.store.len())
            .finish()
    }
}

fn to_json(payload: &impl Serialize) -> Result<String, Error> {
    serde_json::to_string(payload).map_err(|e| {
        Error::new(
            ErrorCode::InvalidInput,
            "payload does not serialize to JSON",
        )
        .with("reason", e.to_string())
    })
}

impl Client {
    /// Connects on smol's global executor (the connection runs in the
    /// background, reconnecting as needed).
    ///
    /// ```no_run
    /// use tidings_ws::client::{Client, ClientConfig};
    /// let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket").apikey("k")).unwrap();
    /// ```
    pub fn connect(config: ClientConfig) -> Result<Client, Error> {
        Self::connect_with(config, &SmolGlobal)
    }

    /// Connects, running the driver with `spawner`.
    ///
    /// ```no_run
    /// use tidings_ws::client::{Client, ClientConfig, Driver};
    /// let client = Client::connect_with(ClientConfig::new("ws://127.0.0.1:4000/socket"), &|d: Driver| {
    ///     std::thread::spawn(move || smol::block_on(d.run()));
    /// })
    /// .unwrap();
    /// ```
    pub fn connect_with(config: ClientConfig, spawner: &impl Spawn) -> Result<Client, Error> {
        let (client, driver) = Self::new(config)?;
        spawner.spawn(driver);
        Ok(client)
    }

    /// A client and its driver, for running the driver yourself. The
    /// client starts connecting once the driver runs.
    ///
    /// ```
    /// use tidings_ws::client::{Client, ClientConfig, ConnectionState, ErrorCode};
    /// let (client, _driver) = Client::new(ClientConfig::new("ws://127.0.0.1:1/socket")).unwrap();
    /// assert_eq!(client.connection_state(), ConnectionState::Connecting);
    /// assert_eq!(Client::new(ClientConfig::new("nope")).unwrap_err().code, ErrorCode::InvalidInput);
    /// ```
    pub fn new(config: ClientConfig) -> Result<(Client, Driver), Error> {
        let url = config.socket_url()?;
        let http = Arc::new(http::Http::new(
            &url,
            config.apikey.clone(),
            config.conn.timeout,
            &config.tls,
        )?);
        #[cfg(feature = "tls")]
        let tls = tls::ws_config(&config.tls)?;
        let (wake, wake_rx) = async_channel::bounded(1);
        let mut core = Connection::new(config.conn);
        core.connect(std::time::Instant::now());
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            store: Store::default(),
            replies: Mutex::new(HashMap::new()),
            handler: config.handler,
            subscribers: Mutex::new(Vec::new()),
            wake,
            shutdown: AtomicBool::new(false),
            token_refreshing: AtomicBool::new(false),
            settings: Settings {
                url,
                apikey: config.apikey,
                access_token_fn: config.access_token_fn,
                connect_timeout: config.connect_timeout,
                close_timeout: config.close_timeout,
                max_message_bytes: config.max_message_bytes,
                http,
                #[cfg(feature = "tls")]
                tls,
            },
        });
        let driver = Driver {
            shared: Arc::clone(&shared),
            wake_rx,
        };
        let client = Client {
            inner: Arc::new(Inner {
                shared,
                event_capacity: config.event_capacity,
            }),
        };
        Ok((client, driver))
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// `connecting`, `open`, `closing` or `closed`.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{Client, ClientConfig, ConnectionState};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// println!("{}", client.connection_state());
    /// ```
    pub fn connection_state(&self) -> ConnectionState {
        lock(&self.shared().core).state()
    }

    /// A new stream of every event from now on.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// let events = client.events();
    /// smol::block_on(async { while let Some(e) = events.recv().await { println!("{e:?}") } });
    /// ```
    pub fn events(&self) -> Events {
        let (tx, rx) = async_channel::bounded(self.inner.event_capacity);
        lock(&self.shared().subscribers).push(tx);
        Events { rx: Box::pin(rx) }
    }

    /// The channel store.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// for c in client.store().channels() { println!("{} {}", c.topic, c.state) }
    /// ```
    pub fn store(&self) -> &Store {
        &self.shared().store
    }

    /// The channel for `topic` (`realtime:` prefixed when missing); the same
    /// topic returns the same channel (and ignores `opts`).
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// let a = client.channel("room1", ChannelOptions::default().broadcast_self(true));
    /// let b = client.channel("realtime:room1", ChannelOptions::default());
    /// assert_eq!(a, b);
    /// assert_eq!(a.topic(), "realtime:room1");
    /// ```
    pub fn channel(&self, topic: &str, opts: ChannelOptions) -> Channel {
        self.shared().with_core(|c, _| {
            let id = c.channel(topic, opts);
            Channel {
                id,
                topic: Arc::from(normalize_topic(topic)),
            }
        })
    }

    /// Adds a binding: `on(&ch, Binding::broadcast("*"))`,
    /// `Binding::presence("sync")`, `Binding::System`,
    /// `Binding::PostgresChanges(..)`. Bind before subscribing.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{Binding, ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// let room = client.channel("room1", ChannelOptions::default());
    /// client.on(&room, Binding::broadcast("new_message")).unwrap();
    /// client.on(&room, Binding::parse("presence", "all").unwrap()).unwrap();
    /// ```
    pub fn on(&self, channel: &Channel, binding: Binding) -> Result<(), Error> {
        self.shared().with_core(|c, _| c.on(channel.id, binding))
    }

    /// Joins the channel (now, or when the socket opens).
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// let room = client.channel("room1", ChannelOptions::default());
    /// client.subscribe(&room).unwrap();
    /// ```
    pub fn subscribe(&self, channel: &Channel) -> Result<(), Error> {
        self.shared()
            .with_core(|c, now| c.subscribe(channel.id, now))
    }

    /// Leaves the channel and removes it from the client and the store.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// # let room = client.channel("room1", ChannelOptions::default());
    /// client.unsubscribe(&room).unwrap();
    /// assert!(client.store().channel("room1").is_none());
    /// ```
    pub fn unsubscribe(&self, channel: &Channel) -> Result<(), Error> {
        self.shared()
            .with_core(|c, now| c.unsubscribe(channel.id, now))
    }

    /// Unsubscribes every channel.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// client.remove_all_channels();
    /// ```
    pub fn remove_all_channels(&self) {
        self.shared().with_core(|c, now| {
            let ids: Vec<ChannelId> = c
                .channels()
                .iter()
                .filter_map(|i| c.channel_id(&i.topic))
                .collect();
            for id in ids {
                let _ = c.unsubscribe(id, now);
            }
        });
    }

    /// Broadcasts `event` with `payload` to the channel (no reply; buffered
    /// until joined). Errors if the channel was never subscribed.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// # let room = client.channel("room1", ChannelOptions::default());
    /// client.broadcast(&room, "new_message", &serde_json::json!({"body": "hello"})).unwrap();
    /// ```
    pub fn broadcast(
        &self,
        channel: &Channel,
        event: &str,
        payload: &impl Serialize,
    ) -> Result<(), Error> {
        let p = to_json(payload)?;
        self.shared()
            .with_core(|c, now| c.broadcast(channel.id, event, &p, now))
            .map(|_| ())
    }

    fn with_reply(
        &self,
        f: impl FnOnce(&mut Connection, std::time::Instant) -> Result<String, Error>,
    ) -> Result<AckRef, Error> {
        let shared = self.shared();
        shared.with_core(|c, now| {
            let push_ref = f(c, now)?;
            let (tx, rx) = async_channel::bounded(1);
            lock(&shared.replies).insert(push_ref.clone(), tx);
            Ok(AckRef { push_ref, rx })
        })
    }

    /// Broadcasts and returns a ref to [`wait_for_ack`](Self::wait_for_ack)
    /// on; needs the channel option `broadcast_ack`.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// let room = client.channel("room1", ChannelOptions::default().broadcast_ack(true));
    /// client.subscribe(&room).unwrap();
    /// let ack = client.broadcast_with_ack(&room, "event", &serde_json::json!({"data": 1})).unwrap();
    /// smol::block_on(client.wait_for_ack(&ack, Duration::from_secs(5))).unwrap();
    /// ```
    pub fn broadcast_with_ack(
        &self,
        channel: &Channel,
        event: &str,
        payload: &impl Serialize,
    ) -> Result<AckRef, Error> {
        let p = to_json(payload)?;
        self.with_reply(|c, now| c.broadcast_with_ack(channel.id, event, &p, now))
    }

    /// Broadcasts `event` with a binary payload (realtime-js `send` with an
    /// `ArrayBuffer`; no reply; buffered until joined). Receivers on
    /// vsn 2.0.0 get [`BroadcastPayload::Binary`] with exactly these bytes;
    /// V1 receivers get nothing (the server cannot put bytes in JSON).
    ///
    /// On the wire it is a binary kind-3 frame with payload encoding 0, so
    /// the client must speak vsn 2.0.0 (the default): on V1 this is an
    /// `Unsupported` error. A topic or event over 255 bytes (the frame
    /// header's limit) is `InvalidInput`. With
    /// [`ClientConfig::http_fallback`], a channel that cannot push POSTs the
    /// bytes to the single endpoint as `application/octet-stream` instead.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// let room = client.channel("room1", ChannelOptions::default());
    /// client.subscribe(&room)?;
    /// client.broadcast_binary(&room, "frame", &[0x00, 0x80, 0xff])?;
    /// # Ok::<_, tidings_ws::client::Error>(())
    /// ```
    pub fn broadcast_binary(
        &self,
        channel: &Channel,
        event: &str,
        bytes: &[u8],
    ) -> Result<(), Error> {
        self.shared()
            .with_core(|c, now| c.broadcast_binary(channel.id, event, bytes, now))
            .map(|_| ())
    }

    /// [`broadcast_binary`](Self::broadcast_binary), returning a ref to
    /// [`wait_for_ack`](Self::wait_for_ack) on (the server's reply is
    /// matched by the push's ref); needs the channel option `broadcast_ack`.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// let room = client.channel("room1", ChannelOptions::default().broadcast_ack(true));
    /// client.subscribe(&room)?;
    /// let ack = client.broadcast_binary_with_ack(&room, "frame", b"\x00\x01")?;
    /// smol::block_on(client.wait_for_ack(&ack, Duration::from_secs(5)))?;
    /// # Ok::<_, tidings_ws::client::Error>(())
    /// ```
    pub fn broadcast_binary_with_ack(
        &self,
        channel: &Channel,
        event: &str,
        bytes: &[u8],
    ) -> Result<AckRef, Error> {
        self.with_reply(|c, now| c.broadcast_binary_with_ack(channel.id, event, bytes, now))
    }

    /// Waits for a push's reply: `Ok(Acknowledged)`, or `Err` with code
    /// `Timeout` (after `timeout`, or the push timeout), `Rejected`,
    /// `Closed` or `Overflow`.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig, ErrorCode};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// # let room = client.channel("room1", ChannelOptions::default().broadcast_ack(true));
    /// # let ack = client.broadcast_with_ack(&room, "e", &1).unwrap();
    /// match smol::block_on(client.wait_for_ack(&ack, Duration::from_secs(5))) {
    ///     Ok(_) => {}
    ///     Err(e) if e.code == ErrorCode::Timeout => { /* retry */ }
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// ```
    pub async fn wait_for_ack(
        &self,
        ack: &AckRef,
        timeout: Duration,
    ) -> Result<Acknowledged, Error> {
        let got = async {
            match ack.rx.recv().await {
                Ok(r) => r.map(|()| Acknowledged),
                Err(_) => Err(Error::new(
                    ErrorCode::Closed,
                    "the reply was already taken or the client is gone",
                )
                .with("ref", ack.push_ref.clone())),
            }
        };
        let late = async {
            Timer::after(timeout).await;
            Err(Error::new(ErrorCode::Timeout, "no ack in time")
                .with("ref", ack.push_ref.clone())
                .with("after_ms", timeout.as_millis().to_string()))
        };
        future::or(got, late).await
    }

    /// POSTs one broadcast to the REST single endpoint, whatever the
    /// socket's state (realtime-js `httpSend`):
    /// `POST <http base>/api/broadcast/<subtopic>/events/<event>?<query>[&private=true]`
    /// with `payload` as the JSON body, the apikey, and the channel's (else
    /// the socket's) token as bearer. `Ok` on 202 (any 2xx); a 404 is an
    /// `Unsupported` error (the server predates the endpoint); other
    /// statuses give the server's `error`/`message`. The request runs on
    /// the blocking thread pool, bounded by the push timeout.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// let room = client.channel("room1", ChannelOptions::default());
    /// smol::block_on(client.http_send(&room, "new_message", &serde_json::json!({"body": "hi"})))?;
    /// # Ok::<_, tidings_ws::client::Error>(())
    /// ```
    pub async fn http_send(
        &self,
        channel: &Channel,
        event: &str,
        payload: &impl Serialize,
    ) -> Result<(), Error> {
        let body = Payload::json(&to_json(payload)?).map_err(|e| {
            Error::new(ErrorCode::InvalidInput, "payload is not valid JSON")
                .with("reason", e.to_string())
        })?;
        self.http_send_payload(channel, event, body).await
    }

    /// POSTs `bytes` to the REST single endpoint as the raw body with
    /// `Content-Type: application/octet-stream` (realtime-js `httpSend`
    /// with an `ArrayBuffer`), whatever the socket's state or `vsn`;
    /// otherwise as [`http_send`](Self::http_send). Receivers on vsn 2.0.0
    /// get [`BroadcastPayload::Binary`].
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// let room = client.channel("room1", ChannelOptions::default());
    /// smol::block_on(client.http_send_binary(&room, "frame", &[0x00, 0x80, 0xff]))?;
    /// # Ok::<_, tidings_ws::client::Error>(())
    /// ```
    pub async fn http_send_binary(
        &self,
        channel: &Channel,
        event: &str,
        bytes: &[u8],
    ) -> Result<(), Error> {
        self.http_send_payload(channel, event, Payload::Binary(bytes.to_vec()))
            .await
    }

    async fn http_send_payload(
        &self,
        channel: &Channel,
        event: &str,
        body: Payload,
    ) -> Result<(), Error> {
        if event.is_empty() {
            return Err(
                Error::new(ErrorCode::InvalidInput, "the event name is empty")
                    .with("topic", channel.topic().to_owned()),
            );
        }
        let (private, token) = {
            let core = lock(&self.shared().core);
            let info = core.channel_info(channel.id).ok_or_else(|| {
                Error::new(ErrorCode::Closed, "the channel was removed (unsubscribed)")
                    .with("topic", channel.topic().to_owned())
            })?;
            let token = core
                .channel_token(channel.id)
                .or_else(|| core.access_token())
                .map(str::to_owned);
            (info.options.private, token)
        };
        let http = Arc::clone(&self.shared().settings.http);
        let (topic, event) = (channel.topic().to_owned(), event.to_owned());
        smol::unblock(move || http.send(&topic, &event, &body, private, token.as_deref())).await
    }

    /// Tracks this client's presence with `payload` (an object); the reply
    /// can be awaited.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// # let room = client.channel("room1", ChannelOptions::default().presence_key("u1"));
    /// client.track(&room, &serde_json::json!({"user_id": 123})).unwrap();
    /// ```
    pub fn track(&self, channel: &Channel, payload: &impl Serialize) -> Result<AckRef, Error> {
        let p = to_json(payload)?;
        self.with_reply(|c, now| c.track(channel.id, &p, now))
    }

    /// Stops tracking this client's presence.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// # let room = client.channel("room1", ChannelOptions::default());
    /// client.untrack(&room).unwrap();
    /// ```
    pub fn untrack(&self, channel: &Channel) -> Result<AckRef, Error> {
        self.with_reply(|c, now| c.untrack(channel.id, now))
    }

    /// Any push on the channel; the reply can be awaited.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// # let room = client.channel("room1", ChannelOptions::default());
    /// let r = client.push(&room, "command", &serde_json::json!({"op": "x"})).unwrap();
    /// ```
    pub fn push(
        &self,
        channel: &Channel,
        event: &str,
        payload: &impl Serialize,
    ) -> Result<AckRef, Error> {
        let p = to_json(payload)?;
        self.with_reply(|c, now| c.push(channel.id, event, &p, now))
    }

    /// A socket-level message outside any channel (the seed's `send`):
    /// buffered while the socket is not open (100, oldest dropped) and
    /// flushed in order on open.
    ///
    /// ```no_run
    /// # use tidings_ws::client::{Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// client.send("realtime:room1", "custom", &serde_json::json!({})).unwrap();
    /// ```
    pub fn send(&self, topic: &str, event: &str, payload: &impl Serialize) -> Result<(), Error> {
        let p = to_json(payload)?;
        self.shared()
            .with_core(|c, now| c.push_raw(topic, event, &p, now))
            .map(|_| ())
    }

    /// Sets the token of every channel: joined channels get an
    /// `access_token` push, later joins carry it. (`access_token_fn`, when
    /// set, replaces it again at the next heartbeat or connect.)
    ///
    /// ```no_run
    /// # use tidings_ws::client::{Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// client.set_auth(Some("new-jwt".to_owned()));
    /// ```
    pub fn set_auth(&self, token: Option<String>) {
        self.shared().with_core(|c, now| c.set_auth(token, now));
    }

    /// Sets one channel's token (pushed now if joined).
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// # let room = client.channel("room1", ChannelOptions::default());
    /// client.set_channel_auth(&room, "new-jwt").unwrap();
    /// ```
    pub fn set_channel_auth(
        &self,
        channel: &Channel,
        token: impl Into<String>,
    ) -> Result<(), Error> {
        let t = token.into();
        self.shared()
            .with_core(|c, now| c.set_channel_auth(channel.id, &t, now))
    }

    /// The channel's presence state (key → metas with `presence_ref`).
    ///
    /// ```no_run
    /// # use tidings_ws::client::{ChannelOptions, Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// # let room = client.channel("room1", ChannelOptions::default());
    /// for (key, metas) in client.presence_state(&room) { println!("{key}: {metas:?}") }
    /// ```
    pub fn presence_state(&self, channel: &Channel) -> PresenceState {
        lock(&self.shared().core)
            .presence_state(channel.id)
            .unwrap_or_default()
    }

    /// Closes the socket and stops reconnecting (channels stay).
    ///
    /// ```no_run
    /// # use tidings_ws::client::{Client, ClientConfig};
    /// # let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
    /// client.disconnect();
    /// client.reconnect();
    /// ```
    pub fn disconnect(&self) {
        self.shared().with_core(Connection::disconnect);
    }

    /// Connects again after [`disconnect`](Self::disconnect) (or at once,
    /// skipping a pending backoff); channels rejoin on open.
    pub fn reconnect(&self) {
        self.shared().with_core(Connection::connect);
    }
}
