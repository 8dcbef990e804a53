//! Memory, threads and file descriptors of idle joined WebSocket (Phoenix V2)
//! sockets, measured on a server in a child process so that the client
//! sockets do not count.
//!
//! ```sh
//! cargo run --release -p tidings-benches --example ws_idle_rss                  # 10 000 sockets, if the fds allow
//! cargo run --release -p tidings-benches --example ws_idle_rss -- --sockets 5000 --hold 0
//! ```
//!
//! The program re-executes itself with `--server`: that child runs the hub
//! and `sse::serve` on `127.0.0.1:0` (`SseConfig::new` defaults; WebSocket
//! upgrades at `/socket/websocket?vsn=2.0.0`, one smol task per socket) and
//! lives until its stdin closes. The parent opens the sockets
//! (`benches/src/ws.rs`: tungstenite client, 4 KiB read buffer), each joined
//! to `realtime:room<i % 100>`, `--concurrency` at a time (64), `--step` at
//! a time (1 000), and after each step samples the child:
//! `/proc/<pid>/status` (VmRSS, RssAnon, VmPTE, Threads), its open file
//! descriptors, its memory mappings (VMAs) and its live heap (a counting
//! global allocator, which also keeps a histogram of live blocks by size;
//! the child answers `heap` and `hist` lines on stdin). Then:
//!
//! 1. all sockets idle for `--idle` seconds (8, longer than the 5 s an idle
//!    tiny_http pool thread waits before it exits): a full sample, adding the
//!    threads by name and kernel wait channel, the anonymous mappings by
//!    size, and the live heap blocks per socket by size (where the heap
//!    goes);
//! 2. they are held for `--hold` seconds more (65, past the server's 60 s
//!    idle timeout), every client heartbeating each 25 s: another full
//!    sample.
//!
//! Per-socket figures are (sample − baseline) / sockets; the marginal one is
//! the slope between the first and the last step. At the end every socket
//! must answer a heartbeat (`[null,"<ref>","phoenix","heartbeat",{}]` →
//! `phx_reply` `ok`) and the server must be alive (exit code 1 otherwise).
//!
//! The server holds one file descriptor per socket (tiny_http hands the
//! upgraded socket over whole, `Request::upgrade_detached`); the number of
//! sockets is lowered to fit the hard `RLIMIT_NOFILE` if it must be (the
//! soft limit is raised to it), with a note.
// Figures are converted to f64 for printing only.
#![allow(clippy::cast_precision_loss)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tidings_benches::child::{
    Counting, Sample, ServerProcess, diagnose, fail, kib, per, print_full, row, row_header, sample,
    serve_child, sysctl,
};
use tidings_benches::load::open_all;
use tidings_benches::sse::{Server, raise_nofile_limit};
use tidings_benches::ws::{HEARTBEAT_EVERY, WsClient, connect_joined};

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Args {
    server: bool,
    sockets: usize,
    step: usize,
    idle: u64,
    hold: u64,
    concurrency: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        server: false,
        sockets: 10_000,
        step: 1_000,
        idle: 8,
        hold: 65,
        concurrency: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| fail(&format!("{flag} needs a number")))
        };
        match flag.as_str() {
            "--server" => a.server = true,
            "--sockets" => a.sockets = usize::try_from(num()).expect("fits"),
            "--step" => a.step = usize::try_from(num()).expect("fits").max(1),
            "--idle" => a.idle = num(),
            "--hold" => a.hold = num(),
            "--concurrency" => a.concurrency = usize::try_from(num()).expect("fits").max(1),
            _ => fail(&format!(
                "unknown argument {flag:?}; takes --sockets N, --step N, --idle S, --hold S, \
                 --concurrency N"
            )),
        }
    }
    if a.sockets < 2 {
        fail("--sockets must be at least 2");
    }
    a
}

/// The child: serve until stdin closes; answer `heap` and `hist` lines.
fn run_server() -> ! {
    let server = Server::start(None).unwrap_or_else(|e| fail(&format!("server: {e}")));
    serve_child(server.addr())
}

/// Runs `work(i, client)` on every client, `concurrency` at a time, on
/// `ex`; returns the errors (client index, message).
fn for_each_client<F, Fut>(
    ex: &smol::Executor<'static>,
    clients: &Arc<Mutex<Vec<Option<WsClient>>>>,
    concurrency: usize,
    limit: Duration,
    work: F,
) -> Vec<(usize, String)>
where
    F: Fn(usize, WsClient) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (WsClient, std::io::Result<()>)> + Send + 'static,
{
    let count = clients.lock().expect("clients").len();
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..concurrency.min(count))
        .map(|_| {
            let (next, errors, clients, work) =
                (next.clone(), errors.clone(), clients.clone(), work.clone());
            ex.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    let Some(c) = clients.lock().expect("clients")[i].take() else {
                        continue;
                    };
                    let (c, r) = work(i, c).await;
                    clients.lock().expect("clients")[i] = Some(c);
                    if let Err(e) = r {
                        errors.lock().expect("errors").push((i, e.to_string()));
                    }
                }
            })
        })
        .collect();
    let all = async {
        for t in tasks {
            t.await;
        }
        true
    };
    let done = smol::block_on(ex.run(smol::future::or(all, async {
        smol::Timer::after(limit).await;
        false
    })));
    let mut errors = std::mem::take(&mut *errors.lock().expect("errors"));
    if !done {
        errors.push((count, format!("not done within {limit:?}")));
    }
    errors
}

/// Heartbeats every client and checks each reply.
fn heartbeat_all(
    ex: &smol::Executor<'static>,
    clients: &Arc<Mutex<Vec<Option<WsClient>>>>,
    concurrency: usize,
) -> Vec<(usize, String)> {
    for_each_client(
        ex,
        clients,
        concurrency,
        Duration::from_secs(60),
        |_, mut c| async move {
            let r = c.heartbeat_round_trip().await;
            (c, r)
        },
    )
}

/// Opens `count` more sockets, `concurrency` at a time, joining socket `i`
/// to `realtime:room<i % 100>`.
fn open_sockets(
    ex: &smol::Executor<'static>,
    addr: SocketAddr,
    count: usize,
    concurrency: usize,
    out: &Mutex<Vec<Option<WsClient>>>,
) -> Result<(), String> {
    let first = out.lock().expect("clients").len();
    let opened = open_all(ex, count, concurrency, "socket", move |k| async move {
        connect_joined(addr, &format!("realtime:room{}", (first + k) % 100)).await
    })?;
    out.lock()
        .expect("clients")
        .extend(opened.into_iter().map(|(_, c)| Some(c)));
    Ok(())
}

/// Reads whatever arrived on each idle socket, without waiting: nothing is
/// expected. Returns (closed sockets, unexpected frames).
fn check_quiet(clients: &Mutex<Vec<Option<WsClient>>>) -> (usize, usize) {
    let mut clients = clients.lock().expect("clients");
    let (mut closed, mut frames) = (0, 0);
    for (i, c) in clients.iter_mut().enumerate() {
        let Some(c) = c else { continue };
        match c.read_now(|_| frames += 1) {
            Ok(true) => {}
            Ok(false) => closed += 1,
            Err(e) => fail(&format!("socket {i}: {e}")),
        }
    }
    (closed, frames)
}

/// Heartbeats every client if the last round is over [`HEARTBEAT_EVERY`]
/// ago; fails on any missing reply.
fn keep_alive(
    ex: &smol::Executor<'static>,
    clients: &Arc<Mutex<Vec<Option<WsClient>>>>,
    concurrency: usize,
    last_beat: &mut Instant,
    beats: &mut usize,
) {
    if last_beat.elapsed() < HEARTBEAT_EVERY {
        return;
    }
    *last_beat = Instant::now();
    let errors = heartbeat_all(ex, clients, concurrency);
    if let Some((i, e)) = errors.first() {
        fail(&format!(
            "heartbeat round: {} socket(s) failed, first: socket {i}: {e}",
            errors.len()
        ));
    }
    *beats += 1;
}

#[allow(clippy::too_many_lines)]
fn main() {
    let mut args = parse_args();
    let (soft, hard) =
        raise_nofile_limit().unwrap_or_else(|e| fail(&format!("RLIMIT_NOFILE: {e}")));
    if args.server {
        run_server();
    }
    // The server holds 1 fd per socket, plus its own and sockets in flight.
    let fds_per_socket = 1;
    let fit =
        usize::try_from(soft.saturating_sub(64 + 3 * args.concurrency as u64) / fds_per_socket)
            .expect("fits");
    let wanted = args.sockets;
    args.sockets = args.sockets.min(fit);
    let k = args.sockets;

    let (mut server, addr) = ServerProcess::start(&[]);
    println!("WS idle sockets: server pid {} on {addr}", server.pid);
    println!(
        "RLIMIT_NOFILE soft {soft} / hard {hard} (both processes); vm.max_map_count {}; \
         kernel.pid_max {}",
        sysctl("vm/max_map_count"),
        sysctl("kernel/pid_max"),
    );
    if k < wanted {
        println!(
            "Sockets: {k} (asked for {wanted}: the server needs {fds_per_socket} fds per socket and RLIMIT_NOFILE is {soft})"
        );
    } else {
        println!("Sockets: {k}");
    }
    println!("Each joined to realtime:room<i % 100>; heartbeats every {HEARTBEAT_EVERY:?}");
    println!();

    let ex = smol::Executor::<'static>::new();
    let clients = Arc::new(Mutex::new(Vec::with_capacity(k)));
    thread::sleep(Duration::from_secs(1));
    let base = sample(&mut server, 0, true).unwrap_or_else(|| fail("the server died"));
    row_header("socket");
    row(&base);
    let started = Instant::now();
    let mut last_beat = Instant::now();
    let mut beats = 0;
    let mut first_step: Option<Sample> = None;
    let mut last = base.clone();
    let mut open = 0;
    while open < k {
        let n = args.step.min(k - open);
        if let Err(e) = open_sockets(&ex, addr, n, args.concurrency, &clients) {
            diagnose(&mut server, &e, &last, "socket");
        }
        open += n;
        last = sample(&mut server, open, false)
            .unwrap_or_else(|| diagnose(&mut server, "sampling failed", &last, "socket"));
        row(&last);
        first_step.get_or_insert_with(|| last.clone());
        keep_alive(&ex, &clients, args.concurrency, &mut last_beat, &mut beats);
    }
    println!();
    println!(
        "Opened and joined {k} sockets in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let first_step = first_step.expect("k > 0");
    if k > first_step.n {
        println!(
            "Marginal VmRSS per socket, {} → {k} sockets: {}",
            first_step.n,
            kib(per(last.rss_kib, first_step.rss_kib, k - first_step.n))
        );
    }
    println!();

    thread::sleep(Duration::from_secs(args.idle));
    let idle = sample(&mut server, k, true).unwrap_or_else(|| fail("the server died"));
    print_full(
        &format!("{k} sockets open, idle {} s", args.idle),
        &idle,
        &base,
        "socket",
    );

    let mut held = None;
    if args.hold > 0 {
        println!(
            "(holding {} s, past the server's 60 s idle timeout; every socket heartbeats each {:?})",
            args.hold, HEARTBEAT_EVERY
        );
        println!();
        let until = Instant::now() + Duration::from_secs(args.hold);
        while Instant::now() < until {
            thread::sleep(Duration::from_millis(200).min(until - Instant::now()));
            keep_alive(&ex, &clients, args.concurrency, &mut last_beat, &mut beats);
        }
        let s = sample(&mut server, k, true).unwrap_or_else(|| fail("the server died"));
        print_full(
            &format!(
                "{k} sockets, held {} s more with {beats} heartbeat round(s) so far",
                args.hold
            ),
            &s,
            &base,
            "socket",
        );
        held = Some(s);
    }

    // Every socket must still be open: nothing unasked arrived, and each
    // answers a heartbeat.
    let (closed, unexpected) = check_quiet(&clients);
    let errors = heartbeat_all(&ex, &clients, args.concurrency);
    if let Some(status) = server.exited() {
        fail(&format!("the server process died ({status})"));
    }
    server.stop();
    if closed > 0 || unexpected > 0 {
        fail(&format!(
            "{closed} of {k} sockets were closed by the server while idle; {unexpected} unexpected frame(s)"
        ));
    }
    if let Some((i, e)) = errors.first() {
        fail(&format!(
            "{} of {k} sockets did not answer the final heartbeat; first: socket {i}: {e}",
            errors.len()
        ));
    }
    println!(
        "All {k} sockets answered the final heartbeat ({} heartbeat rounds in all, the final one included).",
        beats + 1
    );

    let per_socket = per(idle.rss_kib, base.rss_kib, k);
    let per_held = held.as_ref().map(|h| per(h.rss_kib, base.rss_kib, k));
    println!();
    println!(
        "Target: {k} idle WS connections, VmRSS per connection <= 8 KiB: {} ({} per connection{}; \
         {} threads, {} fds in the server)",
        if per_socket <= 8.0 && per_held.is_none_or(|p| p <= 8.0) {
            "MET"
        } else {
            "NOT MET"
        },
        kib(per_socket),
        per_held
            .map(|p| format!(", {} after the hold", kib(p)))
            .unwrap_or_default(),
        idle.threads,
        idle.fds,
    );
}
