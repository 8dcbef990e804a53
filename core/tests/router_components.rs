//! Hologram's `component_test.exs` (H§8.10) — the handler-side recording
//! API — ported to `Effects`, plus SPEC §4's transaction rules (R5, R6, R8,
//! R11): nothing is committed when the `Effects` is dropped, the last op on
//! a key wins, and a commit applies subscription changes, then the identity
//! change, then self-echoes, then broadcasts.
//!
//! Not applicable (Elixir API shapes with no counterpart in the Rust API,
//! where params are one pre-encoded `Payload` the core never reads and there
//! are no default arguments):
//!
//! * H§8.10.8 "`put_broadcast/3` defaults params to `%{}`" and H§8.10.14
//!   "`/4` defaults params": there is no arity without params; the transport
//!   encodes `{}` itself.
//! * H§8.10.9 "`put_broadcast/4` accepts a keyword list" and H§8.10.15
//!   "`/5` accepts a keyword list": keyword-list vs map normalisation happens
//!   when the app encodes the payload, outside the core. That the payload is
//!   stored verbatim is tested by H§8.10.10 / H§8.10.16.

mod common;

use common::{
    Fixture, ch, cid, crossings, delivered, echoes, empty, instance_of, key, page_effects, payload,
    receipt_keys, session_of, user, user_of,
};
use tidings_core::router::{HandlerKind, Output, RouterConfig, RouterError};
use tidings_core::{Channel, Cid, Effects, Identity, Peer, UserId};

fn s(text: &str) -> String {
    text.to_owned()
}

fn chans(fx: &Effects) -> Vec<Channel> {
    fx.subscriptions().to_vec()
}

// ---------------------------------------------------------------------------
// H§8.10 component_test.exs
// ---------------------------------------------------------------------------

// H§8.10.1 `delete_subscription` removes `{ch, cid}` from the list.
#[test]
fn delete_subscription_removes_the_channel_from_the_list() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page"), (":b", "page")]);
    let mut fx = f.command(&p, "page");
    assert_eq!(chans(&fx), vec![ch(":a"), ch(":b")]);
    fx.delete_subscription(":a").unwrap();
    assert_eq!(chans(&fx), vec![ch(":b")]);
}

// H§8.10.2 it leaves other cids' bindings intact (encapsulation): a
// component's delete only ever touches its own cid.
#[test]
fn delete_subscription_leaves_other_cids_bindings() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page"), (":a", "widget")]);
    let mut fx = f.command(&p, "widget");
    assert_eq!(chans(&fx), vec![ch(":a")]);
    fx.delete_subscription(":a").unwrap();
    let c = f.commit(10, fx);
    assert_eq!(c.receipt_drops, vec![key(":a", "widget")]);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
}

// H§8.10.3 it records `:delete`: on commit the bound key is unbound, reported
// as a drop and tombstoned (R5).
#[test]
fn delete_subscription_records_a_delete() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    let mut fx = f.command(&p, "page");
    fx.delete_subscription(":a").unwrap();
    let c = f.commit(10, fx);
    assert_eq!(c.receipt_drops, vec![key(":a", "page")]);
    assert_eq!(f.keys(&p), vec![]);
    assert_eq!(f.router.stats().tombstones, 1);
    assert_eq!(crossings(&f.drain()), vec![(false, ch(":a"))]);
}

// H§8.10.4 it records `:delete` even when absent. Ours (R5): attached or
// not, every delete is reported and tombstoned, so a stale receipt the client
// still holds cannot bring the binding back at its next handshake.
#[test]
fn delete_subscription_records_a_delete_even_when_absent() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let stale = f.token_for(0, &p, ":a", "page");
    let conn = f.connect(0, &p);
    let mut fx = f.command(&p, "page");
    fx.delete_subscription(":a").unwrap();
    assert!(fx.subscriptions().is_empty());
    let attached = fx.clone();
    let c = f.commit(10, attached);
    assert_eq!(c.receipt_drops, vec![key(":a", "page")]);
    assert_eq!(f.router.stats().tombstones, 1);
    assert!(
        !f.accepts(20, &p, &stale),
        "the stale receipt must be refused"
    );
    f.router.detach(conn);
    let c = f.commit(30, fx);
    assert_eq!(c.receipt_drops, vec![key(":a", "page")]);
}

// H§8.10.5 an invalid channel raises. Ours: `Err` with the channel error;
// nothing recorded.
#[test]
fn delete_subscription_with_an_invalid_channel_is_an_error() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    let mut fx = f.command(&p, "page");
    for bad in ["{:a}", "\"a\"", "{:a, [1]}"] {
        assert!(
            matches!(fx.delete_subscription(bad), Err(RouterError::Channel(_))),
            "{bad}"
        );
    }
    assert_eq!(chans(&fx), vec![ch(":a")]);
    let c = f.commit(10, fx);
    assert!(c.receipt_drops.is_empty());
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
    assert_eq!(f.drain(), vec![]);
}

// H§8.10.6 `put_broadcast` prepends, so the list is in reverse call order.
// SPEC §4 (ours): `broadcasts()` is in call order.
#[test]
fn put_broadcast_keeps_the_list_in_call_order() {
    let mut fx = Effects::init(&lone_peer(), Cid::PAGE);
    for name in ["one", "two", "three"] {
        fx.put_broadcast(":a", name, empty()).unwrap();
    }
    let names: Vec<&str> = fx.broadcasts().iter().map(|b| b.action.as_str()).collect();
    assert_eq!(names, vec!["one", "two", "three"]);
}

/// A peer for recording-only tests (no router involved).
fn lone_peer() -> Peer {
    let mut e = tidings_core::SeededEntropy::new(99);
    Peer {
        instance: tidings_core::InstanceId::mint(&mut e),
        session: tidings_core::SessionId::mint(&mut e),
        user: None,
    }
}

// H§8.10.7 `put_broadcast` with an invalid channel raises at the call site.
// Ours: `Err` at the call, nothing queued; an invalid action name likewise.
#[test]
fn put_broadcast_with_an_invalid_channel_errors_at_the_call_site() {
    let mut fx = Effects::init(&lone_peer(), Cid::PAGE);
    assert!(matches!(
        fx.put_broadcast("{:room}", "x", empty()),
        Err(RouterError::Channel(_))
    ));
    assert!(matches!(
        fx.put_broadcast(":room", "", empty()),
        Err(RouterError::ActionName { .. })
    ));
    assert!(fx.broadcasts().is_empty());
}

// H§8.10.10 `put_broadcast/4` accepts a map. Ours: the pre-encoded params
// are stored verbatim with the channel and action.
#[test]
fn put_broadcast_stores_the_params_verbatim() {
    let mut fx = Effects::init(&lone_peer(), Cid::PAGE);
    fx.put_broadcast("{:room, 1}", "said", payload(br#"{"text":"hi"}"#))
        .unwrap();
    let b = &fx.broadcasts()[0];
    assert_eq!(b.channel, ch("{:room, 1}"));
    assert_eq!(b.action.as_str(), "said");
    assert_eq!(b.params.as_bytes(), br#"{"text":"hi"}"#);
    assert!(b.except.is_empty());
}

// H§8.10.11 `put_broadcast_except` wraps a single identity: a one-element
// slice is stored as a one-element list.
#[test]
fn put_broadcast_except_with_a_single_identity() {
    let p = lone_peer();
    let mut fx = Effects::init(&p, Cid::PAGE);
    fx.put_broadcast_except(&[instance_of(&p)], ":a", "x", empty())
        .unwrap();
    assert_eq!(fx.broadcasts()[0].except, vec![instance_of(&p)]);
}

// H§8.10.12 `put_broadcast_except` stores a list unchanged (order and
// repeats kept; identities not validated).
#[test]
fn put_broadcast_except_stores_a_list_unchanged() {
    let p = lone_peer();
    let list = vec![
        user_of(7),
        session_of(&p),
        user_of(7),
        Identity::User(UserId::str("nobody")),
    ];
    let mut fx = Effects::init(&p, Cid::PAGE);
    fx.put_broadcast_except(&list, ":a", "x", empty()).unwrap();
    assert_eq!(fx.broadcasts()[0].except, list);
}

// H§8.10.13 `put_broadcast_except` with an invalid channel raises.
#[test]
fn put_broadcast_except_with_an_invalid_channel_is_an_error() {
    let p = lone_peer();
    let mut fx = Effects::init(&p, Cid::PAGE);
    assert!(matches!(
        fx.put_broadcast_except(&[user_of(1)], "room", "x", empty()),
        Err(RouterError::Channel(_))
    ));
    assert!(fx.broadcasts().is_empty());
}

// H§8.10.16 `/5` accepts a map → `put_broadcast_except` stores the params
// verbatim too.
#[test]
fn put_broadcast_except_stores_the_params_verbatim() {
    let p = lone_peer();
    let mut fx = Effects::init(&p, Cid::PAGE);
    fx.put_broadcast_except(&[user_of(1)], ":a", "x", payload(b"[1,2]"))
        .unwrap();
    assert_eq!(fx.broadcasts()[0].params.as_bytes(), b"[1,2]");
}

// H§8.10.17 `put_subscription` appends `{ch, cid}`.
#[test]
fn put_subscription_appends_the_channel() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":m", "page")]);
    let mut fx = f.command(&p, "page");
    fx.put_subscription(":z").unwrap();
    fx.put_subscription(":a").unwrap();
    assert_eq!(chans(&fx), vec![ch(":m"), ch(":z"), ch(":a")]);
}

// H§8.10.18 it records `:put`: on commit the key is bound to this component
// and a receipt issued (R5).
#[test]
fn put_subscription_records_a_put() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect(0, &p);
    let mut fx = f.command(&p, "widget");
    fx.put_subscription(":a").unwrap();
    let c = f.commit(10, fx);
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":a", "widget")]);
    assert_eq!(f.keys(&p), vec![key(":a", "widget")]);
    f.drain();
    f.router.broadcast_action(":a", "x", empty()).unwrap();
    assert_eq!(
        delivered(&f.drain()),
        vec![(conn, s("x"), vec![s("widget")])]
    );
}

// H§8.10.19 the list and ops stay in sync across calls.
#[test]
fn the_list_and_the_ops_stay_in_sync() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    let mut fx = f.command(&p, "page");
    fx.put_subscription(":a").unwrap();
    fx.put_subscription(":b").unwrap();
    fx.delete_subscription(":a").unwrap();
    fx.put_subscription(":c").unwrap();
    assert_eq!(chans(&fx), vec![ch(":b"), ch(":c")]);
    let c = f.commit(10, fx);
    assert_eq!(
        receipt_keys(&c.receipt_adds),
        vec![key(":b", "page"), key(":c", "page")]
    );
    assert_eq!(c.receipt_drops, vec![key(":a", "page")]);
    assert_eq!(f.keys(&p), vec![key(":b", "page"), key(":c", "page")]);
}

// H§8.10.20 it dedupes a repeated key (one list entry, one receipt), in a
// command and in `init`.
#[test]
fn put_subscription_dedupes_a_repeated_key() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    let mut fx = f.command(&p, "page");
    fx.put_subscription(":a").unwrap();
    fx.put_subscription(":a").unwrap();
    assert_eq!(chans(&fx), vec![ch(":a")]);
    assert_eq!(f.commit(10, fx).receipt_adds.len(), 1);
    let q = f.peer(None);
    let mut init = Effects::init(&q, Cid::PAGE);
    init.put_subscription(":a").unwrap();
    init.put_subscription(":a").unwrap();
    assert_eq!(chans(&init), vec![ch(":a")]);
    let c = f.router.commit_page(10, &q, vec![init], &[]).unwrap();
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":a", "page")]);
}

// H§8.10.21 an invalid channel raises.
#[test]
fn put_subscription_with_an_invalid_channel_is_an_error() {
    let mut fx = Effects::init(&lone_peer(), Cid::PAGE);
    for bad in ["{:foo}", "\"my-channel\"", "1.5", "{\"room\", 42}"] {
        assert!(
            matches!(fx.put_subscription(bad), Err(RouterError::Channel(_))),
            "{bad}"
        );
    }
    assert!(fx.subscriptions().is_empty());
}

// ---------------------------------------------------------------------------
// SPEC §4 transaction rules
// ---------------------------------------------------------------------------

// SPEC §4 "Better than Hologram" (H§10 Q7): in `init`, `subscriptions()` and
// `broadcasts()` start empty for *every* component, not only the page;
// Hologram threads one struct through the render tree and leaks earlier
// components' keys.
#[test]
fn init_subscriptions_start_empty_for_every_component() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":w", "widget"), (":l", "layout")]);
    let mut page = Effects::init(&p, Cid::PAGE);
    page.put_subscription(":p").unwrap();
    page.put_broadcast(":p", "x", empty()).unwrap();
    let mut layout = Effects::init(&p, Cid::LAYOUT);
    assert!(layout.subscriptions().is_empty());
    assert!(layout.broadcasts().is_empty());
    layout.put_subscription(":l").unwrap();
    let widget = Effects::init(&p, cid("widget"));
    assert!(widget.subscriptions().is_empty());
    assert!(widget.broadcasts().is_empty());
    assert_eq!(widget.kind(), HandlerKind::Init);
    let c = f
        .router
        .commit_page(10, &p, vec![page, layout, widget], &[])
        .unwrap();
    assert_eq!(
        receipt_keys(&c.receipt_adds),
        vec![key(":l", "layout"), key(":p", "page")]
    );
    assert_eq!(f.keys(&p), vec![key(":l", "layout"), key(":p", "page")]);
}

// SPEC §4 / H§4.3 feature tests / H§8.9.3: a command's `subscriptions()`
// starts from the target component's own bindings only; `broadcasts()`
// starts empty.
#[test]
fn command_subscriptions_start_with_only_the_target_components_bindings() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(
        0,
        &p,
        &[("{:room, 17}", "page"), ("{:room, 18}", "component_5")],
    );
    let fx = f.command(&p, "component_5");
    assert_eq!(chans(&fx), vec![ch("{:room, 18}")]);
    assert!(fx.broadcasts().is_empty());
    assert_eq!(fx.kind(), HandlerKind::Command);
    assert_eq!(fx.cid(), &cid("component_5"));
    assert_eq!(fx.instance_id(), p.instance);
    assert_eq!(chans(&f.command(&p, "page")), vec![ch("{:room, 17}")]);
    assert!(f.command(&p, "nobody").subscriptions().is_empty());
}

// SPEC §4: on `Err`/panic nothing is committed — a dropped `Effects` leaves
// bindings, tombstones, identity, outputs and other tabs untouched.
#[test]
fn nothing_is_committed_when_the_effects_are_dropped() {
    let mut f = Fixture::new();
    let p = f.peer(user(1));
    let sib = f.tab(&p);
    let conn = f.connect_with(0, &p, &[(":a", "page")]);
    f.connect_with(0, &sib, &[(":a", "page")]);
    let before = f.router.stats();
    {
        let s2 = f.session();
        let mut fx = f.command(&p, "page");
        fx.put_subscription(":b").unwrap();
        fx.delete_subscription(":a").unwrap();
        fx.put_broadcast(":a", "leak", empty()).unwrap();
        fx.set_user_id(user(2));
        fx.set_session_id(s2);
        assert_eq!(fx.user_id(), user(2).as_ref());
        assert_eq!(fx.session_id(), s2);
        drop(fx);
    }
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.stats(), before);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
    assert_eq!(f.router.peer(conn), Some(p.clone()));
    // Page effects likewise.
    let mut page = Effects::init(&p, Cid::PAGE);
    page.put_subscription(":c").unwrap();
    page.put_broadcast(":a", "leak", empty()).unwrap();
    page.set_user_id(None);
    drop(page);
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
    assert_eq!(f.router.peer(conn), Some(p));
}

// SPEC §4 / H§4.2: the last op on a key wins — put then delete is a delete
// (nothing bound, no receipt; R5 reports the drop and tombstones it).
#[test]
fn last_op_wins_put_then_delete() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    let mut fx = f.command(&p, "page");
    fx.put_subscription(":a").unwrap();
    fx.delete_subscription(":a").unwrap();
    assert!(fx.subscriptions().is_empty());
    let c = f.commit(10, fx);
    assert!(c.receipt_adds.is_empty());
    assert_eq!(c.receipt_drops, vec![key(":a", "page")]);
    assert_eq!(f.keys(&p), vec![]);
    assert_eq!(f.router.stats().tombstones, 1);
    assert_eq!(f.drain(), vec![]);
}

// SPEC §4 / H§4.2: delete then put is a put — an unbound key is bound with a
// receipt; a bound key stays bound with no drop, no receipt, no tombstone.
#[test]
fn last_op_wins_delete_then_put() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":bound", "page")]);
    let mut fx = f.command(&p, "page");
    fx.delete_subscription(":bound").unwrap();
    fx.put_subscription(":bound").unwrap();
    fx.delete_subscription(":new").unwrap();
    fx.put_subscription(":new").unwrap();
    let c = f.commit(10, fx);
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":new", "page")]);
    assert!(c.receipt_drops.is_empty());
    assert_eq!(f.keys(&p), vec![key(":bound", "page"), key(":new", "page")]);
    assert_eq!(f.router.stats().tombstones, 0);
}

// H§8.9.39 / R11: in `init`, a delete after a put cancels it before the
// transition (and a put after a delete restores it).
#[test]
fn last_op_wins_in_init() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let mut fx = Effects::init(&p, Cid::PAGE);
    fx.put_subscription(":a").unwrap();
    fx.delete_subscription(":a").unwrap();
    fx.delete_subscription(":b").unwrap();
    fx.put_subscription(":b").unwrap();
    let c = f.router.commit_page(10, &p, vec![fx], &[]).unwrap();
    assert_eq!(receipt_keys(&c.receipt_adds), vec![key(":b", "page")]);
}

// SPEC §4 / R5–R8: a commit applies, in order, subscription changes (and
// receipts signed with the post-handler user), the identity change, the
// self-echoes (against the post-handler peer and bindings), then the
// broadcasts in call order — which therefore see the new identity: a sibling
// tab that just took user 7 is left out by an `except` naming user 7.
#[test]
fn a_commit_applies_subscriptions_then_identity_then_echoes_then_broadcasts() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let sib = f.tab(&p);
    let q = f.peer(None);
    let cp = f.connect_with(0, &p, &[(":room", "page")]);
    let cs = f.connect_with(0, &sib, &[(":room", "page")]);
    let cq = f.connect_with(0, &q, &[(":room", "page")]);
    let mut fx = f.command(&p, "page");
    fx.put_subscription(":new").unwrap();
    fx.set_user_id(user(7));
    fx.put_broadcast_except(&[user_of(7)], ":room", "a", empty())
        .unwrap();
    fx.put_broadcast(":room", "b", empty()).unwrap();
    fx.put_broadcast(":new", "c", empty()).unwrap();
    let committed = f.commit(10, fx);

    assert_eq!(
        receipt_keys(&committed.receipt_adds),
        vec![key(":new", "page")]
    );
    let r = f
        .router
        .verify_receipt(&committed.receipt_adds[0].token, 10)
        .unwrap();
    assert_eq!(r.user, user(7));
    assert_eq!(
        f.bindings(&p),
        vec![(key(":new", "page"), true), (key(":room", "page"), false)]
    );
    assert_eq!(
        (committed.session, committed.user.clone()),
        (p.session, user(7))
    );
    assert_eq!(
        echoes(&committed),
        vec![(s("b"), s("page")), (s("c"), s("page"))]
    );

    let out = f.drain();
    let kinds: Vec<&str> = out
        .iter()
        .map(|o| match o {
            Output::ChannelUp(_) => "up",
            Output::IdentityChanged { .. } => "identity",
            Output::Fanout { .. } => "fanout",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["up", "identity", "identity", "fanout", "fanout"]
    );
    assert_eq!(out[0], Output::ChannelUp(ch(":new").topic()));
    for conn in [cp, cs] {
        assert!(out.contains(&Output::IdentityChanged {
            conn,
            session: p.session,
            user: user(7)
        }));
    }
    let mut got = delivered(&out);
    got.sort();
    let mut want = vec![
        (cq, s("a"), vec![s("page")]),
        (cs, s("b"), vec![s("page")]),
        (cq, s("b"), vec![s("page")]),
    ];
    want.sort();
    assert_eq!(got, want);
}

// R5: a change that would exceed `max_bindings_per_instance` is refused with
// nothing applied — no binding, no broadcast, no identity change.
#[test]
fn too_many_bindings_applies_nothing() {
    let mut f = Fixture::with_config(RouterConfig {
        max_bindings_per_instance: 2,
        ..RouterConfig::default()
    });
    let p = f.peer(None);
    let q = f.peer(None);
    let conn = f.connect_with(0, &p, &[(":a", "page")]);
    f.connect_with(0, &q, &[(":a", "page")]);
    let mut fx = f.command(&p, "page");
    fx.put_subscription(":b").unwrap();
    fx.put_subscription(":c").unwrap();
    fx.put_broadcast(":a", "leak", empty()).unwrap();
    fx.set_user_id(user(1));
    let retry = fx.clone();
    assert_eq!(
        f.router.commit(10, fx),
        Err(RouterError::TooManyBindings {
            would_hold: 3,
            max: 2
        })
    );
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
    assert_eq!(f.router.peer(conn).unwrap().user, None);
    // Freeing one slot in the same commit makes it fit.
    let mut fx = retry;
    fx.delete_subscription(":a").unwrap();
    assert!(f.router.commit(20, fx).is_ok());
    assert_eq!(f.keys(&p), vec![key(":b", "page"), key(":c", "page")]);
}

// R11: a page declaring more than `max_bindings_per_instance` is refused
// with nothing applied.
#[test]
fn a_page_with_too_many_declared_bindings_applies_nothing() {
    let mut f = Fixture::with_config(RouterConfig {
        max_bindings_per_instance: 2,
        ..RouterConfig::default()
    });
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    let fx = page_effects(&p, &[(":x", "page"), (":y", "layout"), (":z", "widget")]);
    assert_eq!(
        f.router.commit_page(10, &p, fx, &[]),
        Err(RouterError::TooManyBindings {
            would_hold: 3,
            max: 2
        })
    );
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
}

// R5 / R11: effects of the wrong kind or for another instance are refused.
#[test]
fn effects_of_the_wrong_kind_or_instance_are_refused() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    f.connect(0, &p);
    let mut init = Effects::init(&p, Cid::PAGE);
    init.put_subscription(":a").unwrap();
    assert!(matches!(
        f.router.commit(10, init),
        Err(RouterError::WrongEffects(_))
    ));
    let mut cmd = f.command(&p, "page");
    cmd.put_subscription(":a").unwrap();
    assert!(matches!(
        f.router.commit_page(10, &p, vec![cmd], &[]),
        Err(RouterError::WrongEffects(_))
    ));
    let mut other = Effects::init(&q, Cid::PAGE);
    other.put_subscription(":a").unwrap();
    assert!(matches!(
        f.router.commit_page(10, &p, vec![other], &[]),
        Err(RouterError::WrongEffects(_))
    ));
    assert_eq!(f.keys(&p), vec![]);
    assert_eq!(f.drain(), vec![]);
}

// R5 / H§6.2 instance ownership: `command` needs an attached instance
// (`NotAttached`: park it) of the same session (`SessionMismatch`).
#[test]
fn a_command_needs_an_attached_instance_of_the_same_session() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let other = f.session();
    assert_eq!(
        f.router.command(p.instance, p.session, Cid::PAGE).err(),
        Some(RouterError::NotAttached)
    );
    f.connect(0, &p);
    assert_eq!(
        f.router.command(p.instance, other, Cid::PAGE).err(),
        Some(RouterError::SessionMismatch)
    );
}

// R5: a login command's puts are tagged with the post-handler user, a
// logout's as anonymous (they survive the logout they were made in).
#[test]
fn puts_are_tagged_with_the_post_handler_user() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    f.connect_with(0, &p, &[(":own", "page")]);
    let mut fx = f.command(&p, "page");
    fx.set_user_id(None);
    fx.put_subscription(":after").unwrap();
    let c = f.commit(10, fx);
    assert_eq!(
        f.router
            .verify_receipt(&c.receipt_adds[0].token, 10)
            .unwrap()
            .user,
        None
    );
    assert_eq!(f.bindings(&p), vec![(key(":after", "page"), false)]);
}
