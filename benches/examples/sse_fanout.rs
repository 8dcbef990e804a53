//! SSE fan-out: connect time of 1 000 subscribers opening at once, then the
//! latency from `HubHandle::broadcast_action` to every subscriber having
//! parsed the event.
//!
//! ```sh
//! cargo run --release -p tidings-benches --example sse_fanout
//! cargo run --release -p tidings-benches --example sse_fanout -- --clients 500 --rounds 50
//! ```
//!
//! Everything runs in one process: the hub and `sse::serve` on
//! `127.0.0.1:0` (a page at `/` whose `page` component subscribes
//! `{:room, 1}`), and the subscribers as `smol` tasks on `Async<TcpStream>`s
//! driven by a small executor (`--threads`, 2). Each subscriber does what the
//! browser client does, on one keep-alive connection: `GET /` (session
//! cookie, boot receipts from `<script id="tidings-boot">`),
//! `POST /tidings/handshake`, `GET /tidings/events?…`; it then parses the
//! stream fully (chunked framing, SSE fields, JSON of `data`) and stamps the
//! time once a `ping` broadcast's JSON is parsed.
//!
//! Phases:
//! 1. **Connect**: all subscribers are spawned at the same instant; the time
//!    from then until each has the stream's head and `retry:` preamble.
//! 2. **Rounds** (`--rounds`, 100, spaced `--interval-ms`, 50): take a
//!    timestamp, `broadcast_action("{:room, 1}", "ping", {"t": round})`,
//!    wait until all subscribers parsed it. Per round: time to the last
//!    subscriber; per delivery: its latency.
//! 3. **Burst** (`--burst`, 200): that many broadcasts back to back; the
//!    time until every subscriber parsed all of them gives deliveries/s.
//!
//! Exits non-zero if a subscriber fails to connect, errs, or misses an event
//! (each wait has a deadline).

// Figures are converted to f64 for printing only.
#![allow(clippy::cast_precision_loss)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use tidings_benches::load::{cpu_by_group, print_cpu, status_of_this_process};
use tidings_benches::sse::{Event, OpenOptions, ROOM, Server, ms, open_stream, percentile};

struct Args {
    clients: usize,
    rounds: usize,
    interval: Duration,
    burst: usize,
    threads: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        clients: 1000,
        rounds: 100,
        interval: Duration::from_millis(50),
        burst: 200,
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| fail(&format!("{flag} needs a number")))
        };
        match flag.as_str() {
            "--clients" => a.clients = num(),
            "--rounds" => a.rounds = num(),
            "--interval-ms" => a.interval = Duration::from_millis(num() as u64),
            "--burst" => a.burst = num(),
            "--threads" => a.threads = num().max(1),
            _ => fail(&format!(
                "unknown argument {flag:?}; takes --clients --rounds --interval-ms --burst --threads"
            )),
        }
    }
    if a.clients == 0 || a.rounds == 0 {
        fail("--clients and --rounds must be positive");
    }
    a
}

fn fail(why: &str) -> ! {
    eprintln!("FAILED: {why}");
    std::process::exit(1);
}

/// What the subscribers record, indexed by broadcast (`t`) and subscriber.
struct Shared {
    base: Instant,
    clients: usize,
    broadcasts: usize,
    /// ns from the connect start until the subscriber was streaming.
    streaming_at: Vec<AtomicU64>,
    streaming: AtomicUsize,
    /// `[t * clients + i]`: ns since `base` + 1 when subscriber `i` parsed `t`; 0 = not yet.
    arrivals: Vec<AtomicU64>,
    /// Subscribers that parsed broadcast `t`.
    counts: Vec<AtomicUsize>,
    heartbeats: AtomicUsize,
    /// Chunks received by all subscribers after their preamble: the
    /// server's writes.
    chunks: AtomicU64,
    ended: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn failed(&self, what: String) {
        self.failures.lock().expect("failures").push(what);
    }

    fn first_failures(&self) -> Option<String> {
        let f = self.failures.lock().expect("failures");
        (!f.is_empty()).then(|| {
            let shown: Vec<&str> = f.iter().take(5).map(String::as_str).collect();
            format!(
                "{} subscriber error(s), first: {}",
                f.len(),
                shown.join(" | ")
            )
        })
    }

    fn on_event(&self, i: usize, e: &Event) {
        match e.name.as_str() {
            "broadcast" => {
                let ok = e.data["action"] == "ping" && e.data["cids"] == json!(["page"]);
                let t = e.data["params"]["t"].as_u64().map(|t| t as usize);
                match t {
                    Some(t) if ok && t < self.broadcasts => {
                        let at = self.now() + 1;
                        let prev = self.arrivals[t * self.clients + i].swap(at, Ordering::Relaxed);
                        if prev == 0 {
                            self.counts[t].fetch_add(1, Ordering::Release);
                        } else {
                            self.failed(format!("subscriber {i} got broadcast {t} twice"));
                        }
                    }
                    _ => self.failed(format!("subscriber {i}: unexpected broadcast {}", e.data)),
                }
            }
            "heartbeat" => {
                self.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            other => self.failed(format!(
                "subscriber {i}: unexpected event {other}: {}",
                e.data
            )),
        }
    }
}

async fn subscriber(i: usize, addr: std::net::SocketAddr, sh: Arc<Shared>, start: Instant) {
    let run = async {
        let mut stream = open_stream(addr, OpenOptions::default()).await?;
        sh.streaming_at[i].store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        sh.streaming.fetch_add(1, Ordering::Release);
        for e in stream.take_early() {
            sh.on_event(i, &e);
        }
        let mut chunks = stream.chunks();
        while stream.read_more(|e| sh.on_event(i, &e)).await? {
            let now = stream.chunks();
            sh.chunks.fetch_add(now - chunks, Ordering::Relaxed);
            chunks = now;
        }
        std::io::Result::Ok(())
    };
    match run.await {
        Ok(()) => {
            sh.ended.fetch_add(1, Ordering::Release);
        }
        Err(e) => sh.failed(format!("subscriber {i}: {e}")),
    }
}

/// Waits until `done()` or the deadline; fails on a subscriber error.
fn wait(sh: &Shared, what: &str, deadline: Duration, done: impl Fn() -> bool) {
    let until = Instant::now() + deadline;
    loop {
        if let Some(f) = sh.first_failures() {
            fail(&format!("{what}: {f}"));
        }
        if done() {
            return;
        }
        if Instant::now() >= until {
            fail(&format!("{what}: not done after {deadline:?}"));
        }
        thread::sleep(Duration::from_micros(500));
    }
}

fn thread_group(name: &str) -> &'static str {
    if name.starts_with("bench-client") {
        "subscribers (client executor threads)"
    } else if name.starts_with("tidings-sse-wri") {
        "server: SSE writer threads"
    } else if name.starts_with("tidings-hub") {
        "server: hub"
    } else if name.starts_with("tidings-http") {
        "server: HTTP workers"
    } else {
        "main, tiny_http accept and connection threads, async-io"
    }
}

#[allow(clippy::too_many_lines)]
fn main() {
    let args = parse_args();
    let n = args.clients;
    let (soft, hard) = tidings_benches::sse::raise_nofile_limit()
        .unwrap_or_else(|e| fail(&format!("RLIMIT_NOFILE: {e}")));
    // Server: 2 fds per connection (tiny_http dups each socket); client: 1.
    let needed = 3 * n as u64 + 64;
    if soft < needed {
        fail(&format!(
            "needs about {needed} file descriptors; RLIMIT_NOFILE is {soft} (hard {hard}). Raise it (`ulimit -n`)"
        ));
    }

    let server = Server::start(None).unwrap_or_else(|e| fail(&format!("server: {e}")));
    let addr = server.addr();
    let broadcasts = args.rounds + args.burst;
    let sh = Arc::new(Shared {
        base: Instant::now(),
        clients: n,
        broadcasts,
        streaming_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
        streaming: AtomicUsize::new(0),
        arrivals: (0..broadcasts * n).map(|_| AtomicU64::new(0)).collect(),
        counts: (0..broadcasts).map(|_| AtomicUsize::new(0)).collect(),
        heartbeats: AtomicUsize::new(0),
        chunks: AtomicU64::new(0),
        ended: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
    });

    let ex = Arc::new(smol::Executor::<'static>::new());
    let (stop, stopped) = smol::channel::unbounded::<()>();
    let client_threads: Vec<_> = (0..args.threads)
        .map(|k| {
            let ex = ex.clone();
            let stopped = stopped.clone();
            thread::Builder::new()
                .name(format!("bench-client-{k}"))
                .spawn(move || smol::block_on(ex.run(stopped.recv())))
                .expect("spawning a client thread")
        })
        .collect();

    println!(
        "SSE fan-out: {n} subscribers on {addr}, {} client executor thread(s), {} round(s) every {:?}, burst of {}",
        args.threads, args.rounds, args.interval, args.burst
    );

    // Phase 1: every subscriber starts connecting at the same instant.
    let start = Instant::now();
    for i in 0..n {
        ex.spawn(subscriber(i, addr, sh.clone(), start)).detach();
    }
    wait(&sh, "connect", Duration::from_secs(60), || {
        sh.streaming.load(Ordering::Acquire) == n
    });
    let mut connect: Vec<u64> = sh
        .streaming_at
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    connect.sort_unstable();
    let all_streaming = *connect.last().expect("n > 0");
    let threads_streaming = status_of_this_process("Threads:");
    thread::sleep(Duration::from_millis(500));

    // Phase 2: spaced rounds.
    let cpu_rounds = cpu_by_group(thread_group);
    let chunks_before = sh.chunks.load(Ordering::Relaxed);
    let rounds_wall = Instant::now();
    let mut round_start = Vec::with_capacity(args.rounds);
    for r in 0..args.rounds {
        let t0 = sh.now();
        round_start.push(t0);
        server
            .handle
            .broadcast_action(ROOM, "ping", &json!({"t": r}))
            .unwrap_or_else(|e| fail(&format!("broadcast {r}: {e}")));
        wait(&sh, &format!("round {r}"), Duration::from_secs(10), || {
            sh.counts[r].load(Ordering::Acquire) == n
        });
        let next = Duration::from_nanos(t0) + args.interval;
        if let Some(left) = next.checked_sub(sh.base.elapsed()) {
            thread::sleep(left);
        }
    }

    let rounds_wall = rounds_wall.elapsed();
    let cpu_after_rounds = cpu_by_group(thread_group);
    let chunks_rounds = sh.chunks.load(Ordering::Relaxed);

    // Phase 3: a burst, back to back.
    let burst_wall = Instant::now();
    let burst_start = sh.now();
    for k in 0..args.burst {
        let t = args.rounds + k;
        server
            .handle
            .broadcast_action(ROOM, "ping", &json!({"t": t}))
            .unwrap_or_else(|e| fail(&format!("burst broadcast {k}: {e}")));
    }
    wait(&sh, "burst", Duration::from_secs(60), || {
        (args.rounds..broadcasts).all(|t| sh.counts[t].load(Ordering::Acquire) == n)
    });

    let burst_wall = burst_wall.elapsed();
    let cpu_after_burst = cpu_by_group(thread_group);
    let chunks_burst = sh.chunks.load(Ordering::Relaxed);

    // Close the streams: every subscriber must see the stream end cleanly.
    let heartbeats = sh.heartbeats.load(Ordering::Relaxed);
    server.stop();
    wait(&sh, "shutdown", Duration::from_secs(10), || {
        sh.ended.load(Ordering::Acquire) == n
    });
    drop(stop);
    for t in client_threads {
        let _ = t.join();
    }

    // Figures.
    let arrival = |t: usize, i: usize| sh.arrivals[t * n + i].load(Ordering::Relaxed) - 1;
    let mut to_last = Vec::with_capacity(args.rounds);
    let mut to_first = Vec::with_capacity(args.rounds);
    let mut deliveries = Vec::with_capacity(args.rounds * n);
    for (r, &t0) in round_start.iter().enumerate() {
        let lat: Vec<u64> = (0..n).map(|i| arrival(r, i) - t0).collect();
        to_last.push(*lat.iter().max().expect("n > 0"));
        to_first.push(*lat.iter().min().expect("n > 0"));
        deliveries.extend(lat);
    }
    to_last.sort_unstable();
    to_first.sort_unstable();
    deliveries.sort_unstable();
    let burst_end = (args.rounds..broadcasts)
        .flat_map(|t| (0..n).map(move |i| (t, i)))
        .map(|(t, i)| arrival(t, i))
        .max()
        .unwrap_or(burst_start);
    let burst_ns = burst_end - burst_start;
    let burst_deliveries = (args.burst * n) as f64;

    println!();
    println!("Connect ({n} subscribers spawned at once; until head + `retry:` preamble read):");
    println!();
    println!("| p50 | p99 | last (all streaming) |");
    println!("|----:|----:|---------------------:|");
    println!(
        "| {} | {} | {} |",
        ms(percentile(&connect, 50)),
        ms(percentile(&connect, 99)),
        ms(all_streaming)
    );
    println!();
    println!(
        "Rounds ({} broadcasts, {:?} apart; from `broadcast_action` to the JSON parsed):",
        args.rounds, args.interval
    );
    println!();
    println!("| Measure | p50 | p99 | max |");
    println!("|---------|----:|----:|----:|");
    for (name, xs) in [
        (format!("time to the last of {n} subscribers"), &to_last),
        (format!("time to the first of {n} subscribers"), &to_first),
        (
            format!("per delivery ({} deliveries)", deliveries.len()),
            &deliveries,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} |",
            ms(percentile(xs, 50)),
            ms(percentile(xs, 99)),
            ms(*xs.last().expect("non-empty"))
        );
    }
    let p50_last = percentile(&to_last, 50);
    println!();
    println!(
        "Deliveries/s within a round ({n} / p50 time to last): {:.0}",
        n as f64 / (p50_last as f64 / 1e9)
    );
    println!(
        "Burst: {} broadcasts back to back = {} deliveries in {} -> {:.0} deliveries/s",
        args.burst,
        args.burst * n,
        ms(burst_ns),
        burst_deliveries / (burst_ns as f64 / 1e9)
    );
    println!(
        "Threads in this process while streaming (server + clients): {threads_streaming}; heartbeats seen: {heartbeats}"
    );
    println!(
        "Server writes (HTTP chunks) per delivery: rounds {:.3}, burst {:.3}",
        (chunks_rounds - chunks_before) as f64 / (args.rounds * n) as f64,
        (chunks_burst - chunks_rounds) as f64 / burst_deliveries
    );
    print_cpu(
        "the rounds",
        &cpu_rounds,
        &cpu_after_rounds,
        rounds_wall,
        args.rounds * n,
    );
    print_cpu(
        "the burst",
        &cpu_after_rounds,
        &cpu_after_burst,
        burst_wall,
        args.burst * n,
    );
    println!();
    let connect_ok = all_streaming <= 5_000_000_000;
    println!(
        "Target: {n} SSE clients connecting in the same instant all streaming within 5 s: {} ({})",
        if connect_ok { "MET" } else { "NOT MET" },
        ms(all_streaming)
    );
    println!(
        "Report: broadcast_action -> last of {n} subscribers parsed: p50 {}, p99 {}",
        ms(p50_last),
        ms(percentile(&to_last, 99))
    );
}
