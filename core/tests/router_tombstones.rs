//! Hologram's `tombstone_test.exs` (H§8.5), ported to the router (rules R5,
//! R9, R10, R11, R13). A tombstone has no query API of its own: its effect is
//! observed where it matters, at the handshake, which refuses a receipt a
//! live tombstone covers; `stats().tombstones` counts tombstones and purge
//! markers.
//!
//! Not applicable (Elixir process / cluster mechanics):
//!
//! * H§8.5.4 "`insert` gossips `{:insert, key, ts}`", H§8.5.5 "a peer
//!   `{:insert}` is merged", H§8.5.12 / 8.5.13 "a `sync_request` is answered
//!   with the dump (`[]` when empty)", H§8.5.16–18 (boot merges a peer
//!   reply; boot with no replies leaves the table empty; a steady-state
//!   insert after the sync request is received), H§8.5.19 "multiple peers
//!   replying with the same key keep the max timestamp", H§8.5.20 "gossip
//!   after boot-sync lands": the core has no cluster gossip or boot sync. The
//!   max-merge those lines rely on is local behaviour and is tested by
//!   `an_older_insert_keeps_the_later_timestamp` and
//!   `a_newer_insert_replaces_it`.
//! * H§8.5.14 "the GenServer starts and registers by name", H§8.5.15 "the
//!   ETS table is created": there is no process or table; a new router's
//!   empty state is tested by `a_new_router_starts_empty` in
//!   `router_registry.rs`.

mod common;

use common::{Fixture, HOUR, empty, instance_of, key, session_of, user, user_of};
use tidings_core::router::{Output, RouterConfig};
use tidings_core::{Cid, Effects, Identity};

const CH: &str = ":room_a";

// H§8.5.1 `insert` writes a binding-level key with its timestamp. Ours: an
// `unsubscribe` at T refuses receipts of that `(channel, cid)` created at or
// before T, and only those.
#[test]
fn insert_writes_a_binding_level_key_with_its_timestamp() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let old = f.token_for(1_000, &p, CH, "page");
    let same_ms = f.token_for(2_000, &p, CH, "page");
    let newer = f.token_for(2_001, &p, CH, "page");
    let sibling = f.token_for(1_000, &p, CH, "widget");
    f.router
        .unsubscribe(2_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert_eq!(f.router.stats().tombstones, 1);
    assert!(!f.accepts(3_000, &p, &old));
    assert!(!f.accepts(3_000, &p, &same_ms));
    assert!(f.accepts(3_000, &p, &newer));
    assert!(f.accepts(3_000, &p, &sibling));
}

// H§8.5.2 `insert` writes a channel-wide key with its timestamp. Ours:
// `unsubscribe_all` at T refuses every cid's receipt on that channel created
// at or before T; other channels are untouched.
#[test]
fn insert_writes_a_channel_wide_key_with_its_timestamp() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let page = f.token_for(1_000, &p, CH, "page");
    let widget = f.token_for(1_000, &p, CH, "widget");
    let other_channel = f.token_for(1_000, &p, ":room_b", "page");
    let newer = f.token_for(2_001, &p, CH, "widget");
    f.router
        .unsubscribe_all(2_000, &instance_of(&p), CH)
        .unwrap();
    assert_eq!(f.router.stats().tombstones, 1);
    assert!(!f.accepts(3_000, &p, &page));
    assert!(!f.accepts(3_000, &p, &widget));
    assert!(f.accepts(3_000, &p, &other_channel));
    assert!(f.accepts(3_000, &p, &newer));
}

// H§8.5.3 both shapes coexist at the same identity: each keeps its own
// timestamp.
#[test]
fn both_shapes_coexist_at_the_same_identity() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let page_mid = f.token_for(2_000, &p, CH, "page");
    let widget_mid = f.token_for(2_000, &p, CH, "widget");
    let widget_early = f.token_for(500, &p, CH, "widget");
    f.router
        .unsubscribe_all(1_000, &instance_of(&p), CH)
        .unwrap();
    f.router
        .unsubscribe(3_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert_eq!(f.router.stats().tombstones, 2);
    assert!(!f.accepts(4_000, &p, &page_mid), "binding-level at 3000");
    assert!(
        f.accepts(4_000, &p, &widget_mid),
        "channel-wide is only 1000"
    );
    assert!(!f.accepts(4_000, &p, &widget_early), "channel-wide at 1000");
}

// H§8.5.6 an older peer insert keeps the later local timestamp. Ours: R9
// max-merge; an insert carrying an older time (here an older `now`) does not
// lower the tombstone.
#[test]
fn an_older_insert_keeps_the_later_timestamp() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let t = f.token_for(2_000, &p, CH, "page");
    f.router
        .unsubscribe(3_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    f.router
        .unsubscribe(1_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert_eq!(f.router.stats().tombstones, 1);
    assert!(!f.accepts(4_000, &p, &t));
}

// H§8.5.7 a newer peer insert replaces it (max-merge).
#[test]
fn a_newer_insert_replaces_it() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let t = f.token_for(2_000, &p, CH, "page");
    f.router
        .unsubscribe(1_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert!(f.accepts(2_500, &p, &t));
    f.router
        .unsubscribe(3_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert_eq!(f.router.stats().tombstones, 1);
    assert!(!f.accepts(4_000, &p, &t));
}

// H§8.5.8 `{:purge, key}` deletes the key. Ours (R10): `subscribe` at an
// identity purges both its binding-level and channel-wide tombstones, even
// with no live connection, so older receipts are valid again.
#[test]
fn purge_deletes_the_key() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let page = f.token_for(1_000, &p, CH, "page");
    let widget = f.token_for(1_000, &p, CH, "widget");
    f.router
        .unsubscribe(2_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    f.router
        .unsubscribe_all(2_000, &instance_of(&p), CH)
        .unwrap();
    assert!(!f.accepts(2_500, &p, &page));
    assert!(!f.accepts(2_500, &p, &widget));
    let granted = f
        .router
        .subscribe(3_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert_eq!(granted, 0);
    assert!(f.accepts(3_500, &p, &page));
    assert!(f.accepts(3_500, &p, &widget));
}

// H§8.5.9 `{:purge, key}` for an absent key is a no-op. Ours: nothing is
// refused or pushed, and the purge marker it leaves (SPEC §3 re-grant) does
// not block a *later* tombstone.
#[test]
fn purge_of_an_absent_key_is_a_no_op() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let before = f.token_for(500, &p, CH, "page");
    let between = f.token_for(1_500, &p, CH, "page");
    f.router
        .subscribe(1_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert!(f.drain().is_empty());
    assert!(f.accepts(1_200, &p, &before));
    f.router
        .unsubscribe(2_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert!(!f.accepts(2_500, &p, &between));
}

// SPEC §3 re-grant / H Appendix A: the purge marker makes a re-grant
// authoritative over an *older* tombstone that arrives after it, so the
// removal is not resurrected. (Hologram v0.9 deletes unconditionally and a
// late older insert would re-tombstone.)
#[test]
fn a_tombstone_older_than_a_re_grant_is_ignored() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let t = f.token_for(1_000, &p, CH, "page");
    f.router
        .subscribe(3_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    f.router
        .unsubscribe(2_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    f.router
        .unsubscribe_all(2_000, &instance_of(&p), CH)
        .unwrap();
    assert!(f.accepts(3_500, &p, &t));
}

fn short_ttl() -> Fixture {
    Fixture::with_config(RouterConfig {
        tombstone_ttl: 10_000,
        sweep_interval: 1_000,
        ..RouterConfig::default()
    })
}

// H§8.5.10 a sweep deletes rows older than the TTL. Ours: the sweep timer
// (every `sweep_interval`) forgets tombstones once `ts + tombstone_ttl <=
// now`, after which the receipt is accepted again; with nothing left no
// sweep is scheduled.
#[test]
fn a_sweep_deletes_rows_older_than_the_ttl() {
    let mut f = short_ttl();
    let p = f.peer(None);
    let t = f.token_for(500, &p, CH, "page");
    f.router
        .unsubscribe(1_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert_eq!(f.router.poll_timeout(), Some(2_000));
    f.advance(11_000);
    assert_eq!(f.router.stats().tombstones, 0);
    assert_eq!(f.router.poll_timeout(), None);
    assert!(f.accepts(11_000, &p, &t));
}

// H§8.5.11 a sweep keeps rows within the TTL.
#[test]
fn a_sweep_keeps_rows_within_the_ttl() {
    let mut f = short_ttl();
    let p = f.peer(None);
    let t = f.token_for(500, &p, CH, "page");
    f.router
        .unsubscribe(1_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    f.advance(10_999);
    assert_eq!(f.router.stats().tombstones, 1);
    assert!(f.router.poll_timeout().is_some_and(|at| at <= 11_000));
    assert!(!f.accepts(10_999, &p, &t));
}

// ---------------------------------------------------------------------------
// Our decisions: which identity levels a tombstone is checked at (R9), and
// which removals write one (R5, R11, R3).
// ---------------------------------------------------------------------------

// R9 (fixes H§10 Q10): the handshake also checks tombstones at the
// connection's *current* user, so an anonymous (elevated) receipt does not
// escape an `unsubscribe_all({:user, U}, ch)` issued while its tab was
// offline. Hologram checks only the receipt's user and accepts it.
#[test]
fn tombstone_at_the_current_user_rejects_an_anonymous_receipt() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let elevated = f.token(1_000, p.instance, None, CH, "page");
    let elevated_other = f.token(1_000, p.instance, None, ":room_b", "page");
    f.router.unsubscribe_all(2_000, &user_of(7), CH).unwrap();
    f.router
        .unsubscribe(2_000, &user_of(7), ":room_b", Cid::PAGE)
        .unwrap();
    assert!(!f.accepts(3_000, &p, &elevated));
    assert!(!f.accepts(3_000, &p, &elevated_other));
    // The same tab as another user is not covered.
    let as_8 = tidings_core::Peer {
        user: user(8),
        ..p.clone()
    };
    assert!(f.accepts(3_000, &as_8, &elevated));
}

// H§8.9.62 / R9: a binding-level tombstone at the receipt's user rejects it.
#[test]
fn tombstone_at_the_receipts_user_rejects_it() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let t = f.token_for(1_000, &p, CH, "page");
    f.router
        .unsubscribe(2_000, &user_of(7), CH, Cid::PAGE)
        .unwrap();
    assert!(!f.accepts(3_000, &p, &t));
}

// H§8.9.63 / H§8.9.66 / R9: a channel-wide tombstone at the session rejects,
// anonymous receipts included; at the instance level too.
#[test]
fn tombstone_at_the_session_or_instance_rejects_anonymous_receipts() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    let tp = f.token_for(1_000, &p, CH, "page");
    let tq = f.token_for(1_000, &q, CH, "page");
    f.router
        .unsubscribe_all(2_000, &session_of(&p), CH)
        .unwrap();
    f.router
        .unsubscribe(2_000, &instance_of(&q), CH, Cid::PAGE)
        .unwrap();
    assert!(!f.accepts(3_000, &p, &tp));
    assert!(!f.accepts(3_000, &q, &tq));
}

// H§8.9.64 / R9: tombstones at identities the connection does not have
// (another instance, session or user; any user for an anonymous tab) do not
// reject.
#[test]
fn tombstones_at_other_identities_do_not_reject() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let stranger = f.peer(user(1));
    let t = f.token_for(1_000, &p, CH, "page");
    for identity in [
        instance_of(&stranger),
        session_of(&stranger),
        user_of(1),
        Identity::User(tidings_core::UserId::str("anonymous")),
    ] {
        f.router.unsubscribe_all(2_000, &identity, CH).unwrap();
        f.router
            .unsubscribe(2_000, &identity, CH, Cid::PAGE)
            .unwrap();
    }
    assert_eq!(f.router.stats().tombstones, 8);
    assert!(f.accepts(3_000, &p, &t));
}

// H§3.3 writers / H§8.9.8 / R5: a command's `delete_subscription` of a bound
// key writes an instance-level tombstone, so the old receipt is refused at
// the next handshake; a sibling tab of the same session is not affected.
#[test]
fn command_delete_writes_an_instance_tombstone() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let sibling = f.tab(&p);
    let t = f.token_for(1_000, &p, CH, "page");
    let ts = f.token_for(1_000, &sibling, CH, "page");
    let conn = f.attach(1_000, &p, &[&t]);
    f.drain();
    let mut fx = f.command(&p, "page");
    fx.delete_subscription(CH).unwrap();
    let c = f.commit(2_000, fx);
    assert_eq!(c.receipt_drops, vec![key(CH, "page")]);
    assert_eq!(f.router.stats().tombstones, 1);
    f.router.detach(conn);
    assert!(!f.accepts(3_000, &p, &t));
    assert!(f.accepts(3_000, &sibling, &ts));
}

// H§3.3 / SPEC §3 / R11: page-navigation drops are never tombstoned; the
// dropped key's old receipt stays valid (back-navigation).
#[test]
fn navigation_drops_are_not_tombstoned() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let t = f.token_for(1_000, &p, CH, "page");
    let conn = f.attach(1_000, &p, &[&t]);
    f.drain();
    let mut fx = Effects::init(&p, Cid::PAGE);
    fx.put_subscription(":room_b").unwrap();
    let c = f
        .router
        .commit_page(2_000, &p, vec![fx], &[key(CH, "page")])
        .unwrap();
    assert_eq!(c.receipt_drops, vec![key(CH, "page")]);
    assert_eq!(f.keys(&p), vec![key(":room_b", "page")]);
    assert_eq!(f.router.stats().tombstones, 0);
    f.router.detach(conn);
    assert!(f.accepts(3_000, &p, &t));
}

// R3 / H§3.6 G: a stream ending writes no tombstones; the receipts stay
// valid for the reconnect.
#[test]
fn detach_writes_no_tombstones() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let t = f.token_for(1_000, &p, CH, "page");
    let conn = f.attach(1_000, &p, &[&t]);
    f.router.detach(conn);
    assert_eq!(f.router.stats().tombstones, 0);
    assert!(f.accepts(2_000, &p, &t));
}

// R10: `unsubscribe` of a live binding removes it, pushes the drop and
// tombstones it, so the same client cannot bring it back with its receipt
// (the removal is authoritative across the reconnect).
#[test]
fn unsubscribe_is_authoritative_across_a_reconnect() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let t = f.token_for(1_000, &p, CH, "page");
    let conn = f.attach(1_000, &p, &[&t]);
    f.drain();
    f.router
        .unsubscribe(2_000, &session_of(&p), CH, Cid::PAGE)
        .unwrap();
    let out = f.drain();
    assert!(out.contains(&Output::DropReceipts {
        conn,
        keys: vec![key(CH, "page")]
    }));
    f.router.detach(conn);
    let hs = f.handshake(3_000, &p, &[&t]);
    assert_eq!((hs.rejected, hs.receipts.len()), (1, 0));
    let conn = f.router.attach(3_000, &hs.handshake_id, &p).unwrap();
    assert!(f.keys(&p).is_empty());
    f.drain();
    f.router.broadcast_action(CH, "x", empty()).unwrap();
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.connection(&p.instance), Some(conn));
}

// R9: a tombstone stops covering once `ts + tombstone_ttl <= now`, even
// before any sweep has run.
#[test]
fn a_tombstone_stops_covering_at_its_ttl_even_before_a_sweep() {
    let mut f = Fixture::with_config(RouterConfig {
        tombstone_ttl: 10_000,
        sweep_interval: 100 * HOUR,
        ..RouterConfig::default()
    });
    let p = f.peer(None);
    let t = f.token_for(500, &p, CH, "page");
    f.router
        .unsubscribe(1_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert!(!f.accepts(10_999, &p, &t));
    assert!(f.accepts(11_000, &p, &t));
    assert_eq!(f.router.stats().tombstones, 1, "not swept yet");
}

// R9 (commit f1dc6a9): at equal timestamps the later call wins. An
// `unsubscribe` in the same millisecond as the `subscribe` it revokes still
// writes its tombstone, so the receipt that `subscribe` pushed is refused at
// the next handshake even if the client missed the `DropReceipts`; and a
// `subscribe` in the same millisecond as an `unsubscribe` still purges it.
#[test]
fn at_equal_times_the_later_call_wins() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect(0, &p);
    f.router
        .subscribe(1_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    let out = f.drain();
    let Some(Output::AddReceipts { receipts, .. }) = out.last() else {
        panic!("{out:?}")
    };
    let granted = receipts[0].token.clone();
    f.router
        .unsubscribe(1_000, &instance_of(&p), CH, Cid::PAGE)
        .unwrap();
    assert!(f.keys(&p).is_empty());
    f.router.detach(conn);
    assert!(!f.accepts(2_000, &p, &granted));
    // The other order: the re-grant in the same millisecond purges it.
    let old = f.token_for(500, &p, ":room_b", "page");
    f.router
        .unsubscribe(3_000, &instance_of(&p), ":room_b", Cid::PAGE)
        .unwrap();
    f.router
        .subscribe(3_000, &instance_of(&p), ":room_b", Cid::PAGE)
        .unwrap();
    assert!(f.accepts(4_000, &p, &old));
}
