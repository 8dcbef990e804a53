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
// The counting allocator implements the `unsafe` `GlobalAlloc` trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tidings_benches::sse::{EventStream, OpenOptions, Server, open_stream, raise_nofile_limit};

/// `System`, counting live bytes and blocks, and apart those of blocks of
/// at least [`BIG`] bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BIG: AtomicUsize = AtomicUsize::new(0);
static BLOCKS_BIG: AtomicUsize = AtomicUsize::new(0);
/// Blocks this large are counted apart (the per-stream outbound queues).
const BIG: usize = 16 * 1024;

fn count_in(size: usize) {
    LIVE.fetch_add(size, Ordering::Relaxed);
    BLOCKS.fetch_add(1, Ordering::Relaxed);
    if size >= BIG {
        LIVE_BIG.fetch_add(size, Ordering::Relaxed);
        BLOCKS_BIG.fetch_add(1, Ordering::Relaxed);
    }
}

fn count_out(size: usize) {
    LIVE.fetch_sub(size, Ordering::Relaxed);
    BLOCKS.fetch_sub(1, Ordering::Relaxed);
    if size >= BIG {
        LIVE_BIG.fetch_sub(size, Ordering::Relaxed);
        BLOCKS_BIG.fetch_sub(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the counters are atomics
// and never affect what is returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count_in(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count_in(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (we forward
        // every allocation to it).
        unsafe { System.dealloc(ptr, layout) };
        count_out(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as our caller's; `ptr` came from `System`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count_out(layout.size());
            count_in(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn fail(why: &str) -> ! {
    eprintln!("FAILED: {why}");
    std::process::exit(1);
}

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

/// The child: serve until stdin closes; answer `heap` lines.
fn run_server(args: &Args) -> ! {
    let server = Server::start(args.read_timeout.map(Duration::from_secs))
        .unwrap_or_else(|e| fail(&format!("server: {e}")));
    let mut out = std::io::stdout();
    writeln!(out, "LISTENING {}", server.addr()).expect("stdout");
    out.flush().expect("stdout");
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(l) if l.trim() == "heap" => {
                let _ = writeln!(
                    out,
                    "HEAP {} {} {} {}",
                    LIVE.load(Ordering::Relaxed),
                    BLOCKS.load(Ordering::Relaxed),
                    LIVE_BIG.load(Ordering::Relaxed),
                    BLOCKS_BIG.load(Ordering::Relaxed)
                );
                let _ = out.flush();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    std::process::exit(0);
}

/// The server child process.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pid: u32,
}

impl ServerProcess {
    fn start(read_timeout: Option<u64>) -> (Self, SocketAddr) {
        let mut cmd = Command::new(std::env::current_exe().expect("own path"));
        cmd.arg("--server");
        if let Some(t) = read_timeout {
            cmd.args(["--read-timeout", &t.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("starting the server process: {e}")));
        let mut p = Self {
            pid: child.id(),
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("piped stdout")),
            child,
        };
        let line = p
            .line()
            .unwrap_or_else(|| fail("the server process said nothing"));
        let addr = line
            .strip_prefix("LISTENING ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| fail(&format!("server said {line:?}")));
        (p, addr)
    }

    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim().to_owned()),
            _ => None,
        }
    }

    /// Live heap: (bytes, blocks, bytes in big blocks, big blocks).
    fn heap(&mut self) -> Option<[u64; 4]> {
        writeln!(self.stdin.as_mut()?, "heap").ok()?;
        let line = self.line()?;
        let nums: Vec<u64> = line
            .strip_prefix("HEAP ")?
            .split(' ')
            .filter_map(|v| v.parse().ok())
            .collect();
        nums.try_into().ok()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exited().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }
}

/// One look at the server process.
#[derive(Debug, Clone, Default)]
struct Sample {
    streams: usize,
    rss_kib: u64,
    anon_kib: u64,
    pte_kib: u64,
    threads: u64,
    fds: u64,
    vmas: u64,
    /// `KernelStack` of `/proc/meminfo`: system-wide, not in any RSS.
    kstack_kib: u64,
    /// Live heap bytes, blocks, bytes in blocks ≥ 16 KiB, such blocks.
    heap: [u64; 4],
    /// (thread name, kernel wait channel) → threads (full samples only).
    by_name: BTreeMap<(String, String), u64>,
    /// Anonymous mapping size in KiB → (count, total Rss KiB) (full samples only).
    maps: BTreeMap<u64, (u64, u64)>,
}

fn status_value(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sample(server: &mut ServerProcess, streams: usize, full: bool) -> Option<Sample> {
    let pid = server.pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut s = Sample {
        streams,
        rss_kib: status_value(&status, "VmRSS:"),
        anon_kib: status_value(&status, "RssAnon:"),
        pte_kib: status_value(&status, "VmPTE:"),
        threads: status_value(&status, "Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
        vmas: std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_or(0, |m| m.lines().count() as u64),
        kstack_kib: std::fs::read_to_string("/proc/meminfo")
            .map_or(0, |m| status_value(&m, "KernelStack:")),
        heap: server.heap()?,
        ..Sample::default()
    };
    if !full {
        return Some(s);
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let read = |f: &str| {
                std::fs::read_to_string(t.path().join(f))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            let name = read("comm");
            // Worker threads are numbered; one row for all of them.
            let name = if name.starts_with("tidings-http-") {
                "tidings-http-*".to_owned()
            } else {
                name
            };
            *s.by_name.entry((name, read("wchan"))).or_default() += 1;
        }
    }
    // Anonymous mappings grouped by size: thread stacks stand out.
    if let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) {
        let mut size = 0;
        let mut anon = false;
        for line in smaps.lines() {
            let mut f = line.split_whitespace();
            let first = f.next().unwrap_or_default();
            if first.contains('-') && !first.ends_with(':') {
                // A mapping header: range perms offset dev inode [path].
                anon = f.nth(4).is_none();
            } else if first == "Size:" {
                size = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            } else if first == "Rss:" && anon {
                let rss: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                let e = s.maps.entry(size).or_default();
                e.0 += 1;
                e.1 += rss;
            }
        }
    }
    Some(s)
}

#[allow(clippy::cast_precision_loss)]
fn per(now: u64, then: u64, n: usize) -> f64 {
    (now as f64 - then as f64) / n.max(1) as f64
}

fn kib(k: f64) -> String {
    format!("{k:.1} KiB")
}

fn row_header() {
    println!(
        "| Streams | VmRSS | RssAnon | VmPTE | Live heap (in blocks ≥ 16 KiB) | Threads | fds | VMAs |"
    );
    println!(
        "|--------:|------:|--------:|------:|-------------------------------:|--------:|----:|-----:|"
    );
}

fn row(s: &Sample) {
    println!(
        "| {} | {} KiB | {} KiB | {} KiB | {} KiB ({} KiB in {} blocks) | {} | {} | {} |",
        s.streams,
        s.rss_kib,
        s.anon_kib,
        s.pte_kib,
        s.heap[0] / 1024,
        s.heap[2] / 1024,
        s.heap[3],
        s.threads,
        s.fds,
        s.vmas
    );
}

fn print_full(label: &str, s: &Sample, base: &Sample) {
    let k = s.streams;
    println!("### {label}");
    println!();
    println!(
        "Per stream (vs baseline): VmRSS {}, RssAnon {}, VmPTE {}, live heap {} \
         ({} in blocks ≥ 16 KiB), {:.2} heap blocks, {:.2} threads, {:.2} fds, {:.2} VMAs",
        kib(per(s.rss_kib, base.rss_kib, k)),
        kib(per(s.anon_kib, base.anon_kib, k)),
        kib(per(s.pte_kib, base.pte_kib, k)),
        kib(per(s.heap[0], base.heap[0], k) / 1024.0),
        kib(per(s.heap[2], base.heap[2], k) / 1024.0),
        per(s.heap[1], base.heap[1], k),
        per(s.threads, base.threads, k),
        per(s.fds, base.fds, k),
        per(s.vmas, base.vmas, k),
    );
    println!(
        "Kernel stacks (system-wide `KernelStack` in /proc/meminfo, not part of any RSS; \
         other processes on the machine move it too): {} per stream",
        kib(per(s.kstack_kib, base.kstack_kib, k))
    );
    println!();
    row_header();
    row(s);
    println!();
    println!("| Thread name | Kernel wait channel | Threads |");
    println!("|-------------|---------------------|--------:|");
    for ((name, wchan), n) in &s.by_name {
        println!("| {name} | {wchan} | {n} |");
    }
    println!();
    println!("Anonymous mappings, grouped by size (sizes with at least 100):");
    println!();
    println!("| Mapping size | Count | Rss total | Rss per mapping |");
    println!("|-------------:|------:|----------:|----------------:|");
    for (size, (count, rss)) in &s.maps {
        if *count >= 100 {
            println!(
                "| {size} KiB | {count} | {rss} KiB | {} |",
                kib(per(*rss, 0, usize::try_from(*count).expect("fits")))
            );
        }
    }
    println!();
}

/// Opens `count` more streams, `concurrency` at a time.
fn open_streams(
    ex: &smol::Executor<'static>,
    addr: SocketAddr,
    opts: OpenOptions,
    count: usize,
    concurrency: usize,
    out: &Arc<Mutex<Vec<EventStream>>>,
) -> Result<(), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let tasks: Vec<_> = (0..concurrency.min(count))
        .map(|_| {
            let (next, errors, out) = (next.clone(), errors.clone(), out.clone());
            ex.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    match open_stream(addr, opts).await {
                        Ok(s) => out.lock().expect("streams").push(s),
                        Err(e) => {
                            errors.lock().expect("errors").push(e.to_string());
                            return;
                        }
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
        smol::Timer::after(Duration::from_secs(60)).await;
        false
    })));
    let errors = errors.lock().expect("errors");
    if let Some(e) = errors.first() {
        return Err(format!(
            "{} stream(s) failed to open, first: {e}",
            errors.len()
        ));
    }
    if !done {
        return Err("opening the streams took over 60 s".into());
    }
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

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .map_or_else(|_| "?".into(), |v| v.trim().to_owned())
}

/// Explains a failure to open streams, including the server's fate.
fn diagnose(server: &mut ServerProcess, why: &str, last: &Sample) -> ! {
    thread::sleep(Duration::from_millis(500));
    let fate = match server.exited() {
        Some(status) => format!("the server process died ({status})"),
        None => "the server process is still alive".into(),
    };
    fail(&format!(
        "{why}; {fate}. Last sample: {} streams, {} threads, {} VMAs (vm.max_map_count = {}), {} fds",
        last.streams,
        last.threads,
        last.vmas,
        sysctl("vm/max_map_count"),
        last.fds
    ));
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

    let (mut server, addr) = ServerProcess::start(args.read_timeout);
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
    row_header();
    row(&base);
    let started = Instant::now();
    let mut first_step: Option<Sample> = None;
    let mut last = base.clone();
    let mut open = 0;
    while open < k {
        let n = args.step.min(k - open);
        if let Err(e) = open_streams(&ex, addr, opts, n, args.concurrency, &streams) {
            diagnose(&mut server, &e, &last);
        }
        open += n;
        last = sample(&mut server, open, false)
            .unwrap_or_else(|| diagnose(&mut server, "sampling failed", &last));
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
    let marginal = if k > first_step.streams {
        Some(per(
            last.rss_kib,
            first_step.rss_kib,
            k - first_step.streams,
        ))
    } else {
        None
    };
    if let Some(m) = marginal {
        println!(
            "Marginal VmRSS per stream, {} → {k} streams: {}",
            first_step.streams,
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
