//! Sockets (R14) and presence (R15), clause by clause: `connect`, `join`,
//! `leave`, `track`, `untrack`, `presence_state`, and what detach and
//! supersede do to presence. Every test asserts concrete outputs and state.
//!
//! `PresenceDiff` recipients are compared sorted: the router lists them in
//! its subscriber-list order, which no rule fixes.

mod common;

use std::collections::BTreeMap;

use common::{Fixture, ch, cid, delivered, empty, key, user};
use tidings_core::presence::{Diff, Meta, Presences};
use tidings_core::router::{CloseReason, ConnId, Output, RouterConfig, RouterError};
use tidings_core::{Channel, Cid, Identity, Payload, Peer};

const LOBBY: &str = "{:realtime, \"lobby\"}";
const NEWS: &str = ":news";

fn p(json: &str) -> Payload {
    Payload::new(json.as_bytes().to_vec())
}

/// Opens a socket for `peer`; connecting queues nothing.
fn socket(f: &mut Fixture, peer: &Peer) -> ConnId {
    let conn = f.router.connect(peer).expect("connect");
    assert_eq!(f.drain(), vec![], "connect queues nothing");
    conn
}

/// A socket for a new peer in a new session, joined to `channels` as `page`.
fn joined(f: &mut Fixture, channels: &[&str]) -> (Peer, ConnId) {
    let peer = f.peer(None);
    let conn = socket(f, &peer);
    for c in channels {
        assert_eq!(f.router.join(conn, *c, &Cid::PAGE), Ok(true));
    }
    f.drain();
    (peer, conn)
}

fn track(f: &mut Fixture, conn: ConnId, channel: &str, k: &str, json: &str) {
    f.router
        .track(conn, channel, k, p(json), &mut f.entropy)
        .expect("track");
}

/// The `PresenceDiff`s in `outputs`, recipients sorted.
fn diffs(outputs: &[Output]) -> Vec<(Channel, Diff, Vec<ConnId>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::PresenceDiff {
                channel,
                diff,
                recipients,
            } => {
                let mut recipients = recipients.clone();
                recipients.sort_unstable();
                Some((channel.clone(), (**diff).clone(), recipients))
            }
            _ => None,
        })
        .collect()
}

/// The one output of a presence change, which must be a `PresenceDiff` on `channel`.
fn only_diff(f: &mut Fixture, channel: &str) -> (Diff, Vec<ConnId>) {
    let outputs = f.drain();
    let found = diffs(&outputs);
    assert_eq!(outputs.len(), 1, "one output, a PresenceDiff: {outputs:?}");
    let (c, diff, recipients) = found.into_iter().next().expect("a PresenceDiff");
    assert_eq!(c, ch(channel));
    (diff, recipients)
}

fn sorted(mut conns: Vec<ConnId>) -> Vec<ConnId> {
    conns.sort_unstable();
    conns
}

fn presences(entries: &[(&str, Vec<Meta>)]) -> Presences {
    entries
        .iter()
        .map(|(k, metas)| ((*k).to_owned(), metas.clone()))
        .collect()
}

fn state(f: &Fixture, channel: &str) -> Presences {
    f.router.presence_state(channel).expect("valid channel")
}

// -- R14: connect --------------------------------------------------------------

#[test]
fn connect_attaches_an_instance_without_a_handshake_or_bindings() {
    let mut f = Fixture::new();
    let peer = f.peer(user(7));
    let conn = socket(&mut f, &peer);
    assert_eq!(f.router.connection(&peer.instance), Some(conn));
    assert_eq!(f.router.peer(conn), Some(peer.clone()));
    assert_eq!(f.router.bindings(&peer.instance), Some(vec![]));
    let stats = f.router.stats();
    assert_eq!(
        (stats.instances, stats.channels, stats.pending_handshakes),
        (1, 0, 0)
    );
}

#[test]
fn connect_refuses_an_attached_instance_id() {
    let mut f = Fixture::new();
    let peer = f.peer(None);
    let conn = socket(&mut f, &peer);
    assert_eq!(f.router.connect(&peer), Err(RouterError::InstanceInUse));
    let other_session = Peer {
        session: f.session(),
        ..peer.clone()
    };
    assert_eq!(
        f.router.connect(&other_session),
        Err(RouterError::SessionMismatch)
    );
    // An instance attached through a handshake is in use just the same.
    let tab = f.peer(None);
    let tab_conn = f.connect(1, &tab);
    assert_eq!(f.router.connect(&tab), Err(RouterError::InstanceInUse));
    // Nothing changed: both streams are live, nothing was queued.
    assert_eq!(f.router.peer(conn), Some(peer));
    assert_eq!(f.router.peer(tab_conn), Some(tab));
    assert_eq!(f.router.stats().instances, 2);
    assert_eq!(f.drain(), vec![]);
}

#[test]
fn connect_counts_towards_the_session_tab_limit() {
    let mut f = Fixture::with_config(RouterConfig {
        max_instances_per_session: 2,
        ..RouterConfig::default()
    });
    let tab = f.peer(None);
    f.connect(1, &tab);
    let first = f.tab(&tab);
    let first_conn = socket(&mut f, &first);
    let third = f.tab(&tab);
    assert_eq!(
        f.router.connect(&third),
        Err(RouterError::TooManyConnections { max: 2 })
    );
    assert_eq!(f.router.connection(&third.instance), None);
    // A socket counts for the handshake path too.
    let fourth = f.tab(&tab);
    let hs = f.handshake(2, &fourth, &[]);
    assert_eq!(
        f.router.attach(2, &hs.handshake_id, &fourth),
        Err(RouterError::TooManyConnections { max: 2 })
    );
    // Another session has room; a closed socket frees its place.
    let elsewhere = f.peer(None);
    socket(&mut f, &elsewhere);
    f.router.detach(first_conn);
    assert!(f.router.connect(&third).is_ok());
}

// -- R14: join -------------------------------------------------------------------

#[test]
fn join_binds_anonymously_with_no_receipt_and_no_tombstone() {
    let mut f = Fixture::new();
    let peer = f.peer(user(1));
    let conn = socket(&mut f, &peer);
    assert_eq!(f.router.join(conn, LOBBY, &Cid::PAGE), Ok(true));
    // The channel's first binding, and nothing for the client: no receipt.
    assert_eq!(f.drain(), vec![Output::ChannelUp(ch(LOBBY).topic())]);
    assert_eq!(
        f.router.bindings(&peer.instance),
        Some(vec![(key(LOBBY, "page"), false)])
    );
    assert_eq!(f.router.stats().tombstones, 0);
}

#[test]
fn an_anonymous_join_survives_a_login_of_its_session() {
    let mut f = Fixture::new();
    let tab = f.peer(None);
    f.connect(1, &tab);
    let sock = f.tab(&tab);
    let conn = socket(&mut f, &sock);
    f.router.join(conn, LOBBY, &Cid::PAGE).unwrap();
    f.drain();
    let mut fx = f.command(&tab, "page");
    fx.set_user_id(user(5));
    f.commit(2, fx);
    let outputs = f.drain();
    // R8 reaches the socket, drops nothing of it.
    assert!(outputs.contains(&Output::IdentityChanged {
        conn,
        session: tab.session,
        user: user(5),
    }));
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, Output::DropReceipts { conn: c, .. } if *c == conn))
    );
    assert_eq!(
        f.router.bindings(&sock.instance),
        Some(vec![(key(LOBBY, "page"), false)])
    );
}

#[test]
fn join_again_is_a_no_op() {
    let mut f = Fixture::new();
    let (peer, conn) = joined(&mut f, &[LOBBY]);
    assert_eq!(f.router.join(conn, LOBBY, &Cid::PAGE), Ok(false));
    assert_eq!(f.drain(), vec![]);
    assert_eq!(
        f.router.bindings(&peer.instance),
        Some(vec![(key(LOBBY, "page"), false)])
    );
    // Another cid on the channel is another binding, with no channel churn.
    assert_eq!(f.router.join(conn, LOBBY, &cid("chat")), Ok(true));
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.bindings(&peer.instance).map(|b| b.len()), Some(2));
}

#[test]
fn join_past_the_binding_limit_is_refused() {
    let mut f = Fixture::with_config(RouterConfig {
        max_bindings_per_instance: 2,
        ..RouterConfig::default()
    });
    let (peer, conn) = joined(&mut f, &[LOBBY, NEWS]);
    assert_eq!(
        f.router.join(conn, "{:room, 3}", &Cid::PAGE),
        Err(RouterError::TooManyBindings {
            would_hold: 3,
            max: 2
        })
    );
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.bindings(&peer.instance).map(|b| b.len()), Some(2));
    // Already bound at the limit: fine.
    assert_eq!(f.router.join(conn, NEWS, &Cid::PAGE), Ok(false));
}

// -- R14: leave --------------------------------------------------------------------

#[test]
fn leave_unbinds_without_a_tombstone() {
    let mut f = Fixture::new();
    // A page tab holding a receipt for the same key, in the socket's session.
    let tab = f.peer(None);
    let old = f.token_for(1, &tab, LOBBY, "page");
    let sock = f.tab(&tab);
    let conn = socket(&mut f, &sock);
    f.router.join(conn, LOBBY, &Cid::PAGE).unwrap();
    f.drain();
    assert_eq!(f.router.leave(conn, LOBBY, &Cid::PAGE), Ok(true));
    assert_eq!(f.drain(), vec![Output::ChannelDown(ch(LOBBY).topic())]);
    assert_eq!(f.router.bindings(&sock.instance), Some(vec![]));
    assert_eq!(f.router.stats().tombstones, 0);
    // Not bound any more: nothing to do.
    assert_eq!(f.router.leave(conn, LOBBY, &Cid::PAGE), Ok(false));
    assert_eq!(f.drain(), vec![]);
    // The other instance's old receipt is still good.
    assert!(f.accepts(2, &tab, &old));
    assert_eq!(f.router.stats().tombstones, 0);
}

#[test]
fn detach_forgets_joined_bindings_without_tombstones() {
    let mut f = Fixture::new();
    let (peer, conn) = joined(&mut f, &[LOBBY]);
    f.router.detach(conn);
    assert_eq!(f.drain(), vec![Output::ChannelDown(ch(LOBBY).topic())]);
    assert_eq!(f.router.bindings(&peer.instance), None);
    let stats = f.router.stats();
    assert_eq!(
        (stats.instances, stats.channels, stats.tombstones),
        (0, 0, 0)
    );
}

#[test]
fn a_stale_conn_is_not_attached() {
    let mut f = Fixture::new();
    let (peer, conn) = joined(&mut f, &[LOBBY]);
    track(&mut f, conn, LOBBY, "alice", "{}");
    f.router.detach(conn);
    f.drain();
    assert_eq!(
        f.router.join(conn, LOBBY, &Cid::PAGE),
        Err(RouterError::NotAttached)
    );
    assert_eq!(
        f.router
            .track(conn, LOBBY, "alice", empty(), &mut f.entropy),
        Err(RouterError::NotAttached)
    );
    // Leave and untrack of a stale stream do nothing.
    assert_eq!(f.router.leave(conn, LOBBY, &Cid::PAGE), Ok(false));
    assert_eq!(f.router.untrack(conn, LOBBY), Ok(()));
    assert_eq!(f.drain(), vec![]);
    // The instance id is free again; the old handle stays stale.
    let again = socket(&mut f, &peer);
    assert_ne!(again, conn);
    assert_eq!(
        f.router.join(conn, LOBBY, &Cid::PAGE),
        Err(RouterError::NotAttached)
    );
    assert_eq!(f.router.join(again, LOBBY, &Cid::PAGE), Ok(true));
}

// -- R14 with R7: broadcasts reach sockets -----------------------------------------

#[test]
fn a_broadcast_reaches_a_joined_socket_unless_its_instance_is_excepted() {
    let mut f = Fixture::new();
    let tab = f.peer(None);
    let tab_conn = f.connect_with(1, &tab, &[(LOBBY, "page")]);
    let (sock, conn) = joined(&mut f, &[LOBBY]);
    f.router.join(conn, LOBBY, &cid("chat")).unwrap();
    f.drain();
    f.router
        .broadcast_action(LOBBY, "hello", p("{\"n\":1}"))
        .unwrap();
    let mut got = delivered(&f.drain());
    got.sort();
    let mut want = vec![
        (tab_conn, "hello".to_owned(), vec!["page".to_owned()]),
        (
            conn,
            "hello".to_owned(),
            vec!["chat".to_owned(), "page".to_owned()],
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    f.router
        .broadcast_action_except(&[Identity::Instance(sock.instance)], LOBBY, "bye", empty())
        .unwrap();
    assert_eq!(
        delivered(&f.drain()),
        vec![(tab_conn, "bye".to_owned(), vec!["page".to_owned()])]
    );
    // With the socket the only subscriber left, excepting it sends nothing.
    f.router.detach(tab_conn);
    f.drain();
    f.router
        .broadcast_action_except(&[Identity::Instance(sock.instance)], LOBBY, "bye", empty())
        .unwrap();
    assert_eq!(f.drain(), vec![]);
}

// -- R15: track ---------------------------------------------------------------------

#[test]
fn track_sends_one_diff_to_every_stream_on_the_channel_tracker_included() {
    let mut f = Fixture::new();
    let (_, a) = joined(&mut f, &[LOBBY]);
    let (_, b) = joined(&mut f, &[LOBBY]);
    let (_, _elsewhere) = joined(&mut f, &[NEWS]);
    track(&mut f, a, LOBBY, "alice", r#"{"name":"a"}"#);
    let (diff, recipients) = only_diff(&mut f, LOBBY);
    assert_eq!(recipients, sorted(vec![a, b]));
    assert_eq!(diff.leaves, Presences::new());
    assert_eq!(diff.joins.keys().collect::<Vec<_>>(), ["alice"]);
    let meta = &diff.joins["alice"][0];
    assert_eq!(diff.joins["alice"].len(), 1);
    assert_eq!(meta.phx_ref_prev, None);
    assert_eq!(meta.payload.as_bytes(), br#"{"name":"a"}"#);
    assert!(!meta.phx_ref.is_empty());
    assert_eq!(
        state(&f, LOBBY),
        presences(&[("alice", vec![meta.clone()])])
    );
    assert_eq!(state(&f, NEWS), Presences::new());
}

#[test]
fn an_identical_track_is_a_no_op() {
    let mut f = Fixture::new();
    let (_, a) = joined(&mut f, &[LOBBY]);
    track(&mut f, a, LOBBY, "alice", r#"{"s":1}"#);
    f.drain();
    let before = state(&f, LOBBY);
    track(&mut f, a, LOBBY, "alice", r#"{"s":1}"#);
    assert_eq!(f.drain(), vec![]);
    assert_eq!(state(&f, LOBBY), before);
}

#[test]
fn a_new_payload_is_an_update_with_phx_ref_prev_as_a_join_and_a_leave() {
    let mut f = Fixture::new();
    let (_, a) = joined(&mut f, &[LOBBY]);
    let (_, b) = joined(&mut f, &[LOBBY]);
    track(&mut f, a, LOBBY, "alice", r#"{"s":1}"#);
    let (first, _) = only_diff(&mut f, LOBBY);
    let old = first.joins["alice"][0].clone();
    track(&mut f, a, LOBBY, "alice", r#"{"s":2}"#);
    let (diff, recipients) = only_diff(&mut f, LOBBY);
    assert_eq!(recipients, sorted(vec![a, b]));
    assert_eq!(diff.leaves, presences(&[("alice", vec![old.clone()])]));
    assert_eq!(diff.joins.keys().collect::<Vec<_>>(), ["alice"]);
    let new = diff.joins["alice"][0].clone();
    assert_eq!(diff.joins["alice"].len(), 1);
    assert_ne!(new.phx_ref, old.phx_ref);
    assert_eq!(new.phx_ref_prev.as_deref(), Some(old.phx_ref.as_str()));
    assert_eq!(new.payload.as_bytes(), br#"{"s":2}"#);
    assert_eq!(state(&f, LOBBY), presences(&[("alice", vec![new.clone()])]));
    // A second update names the first update's ref, not the original one.
    track(&mut f, a, LOBBY, "alice", r#"{"s":3}"#);
    let (diff, _) = only_diff(&mut f, LOBBY);
    assert_eq!(
        diff.joins["alice"][0].phx_ref_prev.as_deref(),
        Some(new.phx_ref.as_str())
    );
    assert_eq!(diff.leaves, presences(&[("alice", vec![new])]));
}

#[test]
fn another_key_leaves_the_old_key_and_joins_the_new_one() {
    let mut f = Fixture::new();
    let (_, a) = joined(&mut f, &[LOBBY]);
    track(&mut f, a, LOBBY, "alice", "{}");
    let (first, _) = only_diff(&mut f, LOBBY);
    let old = first.joins["alice"][0].clone();
    // Same payload, other key: not a no-op.
    track(&mut f, a, LOBBY, "bob", "{}");
    let (diff, recipients) = only_diff(&mut f, LOBBY);
    assert_eq!(recipients, vec![a]);
    assert_eq!(diff.leaves, presences(&[("alice", vec![old.clone()])]));
    assert_eq!(diff.joins.keys().collect::<Vec<_>>(), ["bob"]);
    let new = &diff.joins["bob"][0];
    assert_ne!(new.phx_ref, old.phx_ref);
    assert_eq!(new.phx_ref_prev, None);
    assert_eq!(state(&f, LOBBY), presences(&[("bob", vec![new.clone()])]));
}

#[test]
fn track_needs_a_binding_on_that_channel() {
    let mut f = Fixture::new();
    let (_, a) = joined(&mut f, &[NEWS]);
    assert_eq!(
        f.router.track(a, LOBBY, "alice", empty(), &mut f.entropy),
        Err(RouterError::NotJoined)
    );
    // After leaving, the channel is not joined any more.
    f.router.join(a, LOBBY, &Cid::PAGE).unwrap();
    f.router.leave(a, LOBBY, &Cid::PAGE).unwrap();
    f.drain();
    assert_eq!(
        f.router.track(a, LOBBY, "alice", empty(), &mut f.entropy),
        Err(RouterError::NotJoined)
    );
    assert_eq!(f.drain(), vec![]);
    assert_eq!(state(&f, LOBBY), Presences::new());
}

#[test]
fn metas_on_two_channels_are_separate() {
    let mut f = Fixture::new();
    let (_, a) = joined(&mut f, &[LOBBY, NEWS]);
    track(&mut f, a, LOBBY, "alice", "{}");
    track(&mut f, a, NEWS, "alice", "{}");
    let outputs = f.drain();
    let found = diffs(&outputs);
    assert_eq!(
        found.iter().map(|(c, _, _)| c.clone()).collect::<Vec<_>>(),
        [ch(LOBBY), ch(NEWS)]
    );
    let (lobby, news) = (&found[0].1.joins["alice"][0], &found[1].1.joins["alice"][0]);
    assert_ne!(lobby.phx_ref, news.phx_ref);
    f.router.untrack(a, NEWS).unwrap();
    assert_eq!(
        only_diff(&mut f, NEWS).0.leaves["alice"],
        vec![news.clone()]
    );
    assert_eq!(
        state(&f, LOBBY),
        presences(&[("alice", vec![lobby.clone()])])
    );
}

// -- R15: what removes a meta ----------------------------------------------------------

#[test]
fn untrack_removes_the_meta_with_a_leave_to_everyone() {
    let mut f = Fixture::new();
    let (_, a) = joined(&mut f, &[LOBBY]);
    let (_, b) = joined(&mut f, &[LOBBY]);
    track(&mut f, a, LOBBY, "alice", "{}");
    let (first, _) = only_diff(&mut f, LOBBY);
    f.router.untrack(a, LOBBY).unwrap();
    let (diff, recipients) = only_diff(&mut f, LOBBY);
    assert_eq!(recipients, sorted(vec![a, b]));
    assert_eq!(diff.joins, Presences::new());
    assert_eq!(diff.leaves, first.joins);
    assert_eq!(state(&f, LOBBY), Presences::new());
    // Nothing left to untrack; the binding stays.
    f.router.untrack(a, LOBBY).unwrap();
    assert_eq!(f.drain(), vec![]);
    assert_eq!(f.router.stats().channels, 1);
}

#[test]
fn leaving_the_channels_last_cid_removes_the_meta() {
    let mut f = Fixture::new();
    let (_, a) = joined(&mut f, &[LOBBY]);
    let (_, b) = joined(&mut f, &[LOBBY]);
    f.router.join(a, LOBBY, &cid("chat")).unwrap();
    track(&mut f, a, LOBBY, "alice", "{}");
    let (first, _) = only_diff(&mut f, LOBBY);
    // One cid of two: the meta stays.
    assert_eq!(f.router.leave(a, LOBBY, &cid("chat")), Ok(true));
    assert_eq!(f.drain(), vec![]);
    assert_eq!(state(&f, LOBBY), first.joins);
    // The last one: a leave to the streams still bound, not the leaver.
    assert_eq!(f.router.leave(a, LOBBY, &Cid::PAGE), Ok(true));
    let (diff, recipients) = only_diff(&mut f, LOBBY);
    assert_eq!(recipients, vec![b]);
    assert_eq!(diff.leaves, first.joins);
    assert_eq!(diff.joins, Presences::new());
    assert_eq!(state(&f, LOBBY), Presences::new());
}

#[test]
fn detach_removes_the_metas_with_a_diff_to_the_others_only() {
    let mut f = Fixture::new();
    let (_, a) = joined(&mut f, &[LOBBY, NEWS]);
    let (_, b) = joined(&mut f, &[LOBBY]);
    let (_, c) = joined(&mut f, &[LOBBY]);
    track(&mut f, a, LOBBY, "alice", "{}");
    track(&mut f, a, NEWS, "alice", "{}");
    track(&mut f, b, LOBBY, "bob", "{}");
    let joins = diffs(&f.drain());
    let alice_lobby = joins[0].1.joins["alice"][0].clone();
    let bob = joins[2].1.joins["bob"][0].clone();
    f.router.detach(a);
    let outputs = f.drain();
    // One diff, for the lobby, to b and c; nobody is left on :news.
    assert_eq!(
        diffs(&outputs),
        vec![(
            ch(LOBBY),
            Diff {
                joins: Presences::new(),
                leaves: presences(&[("alice", vec![alice_lobby])]),
            },
            sorted(vec![b, c]),
        )]
    );
    assert!(outputs.contains(&Output::ChannelDown(ch(NEWS).topic())));
    assert_eq!(state(&f, LOBBY), presences(&[("bob", vec![bob])]));
    assert_eq!(state(&f, NEWS), Presences::new());
}

#[test]
fn supersede_removes_the_old_streams_metas() {
    let mut f = Fixture::new();
    // A page instance (handshake path) that joined and tracked.
    let tab = f.peer(None);
    let old = f.connect(1, &tab);
    f.router.join(old, LOBBY, &Cid::PAGE).unwrap();
    f.drain();
    let (_, b) = joined(&mut f, &[LOBBY]);
    track(&mut f, old, LOBBY, "alice", "{}");
    let (first, _) = only_diff(&mut f, LOBBY);
    // The same instance attaches again: the old stream is superseded.
    let new = f.attach(2, &tab, &[]);
    let outputs = f.drain();
    assert!(outputs.contains(&Output::Close {
        conn: old,
        reason: CloseReason::Superseded,
    }));
    // The bindings carried over, so the new stream is told too.
    assert_eq!(
        diffs(&outputs),
        vec![(
            ch(LOBBY),
            Diff {
                joins: Presences::new(),
                leaves: first.joins,
            },
            sorted(vec![new, b]),
        )]
    );
    assert_eq!(state(&f, LOBBY), Presences::new());
    assert_eq!(
        f.router.bindings(&tab.instance),
        Some(vec![(key(LOBBY, "page"), false)])
    );
    // The old handle is stale.
    assert_eq!(
        f.router.track(old, LOBBY, "alice", empty(), &mut f.entropy),
        Err(RouterError::NotAttached)
    );
}

// -- R15: presence_state -----------------------------------------------------------------

#[test]
fn presence_state_lists_every_key_with_its_metas_in_stream_order() {
    let mut f = Fixture::new();
    let (_, a) = joined(&mut f, &[LOBBY]);
    let (_, b) = joined(&mut f, &[LOBBY]);
    let (_, c) = joined(&mut f, &[LOBBY]);
    // b tracks before a; c under another key.
    track(&mut f, b, LOBBY, "alice", r#"{"tab":"b"}"#);
    track(&mut f, a, LOBBY, "alice", r#"{"tab":"a"}"#);
    track(&mut f, c, LOBBY, "carol", "{}");
    let joins: Vec<Meta> = diffs(&f.drain())
        .into_iter()
        .flat_map(|(_, d, _)| d.joins.into_values().flatten())
        .collect();
    let (mb, ma, mc) = (joins[0].clone(), joins[1].clone(), joins[2].clone());
    // Metas of a key: a's stream is older than b's.
    let want: Presences = BTreeMap::from([
        ("alice".to_owned(), vec![ma.clone(), mb.clone()]),
        ("carol".to_owned(), vec![mc]),
    ]);
    assert_eq!(state(&f, LOBBY), want);
    // An update keeps a's place.
    track(&mut f, a, LOBBY, "alice", r#"{"tab":"a2"}"#);
    let (diff, _) = only_diff(&mut f, LOBBY);
    let ma2 = diff.joins["alice"][0].clone();
    assert_eq!(state(&f, LOBBY)["alice"], vec![ma2, mb]);
    assert_eq!(state(&f, NEWS), Presences::new());
    assert!(matches!(
        f.router.presence_state("not a channel"),
        Err(RouterError::Channel(_))
    ));
}

/// R15: an R10 `unsubscribe_all` that leaves a socket no cid on the
/// channel removes its meta, with a leave to the streams still there.
#[test]
fn an_r10_unsubscribe_removes_the_meta_with_the_binding() {
    let mut f = Fixture::new();
    let (peer, a) = joined(&mut f, &[LOBBY]);
    let (_, b) = joined(&mut f, &[LOBBY]);
    track(&mut f, a, LOBBY, "alice", "{}");
    let (first, _) = only_diff(&mut f, LOBBY);
    f.router
        .unsubscribe_all(2, &Identity::Instance(peer.instance), LOBBY)
        .unwrap();
    let outputs = f.drain();
    assert_eq!(
        diffs(&outputs),
        vec![(
            ch(LOBBY),
            Diff {
                joins: Presences::new(),
                leaves: first.joins,
            },
            vec![b],
        )]
    );
    assert_eq!(state(&f, LOBBY), Presences::new());
}
