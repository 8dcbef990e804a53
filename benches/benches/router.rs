//! Router benchmarks: broadcast fan-out, subscribe/unsubscribe against a
//! small and a large table, receipt verification, and a handshake with 20
//! receipts.
//!
//! Run with `cargo bench -p tidings-benches --bench router`. Each table is
//! built once, outside the timed loops, on the first benchmark that uses it
//! (a filtered run builds only what it measures). Memory per binding is
//! measured by `examples/router_memory.rs` instead (it needs a counting
//! global allocator).

use std::collections::VecDeque;
use std::hint::black_box;
use std::slice;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use tidings_benches::router::{
    SECRET, attach_new, bind_page_claimed, bind_subscribe, drain, issue_tokens, page_effects,
    page_keys, room, rooms,
};
use tidings_core::router::{Output, RouterConfig, SubscriptionTable};
use tidings_core::{Cid, Identity, Payload, Peer, Router, SeededEntropy};

/// Instances bound to the fan-out channel.
const FANOUT: usize = 10_000;
/// Channels each table instance is bound to (cid `page`).
const CHANNELS_PER_INSTANCE: usize = 100;
/// Receipts carried by the benchmarked handshake.
const HANDSHAKE_RECEIPTS: usize = 20;
/// Handshakes timed between two sweeps of the pending-handshake stash.
const HANDSHAKE_CHUNK: u64 = 1_000;

fn group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g
}

fn router() -> Router {
    Router::new(SECRET, RouterConfig::default())
}

/// Drains the outputs of one broadcast, touching every recipient the way a
/// driver would (its stream handle and its cids). Returns the number of
/// deliveries (recipient cids).
fn deliver(router: &mut Router) -> usize {
    let mut conns = 0u64;
    let mut deliveries = 0;
    while let Some(out) = router.poll_output() {
        if let Output::Fanout {
            broadcast,
            recipients,
        } = out
        {
            black_box(&broadcast);
            for r in &recipients {
                conns = conns.wrapping_add(r.conn.get());
                deliveries += r.cids.len();
            }
        }
    }
    black_box(conns);
    deliveries
}

/// 10 000 instances bound to `{:room, 1}`, and one of them to leave out.
struct Fanout {
    router: Router,
    payload: Payload,
    except: [Identity; 1],
}

impl Fanout {
    fn new() -> Self {
        let mut e = SeededEntropy::new(1);
        let mut router = router();
        let target = room(1);
        let peers: Vec<Peer> = (0..FANOUT)
            .map(|_| {
                let (p, _) = attach_new(&mut router, 0, &mut e);
                bind_subscribe(&mut router, 0, &p, slice::from_ref(&target));
                p
            })
            .collect();
        let payload = Payload::new(&br#"{"text":"hello"}"#[..]);
        let except = [Identity::Instance(peers[FANOUT / 2].instance)];
        // Check the success path once, outside the timings.
        router
            .broadcast_action("{:room, 1}", "msg", payload.clone())
            .expect("broadcast");
        assert_eq!(deliver(&mut router), FANOUT);
        router
            .broadcast_action_except(&except, "{:room, 1}", "msg", payload.clone())
            .expect("broadcast");
        assert_eq!(deliver(&mut router), FANOUT - 1);
        Self {
            router,
            payload,
            except,
        }
    }
}

/// One broadcast to 10 000 instances, output drained. Criterion reports
/// the time per broadcast and the rate per recipient. Setup runs only if a
/// benchmark of the group is selected (so a filtered run can be profiled).
fn fanout(c: &mut Criterion) {
    let mut setup: Option<Fanout> = None;
    let mut g = group(c, "router_fanout");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(FANOUT as u64));
    g.bench_function("broadcast", |b| {
        let f = setup.get_or_insert_with(Fanout::new);
        b.iter(|| {
            f.router
                .broadcast_action(black_box("{:room, 1}"), "msg", f.payload.clone())
                .expect("broadcast");
            deliver(&mut f.router)
        });
    });
    g.bench_function("broadcast_except_instance", |b| {
        let f = setup.get_or_insert_with(Fanout::new);
        b.iter(|| {
            f.router
                .broadcast_action_except(
                    black_box(&f.except),
                    black_box("{:room, 1}"),
                    "msg",
                    f.payload.clone(),
                )
                .expect("broadcast");
            deliver(&mut f.router)
        });
    });
    g.finish();
}

/// A router holding `instances × CHANNELS_PER_INSTANCE` bindings, plus an
/// attached probe instance with none.
struct Table {
    router: Router,
    probe: Peer,
    who: Identity,
    /// Advances every iteration so each unsubscribe writes a real
    /// tombstone and each subscribe purges it.
    now: u64,
}

impl Table {
    fn new(instances: usize, via_subscribe: bool) -> Self {
        let mut e = SeededEntropy::new(2);
        let mut router = router();
        let channels = rooms(CHANNELS_PER_INSTANCE);
        for _ in 0..instances {
            let (p, _) = attach_new(&mut router, 0, &mut e);
            if via_subscribe {
                bind_subscribe(&mut router, 0, &p, &channels);
            } else {
                bind_page_claimed(&mut router, 0, &p, &channels);
            }
        }
        let (probe, _) = attach_new(&mut router, 0, &mut e);
        let stats = router.stats();
        assert_eq!(stats.instances, instances + 1);
        assert_eq!(stats.channels, CHANNELS_PER_INSTANCE);
        Self {
            router,
            who: Identity::Instance(probe.instance),
            probe,
            now: 1,
        }
    }

    fn probe_is_unbound(&self) -> bool {
        self.router
            .bindings(&self.probe.instance)
            .is_some_and(|b| b.is_empty())
    }
}

/// Binding the probe to `{:room, 0}` (a channel every table instance is
/// bound to) and unbinding it again, three ways. Each table is built on
/// first use, so a filtered run builds only what it measures.
fn sub_unsub(c: &mut Criterion) {
    let target = room(0);
    let key = page_keys(slice::from_ref(&target));
    let cases = [
        ("1k", 10, false),
        ("1M", 10_000, false),
        ("1M_via_subscribe", 10_000, true),
    ];
    let mut g = group(c, "router_sub_unsub");
    for (label, instances, via_subscribe) in cases {
        let mut table: Option<Table> = None;

        // Full immediate API: bind + sign a receipt + purge markers, then
        // unbind + tombstone. Outputs drained and dropped.
        g.bench_function(BenchmarkId::new("subscribe_unsubscribe", label), |b| {
            let t = table.get_or_insert_with(|| build(label, instances, via_subscribe));
            b.iter(|| {
                t.now += 2;
                let granted = t
                    .router
                    .subscribe(t.now, &t.who, &target, Cid::PAGE)
                    .expect("subscribe");
                drain(&mut t.router);
                t.router
                    .unsubscribe(t.now + 1, &t.who, &target, Cid::PAGE)
                    .expect("unsubscribe");
                drain(&mut t.router);
                granted
            });
            assert!(t.probe_is_unbound());
        });
        if via_subscribe {
            continue;
        }

        // Table only: `commit_page` with the key claimed signs nothing and
        // writes no tombstone; the second, empty page drops the binding.
        g.bench_function(BenchmarkId::new("page_add_remove", label), |b| {
            let t = table.get_or_insert_with(|| build(label, instances, via_subscribe));
            b.iter(|| {
                let fx = page_effects(&t.probe, slice::from_ref(&target));
                let added = t
                    .router
                    .commit_page(t.now, &t.probe, fx, &key)
                    .expect("commit_page");
                drain(&mut t.router);
                t.router
                    .commit_page(t.now, &t.probe, Vec::new(), &[])
                    .expect("commit_page");
                drain(&mut t.router);
                added.receipt_adds.len()
            });
            assert!(t.probe_is_unbound());
        });

        // The same with the key unclaimed: the add signs one receipt. The
        // difference to `page_add_remove` is the cost of one signature.
        g.bench_function(BenchmarkId::new("page_add_remove_signed", label), |b| {
            let t = table.get_or_insert_with(|| build(label, instances, via_subscribe));
            b.iter(|| {
                let fx = page_effects(&t.probe, slice::from_ref(&target));
                let added = t
                    .router
                    .commit_page(t.now, &t.probe, fx, &[])
                    .expect("commit_page");
                drain(&mut t.router);
                t.router
                    .commit_page(t.now, &t.probe, Vec::new(), &[])
                    .expect("commit_page");
                drain(&mut t.router);
                added.receipt_adds.len()
            });
            assert!(t.probe_is_unbound());
        });
    }
    g.finish();
}

fn build(label: &str, instances: usize, via_subscribe: bool) -> Table {
    let t = Table::new(instances, via_subscribe);
    let bindings = instances * CHANNELS_PER_INSTANCE;
    eprintln!("router_sub_unsub/{label}: {bindings} bindings in the table");
    t
}

/// A router with one detached instance holding `HANDSHAKE_RECEIPTS` receipts.
fn issued(n: usize) -> (Router, SeededEntropy, Peer, Vec<String>) {
    let mut e = SeededEntropy::new(3);
    let mut router = router();
    let channels = rooms(n);
    let (peer, conn) = attach_new(&mut router, 0, &mut e);
    let tokens = issue_tokens(&mut router, 0, &peer, &channels);
    router.detach(conn);
    drain(&mut router);
    (router, e, peer, tokens)
}

fn receipts(c: &mut Criterion) {
    let mut g = group(c, "router_receipts");

    let (router, _, _, tokens) = issued(1);
    let token = tokens[0].as_str();
    router.verify_receipt(token, 1).expect("token verifies");
    g.bench_function("verify_receipt", |b| {
        b.iter(|| router.verify_receipt(black_box(token), 1).is_ok());
    });

    // A reconnect: the instance is not attached; every receipt is valid.
    let (mut router, mut e, peer, tokens) = issued(HANDSHAKE_RECEIPTS);
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let reply = router
        .handshake(1, &mut e, &peer, &tokens)
        .expect("handshake");
    assert_eq!(reply.receipts.len(), HANDSHAKE_RECEIPTS);
    assert_eq!(reply.rejected, 0);
    let mut now = 1;
    g.bench_function(
        BenchmarkId::new("handshake", format!("{HANDSHAKE_RECEIPTS}_receipts")),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(HANDSHAKE_CHUNK);
                    left -= n;
                    let start = Instant::now();
                    for _ in 0..n {
                        let reply = router
                            .handshake(now, &mut e, &peer, black_box(&tokens))
                            .expect("handshake");
                        assert_eq!(reply.rejected, 0);
                        black_box(reply);
                    }
                    total += start.elapsed();
                    // Expire the stashed handshakes so the pending limit is
                    // never reached (untimed). Tokens stay valid for 72 h.
                    now += RouterConfig::default().handshake_ttl;
                    router.handle_timeout(now);
                    drain(&mut router);
                }
                total
            });
        },
    );
    g.finish();
}

/// The subscription table on its own: one bind + unbind of a probe binding
/// with 1 000 and with 1 000 000 bindings already in the table (no receipt,
/// no tombstone: what `subscribe`/`unsubscribe` add on top is measured above).
fn table_bind_unbind(c: &mut Criterion) {
    let mut g = group(c, "router_table");
    for (label, instances) in [("1k", 10usize), ("1M", 10_000)] {
        let mut e = SeededEntropy::new(7);
        let mut table = SubscriptionTable::default();
        let mut out = VecDeque::new();
        let channels = rooms(CHANNELS_PER_INSTANCE);
        for _ in 0..instances {
            let p = tidings_benches::router::peer(&mut e);
            let slot = table.attach(p.instance, p.session, None);
            for ch in &channels {
                table.bind(slot, ch, &Cid::PAGE, false, &mut out);
            }
        }
        out.clear();
        let probe_peer = tidings_benches::router::peer(&mut e);
        let probe = table.attach(probe_peer.instance, probe_peer.session, None);
        // A channel others are bound to (no ChannelUp/Down churn) and a cid
        // of its own.
        let ch = room(1);
        let cid = Cid::new("probe").unwrap();
        g.bench_function(BenchmarkId::new("bind_unbind", label), |b| {
            b.iter(|| {
                assert!(table.bind(probe, black_box(&ch), &cid, false, &mut out));
                assert!(table.unbind(probe, black_box(&ch), &cid, &mut out));
            });
        });
        assert!(out.is_empty());
    }
    g.finish();
}

criterion_group!(benches, fanout, sub_unsub, receipts, table_bind_unbind);
criterion_main!(benches);
