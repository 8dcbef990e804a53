//! Memory and threads of idle SSE streams, measured on a server in a child
//! process so that the client sockets do not count.
//!
//! ```sh
//! cargo run --release -p tidings-benches --example sse_idle_rss                  # 10 000 streams
//! cargo run --release -p tidings-benches --example sse_idle_rss -- --streams 7000
//! cargo run --release -p tidings-benches --example sse_idle_rss -- --connection-close
//! cargo run --release -p tidings-benches --example sse_idle_rss -- --read-timeout 5
//! ```
//!
//! The program re-executes itself with `--server`: that child runs the hub
//! and `sse::serve` on `127.0.0.1:0` (`SseConfig::new` defaults, except the
//! listener's `read_timeout` if `--read-timeout` is given) and lives until
//! its stdin closes. The parent opens the streams the way the browser client
//! does (`GET /`, `POST /tidings/handshake`, `GET /tidings/events?…`, one
//! keep-alive connection each, `--concurrency` at a time, 64), `--step` at a
//! time (1 000), and after each step samples the child: `/proc/<pid>/status`
//! (VmRSS, RssAnon, VmPTE, Threads), its open file descriptors, its memory
//! mappings (VMAs) and its live heap (a counting global allocator; the child
//! answers a `heap` line on stdin). Then:
//!
//! 1. all streams idle for `--idle` seconds (2): a full sample, adding the
//!    threads by name and kernel wait channel and the anonymous mappings by
//!    size (thread stacks show up there);
//! 2. once every stream has been idle longer than the read timeout plus the
//!    5 s tiny_http keeps an idle pool thread (`--no-wait-timeout` skips
//!    it): another full sample, to see what the read timeout frees.
//!
//! Per-stream figures are (sample − baseline) / streams; the marginal one is
//! the slope between the first and the last step. Every stream must still
//! be open at the end, and the server alive (exit code 1 otherwise).
//!
//! The server holds two file descriptors per stream (tiny_http `dup`s each
//! socket for its read half), so the number of streams is lowered to fit the
//! hard `RLIMIT_NOFILE` (the soft limit is raised to it), with a note.
//! `--connection-close` sends `Connection: close` on the events request, which
//! makes tiny_http stop reading the connection (and close the dup) as soon as
//! it has handed the request over.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tidings_benches::child::{
    Counting, Sample, ServerProcess, diagnose, fail, kib, per, print_full, row, row_header, sample,
    serve_child, sysctl,
};
use tidings_benches::load::open_all;
use tidings_benches::sse::{EventStream, OpenOptions, Server, open_stream, raise_nofile_limit};

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Args {
    server: bool,
    streams: usize,
    step: usize,
    read_timeout: Option<u64>,
    idle: u64,
    wait_timeout: bool,
    connection_close: bool,
    concurrency: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        server: false,
        streams: 10_000,
        step: 1_000,
        read_timeout: None,
        idle: 2,
        wait_timeout: true,
        connection_close: false,
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
            "--streams" => a.streams = usize::try_from(num()).expect("fits"),
            "--step" => a.step = usize::try_from(num()).expect("fits").max(1),
            "--read-timeout" => a.read_timeout = Some(num().max(1)),
            "--idle" => a.idle = num(),
            "--no-wait-timeout" => a.wait_timeout = false,
            "--connection-close" => a.connection_close = true,
            "--concurrency" => a.concurrency = usize::try_from(num()).expect("fits").max(1),
            _ => fail(&format!(
                "unknown argument {flag:?}; takes --streams N, --step N, --read-timeout S, \
                 --idle S, --no-wait-timeout, --connection-close, --concurrency N"
            )),
        }
    }
    if a.streams < 2 {
        fail("--streams must be at least 2");
    }
    a
}

/// The child: serve until stdin closes; answer `heap` and `hist` lines.
fn run_server(args: &Args) -> ! {
    let server = Server::start(args.read_timeout.map(Duration::from_secs))
        .unwrap_or_else(|e| fail(&format!("server: {e}")));
    serve_child(server.addr())
}

/// Opens `count` more streams, `concurrency` at a time.
fn open_streams(
    ex: &smol::Executor<'static>,
    addr: SocketAddr,
    opts: OpenOptions,
    count: usize,
    concurrency: usize,
    out: &Mutex<Vec<EventStream>>,
) -> Result<(), String> {
    let opened = open_all(ex, count, concurrency, "stream", move |_| {
        open_stream(addr, opts)
    })?;
    out.lock()
        .expect("streams")
        .extend(opened.into_iter().map(|(_, s)| s));
    Ok(())
}

/// Parses what arrived on each stream; counts those the server closed.
fn check_open(streams: &Mutex<Vec<EventStream>>) -> (usize, BTreeMap<String, usize>) {
    let mut streams = streams.lock().expect("streams");
    let mut events = BTreeMap::new();
    let mut closed = 0;
    for (i, s) in streams.iter_mut().enumerate() {
        match s.poll_now(|e| *events.entry(e.name).or_default() += 1) {
            Ok(true) => {}
            Ok(false) => closed += 1,
            Err(e) => fail(&format!("stream {i}: {e}")),
        }
    }
    (closed, events)
}

#[allow(clippy::too_many_lines)]
fn main() {
    let mut args = parse_args();
    let (soft, hard) =
        raise_nofile_limit().unwrap_or_else(|e| fail(&format!("RLIMIT_NOFILE: {e}")));
    if args.server {
        run_server(&args);
    }
    // The server holds 2 fds per stream (1 with --connection-close once the
    // connection thread lets go), plus its own and connections in flight.
    let fds_per_stream = if args.connection_close { 1 } else { 2 };
    let fit =
        usize::try_from(soft.saturating_sub(64 + 2 * args.concurrency as u64) / fds_per_stream)
            .expect("fits");
    let wanted = args.streams;
    args.streams = args.streams.min(fit);
    if args.streams as u64 + 64 > soft {
        fail(&format!(
            "the client needs {} file descriptors; RLIMIT_NOFILE is {soft}",
            args.streams + 64
        ));
    }
    let k = args.streams;
    let read_timeout = args.read_timeout.unwrap_or(30);

    let (mut server, addr) = ServerProcess::start(
        &args
            .read_timeout
            .map(|t| vec!["--read-timeout".to_owned(), t.to_string()])
            .unwrap_or_default(),
    );
    println!("SSE idle streams: server pid {} on {addr}", server.pid);
    println!(
        "RLIMIT_NOFILE soft {soft} / hard {hard} (both processes); vm.max_map_count {}; \
         kernel.pid_max {}; kernel.threads-max {}",
        sysctl("vm/max_map_count"),
        sysctl("kernel/pid_max"),
        sysctl("kernel/threads-max")
    );
    if k < wanted {
        println!(
            "Streams: {k} (asked for {wanted}: the server needs {fds_per_stream} fd(s) per stream and RLIMIT_NOFILE is {soft})"
        );
    } else {
        println!("Streams: {k}");
    }
    println!(
        "Server read_timeout {read_timeout} s{}; events request {}",
        if args.read_timeout.is_some() {
            " (--read-timeout)"
        } else {
            " (ServerConfig default)"
        },
        if args.connection_close {
            "with `Connection: close`"
        } else {
            "keep-alive (as EventSource sends it)"
        }
    );
    println!();

    let ex = smol::Executor::<'static>::new();
    let streams = Arc::new(Mutex::new(Vec::with_capacity(k)));
    let opts = OpenOptions {
        connection_close: args.connection_close,
    };
    thread::sleep(Duration::from_secs(1));
    let base = sample(&mut server, 0, true).unwrap_or_else(|| fail("the server died"));
    row_header("stream");
    row(&base);
    let started = Instant::now();
    let mut first_step: Option<Sample> = None;
    let mut last = base.clone();
    let mut open = 0;
    while open < k {
        let n = args.step.min(k - open);
        if let Err(e) = open_streams(&ex, addr, opts, n, args.concurrency, &streams) {
            diagnose(&mut server, &e, &last, "stream");
        }
        open += n;
        last = sample(&mut server, open, false)
            .unwrap_or_else(|| diagnose(&mut server, "sampling failed", &last, "stream"));
        row(&last);
        first_step.get_or_insert_with(|| last.clone());
    }
    let last_opened = Instant::now();
    println!();
    println!(
        "Opened {k} streams in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let first_step = first_step.expect("k > 0");
    let marginal = if k > first_step.n {
        Some(per(last.rss_kib, first_step.rss_kib, k - first_step.n))
    } else {
        None
    };
    if let Some(m) = marginal {
        println!(
            "Marginal VmRSS per stream, {} → {k} streams: {}",
            first_step.n,
            kib(m)
        );
    }
    println!();

    thread::sleep(Duration::from_secs(args.idle));
    let idle = sample(&mut server, k, true).unwrap_or_else(|| fail("the server died"));
    print_full(
        &format!("{k} streams open, idle {} s", args.idle),
        &idle,
        &base,
        "stream",
    );

    let mut after = None;
    if args.wait_timeout {
        // Read timeout, then tiny_http's pool keeps an idle thread 5 s.
        let wait = Duration::from_secs(read_timeout + 8).saturating_sub(last_opened.elapsed());
        println!(
            "(waiting {:.0} s: every stream idle past the {read_timeout} s read timeout + 5 s of tiny_http's idle pool threads)",
            wait.as_secs_f64()
        );
        println!();
        thread::sleep(wait);
        let s = sample(&mut server, k, true).unwrap_or_else(|| fail("the server died"));
        print_full(
            &format!("{k} streams, each idle over {} s", read_timeout + 5),
            &s,
            &base,
            "stream",
        );
        after = Some(s);
    }

    let (closed, events) = check_open(&streams);
    println!("Events received on the idle streams meanwhile: {events:?}");
    if let Some(status) = server.exited() {
        fail(&format!("the server process died ({status})"));
    }
    server.stop();
    if closed > 0 {
        fail(&format!(
            "{closed} of {k} streams were closed by the server while idle"
        ));
    }

    let per_stream = per(idle.rss_kib, base.rss_kib, k);
    let per_after = after.as_ref().map(|a| per(a.rss_kib, base.rss_kib, k));
    println!();
    println!(
        "Target: {k} idle SSE streams, VmRSS per stream <= 16 KiB: {} ({} per stream{}; \
         {} threads in the server = {:.2} per stream{})",
        if per_stream <= 16.0 && per_after.is_none_or(|p| p <= 16.0) {
            "MET"
        } else {
            "NOT MET"
        },
        kib(per_stream),
        per_after
            .map(|p| format!(", {} after the read timeout", kib(p)))
            .unwrap_or_default(),
        idle.threads,
        per(idle.threads, base.threads, k),
        after
            .as_ref()
            .map(|a| format!(
                "; {} = {:.2} per stream after the read timeout",
                a.threads,
                per(a.threads, base.threads, k)
            ))
            .unwrap_or_default()
    );
}
