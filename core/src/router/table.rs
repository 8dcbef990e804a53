//! The subscription table: instances with their identities and bindings,
//! channels with their subscribers, and the indexes that make every lookup
//! cost O(what it touches).
//!
//! A binding `(channel, cid)` lives once, in its channel's subscriber list
//! (`Sub`, grouped per instance so a broadcast yields one recipient per
//! instance); the instance keeps the position of each of its `Sub`s.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use hashbrown::HashMap;
use slab::Slab;

use super::types::{Cids, ConnId, Output, Recipient, Removal};
use crate::identity::{Cid, Identity, InstanceId, SessionId, UserId};
use crate::{Channel, Topic};

/// Longest topic encoded on the stack for a lookup; longer ones allocate.
const TOPIC_STACK_BYTES: usize = 256;

/// Runs `f` with the channel's topic bytes, allocating only for long topics.
pub(crate) fn with_topic<R>(channel: &Channel, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; TOPIC_STACK_BYTES];
    match channel.encode_topic(&mut buf) {
        Some(bytes) => f(bytes),
        None => f(channel.topic().as_bytes()),
    }
}

pub(crate) struct Instance {
    pub(crate) id: InstanceId,
    pub(crate) conn: ConnId,
    pub(crate) session: SessionId,
    pub(crate) user: Option<UserId>,
    /// Bumped at every user change. A binding authorized by a user carries
    /// the epoch it was granted in; anonymous bindings carry none.
    pub(crate) epoch: u32,
    /// Channel id → position of this instance's `Sub` in that channel.
    channels: HashMap<u32, u32>,
    /// User-authorized bindings → the epoch they were granted in.
    tags: HashMap<(u32, Cid), u32>,
    /// Number of `(channel, cid)` bindings.
    pub(crate) count: usize,
}

struct ChannelEntry {
    topic: Topic,
    channel: Channel,
    subs: Vec<Sub>,
}

struct Sub {
    conn: ConnId,
    cids: Cids,
}

/// The subscription table on its own: instances, their bindings and the
/// channel → subscribers index, with no receipts, tombstones or timers.
/// [`Router`](super::Router) builds on it; it is public for embedders that
/// want bare routing, and so its costs can be measured in isolation.
///
/// ```
/// use std::collections::VecDeque;
/// use tidings_core::router::SubscriptionTable;
/// use tidings_core::{Channel, Cid, InstanceId, SeededEntropy, SessionId};
/// let mut e = SeededEntropy::new(1);
/// let mut table = SubscriptionTable::default();
/// let mut out = VecDeque::new();
/// let slot = table.attach(InstanceId::mint(&mut e), SessionId::mint(&mut e), None);
/// let room = Channel::parse("{:room, 1}").unwrap();
/// assert!(table.bind(slot, &room, &Cid::PAGE, false, &mut out));
/// let mut recipients = Vec::new();
/// table.fanout(&room, &[], &mut recipients);
/// assert_eq!(recipients.len(), 1);
/// assert!(table.unbind(slot, &room, &Cid::PAGE, &mut out));
/// ```
#[derive(Default)]
pub struct SubscriptionTable {
    instances: Slab<Instance>,
    by_instance: HashMap<InstanceId, usize>,
    by_session: HashMap<SessionId, Vec<usize>>,
    by_user: HashMap<UserId, Vec<usize>>,
    channels: Slab<ChannelEntry>,
    by_topic: HashMap<Topic, usize>,
    minted: u64,
}

fn index_add<K: Eq + core::hash::Hash>(index: &mut HashMap<K, Vec<usize>>, key: K, slot: usize) {
    index.entry(key).or_default().push(slot);
}

fn index_remove<K: Eq + core::hash::Hash>(
    index: &mut HashMap<K, Vec<usize>>,
    key: &K,
    slot: usize,
) {
    if let Some(v) = index.get_mut(key) {
        v.retain(|&s| s != slot);
        if v.is_empty() {
            index.remove(key);
        }
    }
}

/// An instance's place in a [`SubscriptionTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstanceSlot(usize);

impl SubscriptionTable {
    /// Adds an instance with no bindings (its stream is attached).
    pub fn attach(
        &mut self,
        id: InstanceId,
        session: SessionId,
        user: Option<UserId>,
    ) -> InstanceSlot {
        InstanceSlot(self.insert_instance(id, session, user))
    }

    /// Removes an instance and its bindings; `ChannelDown` for channels left empty.
    pub fn detach(&mut self, slot: InstanceSlot, out: &mut VecDeque<Output>) {
        self.remove_instance(slot.0, out);
    }

    /// The instance's stream handle.
    pub fn conn(&self, slot: InstanceSlot) -> ConnId {
        self.instances[slot.0].conn
    }

    /// Binds `(channel, cid)`, authorized by the instance's user or
    /// anonymous; `ChannelUp` when the channel had no binding. False when
    /// already bound.
    pub fn bind(
        &mut self,
        slot: InstanceSlot,
        channel: &Channel,
        cid: &Cid,
        by_user: bool,
        out: &mut VecDeque<Output>,
    ) -> bool {
        let epoch = if by_user {
            self.instances[slot.0].epoch
        } else {
            0
        };
        self.add_binding(slot.0, channel, cid, epoch, out)
    }

    /// Unbinds `(channel, cid)`; `ChannelDown` when it was the channel's last
    /// binding. False when it was not bound.
    pub fn unbind(
        &mut self,
        slot: InstanceSlot,
        channel: &Channel,
        cid: &Cid,
        out: &mut VecDeque<Output>,
    ) -> bool {
        self.remove_binding(slot.0, channel, cid, out)
    }
}

impl SubscriptionTable {
    fn mint_conn(&mut self, slot: usize) -> ConnId {
        self.minted += 1;
        ConnId((self.minted << 32) | slot as u64)
    }

    pub(crate) fn slot_of(&self, id: &InstanceId) -> Option<usize> {
        self.by_instance.get(id).copied()
    }

    pub(crate) fn instance(&self, slot: usize) -> &Instance {
        &self.instances[slot]
    }

    /// The slot of a live stream's instance, if `conn` is still current.
    pub(crate) fn slot_of_conn(&self, conn: ConnId) -> Option<usize> {
        let slot = conn.slot();
        self.instances
            .get(slot)
            .filter(|i| i.conn == conn)
            .map(|_| slot)
    }

    pub(crate) fn instance_count(&self) -> usize {
        self.instances.len()
    }

    pub(crate) fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Creates an instance entry with no bindings.
    pub(crate) fn insert_instance(
        &mut self,
        id: InstanceId,
        session: SessionId,
        user: Option<UserId>,
    ) -> usize {
        let slot = self.instances.vacant_key();
        let conn = self.mint_conn(slot);
        index_add(&mut self.by_session, session, slot);
        if let Some(u) = &user {
            index_add(&mut self.by_user, u.clone(), slot);
        }
        self.by_instance.insert(id, slot);
        self.instances.insert(Instance {
            id,
            conn,
            session,
            user,
            epoch: 1,
            channels: HashMap::new(),
            tags: HashMap::new(),
            count: 0,
        });
        slot
    }

    /// Gives the instance a new stream handle (supersede).
    pub(crate) fn renew_conn(&mut self, slot: usize) -> ConnId {
        let conn = self.mint_conn(slot);
        let inst = &mut self.instances[slot];
        inst.conn = conn;
        for (&chan, &pos) in &inst.channels {
            self.channels[chan as usize].subs[pos as usize].conn = conn;
        }
        conn
    }

    /// Removes an instance and all its bindings.
    pub(crate) fn remove_instance(&mut self, slot: usize, out: &mut VecDeque<Output>) {
        let chans: Vec<u32> = self.instances[slot].channels.keys().copied().collect();
        for chan in chans {
            let pos = self.instances[slot].channels[&chan];
            self.remove_sub(chan, pos, out);
        }
        let inst = self.instances.remove(slot);
        self.by_instance.remove(&inst.id);
        index_remove(&mut self.by_session, &inst.session, slot);
        if let Some(u) = &inst.user {
            index_remove(&mut self.by_user, u, slot);
        }
    }

    /// Sets an instance's identity. When the user changes, bumps the epoch
    /// and drops the bindings authorized in an older epoch; returns them.
    pub(crate) fn set_identity(
        &mut self,
        slot: usize,
        session: SessionId,
        user: Option<UserId>,
        out: &mut VecDeque<Output>,
    ) -> Vec<(Channel, Cid)> {
        let inst = &mut self.instances[slot];
        if inst.session != session {
            let old = core::mem::replace(&mut inst.session, session);
            index_remove(&mut self.by_session, &old, slot);
            index_add(&mut self.by_session, session, slot);
        }
        let inst = &mut self.instances[slot];
        if inst.user == user {
            return Vec::new();
        }
        let old = core::mem::replace(&mut inst.user, user.clone());
        inst.epoch += 1;
        let epoch = inst.epoch;
        if let Some(u) = &old {
            index_remove(&mut self.by_user, u, slot);
        }
        if let Some(u) = user {
            index_add(&mut self.by_user, u, slot);
        }
        let stale: Vec<(u32, Cid)> = self.instances[slot]
            .tags
            .iter()
            .filter(|&(_, &e)| e != epoch)
            .map(|(k, _)| k.clone())
            .collect();
        let mut dropped = Vec::with_capacity(stale.len());
        for (chan, cid) in stale {
            let channel = self.channels[chan as usize].channel.clone();
            if self.remove_binding_in(slot, chan, &cid, out) {
                dropped.push((channel, cid));
            }
        }
        dropped.sort();
        dropped
    }

    /// Binds `(channel, cid)` for the instance, authorized in `epoch`
    /// (0: anonymous). False when it was already bound (it keeps its tag).
    pub(crate) fn add_binding(
        &mut self,
        slot: usize,
        channel: &Channel,
        cid: &Cid,
        epoch: u32,
        out: &mut VecDeque<Output>,
    ) -> bool {
        let chan = if let Some(chan) = with_topic(channel, |t| self.by_topic.get(t).copied()) {
            chan
        } else {
            let topic = channel.topic();
            let chan = self.channels.insert(ChannelEntry {
                topic: topic.clone(),
                channel: channel.clone(),
                subs: Vec::new(),
            });
            self.by_topic.insert(topic.clone(), chan);
            out.push_back(Output::ChannelUp(topic));
            chan
        };
        let chan32 = chan as u32;
        let inst = &mut self.instances[slot];
        if let Some(&pos) = inst.channels.get(&chan32) {
            if !self.channels[chan].subs[pos as usize]
                .cids
                .insert(cid.clone())
            {
                return false;
            }
        } else {
            let subs = &mut self.channels[chan].subs;
            // Grow by a quarter, not double: big channels hold most bindings
            // and doubling leaves up to half their list unused.
            if subs.len() == subs.capacity() {
                subs.reserve_exact((subs.len() / 4).max(1));
            }
            inst.channels.insert(chan32, subs.len() as u32);
            subs.push(Sub {
                conn: inst.conn,
                cids: Cids::one(cid.clone()),
            });
        }
        inst.count += 1;
        if epoch != 0 {
            inst.tags.insert((chan32, cid.clone()), epoch);
        }
        true
    }

    /// Re-tags an existing binding with `epoch` (0: anonymous).
    pub(crate) fn set_tag(&mut self, slot: usize, channel: &Channel, cid: &Cid, epoch: u32) {
        let Some(chan) = with_topic(channel, |t| self.by_topic.get(t).copied()) else {
            return;
        };
        let key = (chan as u32, cid.clone());
        let inst = &mut self.instances[slot];
        if epoch == 0 {
            inst.tags.remove(&key);
        } else {
            inst.tags.insert(key, epoch);
        }
    }

    /// The epoch a binding was authorized in (0: anonymous), if bound.
    pub(crate) fn epoch_of(&self, slot: usize, channel: &Channel, cid: &Cid) -> Option<u32> {
        let chan = with_topic(channel, |t| self.by_topic.get(t).copied())?;
        let inst = &self.instances[slot];
        let pos = *inst.channels.get(&(chan as u32))?;
        if !self.channels[chan].subs[pos as usize].cids.contains(cid) {
            return None;
        }
        Some(
            inst.tags
                .get(&(chan as u32, cid.clone()))
                .copied()
                .unwrap_or(0),
        )
    }

    /// Unbinds `(channel, cid)`; false when it was not bound.
    pub(crate) fn remove_binding(
        &mut self,
        slot: usize,
        channel: &Channel,
        cid: &Cid,
        out: &mut VecDeque<Output>,
    ) -> bool {
        match with_topic(channel, |t| self.by_topic.get(t).copied()) {
            Some(chan) => self.remove_binding_in(slot, chan as u32, cid, out),
            None => false,
        }
    }

    fn remove_binding_in(
        &mut self,
        slot: usize,
        chan: u32,
        cid: &Cid,
        out: &mut VecDeque<Output>,
    ) -> bool {
        let Some(&pos) = self.instances[slot].channels.get(&chan) else {
            return false;
        };
        let sub = &mut self.channels[chan as usize].subs[pos as usize];
        match sub.cids.without(cid) {
            Removal::NotThere => false,
            Removal::Emptied => {
                self.remove_sub(chan, pos, out);
                true
            }
            Removal::Rest(rest) => {
                sub.cids = rest;
                let inst = &mut self.instances[slot];
                inst.count -= 1;
                inst.tags.remove(&(chan, cid.clone()));
                true
            }
        }
    }

    /// Removes one instance's `Sub` (all its cids) from a channel, keeping
    /// the instance's count and tags and every position right.
    fn remove_sub(&mut self, chan: u32, pos: u32, out: &mut VecDeque<Output>) {
        let entry = &mut self.channels[chan as usize];
        let removed = entry.subs.swap_remove(pos as usize);
        let inst = &mut self.instances[removed.conn.slot()];
        inst.channels.remove(&chan);
        inst.count -= removed.cids.len();
        for cid in removed.cids.as_slice() {
            inst.tags.remove(&(chan, cid.clone()));
        }
        if let Some(moved) = entry.subs.get(pos as usize) {
            self.instances[moved.conn.slot()].channels.insert(chan, pos);
        }
        if entry.subs.is_empty() {
            let entry = self.channels.remove(chan as usize);
            self.by_topic.remove(&entry.topic);
            out.push_back(Output::ChannelDown(entry.topic));
        }
    }

    /// Unbinds every cid of the instance on `channel`; returns them.
    pub(crate) fn remove_channel(
        &mut self,
        slot: usize,
        channel: &Channel,
        out: &mut VecDeque<Output>,
    ) -> Vec<Cid> {
        let Some(chan) = with_topic(channel, |t| self.by_topic.get(t).copied()) else {
            return Vec::new();
        };
        let Some(&pos) = self.instances[slot].channels.get(&(chan as u32)) else {
            return Vec::new();
        };
        let cids: Vec<Cid> = self.channels[chan].subs[pos as usize]
            .cids
            .as_slice()
            .to_vec();
        self.remove_sub(chan as u32, pos, out);
        cids
    }

    /// The instance's cids bound to `channel`.
    pub(crate) fn cids_on(&self, slot: usize, channel: &Channel) -> Option<&Cids> {
        let chan = with_topic(channel, |t| self.by_topic.get(t).copied())?;
        let pos = *self.instances[slot].channels.get(&(chan as u32))?;
        Some(&self.channels[chan].subs[pos as usize].cids)
    }

    /// Every binding of the instance with its authorizing epoch (0: anonymous), sorted.
    pub(crate) fn bindings(&self, slot: usize) -> Vec<(Channel, Cid, u32)> {
        let inst = &self.instances[slot];
        let mut all = Vec::with_capacity(inst.count);
        for (&chan, &pos) in &inst.channels {
            let entry = &self.channels[chan as usize];
            for cid in entry.subs[pos as usize].cids.as_slice() {
                let epoch = inst.tags.get(&(chan, cid.clone())).copied().unwrap_or(0);
                all.push((entry.channel.clone(), cid.clone(), epoch));
            }
        }
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    /// How many attached instances a session has.
    pub(crate) fn session_len(&self, session: &SessionId) -> usize {
        self.by_session.get(session).map_or(0, Vec::len)
    }

    /// The live instances an identity names, ordered by instance id.
    pub(crate) fn resolve(&self, identity: &Identity) -> Vec<usize> {
        let mut slots = match identity {
            Identity::Instance(i) => return self.slot_of(i).into_iter().collect(),
            Identity::Session(s) => self.by_session.get(s).cloned().unwrap_or_default(),
            Identity::User(u) => self.by_user.get(u).cloned().unwrap_or_default(),
        };
        slots.sort_unstable_by_key(|&s| self.instances[s].id);
        slots
    }

    /// Every instance bound to `channel` and not excluded, with its cids.
    pub fn fanout(&self, channel: &Channel, except: &[Identity], recipients: &mut Vec<Recipient>) {
        let Some(chan) = with_topic(channel, |t| self.by_topic.get(t).copied()) else {
            return;
        };
        let subs = &self.channels[chan].subs;
        recipients.reserve(subs.len());
        if except.is_empty() {
            recipients.extend(subs.iter().map(|s| Recipient {
                conn: s.conn,
                cids: s.cids.clone(),
            }));
            return;
        }
        for s in subs {
            let inst = &self.instances[s.conn.slot()];
            let excluded = except.iter().any(|id| match id {
                Identity::Instance(i) => *i == inst.id,
                Identity::Session(x) => *x == inst.session,
                Identity::User(u) => inst.user.as_ref() == Some(u),
            });
            if !excluded {
                recipients.push(Recipient {
                    conn: s.conn,
                    cids: s.cids.clone(),
                });
            }
        }
    }
}
