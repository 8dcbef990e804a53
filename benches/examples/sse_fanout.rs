//! SSE fan-out: connect time of 1 000 subscribers opening at once, then the
//! latency from `HubHandle::broadcast_action` to every subscriber having
//! parsed the event, per-delivery latency at a fixed offered load, and a
//! burst for deliveries/s.
//!
//! ```sh
//! cargo run --release -p tidings-benches --example sse_fanout
//! cargo run --release -p tidings-benches --example sse_fanout -- --clients 500 --rounds 50
//! cargo run --release -p tidings-benches --example sse_fanout -- --clients 200 --rounds 10 --burst 20 --rate 20000 --rate-secs 1
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
//! 3. **Fixed rate** (`--rate`, 100 000 deliveries/s, 0 skips it;
//!    `--rate-secs`, 3): one broadcast every subscribers / rate s (1 000
//!    subscribers: every 10 ms), each due at an absolute deadline and none
//!    waiting for the previous one to be delivered; then a wait until every
//!    subscriber parsed all of them. Gives deliveries/s offered and achieved
//!    (first send to last delivery), per-delivery latency (send stamp to
//!    parse stamp, as in the rounds) at p50, p99, p99.9 and max, the
//!    sender's lateness (it says so if it fell behind), server writes per
//!    delivery and CPU by thread group. See `tidings_benches::fanout`.
//! 4. **Burst** (`--burst`, 200): that many broadcasts back to back; the
//!    time until every subscriber parsed all of them gives deliveries/s.
//! 5. **Shutdown**: `HubHandle::shutdown`; every stream must end cleanly.
//!
//! Exits non-zero if a subscriber fails to connect, errs, misses or
//! duplicates an event (each wait has a deadline).

// Figures are converted to f64 for printing only.
#![allow(clippy::cast_precision_loss)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use tidings_benches::child::fail;
use tidings_benches::fanout::{Deliveries, Figures, PhasePlan, RateFlags, run_phases};
use tidings_benches::load::status_of_this_process;
use tidings_benches::sse::{Event, OpenOptions, ROOM, Server, ms, open_stream, percentile};

struct Args {
    clients: usize,
    rounds: usize,
    interval: Duration,
    burst: usize,
    rate: RateFlags,
    threads: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        clients: 1000,
        rounds: 100,
        interval: Duration::from_millis(50),
        burst: 200,
        rate: RateFlags::default(),
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
            f if RateFlags::NAMES.contains(&f) => a.rate.set(f, it.next()),
            _ => fail(&format!(
                "unknown argument {flag:?}; takes --clients --rounds --interval-ms --burst \
                 --rate --rate-secs --threads"
            )),
        }
    }
    if a.clients == 0 || a.rounds == 0 {
        fail("--clients and --rounds must be positive");
    }
    a
}

/// What the subscribers record: deliveries, plus SSE-specific counters.
struct Shared {
    d: Deliveries,
    heartbeats: AtomicUsize,
    /// Chunks received by all subscribers after their preamble: the
    /// server's writes.
    chunks: AtomicU64,
    ended: AtomicUsize,
}

impl Shared {
    fn on_event(&self, i: usize, e: &Event) {
        match e.name.as_str() {
            "broadcast" => {
                let ok = e.data["action"] == "ping" && e.data["cids"] == json!(["page"]);
                let t = e.data["params"]["t"].as_u64().map(|t| t as usize);
                self.d.arrive(i, t.filter(|_| ok), || e.data.to_string());
            }
            "heartbeat" => {
                self.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            other => self.d.failed(format!(
                "subscriber {i}: unexpected event {other}: {}",
                e.data
            )),
        }
    }
}

async fn subscriber(i: usize, addr: std::net::SocketAddr, sh: Arc<Shared>, start: Instant) {
    let run = async {
        let mut stream = open_stream(addr, OpenOptions::default()).await?;
        sh.d.mark_ready(i, start);
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
        Err(e) => sh.d.failed(format!("subscriber {i}: {e}")),
    }
}

fn thread_group(name: &str) -> &'static str {
    if name.starts_with("bench-client") {
        "subscribers (client executor threads)"
    } else if name.starts_with("smol-") {
        "server: SSE stream tasks (smol global executor)"
    } else if name.starts_with("tidings-sse-wri") {
        "server: SSE writer threads"
    } else if name.starts_with("tidings-respond") {
        "server: responder"
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
    let plan = PhasePlan {
        rounds: args.rounds,
        interval: args.interval,
        rate: args.rate.rate,
        rate_for: args.rate.duration(),
        rate_limit: Duration::from_secs(120),
        burst: args.burst,
        round_limit: Duration::from_secs(10),
        burst_limit: Duration::from_secs(60),
    };
    let sh = Arc::new(Shared {
        d: Deliveries::new(n, plan.broadcasts(n), "subscriber"),
        heartbeats: AtomicUsize::new(0),
        chunks: AtomicU64::new(0),
        ended: AtomicUsize::new(0),
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
        "SSE fan-out: {n} subscribers on {addr}, {} client executor thread(s), {} round(s) every {:?}, {}, burst of {}",
        args.threads,
        args.rounds,
        args.interval,
        args.rate.describe(),
        args.burst
    );

    // Phase 1: every subscriber starts connecting at the same instant.
    let start = Instant::now();
    for i in 0..n {
        ex.spawn(subscriber(i, addr, sh.clone(), start)).detach();
    }
    sh.d.wait("connect", Duration::from_secs(60), || sh.d.ready() == n);
    let connect = sh.d.connect_times();
    let all_streaming = *connect.last().expect("n > 0");
    let threads_streaming = status_of_this_process("Threads:");
    thread::sleep(Duration::from_millis(500));

    // Phases 2 to 4: spaced rounds, the fixed rate, a burst.
    let phases = run_phases(
        &sh.d,
        &plan,
        thread_group,
        || sh.chunks.load(Ordering::Relaxed),
        |t| {
            server
                .handle
                .broadcast_action(ROOM, "ping", &json!({"t": t}))
                .map_err(|e| e.to_string())
        },
    );

    // Close the streams: every subscriber must see the stream end cleanly.
    let heartbeats = sh.heartbeats.load(Ordering::Relaxed);
    server.stop();
    sh.d.wait("shutdown", Duration::from_secs(10), || {
        sh.ended.load(Ordering::Acquire) == n
    });
    drop(stop);
    for t in client_threads {
        let _ = t.join();
    }

    // Figures.
    let fig = Figures::of(&sh.d, &phases);
    let [chunks_before, chunks_rounds, chunks_rate, chunks_burst] = phases.counter;

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
    fig.print_rounds(n, "subscriber");
    fig.print_rate(n, "subscriber");
    println!();
    println!(
        "Burst: {} broadcasts back to back = {} deliveries in {} -> {:.0} deliveries/s",
        args.burst,
        args.burst * n,
        ms(fig.burst_ns),
        fig.burst_rate()
    );
    println!(
        "Threads in this process while streaming (server + clients): {threads_streaming}; heartbeats seen: {heartbeats}"
    );
    let rate_writes = fig.rate.as_ref().map_or_else(String::new, |r| {
        format!(
            ", fixed rate {:.3}",
            (chunks_rate - chunks_rounds) as f64 / r.deliveries.len() as f64
        )
    });
    println!(
        "Server writes (HTTP chunks) per delivery: rounds {:.3}{rate_writes}, burst {:.3}",
        (chunks_rounds - chunks_before) as f64 / (args.rounds * n) as f64,
        (chunks_burst - chunks_rate) as f64 / fig.burst_deliveries as f64
    );
    phases.print_cpu();
    println!();
    let connect_ok = all_streaming <= 5_000_000_000;
    println!(
        "Target: {n} SSE clients connecting in the same instant all streaming within 5 s: {} ({})",
        if connect_ok { "MET" } else { "NOT MET" },
        ms(all_streaming)
    );
    println!(
        "Report: broadcast_action -> last of {n} subscribers parsed: p50 {}, p99 {}{}; burst {:.0} deliveries/s",
        ms(percentile(&fig.to_last, 50)),
        ms(percentile(&fig.to_last, 99)),
        fig.rate_summary(),
        fig.burst_rate()
    );
}
