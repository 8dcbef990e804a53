//! Hologram's `receipt_test.exs` (H§8.2) and `handshake_test.exs` (H§8.4),
//! ported to the sans-IO router (rules R1, R2, R12, R13).
//!
//! Not applicable (Elixir process / cluster mechanics with no counterpart in
//! a single sans-IO router):
//!
//! * H§8.4.2 "`insert` gossips `{:insert, …}`", H§8.4.8 "a pending waiter is
//!   resolved by a peer gossip `{:insert,…}`", H§8.4.14 "a peer `{:insert}`
//!   is merged into ETS", H§8.4.15 "`{:sync_request, pid}` is answered by a
//!   direct send of the ETS dump": the core has no cluster gossip; a
//!   handshake is redeemed on the router that made it (the transports route
//!   the GET to the same node), so there is nothing to replicate.
//! * H§8.4.9–11 (boot sync: merge a peer's reply, empty stash when no peer
//!   replies, steady-state insert after the sync request): a router has no
//!   boot phase; `Router::new` starts empty and `a_new_router_starts_empty`
//!   in `router_registry.rs` covers that.
//!
//! Mapped, not literal: H§8.4.5–7 (waiters). `attach` never waits, so a
//! missing id fails at once; the core's "wait for the thing to appear" is
//! command parking (R12, SPEC §3 "Better than Hologram", issue #975), so the
//! waiter lines are tested against `park`.

mod common;

use common::{Fixture, HOUR, ch, cid, crossings, key, receipt_keys, user};
use tidings_core::router::{
    MAX_RECEIPT_TOKEN_BYTES, Output, Receipt, ReceiptError, Router, RouterConfig, RouterError,
    RouterStats,
};
use tidings_core::{Effects, UserId};

// ---------------------------------------------------------------------------
// H§8.2 receipt_test.exs
// ---------------------------------------------------------------------------

// H§8.2.1 `issue/4` produces a token that verifies to `{iid, nil, :room_a,
// "page", created_at}`. Ours: the token is verified by the router holding the
// same secret, and by no router holding another one.
#[test]
fn issue_produces_a_token_that_verifies_to_instance_anonymous_room_a_page() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    let mut fx = Effects::init(&peer, cid("page"));
    fx.put_subscription(":room_a").unwrap();
    let c = f.router.commit_page(1_000, &peer, vec![fx], &[]).unwrap();
    assert_eq!(c.receipt_adds.len(), 1);
    let r = &c.receipt_adds[0];
    assert_eq!(
        (r.channel.clone(), r.cid.clone()),
        (ch(":room_a"), cid("page"))
    );
    assert_eq!(
        f.router.verify_receipt(&r.token, 1_000),
        Ok(Receipt {
            instance: peer.instance,
            user: None,
            channel: ch(":room_a"),
            cid: cid("page"),
            created_at: 1_000,
        })
    );
    // Another router with the same secret verifies it too (stateless receipts).
    let same = Router::new(common::SECRET, RouterConfig::default());
    assert!(same.verify_receipt(&r.token, 1_000).is_ok());
    let other = Router::new(b"another secret", RouterConfig::default());
    assert_eq!(
        other.verify_receipt(&r.token, 1_000),
        Err(ReceiptError::Invalid)
    );
}

// H§8.2.2 `created_at` falls between the before and after timestamps. Ours:
// the core reads no clock, so `created_at` is exactly the `now` of the call
// that issued the receipt — in every place receipts are issued (H§3.2).
#[test]
fn created_at_is_the_now_of_the_issuing_call() {
    let mut f = Fixture::new();
    let peer = f.peer(user(7));
    // Handshake re-sign.
    let old = f.token_for(1_000, &peer, ":room_a", "page");
    let hs = f.handshake(4_000, &peer, &[&old]);
    assert_eq!(
        f.router
            .verify_receipt(&hs.receipts[0].token, 4_000)
            .unwrap()
            .created_at,
        4_000
    );
    let conn = f.router.attach(4_001, &hs.handshake_id, &peer).unwrap();
    f.drain();
    // Command.
    let mut fx = f.command(&peer, "page");
    fx.put_subscription(":room_b").unwrap();
    let c = f.commit(5_000, fx);
    f.drain();
    assert_eq!(
        f.router
            .verify_receipt(&c.receipt_adds[0].token, 5_000)
            .unwrap()
            .created_at,
        5_000
    );
    // Immediate subscribe.
    f.router
        .subscribe(6_000, &common::instance_of(&peer), ":room_c", cid("page"))
        .unwrap();
    let out = f.drain();
    let [
        Output::ChannelUp(_),
        Output::AddReceipts { conn: to, receipts },
    ] = out.as_slice()
    else {
        panic!("expected ChannelUp then one AddReceipts, got {out:?}");
    };
    assert_eq!(*to, conn);
    assert_eq!(
        f.router
            .verify_receipt(&receipts[0].token, 6_000)
            .unwrap()
            .created_at,
        6_000
    );
    // Periodic refresh: every binding re-signed at the refresh time.
    let due = 4_001 + 12 * HOUR;
    f.advance(due - 1);
    assert!(f.drain().is_empty());
    f.advance(due);
    let out = f.drain();
    let [Output::RefreshReceipts { receipts, .. }] = out.as_slice() else {
        panic!("expected one RefreshReceipts, got {out:?}");
    };
    assert_eq!(receipts.len(), 3);
    for r in receipts {
        assert_eq!(
            f.router.verify_receipt(&r.token, due).unwrap().created_at,
            due
        );
    }
}

// H§8.2.3 channel, cid, instance_id and user_id round-trip (`{:room,42}`,
// `"comp_1"`, user 7). Ours also checks that user ids keep their exact kind
// (SPEC §2: `{:user, 1}` ≠ `{:user, "1"}`).
#[test]
fn channel_cid_instance_and_user_round_trip() {
    let mut f = Fixture::new();
    for u in [
        UserId::int(7),
        UserId::str("7"),
        UserId::atom("admin").unwrap(),
    ] {
        let peer = f.peer(Some(u.clone()));
        let token = f.token_for(2_000, &peer, "{:room, 42}", "comp_1");
        let r = f.router.verify_receipt(&token, 2_000).unwrap();
        assert_eq!(r.instance, peer.instance);
        assert_eq!(r.user, Some(u));
        assert_eq!(r.channel, ch("{:room, 42}"));
        assert_eq!(r.cid, cid("comp_1"));
        assert_eq!(r.created_at, 2_000);
    }
    let peer = f.peer(None);
    let token = f.token_for(0, &peer, "{:doc, \"abc\", :v2, -1}", "layout");
    assert_eq!(
        f.router.verify_receipt(&token, 0).unwrap().channel,
        ch("{:doc, \"abc\", :v2, -1}")
    );
}

// H§8.2.4 a tampered token gives `{:error, :invalid}`; so do tokens of
// another secret, garbage and oversize input, and a handshake drops them.
#[test]
fn tampered_token_is_invalid() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    let token = f.token_for(0, &peer, ":room_a", "page");
    let flip = |s: &str, at: usize| {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let middle = flip(&token, token.len() / 2);
    let last = flip(&token, token.len() - 1);
    let truncated = token[..token.len() - 4].to_owned();
    let oversize = "A".repeat(MAX_RECEIPT_TOKEN_BYTES + 1);
    let foreign = {
        let mut other = Router::new(b"x", RouterConfig::default());
        let mut fx = Effects::init(&peer, cid("page"));
        fx.put_subscription(":room_a").unwrap();
        other
            .commit_page(0, &peer, vec![fx], &[])
            .unwrap()
            .receipt_adds[0]
            .token
            .clone()
    };
    for bad in [
        middle.as_str(),
        last.as_str(),
        truncated.as_str(),
        "",
        "not a token!",
        oversize.as_str(),
        foreign.as_str(),
    ] {
        assert_eq!(
            f.router.verify_receipt(bad, 0),
            Err(ReceiptError::Invalid),
            "{bad:.40}"
        );
    }
    let hs = f.handshake(0, &peer, &[&middle, &token, &foreign]);
    assert_eq!(hs.rejected, 2);
    assert_eq!(receipt_keys(&hs.receipts), vec![key(":room_a", "page")]);
}

// H§8.2.5 `max_age: -1` gives `{:error, :expired}`. Ours: a token older than
// `receipt_max_age` (72 h) is `Expired`; exactly 72 h old is still valid
// (R1: `now - created_at <= receipt_max_age`), and a handshake drops it.
#[test]
fn receipt_older_than_max_age_is_expired() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    let max = f.router.config().receipt_max_age;
    assert_eq!(max, 72 * HOUR);
    let token = f.token_for(10, &peer, ":room_a", "page");
    assert!(f.router.verify_receipt(&token, 10 + max).is_ok());
    assert_eq!(
        f.router.verify_receipt(&token, 10 + max + 1),
        Err(ReceiptError::Expired)
    );
    assert!(f.accepts(10 + max, &peer, &token));
    let hs = f.handshake(10 + max + 1, &peer, &[&token]);
    assert_eq!((hs.rejected, hs.receipts.len()), (1, 0));
}

// ---------------------------------------------------------------------------
// H§8.4 handshake_test.exs
// ---------------------------------------------------------------------------

// H§8.4.1 `insert` stores the row `{hid, bindings, iid, sid, uid,
// expires_at}`. Ours: the stash holds the accepted bindings (with their
// authorizing user) and the peer until `now + handshake_ttl`.
#[test]
fn handshake_stashes_the_bindings_and_identity_until_expiry() {
    let mut f = Fixture::new();
    let peer = f.peer(user(7));
    let anon = f.token(100, peer.instance, None, ":room_a", "page");
    let mine = f.token_for(100, &peer, ":room_b", "layout");
    let hs = f.handshake(1_000, &peer, &[&anon, &mine]);
    assert_eq!(hs.rejected, 0);
    assert_eq!(
        receipt_keys(&hs.receipts),
        vec![key(":room_a", "page"), key(":room_b", "layout")]
    );
    // Re-signed with the same authorizing user (H§3.2 item 3).
    let users: Vec<Option<UserId>> = hs
        .receipts
        .iter()
        .map(|r| f.router.verify_receipt(&r.token, 1_000).unwrap().user)
        .collect();
    assert_eq!(users, vec![None, user(7)]);
    assert_eq!(f.router.stats().pending_handshakes, 1);
    assert_eq!(f.router.poll_timeout(), Some(1_000 + 60_000));
    // Nothing is bound until attach.
    assert_eq!(f.router.bindings(&peer.instance), None);
    assert!(f.drain().is_empty());
    f.router.attach(1_500, &hs.handshake_id, &peer).unwrap();
    assert_eq!(
        f.bindings(&peer),
        vec![
            (key(":room_a", "page"), false),
            (key(":room_b", "layout"), true)
        ]
    );
    assert_eq!(f.router.stats().pending_handshakes, 0);
}

// H§8.4.3 `redeem` on a hit returns `{:ok, bindings, {iid,sid,uid}}`
// immediately. Ours: `attach` creates the instance with the stash's bindings
// and identity, at once.
#[test]
fn redeem_of_a_live_id_attaches_with_the_stashed_bindings_and_identity() {
    let mut f = Fixture::new();
    let peer = f.peer(user(3));
    let t = f.token_for(0, &peer, "{:room, 1}", "page");
    let hs = f.handshake(0, &peer, &[&t]);
    let conn = f.router.attach(59_999, &hs.handshake_id, &peer).unwrap();
    assert_eq!(f.router.peer(conn), Some(peer.clone()));
    assert_eq!(f.router.connection(&peer.instance), Some(conn));
    assert_eq!(f.bindings(&peer), vec![(key("{:room, 1}", "page"), true)]);
    assert_eq!(crossings(&f.drain()), vec![(true, ch("{:room, 1}"))]);
}

// H§8.4.4 `redeem` of an expired row returns `:error` and deletes the row.
// Ours: `HandshakeExpired` at `expires <= now`, and the id is gone after.
#[test]
fn redeem_of_an_expired_id_fails_and_deletes_it() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    let hs = f.handshake(1_000, &peer, &[]);
    assert_eq!(
        f.router.attach(61_000, &hs.handshake_id, &peer),
        Err(RouterError::HandshakeExpired)
    );
    assert_eq!(f.router.stats().pending_handshakes, 0);
    assert_eq!(
        f.router.attach(61_000, &hs.handshake_id, &peer),
        Err(RouterError::UnknownHandshake)
    );
    assert_eq!(f.router.connection(&peer.instance), None);
    assert!(f.drain().is_empty());
}

// H§8.4.5 `redeem` of a missing id returns `:error` after the timeout. Ours:
// `attach` never waits: an id this router never issued is `UnknownHandshake`
// at once.
#[test]
fn redeem_of_a_missing_id_is_unknown_handshake() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    let mut elsewhere = Router::new(common::SECRET, RouterConfig::default());
    let foreign = elsewhere
        .handshake(0, &mut f.entropy, &peer, &[])
        .unwrap()
        .handshake_id;
    assert_eq!(
        f.router.attach(0, &foreign, &peer),
        Err(RouterError::UnknownHandshake)
    );
    assert_eq!(f.router.stats(), RouterStats::default());
    assert!(f.drain().is_empty());
}

// H§8.4.6 a timed-out waiter is removed from state. Ours (R12): a command
// parked for an instance that never attaches expires after `park_ttl`
// (`CommandExpired`), leaves nothing parked, and a later attach releases
// nothing.
#[test]
fn a_timed_out_waiter_is_removed() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    f.router.park(1_000, peer.instance, 42).unwrap();
    assert_eq!(f.router.stats().parked, 1);
    assert_eq!(f.router.poll_timeout(), Some(6_000));
    f.router.handle_timeout(5_999);
    assert!(f.drain().is_empty());
    f.router.handle_timeout(6_000);
    assert_eq!(f.drain(), vec![Output::CommandExpired { ticket: 42 }]);
    assert_eq!(f.router.stats().parked, 0);
    f.attach(7_000, &peer, &[]);
    assert!(!f.drain().iter().any(|o| matches!(
        o,
        Output::CommandReady { .. } | Output::CommandExpired { .. }
    )));
}

// H§8.4.7 a pending waiter is resolved by a later local insert. Ours (R12,
// SPEC "Better than Hologram", issue #975): a command parked before its
// instance's stream exists is released by the attach, in park order; one
// parked on an attached instance is released at once.
#[test]
fn a_pending_waiter_is_resolved_by_a_later_attach() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    f.router.park(1_000, peer.instance, 1).unwrap();
    f.router.park(1_001, peer.instance, 2).unwrap();
    assert!(f.drain().is_empty());
    assert_eq!(
        f.router
            .command(peer.instance, peer.session, cid("page"))
            .err(),
        Some(RouterError::NotAttached)
    );
    f.attach(3_000, &peer, &[]);
    let ready: Vec<Output> = f
        .drain()
        .into_iter()
        .filter(|o| {
            matches!(
                o,
                Output::CommandReady { .. } | Output::CommandExpired { .. }
            )
        })
        .collect();
    assert_eq!(
        ready,
        vec![
            Output::CommandReady { ticket: 1 },
            Output::CommandReady { ticket: 2 }
        ]
    );
    assert_eq!(f.router.stats().parked, 0);
    assert!(
        f.router
            .command(peer.instance, peer.session, cid("page"))
            .is_ok()
    );
    f.router.park(3_500, peer.instance, 3).unwrap();
    assert_eq!(f.drain(), vec![Output::CommandReady { ticket: 3 }]);
    // The expiry timers of released tickets fire harmlessly.
    f.advance(10_000);
    assert!(
        !f.drain()
            .iter()
            .any(|o| matches!(o, Output::CommandExpired { .. }))
    );
}

// H§8.4.12 `sweep_expired` deletes past rows. Ours: `handle_timeout` at the
// stash's expiry removes it; redeeming it afterwards is `UnknownHandshake`.
#[test]
fn sweep_expired_deletes_past_rows() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    let hs = f.handshake(1_000, &peer, &[]);
    f.router.handle_timeout(61_000);
    assert_eq!(f.router.stats().pending_handshakes, 0);
    assert_eq!(
        f.router.attach(61_000, &hs.handshake_id, &peer),
        Err(RouterError::UnknownHandshake)
    );
}

// H§8.4.13 `sweep_expired` keeps future rows.
#[test]
fn sweep_expired_keeps_future_rows() {
    let mut f = Fixture::new();
    let a = f.peer(None);
    let b = f.peer(None);
    let _old = f.handshake(1_000, &a, &[]);
    let young = f.handshake(30_000, &b, &[]);
    f.router.handle_timeout(61_000);
    assert_eq!(f.router.stats().pending_handshakes, 1);
    assert!(f.router.attach(61_000, &young.handshake_id, &b).is_ok());
}

// ---------------------------------------------------------------------------
// Our decisions beyond the Hologram lines (R1, R2, SPEC §3 / §10)
// ---------------------------------------------------------------------------

// SPEC §3 "Better than Hologram" (H§10 Q3): handshake ids are single-use.
// Hologram lets the same id be redeemed repeatedly for 60 s.
#[test]
fn handshake_id_is_single_use() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    let hs = f.handshake(0, &peer, &[]);
    let conn = f.router.attach(1, &hs.handshake_id, &peer).unwrap();
    assert_eq!(
        f.router.attach(2, &hs.handshake_id, &peer),
        Err(RouterError::UnknownHandshake)
    );
    // The replay closed nothing and the first stream is still current.
    assert_eq!(f.router.connection(&peer.instance), Some(conn));
    assert!(!f.drain().iter().any(|o| matches!(o, Output::Close { .. })));
}

// R2 / H§8.8.60–64: the stream must claim exactly the handshake's instance,
// session and user (anonymous vs authenticated included); a mismatch still
// consumes the id.
#[test]
fn attach_with_another_identity_is_a_mismatch_and_consumes_the_id() {
    let mut f = Fixture::new();
    let peer = f.peer(user(7));
    let other_session = f.session();
    let variants = [
        f.peer_in(peer.session, peer.user.clone()),
        tidings_core::Peer {
            session: other_session,
            ..peer.clone()
        },
        tidings_core::Peer {
            user: user(8),
            ..peer.clone()
        },
        tidings_core::Peer {
            user: None,
            ..peer.clone()
        },
    ];
    for wrong in variants {
        let hs = f.handshake(0, &peer, &[]);
        assert_eq!(
            f.router.attach(1, &hs.handshake_id, &wrong),
            Err(RouterError::HandshakeMismatch)
        );
        assert_eq!(
            f.router.attach(1, &hs.handshake_id, &peer),
            Err(RouterError::UnknownHandshake)
        );
    }
    let anon = f.peer(None);
    let hs = f.handshake(0, &anon, &[]);
    let authed = tidings_core::Peer {
        user: user(1),
        ..anon.clone()
    };
    assert_eq!(
        f.router.attach(1, &hs.handshake_id, &authed),
        Err(RouterError::HandshakeMismatch)
    );
    assert_eq!(f.router.stats().instances, 0);
}

// R1 / H§3.6 E: a receipt is accepted iff it names this instance and is
// anonymous (elevation) or issued to the current user; a user receipt on an
// anonymous connection (de-elevation) and another user's receipt are refused.
#[test]
fn handshake_accepts_only_this_instances_anonymous_or_own_user_receipts() {
    let mut f = Fixture::new();
    let authed = f.peer(user(7));
    let anon = f.peer(None);
    let stranger = f.peer(None);
    let elevated = f.token(0, authed.instance, None, ":a", "page");
    let own = f.token(0, authed.instance, user(7), ":b", "page");
    let other_user = f.token(0, authed.instance, user(8), ":c", "page");
    let other_kind = f.token(0, authed.instance, Some(UserId::str("7")), ":d", "page");
    let other_instance = f.token(0, stranger.instance, None, ":e", "page");
    let hs = f.handshake(
        10,
        &authed,
        &[&elevated, &own, &other_user, &other_kind, &other_instance],
    );
    assert_eq!(hs.rejected, 3);
    assert_eq!(
        receipt_keys(&hs.receipts),
        vec![key(":a", "page"), key(":b", "page")]
    );
    let de_elevated = f.token(0, anon.instance, user(7), ":x", "page");
    let plain = f.token(0, anon.instance, None, ":y", "page");
    let hs = f.handshake(10, &anon, &[&de_elevated, &plain]);
    assert_eq!(hs.rejected, 1);
    assert_eq!(receipt_keys(&hs.receipts), vec![key(":y", "page")]);
}

// R1: duplicate `(channel, cid)` receipts keep the first; at most
// `max_bindings_per_instance` are accepted; too many tokens or too many
// pending handshakes are refused outright.
#[test]
fn handshake_limits_and_duplicates() {
    let mut f = Fixture::with_config(RouterConfig {
        max_bindings_per_instance: 2,
        max_receipts_per_handshake: 4,
        max_pending_handshakes: 2,
        ..RouterConfig::default()
    });
    let peer = f.peer(None);
    let a1 = f.token_for(1, &peer, ":a", "page");
    let a2 = f.token_for(2, &peer, ":a", "page");
    let b = f.token_for(1, &peer, ":b", "page");
    let c = f.token_for(1, &peer, ":c", "page");
    let hs = f.handshake(10, &peer, &[&a1, &a2, &b, &c]);
    assert_eq!(hs.rejected, 2);
    assert_eq!(
        receipt_keys(&hs.receipts),
        vec![key(":a", "page"), key(":b", "page")]
    );
    assert_eq!(
        f.router
            .handshake(10, &mut f.entropy, &peer, &[&a1, &a2, &b, &c, &c]),
        Err(RouterError::TooManyReceipts { got: 5, max: 4 })
    );
    f.handshake(10, &peer, &[]);
    assert_eq!(
        f.router.handshake(10, &mut f.entropy, &peer, &[]),
        Err(RouterError::TooManyHandshakes { max: 2 })
    );
    assert_eq!(f.router.stats().pending_handshakes, 2);
}

// R2 / R12: a parked command whose park TTL ran out before the attach (with
// no `handle_timeout` in between) comes out of the attach as
// `CommandExpired`, in park order with the live ones.
#[test]
fn attach_releases_parked_commands_in_order_expired_ones_as_expired() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    f.router.park(0, peer.instance, 1).unwrap();
    f.router.park(2_000, peer.instance, 2).unwrap();
    f.attach(5_000, &peer, &[]);
    let released: Vec<Output> = f
        .drain()
        .into_iter()
        .filter(|o| {
            matches!(
                o,
                Output::CommandReady { .. } | Output::CommandExpired { .. }
            )
        })
        .collect();
    assert_eq!(
        released,
        vec![
            Output::CommandExpired { ticket: 1 },
            Output::CommandReady { ticket: 2 }
        ]
    );
    assert_eq!(f.router.stats().parked, 0);
}

// R12: parking is bounded per instance and in all (`ParkFull`).
#[test]
fn parking_is_bounded_per_instance_and_in_all() {
    let mut f = Fixture::with_config(RouterConfig {
        max_parked_per_instance: 2,
        max_parked_total: 3,
        ..RouterConfig::default()
    });
    let a = f.peer(None);
    let b = f.peer(None);
    let full = RouterError::ParkFull {
        max: 2,
        max_total: 3,
    };
    f.router.park(0, a.instance, 1).unwrap();
    f.router.park(0, a.instance, 2).unwrap();
    assert_eq!(f.router.park(0, a.instance, 3), Err(full.clone()));
    f.router.park(0, b.instance, 4).unwrap();
    assert_eq!(f.router.park(0, b.instance, 5), Err(full));
    assert_eq!(f.router.stats().parked, 3);
    // Expiry frees room.
    f.advance(5_000);
    assert_eq!(f.router.stats().parked, 0);
    assert!(f.router.park(5_000, b.instance, 6).is_ok());
}
