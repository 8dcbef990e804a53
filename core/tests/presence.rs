//! Presence: the server's table (SPEC §8) and the client's phoenix.js merge,
//! and the property that a client fed the state and then every diff always
//! sees exactly the server's state.

use proptest::prelude::*;
use tidings_core::presence::{ClientPresence, Diff, PresenceEvent, PresenceTable, Presences};
use tidings_core::{Channel, Payload, SeededEntropy, Topic};

fn room(n: i64) -> Topic {
    Channel::tuple("realtime", [tidings_core::Value::str(&n.to_string())])
        .unwrap()
        .topic()
}

fn p(json: &str) -> Payload {
    Payload::new(json.as_bytes().to_vec())
}

#[test]
fn a_track_joins_and_shows_in_the_state() {
    let mut e = SeededEntropy::new(1);
    let mut t = PresenceTable::default();
    let d = t
        .track(&room(1), 1, "u1", p(r#"{"name":"alice"}"#), &mut e)
        .unwrap();
    assert!(d.leaves.is_empty());
    let joined = &d.joins["u1"];
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0].phx_ref_prev, None);
    assert_eq!(t.state(&room(1))["u1"], *joined);
    assert!(t.state(&room(2)).is_empty());
}

#[test]
fn an_identical_track_is_a_no_op() {
    let mut e = SeededEntropy::new(1);
    let mut t = PresenceTable::default();
    t.track(&room(1), 1, "u1", p("{}"), &mut e).unwrap();
    assert_eq!(t.track(&room(1), 1, "u1", p("{}"), &mut e), None);
}

#[test]
fn an_update_joins_the_new_meta_with_phx_ref_prev_and_leaves_the_old() {
    let mut e = SeededEntropy::new(1);
    let mut t = PresenceTable::default();
    let first = t.track(&room(1), 1, "u1", p(r#"{"s":1}"#), &mut e).unwrap();
    let old = first.joins["u1"][0].clone();
    let d = t.track(&room(1), 1, "u1", p(r#"{"s":2}"#), &mut e).unwrap();
    assert_eq!(d.leaves["u1"], vec![old.clone()]);
    let new = &d.joins["u1"][0];
    assert_ne!(new.phx_ref, old.phx_ref);
    assert_eq!(new.phx_ref_prev.as_deref(), Some(old.phx_ref.as_str()));
    assert_eq!(t.state(&room(1))["u1"], vec![new.clone()]);
}

#[test]
fn a_new_key_leaves_the_old_key() {
    let mut e = SeededEntropy::new(1);
    let mut t = PresenceTable::default();
    t.track(&room(1), 1, "a", p("{}"), &mut e).unwrap();
    let d = t.track(&room(1), 1, "b", p("{}"), &mut e).unwrap();
    assert_eq!(d.leaves.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(d.joins.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(d.joins["b"][0].phx_ref_prev, None);
    assert_eq!(t.state(&room(1)).keys().collect::<Vec<_>>(), ["b"]);
}

#[test]
fn two_trackers_share_a_key_and_untrack_separately() {
    let mut e = SeededEntropy::new(1);
    let mut t = PresenceTable::default();
    t.track(&room(1), 1, "u1", p(r#"{"tab":1}"#), &mut e)
        .unwrap();
    t.track(&room(1), 2, "u1", p(r#"{"tab":2}"#), &mut e)
        .unwrap();
    assert_eq!(t.state(&room(1))["u1"].len(), 2);
    let d = t.untrack(&room(1), 1).unwrap();
    assert_eq!(d.leaves["u1"].len(), 1);
    assert_eq!(t.state(&room(1))["u1"].len(), 1);
    assert_eq!(t.untrack(&room(1), 1), None);
}

#[test]
fn leaving_removes_every_meta_of_the_tracker() {
    let mut e = SeededEntropy::new(1);
    let mut t = PresenceTable::default();
    t.track(&room(1), 1, "u1", p("{}"), &mut e).unwrap();
    t.track(&room(2), 1, "u1", p("{}"), &mut e).unwrap();
    t.track(&room(2), 2, "u2", p("{}"), &mut e).unwrap();
    let mut gone = t.leave_all(1);
    gone.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(gone.len(), 2);
    assert!(
        gone.iter()
            .all(|(_, d)| d.leaves["u1"].len() == 1 && d.joins.is_empty())
    );
    assert!(t.state(&room(1)).is_empty());
    assert_eq!(t.state(&room(2)).keys().collect::<Vec<_>>(), ["u2"]);
    assert!(t.leave_all(1).is_empty());
}

#[test]
fn every_meta_gets_a_unique_ref() {
    let mut e = SeededEntropy::new(1);
    let mut t = PresenceTable::default();
    let mut refs = std::collections::BTreeSet::new();
    for tracker in 0..200 {
        let d = t.track(&room(1), tracker, "k", p("{}"), &mut e).unwrap();
        assert!(refs.insert(d.joins["k"][0].phx_ref.clone()));
    }
}

#[test]
fn the_client_merge_reports_joins_then_leaves_like_phoenix_js() {
    let mut e = SeededEntropy::new(1);
    let mut t = PresenceTable::default();
    let mut c = ClientPresence::default();
    t.track(&room(1), 1, "u1", p(r#"{"name":"alice"}"#), &mut e)
        .unwrap();
    let events = c.sync_state(&t.state(&room(1)));
    assert!(
        matches!(&events[..], [PresenceEvent::Join { key, current, joined }] if key == "u1" && current.is_empty() && joined.len() == 1)
    );
    // An update: a join (old metas as `current`) then a leave.
    let d = t
        .track(&room(1), 1, "u1", p(r#"{"name":"al"}"#), &mut e)
        .unwrap();
    let events = c.sync_diff(&d);
    assert!(
        matches!(&events[..], [PresenceEvent::Join { current, .. }, PresenceEvent::Leave { current: after, left, .. }]
        if current.len() == 1 && after.len() == 1 && left.len() == 1)
    );
    assert_eq!(c.state, t.state(&room(1)));
    // A leave of a key the client does not know is ignored.
    let mut stray = Diff::default();
    stray.leaves.insert("nobody".into(), vec![]);
    assert!(c.sync_diff(&stray).is_empty());
    // A full state without the key reports its leave.
    let events = c.sync_state(&Presences::new());
    assert!(
        matches!(&events[..], [PresenceEvent::Leave { key, current, .. }] if key == "u1" && current.is_empty())
    );
    assert!(c.state.is_empty());
}

fn sorted(state: &Presences) -> Presences {
    let mut s = state.clone();
    for metas in s.values_mut() {
        metas.sort_by(|a, b| a.phx_ref.cmp(&b.phx_ref));
    }
    s
}

#[derive(Debug, Clone)]
enum Op {
    Track { tracker: u64, key: u8, payload: u8 },
    Untrack { tracker: u64 },
    Leave { tracker: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..4, 0u8..3, 0u8..3).prop_map(|(tracker, key, payload)| Op::Track {
            tracker,
            key,
            payload
        }),
        (0u64..4).prop_map(|tracker| Op::Untrack { tracker }),
        (0u64..4).prop_map(|tracker| Op::Leave { tracker }),
    ]
}

proptest! {
    /// A client given the state once and then every diff of its channel
    /// always holds exactly the server's state.
    #[test]
    fn a_client_fed_every_diff_tracks_the_server_state(ops in prop::collection::vec(op(), 0..60), start in 0usize..10) {
        let mut e = SeededEntropy::new(9);
        let mut t = PresenceTable::default();
        let mut c = ClientPresence::default();
        let topic = room(1);
        for (i, op) in ops.iter().enumerate() {
            if i == start {
                c.sync_state(&t.state(&topic));
            }
            let diffs: Vec<(Topic, Diff)> = match op {
                Op::Track { tracker, key, payload } => t
                    .track(&topic, *tracker, &format!("k{key}"), p(&format!("{{\"v\":{payload}}}")), &mut e)
                    .map(|d| (topic.clone(), d))
                    .into_iter()
                    .collect(),
                Op::Untrack { tracker } => t.untrack(&topic, *tracker).map(|d| (topic.clone(), d)).into_iter().collect(),
                Op::Leave { tracker } => t.leave_all(*tracker),
            };
            if i >= start {
                for (_, d) in diffs.iter().filter(|(tp, _)| *tp == topic) {
                    c.sync_diff(d);
                }
                // Metas of one key are a set: their order is the arrival order
                // on the client and tracker order on the server.
                prop_assert_eq!(sorted(&c.state), sorted(&t.state(&topic)));
            }
        }
    }
}
