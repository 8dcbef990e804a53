//! Heap bytes per router binding, counted by a global allocator.
//!
//! Run with `cargo run --release -p tidings-benches --example router_memory`.
//!
//! For each table shape (`instances × channels`, every binding on cid
//! `page`, anonymous) the instances are attached first (handshake + attach,
//! no receipts); then the live heap is read, the bindings are added, the
//! outputs drained and dropped, and the live heap read again. The growth
//! divided by the number of bindings is the figure. Two ways to add them:
//!
//! * `table`: `commit_page` with every key claimed: only the subscription
//!   table grows (no receipt, tombstone or purge marker).
//! * `subscribe`: one `Router::subscribe` per binding, which also writes two
//!   purge markers per call (kept for the tombstone TTL, 72 h by default).
//!
//! Bytes are what the router requested from the allocator (`Layout::size`),
//! so malloc's own per-chunk overhead (about 8-16 bytes per block) is not
//! included; the number of blocks per binding is printed so it can be added.
//! The per-instance figure (handshake + attach, no bindings) includes the
//! router's first-use growth of its maps, so it is high for one instance.
// The counting allocator has to implement the `unsafe` `GlobalAlloc` trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tidings_benches::router::{
    SECRET, attach_new, bind_page_claimed, bind_subscribe, drain, rooms,
};
use tidings_core::router::RouterConfig;
use tidings_core::{Peer, Router, SeededEntropy};

/// `System`, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the counters are atomics
// and never affect what is returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (we forward
        // every allocation to it).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        ALLOCS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as our caller's; `ptr` came from `System`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live heap bytes and blocks.
fn live() -> (usize, usize) {
    (LIVE.load(Ordering::Relaxed), ALLOCS.load(Ordering::Relaxed))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Table,
    Subscribe,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Table => "table",
            Via::Subscribe => "subscribe",
        }
    }
}

/// Bytes the router grew by, per instance (attach) and per binding.
fn measure(instances: usize, channels: usize, via: Via) {
    let mut e = SeededEntropy::new(4);
    let chans = rooms(channels);
    let mut router = Router::new(SECRET, RouterConfig::default());
    let (empty, _) = live();
    let peers: Vec<Peer> = (0..instances)
        .map(|_| attach_new(&mut router, 0, &mut e).0)
        .collect();
    let (before, blocks_before) = live();
    let started = Instant::now();
    for p in &peers {
        match via {
            Via::Table => bind_page_claimed(&mut router, 1, p, &chans),
            Via::Subscribe => bind_subscribe(&mut router, 1, p, &chans),
        }
    }
    let took = started.elapsed();
    drain(&mut router);
    let (after, blocks_after) = live();
    let bindings = instances * channels;
    let stats = router.stats();
    assert_eq!(stats.instances, instances);
    assert_eq!(stats.channels, channels);
    #[allow(clippy::cast_precision_loss)]
    let per = |bytes: usize, n: usize| bytes as f64 / n as f64;
    println!(
        "{:>9} bindings = {instances:>5} instances x {channels:>4} channels via {:<9}: \
         {:>6.1} B/binding ({:>4.2} blocks/binding); \
         attach {:>6.0} B/instance; tombstones+purges {:>7}; built in {:.2?}",
        bindings,
        via.label(),
        per(after - before, bindings),
        per(blocks_after - blocks_before, bindings),
        per(before - empty, instances),
        stats.tombstones,
        took,
    );
    drop(peers);
    drop(router);
}

fn main() {
    println!("router heap growth per binding (bytes requested from the allocator)");
    let shapes = [
        // 1 000 bindings.
        (1, 1_000),
        (10, 100),
        (1_000, 1),
        // 1 000 000 bindings.
        (1_000, 1_000),
        (10_000, 100),
    ];
    for via in [Via::Table, Via::Subscribe] {
        for (instances, channels) in shapes {
            measure(instances, channels, via);
        }
    }
}
