//! Measuring a server that runs in a child process, so the client sockets
//! do not count: a counting global allocator the child installs, the
//! child's side of the `heap`/`hist` stdin protocol, the parent's handle on
//! it, and samples of `/proc/<pid>` (RSS, threads, fds, mappings, live heap)
//! printed as Markdown. Shared by `sse_idle_rss` and `ws_idle_rss`; `noun`
//! arguments name what is counted ("stream", "socket").
//!
//! A child installs the allocator with
//! `#[global_allocator] static GLOBAL: Counting = Counting;`.
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
use std::thread;
use std::time::{Duration, Instant};

/// `System`, counting live bytes and blocks, and apart those of blocks of
/// at least [`BIG`] bytes, and keeping a histogram of live blocks by size.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BIG: AtomicUsize = AtomicUsize::new(0);
static BLOCKS_BIG: AtomicUsize = AtomicUsize::new(0);
/// Blocks this large are counted apart.
pub const BIG: usize = 16 * 1024;
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

/// Prints why and exits with status 1.
pub fn fail(why: &str) -> ! {
    eprintln!("FAILED: {why}");
    std::process::exit(1);
}

/// The child's side: announces `addr`, answers `heap` and `hist` lines on
/// stdin until it closes, then exits (the caller keeps its server alive
/// meanwhile). Needs [`Counting`] as the global allocator.
pub fn serve_child(addr: SocketAddr) -> ! {
    let mut out = std::io::stdout();
    writeln!(out, "LISTENING {addr}").expect("stdout");
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
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The child's process id.
    pub pid: u32,
}

impl ServerProcess {
    /// Re-executes this program with `--server` and `args`; returns once it
    /// announced its address.
    pub fn start(args: &[String]) -> (Self, SocketAddr) {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg("--server")
            .args(args)
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
    pub fn heap(&mut self) -> Option<[u64; 4]> {
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
    pub fn hist(&mut self) -> Option<BTreeMap<usize, i64>> {
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

    /// The exit status, if the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Closes its stdin and waits (10 s, then kills it).
    pub fn stop(mut self) {
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
pub struct Sample {
    /// What is open (streams, sockets) when sampled.
    pub n: usize,
    /// `VmRSS`.
    pub rss_kib: u64,
    /// `KernelStack` of `/proc/meminfo`: system-wide, not in any RSS.
    pub kstack_kib: u64,
    /// `RssAnon`.
    pub anon_kib: u64,
    /// `VmPTE` (page tables).
    pub pte_kib: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Memory mappings.
    pub vmas: u64,
    /// Live heap bytes, blocks, bytes in blocks ≥ 16 KiB, such blocks.
    pub heap: [u64; 4],
    /// (thread name, kernel wait channel) → threads (full samples only).
    pub by_name: BTreeMap<(String, String), u64>,
    /// Anonymous mapping size in KiB → (count, total Rss KiB) (full samples only).
    pub maps: BTreeMap<u64, (u64, u64)>,
    /// Open fds by kind (`socket`, `anon_inode:[eventpoll]`, …) (full samples only).
    pub fd_kinds: BTreeMap<String, u64>,
    /// Live heap blocks by size bucket (full samples only).
    pub hist: BTreeMap<usize, i64>,
}

fn status_value(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Samples the child with `n` open; `full` adds threads by name, fd
/// kinds, anonymous mappings and the heap histogram.
pub fn sample(server: &mut ServerProcess, n: usize, full: bool) -> Option<Sample> {
    let pid = server.pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut s = Sample {
        n,
        rss_kib: status_value(&status, "VmRSS:"),
        kstack_kib: std::fs::read_to_string("/proc/meminfo")
            .map_or(0, |m| status_value(&m, "KernelStack:")),
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

/// `(now - then) / n`.
pub fn per(now: u64, then: u64, n: usize) -> f64 {
    (now as f64 - then as f64) / n.max(1) as f64
}

/// `1.2 KiB`.
pub fn kib(k: f64) -> String {
    format!("{k:.1} KiB")
}

/// The header of [`row`]'s table; `noun` names what is counted.
pub fn row_header(noun: &str) {
    let mut title = noun.to_owned();
    title[..1].make_ascii_uppercase();
    println!(
        "| {title}s | VmRSS | RssAnon | VmPTE | Live heap (in blocks ≥ 16 KiB) | Threads | fds | VMAs |"
    );
    println!(
        "|--------:|------:|--------:|------:|-------------------------------:|--------:|----:|-----:|"
    );
}

/// One sample as a table row.
pub fn row(s: &Sample) {
    println!(
        "| {} | {} KiB | {} KiB | {} KiB | {} KiB ({} KiB in {} blocks) | {} | {} | {} |",
        s.n,
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
/// A full sample against the baseline, per `noun`.
pub fn print_full(label: &str, s: &Sample, base: &Sample, noun: &str) {
    let k = s.n;
    println!("### {label}");
    println!();
    println!(
        "Per {noun} (vs baseline): VmRSS {}, RssAnon {}, VmPTE {}, live heap {} \
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
         other processes on the machine move it too): {} per {noun}",
        kib(per(s.kstack_kib, base.kstack_kib, k))
    );
    println!();
    row_header(noun);
    row(s);
    println!();
    println!("| Thread name | Kernel wait channel | Threads |");
    println!("|-------------|---------------------|--------:|");
    for ((name, wchan), n) in &s.by_name {
        println!("| {name} | {wchan} | {n} |");
    }
    println!();
    println!("| fd kind | Count | Per {noun} |");
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
    // Where the heap goes: live blocks per unit by size, vs baseline.
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
        "Live heap blocks per {noun}, by size (buckets of 16 B up to 64 KiB; deltas of at least \
         0.05 per {noun}; ≈ {total:.0} B per {noun} in these):"
    );
    println!();
    println!("| Block size | Blocks per {noun} | Bytes per {noun} |");
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

/// A kernel setting from `/proc/sys`, or `?`.
pub fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .map_or_else(|_| "?".into(), |v| v.trim().to_owned())
}

/// Explains a failure, including the server's fate, and exits.
pub fn diagnose(server: &mut ServerProcess, why: &str, last: &Sample, noun: &str) -> ! {
    thread::sleep(Duration::from_millis(500));
    let fate = match server.exited() {
        Some(status) => format!("the server process died ({status})"),
        None => "the server process is still alive".into(),
    };
    fail(&format!(
        "{why}; {fate}. Last sample: {} {noun}s, {} threads, {} VMAs (vm.max_map_count = {}), {} fds",
        last.n,
        last.threads,
        last.vmas,
        sysctl("vm/max_map_count"),
        last.fds
    ));
}
