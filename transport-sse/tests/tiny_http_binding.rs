//! The tiny_http binding over real loopback sockets: a burst of streams is
//! served in full, and a client that stops reading is cut off by the write
//! timeout without slowing anyone else.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tidings_sse::event::EventEncoder;
use tidings_sse::server::{ServerConfig, SseStream, bind};

/// Serves `/stream`: an event at once, then one every `every` ms, each
/// `size` bytes of data. Counts writer threads that ended on a write error.
fn serve(config: &ServerConfig, every: u64, size: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let server = bind(config).unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let failed = Arc::new(AtomicUsize::new(0));
    let failed2 = failed.clone();
    thread::spawn(move || {
        for rq in server.incoming_requests() {
            let failed = failed2.clone();
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut enc = EventEncoder::new(1000);
                    let mut pre = Vec::new();
                    enc.preamble(&mut pre);
                    let Ok(mut stream) = SseStream::start(rq, &pre) else {
                        return;
                    };
                    let data = vec![b'x'; size];
                    loop {
                        let mut ev = Vec::new();
                        enc.event(&mut ev, "tick", &data);
                        if stream.send(&ev).is_err() {
                            failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        thread::sleep(Duration::from_millis(every));
                    }
                })
                .unwrap();
        }
    });
    (addr, failed)
}

fn open(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    s
}

fn first_event(s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        if line.starts_with("event: tick") {
            return true;
        }
        line.clear();
    }
    false
}

#[test]
fn a_burst_of_1000_streams_is_served_within_5_seconds() {
    let (addr, _) = serve(&ServerConfig::new("127.0.0.1:0".parse().unwrap()), 1000, 8);
    // Connect all at once (the kernel completes the handshakes from the
    // backlog before the server accepts any), then wait for first events.
    let start = Instant::now();
    let sockets: Vec<TcpStream> = (0..1000).map(|_| open(addr)).collect();
    let clients: Vec<_> = sockets
        .into_iter()
        .map(|s| {
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || first_event(s))
                .unwrap()
        })
        .collect();
    let served = clients
        .into_iter()
        .map(|c| c.join().unwrap())
        .filter(|&ok| ok)
        .count();
    let took = start.elapsed();
    assert_eq!(
        served, 1000,
        "only {served} of 1000 streams got their first event"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_stalled_reader_is_cut_off_without_slowing_others() {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.write_timeout = Duration::from_millis(500);
    let (addr, failed) = serve(&config, 5, 16 * 1024);
    // Never reads: the kernel buffers fill, then writes block.
    let stalled = open(addr);
    let mut healthy = open(addr);
    healthy
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let start = Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while start.elapsed() < Duration::from_secs(4) {
        got += healthy.read(&mut buf).unwrap();
        if failed.load(Ordering::SeqCst) >= 1 && start.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    assert!(
        failed.load(Ordering::SeqCst) >= 1,
        "the stalled stream's writer never failed"
    );
    // The healthy client kept receiving throughout (≈ 3 MB/s offered).
    assert!(got > 1_000_000, "healthy client got only {got} bytes");
    drop(stalled);
}
