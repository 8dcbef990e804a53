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
//! The server holds three file descriptors per socket (tiny_http's read and
//! write halves, kept by the upgraded stream it returns, and the raw clone
//! the socket's task reads and writes), so the number of sockets is lowered
//! to fit the hard `RLIMIT_NOFILE` (the soft limit is raised to it), with a
//! note.
// The counting allocator implements the `unsafe` `GlobalAlloc` trait.
#![allow(unsafe_code)]
// Figures are converted to f64 for printing only.
#![allow(clippy::cast_precision_loss)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tidings_benches::sse::{Server, raise_nofile_limit};
use tidings_benches::ws::{HEARTBEAT_EVERY, WsClient, connect_joined};

/// `System`, counting live bytes and blocks, and apart those of blocks of
/// at least [`BIG`] bytes, and keeping a histogram of live blocks by size.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BIG: AtomicUsize = AtomicUsize::new(0);
static BLOCKS_BIG: AtomicUsize = AtomicUsize::new(0);
/// Blocks this large are counted apart.
const BIG: usize = 16 * 1024;
/// Histogram buckets: sizes up to [`EXACT`] bytes in steps of 16 bytes,
/// then one bucket per power of two.
const EXACT: usize = 64 * 1024;
const BUCKETS: usize = EXACT / 16 + 1 + 64;
static HIST: [AtomicUsize; BUCKETS] = [const { AtomicUsize::new(0) }; BUCKETS];

fn bucket(size: usize) -> usize {
    if size <= EXACT {
        size.div_ceil(16)
    } else {
        EXACT / 16 + 1 + size.ilog2() as usize
    }
}

/// The largest size a bucket holds.
fn bucket_size(b: usize) -> usize {
    if b <= EXACT / 16 {
        b * 16
    } else {
        1 << (b - EXACT / 16 - 1)
    }
}

fn count_in(size: usize) {
    LIVE.fetch_add(size, Ordering::Relaxed);
    BLOCKS.fetch_add(1, Ordering::Relaxed);
    HIST[bucket(size)].fetch_add(1, Ordering::Relaxed);
    if size >= BIG {
        LIVE_BIG.fetch_add(size, Ordering::Relaxed);
        BLOCKS_BIG.fetch_add(1, Ordering::Relaxed);
    }
}

fn count_out(size: usize) {
    LIVE.fetch_sub(size, Ordering::Relaxed);
    BLOCKS.fetch_sub(1, Ordering::Relaxed);
    HIST[bucket(size)].fetch_sub(1, Ordering::Relaxed);
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
    let mut out = std::io::stdout();
    writeln!(out, "LISTENING {}", server.addr()).expect("stdout");
    out.flush().expect("stdout");
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("heap") => {
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
            Ok("hist") => {
                let mut l = String::from("HIST");
                for (b, n) in HIST.iter().enumerate() {
                    let n = n.load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = write!(l, " {b}:{n}");
                    }
                }
                let _ = writeln!(out, "{l}");
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
    fn start() -> (Self, SocketAddr) {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg("--server")
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

    /// Live heap blocks by histogram bucket.
    fn hist(&mut self) -> Option<BTreeMap<usize, i64>> {
        writeln!(self.stdin.as_mut()?, "hist").ok()?;
        let line = self.line()?;
        line.strip_prefix("HIST")?
            .split_whitespace()
            .map(|kv| {
                let (k, v) = kv.split_once(':')?;
                Some((k.parse().ok()?, v.parse().ok()?))
            })
            .collect()
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
    sockets: usize,
    rss_kib: u64,
    anon_kib: u64,
    pte_kib: u64,
    threads: u64,
    fds: u64,
    vmas: u64,
    /// Live heap bytes, blocks, bytes in blocks ≥ 16 KiB, such blocks.
    heap: [u64; 4],
    /// (thread name, kernel wait channel) → threads (full samples only).
    by_name: BTreeMap<(String, String), u64>,
    /// Anonymous mapping size in KiB → (count, total Rss KiB) (full samples only).
    maps: BTreeMap<u64, (u64, u64)>,
    /// Open fds by kind (`socket`, `anon_inode:[eventpoll]`, …) (full samples only).
    fd_kinds: BTreeMap<String, u64>,
    /// Live heap blocks by size bucket (full samples only).
    hist: BTreeMap<usize, i64>,
}

fn status_value(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sample(server: &mut ServerProcess, sockets: usize, full: bool) -> Option<Sample> {
    let pid = server.pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut s = Sample {
        sockets,
        rss_kib: status_value(&status, "VmRSS:"),
        anon_kib: status_value(&status, "RssAnon:"),
        pte_kib: status_value(&status, "VmPTE:"),
        threads: status_value(&status, "Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
        vmas: std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_or(0, |m| m.lines().count() as u64),
        heap: server.heap()?,
        ..Sample::default()
    };
    if !full {
        return Some(s);
    }
    s.hist = server.hist()?;
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
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            // `socket:[inode]` → `socket`; `/dev/null`, pipes, … as they are.
            let kind = match target.split_once(":[") {
                Some((k, _)) if k == "socket" || k == "pipe" => k.to_owned(),
                _ => target,
            };
            *s.fd_kinds.entry(kind).or_default() += 1;
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

fn per(now: u64, then: u64, n: usize) -> f64 {
    (now as f64 - then as f64) / n.max(1) as f64
}

fn kib(k: f64) -> String {
    format!("{k:.1} KiB")
}

fn row_header() {
    println!(
        "| Sockets | VmRSS | RssAnon | VmPTE | Live heap (in blocks ≥ 16 KiB) | Threads | fds | VMAs |"
    );
    println!(
        "|--------:|------:|--------:|------:|-------------------------------:|--------:|----:|-----:|"
    );
}

fn row(s: &Sample) {
    println!(
        "| {} | {} KiB | {} KiB | {} KiB | {} KiB ({} KiB in {} blocks) | {} | {} | {} |",
        s.sockets,
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

#[allow(clippy::cast_possible_wrap)]
fn print_full(label: &str, s: &Sample, base: &Sample) {
    let k = s.sockets;
    println!("### {label}");
    println!();
    println!(
        "Per socket (vs baseline): VmRSS {}, RssAnon {}, VmPTE {}, live heap {} \
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
    println!("| fd kind | Count | Per socket |");
    println!("|---------|------:|-----------:|");
    for (kind, n) in &s.fd_kinds {
        let then = base.fd_kinds.get(kind).copied().unwrap_or(0);
        println!("| {kind} | {n} | {:.2} |", per(*n, then, k));
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
    // Where the heap goes: live blocks per socket by size, vs baseline.
    let mut rows: Vec<(usize, f64)> = s
        .hist
        .iter()
        .map(|(&b, &n)| {
            let then = base.hist.get(&b).copied().unwrap_or(0);
            (b, (n - then) as f64 / k.max(1) as f64)
        })
        .filter(|&(_, d)| d.abs() >= 0.05)
        .collect();
    rows.sort_by(|a, b| {
        let bytes = |r: &(usize, f64)| r.1 * bucket_size(r.0) as f64;
        bytes(b).total_cmp(&bytes(a))
    });
    let total: f64 = rows.iter().map(|r| r.1 * bucket_size(r.0) as f64).sum();
    println!(
        "Live heap blocks per socket, by size (buckets of 16 B up to 64 KiB; deltas of at least \
         0.05 per socket; ≈ {total:.0} B per socket in these):"
    );
    println!();
    println!("| Block size | Blocks per socket | Bytes per socket |");
    println!("|-----------:|------------------:|-----------------:|");
    for (b, d) in rows {
        let size = bucket_size(b);
        let lo = if b <= EXACT / 16 {
            size.saturating_sub(15)
        } else {
            size
        };
        let range = if lo == size {
            format!("{size} B")
        } else {
            format!("{lo}–{size} B")
        };
        println!("| {range} | {d:.2} | {:.0} |", d * size as f64);
    }
    println!();
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
    out: &Arc<Mutex<Vec<Option<WsClient>>>>,
) -> Result<(), String> {
    let first = out.lock().expect("clients").len();
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let opened = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let tasks: Vec<_> = (0..concurrency.min(count))
        .map(|_| {
            let (next, errors, opened) = (next.clone(), errors.clone(), opened.clone());
            ex.spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count {
                        return;
                    }
                    let i = first + k;
                    match connect_joined(addr, &format!("realtime:room{}", i % 100)).await {
                        Ok(c) => opened.lock().expect("opened").push((i, c)),
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
            "{} socket(s) failed to open, first: {e}",
            errors.len()
        ));
    }
    if !done {
        return Err("opening the sockets took over 60 s".into());
    }
    let mut opened = std::mem::take(&mut *opened.lock().expect("opened"));
    opened.sort_by_key(|(i, _)| *i);
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

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .map_or_else(|_| "?".into(), |v| v.trim().to_owned())
}

/// Explains a failure, including the server's fate.
fn diagnose(server: &mut ServerProcess, why: &str, last: &Sample) -> ! {
    thread::sleep(Duration::from_millis(500));
    let fate = match server.exited() {
        Some(status) => format!("the server process died ({status})"),
        None => "the server process is still alive".into(),
    };
    fail(&format!(
        "{why}; {fate}. Last sample: {} sockets, {} threads, {} VMAs, {} fds",
        last.sockets, last.threads, last.vmas, last.fds
    ));
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
    // The server holds 3 fds per socket, plus its own and sockets in flight.
    let fds_per_socket = 3;
    let fit =
        usize::try_from(soft.saturating_sub(64 + 3 * args.concurrency as u64) / fds_per_socket)
            .expect("fits");
    let wanted = args.sockets;
    args.sockets = args.sockets.min(fit);
    let k = args.sockets;

    let (mut server, addr) = ServerProcess::start();
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
    row_header();
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
            diagnose(&mut server, &e, &last);
        }
        open += n;
        last = sample(&mut server, open, false)
            .unwrap_or_else(|| diagnose(&mut server, "sampling failed", &last));
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
    if k > first_step.sockets {
        println!(
            "Marginal VmRSS per socket, {} → {k} sockets: {}",
            first_step.sockets,
            kib(per(
                last.rss_kib,
                first_step.rss_kib,
                k - first_step.sockets
            ))
        );
    }
    println!();

    thread::sleep(Duration::from_secs(args.idle));
    let idle = sample(&mut server, k, true).unwrap_or_else(|| fail("the server died"));
    print_full(
        &format!("{k} sockets open, idle {} s", args.idle),
        &idle,
        &base,
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
