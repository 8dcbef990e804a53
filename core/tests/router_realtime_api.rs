//! Hologram's `realtime_test.exs` (H§8.7), ported to the router: the
//! immediate API (`broadcast_action*`, `subscribe`, `unsubscribe*`, R7,
//! R10), handler broadcasts and self-echoes (`flush_broadcasts`,
//! `get_self_echoes`, R6, R7) and identity-change announces (R8).
//!
//! Where Hologram publishes a message on a PubSub topic and its tests catch
//! it, ours assert the router's outputs: `Fanout` deliveries,
//! `AddReceipts` / `DropReceipts`, `IdentityChanged`; tombstones are observed
//! at the handshake.
//!
//! Not applicable:
//!
//! * H§8.7.30–32 `instance_announce_topic`, `session_announce_topic`,
//!   `user_announce_topic` names: the core has no announce topics. Identity
//!   addressing resolves through the router's session and user indexes
//!   (SPEC §3 "Better than Hologram"); the resolution itself is tested by
//!   `resolve_*` in `router_registry.rs` and by the `subscribe` /
//!   `unsubscribe` tests below.
//! * H§8.7.37 "`pre.session_id == nil` means no broadcast even if the user
//!   changed": a `Peer` always has a session (`SessionId` is not optional);
//!   the no-session case is refused by the transport before any handler.
//!   The nearest behaviour, a commit that finds no attached instance
//!   announcing nothing, is `update_identity_is_a_no_op_for_an_unknown_instance`
//!   in `router_registry.rs`.

mod common;

use common::{
    Delivery, Fixture, HOUR, ch, cid, delivered, deliveries, echoes, empty, instance_of, key,
    page_effects, payload, receipt_keys, session_of, user, user_of,
};
use tidings_core::router::{Output, RouterConfig, RouterError};
use tidings_core::{Cid, Identity, Payload, Peer, UserId};

fn s(text: &str) -> String {
    text.to_owned()
}

fn only(cid_text: &str) -> Vec<String> {
    vec![s(cid_text)]
}

/// Binds `channel` on `cid_text` of an attached `p` through a command.
fn bind(f: &mut Fixture, p: &Peer, cid_text: &str, channel: impl tidings_core::IntoChannel) {
    let mut fx = f.command(p, cid_text);
    fx.put_subscription(channel).unwrap();
    f.commit(1, fx);
    f.drain();
}

// ---------------------------------------------------------------------------
// broadcast_action (R7)
// ---------------------------------------------------------------------------

// H§8.7.1 publishes `{:broadcast_action, ch, name, %{text: "hi"}, []}` on the
// `{:instance,…}` channel. Ours: one `Fanout` carrying the channel, action
// and params to the instance bound to its identity channel (explicitly:
// identity channels are never auto-subscribed).
#[test]
fn broadcast_action_publishes_on_an_instance_channel() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect(0, &p);
    let own = instance_of(&p).to_channel();
    bind(&mut f, &p, "layout", &own);
    f.router
        .broadcast_action(&own, "notify", payload(br#"{"text":"hi"}"#))
        .unwrap();
    assert_eq!(
        deliveries(&f.drain()),
        vec![Delivery {
            channel: own,
            action: s("notify"),
            params: br#"{"text":"hi"}"#.to_vec(),
            conn,
            cids: vec![cid("layout")],
        }]
    );
}

// H§8.7.2 accepts map params. Ours: params are pre-encoded bytes the core
// never reads; any bytes reach every recipient unchanged, in one shared
// broadcast.
#[test]
fn broadcast_action_passes_params_through_unread() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    f.connect(0, &p);
    f.connect(0, &q);
    bind(&mut f, &p, "page", ":a");
    bind(&mut f, &q, "page", ":a");
    let bytes: &'static [u8] = &[0xff, 0x00, b'{', 0x80];
    f.router
        .broadcast_action(":a", "raw", Payload::new(bytes))
        .unwrap();
    let out = f.drain();
    assert_eq!(out.len(), 1, "one Fanout for all recipients");
    let all = deliveries(&out);
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|d| d.params == bytes));
}

// H§8.7.3 works on a session channel: every tab bound to it receives.
#[test]
fn broadcast_action_works_on_a_session_channel() {
    let mut f = Fixture::new();
    let a = f.peer(None);
    let b = f.tab(&a);
    let ca = f.connect(0, &a);
    let cb = f.connect(0, &b);
    let chan = session_of(&a).to_channel();
    bind(&mut f, &a, "page", &chan);
    bind(&mut f, &b, "layout", &chan);
    f.router.broadcast_action(&chan, "n", empty()).unwrap();
    let mut got = delivered(&f.drain());
    got.sort();
    let mut want = vec![(ca, s("n"), only("page")), (cb, s("n"), only("layout"))];
    want.sort();
    assert_eq!(got, want);
}

// H§8.7.4 works on a user channel.
#[test]
fn broadcast_action_works_on_a_user_channel() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let conn = f.connect(0, &p);
    bind(&mut f, &p, "page", "{:user, 7}");
    f.router
        .broadcast_action(user_of(7).to_channel(), "n", empty())
        .unwrap();
    assert_eq!(delivered(&f.drain()), vec![(conn, s("n"), only("page"))]);
}

// H§8.7.5 the no-params arity sends `%{}`. Ours has no default arguments;
// the nearest: empty params are delivered as given.
#[test]
fn empty_params_are_delivered_as_given() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    bind(&mut f, &p, "page", ":a");
    f.router
        .broadcast_action(":a", "n", Payload::new(&b""[..]))
        .unwrap();
    let all = deliveries(&f.drain());
    assert_eq!(all.len(), 1);
    assert!(all[0].params.is_empty());
}

// H§8.7.6 an invalid channel raises `ArgumentError`. Ours: `Err` with the
// channel error (SPEC §3), nothing published; an invalid action name too.
#[test]
fn broadcast_action_with_an_invalid_channel_is_an_error() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    bind(&mut f, &p, "page", ":a");
    for bad in ["{:foo}", "\"my-channel\"", "{\"room\", 42}", "1.5"] {
        assert!(
            matches!(
                f.router.broadcast_action(bad, "n", empty()),
                Err(RouterError::Channel(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        f.router.broadcast_action(":a", "", empty()),
        Err(RouterError::ActionName { len: 0, .. })
    ));
    assert!(matches!(
        f.router.broadcast_action(":a", &"x".repeat(129), empty()),
        Err(RouterError::ActionName { len: 129, .. })
    ));
    assert_eq!(f.drain(), vec![]);
}

// ---------------------------------------------------------------------------
// broadcast_action_except (R7)
// ---------------------------------------------------------------------------

// H§8.7.7 a single identity is wrapped into a list. Ours: a one-element
// slice excludes exactly that identity.
#[test]
fn broadcast_action_except_accepts_a_single_identity() {
    let mut f = Fixture::new();
    let a = f.peer(None);
    let b = f.tab(&a);
    f.connect(0, &a);
    let cb = f.connect(0, &b);
    bind(&mut f, &a, "page", ":a");
    bind(&mut f, &b, "page", ":a");
    f.router
        .broadcast_action_except(&[instance_of(&a)], ":a", "n", empty())
        .unwrap();
    assert_eq!(delivered(&f.drain()), vec![(cb, s("n"), only("page"))]);
}

// H§8.7.8 a list is passed through unchanged: every entry excludes
// (session and user here), matching exactly.
#[test]
fn broadcast_action_except_passes_a_list_through() {
    let mut f = Fixture::new();
    let a = f.peer(None);
    let b = f.peer(user(7));
    let c = f.peer(Some(UserId::str("7")));
    f.connect(0, &a);
    f.connect(0, &b);
    let cc = f.connect(0, &c);
    for p in [&a, &b, &c] {
        bind(&mut f, p, "page", ":a");
    }
    f.router
        .broadcast_action_except(&[session_of(&a), user_of(7)], ":a", "n", empty())
        .unwrap();
    assert_eq!(delivered(&f.drain()), vec![(cc, s("n"), only("page"))]);
}

// ---------------------------------------------------------------------------
// channel_topic → routing keys (`ChannelUp` topics)
// ---------------------------------------------------------------------------

fn routes(f: &mut Fixture, text: &str) {
    let p = f.peer(None);
    let conn = f.connect(0, &p);
    let mut fx = f.command(&p, "page");
    fx.put_subscription(text).unwrap();
    f.commit(1, fx);
    let out = f.drain();
    assert_eq!(out, vec![Output::ChannelUp(ch(text).topic())]);
    let Output::ChannelUp(topic) = &out[0] else {
        unreachable!()
    };
    assert_eq!(topic.channel(), ch(text));
    f.router.broadcast_action(text, "n", empty()).unwrap();
    assert_eq!(delivered(&f.drain()), vec![(conn, s("n"), only("page"))]);
}

// H§8.7.9 bare atom.
#[test]
fn channel_topic_of_a_bare_atom_routes() {
    routes(&mut Fixture::new(), ":notifications");
}

// H§8.7.10 2-tuple.
#[test]
fn channel_topic_of_a_2_tuple_routes() {
    routes(&mut Fixture::new(), "{:room, 42}");
}

// H§8.7.11 3-tuple.
#[test]
fn channel_topic_of_a_3_tuple_routes() {
    routes(&mut Fixture::new(), "{:doc, \"abc\", \"v2\"}");
}

// H§8.7.12 identity-shaped tuples equal `identity_topic`: the identity's
// channel form and the same tuple written by hand are one routing key.
#[test]
fn identity_shaped_tuples_equal_the_identity_topic() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let conn = f.connect(0, &p);
    let by_hand = format!("{{:session, \"{}\"}}", p.session);
    assert_eq!(ch(&by_hand), session_of(&p).to_channel());
    assert_eq!(ch(&by_hand).topic(), session_of(&p).to_channel().topic());
    assert_eq!(Identity::from_channel(&ch(&by_hand)), Ok(session_of(&p)));
    bind(&mut f, &p, "page", by_hand.as_str());
    bind(&mut f, &p, "layout", "{:user, 7}");
    f.router
        .broadcast_action(session_of(&p).to_channel(), "s", empty())
        .unwrap();
    f.router
        .broadcast_action(user_of(7).to_channel(), "u", empty())
        .unwrap();
    assert_eq!(
        delivered(&f.drain()),
        vec![(conn, s("s"), only("page")), (conn, s("u"), only("layout"))]
    );
}

// SPEC §1 "Better than Hologram" (H§10 Q1): topics are injective, so
// `{:room, 42}`, `{:room, "42"}` and `:"room:42"` are three routing keys and
// a broadcast on one reaches only its own binding. Hologram collides them.
#[test]
fn colliding_hologram_topics_are_distinct_channels() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect(0, &p);
    let texts = ["{:room, 42}", "{:room, \"42\"}", ":\"room:42\""];
    let cids = ["page", "widget", "layout"];
    for (t, c) in texts.iter().zip(cids) {
        let mut fx = f.command(&p, c);
        fx.put_subscription(*t).unwrap();
        f.commit(1, fx);
    }
    let ups = f.drain();
    assert_eq!(
        ups,
        texts
            .iter()
            .map(|t| Output::ChannelUp(ch(t).topic()))
            .collect::<Vec<_>>()
    );
    assert_eq!(f.router.stats().channels, 3);
    for (t, c) in texts.iter().zip(cids) {
        f.router.broadcast_action(*t, "n", empty()).unwrap();
        assert_eq!(delivered(&f.drain()), vec![(conn, s("n"), only(c))], "{t}");
    }
}

// ---------------------------------------------------------------------------
// flush_broadcasts → a command's broadcasts (R5, R7)
// ---------------------------------------------------------------------------

/// `p` (originator) and `q`, `r` (other sessions), all bound to `:a` on "page".
fn three(f: &mut Fixture) -> (Peer, Peer, Peer) {
    let p = f.peer(None);
    let q = f.peer(None);
    let r = f.peer(user(3));
    for x in [&p, &q, &r] {
        f.connect(0, x);
        bind(f, x, "page", ":a");
    }
    (p, q, r)
}

// H§8.7.13 an empty list leaves the server unchanged: no broadcast, no echo.
#[test]
fn no_queued_broadcasts_publish_nothing() {
    let mut f = Fixture::new();
    let (p, _, _) = three(&mut f);
    let fx = f.command(&p, "page");
    assert!(fx.broadcasts().is_empty());
    let c = f.commit(10, fx);
    assert!(c.self_echoes.is_empty());
    assert_eq!(f.drain(), vec![]);
}

// H§8.7.14 fires the broadcast and clears the list; excluded is
// `[{:instance, iid}]`.
#[test]
fn a_queued_broadcast_fires_without_the_originator() {
    let mut f = Fixture::new();
    let (p, q, r) = three(&mut f);
    let mut fx = f.command(&p, "page");
    fx.put_broadcast(":a", "hello", payload(b"1")).unwrap();
    f.commit(10, fx);
    let cq = f.router.connection(&q.instance).unwrap();
    let cr = f.router.connection(&r.instance).unwrap();
    let mut got = delivered(&f.drain());
    got.sort();
    let mut want = vec![
        (cq, s("hello"), only("page")),
        (cr, s("hello"), only("page")),
    ];
    want.sort();
    assert_eq!(got, want);
}

// H§8.7.15 multiple broadcasts go out in call order.
#[test]
fn multiple_broadcasts_go_out_in_call_order() {
    let mut f = Fixture::new();
    let (p, q, _) = three(&mut f);
    let cq = f.router.connection(&q.instance).unwrap();
    let mut fx = f.command(&p, "page");
    for name in ["one", "two", "three"] {
        fx.put_broadcast(":a", name, empty()).unwrap();
    }
    f.commit(10, fx);
    let to_q: Vec<String> = deliveries(&f.drain())
        .into_iter()
        .filter(|d| d.conn == cq)
        .map(|d| d.action)
        .collect();
    assert_eq!(to_q, vec![s("one"), s("two"), s("three")]);
}

// H§8.7.16 auto-excludes the originator instance: no delivery to it, even
// for its other bound cids (they get self-echoes instead).
#[test]
fn a_handler_broadcast_auto_excludes_the_originator_instance() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let pc = f.connect(0, &p);
    bind(&mut f, &p, "page", ":a");
    bind(&mut f, &p, "widget", ":a");
    let mut fx = f.command(&p, "widget");
    fx.put_broadcast(":a", "x", empty()).unwrap();
    let c = f.commit(10, fx);
    assert!(deliveries(&f.drain()).iter().all(|d| d.conn != pc));
    assert_eq!(echoes(&c), vec![(s("x"), s("page")), (s("x"), s("widget"))]);
}

// H§8.7.17 merges the developer's except with the originator.
#[test]
fn a_handler_except_is_merged_with_the_originator() {
    let mut f = Fixture::new();
    let (p, q, r) = three(&mut f);
    let mut fx = f.command(&p, "page");
    fx.put_broadcast_except(&[instance_of(&q)], ":a", "x", empty())
        .unwrap();
    f.commit(10, fx);
    let cr = f.router.connection(&r.instance).unwrap();
    assert_eq!(delivered(&f.drain()), vec![(cr, s("x"), only("page"))]);
}

// H§8.7.18 explicit self-exclusion is deduped to a single entry: the others
// still get exactly one delivery each and the originator no echo.
#[test]
fn explicit_self_exclusion_is_deduped() {
    let mut f = Fixture::new();
    let (p, q, r) = three(&mut f);
    let mut fx = f.command(&p, "page");
    fx.put_broadcast_except(&[instance_of(&p), instance_of(&p)], ":a", "x", empty())
        .unwrap();
    let committed = f.commit(10, fx);
    assert!(committed.self_echoes.is_empty());
    let out = f.drain();
    let all = deliveries(&out);
    let cq = f.router.connection(&q.instance).unwrap();
    let cr = f.router.connection(&r.instance).unwrap();
    let mut conns: Vec<_> = all.iter().map(|d| d.conn).collect();
    conns.sort();
    let mut want = vec![cq, cr];
    want.sort();
    assert_eq!(conns, want);
    assert_eq!(out.len(), 1);
}

// H§8.7.19 fires on an application channel.
#[test]
fn a_handler_broadcast_fires_on_an_application_channel() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    f.connect(0, &p);
    let cq = f.connect(0, &q);
    bind(&mut f, &q, "editor", "{:doc, \"abc\", \"v2\"}");
    let mut fx = f.command(&p, "page");
    fx.put_broadcast("{:doc, \"abc\", \"v2\"}", "patched", payload(b"[1]"))
        .unwrap();
    f.commit(10, fx);
    assert_eq!(
        deliveries(&f.drain()),
        vec![Delivery {
            channel: ch("{:doc, \"abc\", \"v2\"}"),
            action: s("patched"),
            params: b"[1]".to_vec(),
            conn: cq,
            cids: vec![cid("editor")],
        }]
    );
}

// ---------------------------------------------------------------------------
// get_self_echoes (R6)
// ---------------------------------------------------------------------------

// H§8.7.20 empty broadcasts give `[]`.
#[test]
fn no_broadcasts_give_no_self_echoes() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    bind(&mut f, &p, "page", ":a");
    let mut fx = f.command(&p, "page");
    fx.put_subscription(":b").unwrap();
    assert!(f.commit(10, fx).self_echoes.is_empty());
}

// H§8.7.21 one action per matching binding (two cids give two), with the
// broadcast's params, sorted by cid.
#[test]
fn one_self_echo_per_matching_binding() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    bind(&mut f, &p, "widget", ":a");
    bind(&mut f, &p, "page", ":a");
    bind(&mut f, &p, "other", ":b");
    let mut fx = f.command(&p, "widget");
    fx.put_broadcast(":a", "x", payload(b"42")).unwrap();
    let c = f.commit(10, fx);
    assert_eq!(echoes(&c), vec![(s("x"), s("page")), (s("x"), s("widget"))]);
    assert!(c.self_echoes.iter().all(|e| e.params.as_bytes() == b"42"));
}

// H§8.7.22 no matching binding gives `[]`.
#[test]
fn no_matching_binding_gives_no_self_echoes() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    bind(&mut f, &p, "page", ":b");
    let mut fx = f.command(&p, "page");
    fx.put_broadcast(":a", "x", empty()).unwrap();
    assert!(f.commit(10, fx).self_echoes.is_empty());
}

// H§8.7.23 an identity-channel broadcast without an explicit subscription
// gives `[]`. SPEC §1: identity channels are never auto-subscribed, so
// neither the originator's echo nor another publisher's broadcast reaches a
// tab through its own identity channel.
#[test]
fn an_identity_channel_broadcast_without_a_subscription_gives_no_echo() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    f.connect(0, &p);
    let mut fx = f.command(&p, "page");
    for id in [instance_of(&p), session_of(&p), user_of(7)] {
        fx.put_broadcast(id.to_channel(), "x", empty()).unwrap();
    }
    assert!(f.commit(10, fx).self_echoes.is_empty());
    for id in [instance_of(&p), session_of(&p), user_of(7)] {
        f.router
            .broadcast_action(id.to_channel(), "x", empty())
            .unwrap();
    }
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.stats().channels, 0);
}

// H§8.7.24 an explicitly subscribed identity channel echoes to `"layout"`.
#[test]
fn an_explicitly_subscribed_identity_channel_echoes_to_layout() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    let own = instance_of(&p).to_channel();
    bind(&mut f, &p, "layout", &own);
    let mut fx = f.command(&p, "page");
    fx.put_broadcast(&own, "x", empty()).unwrap();
    assert_eq!(echoes(&f.commit(10, fx)), vec![(s("x"), s("layout"))]);
}

/// `p` and its sibling tab `sib` (same session, user 7), both bound to `:a`.
fn with_sibling(f: &mut Fixture) -> (Peer, Peer) {
    let p = f.peer(user(7));
    let sib = f.tab(&p);
    for x in [&p, &sib] {
        f.connect(0, x);
        bind(f, x, "page", ":a");
    }
    (p, sib)
}

// H§8.7.25 an except covering the originator instance gives no echo.
#[test]
fn an_except_covering_the_originator_instance_gives_no_echo() {
    let mut f = Fixture::new();
    let (p, sib) = with_sibling(&mut f);
    let mut fx = f.command(&p, "page");
    fx.put_broadcast_except(&[instance_of(&p)], ":a", "x", empty())
        .unwrap();
    assert!(f.commit(10, fx).self_echoes.is_empty());
    let cs = f.router.connection(&sib.instance).unwrap();
    assert_eq!(delivered(&f.drain()), vec![(cs, s("x"), only("page"))]);
}

// H§8.7.26 an except covering the originator session gives no echo, and
// skips the sibling tabs too (H§5.4).
#[test]
fn an_except_covering_the_originator_session_gives_no_echo() {
    let mut f = Fixture::new();
    let (p, _) = with_sibling(&mut f);
    let mut fx = f.command(&p, "page");
    fx.put_broadcast_except(&[session_of(&p)], ":a", "x", empty())
        .unwrap();
    assert!(f.commit(10, fx).self_echoes.is_empty());
    assert_eq!(f.drain(), vec![]);
}

// H§8.7.27 an except covering the originator user gives no echo.
#[test]
fn an_except_covering_the_originator_user_gives_no_echo() {
    let mut f = Fixture::new();
    let (p, _) = with_sibling(&mut f);
    let mut fx = f.command(&p, "page");
    fx.put_broadcast_except(&[user_of(7)], ":a", "x", empty())
        .unwrap();
    assert!(f.commit(10, fx).self_echoes.is_empty());
    assert_eq!(f.drain(), vec![]);
}

// H§8.7.28 an except covering only another identity still echoes (exact
// match: `{:user, "7"}` is not user 7).
#[test]
fn an_except_covering_only_another_identity_still_echoes() {
    let mut f = Fixture::new();
    let (p, sib) = with_sibling(&mut f);
    let mut fx = f.command(&p, "page");
    fx.put_broadcast_except(
        &[instance_of(&sib), Identity::User(UserId::str("7"))],
        ":a",
        "x",
        empty(),
    )
    .unwrap();
    assert_eq!(echoes(&f.commit(10, fx)), vec![(s("x"), s("page"))]);
    assert_eq!(f.drain(), vec![]);
}

// H§8.7.29 call order is preserved across multiple broadcasts (then cid
// order within each).
#[test]
fn self_echo_call_order_is_preserved_across_broadcasts() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    bind(&mut f, &p, "widget", ":a");
    bind(&mut f, &p, "page", ":a");
    bind(&mut f, &p, "page", ":b");
    let mut fx = f.command(&p, "page");
    fx.put_broadcast(":a", "one", empty()).unwrap();
    fx.put_broadcast(":b", "two", empty()).unwrap();
    fx.put_broadcast(":a", "three", empty()).unwrap();
    assert_eq!(
        echoes(&f.commit(10, fx)),
        vec![
            (s("one"), s("page")),
            (s("one"), s("widget")),
            (s("two"), s("page")),
            (s("three"), s("page")),
            (s("three"), s("widget")),
        ]
    );
}

// H§5.4 / R6: self-echoes are computed after the command's own subscription
// changes: a binding put in the same command echoes, one deleted does not.
#[test]
fn self_echoes_see_the_commands_own_subscription_changes() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    bind(&mut f, &p, "page", ":gone");
    let mut fx = f.command(&p, "page");
    fx.put_subscription(":new").unwrap();
    fx.delete_subscription(":gone").unwrap();
    fx.put_broadcast(":new", "n", empty()).unwrap();
    fx.put_broadcast(":gone", "g", empty()).unwrap();
    assert_eq!(echoes(&f.commit(10, fx)), vec![(s("n"), s("page"))]);
}

// R6: unattached (the stream detached before the commit), the target cid
// echoes when the commit put that channel (H§5.4: "even when the instance
// has no registry entry").
#[test]
fn an_unattached_put_and_broadcast_still_echoes() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect(0, &p);
    let mut fx = f.command(&p, "widget");
    fx.put_subscription(":a").unwrap();
    fx.put_broadcast(":a", "x", empty()).unwrap();
    fx.put_broadcast(":b", "y", empty()).unwrap();
    f.router.detach(conn);
    assert_eq!(echoes(&f.commit(10, fx)), vec![(s("x"), s("widget"))]);
}

// R6 / R11 / H§5.4 page path: a page render's broadcasts echo over the
// declared set and are published to everyone else, never to the page's own
// live instance.
#[test]
fn page_render_broadcasts_echo_over_the_declared_set() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let q = f.peer(None);
    let pc = f.connect(0, &p);
    let qc = f.connect(0, &q);
    bind(&mut f, &p, "page", ":old");
    bind(&mut f, &q, "page", ":a");
    let mut fx = page_effects(&p, &[(":a", "page"), (":a", "layout")]);
    fx[0].put_broadcast(":a", "joined", empty()).unwrap();
    fx[0].put_broadcast(":old", "left", empty()).unwrap();
    let c = f.router.commit_page(10, &p, fx, &[]).unwrap();
    assert_eq!(
        echoes(&c),
        vec![(s("joined"), s("layout")), (s("joined"), s("page"))]
    );
    let got = delivered(&f.drain());
    assert_eq!(got, vec![(qc, s("joined"), only("page"))]);
    assert!(got.iter().all(|(c, _, _)| *c != pc));
}

// ---------------------------------------------------------------------------
// maybe_announce_identity_change (R8)
// ---------------------------------------------------------------------------

/// Tabs `a` (originator) and `b` of one session, `c` of another; all attached.
fn session_tabs(f: &mut Fixture, who: Option<UserId>) -> [(Peer, tidings_core::router::ConnId); 3] {
    let first = f.peer(who.clone());
    let sibling = f.tab(&first);
    let other = f.peer(who);
    let c1 = f.connect(0, &first);
    let c2 = f.connect(0, &sibling);
    let c3 = f.connect(0, &other);
    [(first, c1), (sibling, c2), (other, c3)]
}

fn changed(out: &[Output]) -> Vec<Output> {
    let mut v: Vec<Output> = out
        .iter()
        .filter(|o| matches!(o, Output::IdentityChanged { .. }))
        .cloned()
        .collect();
    v.sort_by_key(|o| match o {
        Output::IdentityChanged { conn, .. } => *conn,
        _ => unreachable!(),
    });
    v
}

// H§8.7.33 a session change is announced on the *pre* session: every tab of
// it takes `{:identity_changed, post_sid, uid}`; other sessions do not.
#[test]
fn a_session_change_is_announced_to_every_tab_of_the_pre_session() {
    let mut f = Fixture::new();
    let [(a, ca), (_, cb), (c, cc)] = session_tabs(&mut f, None);
    let s2 = f.session();
    let mut fx = f.command(&a, "page");
    fx.set_session_id(s2);
    f.commit(10, fx);
    let ev = |conn| Output::IdentityChanged {
        conn,
        session: s2,
        user: None,
    };
    let mut want = vec![ev(ca), ev(cb)];
    want.sort_by_key(|o| match o {
        Output::IdentityChanged { conn, .. } => *conn,
        _ => unreachable!(),
    });
    assert_eq!(changed(&f.drain()), want);
    assert_eq!(f.router.peer(cb).map(|p| p.session), Some(s2));
    assert_eq!(f.router.peer(cc).map(|p| p.session), Some(c.session));
}

// H§8.7.34 a user change broadcasts `{:identity_changed, sid, 7}`.
#[test]
fn a_user_change_is_announced_with_the_new_user() {
    let mut f = Fixture::new();
    let [(a, ca), (_, cb), _] = session_tabs(&mut f, None);
    let mut fx = f.command(&a, "page");
    fx.set_user_id(user(7));
    f.commit(10, fx);
    let out = changed(&f.drain());
    assert_eq!(out.len(), 2);
    for conn in [ca, cb] {
        assert!(out.contains(&Output::IdentityChanged {
            conn,
            session: a.session,
            user: user(7)
        }));
        assert_eq!(f.router.peer(conn).unwrap().user, user(7));
    }
}

// H§8.7.35 when both change, the post identity is announced.
#[test]
fn when_both_change_the_post_identity_is_announced() {
    let mut f = Fixture::new();
    let [(a, ca), (_, cb), _] = session_tabs(&mut f, user(1));
    let s2 = f.session();
    let mut fx = f.command(&a, "page");
    fx.set_session_id(s2);
    fx.set_user_id(user(2));
    let c = f.commit(10, fx);
    assert_eq!((c.session, c.user), (s2, user(2)));
    let out = changed(&f.drain());
    assert_eq!(out.len(), 2);
    for conn in [ca, cb] {
        assert!(out.contains(&Output::IdentityChanged {
            conn,
            session: s2,
            user: user(2)
        }));
    }
}

// H§8.7.36 no change means no announce (setting the same values included).
#[test]
fn no_identity_change_means_no_announce() {
    let mut f = Fixture::new();
    let [(a, _), _, _] = session_tabs(&mut f, user(5));
    let mut fx = f.command(&a, "page");
    fx.set_session_id(a.session);
    fx.set_user_id(user(5));
    f.commit(10, fx);
    let fx = f.command(&a, "page");
    f.commit(11, fx);
    assert_eq!(f.drain(), vec![]);
}

// ---------------------------------------------------------------------------
// subscribe/3 (R10)
// ---------------------------------------------------------------------------

// H§8.7.38 registers the binding for the resolved instance, tagged with the
// entry's user.
#[test]
fn subscribe_registers_the_binding_tagged_with_the_entrys_user() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    f.connect(0, &p);
    assert_eq!(
        f.router
            .subscribe(10, &instance_of(&p), "{:room, 1}", cid("chat"))
            .unwrap(),
        1
    );
    assert_eq!(f.bindings(&p), vec![(key("{:room, 1}", "chat"), true)]);
}

// H§8.7.39 sends `{:add_sub_receipts, [{ch, cid, token}]}` with a verifiable
// token (iid, user 7).
#[test]
fn subscribe_pushes_a_verifiable_receipt() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let conn = f.connect(0, &p);
    f.router
        .subscribe(10, &instance_of(&p), "{:room, 1}", cid("chat"))
        .unwrap();
    let out = f.drain();
    assert_eq!(out[0], Output::ChannelUp(ch("{:room, 1}").topic()));
    let Output::AddReceipts { conn: to, receipts } = &out[1] else {
        panic!("expected AddReceipts, got {out:?}");
    };
    assert_eq!(out.len(), 2);
    assert_eq!(*to, conn);
    assert_eq!(receipt_keys(receipts), vec![key("{:room, 1}", "chat")]);
    let r = f.router.verify_receipt(&receipts[0].token, 10).unwrap();
    assert_eq!(
        (r.instance, r.user, r.channel, r.cid, r.created_at),
        (p.instance, user(7), ch("{:room, 1}"), cid("chat"), 10)
    );
}

// H§8.7.40 fans out to every connection of the identity (multi-tab,
// multi-session user).
#[test]
fn subscribe_fans_out_to_every_connection_of_the_identity() {
    let mut f = Fixture::new();
    let a = f.peer(user(7));
    let b = f.tab(&a);
    let c = f.peer(user(7));
    let other = f.peer(user(8));
    let mut conns = Vec::new();
    for x in [&a, &b, &c] {
        conns.push(f.connect(0, x));
    }
    f.connect(0, &other);
    assert_eq!(
        f.router
            .subscribe(10, &user_of(7), ":a", Cid::PAGE)
            .unwrap(),
        3
    );
    let mut pushed: Vec<_> = f
        .drain()
        .into_iter()
        .filter_map(|o| match o {
            Output::AddReceipts { conn, receipts } => Some((conn, receipt_keys(&receipts))),
            _ => None,
        })
        .collect();
    pushed.sort();
    conns.sort();
    assert_eq!(
        pushed,
        conns
            .iter()
            .map(|c| (*c, vec![key(":a", "page")]))
            .collect::<Vec<_>>()
    );
    for x in [&a, &b, &c] {
        assert_eq!(f.keys(x), vec![key(":a", "page")]);
    }
    assert_eq!(f.router.bindings(&other.instance), Some(vec![]));
}

// H§8.7.41 an anonymous entry's binding is tagged nil (and its receipt).
#[test]
fn subscribe_tags_an_anonymous_entrys_binding_nil() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    f.router
        .subscribe(10, &session_of(&p), ":a", Cid::PAGE)
        .unwrap();
    assert_eq!(f.bindings(&p), vec![(key(":a", "page"), false)]);
    let out = f.drain();
    let Some(Output::AddReceipts { receipts, .. }) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(
        f.router
            .verify_receipt(&receipts[0].token, 10)
            .unwrap()
            .user,
        None
    );
}

// H§8.7.42 an invalid channel raises → `Err`, nothing bound or purged.
#[test]
fn subscribe_with_an_invalid_channel_is_an_error() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    assert!(matches!(
        f.router
            .subscribe(10, &instance_of(&p), "{:foo}", Cid::PAGE),
        Err(RouterError::Channel(_))
    ));
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.stats().tombstones, 0);
}

// H§8.7.43 no live connection is a no-op: no receipts, no `:sub`.
#[test]
fn subscribe_with_no_live_connection_is_a_no_op() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    assert_eq!(
        f.router
            .subscribe(10, &user_of(7), ":a", Cid::PAGE)
            .unwrap(),
        0
    );
    assert_eq!(
        f.router
            .subscribe(10, &instance_of(&p), ":a", Cid::PAGE)
            .unwrap(),
        0
    );
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.stats().channels, 0);
}

// H§8.7.44 a later-connecting target gets no binding from an earlier no-op
// subscribe (there is no durable grant).
#[test]
fn a_later_connecting_target_gets_no_binding() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    f.router
        .subscribe(10, &user_of(7), ":a", Cid::PAGE)
        .unwrap();
    f.router
        .subscribe(10, &instance_of(&p), ":a", Cid::PAGE)
        .unwrap();
    f.connect(20, &p);
    assert_eq!(f.router.bindings(&p.instance), Some(vec![]));
    f.router.broadcast_action(":a", "x", empty()).unwrap();
    assert_eq!(f.drain(), vec![]);
}

/// Tombstones both shapes at `identity` at 2000, then (after `online`
/// decides whether `p` is attached) subscribes at 3000, and checks `p`'s
/// receipts from 1000 are accepted again.
fn purge_case(online: bool) {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let page = f.token_for(1_000, &p, ":a", "page");
    let widget = f.token_for(1_000, &p, ":a", "widget");
    let identity = session_of(&p);
    f.router
        .unsubscribe(2_000, &identity, ":a", Cid::PAGE)
        .unwrap();
    f.router.unsubscribe_all(2_000, &identity, ":a").unwrap();
    assert!(!f.accepts(2_500, &p, &page));
    assert!(!f.accepts(2_500, &p, &widget));
    let conn = online.then(|| f.connect(2_500, &p));
    let granted = f
        .router
        .subscribe(3_000, &identity, ":a", Cid::PAGE)
        .unwrap();
    assert_eq!(granted, usize::from(online));
    if let Some(conn) = conn {
        f.router.detach(conn);
    }
    let hs = f.handshake(4_000, &p, &[&page, &widget]);
    assert_eq!(hs.rejected, 0);
    assert_eq!(
        receipt_keys(&hs.receipts),
        vec![key(":a", "page"), key(":a", "widget")]
    );
}

// H§8.7.45 purges both the binding key and the channel key for connected
// targets: receipts the tombstones refused are accepted again.
#[test]
fn subscribe_purges_both_keys_for_connected_targets() {
    purge_case(true);
}

// H§8.7.46 does the same for offline targets.
#[test]
fn subscribe_purges_both_keys_for_offline_targets() {
    purge_case(false);
}

// R10: instances at their binding limit are skipped (not granted, no
// receipt); an already-bound key is not skipped.
#[test]
fn subscribe_skips_instances_at_their_binding_limit() {
    let mut f = Fixture::with_config(RouterConfig {
        max_bindings_per_instance: 1,
        ..RouterConfig::default()
    });
    let full = f.peer(user(7));
    let free = f.tab(&full);
    f.connect_with(0, &full, &[(":x", "page")]);
    let cfree = f.connect(0, &free);
    assert_eq!(
        f.router
            .subscribe(10, &user_of(7), ":a", Cid::PAGE)
            .unwrap(),
        1
    );
    let pushed: Vec<_> = f
        .drain()
        .into_iter()
        .filter_map(|o| match o {
            Output::AddReceipts { conn, .. } => Some(conn),
            _ => None,
        })
        .collect();
    assert_eq!(pushed, vec![cfree]);
    assert_eq!(f.keys(&full), vec![key(":x", "page")]);
    assert_eq!(
        f.router
            .subscribe(20, &user_of(7), ":x", Cid::PAGE)
            .unwrap(),
        1
    );
}

// ---------------------------------------------------------------------------
// unsubscribe/3 (R10)
// ---------------------------------------------------------------------------

// H§8.7.47 writes the binding tombstone `{identity, ch, cid}`.
#[test]
fn unsubscribe_writes_the_binding_tombstone() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let t = f.token_for(1_000, &p, ":a", "page");
    let other_cid = f.token_for(1_000, &p, ":a", "widget");
    f.router
        .unsubscribe(2_000, &instance_of(&p), ":a", Cid::PAGE)
        .unwrap();
    assert_eq!(f.router.stats().tombstones, 1);
    assert!(!f.accepts(3_000, &p, &t));
    assert!(f.accepts(3_000, &p, &other_cid));
}

fn drop_conns(
    out: &[Output],
    k: &tidings_core::router::BindingKey,
) -> Vec<tidings_core::router::ConnId> {
    let mut v: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::DropReceipts { conn, keys } if keys == std::slice::from_ref(k) => Some(*conn),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

// H§8.7.48 `{:drop_sub_receipts, [{ch,cid}]}` on the instance: its stream
// gets `DropReceipts` and loses the binding; others are untouched.
#[test]
fn unsubscribe_drops_for_the_instance() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let sib = f.tab(&p);
    let cp = f.connect_with(0, &p, &[(":a", "page")]);
    f.connect_with(0, &sib, &[(":a", "page")]);
    f.router
        .unsubscribe(10, &instance_of(&p), ":a", Cid::PAGE)
        .unwrap();
    assert_eq!(drop_conns(&f.drain(), &key(":a", "page")), vec![cp]);
    assert_eq!(f.keys(&p), vec![]);
    assert_eq!(f.keys(&sib), vec![key(":a", "page")]);
}

// H§8.7.49 same on the session: every tab of the session, bound or not.
#[test]
fn unsubscribe_drops_for_every_tab_of_the_session() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let sib = f.tab(&p);
    let stranger = f.peer(None);
    let cp = f.connect_with(0, &p, &[(":a", "page")]);
    let cs = f.connect(0, &sib);
    f.connect_with(0, &stranger, &[(":a", "page")]);
    f.router
        .unsubscribe(10, &session_of(&p), ":a", Cid::PAGE)
        .unwrap();
    let mut want = vec![cp, cs];
    want.sort();
    assert_eq!(drop_conns(&f.drain(), &key(":a", "page")), want);
    assert_eq!(f.keys(&p), vec![]);
    assert_eq!(f.keys(&stranger), vec![key(":a", "page")]);
}

// H§8.7.50 same on the user: every tab of the user in any session; anonymous
// and other users' tabs untouched.
#[test]
fn unsubscribe_drops_for_every_tab_of_the_user() {
    let mut f = Fixture::new();
    let a = f.peer(user(7));
    let b = f.peer(user(7));
    let anon = f.peer(None);
    let ca = f.connect_with(0, &a, &[(":a", "page")]);
    let cb = f.connect_with(0, &b, &[(":a", "page")]);
    f.connect_with(0, &anon, &[(":a", "page")]);
    f.router
        .unsubscribe(10, &user_of(7), ":a", Cid::PAGE)
        .unwrap();
    let mut want = vec![ca, cb];
    want.sort();
    assert_eq!(drop_conns(&f.drain(), &key(":a", "page")), want);
    assert_eq!(f.keys(&a), vec![]);
    assert_eq!(f.keys(&b), vec![]);
    assert_eq!(f.keys(&anon), vec![key(":a", "page")]);
}

// H§8.7.51 an invalid channel raises → `Err`, no tombstone, no output.
#[test]
fn unsubscribe_with_an_invalid_channel_is_an_error() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect(0, &p);
    assert!(matches!(
        f.router
            .unsubscribe(10, &instance_of(&p), "\"room\"", Cid::PAGE),
        Err(RouterError::Channel(_))
    ));
    assert_eq!(f.router.stats().tombstones, 0);
    assert_eq!(f.drain(), vec![]);
}

// ---------------------------------------------------------------------------
// unsubscribe_all/2 (R10)
// ---------------------------------------------------------------------------

// H§8.7.52 writes the channel-wide tombstone `{identity, ch}`.
#[test]
fn unsubscribe_all_writes_the_channel_wide_tombstone() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let page = f.token_for(1_000, &p, ":a", "page");
    let widget = f.token_for(1_000, &p, ":a", "widget");
    let other = f.token_for(1_000, &p, ":b", "widget");
    f.router
        .unsubscribe_all(2_000, &session_of(&p), ":a")
        .unwrap();
    assert_eq!(f.router.stats().tombstones, 1);
    assert!(!f.accepts(3_000, &p, &page));
    assert!(!f.accepts(3_000, &p, &widget));
    assert!(f.accepts(3_000, &p, &other));
}

fn dropped(
    out: &[Output],
) -> Vec<(
    tidings_core::router::ConnId,
    Vec<tidings_core::router::BindingKey>,
)> {
    let mut v: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::DropReceipts { conn, keys } => Some((*conn, keys.clone())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

// H§8.7.53 `{:drop_channel, ch}` on the instance: every cid of the channel is
// dropped, other channels kept.
#[test]
fn unsubscribe_all_drops_the_channel_for_the_instance() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let cp = f.connect_with(0, &p, &[(":a", "page"), (":a", "widget"), (":b", "page")]);
    f.router
        .unsubscribe_all(10, &instance_of(&p), ":a")
        .unwrap();
    assert_eq!(
        dropped(&f.drain()),
        vec![(cp, vec![key(":a", "page"), key(":a", "widget")])]
    );
    assert_eq!(f.keys(&p), vec![key(":b", "page")]);
}

// H§8.7.54 same on the session; a tab with nothing bound gets no event.
#[test]
fn unsubscribe_all_drops_the_channel_for_every_tab_of_the_session() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let bound = f.tab(&p);
    let unbound = f.tab(&p);
    let stranger = f.peer(None);
    let cp = f.connect_with(0, &p, &[(":a", "page")]);
    let cb = f.connect_with(0, &bound, &[(":a", "layout")]);
    f.connect_with(0, &unbound, &[(":b", "page")]);
    f.connect_with(0, &stranger, &[(":a", "page")]);
    f.router.unsubscribe_all(10, &session_of(&p), ":a").unwrap();
    let mut want = vec![
        (cp, vec![key(":a", "page")]),
        (cb, vec![key(":a", "layout")]),
    ];
    want.sort();
    assert_eq!(dropped(&f.drain()), want);
    assert_eq!(f.keys(&unbound), vec![key(":b", "page")]);
    assert_eq!(f.keys(&stranger), vec![key(":a", "page")]);
}

// H§8.7.55 same on the user.
#[test]
fn unsubscribe_all_drops_the_channel_for_every_tab_of_the_user() {
    let mut f = Fixture::new();
    let a = f.peer(user(7));
    let b = f.peer(user(7));
    let other = f.peer(user(8));
    let ca = f.connect_with(0, &a, &[(":a", "page")]);
    let cb = f.connect_with(0, &b, &[(":a", "x"), (":a", "y")]);
    f.connect_with(0, &other, &[(":a", "page")]);
    f.router.unsubscribe_all(10, &user_of(7), ":a").unwrap();
    let mut want = vec![
        (ca, vec![key(":a", "page")]),
        (cb, vec![key(":a", "x"), key(":a", "y")]),
    ];
    want.sort();
    assert_eq!(dropped(&f.drain()), want);
    assert_eq!(f.keys(&other), vec![key(":a", "page")]);
}

// H§8.7.56 an invalid channel raises → `Err`, no tombstone, no output.
#[test]
fn unsubscribe_all_with_an_invalid_channel_is_an_error() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    assert!(matches!(
        f.router.unsubscribe_all(10, &instance_of(&p), "{:a, 1.5}"),
        Err(RouterError::Channel(_))
    ));
    assert_eq!(f.router.stats().tombstones, 0);
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
}

// R13: the periodic refresh re-signs every binding of a stream with its
// authorizing user (H§3.2 item 5) and sends nothing when there are none.
#[test]
fn refresh_re_signs_every_binding_with_its_authorizing_user() {
    let mut f = Fixture::new();
    let p = f.peer(user(7));
    let own = f.token_for(0, &p, ":b", "page");
    let anon = f.token(0, p.instance, None, ":a", "page");
    let conn = f.attach(0, &p, &[&own, &anon]);
    let empty_tab = f.tab(&p);
    f.connect(0, &empty_tab);
    f.drain();
    f.advance(12 * HOUR);
    let out = f.drain();
    let [Output::RefreshReceipts { conn: to, receipts }] = out.as_slice() else {
        panic!("expected one RefreshReceipts, got {out:?}");
    };
    assert_eq!(*to, conn);
    assert_eq!(
        receipt_keys(receipts),
        vec![key(":a", "page"), key(":b", "page")]
    );
    let users: Vec<_> = receipts
        .iter()
        .map(|r| f.router.verify_receipt(&r.token, 12 * HOUR).unwrap().user)
        .collect();
    assert_eq!(users, vec![None, user(7)]);
}

// R13: a late refresh re-signs at the time it runs and schedules the next
// one `refresh_interval` after that.
#[test]
fn a_late_refresh_signs_at_its_run_time_and_reschedules_from_it() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    let late = 12 * HOUR + 5_000;
    f.router.handle_timeout(late);
    let out = f.drain();
    let [Output::RefreshReceipts { receipts, .. }] = out.as_slice() else {
        panic!("expected one RefreshReceipts, got {out:?}");
    };
    assert_eq!(
        f.router
            .verify_receipt(&receipts[0].token, late)
            .unwrap()
            .created_at,
        late
    );
    f.advance(late + 12 * HOUR - 1);
    assert_eq!(f.drain(), vec![]);
    f.advance(late + 12 * HOUR);
    assert_eq!(f.drain().len(), 1);
}

// R10: subscribing an already-bound key pushes a fresh receipt again, with
// no channel churn and no second binding.
#[test]
fn subscribe_of_an_already_bound_key_pushes_a_fresh_receipt_only() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    let conn = f.connect_with(0, &p, &[(":a", "page")]);
    assert_eq!(
        f.router
            .subscribe(10, &instance_of(&p), ":a", Cid::PAGE)
            .unwrap(),
        1
    );
    let out = f.drain();
    let [Output::AddReceipts { conn: to, receipts }] = out.as_slice() else {
        panic!("expected one AddReceipts, got {out:?}");
    };
    assert_eq!(*to, conn);
    assert_eq!(receipt_keys(receipts), vec![key(":a", "page")]);
    assert_eq!(f.keys(&p), vec![key(":a", "page")]);
}

// R11 + R8 / H§8.9.42: an identity change made by a page render is announced
// to every tab of the pre session, and the sibling's bindings of the old user
// are dropped.
#[test]
fn a_page_render_identity_change_is_announced() {
    let mut f = Fixture::new();
    let p = f.peer(user(1));
    let sib = f.tab(&p);
    let cp = f.connect(0, &p);
    let cs = f.connect_with(0, &sib, &[(":mine", "page")]);
    let mut fx = page_effects(&p, &[(":a", "page")]);
    fx[0].set_user_id(user(2));
    let c = f.router.commit_page(10, &p, fx, &[]).unwrap();
    assert_eq!(c.user, user(2));
    assert_eq!(
        f.router
            .verify_receipt(&c.receipt_adds[0].token, 10)
            .unwrap()
            .user,
        user(2)
    );
    let out = f.drain();
    for conn in [cp, cs] {
        assert!(out.contains(&Output::IdentityChanged {
            conn,
            session: p.session,
            user: user(2)
        }));
    }
    assert!(out.contains(&Output::DropReceipts {
        conn: cs,
        keys: vec![key(":mine", "page")]
    }));
    assert_eq!(f.bindings(&p), vec![(key(":a", "page"), true)]);
    assert_eq!(f.router.bindings(&sib.instance), Some(vec![]));
}
