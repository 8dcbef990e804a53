//! What the SSE and WebSocket fan-out examples share: who got which
//! broadcast when ([`Deliveries`]), the spaced rounds and the burst
//! ([`run_phases`]), and the latency figures ([`Figures`]). The examples
//! keep their own connection code and transport-specific counters.
// Figures are converted to f64 for printing only.
#![allow(clippy::cast_precision_loss)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::child::fail;
use crate::load::cpu_by_group;
use crate::sse::{ms, percentile};

/// Arrivals of numbered broadcasts at numbered clients, and their errors.
pub struct Deliveries {
    base: Instant,
    clients: usize,
    broadcasts: usize,
    /// What a client is called in messages ("subscriber", "client").
    noun: &'static str,
    /// ns from the connect start until client `i` was ready.
    ready_at: Vec<AtomicU64>,
    ready: AtomicUsize,
    /// `[t * clients + i]`: ns since `base` + 1 when client `i` parsed `t`; 0 = not yet.
    arrivals: Vec<AtomicU64>,
    /// Clients that parsed broadcast `t`.
    counts: Vec<AtomicUsize>,
    failures: Mutex<Vec<String>>,
}

impl Deliveries {
    /// Room for `broadcasts` broadcasts to `clients` clients.
    pub fn new(clients: usize, broadcasts: usize, noun: &'static str) -> Self {
        Self {
            base: Instant::now(),
            clients,
            broadcasts,
            noun,
            ready_at: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicUsize::new(0),
            arrivals: (0..broadcasts * clients)
                .map(|_| AtomicU64::new(0))
                .collect(),
            counts: (0..broadcasts).map(|_| AtomicUsize::new(0)).collect(),
            failures: Mutex::new(Vec::new()),
        }
    }

    /// ns since this was made.
    pub fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Records an error; [`Deliveries::wait`] fails on it.
    pub fn failed(&self, what: String) {
        self.failures.lock().expect("failures").push(what);
    }

    fn first_failures(&self) -> Option<String> {
        let f = self.failures.lock().expect("failures");
        (!f.is_empty()).then(|| {
            let shown: Vec<&str> = f.iter().take(5).map(String::as_str).collect();
            format!(
                "{} {} error(s), first: {}",
                f.len(),
                self.noun,
                shown.join(" | ")
            )
        })
    }

    /// Client `i` is ready (streaming, joined), `start` being the connect start.
    pub fn mark_ready(&self, i: usize, start: Instant) {
        self.ready_at[i].store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.ready.fetch_add(1, Ordering::Release);
    }

    /// Clients ready so far.
    pub fn ready(&self) -> usize {
        self.ready.load(Ordering::Acquire)
    }

    /// Client `i` parsed broadcast `t` (`None`: the frame named no valid
    /// `t`); a second copy, an unknown `t` or `what_else` is an error.
    pub fn arrive(&self, i: usize, t: Option<usize>, what_else: impl FnOnce() -> String) {
        match t {
            Some(t) if t < self.broadcasts => {
                let at = self.now() + 1;
                let prev = self.arrivals[t * self.clients + i].swap(at, Ordering::Relaxed);
                if prev == 0 {
                    self.counts[t].fetch_add(1, Ordering::Release);
                } else {
                    self.failed(format!("{} {i} got broadcast {t} twice", self.noun));
                }
            }
            _ => self.failed(format!(
                "{} {i}: unexpected broadcast {}",
                self.noun,
                what_else()
            )),
        }
    }

    /// Clients that parsed broadcast `t`.
    pub fn count(&self, t: usize) -> usize {
        self.counts[t].load(Ordering::Acquire)
    }

    /// Waits until `done()` or the deadline; exits on a client error.
    pub fn wait(&self, what: &str, deadline: Duration, done: impl Fn() -> bool) {
        let until = Instant::now() + deadline;
        loop {
            if let Some(f) = self.first_failures() {
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

    /// The connect times, sorted.
    pub fn connect_times(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .ready_at
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        v.sort_unstable();
        v
    }

    fn arrival(&self, t: usize, i: usize) -> u64 {
        self.arrivals[t * self.clients + i].load(Ordering::Relaxed) - 1
    }
}

/// How the rounds and the burst run.
pub struct PhasePlan {
    /// Spaced broadcasts.
    pub rounds: usize,
    /// Their spacing.
    pub interval: Duration,
    /// Broadcasts back to back after the rounds.
    pub burst: usize,
    /// How long one round may take.
    pub round_limit: Duration,
    /// How long the burst may take.
    pub burst_limit: Duration,
}

/// When the phases ran, and CPU snapshots around them.
pub struct Phases {
    /// Each round's start (ns on the [`Deliveries`] clock).
    pub round_start: Vec<u64>,
    /// Wall time of the rounds.
    pub rounds_wall: Duration,
    /// The burst's start (ns).
    pub burst_start: u64,
    /// How long queueing the burst took (ns).
    pub burst_sent: u64,
    /// Wall time of the burst.
    pub burst_wall: Duration,
    /// CPU by thread group before the rounds, after them, after the burst.
    pub cpu: [BTreeMap<&'static str, u64>; 3],
    /// The caller's counter at the same three points.
    pub counter: [u64; 3],
}

/// Runs `plan.rounds` spaced rounds (each waits for every client), then
/// `plan.burst` broadcasts back to back; `broadcast(t)` sends number `t`.
/// CPU by `group` and `counter()` are read before, between and after.
pub fn run_phases(
    d: &Deliveries,
    plan: &PhasePlan,
    group: impl Fn(&str) -> &'static str + Copy,
    counter: impl Fn() -> u64,
    broadcast: impl Fn(usize) -> Result<(), String>,
) -> Phases {
    let n = d.clients;
    let cpu_before = cpu_by_group(group);
    let counter_before = counter();
    let rounds_wall = Instant::now();
    let mut round_start = Vec::with_capacity(plan.rounds);
    for r in 0..plan.rounds {
        let t0 = d.now();
        round_start.push(t0);
        broadcast(r).unwrap_or_else(|e| fail(&format!("broadcast {r}: {e}")));
        d.wait(&format!("round {r}"), plan.round_limit, || d.count(r) == n);
        let next = Duration::from_nanos(t0) + plan.interval;
        if let Some(left) = next.checked_sub(d.base.elapsed()) {
            thread::sleep(left);
        }
    }
    let rounds_wall = rounds_wall.elapsed();
    let cpu_rounds = cpu_by_group(group);
    let counter_rounds = counter();
    let burst_wall = Instant::now();
    let burst_start = d.now();
    for k in 0..plan.burst {
        let t = plan.rounds + k;
        broadcast(t).unwrap_or_else(|e| fail(&format!("burst broadcast {k}: {e}")));
    }
    let burst_sent = d.now() - burst_start;
    let all = plan.rounds + plan.burst;
    d.wait("burst", plan.burst_limit, || {
        (plan.rounds..all).all(|t| d.count(t) == n)
    });
    Phases {
        round_start,
        rounds_wall,
        burst_start,
        burst_sent,
        burst_wall: burst_wall.elapsed(),
        cpu: [cpu_before, cpu_rounds, cpu_by_group(group)],
        counter: [counter_before, counter_rounds, counter()],
    }
}

/// Latencies of the rounds and the burst's throughput.
pub struct Figures {
    /// Per round: time to the last client, sorted.
    pub to_last: Vec<u64>,
    /// Per round: time to the first client, sorted.
    pub to_first: Vec<u64>,
    /// Every delivery's latency in the rounds, sorted.
    pub deliveries: Vec<u64>,
    /// From the burst's start to its last delivery (ns).
    pub burst_ns: u64,
    /// Deliveries in the burst.
    pub burst_deliveries: usize,
}

impl Figures {
    /// The figures of a finished run.
    pub fn of(d: &Deliveries, p: &Phases, burst: usize) -> Self {
        let n = d.clients;
        let rounds = p.round_start.len();
        let mut to_last = Vec::with_capacity(rounds);
        let mut to_first = Vec::with_capacity(rounds);
        let mut deliveries = Vec::with_capacity(rounds * n);
        for (r, &t0) in p.round_start.iter().enumerate() {
            let lat: Vec<u64> = (0..n).map(|i| d.arrival(r, i) - t0).collect();
            to_last.push(*lat.iter().max().expect("n > 0"));
            to_first.push(*lat.iter().min().expect("n > 0"));
            deliveries.extend(lat);
        }
        to_last.sort_unstable();
        to_first.sort_unstable();
        deliveries.sort_unstable();
        let burst_end = (rounds..rounds + burst)
            .flat_map(|t| (0..n).map(move |i| (t, i)))
            .map(|(t, i)| d.arrival(t, i))
            .max()
            .unwrap_or(p.burst_start);
        Self {
            to_last,
            to_first,
            deliveries,
            burst_ns: burst_end - p.burst_start,
            burst_deliveries: burst * n,
        }
    }

    /// Burst deliveries per second.
    pub fn burst_rate(&self) -> f64 {
        self.burst_deliveries as f64 / (self.burst_ns as f64 / 1e9)
    }

    /// The rounds table: time to the last and first of `n` `noun`s, and
    /// per delivery, at p50, p99 and max.
    pub fn print_rounds(&self, n: usize, noun: &str) {
        println!("| Measure | p50 | p99 | max |");
        println!("|---------|----:|----:|----:|");
        for (name, xs) in [
            (format!("time to the last of {n} {noun}s"), &self.to_last),
            (format!("time to the first of {n} {noun}s"), &self.to_first),
            (
                format!("per delivery ({} deliveries)", self.deliveries.len()),
                &self.deliveries,
            ),
        ] {
            println!(
                "| {name} | {} | {} | {} |",
                ms(percentile(xs, 50)),
                ms(percentile(xs, 99)),
                ms(*xs.last().expect("non-empty"))
            );
        }
        println!();
        println!(
            "Deliveries/s within a round ({n} / p50 time to last): {:.0}",
            n as f64 / (percentile(&self.to_last, 50) as f64 / 1e9)
        );
    }
}
