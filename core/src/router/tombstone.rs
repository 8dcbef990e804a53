//! Tombstones make removals authoritative across reconnects; purge markers
//! make re-grants authoritative over older tombstones.
//!
//! Both are timestamped, max-merged by timestamp and kept for a TTL. A
//! binding-level key names `(identity, channel, cid)`, a channel-wide key
//! `(identity, channel)`.

use hashbrown::HashMap;

use super::types::Millis;
use crate::Topic;
use crate::identity::{Cid, Identity};

/// What a tombstone or purge marker covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StoneKey {
    pub(crate) identity: Identity,
    pub(crate) topic: Topic,
    /// `None`: every cid on the channel.
    pub(crate) cid: Option<Cid>,
}

#[derive(Default)]
pub(crate) struct Tombstones {
    stones: HashMap<StoneKey, Millis>,
    purges: HashMap<StoneKey, Millis>,
}

impl Tombstones {
    /// Records a removal at `at`, unless a re-grant strictly after `at`
    /// exists. At equal times the later call wins: a removal right after a
    /// grant in the same millisecond must hold.
    pub(crate) fn insert(&mut self, key: StoneKey, at: Millis) {
        if self.purges.get(&key).is_some_and(|&p| p > at) {
            return;
        }
        let ts = self.stones.entry(key).or_insert(at);
        *ts = (*ts).max(at);
    }

    /// Records a re-grant at `at`: removes tombstones no newer than it.
    pub(crate) fn purge(&mut self, key: StoneKey, at: Millis) {
        if self.stones.get(&key).is_some_and(|&ts| ts <= at) {
            self.stones.remove(&key);
        }
        let p = self.purges.entry(key).or_insert(at);
        *p = (*p).max(at);
    }

    /// Whether a live tombstone at or after `created_at` covers the binding
    /// `(topic, cid)` at any of `identities`.
    pub(crate) fn covers(
        &self,
        identities: &[Identity],
        topic: &Topic,
        cid: &Cid,
        created_at: Millis,
        now: Millis,
        ttl: Millis,
    ) -> bool {
        let live = |ts: Millis| ts >= created_at && ts.saturating_add(ttl) > now;
        identities.iter().any(|identity| {
            let mut key = StoneKey {
                identity: identity.clone(),
                topic: topic.clone(),
                cid: Some(cid.clone()),
            };
            if self.stones.get(&key).is_some_and(|&ts| live(ts)) {
                return true;
            }
            key.cid = None;
            self.stones.get(&key).is_some_and(|&ts| live(ts))
        })
    }

    /// Forgets everything older than the TTL.
    pub(crate) fn sweep(&mut self, now: Millis, ttl: Millis) {
        self.stones.retain(|_, ts| ts.saturating_add(ttl) > now);
        self.purges.retain(|_, ts| ts.saturating_add(ttl) > now);
    }

    pub(crate) fn len(&self) -> usize {
        self.stones.len() + self.purges.len()
    }
}
