//! Load-generation helpers shared by the SSE and WebSocket examples:
//! opening many connections at a bounded concurrency, and CPU time by
//! thread group of this process.
// Figures are converted to f64 for printing only.
#![allow(clippy::cast_precision_loss)]

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long [`open_all`] may take (60 s).
pub const OPEN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `open(k)` for `k` in `0..count`, `concurrency` at a time, on `ex`;
/// returns what opened as `(k, T)` sorted by `k`, or the first error (`noun`
/// names what is opened in the message). A task stops at its first error;
/// the whole run is given [`OPEN_LIMIT`].
pub fn open_all<T, F, Fut>(
    ex: &smol::Executor<'static>,
    count: usize,
    concurrency: usize,
    noun: &str,
    open: F,
) -> Result<Vec<(usize, T)>, String>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<T>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let opened = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let tasks: Vec<_> = (0..concurrency.min(count))
        .map(|_| {
            let (next, errors, opened, open) =
                (next.clone(), errors.clone(), opened.clone(), open.clone());
            ex.spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count {
                        return;
                    }
                    match open(k).await {
                        Ok(t) => opened.lock().expect("opened").push((k, t)),
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
        smol::Timer::after(OPEN_LIMIT).await;
        false
    })));
    let errors = errors.lock().expect("errors");
    if let Some(e) = errors.first() {
        return Err(format!(
            "{} {noun}(s) failed to open, first: {e}",
            errors.len()
        ));
    }
    if !done {
        return Err(format!("opening the {noun}s took over {OPEN_LIMIT:?}"));
    }
    let mut opened = std::mem::take(&mut *opened.lock().expect("opened"));
    opened.sort_by_key(|(k, _)| *k);
    Ok(opened)
}

/// Time on CPU (ns, from `/proc/self/task/*/schedstat`, which is exact
/// where `stat`'s tick-sampled utime/stime miss short-running threads) of
/// this process's threads, grouped by `group(thread name)`.
pub fn cpu_by_group(group: impl Fn(&str) -> &'static str) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
        let ns: u64 = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        *out.entry(group(&read("comm"))).or_default() += ns;
    }
    out
}

/// Prints the CPU time each group used between two [`cpu_by_group`]
/// snapshots, with its share of 2 cores and per delivery.
pub fn print_cpu(
    label: &str,
    before: &BTreeMap<&'static str, u64>,
    after: &BTreeMap<&'static str, u64>,
    wall: Duration,
    deliveries: usize,
) {
    println!();
    println!(
        "CPU time by thread group during {label} ({:.2} s wall, 2 cores = {:.2} CPU-s, {deliveries} deliveries):",
        wall.as_secs_f64(),
        2.0 * wall.as_secs_f64()
    );
    println!();
    println!("| Threads | CPU-s | Share of 2 cores | µs per delivery |");
    println!("|---------|------:|-----------------:|----------------:|");
    let mut total = 0.0;
    for (group, &ns) in after {
        let used = ns.saturating_sub(before.get(group).copied().unwrap_or(0)) as f64 / 1e9;
        total += used;
        println!(
            "| {group} | {used:.2} | {:.0}% | {:.2} |",
            100.0 * used / (2.0 * wall.as_secs_f64()),
            used * 1e6 / deliveries.max(1) as f64
        );
    }
    println!(
        "| **total** | {total:.2} | {:.0}% | {:.2} |",
        100.0 * total / (2.0 * wall.as_secs_f64()),
        total * 1e6 / deliveries.max(1) as f64
    );
}

/// A field of `/proc/self/status` (e.g. `Threads:`), or `?`.
pub fn status_of_this_process(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "?".into())
}
