//! The chat example: rooms, messages, a "who's here" counter, per-user
//! toasts from a background job, leave and kick — over SSE + POST, or over
//! the Phoenix WebSocket when the page URL has `?transport=ws` (same page,
//! same server; the browser client picks the transport).
//!
//! The lobby (`/lobby`) is the channel `{:realtime, "lobby"}`, so Supabase
//! clients joined to `realtime:lobby` on `ws://<host>/socket` share the room
//! with the pages: a message typed on a page reaches them as a broadcast
//! event `message` with payload `{"from", "text"}`, and a realtime-js
//! `send({type: "broadcast", event: "message", payload: {from, text}})`
//! shows on the pages (which check and escape it, as they do every
//! message). They also see the lobby's `here` and `kicked` events.
//!
//! ```text
//! cargo run --release -p tidings-smol --example chat            # port 4000
//! cargo run --release -p tidings-smol --example chat -- --port 8080
//! ```
//! Open the printed URL in two tabs and talk. `TIDINGS_SECRET` sets the
//! signing secret (a fixed development secret otherwise). Ctrl-C or SIGTERM
//! shuts it down gracefully.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tidings_core::{Channel, Cid, Effects, Identity, InstanceId, UserId};
use tidings_smol::sse::{SseConfig, serve};
use tidings_smol::{App, AppError, Hub, HubConfig, HubHandle, NextAction, Page, params};
use tidings_ws::server::topic::realtime_channel;

const HTML: &str = include_str!("chat.html");
/// Longest message, in characters.
const MAX_MESSAGE_CHARS: usize = 500;
/// Longest user name, in characters.
const MAX_NAME_CHARS: usize = 32;
/// A tab counts as "here" this long after its last ping.
const HERE_WINDOW: Duration = Duration::from_secs(12);

#[derive(Default)]
struct State {
    /// Last ping of each tab, per room (or lobby) channel.
    seen: HashMap<(Channel, InstanceId), Instant>,
    /// Logged-in names, for the toast job.
    users: BTreeSet<String>,
}

struct Chat {
    /// The hub's handle, set once the hub exists (handlers call the immediate API).
    hub: Arc<OnceLock<HubHandle>>,
    state: Arc<Mutex<State>>,
}

fn room_channel(room: i64) -> Channel {
    Channel::tuple("room", [room.into()]).expect("room channels are valid")
}

/// The lobby: a Supabase Realtime channel, `realtime:lobby` on the socket.
fn lobby_channel() -> Channel {
    realtime_channel("lobby").expect("the lobby channel is valid")
}

fn user_channel(name: &str) -> Channel {
    Channel::tuple("user", [tidings_core::Value::str(name)]).expect("user channels are valid")
}

/// The room (or the lobby) a component is bound to, if it still is.
fn joined_room(fx: &Effects) -> Option<Channel> {
    let lobby = lobby_channel();
    fx.subscriptions()
        .iter()
        .find(|ch| {
            **ch == lobby
                || matches!(
                    (ch.tag().as_str(), ch.values()),
                    ("room", [tidings_core::Value::Int(_)])
                )
        })
        .cloned()
}

fn text_param<'a>(params: &'a Value, key: &str, max_chars: usize) -> Result<&'a str, AppError> {
    let text = params
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default();
    if text.is_empty() || text.chars().count() > max_chars {
        return Err(AppError::bad_request(format!(
            "{key} must have 1 to {max_chars} characters"
        )));
    }
    Ok(text)
}

fn valid_name(name: &str) -> Result<&str, AppError> {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(name)
    } else {
        Err(AppError::bad_request("names use letters, digits, _ and -"))
    }
}

impl App for Chat {
    fn render(&self, path: &str, page: &mut Page) -> Result<Option<String>, AppError> {
        let (channel, place) = match path {
            "/" => (room_channel(1), "Room 1".to_owned()),
            "/lobby" => (lobby_channel(), "Lobby".to_owned()),
            _ => match path
                .strip_prefix("/rooms/")
                .and_then(|n| n.parse::<i64>().ok())
            {
                Some(n) if (1..=1000).contains(&n) => (room_channel(n), format!("Room {n}")),
                _ => return Ok(None),
            },
        };
        page.component(Cid::PAGE).put_subscription(channel)?;
        if let Some(user) = page.peer().user.clone()
            && let tidings_core::Value::Str(name) = user.as_value()
        {
            page.component(Cid::new("toast").expect("valid cid"))
                .put_subscription(user_channel(name))?;
        }
        Ok(Some(HTML.replace("{{place}}", &place)))
    }

    fn command(
        &self,
        fx: &mut Effects,
        name: &str,
        p: &Value,
    ) -> Result<Option<NextAction>, AppError> {
        match (fx.cid().as_str(), name) {
            ("page", "say") => {
                let text = text_param(p, "text", MAX_MESSAGE_CHARS)?;
                let room =
                    joined_room(fx).ok_or_else(|| AppError::bad_request("you left this room"))?;
                // Supabase clients on the lobby get this as event "message".
                let from = match fx.user_id().map(UserId::as_value) {
                    Some(tidings_core::Value::Str(name)) => name.to_string(),
                    _ => format!("anon-{}", &fx.instance_id().to_string()[..4]),
                };
                fx.put_broadcast(
                    &room,
                    "message",
                    params(&json!({"from": from, "text": text})),
                )?;
                Ok(None)
            }
            ("page", "here") => {
                if let Some(room) = joined_room(fx) {
                    let mut state = self.state.lock().expect("chat state");
                    state.seen.insert((room, fx.instance_id()), Instant::now());
                }
                Ok(None)
            }
            ("page", "leave") => {
                if let Some(room) = joined_room(fx) {
                    fx.delete_subscription(&room)?;
                }
                Ok(Some(NextAction::new("left", json!({}))))
            }
            ("page", "kick") => {
                let who = valid_name(text_param(p, "name", MAX_NAME_CHARS)?)?;
                let room =
                    joined_room(fx).ok_or_else(|| AppError::bad_request("you left this room"))?;
                let hub = self
                    .hub
                    .get()
                    .ok_or_else(|| AppError::bad_request("not ready"))?;
                hub.unsubscribe_all(Identity::User(UserId::str(who)), &room)
                    .map_err(|e| AppError::bad_request(e.to_string()))?;
                fx.put_broadcast(&room, "kicked", params(&json!({"name": who})))?;
                Ok(None)
            }
            ("toast", "login") => {
                let who = valid_name(text_param(p, "name", MAX_NAME_CHARS)?)?;
                fx.set_user_id(Some(UserId::str(who)));
                fx.put_subscription(user_channel(who))?;
                self.state
                    .lock()
                    .expect("chat state")
                    .users
                    .insert(who.to_owned());
                Ok(Some(NextAction::new("logged_in", json!({"name": who}))))
            }
            _ => Err(AppError::unknown_command(name)),
        }
    }
}

/// Counts who is here per room and sends each logged-in user a toast.
fn background_job(hub: &HubHandle, state: &Mutex<State>) {
    let mut tick = 0u64;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        tick += 1;
        let (counts, users) = {
            let mut s = state.lock().expect("chat state");
            s.seen.retain(|_, at| at.elapsed() < HERE_WINDOW);
            let mut counts: HashMap<Channel, usize> = HashMap::new();
            for (room, _) in s.seen.keys() {
                *counts.entry(room.clone()).or_default() += 1;
            }
            (counts, s.users.clone())
        };
        for (room, count) in counts {
            let _ = hub.broadcast_action(room, "here", &json!({"count": count}));
        }
        if tick.is_multiple_of(15) {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let time = format!(
                "{:02}:{:02}:{:02} UTC",
                secs / 3600 % 24,
                secs / 60 % 60,
                secs % 60
            );
            for name in users {
                let text = format!("Hello {name}, the server's clock says {time}");
                let _ = hub.broadcast_action(user_channel(&name), "toast", &json!({"text": text}));
            }
        }
    }
}

fn port() -> u16 {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--port" {
            if let Some(p) = args.next().and_then(|p| p.parse().ok()) {
                return p;
            }
            eprintln!("--port needs a number; using the default");
        }
    }
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(4000)
}

fn main() {
    let secret = std::env::var("TIDINGS_SECRET").unwrap_or_else(|_| {
        eprintln!("TIDINGS_SECRET is not set: using the development secret (receipts are forgeable by anyone who reads this source)");
        "tidings-chat-development-secret".to_owned()
    });
    let state = Arc::new(Mutex::new(State::default()));
    let hub_cell = Arc::new(OnceLock::new());
    let app = Chat {
        hub: hub_cell.clone(),
        state: state.clone(),
    };
    let config = HubConfig::new(
        format!("{secret}/receipts").as_bytes(),
        format!("{secret}/sessions").as_bytes(),
    );
    let (hub, handle) = Hub::new(app, config);
    let keys = hub.keys().clone();
    let _ = hub_cell.set(handle.clone());
    std::thread::Builder::new()
        .name("tidings-hub".into())
        .spawn(move || smol::block_on(hub.run()))
        .expect("spawning the hub");
    let addr = SocketAddr::from(([127, 0, 0, 1], port()));
    let server = match serve(&handle, &keys, &SseConfig::new(addr)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "Tidings chat on http://{}/ (rooms at /rooms/1..1000, the lobby at /lobby; add ?transport=ws for WebSocket)",
        server.addr()
    );
    println!(
        "Supabase clients: ws://{}/socket, topic realtime:lobby",
        server.addr()
    );
    let job = handle.clone();
    std::thread::spawn(move || background_job(&job, &state));
    // Serve until Ctrl-C or SIGTERM, then shut down gracefully: every
    // stream ends cleanly (browsers reconnect, e.g. to a restarted server),
    // queued requests are answered, then the listener stops.
    let (stop, stopped) = std::sync::mpsc::channel();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = stop.send(());
    }) {
        eprintln!("cannot install the signal handler ({e}); stop the process to quit");
    }
    let _ = stopped.recv();
    println!("shutting down: closing every stream");
    handle.shutdown();
    server.stop();
}
