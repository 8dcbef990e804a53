//! What the SSE and WebSocket fan-out examples share: who got which
//! broadcast when ([`Deliveries`]), the phases ([`run_phases`]: spaced
//! rounds, a fixed-rate phase, a burst), the fixed-rate flags
//! ([`RateFlags`]) and the figures ([`Figures`]). The examples keep their
//! own connection code and transport-specific counters.
//!
//! Broadcasts are numbered in the order the phases run: the rounds
//! `0..rounds`, then the fixed-rate phase's, then the burst's;
//! [`PhasePlan::broadcasts`] is how many [`Deliveries`] must hold.
//!
//! The **fixed-rate phase** offers [`PhasePlan::rate`] deliveries/s:
//! one broadcast every `clients / rate` s (1 000 clients at 100 000/s:
//! every 10 ms; 10 000 clients: every 100 ms) for [`PhasePlan::rate_for`].
//! Each send is due at an absolute deadline (phase start + k × period), so
//! pacing does not drift; a sender that falls behind sends the late ones at
//! once and the figures say how late it was ([`RateFigures`]). No send
//! waits for the previous broadcast to be delivered; after the last one
//! the phase waits (within [`PhasePlan::rate_limit`]) until every client
//! has parsed every broadcast of the phase. A delivery's latency is from
//! its broadcast's send stamp (taken just before `broadcast(t)`, as in the
//! rounds) to the client's parse stamp; it is also given from the send's
//! due time, which counts the sender's own lateness.
// Figures are converted to f64 for printing only.
#![allow(clippy::cast_precision_loss)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::child::fail;
use crate::load::{cpu_by_group, print_cpu};
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
    /// Room for `broadcasts` broadcasts (see [`PhasePlan::broadcasts`]) to
    /// `clients` clients.
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

    /// Waits until every client parsed every broadcast in `ts` (see
    /// [`Deliveries::wait`]).
    fn wait_all(&self, what: &str, deadline: Duration, ts: std::ops::Range<usize>) {
        // The broadcasts complete roughly in order: skip the finished ones.
        let next = Cell::new(ts.start);
        self.wait(what, deadline, || {
            while next.get() < ts.end && self.count(next.get()) == self.clients {
                next.set(next.get() + 1);
            }
            next.get() == ts.end
        });
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

    /// Each client's latency for broadcast `t` sent at `t0` (ns).
    fn latencies(&self, t: usize, t0: u64) -> impl Iterator<Item = u64> + '_ {
        (0..self.clients).map(move |i| self.arrival(t, i) - t0)
    }

    /// The last arrival of any broadcast in `ts`, if any.
    fn last_arrival(&self, ts: std::ops::Range<usize>) -> Option<u64> {
        ts.flat_map(|t| (0..self.clients).map(move |i| self.arrival(t, i)))
            .max()
    }
}

/// The fixed-rate phase's flags, shared by the examples: `--rate`
/// (deliveries/s offered, 100 000; 0 skips the phase) and `--rate-secs`
/// (how long it sends, 3).
pub struct RateFlags {
    /// `--rate`.
    pub rate: u64,
    /// `--rate-secs`.
    pub secs: f64,
}

impl Default for RateFlags {
    fn default() -> Self {
        Self {
            rate: 100_000,
            secs: 3.0,
        }
    }
}

impl RateFlags {
    /// The flags' names.
    pub const NAMES: [&'static str; 2] = ["--rate", "--rate-secs"];

    /// Sets `flag` (one of [`RateFlags::NAMES`]) from `value`; exits on a
    /// missing or bad value.
    pub fn set(&mut self, flag: &str, value: Option<String>) {
        let bad = || -> ! { fail(&format!("{flag} needs a number")) };
        let value = value.unwrap_or_else(|| bad());
        match flag {
            "--rate" => self.rate = value.parse().unwrap_or_else(|_| bad()),
            "--rate-secs" => {
                self.secs = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .unwrap_or_else(|| bad());
            }
            _ => fail(&format!("not a rate flag: {flag}")),
        }
    }

    /// How long the phase sends.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }

    /// "100000 deliveries/s for 3 s" or "off", for the examples' banner.
    pub fn describe(&self) -> String {
        if self.rate == 0 {
            "fixed rate off".into()
        } else {
            format!("fixed rate {} deliveries/s for {} s", self.rate, self.secs)
        }
    }
}

/// How the phases run.
pub struct PhasePlan {
    /// Spaced broadcasts.
    pub rounds: usize,
    /// Their spacing.
    pub interval: Duration,
    /// Deliveries per second offered in the fixed-rate phase; 0 skips it.
    pub rate: u64,
    /// How long the fixed-rate phase sends.
    pub rate_for: Duration,
    /// How long the fixed-rate phase may take after its last send.
    pub rate_limit: Duration,
    /// Broadcasts back to back after the fixed-rate phase.
    pub burst: usize,
    /// How long one round may take.
    pub round_limit: Duration,
    /// How long the burst may take.
    pub burst_limit: Duration,
}

impl PhasePlan {
    /// Broadcasts in the fixed-rate phase to `clients` clients:
    /// `rate_for × rate / clients`, at least 1 unless the phase is off.
    pub fn rate_broadcasts(&self, clients: usize) -> usize {
        if self.rate == 0 {
            return 0;
        }
        let n = self.rate_for.as_secs_f64() * self.rate as f64 / clients as f64;
        // Truncation is meant: whole broadcasts within `rate_for`.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (n.floor() as usize).max(1)
    }

    /// When the fixed-rate phase's send `k` is due, in ns after its start:
    /// `k × clients / rate` s, exact (no accumulated rounding).
    fn rate_due(&self, clients: usize, k: usize) -> u64 {
        let ns = k as u128 * clients as u128 * 1_000_000_000 / u128::from(self.rate);
        u64::try_from(ns).expect("fits u64")
    }

    /// All broadcasts of the run to `clients` clients, for [`Deliveries::new`].
    pub fn broadcasts(&self, clients: usize) -> usize {
        self.rounds + self.rate_broadcasts(clients) + self.burst
    }
}

/// When the phases ran, and CPU snapshots around them.
pub struct Phases {
    /// Clients.
    pub clients: usize,
    /// Each round's start (ns on the [`Deliveries`] clock).
    pub round_start: Vec<u64>,
    /// Wall time of the rounds.
    pub rounds_wall: Duration,
    /// Offered deliveries/s of the fixed-rate phase (0: it did not run).
    pub rate: u64,
    /// When each fixed-rate send was due (ns).
    pub rate_due: Vec<u64>,
    /// When each fixed-rate send was made (ns, just before `broadcast`).
    pub rate_sent: Vec<u64>,
    /// The spacing of the fixed-rate sends (ns).
    pub rate_period: u64,
    /// Wall time of the fixed-rate phase, to its last delivery.
    pub rate_wall: Duration,
    /// Broadcasts in the burst.
    pub burst: usize,
    /// The burst's start (ns).
    pub burst_start: u64,
    /// How long queueing the burst took (ns).
    pub burst_sent: u64,
    /// Wall time of the burst.
    pub burst_wall: Duration,
    /// CPU by thread group before the rounds, after them, after the
    /// fixed-rate phase, after the burst.
    pub cpu: [BTreeMap<&'static str, u64>; 4],
    /// The caller's counter at the same four points.
    pub counter: [u64; 4],
}

impl Phases {
    /// Broadcasts of the fixed-rate phase.
    pub fn rate_broadcasts(&self) -> usize {
        self.rate_sent.len()
    }

    /// The CPU tables of the rounds, the fixed-rate phase (if it ran) and
    /// the burst.
    pub fn print_cpu(&self) {
        let n = self.clients;
        print_cpu(
            "the rounds",
            &self.cpu[0],
            &self.cpu[1],
            self.rounds_wall,
            self.round_start.len() * n,
        );
        if self.rate > 0 {
            print_cpu(
                &format!("the fixed rate ({} deliveries/s offered)", self.rate),
                &self.cpu[1],
                &self.cpu[2],
                self.rate_wall,
                self.rate_broadcasts() * n,
            );
        }
        print_cpu(
            "the burst",
            &self.cpu[2],
            &self.cpu[3],
            self.burst_wall,
            self.burst * n,
        );
    }
}

/// Runs `plan.rounds` spaced rounds (each waits for every client), then
/// the fixed-rate phase (see the module docs), then `plan.burst`
/// broadcasts back to back; `broadcast(t)` sends number `t`. CPU by
/// `group` and `counter()` are read before, between and after.
pub fn run_phases(
    d: &Deliveries,
    plan: &PhasePlan,
    group: impl Fn(&str) -> &'static str + Copy,
    counter: impl Fn() -> u64,
    broadcast: impl Fn(usize) -> Result<(), String>,
) -> Phases {
    let n = d.clients;
    assert!(
        d.broadcasts >= plan.broadcasts(n),
        "Deliveries holds {} broadcasts; the plan sends {}",
        d.broadcasts,
        plan.broadcasts(n)
    );
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

    // The fixed rate: sends due at absolute deadlines, none waiting for
    // the previous one's deliveries.
    let first = plan.rounds;
    let count = plan.rate_broadcasts(n);
    let rate_wall = Instant::now();
    let mut rate_due = Vec::with_capacity(count);
    let mut rate_sent = Vec::with_capacity(count);
    let start = d.now();
    for k in 0..count {
        let due = start + plan.rate_due(n, k);
        let now = d.now();
        if now < due {
            thread::sleep(Duration::from_nanos(due - now));
        }
        if let Some(f) = d.first_failures() {
            fail(&format!("fixed rate, before send {k}: {f}"));
        }
        let t0 = d.now();
        broadcast(first + k).unwrap_or_else(|e| fail(&format!("fixed-rate broadcast {k}: {e}")));
        rate_due.push(due);
        rate_sent.push(t0);
    }
    d.wait_all("fixed rate", plan.rate_limit, first..first + count);
    let rate_wall = rate_wall.elapsed();
    let cpu_rate = cpu_by_group(group);
    let counter_rate = counter();

    let burst_wall = Instant::now();
    let burst_start = d.now();
    let first = plan.rounds + count;
    for k in 0..plan.burst {
        broadcast(first + k).unwrap_or_else(|e| fail(&format!("burst broadcast {k}: {e}")));
    }
    let burst_sent = d.now() - burst_start;
    d.wait_all("burst", plan.burst_limit, first..first + plan.burst);
    Phases {
        clients: n,
        round_start,
        rounds_wall,
        rate: plan.rate,
        rate_due,
        rate_sent,
        rate_period: if plan.rate == 0 {
            0
        } else {
            plan.rate_due(n, 1)
        },
        rate_wall,
        burst: plan.burst,
        burst_start,
        burst_sent,
        burst_wall: burst_wall.elapsed(),
        cpu: [cpu_before, cpu_rounds, cpu_rate, cpu_by_group(group)],
        counter: [counter_before, counter_rounds, counter_rate, counter()],
    }
}

/// The value at per-mille rank `p` (nearest rank) of `sorted`: 500 is the
/// median, 999 is p99.9.
fn permille(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(1000);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The fixed-rate phase's figures.
pub struct RateFigures {
    /// Offered deliveries/s.
    pub offered: u64,
    /// The spacing of the sends (ns).
    pub period: u64,
    /// Broadcasts sent.
    pub broadcasts: usize,
    /// Every delivery's latency from its broadcast's send, sorted.
    pub deliveries: Vec<u64>,
    /// Every delivery's latency from its broadcast's due time, sorted.
    pub from_due: Vec<u64>,
    /// Per broadcast: time from its send to the last client, sorted.
    pub to_last: Vec<u64>,
    /// Per send: how late it was against its due time (ns), sorted.
    pub lateness: Vec<u64>,
    /// Sends made after the next one was due: the sender fell behind.
    pub behind: usize,
    /// From the first send to the last delivery (ns).
    pub span_ns: u64,
    /// From the first send to the last send (ns).
    pub sending_ns: u64,
}

impl RateFigures {
    fn of(d: &Deliveries, p: &Phases, first: usize) -> Option<Self> {
        let count = p.rate_broadcasts();
        if count == 0 {
            return None;
        }
        let n = d.clients;
        let mut deliveries = Vec::with_capacity(count * n);
        let mut from_due = Vec::with_capacity(count * n);
        let mut to_last = Vec::with_capacity(count);
        for (k, (&due, &sent)) in p.rate_due.iter().zip(&p.rate_sent).enumerate() {
            let start = deliveries.len();
            deliveries.extend(d.latencies(first + k, sent));
            to_last.push(*deliveries[start..].iter().max().expect("n > 0"));
            from_due.extend(d.latencies(first + k, due));
        }
        let mut lateness: Vec<u64> = p
            .rate_due
            .iter()
            .zip(&p.rate_sent)
            .map(|(&due, &sent)| sent.saturating_sub(due))
            .collect();
        let behind = lateness.iter().filter(|&&l| l > p.rate_period).count();
        deliveries.sort_unstable();
        from_due.sort_unstable();
        to_last.sort_unstable();
        lateness.sort_unstable();
        let t0 = p.rate_sent[0];
        let last = d.last_arrival(first..first + count).expect("count > 0");
        Some(Self {
            offered: p.rate,
            period: p.rate_period,
            broadcasts: count,
            deliveries,
            from_due,
            to_last,
            lateness,
            behind,
            span_ns: last - t0,
            sending_ns: p.rate_sent[count - 1] - t0,
        })
    }

    /// Deliveries per second from the first send to the last delivery.
    pub fn achieved(&self) -> f64 {
        self.deliveries.len() as f64 / (self.span_ns as f64 / 1e9)
    }

    /// Per-delivery latency (from the send) at per-mille rank `p`.
    pub fn latency(&self, p: usize) -> u64 {
        permille(&self.deliveries, p)
    }

    /// The worst per-delivery latency (from the send).
    pub fn max(&self) -> u64 {
        *self.deliveries.last().expect("non-empty")
    }

    /// Whether the sender fell behind its schedule.
    pub fn fell_behind(&self) -> bool {
        self.behind > 0
    }

    /// The fixed-rate section: rates, the sender's pacing, and the
    /// latency table at p50, p99, p99.9 and max.
    pub fn print(&self, n: usize, noun: &str) {
        println!(
            "Fixed rate: {} deliveries/s offered to {n} {noun}s = one broadcast every {}, \
             {} broadcasts ({} deliveries) sent over {} (planned {}), not waiting for deliveries:",
            self.offered,
            ms(self.period),
            self.broadcasts,
            self.deliveries.len(),
            ms(self.sending_ns),
            ms(self.period * (self.broadcasts as u64 - 1)),
        );
        println!();
        println!(
            "* Achieved: {} deliveries from the first send to the last delivery in {} -> {:.0} deliveries/s \
             (that span is {} periods plus the last broadcast's delivery, so keeping up reads up \
             to {}/{} of the offered rate)",
            self.deliveries.len(),
            ms(self.span_ns),
            self.achieved(),
            self.broadcasts - 1,
            self.broadcasts,
            self.broadcasts - 1,
        );
        let late_1ms = self.lateness.iter().filter(|&&l| l >= 1_000_000).count();
        println!(
            "* Sender lateness against the schedule: p50 {}, p99 {}, max {}; {late_1ms} send(s) ≥ 1 ms late",
            ms(permille(&self.lateness, 500)),
            ms(permille(&self.lateness, 990)),
            ms(*self.lateness.last().expect("non-empty")),
        );
        if self.fell_behind() {
            println!(
                "* SENDER FELL BEHIND: {} of {} sends went out after the next one was due; \
                 the late ones were sent at once to catch up, so the offered rate was not \
                 held evenly (see the \"from the due time\" row)",
                self.behind, self.broadcasts
            );
        } else {
            println!("* The sender kept pace: every send went out before the next one was due.");
        }
        println!();
        println!("| Measure | p50 | p99 | p99.9 | max |");
        println!("|---------|----:|----:|------:|----:|");
        for (name, xs) in [
            (
                format!(
                    "per delivery, from the send ({} deliveries)",
                    self.deliveries.len()
                ),
                &self.deliveries,
            ),
            (
                "per delivery, from the send's due time".to_owned(),
                &self.from_due,
            ),
            (
                format!("per broadcast: time to the last of {n} {noun}s"),
                &self.to_last,
            ),
        ] {
            println!(
                "| {name} | {} | {} | {} | {} |",
                ms(permille(xs, 500)),
                ms(permille(xs, 990)),
                ms(permille(xs, 999)),
                ms(*xs.last().expect("non-empty"))
            );
        }
    }

    /// One line for the examples' "Report:".
    pub fn summary(&self) -> String {
        format!(
            "fixed {} deliveries/s offered, {:.0} achieved: per delivery p50 {}, p99 {}, p99.9 {}, max {}{}",
            self.offered,
            self.achieved(),
            ms(self.latency(500)),
            ms(self.latency(990)),
            ms(self.latency(999)),
            ms(self.max()),
            if self.fell_behind() {
                " (sender fell behind)"
            } else {
                ""
            }
        )
    }
}

/// Latencies of the rounds and the fixed rate, and the burst's throughput.
pub struct Figures {
    /// Per round: time to the last client, sorted.
    pub to_last: Vec<u64>,
    /// Per round: time to the first client, sorted.
    pub to_first: Vec<u64>,
    /// Every delivery's latency in the rounds, sorted.
    pub deliveries: Vec<u64>,
    /// The fixed-rate phase, if it ran.
    pub rate: Option<RateFigures>,
    /// From the burst's start to its last delivery (ns).
    pub burst_ns: u64,
    /// Deliveries in the burst.
    pub burst_deliveries: usize,
}

impl Figures {
    /// The figures of a finished run.
    pub fn of(d: &Deliveries, p: &Phases) -> Self {
        let n = d.clients;
        let rounds = p.round_start.len();
        let mut to_last = Vec::with_capacity(rounds);
        let mut to_first = Vec::with_capacity(rounds);
        let mut deliveries = Vec::with_capacity(rounds * n);
        for (r, &t0) in p.round_start.iter().enumerate() {
            let lat: Vec<u64> = d.latencies(r, t0).collect();
            to_last.push(*lat.iter().max().expect("n > 0"));
            to_first.push(*lat.iter().min().expect("n > 0"));
            deliveries.extend(lat);
        }
        to_last.sort_unstable();
        to_first.sort_unstable();
        deliveries.sort_unstable();
        let rate = RateFigures::of(d, p, rounds);
        let burst_first = rounds + p.rate_broadcasts();
        let burst_end = d
            .last_arrival(burst_first..burst_first + p.burst)
            .unwrap_or(p.burst_start);
        Self {
            to_last,
            to_first,
            deliveries,
            rate,
            burst_ns: burst_end - p.burst_start,
            burst_deliveries: p.burst * n,
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

    /// The fixed-rate section (see [`RateFigures::print`]), if it ran.
    pub fn print_rate(&self, n: usize, noun: &str) {
        if let Some(r) = &self.rate {
            println!();
            r.print(n, noun);
        }
    }

    /// "; fixed …" for the "Report:" line, or nothing if the phase was off.
    pub fn rate_summary(&self) -> String {
        self.rate
            .as_ref()
            .map_or_else(String::new, |r| format!("; {}", r.summary()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rate: u64, secs: u64) -> PhasePlan {
        PhasePlan {
            rounds: 10,
            interval: Duration::from_millis(50),
            rate,
            rate_for: Duration::from_secs(secs),
            rate_limit: Duration::from_secs(60),
            burst: 20,
            round_limit: Duration::from_secs(10),
            burst_limit: Duration::from_secs(10),
        }
    }

    #[test]
    fn fixed_rate_schedule() {
        let p = plan(100_000, 3);
        assert_eq!(p.rate_broadcasts(1000), 300);
        assert_eq!(p.rate_due(1000, 1), 10_000_000);
        assert_eq!(p.rate_broadcasts(10_000), 30);
        assert_eq!(p.rate_due(10_000, 29), 2_900_000_000);
        assert_eq!(p.broadcasts(1000), 10 + 300 + 20);
        // 3 clients at 7/s: due times do not accumulate rounding.
        let p = plan(7, 3);
        assert_eq!(p.rate_broadcasts(3), 7);
        assert_eq!(p.rate_due(3, 7), 3_000_000_000);
        // At least one broadcast unless off.
        assert_eq!(plan(1, 1).rate_broadcasts(1000), 1);
        assert_eq!(plan(0, 3).rate_broadcasts(1000), 0);
        assert_eq!(plan(0, 3).broadcasts(1000), 30);
    }

    #[test]
    fn permilles() {
        let xs: Vec<u64> = (1..=1000).collect();
        assert_eq!(permille(&xs, 500), 500);
        assert_eq!(permille(&xs, 990), 990);
        assert_eq!(permille(&xs, 999), 999);
        assert_eq!(permille(&xs[..10], 999), 10);
    }
}
