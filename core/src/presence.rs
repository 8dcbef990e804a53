//! Presence, sans-IO (SPEC §8): who is on a channel, as keys holding metas.
//!
//! [`PresenceTable`] is the server's side: each tracker (a channel join,
//! named by an opaque `u64` the transport picks) holds at most one meta per
//! channel, under a key; tracking returns the [`Diff`] to send to every
//! subscriber (the sender included), untracking and leaving return theirs.
//! Every meta carries a unique `phx_ref`; an update carries the previous
//! one as `phx_ref_prev` and shows as a join plus a leave of the same key.
//!
//! [`ClientPresence`] is the client's side: phoenix.js's `syncState` /
//! `syncDiff` merge, which realtime-js uses verbatim.
//!
//! Payloads are pre-encoded JSON objects ([`Payload`]); the core never
//! parses them.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hashbrown::HashMap;

use crate::Topic;
use crate::identity::Entropy;
use crate::router::Payload;

/// One presence of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Unique per meta.
    pub phx_ref: String,
    /// The ref this meta replaced, on an update.
    pub phx_ref_prev: Option<String>,
    /// The tracked payload (a JSON object).
    pub payload: Payload,
}

/// Key → metas: a channel's presence state, or one half of a diff.
pub type Presences = BTreeMap<String, Vec<Meta>>;

/// What changed on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// Metas that appeared, by key.
    pub joins: Presences,
    /// Metas that went away, by key.
    pub leaves: Presences,
}

fn new_ref(entropy: &mut impl Entropy) -> String {
    let mut bytes = [0u8; 12];
    entropy.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug, Clone)]
struct Tracked {
    key: String,
    meta: Meta,
}

/// The server's presence state for every channel.
///
/// ```
/// use tidings_core::presence::PresenceTable;
/// use tidings_core::{Channel, Payload, SeededEntropy};
/// let mut e = SeededEntropy::new(1);
/// let room = Channel::parse("{:realtime, \"room1\"}").unwrap().topic();
/// let mut table = PresenceTable::default();
/// let diff = table.track(&room, 7, "u1", Payload::new(&br#"{"name":"alice"}"#[..]), &mut e).unwrap();
/// assert_eq!(diff.joins["u1"].len(), 1);
/// assert_eq!(table.state(&room)["u1"][0].phx_ref, diff.joins["u1"][0].phx_ref);
/// let gone = table.leave_all(7);
/// assert_eq!(gone[0].1.leaves["u1"].len(), 1);
/// ```
#[derive(Debug, Default)]
pub struct PresenceTable {
    /// Channel → tracker → its key and meta.
    channels: HashMap<Topic, BTreeMap<u64, Tracked>>,
    /// Tracker → the channels it tracks on.
    by_tracker: HashMap<u64, Vec<Topic>>,
}

impl PresenceTable {
    /// Tracks `payload` under `key` for `tracker` on `topic`. An identical
    /// payload under the same key is a no-op (`None`); a new payload is an
    /// update (join of the new meta, leave of the old); another key leaves
    /// the old one.
    pub fn track(
        &mut self,
        topic: &Topic,
        tracker: u64,
        key: &str,
        payload: Payload,
        entropy: &mut impl Entropy,
    ) -> Option<Diff> {
        let metas = self.channels.entry(topic.clone()).or_default();
        let mut diff = Diff::default();
        let prev = match metas.get(&tracker) {
            Some(t) if t.key == key && t.meta.payload == payload => return None,
            Some(t) if t.key == key => Some(t.meta.phx_ref.clone()),
            _ => None,
        };
        if let Some(old) = metas.remove(&tracker) {
            diff.leaves.entry(old.key).or_default().push(old.meta);
        } else {
            self.by_tracker
                .entry(tracker)
                .or_default()
                .push(topic.clone());
        }
        let meta = Meta {
            phx_ref: new_ref(entropy),
            phx_ref_prev: prev,
            payload,
        };
        diff.joins.entry(key.into()).or_default().push(meta.clone());
        metas.insert(
            tracker,
            Tracked {
                key: key.into(),
                meta,
            },
        );
        Some(diff)
    }

    /// Removes `tracker`'s meta on `topic` (`None` if it had none).
    pub fn untrack(&mut self, topic: &Topic, tracker: u64) -> Option<Diff> {
        let metas = self.channels.get_mut(topic)?;
        let old = metas.remove(&tracker)?;
        if metas.is_empty() {
            self.channels.remove(topic);
        }
        if let Some(topics) = self.by_tracker.get_mut(&tracker) {
            topics.retain(|t| t != topic);
            if topics.is_empty() {
                self.by_tracker.remove(&tracker);
            }
        }
        let mut diff = Diff::default();
        diff.leaves.insert(old.key, alloc::vec![old.meta]);
        Some(diff)
    }

    /// Removes every meta of `tracker` (it left or disconnected).
    pub fn leave_all(&mut self, tracker: u64) -> Vec<(Topic, Diff)> {
        let topics = self.by_tracker.get(&tracker).cloned().unwrap_or_default();
        topics
            .into_iter()
            .filter_map(|t| self.untrack(&t, tracker).map(|d| (t, d)))
            .collect()
    }

    /// A channel's state: key → metas (sent as `presence_state` after a join).
    pub fn state(&self, topic: &Topic) -> Presences {
        let mut state = Presences::new();
        for t in self
            .channels
            .get(topic)
            .into_iter()
            .flat_map(BTreeMap::values)
        {
            state.entry(t.key.clone()).or_default().push(t.meta.clone());
        }
        state
    }
}

/// What a client's merge reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceEvent {
    /// Metas joined a key: its metas before, and the joined ones.
    Join {
        /// The key.
        key: String,
        /// The key's metas before the join (empty if new).
        current: Vec<Meta>,
        /// The metas that joined.
        joined: Vec<Meta>,
    },
    /// Metas left a key: its metas after, and the left ones.
    Leave {
        /// The key.
        key: String,
        /// The key's metas after the leave.
        current: Vec<Meta>,
        /// The metas that left.
        left: Vec<Meta>,
    },
}

/// A client's view of one channel's presence, merged the phoenix.js way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientPresence {
    /// Key → metas.
    pub state: Presences,
}

fn refs(metas: &[Meta]) -> impl Fn(&Meta) -> bool + '_ {
    move |m| metas.iter().any(|o| o.phx_ref == m.phx_ref)
}

impl ClientPresence {
    /// Replaces the state with a full `presence_state`, reporting the
    /// difference as joins and leaves (phoenix.js `syncState`).
    pub fn sync_state(&mut self, new: &Presences) -> Vec<PresenceEvent> {
        let mut diff = Diff::default();
        for (key, metas) in &self.state {
            if !new.contains_key(key) {
                diff.leaves.insert(key.clone(), metas.clone());
            }
        }
        for (key, new_metas) in new {
            match self.state.get(key) {
                Some(cur) => {
                    let joined: Vec<Meta> = new_metas
                        .iter()
                        .filter(|m| !refs(cur)(m))
                        .cloned()
                        .collect();
                    let left: Vec<Meta> = cur
                        .iter()
                        .filter(|m| !refs(new_metas)(m))
                        .cloned()
                        .collect();
                    if !joined.is_empty() {
                        diff.joins.insert(key.clone(), joined);
                    }
                    if !left.is_empty() {
                        diff.leaves.insert(key.clone(), left);
                    }
                }
                None => {
                    diff.joins.insert(key.clone(), new_metas.clone());
                }
            }
        }
        self.sync_diff(&diff)
    }

    /// Applies a `presence_diff`: joins first, then leaves (phoenix.js `syncDiff`).
    pub fn sync_diff(&mut self, diff: &Diff) -> Vec<PresenceEvent> {
        let mut events = Vec::new();
        for (key, joined) in &diff.joins {
            let current = self.state.get(key).cloned().unwrap_or_default();
            let mut metas: Vec<Meta> = current
                .iter()
                .filter(|m| !refs(joined)(m))
                .cloned()
                .collect();
            metas.extend(joined.iter().cloned());
            self.state.insert(key.clone(), metas);
            events.push(PresenceEvent::Join {
                key: key.clone(),
                current,
                joined: joined.clone(),
            });
        }
        for (key, left) in &diff.leaves {
            let Some(cur) = self.state.get_mut(key) else {
                continue;
            };
            cur.retain(|m| !refs(left)(m));
            let current = cur.clone();
            if cur.is_empty() {
                self.state.remove(key);
            }
            events.push(PresenceEvent::Leave {
                key: key.clone(),
                current,
                left: left.clone(),
            });
        }
        events
    }
}
