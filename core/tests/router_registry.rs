//! Hologram's `subscription_registry_test.exs` (H§8.6), ported to the router
//! (rules R2–R5, R8, R10, R11). Hologram's registry operations map onto the
//! router's inputs as follows:
//!
//! * `apply_deltas` → a command's `commit` (R5);
//! * `attach_connection` → `handshake` + `attach` (R1, R2);
//! * `bindings_of` → `Router::bindings`; `identity_of` → `Router::peer`;
//! * `drop_for_identity_change` / `update_identity` → a commit that changes
//!   the session or user (R8);
//! * `drop_keys` (what an SSE process does on `drop_sub_receipts` /
//!   `drop_channel`) → `unsubscribe` / `unsubscribe_all` (R10);
//! * `resolve_identity` → which streams `subscribe` reaches (R10);
//! * `transition` → `commit_page` (R11);
//! * `:DOWN` → `detach` (R3);
//! * `{:sub, ch}` / `{:unsub, ch}` → `Output::ChannelUp` / `ChannelDown`.
//!   These are per *router* (the cluster-bus subscription of this node), not
//!   per connection: a channel already bound by another instance on this
//!   router crosses no zero.
//!
//! Not applicable:
//!
//! * H§8.6.39 "`register_connection`: sid and uid default to nil": a `Peer`
//!   always has a session (`SessionId` is not optional; Hologram's nil
//!   session is the no-cookie case, refused before the stream exists). The
//!   anonymous user of a fresh stream is tested by
//!   `identity_of_a_fresh_entry_is_its_attached_identity`.
//! * H§8.6.40 "`register_connection`: bindings default to `%{}`": the same
//!   behaviour as H§8.6.22, tested by `bindings_is_empty_for_a_fresh_entry`
//!   (`register_connection` is a test-only helper in Hologram).
//! * H§8.6.47 "the ETS table is created with name `:hologram_subscriptions`,
//!   `:set`, public, `named_table`, `read_concurrency: true`": storage is
//!   internal to the router; there is no table to inspect.

mod common;

use common::{
    Fixture, ch, cid, crossings, delivered, empty, instance_of, key, non_crossings, page_effects,
    receipt_keys, session_of, sorted_keys, user, user_of,
};
use tidings_core::router::{
    BindingKey, CloseReason, Committed, Output, RouterConfig, RouterError, RouterStats,
};
use tidings_core::{Cid, Identity, Peer, UserId};

fn put(f: &mut Fixture, now: u64, p: &Peer, cid_text: &str, channels: &[&str]) -> Committed {
    let mut fx = f.command(p, cid_text);
    for c in channels {
        fx.put_subscription(*c).unwrap();
    }
    f.commit(now, fx)
}

fn delete(f: &mut Fixture, now: u64, p: &Peer, cid_text: &str, channels: &[&str]) -> Committed {
    let mut fx = f.command(p, cid_text);
    for c in channels {
        fx.delete_subscription(*c).unwrap();
    }
    f.commit(now, fx)
}

fn token_user(f: &Fixture, token: &str) -> Option<UserId> {
    f.router.verify_receipt(token, 0).unwrap().user
}

// ---------------------------------------------------------------------------
// apply_deltas → command commit (R5)
// ---------------------------------------------------------------------------

// H§8.6.1 new bindings are added and tagged with the authorizing user; the
// receipt carries the same user.
#[test]
fn new_bindings_are_added_and_tagged_with_the_authorizing_user() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let q = f.peer(None);
    f.connect(0, &p);
    f.connect(0, &q);
    let c = put(&mut f, 10, &p, "page", &[":a"]);
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":a", "page")]);
    assert_eq!(token_user(&f, &c.receipt_adds[0].token), user(7));
    assert_eq!(f.bindings(&p), vec![(key(":a", "page"), true)]);
    let c = put(&mut f, 10, &q, "page", &[":a"]);
    assert_eq!(token_user(&f, &c.receipt_adds[0].token), None);
    assert_eq!(f.bindings(&q), vec![(key(":a", "page"), false)]);
}

// H§8.6.2 existing bindings are dropped.
#[test]
fn existing_bindings_are_dropped() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page"), (":b", "page")]);
    let c = delete(&mut f, 10, &p, "page", &[":a"]);
    assert_eq!(c.receipt_drops, vec![key(":a", "page")]);
    assert!(c.receipt_adds.is_empty());
    assert_eq!(f.keys(&p), vec![key(":b", "page")]);
}

// H§8.6.3 a re-add is a no-op and does not retag (the original user is
// kept); no receipt. R4: "Re-adding keeps the old tag." The anonymous tag is
// proven by surviving a later account switch.
#[test]
fn re_add_is_a_no_op_and_does_not_retag() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let anon = f.token(0, p.instance, None, ":a", "page");
    f.attach(0, &p, &[&anon]);
    f.drain();
    assert_eq!(f.bindings(&p), vec![(key(":a", "page"), false)]);
    let c = put(&mut f, 10, &p, "page", &[":a"]);
    assert!(c.receipt_adds.is_empty());
    assert!(f.drain().is_empty());
    assert_eq!(f.bindings(&p), vec![(key(":a", "page"), false)]);
    let mut fx = f.command(&p, "page");
    fx.set_user_id(user(8));
    f.commit(20, fx);
    assert_eq!(f.bindings(&p), vec![(key(":a", "page"), false)]);
}

// H§8.6.4 dropping a missing key is a no-op for the bindings. Ours (R5):
// the delete is still reported and tombstoned, so a stale receipt the client
// holds cannot bring the key back; no output goes to any stream.
#[test]
fn dropping_a_missing_key_is_a_no_op() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":b", "page")]);
    let c = delete(&mut f, 10, &p, "page", &[":a"]);
    assert_eq!(c.receipt_drops, vec![key(":a", "page")]);
    assert!(f.drain().is_empty());
    assert_eq!(f.router.stats().tombstones, 1);
    assert_eq!(f.keys(&p), vec![key(":b", "page")]);
}

// H§8.6.5 mixed adds and drops work in one call.
#[test]
fn mixed_adds_and_drops_work_in_one_call() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":b", "page")]);
    let mut fx = f.command(&p, "page");
    fx.put_subscription(":a").unwrap();
    fx.delete_subscription(":b").unwrap();
    let c = f.commit(10, fx);
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":a", "page")]);
    assert_eq!(c.receipt_drops, vec![key(":b", "page")]);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
    assert_eq!(
        crossings(&f.drain()),
        vec![(true, ch(":a")), (false, ch(":b"))]
    );
}

// H§8.6.6 both nil and non-nil tags persist: an anonymous put, then a login
// command that puts another channel.
#[test]
fn both_nil_and_non_nil_tags_persist() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    put(&mut f, 10, &p, "page", &[":a"]);
    let mut fx = f.command(&p, "page");
    fx.set_user_id(user(7));
    fx.put_subscription(":b").unwrap();
    let c = f.commit(20, fx);
    assert_eq!(token_user(&f, &c.receipt_adds[0].token), user(7));
    assert_eq!(
        f.bindings(&p),
        vec![(key(":a", "page"), false), (key(":b", "page"), true)]
    );
}

// H§8.6.7 `{:sub, ch}` is sent on a channel's first cid → `ChannelUp`.
#[test]
fn sub_is_sent_on_a_channels_first_cid() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    put(&mut f, 10, &p, "page", &["{:room, 1}"]);
    assert_eq!(f.drain(), vec![Output::ChannelUp(ch("{:room, 1}").topic())]);
}

// H§8.6.8 `{:unsub, ch}` is sent on its last cid → `ChannelDown`.
#[test]
fn unsub_is_sent_on_its_last_cid() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[("{:room, 1}", "page")]);
    delete(&mut f, 10, &p, "page", &["{:room, 1}"]);
    assert_eq!(
        f.drain(),
        vec![Output::ChannelDown(ch("{:room, 1}").topic())]
    );
    assert_eq!(f.router.stats().channels, 0);
}

// H§8.6.9 no `:sub` when the channel already has another cid. Ours
// (zero-crossings per router): nor when another instance already has it.
#[test]
fn no_sub_when_the_channel_already_has_another_cid() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    f.connect(0, &q);
    let c = put(&mut f, 10, &p, "widget", &[":a"]);
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":a", "widget")]);
    assert!(f.drain().is_empty());
    put(&mut f, 10, &q, "page", &[":a"]);
    assert!(f.drain().is_empty());
    assert_eq!(f.router.stats().channels, 1);
}

// H§8.6.10 no `:unsub` while another cid remains (of this instance or, per
// router, of another instance).
#[test]
fn no_unsub_while_another_cid_remains() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page"), (":a", "widget")]);
    f.connect_with(0, &q, &[(":a", "page")]);
    delete(&mut f, 10, &p, "widget", &[":a"]);
    assert!(f.drain().is_empty());
    delete(&mut f, 20, &p, "page", &[":a"]);
    assert!(f.drain().is_empty());
    delete(&mut f, 30, &q, "page", &[":a"]);
    assert_eq!(crossings(&f.drain()), vec![(false, ch(":a"))]);
}

// H§8.6.11 the surviving sibling cid's binding is preserved, and still
// receives.
#[test]
fn the_surviving_sibling_cids_binding_is_preserved() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect_with(0, &p, &[(":a", "page"), (":a", "widget")]);
    delete(&mut f, 10, &p, "widget", &[":a"]);
    assert_eq!(f.bindings(&p), vec![(key(":a", "page"), false)]);
    f.drain();
    f.router.broadcast_action(":a", "ping", empty()).unwrap();
    assert_eq!(
        delivered(&f.drain()),
        vec![(conn, "ping".to_owned(), vec!["page".to_owned()])]
    );
}

// H§8.6.12 no messages on an idempotent re-add or a drop of a missing key.
#[test]
fn no_messages_on_an_idempotent_re_add_or_a_drop_of_a_missing_key() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    let mut fx = f.command(&p, "page");
    fx.put_subscription(":a").unwrap();
    fx.delete_subscription(":b").unwrap();
    let c = f.commit(10, fx);
    // R5: the re-add issues nothing; the delete of a missing key is reported
    // to the originator (and tombstoned) but no stream gets any message.
    assert!(c.receipt_adds.is_empty());
    assert_eq!(c.receipt_drops, vec![key(":b", "page")]);
    assert!(f.drain().is_empty());
}

/// A command opened while attached, committed after the stream detached:
/// the only way a commit meets an unknown instance.
fn commit_after_detach(f: &mut Fixture, p: &Peer) -> Committed {
    let conn = f.connect_with(0, p, &[(":b", "page")]);
    let mut fx = f.command(p, "page");
    fx.put_subscription(":a").unwrap();
    fx.delete_subscription(":b").unwrap();
    fx.delete_subscription(":c").unwrap();
    f.router.detach(conn);
    f.drain();
    f.commit(10, fx)
}

// H§8.6.13 an unknown instance returns the inputs unchanged. R5: with no
// attached instance every put counts as newly bound (a receipt) and every
// delete as bound (a drop). Hologram-faithful; the client keeps the receipt
// and the next handshake binds it.
#[test]
fn unknown_instance_returns_the_inputs_unchanged() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let c = commit_after_detach(&mut f, &p);
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":a", "page")]);
    assert_eq!(c.receipt_drops, vec![key(":b", "page"), key(":c", "page")]);
    // And every delete is tombstoned (H§3.3 writers).
    assert_eq!(f.router.stats().tombstones, 2);
}

// H§8.6.14 an unknown instance creates no entry.
#[test]
fn unknown_instance_creates_no_entry() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    commit_after_detach(&mut f, &p);
    assert_eq!(f.router.bindings(&p.instance), None);
    assert_eq!(f.router.stats().instances, 0);
    f.router.broadcast_action(":a", "ping", empty()).unwrap();
    assert!(f.drain().is_empty());
}

// H§8.6.15 an unknown instance sends no zero-crossing.
#[test]
fn unknown_instance_sends_no_zero_crossing() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    commit_after_detach(&mut f, &p);
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.stats().channels, 0);
}

// ---------------------------------------------------------------------------
// attach_connection → handshake + attach (R1, R2)
// ---------------------------------------------------------------------------

// H§8.6.16 a fresh entry equals the validated bindings and stores the stream
// and identity.
#[test]
fn a_fresh_entry_equals_the_validated_bindings_and_stores_the_identity() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let own = f.token_for(0, &p, ":a", "page");
    let anon = f.token(0, p.instance, None, ":b", "widget");
    let conn = f.attach(5, &p, &[&own, &anon]);
    assert_eq!(
        f.bindings(&p),
        vec![(key(":a", "page"), true), (key(":b", "widget"), false)]
    );
    assert_eq!(f.router.connection(&p.instance), Some(conn));
    assert_eq!(f.router.peer(conn), Some(p));
}

// H§8.6.17 returns the deduplicated channel list (`[:room_a, :room_b]`) →
// one `ChannelUp` per distinct channel.
#[test]
fn attach_reports_each_distinct_channel_once() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let t1 = f.token_for(0, &p, ":room_a", "page");
    let t2 = f.token_for(0, &p, ":room_a", "layout");
    let t3 = f.token_for(0, &p, ":room_b", "page");
    f.attach(5, &p, &[&t1, &t2, &t3]);
    let mut ups = crossings(&f.drain());
    ups.sort();
    assert_eq!(ups, vec![(true, ch(":room_a")), (true, ch(":room_b"))]);
}

// H§8.6.18 both nil and non-nil tags persist through attach: a logout then
// drops only the user-authorized one.
#[test]
fn both_nil_and_non_nil_tags_persist_through_attach() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let own = f.token_for(0, &p, ":a", "page");
    let anon = f.token(0, p.instance, None, ":b", "page");
    let conn = f.attach(5, &p, &[&own, &anon]);
    f.drain();
    let mut fx = f.command(&p, "page");
    fx.set_user_id(None);
    f.commit(10, fx);
    assert_eq!(f.bindings(&p), vec![(key(":b", "page"), false)]);
    assert!(f.drain().contains(&Output::DropReceipts {
        conn,
        keys: vec![key(":a", "page")]
    }));
}

// H§8.6.19 supersede: the prior stream gets `{:close, :superseded}`, the
// stream is swapped, and the entry survives the prior stream's exit.
#[test]
fn supersede_closes_the_prior_stream_and_swaps_it() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let old = f.connect_with(0, &p, &[(":a", "page")]);
    let new = f.attach(10, &p, &[]);
    assert_ne!(old, new);
    // R2: the new stream gets the prior bindings' receipts refreshed.
    let out = f.drain();
    assert_eq!(
        out[0],
        Output::Close {
            conn: old,
            reason: CloseReason::Superseded
        }
    );
    assert!(
        matches!(&out[1..], [Output::RefreshReceipts { conn, receipts }]
            if *conn == new && receipts.len() == 1 && receipts[0].channel == ch(":a")),
        "{out:?}"
    );
    assert_eq!(f.router.connection(&p.instance), Some(new));
    assert_eq!(f.router.peer(old), None);
    f.router.detach(old);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
    assert!(f.drain().is_empty());
    f.router.broadcast_action(":a", "ping", empty()).unwrap();
    assert_eq!(
        delivered(&f.drain()),
        vec![(new, "ping".to_owned(), vec!["page".to_owned()])]
    );
}

// H§8.6.20 supersede keeps the prior bindings, ignores the new client's
// bindings, and takes the new identity. Ours (R2): only within the same
// session; the new user's R8 drop rule applies, drops going to the new
// stream.
#[test]
fn supersede_keeps_the_prior_bindings_ignores_the_new_ones_and_takes_the_new_user() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let own = f.token_for(0, &p, ":b", "page");
    let anon = f.token(0, p.instance, None, ":a", "page");
    let old = f.attach(0, &p, &[&own, &anon]);
    f.drain();
    let p8 = Peer {
        user: user(8),
        ..p.clone()
    };
    let theirs = f.token_for(0, &p8, ":c", "page");
    let new = f.attach(10, &p8, &[&theirs]);
    let out = f.drain();
    // Close, the R8 drop of the old user's binding, then (R2) the prior
    // bindings refreshed and the handshake's unbound key dropped.
    let rest = non_crossings(&out);
    assert_eq!(
        rest[..2],
        [
            Output::Close {
                conn: old,
                reason: CloseReason::Superseded
            },
            Output::DropReceipts {
                conn: new,
                keys: vec![key(":b", "page")]
            },
        ]
    );
    assert!(
        matches!(&rest[2], Output::RefreshReceipts { conn, receipts }
            if *conn == new && receipts.len() == 1 && receipts[0].channel == ch(":a")),
        "{rest:?}"
    );
    assert_eq!(
        rest[3..],
        [Output::DropReceipts {
            conn: new,
            keys: vec![key(":c", "page")]
        }]
    );
    assert_eq!(crossings(&out), vec![(false, ch(":b"))]);
    assert_eq!(f.bindings(&p), vec![(key(":a", "page"), false)]);
    assert_eq!(f.router.peer(new), Some(p8));
}

// SPEC §3 "Better than Hologram" (H§10 Q4): attaching a second stream for an
// instance requires the same session. Hologram lets any session take over.
#[test]
fn supersede_from_another_session_is_refused() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let old = f.connect_with(0, &p, &[(":a", "page")]);
    let session = f.session();
    let thief = Peer {
        session,
        ..p.clone()
    };
    let hs = f.handshake(10, &thief, &[]);
    assert_eq!(
        f.router.attach(10, &hs.handshake_id, &thief),
        Err(RouterError::SessionMismatch)
    );
    assert!(f.drain().is_empty());
    assert_eq!(f.router.connection(&p.instance), Some(old));
    assert_eq!(f.router.peer(old), Some(p.clone()));
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
    // The id was consumed (R2).
    assert_eq!(
        f.router.attach(10, &hs.handshake_id, &thief),
        Err(RouterError::UnknownHandshake)
    );
}

// ---------------------------------------------------------------------------
// bindings_of → Router::bindings
// ---------------------------------------------------------------------------

// H§8.6.21 returns the map. Ours: every binding, sorted by (channel, cid),
// with its tag.
#[test]
fn bindings_returns_every_binding_sorted() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let pairs = [
        ("{:room, 2}", "page"),
        (":zeta", "a"),
        ("{:room, 1}", "widget"),
        ("{:room, 1}", "layout"),
        (":alpha", "page"),
    ];
    f.connect_with(0, &p, &pairs);
    assert_eq!(f.keys(&p), sorted_keys(&pairs));
    assert!(f.bindings(&p).iter().all(|(_, tagged)| !tagged));
}

// H§8.6.22 returns `%{}` for a fresh entry.
#[test]
fn bindings_is_empty_for_a_fresh_entry() {
    let mut f = Fixture::new();
    let p = f.peer(user(1));
    f.connect(0, &p);
    assert_eq!(f.router.bindings(&p.instance), Some(vec![]));
}

// H§8.6.23 returns nil for an unknown instance.
#[test]
fn bindings_is_none_for_an_unknown_instance() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    f.connect(0, &p);
    assert_eq!(f.router.bindings(&q.instance), None);
}

// ---------------------------------------------------------------------------
// drop_for_identity_change → identity change in a commit (R8)
// ---------------------------------------------------------------------------

// H§8.6.24 drops non-nil tags ≠ the new user; the stream gets
// `IdentityChanged` then `DropReceipts`.
#[test]
fn identity_change_drops_user_tags_other_than_the_new_user() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let conn = f.connect_with(0, &p, &[(":a", "page"), (":b", "widget")]);
    let mut fx = f.command(&p, "page");
    fx.set_user_id(user(8));
    let c = f.commit(10, fx);
    assert_eq!(c.user, user(8));
    assert!(c.receipt_drops.is_empty());
    assert_eq!(
        non_crossings(&f.drain()),
        vec![
            Output::IdentityChanged {
                conn,
                session: p.session,
                user: user(8)
            },
            Output::DropReceipts {
                conn,
                keys: vec![key(":a", "page"), key(":b", "widget")]
            },
        ]
    );
    assert_eq!(f.router.bindings(&p.instance), Some(vec![]));
}

// H§8.6.25 keeps anonymous bindings (login and logout).
#[test]
fn identity_change_keeps_anonymous_bindings() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect_with(0, &p, &[(":a", "page")]);
    for (now, u) in [(10, user(7)), (20, None), (30, user(8))] {
        let mut fx = f.command(&p, "page");
        fx.set_user_id(u.clone());
        f.commit(now, fx);
        assert_eq!(
            f.drain(),
            vec![Output::IdentityChanged {
                conn,
                session: p.session,
                user: u
            }]
        );
        assert_eq!(f.bindings(&p), vec![(key(":a", "page"), false)]);
    }
}

// H§8.6.26 keeps bindings already tagged with the new user: a login-switch
// command that also puts a channel keeps that one (tagged with the
// post-handler user) and drops the old user's.
#[test]
fn identity_change_keeps_bindings_already_tagged_with_the_new_user() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let conn = f.connect_with(0, &p, &[(":x", "page")]);
    let mut fx = f.command(&p, "page");
    fx.set_user_id(user(8));
    fx.put_subscription(":y").unwrap();
    let c = f.commit(10, fx);
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":y", "page")]);
    assert_eq!(token_user(&f, &c.receipt_adds[0].token), user(8));
    assert!(f.drain().contains(&Output::DropReceipts {
        conn,
        keys: vec![key(":x", "page")]
    }));
    assert_eq!(f.bindings(&p), vec![(key(":y", "page"), true)]);
}

// H§8.6.27 returns the zero-crossing channel → `ChannelDown`.
#[test]
fn identity_change_reports_the_zero_crossing_channel() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    f.connect_with(0, &p, &[(":x", "page")]);
    let mut fx = f.command(&p, "page");
    fx.set_user_id(None);
    f.commit(10, fx);
    assert_eq!(crossings(&f.drain()), vec![(false, ch(":x"))]);
}

// H§8.6.28 omits channels that still have a surviving cid.
#[test]
fn identity_change_omits_channels_that_still_have_a_surviving_cid() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let own = f.token_for(0, &p, ":x", "page");
    let anon = f.token(0, p.instance, None, ":x", "widget");
    let conn = f.attach(0, &p, &[&own, &anon]);
    f.drain();
    let mut fx = f.command(&p, "page");
    fx.set_user_id(user(9));
    f.commit(10, fx);
    let out = f.drain();
    assert_eq!(crossings(&out), vec![]);
    assert!(out.contains(&Output::DropReceipts {
        conn,
        keys: vec![key(":x", "page")]
    }));
    assert_eq!(f.bindings(&p), vec![(key(":x", "widget"), false)]);
}

// H§8.6.29 returns `{[],[]}` for an unknown instance: a login committed after
// the stream detached drops and announces nothing.
#[test]
fn identity_change_for_an_unknown_instance_drops_nothing() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let conn = f.connect_with(0, &p, &[(":x", "page")]);
    let mut fx = f.command(&p, "page");
    fx.set_user_id(user(8));
    f.router.detach(conn);
    f.drain();
    let c = f.commit(10, fx);
    assert_eq!(c.user, user(8));
    assert!(c.receipt_drops.is_empty());
    assert_eq!(f.drain(), vec![]);
}

// ---------------------------------------------------------------------------
// drop_keys → unsubscribe / unsubscribe_all (R10)
// ---------------------------------------------------------------------------

// H§8.6.30 drops and returns the actually dropped keys.
#[test]
fn drop_keys_drops_the_bound_key_and_pushes_it() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect_with(0, &p, &[(":a", "page"), (":b", "page")]);
    f.router
        .unsubscribe(10, &instance_of(&p), ":a", Cid::PAGE)
        .unwrap();
    assert_eq!(f.keys(&p), vec![key(":b", "page")]);
    assert_eq!(
        non_crossings(&f.drain()),
        vec![Output::DropReceipts {
            conn,
            keys: vec![key(":a", "page")]
        }]
    );
}

// H§8.6.31 the zero-crossing channel is returned → `ChannelDown`.
#[test]
fn drop_keys_reports_the_zero_crossing_channel() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    f.router
        .unsubscribe(10, &instance_of(&p), ":a", Cid::PAGE)
        .unwrap();
    assert_eq!(crossings(&f.drain()), vec![(false, ch(":a"))]);
}

// H§8.6.32 a surviving-cid channel is not returned.
#[test]
fn drop_keys_does_not_report_a_channel_with_a_surviving_cid() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page"), (":a", "widget")]);
    f.router
        .unsubscribe(10, &instance_of(&p), ":a", Cid::PAGE)
        .unwrap();
    assert_eq!(crossings(&f.drain()), vec![]);
    assert_eq!(f.keys(&p), vec![key(":a", "widget")]);
}

// H§8.6.33 keys that are not present are filtered out: nothing is unbound.
// R10 / H§3.6 D: `unsubscribe` still pushes the *requested* key to every
// named stream (the client may hold a stale receipt); `unsubscribe_all`
// pushes nothing where nothing was bound.
#[test]
fn drop_keys_filters_out_keys_that_are_not_present() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect_with(0, &p, &[(":a", "page")]);
    f.router
        .unsubscribe(10, &instance_of(&p), ":z", Cid::PAGE)
        .unwrap();
    f.router
        .unsubscribe(10, &instance_of(&p), ":a", cid("widget"))
        .unwrap();
    assert_eq!(
        f.drain(),
        vec![
            Output::DropReceipts {
                conn,
                keys: vec![key(":z", "page")]
            },
            Output::DropReceipts {
                conn,
                keys: vec![key(":a", "widget")]
            }
        ]
    );
    f.router
        .unsubscribe_all(10, &instance_of(&p), ":z")
        .unwrap();
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
}

// H§8.6.34 sends no `{:unsub}` message (the caller unsubscribes once). Ours:
// removing every cid of a channel yields exactly one `ChannelDown` and one
// `DropReceipts` listing the keys sorted.
#[test]
fn drop_keys_reports_each_channel_down_once() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect_with(0, &p, &[(":a", "widget"), (":a", "page"), (":a", "layout")]);
    f.router
        .unsubscribe_all(10, &instance_of(&p), ":a")
        .unwrap();
    assert_eq!(
        f.drain(),
        vec![
            Output::ChannelDown(ch(":a").topic()),
            Output::DropReceipts {
                conn,
                keys: sorted_keys(&[(":a", "widget"), (":a", "page"), (":a", "layout")])
            }
        ]
    );
}

// H§8.6.35 returns `{[],[]}` for an unknown instance: no stream, no output.
#[test]
fn drop_keys_for_an_unknown_instance_does_nothing() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    f.router
        .unsubscribe(10, &instance_of(&q), ":a", Cid::PAGE)
        .unwrap();
    f.router
        .unsubscribe_all(10, &instance_of(&q), ":a")
        .unwrap();
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
}

// ---------------------------------------------------------------------------
// identity_of → Router::peer; register_connection → attach
// ---------------------------------------------------------------------------

// H§8.6.36 returns `{nil,nil}` for a freshly registered entry. Ours: a fresh
// stream's identity is the attached peer's, anonymous here.
#[test]
fn identity_of_a_fresh_entry_is_its_attached_identity() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect(0, &p);
    assert_eq!(
        f.router.peer(conn),
        Some(Peer {
            instance: p.instance,
            session: p.session,
            user: None
        })
    );
}

// H§8.6.37 returns nil for an unknown instance (or a stale stream handle).
#[test]
fn identity_of_an_unknown_instance_is_none() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    let conn = f.connect(0, &p);
    assert_eq!(f.router.connection(&q.instance), None);
    f.router.detach(conn);
    assert_eq!(f.router.peer(conn), None);
    assert_eq!(f.router.connection(&p.instance), None);
}

// H§8.6.38 the pid and ref round-trip → the stream handle round-trips, and a
// handle is never reused for a later stream of the same instance.
#[test]
fn register_connection_round_trips_the_stream() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    let cp = f.connect(0, &p);
    let cq = f.connect(0, &q);
    assert_ne!(cp, cq);
    assert_eq!(f.router.connection(&p.instance), Some(cp));
    assert_eq!(f.router.peer(cq).map(|x| x.instance), Some(q.instance));
    f.router.detach(cp);
    let cp2 = f.connect(10, &p);
    assert_ne!(cp2, cp);
    assert_eq!(f.router.peer(cp), None);
    assert_eq!(f.router.peer(cp2).map(|x| x.instance), Some(p.instance));
}

// ---------------------------------------------------------------------------
// resolve_identity → who `subscribe` reaches (R10)
// ---------------------------------------------------------------------------

fn add_receipt_conns(out: &[Output]) -> Vec<tidings_core::router::ConnId> {
    out.iter()
        .filter_map(|o| match o {
            Output::AddReceipts { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

// H§8.6.41 `{:instance,…}` returns that stream only.
#[test]
fn resolve_instance_returns_that_stream() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let sibling = f.tab(&p);
    let cp = f.connect(0, &p);
    f.connect(0, &sibling);
    let n = f
        .router
        .subscribe(10, &instance_of(&p), ":a", Cid::PAGE)
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(add_receipt_conns(&f.drain()), vec![cp]);
    assert_eq!(f.router.bindings(&sibling.instance), Some(vec![]));
}

// H§8.6.42 a missing instance returns `[]`.
#[test]
fn resolve_missing_instance_returns_nothing() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    f.connect(0, &p);
    assert_eq!(
        f.router
            .subscribe(10, &instance_of(&q), ":a", Cid::PAGE)
            .unwrap(),
        0
    );
    assert_eq!(f.drain(), vec![]);
}

// H§8.6.43 `{:user,…}` returns all matching entries (every tab of every
// session of that user), in instance-id order.
#[test]
fn resolve_user_returns_all_matching_entries() {
    let mut f = Fixture::new();
    let a1 = f.peer(user(7));
    let a2 = f.tab(&a1);
    let b = f.peer(user(7));
    let other = f.peer(user(8));
    let anon = f.peer(None);
    let mut mine = Vec::new();
    for p in [&a1, &a2, &b] {
        mine.push((p.instance, f.connect(0, p)));
    }
    f.connect(0, &other);
    f.connect(0, &anon);
    mine.sort();
    let n = f
        .router
        .subscribe(10, &user_of(7), ":a", Cid::PAGE)
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        add_receipt_conns(&f.drain()),
        mine.iter().map(|(_, c)| *c).collect::<Vec<_>>()
    );
}

// H§8.6.44 `{:session,…}` returns all matching entries.
#[test]
fn resolve_session_returns_all_matching_entries() {
    let mut f = Fixture::new();
    let a1 = f.peer(None);
    let a2 = f.tab(&a1);
    let b = f.peer(None);
    let mut mine = [
        (a1.instance, f.connect(0, &a1)),
        (a2.instance, f.connect(0, &a2)),
    ];
    f.connect(0, &b);
    mine.sort();
    let n = f
        .router
        .subscribe(10, &session_of(&a1), ":a", Cid::PAGE)
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        add_receipt_conns(&f.drain()),
        mine.iter().map(|(_, c)| *c).collect::<Vec<_>>()
    );
}

// H§8.6.45 no user match returns `[]`; matching is exact (SPEC §2:
// `{:user, 7}` ≠ `{:user, "7"}`).
#[test]
fn no_user_match_returns_nothing() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    f.connect(0, &p);
    for u in [
        Identity::User(UserId::int(9)),
        Identity::User(UserId::str("7")),
    ] {
        assert_eq!(f.router.subscribe(10, &u, ":a", Cid::PAGE).unwrap(), 0);
    }
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.bindings(&p.instance), Some(vec![]));
}

// H§8.6.46 `start_link` registers by name → a new router starts empty.
#[test]
fn a_new_router_starts_empty() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    assert_eq!(f.router.config(), &RouterConfig::default());
    assert_eq!(f.router.stats(), RouterStats::default());
    assert_eq!(f.router.poll_timeout(), None);
    assert_eq!(f.router.poll_output(), None);
    assert_eq!(f.router.bindings(&p.instance), None);
    assert_eq!(f.router.connection(&p.instance), None);
}

// ---------------------------------------------------------------------------
// transition → commit_page (R11)
// ---------------------------------------------------------------------------

fn page(
    f: &mut Fixture,
    now: u64,
    p: &Peer,
    declared: &[(&str, &str)],
    claimed: &[BindingKey],
) -> Committed {
    let fx = page_effects(p, declared);
    f.router.commit_page(now, p, fx, claimed).unwrap()
}

// H§8.6.48 the client diff is driven by claimed keys, not registry bindings.
#[test]
fn the_client_diff_is_driven_by_claimed_keys_not_bindings() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    let c = page(
        &mut f,
        10,
        &p,
        &[(":a", "page"), (":b", "page")],
        &[key(":b", "page"), key(":c", "page")],
    );
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":a", "page")]);
    assert_eq!(c.receipt_drops, vec![key(":c", "page")]);
    assert_eq!(f.keys(&p), vec![key(":a", "page"), key(":b", "page")]);
}

// H§8.6.49 the registry bindings are replaced with the new set. A lying
// client's claimed key never enters it (H§3.6 B).
#[test]
fn the_bindings_are_replaced_with_the_new_set() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page"), (":b", "layout")]);
    let declared = [(":b", "layout"), (":c", "page"), (":d", "widget")];
    page(&mut f, 10, &p, &declared, &[key(":fake", "page")]);
    assert_eq!(f.keys(&p), sorted_keys(&declared));
}

// H§8.6.50 both nil and non-nil tags persist. Ours (R11, as Hologram): every
// declared binding is tagged with the post-render user, re-declared ones
// retagged; anonymous renders tag none.
#[test]
fn transition_tags_every_binding_with_the_post_render_user() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let anon = f.token(0, p.instance, None, ":a", "page");
    f.attach(0, &p, &[&anon]);
    let c = page(&mut f, 10, &p, &[(":a", "page"), (":b", "page")], &[]);
    assert!(
        c.receipt_adds
            .iter()
            .all(|r| token_user(&f, &r.token) == user(7))
    );
    assert_eq!(
        f.bindings(&p),
        vec![(key(":a", "page"), true), (key(":b", "page"), true)]
    );
    let q = f.peer(None);
    f.connect(0, &q);
    page(&mut f, 10, &q, &[(":a", "page"), (":b", "page")], &[]);
    assert_eq!(
        f.bindings(&q),
        vec![(key(":a", "page"), false), (key(":b", "page"), false)]
    );
}

// H§8.6.51 full overlap gives empty diffs.
#[test]
fn full_overlap_gives_empty_diffs() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let decl = [(":a", "page"), (":b", "layout")];
    f.connect_with(0, &p, &decl);
    let c = page(&mut f, 10, &p, &decl, &sorted_keys(&decl));
    assert!(c.receipt_adds.is_empty() && c.receipt_drops.is_empty());
}

// H§8.6.52 partial overlap gives the correct adds and drops.
#[test]
fn partial_overlap_gives_the_correct_adds_and_drops() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page"), (":b", "layout")]);
    let c = page(
        &mut f,
        10,
        &p,
        &[(":b", "layout"), (":d", "page"), (":c", "page")],
        &sorted_keys(&[(":a", "page"), (":b", "layout")]),
    );
    assert_eq!(
        receipt_keys(&c.receipt_adds),
        vec![key(":c", "page"), key(":d", "page")]
    );
    assert_eq!(c.receipt_drops, vec![key(":a", "page")]);
}

// H§8.6.53 `:sub` is sent on a first cid.
#[test]
fn transition_sends_sub_on_a_first_cid() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    page(&mut f, 10, &p, &[(":a", "page"), (":b", "page")], &[]);
    assert_eq!(f.drain(), vec![Output::ChannelUp(ch(":b").topic())]);
}

// H§8.6.54 `:unsub` is sent on a last cid.
#[test]
fn transition_sends_unsub_on_a_last_cid() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page"), (":b", "page")]);
    page(&mut f, 10, &p, &[(":a", "page")], &[]);
    assert_eq!(f.drain(), vec![Output::ChannelDown(ch(":b").topic())]);
}

// H§8.6.55 swapping one cid for another on the same channel sends no
// messages (added before dropped: the channel never crosses zero).
#[test]
fn swapping_one_cid_for_another_on_the_same_channel_sends_no_messages() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    page(&mut f, 10, &p, &[(":a", "widget")], &[key(":a", "page")]);
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.keys(&p), vec![key(":a", "widget")]);
}

// H§8.6.56 identical sets send no messages.
#[test]
fn identical_sets_send_no_messages() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let decl = [(":a", "page"), (":a", "layout"), (":b", "widget")];
    f.connect_with(0, &p, &decl);
    page(&mut f, 10, &p, &decl, &sorted_keys(&decl));
    assert_eq!(f.drain(), vec![]);
}

// H§8.6.57 an unknown instance still returns the client diff.
#[test]
fn an_unknown_instance_still_returns_the_client_diff() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let c = page(
        &mut f,
        10,
        &p,
        &[(":a", "page"), (":b", "layout")],
        &[key(":b", "layout"), key(":c", "page")],
    );
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":a", "page")]);
    assert_eq!(c.receipt_drops, vec![key(":c", "page")]);
}

// H§8.6.58 an unknown instance creates no entry.
#[test]
fn an_unknown_instance_creates_no_entry_on_transition() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    page(&mut f, 10, &p, &[(":a", "page")], &[]);
    assert_eq!(f.router.bindings(&p.instance), None);
    assert_eq!(f.router.stats().instances, 0);
}

// H§8.6.59 an unknown instance sends no messages.
#[test]
fn an_unknown_instance_sends_no_messages_on_transition() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    page(&mut f, 10, &p, &[(":a", "page")], &[key(":b", "page")]);
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.stats().channels, 0);
}

// SPEC §3 "Better than Hologram" (H§10 Q4): navigation requires the same
// session as the attached instance; Hologram accepts any instance_id.
#[test]
fn navigation_from_another_session_is_refused() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    let session = f.session();
    let thief = Peer {
        session,
        ..p.clone()
    };
    let fx = page_effects(&thief, &[(":evil", "page")]);
    assert_eq!(
        f.router.commit_page(10, &thief, fx, &[]),
        Err(RouterError::SessionMismatch)
    );
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
    assert_eq!(f.drain(), vec![]);
}

// ---------------------------------------------------------------------------
// update_identity and :DOWN
// ---------------------------------------------------------------------------

// H§8.6.60 `update_identity` updates sid and uid.
#[test]
fn update_identity_updates_the_session_and_user() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect(0, &p);
    let s2 = f.session();
    let mut fx = f.command(&p, "page");
    fx.set_session_id(s2);
    fx.set_user_id(user(7));
    let c = f.commit(10, fx);
    assert_eq!((c.session, c.user.clone()), (s2, user(7)));
    assert_eq!(
        f.router.peer(conn),
        Some(Peer {
            instance: p.instance,
            session: s2,
            user: user(7)
        })
    );
    assert_eq!(
        f.drain(),
        vec![Output::IdentityChanged {
            conn,
            session: s2,
            user: user(7)
        }]
    );
    // The old session no longer owns the instance.
    assert_eq!(
        f.router.command(p.instance, p.session, cid("page")).err(),
        Some(RouterError::SessionMismatch)
    );
}

// H§8.6.61 `update_identity` is a no-op for an unknown instance.
#[test]
fn update_identity_is_a_no_op_for_an_unknown_instance() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect(0, &p);
    let s2 = f.session();
    let mut fx = f.command(&p, "page");
    fx.set_session_id(s2);
    f.router.detach(conn);
    let c = f.commit(10, fx);
    assert_eq!(c.session, s2);
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.stats().instances, 0);
}

// H§8.6.62 `:DOWN` of the monitored pid deletes the entry → `detach` forgets
// the instance and its bindings (R3), crossing channels down, with no
// tombstones.
#[test]
fn down_of_the_monitored_stream_deletes_the_entry() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect_with(0, &p, &[(":a", "page"), (":b", "widget")]);
    f.router.detach(conn);
    assert_eq!(f.router.bindings(&p.instance), None);
    assert_eq!(f.router.connection(&p.instance), None);
    let mut downs = crossings(&f.drain());
    downs.sort();
    assert_eq!(downs, vec![(false, ch(":a")), (false, ch(":b"))]);
    assert_eq!(f.router.stats(), RouterStats::default());
}

// H§8.6.63 other entries are untouched.
#[test]
fn other_entries_are_untouched_by_a_detach() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.tab(&p);
    let cp = f.connect_with(0, &p, &[(":a", "page")]);
    let cq = f.connect_with(0, &q, &[(":a", "page")]);
    f.router.detach(cp);
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.keys(&q), vec![key(":a", "page")]);
    f.router.broadcast_action(":a", "ping", empty()).unwrap();
    assert_eq!(
        delivered(&f.drain()),
        vec![(cq, "ping".to_owned(), vec!["page".to_owned()])]
    );
}

// H§8.6.64 a `:DOWN` with an unknown ref is ignored → a stale `ConnId`
// (already detached, or superseded) does nothing.
#[test]
fn down_with_an_unknown_ref_is_ignored() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let first = f.connect_with(0, &p, &[(":a", "page")]);
    f.router.detach(first);
    f.drain();
    let second = f.connect_with(10, &p, &[(":a", "page")]);
    f.router.detach(first);
    f.router.detach(first);
    let third = f.attach(20, &p, &[]);
    f.drain();
    f.router.detach(second);
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.connection(&p.instance), Some(third));
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
}

// SPEC §3 "Better than Hologram" (indexed registry) / R8: identity lookups
// follow identity changes — after a login and a session rotation the tab is
// found under its new user and session, not the old ones; after a detach,
// under neither.
#[test]
fn identity_indexes_follow_an_identity_change() {
    let mut f = Fixture::new();
    let p = f.peer(user(1));
    let conn = f.connect(0, &p);
    let s2 = f.session();
    let mut fx = f.command(&p, "page");
    fx.set_user_id(user(2));
    fx.set_session_id(s2);
    f.commit(10, fx);
    f.drain();
    for (identity, reached) in [
        (user_of(1), 0),
        (Identity::Session(p.session), 0),
        (user_of(2), 1),
        (Identity::Session(s2), 1),
    ] {
        assert_eq!(
            f.router.subscribe(20, &identity, ":a", Cid::PAGE).unwrap(),
            reached,
            "{identity:?}"
        );
    }
    f.router.detach(conn);
    assert_eq!(
        f.router
            .subscribe(30, &user_of(2), ":a", Cid::PAGE)
            .unwrap(),
        0
    );
    assert_eq!(
        f.router
            .subscribe(30, &Identity::Session(s2), ":a", Cid::PAGE)
            .unwrap(),
        0
    );
}

// R3: a stale handle never reaches a newer instance that reuses its storage.
#[test]
fn a_stale_handle_never_detaches_another_instance() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    let old = f.connect_with(0, &p, &[(":a", "page")]);
    f.router.detach(old);
    let cq = f.connect_with(10, &q, &[(":a", "page")]);
    f.router.detach(old);
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.connection(&q.instance), Some(cq));
    assert_eq!(f.keys(&q), vec![key(":a", "page")]);
}
