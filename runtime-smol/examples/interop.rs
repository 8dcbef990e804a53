//! A Tidings server for the real-client interop suite
//! (`transport-ws/interop/`): Phoenix sockets and SSE on one port.
//!
//! ```text
//! cargo run -p tidings-smol --example interop -- --port 0
//! ```
//! It prints `listening <port>` once it accepts connections. Joins of
//! `realtime:denied*` topics are refused (`Unauthorized: …`), and so are
//! access tokens equal to `revoked`. Each stdin line
//! `broadcast <name> <event> <json>` broadcasts on `{:realtime, "<name>"}`
//! from server code through `HubHandle` and prints `ok` (or `error: …`).

use std::io::BufRead;
use std::net::SocketAddr;

use tidings_core::{Channel, Effects, Peer, Value};
use tidings_smol::sse::{SseConfig, serve};
use tidings_smol::{Access, App, AppError, Hub, HubConfig, NextAction, Page};

struct Interop;

impl App for Interop {
    fn render(&self, _: &str, _: &mut Page) -> Result<Option<String>, AppError> {
        Ok(None)
    }

    fn command(
        &self,
        _: &mut Effects,
        name: &str,
        _: &serde_json::Value,
    ) -> Result<Option<NextAction>, AppError> {
        Err(AppError::unknown_command(name))
    }

    fn authenticate(&self, apikey: Option<&str>) -> Result<(), String> {
        match apikey {
            Some("bad-key") => Err("API key is not valid".into()),
            _ => Ok(()),
        }
    }

    fn authorize(
        &self,
        _: &Peer,
        access: Access,
        channel: &Channel,
        token: Option<&str>,
    ) -> Result<(), String> {
        let [Value::Str(name)] = channel.values() else {
            return Ok(());
        };
        if name.starts_with("denied") {
            return Err(format!(
                "You do not have permissions to {} this Channel topic: {name}",
                match access {
                    Access::Join => "read from",
                    Access::Broadcast => "write to",
                    Access::Presence => "track presence on",
                }
            ));
        }
        if token == Some("revoked") {
            return Err("Token has been revoked".into());
        }
        Ok(())
    }
}

fn port() -> u16 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let (handle, _hub) = Hub::spawn(
        Interop,
        HubConfig::new(b"interop/receipts", b"interop/sessions"),
    );
    let keys = tidings_sse::session::SessionKeys::new(b"interop/sessions");
    let addr = SocketAddr::from(([127, 0, 0, 1], port()));
    let server = match serve(&handle, &keys, &SseConfig::new(addr)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening {}", server.addr().port());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut parts = line.splitn(4, ' ');
        let reply = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("broadcast"), Some(name), Some(event), Some(json)) => {
                match serde_json::from_str::<serde_json::Value>(json) {
                    Ok(v) => {
                        let channel = tidings_ws::server::topic::realtime_channel(name);
                        match channel.map_err(|e| e.to_string()).and_then(|ch| {
                            handle
                                .broadcast_action(ch, event, &v)
                                .map_err(|e| e.to_string())
                        }) {
                            Ok(()) => "ok".to_owned(),
                            Err(e) => format!("error: {e}"),
                        }
                    }
                    Err(e) => format!("error: {e}"),
                }
            }
            _ => "error: expected `broadcast <name> <event> <json>`".to_owned(),
        };
        println!("{reply}");
    }
    // stdin closed: shut down like a deploy would, so every socket is
    // closed with 1012 (reconnect) before the process exits.
    handle.shutdown();
    server.stop();
    std::thread::sleep(std::time::Duration::from_millis(200));
}
