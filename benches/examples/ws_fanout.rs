//! WebSocket fan-out: N joined Phoenix (V2) sockets on loopback, then the
//! latency from `HubHandle::broadcast_action` to every socket having parsed
//! the broadcast frame, per-delivery latency at a fixed offered load, and a
//! burst for deliveries/s.
//!
//! ```sh
//! cargo run --release -p tidings-benches --example ws_fanout                    # 10 000 clients, if the fds allow
//! cargo run --release -p tidings-benches --example ws_fanout -- --clients 1000
//! cargo run --release -p tidings-benches --example ws_fanout -- --clients 200 --rounds 10 --burst 20 --rate 20000 --rate-secs 1
//! ```
//!
//! Everything runs in one process: the hub and `sse::serve` on `127.0.0.1:0`
//! (which answers `GET /socket/websocket?vsn=2.0.0` upgrades; each socket is
//! a task on smol's global executor), and the clients as `smol` tasks on
//! `Async<TcpStream>`s driven by a small executor of their own
//! (`--threads`, 2). Each client runs `tungstenite` in client role
//! (non-blocking, 4 KiB read buffer, `benches/src/ws.rs`), joins
//! `realtime:room1` and parses every frame it gets with `serde_json`
//! (`[join_ref, ref, topic, event, payload]`), stamping the time once a
//! `ping` broadcast is parsed. Clients heartbeat every 25 s.
//!
//! Phases:
//! 1. **Connect**: clients are spawned at once, `--concurrency` (256)
//!    connecting at a time; the time until each has its join's `ok` reply.
//! 2. **Rounds** (`--rounds`, 100, spaced `--interval-ms`, 50): take a
//!    timestamp, `broadcast_action({:realtime, "room1"}, "ping", {"t": round})`,
//!    wait until all clients parsed it. Per round: time to the last client;
//!    per delivery: its latency.
//! 3. **Fixed rate** (`--rate`, 100 000 deliveries/s, 0 skips it;
//!    `--rate-secs`, 3): one broadcast every clients / rate s (1 000 clients:
//!    every 10 ms; 10 000: every 100 ms), each due at an absolute deadline
//!    and none waiting for the previous one to be delivered; then a wait
//!    until every client parsed all of them. Gives deliveries/s offered and
//!    achieved (first send to last delivery), per-delivery latency (send
//!    stamp to parse stamp, as in the rounds) at p50, p99, p99.9 and max,
//!    the sender's lateness (it says so if it fell behind), and CPU by
//!    thread group: the design's "p99 ≤ Redis's (≈ 4.3 ms) at a fixed
//!    100 k deliveries/s". See `tidings_benches::fanout`.
//! 4. **Burst** (`--burst`, 200): that many broadcasts back to back; the
//!    time until every client parsed all of them gives deliveries/s.
//! 5. **Shutdown**: `HubHandle::shutdown`; every client must see its socket
//!    closed.
//!
//! The process holds the server's file descriptors (1 per socket) and the
//! clients' ones (1 each), so the number of clients is lowered to fit
//! `RLIMIT_NOFILE` (with a note; `--fds-per-client`, 2, sets the divisor).
//! Exits non-zero if a client fails to connect or join, errs, misses or
//! duplicates a broadcast (each wait has a deadline).

// Figures are converted to f64 for printing only.
#![allow(clippy::cast_precision_loss)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use tidings_benches::child::fail;
use tidings_benches::fanout::{Deliveries, Figures, PhasePlan, RateFlags, run_phases};
use tidings_benches::load::status_of_this_process;
use tidings_benches::sse::{Server, ms, percentile, raise_nofile_limit};
use tidings_benches::ws::{HEARTBEAT_EVERY, PhxFrame, connect_joined};
use tidings_ws::server::topic::realtime_channel;

/// The one topic every client joins.
const TOPIC: &str = "realtime:room1";

struct Args {
    clients: usize,
    rounds: usize,
    interval: Duration,
    burst: usize,
    rate: RateFlags,
    threads: usize,
    concurrency: usize,
    fds_per_client: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        clients: 10_000,
        rounds: 100,
        interval: Duration::from_millis(50),
        burst: 200,
        rate: RateFlags::default(),
        threads: 2,
        concurrency: 256,
        fds_per_client: 2,
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
            "--concurrency" => a.concurrency = num().max(1),
            "--fds-per-client" => a.fds_per_client = num().max(1) as u64,
            f if RateFlags::NAMES.contains(&f) => a.rate.set(f, it.next()),
            _ => fail(&format!(
                "unknown argument {flag:?}; takes --clients --rounds --interval-ms --burst \
                 --rate --rate-secs --threads --concurrency --fds-per-client"
            )),
        }
    }
    if a.clients == 0 || a.rounds == 0 {
        fail("--clients and --rounds must be positive");
    }
    a
}

/// What the clients record: deliveries, plus WS-specific counters.
struct Shared {
    d: Deliveries,
    heartbeat_replies: AtomicUsize,
    /// Frames received after the join, all kinds.
    frames: AtomicU64,
    ended: AtomicUsize,
}

impl Shared {
    fn on_frame(&self, i: usize, f: &PhxFrame) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        match (f.topic.as_str(), f.event.as_str()) {
            (TOPIC, "broadcast") => {
                let p = &f.payload;
                let ok = f.join_ref.is_none()
                    && f.msg_ref.is_none()
                    && p["type"] == "broadcast"
                    && p["event"] == "ping";
                let t = p["payload"]["t"].as_u64().map(|t| t as usize);
                self.d.arrive(i, t.filter(|_| ok), || format!("{f:?}"));
            }
            ("phoenix", "phx_reply") if f.payload["status"] == "ok" => {
                self.heartbeat_replies.fetch_add(1, Ordering::Relaxed);
            }
            _ => self.d.failed(format!("client {i}: unexpected frame {f:?}")),
        }
    }
}

async fn client(
    i: usize,
    addr: SocketAddr,
    sh: Arc<Shared>,
    start: Instant,
    gate: Arc<smol::lock::Semaphore>,
) {
    let run = async {
        let permit = gate.acquire().await;
        let mut c = connect_joined(addr, TOPIC).await?;
        drop(permit);
        sh.d.mark_ready(i, start);
        loop {
            if !c.read_now(|f| sh.on_frame(i, &f))? {
                return std::io::Result::Ok(());
            }
            let beat_at = c.last_sent + HEARTBEAT_EVERY;
            if Instant::now() >= beat_at {
                c.send_heartbeat().await?;
                continue;
            }
            smol::future::or(c.readable(), async {
                smol::Timer::at(beat_at).await;
                Ok(())
            })
            .await?;
        }
    };
    match run.await {
        Ok(()) => {
            sh.ended.fetch_add(1, Ordering::Release);
        }
        Err(e) => sh.d.failed(format!("client {i}: {e}")),
    }
}

fn thread_group(name: &str) -> &'static str {
    if name.starts_with("bench-client") {
        "clients (client executor threads)"
    } else if name.starts_with("smol-") {
        "server: socket tasks (smol global executor)"
    } else if name.starts_with("tidings-hub") {
        "server: hub"
    } else if name.starts_with("tidings-http") {
        "server: HTTP workers"
    } else if name.starts_with("async-io") {
        "async-io reactor (server and clients)"
    } else {
        "main (polling the counters), tiny_http accept"
    }
}

fn fds_of_this_process() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

#[allow(clippy::too_many_lines)]
fn main() {
    let mut args = parse_args();
    let (soft, hard) =
        raise_nofile_limit().unwrap_or_else(|e| fail(&format!("RLIMIT_NOFILE: {e}")));
    // Server: 3 fds per socket (tiny_http's read and write halves, kept by the
    // upgraded stream, and the raw clone the task uses); client: 1.
    let fit = usize::try_from(
        soft.saturating_sub(128 + 2 * args.concurrency as u64) / args.fds_per_client,
    )
    .expect("fits");
    let wanted = args.clients;
    args.clients = args.clients.min(fit);
    let n = args.clients;
    if n == 0 {
        fail(&format!("RLIMIT_NOFILE {soft} leaves no room for clients"));
    }

    let fds_before = fds_of_this_process();
    let server = Server::start(None).unwrap_or_else(|e| fail(&format!("server: {e}")));
    let addr = server.addr();
    let channel = realtime_channel("room1").unwrap_or_else(|e| fail(&format!("channel: {e}")));
    let plan = PhasePlan {
        rounds: args.rounds,
        interval: args.interval,
        rate: args.rate.rate,
        rate_for: args.rate.duration(),
        rate_limit: Duration::from_secs(120),
        burst: args.burst,
        round_limit: Duration::from_secs(20),
        burst_limit: Duration::from_secs(120),
    };
    let sh = Arc::new(Shared {
        d: Deliveries::new(n, plan.broadcasts(n), "client"),
        heartbeat_replies: AtomicUsize::new(0),
        frames: AtomicU64::new(0),
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
        "WS fan-out: {n} clients on {addr} joined to {TOPIC}, {} client executor thread(s), \
         {} round(s) every {:?}, {}, burst of {}",
        args.threads,
        args.rounds,
        args.interval,
        args.rate.describe(),
        args.burst
    );
    println!(
        "RLIMIT_NOFILE soft {soft} / hard {hard}; SMOL_THREADS {}",
        std::env::var("SMOL_THREADS").unwrap_or_else(|_| "unset (1 thread)".into())
    );
    if n < wanted {
        println!(
            "Clients: {n} (asked for {wanted}: server and clients share this process, \
             {} fds per client, and RLIMIT_NOFILE is {soft})",
            args.fds_per_client
        );
    }

    // Phase 1: connect and join.
    let gate = Arc::new(smol::lock::Semaphore::new(args.concurrency));
    let start = Instant::now();
    for i in 0..n {
        ex.spawn(client(i, addr, sh.clone(), start, gate.clone()))
            .detach();
    }
    sh.d.wait("connect", Duration::from_secs(120), || sh.d.ready() == n);
    let joined = sh.d.connect_times();
    let all_joined = *joined.last().expect("n > 0");
    let threads_joined = status_of_this_process("Threads:");
    let rss_joined = status_of_this_process("VmRSS:");
    let fds_joined = fds_of_this_process();
    thread::sleep(Duration::from_millis(500));

    // Phases 2 to 4: spaced rounds, the fixed rate, a burst.
    let phases = run_phases(
        &sh.d,
        &plan,
        thread_group,
        || sh.frames.load(Ordering::Relaxed),
        |t| {
            server
                .handle
                .broadcast_action(&channel, "ping", &json!({"t": t}))
                .map_err(|e| e.to_string())
        },
    );

    // Close: every client must see its socket closed.
    let frames = sh.frames.load(Ordering::Relaxed);
    let heartbeat_replies = sh.heartbeat_replies.load(Ordering::Relaxed);
    server.stop();
    sh.d.wait("shutdown", Duration::from_secs(20), || {
        sh.ended.load(Ordering::Acquire) == n
    });
    drop(stop);
    for t in client_threads {
        let _ = t.join();
    }

    // Figures.
    let fig = Figures::of(&sh.d, &phases);

    println!();
    println!(
        "Connect ({n} clients, {} connecting at a time; until the join's ok reply):",
        args.concurrency
    );
    println!();
    println!("| p50 | p99 | last (all joined) | threads | VmRSS | fds (server + clients) |");
    println!("|----:|----:|------------------:|--------:|------:|-----------------------:|");
    println!(
        "| {} | {} | {} | {threads_joined} | {rss_joined} | {} ({:.2} per client) |",
        ms(percentile(&joined, 50)),
        ms(percentile(&joined, 99)),
        ms(all_joined),
        fds_joined,
        (fds_joined - fds_before) as f64 / n as f64
    );
    println!();
    println!(
        "Rounds ({} broadcasts, {:?} apart; from `broadcast_action` to the frame's JSON parsed):",
        args.rounds, args.interval
    );
    println!();
    fig.print_rounds(n, "client");
    fig.print_rate(n, "client");
    println!();
    println!(
        "Burst: {} broadcasts back to back (queued in {}) = {} deliveries in {} -> {:.0} deliveries/s",
        args.burst,
        ms(phases.burst_sent),
        args.burst * n,
        ms(fig.burst_ns),
        fig.burst_rate()
    );
    println!(
        "Frames parsed by the clients after joining: {frames}; heartbeat replies: {heartbeat_replies}"
    );
    phases.print_cpu();
    println!();
    if let Some(r) = fig.rate.as_ref().filter(|r| r.offered == 100_000) {
        let p99 = r.latency(990);
        println!(
            "Design target, p99 ≤ Redis's (≈ 4.3 ms) at a fixed 100 k deliveries/s ({n} clients): {} (p99 {}{})",
            if p99 <= 4_300_000 { "MET" } else { "NOT MET" },
            ms(p99),
            if r.fell_behind() {
                "; the sender fell behind"
            } else {
                ""
            }
        );
    }
    println!(
        "Report: broadcast_action -> last of {n} WS clients parsed: p50 {}, p99 {}{}; burst {:.0} deliveries/s",
        ms(percentile(&fig.to_last, 50)),
        ms(percentile(&fig.to_last, 99)),
        fig.rate_summary(),
        fig.burst_rate()
    );
}
