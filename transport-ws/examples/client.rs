//! Joins a realtime room, prints its broadcasts and presence, tracks itself
//! and sends one broadcast.
//!
//! ```sh
//! cargo run -p tidings-ws --example client -- [URL] [ROOM] [NAME]
//! ```
//!
//! Defaults: `ws://127.0.0.1:4000/socket`, `realtime:lobby`, `rust-<pid>`.
//! Works against the Tidings server (the chat example serves `/socket`) and
//! any Supabase Realtime server: pass its `wss://<ref>.supabase.co/realtime/v1`
//! URL (TLS with Mozilla's roots), set `APIKEY`, and `ACCESS_TOKEN` for a
//! user's JWT. Before joining it also POSTs one message through the REST
//! endpoint (`http_send`), which needs no join. Stops on Ctrl-C.

use std::time::Duration;

use serde_json::json;
use tidings_ws::client::{
    Binding, ChannelEvent, ChannelOptions, Client, ClientConfig, ConnectionEvent, Event,
    PresenceChange,
};

fn main() -> Result<(), tidings_ws::client::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:4000/socket".into());
    let room = args.next().unwrap_or_else(|| "realtime:lobby".into());
    let name = args
        .next()
        .unwrap_or_else(|| format!("rust-{}", std::process::id()));
    let apikey = std::env::var("APIKEY").unwrap_or_else(|_| "anon".into());

    let mut config = ClientConfig::new(url.clone()).apikey(apikey);
    if let Ok(token) = std::env::var("ACCESS_TOKEN") {
        config = config.access_token(token);
    }
    let client = Client::connect(config)?;
    let events = client.events();
    let channel = client.channel(
        &room,
        ChannelOptions::default()
            .broadcast_self(true)
            .broadcast_ack(true)
            .presence_key(name.clone()),
    );
    client.on(&channel, Binding::broadcast("*"))?;
    client.on(&channel, Binding::presence("*"))?;
    client.on(&channel, Binding::System)?;
    client.subscribe(&channel)?;
    println!("connecting to {url}, room {} as {name}", channel.topic());

    smol::block_on(async {
        match client
            .http_send(
                &channel,
                "message",
                &json!({"from": name, "body": "hello over HTTP"}),
            )
            .await
        {
            Ok(()) => println!("HTTP broadcast accepted"),
            Err(e) => println!("HTTP broadcast refused: {e}"),
        }
        let mut greeted = false;
        while let Some(event) = events.recv().await {
            match event {
                Event::Connection(ConnectionEvent::StateChange { old, new }) => {
                    println!("connection: {old} -> {new}");
                }
                Event::Connection(ConnectionEvent::Error(e)) => println!("connection error: {e}"),
                Event::Channel { topic, change } => match change {
                    ChannelEvent::StateChange { new, .. } => {
                        println!("{topic}: {new}");
                        if new == tidings_ws::client::ChannelState::Joined && !greeted {
                            greeted = true;
                            client.track(&channel, &json!({"name": name, "lang": "rust"}))?;
                            let ack = client.broadcast_with_ack(
                                &channel,
                                "message",
                                &json!({"from": name, "body": "hello from Rust"}),
                            )?;
                            match client.wait_for_ack(&ack, Duration::from_secs(5)).await {
                                Ok(_) => println!("broadcast acknowledged"),
                                Err(e) => println!("broadcast not acknowledged: {e}"),
                            }
                        }
                    }
                    ChannelEvent::Error(e) => println!("{topic}: {e}"),
                },
                Event::Broadcast { event, payload, .. } => {
                    println!("broadcast {event}: {payload:?}");
                }
                Event::Presence { change, .. } => match change {
                    PresenceChange::Join { key, joined, .. } => {
                        println!("presence join {key}: {joined:?}");
                    }
                    PresenceChange::Leave { key, left, .. } => {
                        println!("presence leave {key}: {left:?}");
                    }
                    PresenceChange::Sync(state) => {
                        let who: Vec<&String> = state.keys().collect();
                        println!("presence sync: {who:?}");
                    }
                },
                Event::System { payload, .. } => println!("system: {payload}"),
                Event::PostgresChanges { kind, payload, .. } => println!("{kind:?}: {payload}"),
            }
        }
        Ok(())
    })
}
