//! Graceful shutdown: stop accepting, end every stream cleanly (so clients
//! reconnect elsewhere), answer parked commands, refuse new connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use tidings_core::{Cid, Effects};
use tidings_smol::sse::{SseConfig, serve};
use tidings_smol::{App, AppError, Hub, HubConfig, NextAction, Page};

struct Room;

impl App for Room {
    fn render(&self, _: &str, page: &mut Page) -> Result<Option<String>, AppError> {
        page.component(Cid::PAGE).put_subscription("{:room, 1}")?;
        Ok(Some("<html><head></head><body></body></html>".into()))
    }
    fn command(
        &self,
        _: &mut Effects,
        name: &str,
        _: &Value,
    ) -> Result<Option<NextAction>, AppError> {
        Err(AppError::unknown_command(name))
    }
}

fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.to_owned(), body.to_owned())
}

#[test]
fn shutdown_ends_streams_cleanly_and_stops_accepting() {
    let (hub, handle) = Hub::new(Room, HubConfig::new(b"r", b"s"));
    let keys = hub.keys().clone();
    let hub_thread = std::thread::spawn(move || smol::block_on(hub.run()));
    let server = serve(
        &handle,
        &keys,
        &SseConfig::new("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let addr = server.addr();

    // A page load gives a session cookie and the boot receipts.
    let (head, body) = http(
        addr,
        "GET /rooms/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let boot = body
        .split("application/json\">")
        .nth(1)
        .unwrap()
        .split("</script>")
        .next()
        .unwrap();
    let boot: Value = serde_json::from_str(boot).unwrap();
    let instance = boot["instance_id"].as_str().unwrap();
    let tokens: Vec<&str> = boot["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["token"].as_str().unwrap())
        .collect();
    let hs_body = serde_json::json!({"instance_id": instance, "receipts": tokens}).to_string();
    let (_, hs) = http(
        addr,
        &format!(
            "POST /tidings/handshake HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{hs_body}",
            hs_body.len()
        ),
    );
    let hs: Value = serde_json::from_str(&hs).unwrap();
    let hid = hs["handshake_id"].as_str().unwrap();

    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET /tidings/events?instance_id={instance}&handshake_id={hid} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");

    // Shut down: close every stream (answering anything queued), then stop
    // taking requests.
    handle.shutdown();
    hub_thread.join().unwrap();
    server.stop();

    // The response ends with the last chunk (a clean end the browser's
    // EventSource reconnects from), within the read timeout.
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    while !rest.ends_with(b"0\r\n\r\n") {
        let n = reader
            .read(&mut buf)
            .expect("the stream ends before the read timeout");
        assert!(
            n > 0,
            "connection closed before the last chunk: {:?}",
            String::from_utf8_lossy(&rest)
        );
        rest.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("retry: "), "{rest:?}");

    // New connections are refused or closed unanswered.
    std::thread::sleep(Duration::from_millis(100));
    if let Ok(mut s) = TcpStream::connect(addr) {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(
            n,
            0,
            "a stopped server answered: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    // The immediate API reports the hub is gone.
    assert!(
        handle
            .broadcast_action("{:room, 1}", "x", &serde_json::json!({}))
            .is_err()
    );
}
