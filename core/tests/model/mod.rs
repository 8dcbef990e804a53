//! A deliberately naive reference model of `tidings_core::router::Router`,
//! written from the rules R1–R15 in the router's module docs
//! (`core/src/router/mod.rs`), not from its code.
//!
//! Everything is a `Vec` searched linearly. Each binding stores the user who
//! actually authorized it (`None`: anonymous) instead of the router's epoch
//! tags; receipts are just their content; tombstones and purge markers are
//! every write ever made (numbered in call order), and R9's "max-merged" /
//! "ignored when a purge marker strictly newer exists; a purge removes
//! tombstones no newer than it" are evaluated when a receipt is checked.
//! Connections are numbered by the model's own counter, and so are presence
//! metas: a `phx_ref` is the model's sequential number of the meta (the
//! harness maps the router's random refs onto them in first-seen order).
//! Presence (R15) is one flat list of `(channel, stream, key, meta)`.
//!
//! Each public method mirrors the router method of the same name and leaves
//! its outputs in a list drained with [`Model::take_outputs`]. Comments cite
//! the rule each step implements. Where a rule leaves a choice open, a
//! comment starting "Interpretation" says which reading the model takes.
//!
//! Written against the rules as of commit fef0162 (R2's store resync, R5's
//! delete-always-reports, R9's later-call-wins and R10's re-add tag); R14
//! and R15 as of commit c1f5cc7.

pub(crate) mod harness;

use std::collections::BTreeMap;

use tidings_core::router::{Action, BindingKey, Millis, RouterConfig, RouterError};
use tidings_core::{Channel, Cid, Identity, InstanceId, Payload, Peer, SessionId, UserId};

/// What a receipt says. The model has no crypto: a token is its content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MReceipt {
    pub(crate) instance: InstanceId,
    /// The user who authorized the binding; `None`: anonymous.
    pub(crate) user: Option<UserId>,
    pub(crate) channel: Channel,
    pub(crate) cid: Cid,
    pub(crate) created_at: Millis,
}

/// A token a client presents: `Some(content)` if this server signed it,
/// `None` for garbage or a tampered token.
pub(crate) type MToken = Option<MReceipt>;

/// One presence meta (R15); refs are the model's sequential numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MMeta {
    pub(crate) phx_ref: u64,
    pub(crate) phx_ref_prev: Option<u64>,
    pub(crate) payload: Vec<u8>,
}

/// Key → metas: a channel's presence, or one half of a diff.
pub(crate) type MPresences = BTreeMap<String, Vec<MMeta>>;

/// One output of the model; connections are the model's own numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MOut {
    Fanout {
        channel: Channel,
        action: Action,
        params: Payload,
        /// One per recipient instance: its connection and its bound cids, sorted.
        recipients: Vec<(u64, Vec<Cid>)>,
    },
    AddReceipts {
        conn: u64,
        receipts: Vec<MReceipt>,
    },
    DropReceipts {
        conn: u64,
        keys: Vec<BindingKey>,
    },
    RefreshReceipts {
        conn: u64,
        receipts: Vec<MReceipt>,
    },
    IdentityChanged {
        conn: u64,
        session: SessionId,
        user: Option<UserId>,
    },
    /// `Close { reason: Superseded }` (the only reason there is).
    Close {
        conn: u64,
    },
    ChannelUp(Channel),
    ChannelDown(Channel),
    CommandReady(u64),
    CommandExpired(u64),
    PresenceDiff {
        channel: Channel,
        joins: MPresences,
        leaves: MPresences,
        /// Every stream bound to the channel, sorted.
        recipients: Vec<u64>,
    },
}

/// The model's `HandshakeReply` (the id is the caller's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MReply {
    pub(crate) receipts: Vec<MReceipt>,
    pub(crate) rejected: usize,
}

/// The model's `SelfEcho`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MEcho {
    pub(crate) action: Action,
    pub(crate) params: Payload,
    pub(crate) cid: Cid,
}

/// The model's `Committed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MCommitted {
    pub(crate) self_echoes: Vec<MEcho>,
    pub(crate) receipt_adds: Vec<MReceipt>,
    pub(crate) receipt_drops: Vec<BindingKey>,
    pub(crate) session: SessionId,
    pub(crate) user: Option<UserId>,
}

// -- effects ------------------------------------------------------------------

/// Which handler effects come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MKind {
    Init,
    Command,
}

/// A recorded subscription change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MOp {
    Put,
    Delete,
}

/// Whether the handler logged in or out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserChange {
    Keep,
    Set(Option<UserId>),
}

#[derive(Debug, Clone)]
pub(crate) struct MBroadcast {
    pub(crate) channel: Channel,
    pub(crate) action: Action,
    pub(crate) params: Payload,
    pub(crate) except: Vec<Identity>,
}

/// The model's `Effects`: what a handler asked for, applied on commit.
#[derive(Debug, Clone)]
pub(crate) struct MEffects {
    pub(crate) kind: MKind,
    pub(crate) instance: InstanceId,
    pub(crate) session: SessionId,
    pub(crate) user: Option<UserId>,
    pub(crate) cid: Cid,
    /// The component's channels as the handler has left them.
    pub(crate) subscriptions: Vec<Channel>,
    /// One entry per channel, in first-op order; the last op wins.
    pub(crate) ops: Vec<(Channel, MOp)>,
    pub(crate) broadcasts: Vec<MBroadcast>,
    pub(crate) new_session: Option<SessionId>,
    pub(crate) new_user: UserChange,
}

impl MEffects {
    fn new(kind: MKind, peer: &Peer, cid: Cid, subscriptions: Vec<Channel>) -> Self {
        Self {
            kind,
            instance: peer.instance,
            session: peer.session,
            user: peer.user.clone(),
            cid,
            subscriptions,
            ops: Vec::new(),
            broadcasts: Vec::new(),
            new_session: None,
            new_user: UserChange::Keep,
        }
    }

    /// `init` effects of component `cid` of a page render: no subscriptions yet.
    pub(crate) fn init(peer: &Peer, cid: Cid) -> Self {
        Self::new(MKind::Init, peer, cid, Vec::new())
    }

    fn record(&mut self, channel: &Channel, op: MOp) {
        match self.ops.iter_mut().find(|(c, _)| c == channel) {
            Some(entry) => entry.1 = op,
            None => self.ops.push((channel.clone(), op)),
        }
    }

    pub(crate) fn put_subscription(&mut self, channel: &Channel) {
        if !self.subscriptions.contains(channel) {
            self.subscriptions.push(channel.clone());
        }
        self.record(channel, MOp::Put);
    }

    pub(crate) fn delete_subscription(&mut self, channel: &Channel) {
        self.subscriptions.retain(|c| c != channel);
        self.record(channel, MOp::Delete);
    }

    pub(crate) fn put_broadcast_except(
        &mut self,
        except: &[Identity],
        channel: &Channel,
        action: &str,
        params: Payload,
    ) -> Result<(), RouterError> {
        let action = Action::new(action)?;
        self.broadcasts.push(MBroadcast {
            channel: channel.clone(),
            action,
            params,
            except: except.to_vec(),
        });
        Ok(())
    }

    pub(crate) fn set_user_id(&mut self, user: Option<UserId>) {
        self.new_user = UserChange::Set(user);
    }

    pub(crate) fn set_session_id(&mut self, session: SessionId) {
        self.new_session = Some(session);
    }

    /// The session as the handler has left it.
    pub(crate) fn session_id(&self) -> SessionId {
        self.new_session.unwrap_or(self.session)
    }

    /// The user as the handler has left it.
    pub(crate) fn user_id(&self) -> Option<&UserId> {
        match &self.new_user {
            UserChange::Keep => self.user.as_ref(),
            UserChange::Set(u) => u.as_ref(),
        }
    }
}

// -- state ----------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Binding {
    channel: Channel,
    cid: Cid,
    /// Who authorized it (R4); `None`: anonymous.
    by: Option<UserId>,
}

#[derive(Debug, Clone)]
struct Inst {
    id: InstanceId,
    conn: u64,
    session: SessionId,
    user: Option<UserId>,
    bindings: Vec<Binding>,
    next_refresh: Millis,
}

#[derive(Debug, Clone)]
struct Stash {
    id: String,
    peer: Peer,
    bindings: Vec<Binding>,
    expires: Millis,
}

/// A stream's presence on a channel (R15: at most one per stream and channel).
#[derive(Debug, Clone)]
struct Tracked {
    channel: Channel,
    conn: u64,
    key: String,
    meta: MMeta,
}

#[derive(Debug, Clone)]
struct Parked {
    instance: InstanceId,
    ticket: u64,
    expires: Millis,
}

/// A tombstone or a purge marker: `cid: None` is channel-wide. `seq`
/// orders the calls that wrote them (R9: at equal times the later call wins).
#[derive(Debug, Clone)]
struct Stone {
    identity: Identity,
    channel: Channel,
    cid: Option<Cid>,
    ts: Millis,
    seq: u64,
}

/// Whether `who` names the instance with this identity, exactly (an
/// anonymous instance is never named by a user).
fn names(who: &Identity, id: InstanceId, session: SessionId, user: &Option<UserId>) -> bool {
    match who {
        Identity::Instance(i) => *i == id,
        Identity::Session(s) => *s == session,
        Identity::User(u) => user.as_ref() == Some(u),
    }
}

fn key(channel: &Channel, cid: &Cid) -> BindingKey {
    BindingKey {
        channel: channel.clone(),
        cid: cid.clone(),
    }
}

fn receipt(
    instance: InstanceId,
    user: Option<UserId>,
    channel: &Channel,
    cid: &Cid,
    now: Millis,
) -> MReceipt {
    MReceipt {
        instance,
        user,
        channel: channel.clone(),
        cid: cid.clone(),
        created_at: now,
    }
}

/// Every situation the model notes (see [`Model::take_notes`]), for
/// coverage checks: each names the rule and the case.
pub(crate) const NOTES: &[&str] = &[
    "R1 accepted",
    "R1 forged",
    "R1 too old",
    "R1 other instance",
    "R1 other user",
    "R1 tombstoned",
    "R1 duplicate",
    "R1 over binding limit",
    "R2 new instance with receipts",
    "R2 supersede",
    "R2 supersede drops",
    "R2 supersede refresh",
    "R2 supersede stale stash keys",
    "R2 parked ready",
    "R2 parked expired",
    "R3 detach with bindings",
    "R4 channel up",
    "R4 channel down",
    "R5 put new",
    "R5 put again",
    "R5 put again under a user change",
    "R5 delete bound",
    "R5 delete unbound",
    "R5 detached put",
    "R5 detached delete",
    "R6 echo",
    "R6 detached echo",
    "R6 echo excluded",
    "R7 fanout",
    "R7 excluded",
    "R8 identity change",
    "R8 drops",
    "R8 anonymous binding survives",
    "R9 tombstone ignored after purge",
    "R9 tombstone expired",
    "R10 subscribe",
    "R10 subscribe at limit",
    "R10 re-add keeps its tag",
    "R10 unsubscribe",
    "R10 unsubscribe_all drops",
    "R11 retag",
    "R11 drop undeclared",
    "R11 receipt",
    "R11 user change reissues all",
    "R11 claimed drop",
    "R12 park ready",
    "R12 park full",
    "R13 stash expired",
    "R13 park expired",
    "R13 refresh",
    "R13 refresh skipped",
    "R14 connect",
    "R14 join",
    "R14 join again",
    "R14 leave",
    "R14 leave unbound",
    "R15 track",
    "R15 identical track",
    "R15 update",
    "R15 key change",
    "R15 untrack",
    "R15 leave removes meta",
    "R15 R10 unsubscribe removes meta",
    "R15 detach removes meta",
    "R15 supersede removes meta",
    "R15 diff to nobody",
    "R15 meta outlives its binding",
];

/// The reference model.
pub(crate) struct Model {
    cfg: RouterConfig,
    instances: Vec<Inst>,
    last_conn: u64,
    stashes: Vec<Stash>,
    parked: Vec<Parked>,
    tombstones: Vec<Stone>,
    purges: Vec<Stone>,
    /// Numbers tombstone and purge writes in call order.
    seq: u64,
    /// R15: every meta, in no particular order.
    presence: Vec<Tracked>,
    last_ref: u64,
    out: Vec<MOut>,
    notes: Vec<&'static str>,
}

impl Model {
    pub(crate) fn new(cfg: RouterConfig) -> Self {
        Self {
            cfg,
            instances: Vec::new(),
            last_conn: 0,
            stashes: Vec::new(),
            parked: Vec::new(),
            tombstones: Vec::new(),
            purges: Vec::new(),
            seq: 0,
            presence: Vec::new(),
            last_ref: 0,
            out: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The situations met since the last call (names from [`NOTES`]).
    pub(crate) fn take_notes(&mut self) -> Vec<&'static str> {
        core::mem::take(&mut self.notes)
    }

    fn note(&mut self, what: &'static str) {
        debug_assert!(NOTES.contains(&what), "unlisted note {what}");
        self.notes.push(what);
    }

    /// The outputs since the last call.
    pub(crate) fn take_outputs(&mut self) -> Vec<MOut> {
        core::mem::take(&mut self.out)
    }

    // -- helpers --------------------------------------------------------------

    fn find(&self, instance: InstanceId) -> Option<usize> {
        self.instances.iter().position(|i| i.id == instance)
    }

    fn find_conn(&self, conn: u64) -> Option<usize> {
        self.instances.iter().position(|i| i.conn == conn)
    }

    /// The attached instances `who` names, in instance-id order.
    fn named(&self, who: &Identity) -> Vec<usize> {
        let mut found: Vec<usize> = (0..self.instances.len())
            .filter(|&n| {
                let i = &self.instances[n];
                names(who, i.id, i.session, &i.user)
            })
            .collect();
        found.sort_by_key(|&n| self.instances[n].id);
        found
    }

    fn mint_conn(&mut self) -> u64 {
        self.last_conn += 1;
        self.last_conn
    }

    fn is_bound(&self, n: usize, channel: &Channel, cid: &Cid) -> bool {
        self.instances[n]
            .bindings
            .iter()
            .any(|b| b.channel == *channel && b.cid == *cid)
    }

    fn channel_bound_anywhere(&self, channel: &Channel) -> bool {
        self.instances
            .iter()
            .any(|i| i.bindings.iter().any(|b| b.channel == *channel))
    }

    /// R4: binds; re-adding keeps the old tag. True if newly bound.
    fn bind(&mut self, n: usize, channel: &Channel, cid: &Cid, by: Option<UserId>) -> bool {
        if self.is_bound(n, channel, cid) {
            return false;
        }
        if !self.channel_bound_anywhere(channel) {
            self.note("R4 channel up");
            self.out.push(MOut::ChannelUp(channel.clone()));
        }
        self.instances[n].bindings.push(Binding {
            channel: channel.clone(),
            cid: cid.clone(),
            by,
        });
        true
    }

    /// R4: unbinds. True if it was bound.
    fn unbind(&mut self, n: usize, channel: &Channel, cid: &Cid) -> bool {
        let Some(at) = self.instances[n]
            .bindings
            .iter()
            .position(|b| b.channel == *channel && b.cid == *cid)
        else {
            return false;
        };
        self.instances[n].bindings.remove(at);
        if !self.channel_bound_anywhere(channel) {
            self.note("R4 channel down");
            self.out.push(MOut::ChannelDown(channel.clone()));
        }
        true
    }

    /// The instance's cids bound to `channel`, sorted.
    fn cids_on(&self, n: usize, channel: &Channel) -> Vec<Cid> {
        let mut cids: Vec<Cid> = self.instances[n]
            .bindings
            .iter()
            .filter(|b| b.channel == *channel)
            .map(|b| b.cid.clone())
            .collect();
        cids.sort();
        cids
    }

    /// The instance's bindings, sorted by `(channel, cid)`.
    fn sorted_bindings(&self, n: usize) -> Vec<Binding> {
        let mut all = self.instances[n].bindings.clone();
        all.sort_by(|a, b| (&a.channel, &a.cid).cmp(&(&b.channel, &b.cid)));
        all
    }

    /// R2 / R8: the instance takes `session` and `user`; if its user changed,
    /// its bindings authorized by any other user are dropped. Returns the
    /// dropped keys, sorted.
    fn take_identity(
        &mut self,
        n: usize,
        session: SessionId,
        user: &Option<UserId>,
    ) -> Vec<BindingKey> {
        let user_changed = self.instances[n].user != *user;
        self.instances[n].session = session;
        self.instances[n].user.clone_from(user);
        if !user_changed {
            return Vec::new();
        }
        if self.instances[n].bindings.iter().any(|b| b.by.is_none()) {
            self.note("R8 anonymous binding survives");
        }
        let dropped: Vec<BindingKey> = self
            .sorted_bindings(n)
            .into_iter()
            .filter(|b| b.by.is_some() && b.by != *user)
            .map(|b| key(&b.channel, &b.cid))
            .collect();
        for k in &dropped {
            self.unbind(n, &k.channel, &k.cid);
        }
        dropped
    }

    /// R8: when a commit leaves another session or user, every attached
    /// instance of the pre session takes the new identity and is told so.
    fn change_identity(
        &mut self,
        pre_session: SessionId,
        pre_user: &Option<UserId>,
        post_session: SessionId,
        post_user: &Option<UserId>,
    ) {
        if pre_session == post_session && pre_user == post_user {
            return;
        }
        for n in self.named(&Identity::Session(pre_session)) {
            self.note("R8 identity change");
            let dropped = self.take_identity(n, post_session, post_user);
            let conn = self.instances[n].conn;
            self.out.push(MOut::IdentityChanged {
                conn,
                session: post_session,
                user: post_user.clone(),
            });
            if !dropped.is_empty() {
                self.note("R8 drops");
                self.out.push(MOut::DropReceipts {
                    conn,
                    keys: dropped,
                });
            }
        }
    }

    /// R9: whether a live, unpurged tombstone at one of `levels` covers the
    /// receipt.
    fn covered(&mut self, levels: &[Identity], r: &MReceipt, now: Millis) -> bool {
        let applies = |t: &Stone| {
            levels.contains(&t.identity)
                && t.channel == r.channel
                && (t.cid.is_none() || t.cid.as_ref() == Some(&r.cid))
                && r.created_at <= t.ts
        };
        let ttl = self.cfg.tombstone_ttl;
        let live = |t: &Stone| t.ts + ttl > now;
        let covered = self
            .tombstones
            .iter()
            .any(|t| applies(t) && live(t) && !self.purged(t));
        if !covered && self.tombstones.iter().any(|t| applies(t) && live(t)) {
            self.note("R9 tombstone ignored after purge");
        }
        if !covered
            && self
                .tombstones
                .iter()
                .any(|t| applies(t) && !live(t) && !self.purged(t))
        {
            self.note("R9 tombstone expired");
        }
        covered
    }

    /// R9: a tombstone is ignored when a purge marker of the same key is
    /// strictly newer, or equally old and written by a later call (a purge
    /// removes the tombstones no newer than it; at equal times the later
    /// call wins).
    fn purged(&self, t: &Stone) -> bool {
        self.purges.iter().any(|p| {
            p.identity == t.identity
                && p.channel == t.channel
                && p.cid == t.cid
                && (p.ts > t.ts || (p.ts == t.ts && p.seq > t.seq))
        })
    }

    fn stone(
        &mut self,
        identity: Identity,
        channel: &Channel,
        cid: Option<Cid>,
        now: Millis,
    ) -> Stone {
        self.seq += 1;
        Stone {
            identity,
            channel: channel.clone(),
            cid,
            ts: now,
            seq: self.seq,
        }
    }

    fn tombstone(&mut self, identity: Identity, channel: &Channel, cid: Option<Cid>, now: Millis) {
        let t = self.stone(identity, channel, cid, now);
        self.tombstones.push(t);
    }

    fn purge(&mut self, identity: Identity, channel: &Channel, cid: Option<Cid>, now: Millis) {
        let p = self.stone(identity, channel, cid, now);
        self.purges.push(p);
    }

    /// R7: one `Fanout` to every attached instance bound to `channel`, minus
    /// the excluded ones and the originator.
    fn publish(&mut self, b: &MBroadcast, originator: Option<InstanceId>) {
        let mut recipients = Vec::new();
        for n in 0..self.instances.len() {
            let i = &self.instances[n];
            if Some(i.id) == originator {
                continue;
            }
            let cids = self.cids_on(n, &b.channel);
            if b.except
                .iter()
                .any(|who| names(who, i.id, i.session, &i.user))
            {
                if !cids.is_empty() {
                    self.notes.push("R7 excluded");
                }
                continue;
            }
            if !cids.is_empty() {
                recipients.push((i.conn, cids));
            }
        }
        if !recipients.is_empty() {
            self.note("R7 fanout");
            self.out.push(MOut::Fanout {
                channel: b.channel.clone(),
                action: b.action.clone(),
                params: b.params.clone(),
                recipients,
            });
        }
    }

    /// The identity before a commit: the instance's if attached (same
    /// session, else `SessionMismatch`), else the handler's.
    ///
    /// Interpretation: R5 names the session check for `command` and R11 for
    /// pages; a `commit` after another tab rotated the session is refused
    /// the same way. "Post-handler user" is the instance's user *now* unless
    /// the handler set one (another tab may have logged in meanwhile).
    fn pre_identity(
        &self,
        at: Option<usize>,
        session: SessionId,
        user: &Option<UserId>,
    ) -> Result<(SessionId, Option<UserId>), RouterError> {
        match at {
            Some(n) if self.instances[n].session != session => Err(RouterError::SessionMismatch),
            Some(n) => Ok((self.instances[n].session, self.instances[n].user.clone())),
            None => Ok((session, user.clone())),
        }
    }

    // -- R1, R2, R3: connections ------------------------------------------------

    /// R1. `id` is the handshake id to file the stash under (opaque).
    pub(crate) fn handshake(
        &mut self,
        now: Millis,
        id: String,
        peer: &Peer,
        tokens: &[MToken],
    ) -> Result<MReply, RouterError> {
        if tokens.len() > self.cfg.max_receipts_per_handshake {
            return Err(RouterError::TooManyReceipts {
                got: tokens.len(),
                max: self.cfg.max_receipts_per_handshake,
            });
        }
        // Interpretation: a stash counts until redeemed or expired by
        // `handle_timeout` (R13), even if its time has passed.
        if self.stashes.len() >= self.cfg.max_pending_handshakes {
            return Err(RouterError::TooManyHandshakes {
                max: self.cfg.max_pending_handshakes,
            });
        }
        let mut accepted: Vec<MReceipt> = Vec::new();
        for token in tokens {
            // Signed by this server, young enough.
            let Some(r) = token else {
                self.note("R1 forged");
                continue;
            };
            if now.saturating_sub(r.created_at) > self.cfg.receipt_max_age {
                self.note("R1 too old");
                continue;
            }
            // Names this instance; anonymous or the peer's user.
            if r.instance != peer.instance {
                self.note("R1 other instance");
                continue;
            }
            if r.user.is_some() && r.user != peer.user {
                self.note("R1 other user");
                continue;
            }
            // No tombstone at the instance, the session, the receipt's user
            // or the current user.
            let mut levels = vec![
                Identity::Instance(peer.instance),
                Identity::Session(peer.session),
            ];
            levels.extend(r.user.clone().map(Identity::User));
            levels.extend(peer.user.clone().map(Identity::User));
            if self.covered(&levels, r, now) {
                self.note("R1 tombstoned");
                continue;
            }
            // Duplicates keep the first; at most max_bindings_per_instance.
            if accepted
                .iter()
                .any(|a| a.channel == r.channel && a.cid == r.cid)
            {
                self.note("R1 duplicate");
                continue;
            }
            if accepted.len() >= self.cfg.max_bindings_per_instance {
                self.note("R1 over binding limit");
                continue;
            }
            self.note("R1 accepted");
            accepted.push(r.clone());
        }
        let receipts: Vec<MReceipt> = accepted
            .iter()
            .map(|r| receipt(peer.instance, r.user.clone(), &r.channel, &r.cid, now))
            .collect();
        self.stashes.push(Stash {
            id,
            peer: peer.clone(),
            bindings: accepted
                .into_iter()
                .map(|r| Binding {
                    channel: r.channel,
                    cid: r.cid,
                    by: r.user,
                })
                .collect(),
            expires: now + self.cfg.handshake_ttl,
        });
        Ok(MReply {
            rejected: tokens.len() - receipts.len(),
            receipts,
        })
    }

    /// R2.
    pub(crate) fn attach(
        &mut self,
        now: Millis,
        id: &str,
        peer: &Peer,
    ) -> Result<u64, RouterError> {
        let Some(at) = self.stashes.iter().position(|s| s.id == id) else {
            return Err(RouterError::UnknownHandshake);
        };
        let stash = self.stashes.remove(at); // consumed whatever happens
        if stash.expires <= now {
            return Err(RouterError::HandshakeExpired);
        }
        if stash.peer != *peer {
            return Err(RouterError::HandshakeMismatch);
        }
        let n = if let Some(n) = self.find(peer.instance) {
            if self.instances[n].session != peer.session {
                return Err(RouterError::SessionMismatch);
            }
            let conn = self.mint_conn();
            let old = core::mem::replace(&mut self.instances[n].conn, conn);
            self.note("R2 supersede");
            self.out.push(MOut::Close { conn: old });
            // R15: the old stream's metas go, diffed to every stream bound
            // at this moment (the new one included: it holds the bindings).
            // Interpretation: "at that moment" is when the old stream is
            // closed, before R8's drop rule runs for the new identity.
            self.drop_presence(old, None, "R15 supersede removes meta");
            // The prior bindings stay; the identity becomes the peer's.
            let dropped = self.take_identity(n, peer.session, &peer.user);
            if !dropped.is_empty() {
                self.note("R2 supersede drops");
                self.out.push(MOut::DropReceipts {
                    conn,
                    keys: dropped,
                });
            }
            // The client's store is made to match what holds: every binding
            // re-signed, stash keys not bound dropped (in stash order).
            let i = &self.instances[n];
            let receipts: Vec<MReceipt> = self
                .sorted_bindings(n)
                .iter()
                .map(|b| receipt(i.id, b.by.clone(), &b.channel, &b.cid, now))
                .collect();
            let stale: Vec<BindingKey> = stash
                .bindings
                .iter()
                .filter(|b| !self.is_bound(n, &b.channel, &b.cid))
                .map(|b| key(&b.channel, &b.cid))
                .collect();
            if !receipts.is_empty() {
                self.note("R2 supersede refresh");
                self.out.push(MOut::RefreshReceipts { conn, receipts });
            }
            if !stale.is_empty() {
                self.note("R2 supersede stale stash keys");
                self.out.push(MOut::DropReceipts { conn, keys: stale });
            }
            n
        } else {
            // R2: a new instance needs room in its session.
            let tabs = self
                .instances
                .iter()
                .filter(|i| i.session == peer.session)
                .count();
            if tabs >= self.cfg.max_instances_per_session {
                return Err(RouterError::TooManyConnections {
                    max: self.cfg.max_instances_per_session,
                });
            }
            let conn = self.mint_conn();
            self.instances.push(Inst {
                id: peer.instance,
                conn,
                session: peer.session,
                user: peer.user.clone(),
                bindings: Vec::new(),
                next_refresh: 0,
            });
            let n = self.instances.len() - 1;
            if !stash.bindings.is_empty() {
                self.note("R2 new instance with receipts");
            }
            for b in stash.bindings {
                self.bind(n, &b.channel, &b.cid, b.by);
            }
            n
        };
        self.instances[n].next_refresh = now + self.cfg.refresh_interval;
        // Parked commands, in park order.
        let mut rest = Vec::new();
        for p in core::mem::take(&mut self.parked) {
            if p.instance != peer.instance {
                rest.push(p);
            } else if p.expires > now {
                self.note("R2 parked ready");
                self.out.push(MOut::CommandReady(p.ticket));
            } else {
                self.note("R2 parked expired");
                self.out.push(MOut::CommandExpired(p.ticket));
            }
        }
        self.parked = rest;
        Ok(self.instances[n].conn)
    }

    /// R3.
    pub(crate) fn detach(&mut self, conn: u64) {
        let Some(n) = self.find_conn(conn) else {
            return;
        };
        if !self.instances[n].bindings.is_empty() {
            self.note("R3 detach with bindings");
        }
        for b in self.sorted_bindings(n) {
            self.unbind(n, &b.channel, &b.cid);
        }
        self.instances.remove(n);
        // R15: its metas go, diffed to the streams still bound.
        self.drop_presence(conn, None, "R15 detach removes meta");
    }

    // -- R12: parking -----------------------------------------------------------

    /// R12.
    pub(crate) fn park(
        &mut self,
        now: Millis,
        instance: InstanceId,
        ticket: u64,
    ) -> Result<(), RouterError> {
        if self.find(instance).is_some() {
            self.note("R12 park ready");
            self.out.push(MOut::CommandReady(ticket));
            return Ok(());
        }
        // Interpretation: as for stashes, a parked command counts until
        // released or expired by `handle_timeout`.
        let mine = self
            .parked
            .iter()
            .filter(|p| p.instance == instance)
            .count();
        if self.parked.len() >= self.cfg.max_parked_total
            || mine >= self.cfg.max_parked_per_instance
        {
            self.note("R12 park full");
            return Err(RouterError::ParkFull {
                max: self.cfg.max_parked_per_instance,
                max_total: self.cfg.max_parked_total,
            });
        }
        self.parked.push(Parked {
            instance,
            ticket,
            expires: now + self.cfg.park_ttl,
        });
        Ok(())
    }

    // -- R5, R6, R8: commands ---------------------------------------------------

    /// R5: a command transaction for component `target`.
    pub(crate) fn command(
        &self,
        instance: InstanceId,
        session: SessionId,
        target: Cid,
    ) -> Result<MEffects, RouterError> {
        let n = self.find(instance).ok_or(RouterError::NotAttached)?;
        let i = &self.instances[n];
        if i.session != session {
            return Err(RouterError::SessionMismatch);
        }
        let mut channels: Vec<Channel> = i
            .bindings
            .iter()
            .filter(|b| b.cid == target)
            .map(|b| b.channel.clone())
            .collect();
        channels.sort();
        let peer = Peer {
            instance,
            session,
            user: i.user.clone(),
        };
        Ok(MEffects::new(MKind::Command, &peer, target, channels))
    }

    /// R5, R8, R6, R7.
    pub(crate) fn commit(&mut self, now: Millis, fx: &MEffects) -> Result<MCommitted, RouterError> {
        if fx.kind != MKind::Command {
            return Err(RouterError::WrongEffects(
                "init effects are committed with commit_page",
            ));
        }
        let at = self.find(fx.instance);
        let (pre_session, pre_user) = self.pre_identity(at, fx.session, &fx.user)?;
        let post_session = fx.new_session.unwrap_or(pre_session);
        let post_user = match &fx.new_user {
            UserChange::Keep => pre_user.clone(),
            UserChange::Set(u) => u.clone(),
        };
        if let Some(n) = at {
            self.check_limit(n, fx)?;
        }
        // R5: the ops, per channel in first-op order.
        let mut receipt_adds = Vec::new();
        let mut receipt_drops = Vec::new();
        for (channel, op) in &fx.ops {
            match op {
                MOp::Put => {
                    let mut newly = match at {
                        Some(n) => self.bind(n, channel, &fx.cid, post_user.clone()),
                        None => true,
                    };
                    // R5: a put again under a user change is re-authorized
                    // by the new user and gets a fresh receipt.
                    if let Some(n) = at
                        && !newly
                        && pre_user != post_user
                    {
                        for b in &mut self.instances[n].bindings {
                            if b.channel == *channel && b.cid == fx.cid {
                                b.by.clone_from(&post_user);
                            }
                        }
                        self.note("R5 put again under a user change");
                        newly = true;
                    }
                    self.note(match (at, newly) {
                        (None, _) => "R5 detached put",
                        (Some(_), true) => "R5 put new",
                        (Some(_), false) => "R5 put again",
                    });
                    if newly {
                        receipt_adds.push(receipt(
                            fx.instance,
                            post_user.clone(),
                            channel,
                            &fx.cid,
                            now,
                        ));
                    }
                }
                MOp::Delete => {
                    let was = at.is_some_and(|n| self.unbind(n, channel, &fx.cid));
                    self.note(match (at, was) {
                        (None, _) => "R5 detached delete",
                        (Some(_), true) => "R5 delete bound",
                        (Some(_), false) => "R5 delete unbound",
                    });
                    // Bound or not: tombstoned and reported.
                    self.tombstone(
                        Identity::Instance(fx.instance),
                        channel,
                        Some(fx.cid.clone()),
                        now,
                    );
                    receipt_drops.push(key(channel, &fx.cid));
                }
            }
        }
        // R8.
        self.change_identity(pre_session, &pre_user, post_session, &post_user);
        // R6: against what the originator is bound to now.
        let post = Peer {
            instance: fx.instance,
            session: post_session,
            user: post_user,
        };
        let self_echoes = self.command_echoes(at, fx, &post);
        // R7, without the originator.
        for b in &fx.broadcasts {
            self.publish(b, Some(fx.instance));
        }
        Ok(MCommitted {
            self_echoes,
            receipt_adds,
            receipt_drops,
            session: post.session,
            user: post.user,
        })
    }

    /// R5: `TooManyBindings` if the ops would leave too many bindings.
    fn check_limit(&self, n: usize, fx: &MEffects) -> Result<(), RouterError> {
        let mut after: Vec<BindingKey> = self.instances[n]
            .bindings
            .iter()
            .map(|b| key(&b.channel, &b.cid))
            .collect();
        for (channel, op) in &fx.ops {
            let k = key(channel, &fx.cid);
            match op {
                MOp::Put if !after.contains(&k) => after.push(k),
                MOp::Delete => after.retain(|x| *x != k),
                MOp::Put => {}
            }
        }
        if after.len() > self.cfg.max_bindings_per_instance {
            return Err(RouterError::TooManyBindings {
                would_hold: after.len(),
                max: self.cfg.max_bindings_per_instance,
            });
        }
        Ok(())
    }

    /// R6 for a command: per broadcast not excluding the post-handler peer,
    /// one echo per originator cid bound to the channel (sorted); unattached,
    /// the target cid if the commit put the channel.
    fn command_echoes(&mut self, at: Option<usize>, fx: &MEffects, post: &Peer) -> Vec<MEcho> {
        let mut echoes = Vec::new();
        for b in &fx.broadcasts {
            if b.except
                .iter()
                .any(|who| names(who, post.instance, post.session, &post.user))
            {
                self.note("R6 echo excluded");
                continue;
            }
            let cids = match at {
                Some(n) => self.cids_on(n, &b.channel),
                None if fx.ops.contains(&(b.channel.clone(), MOp::Put)) => vec![fx.cid.clone()],
                None => Vec::new(),
            };
            if !cids.is_empty() {
                self.note(if at.is_some() {
                    "R6 echo"
                } else {
                    "R6 detached echo"
                });
            }
            echoes.extend(cids.into_iter().map(|cid| MEcho {
                action: b.action.clone(),
                params: b.params.clone(),
                cid,
            }));
        }
        echoes
    }

    // -- R11: pages -------------------------------------------------------------

    /// R11.
    pub(crate) fn commit_page(
        &mut self,
        now: Millis,
        peer: &Peer,
        components: &[MEffects],
        claimed: &[BindingKey],
    ) -> Result<MCommitted, RouterError> {
        if components
            .iter()
            .any(|fx| fx.kind != MKind::Init || fx.instance != peer.instance)
        {
            return Err(RouterError::WrongEffects(
                "page effects must be init effects of the page's instance",
            ));
        }
        let mut declared: Vec<BindingKey> = Vec::new();
        for fx in components {
            for channel in &fx.subscriptions {
                let k = key(channel, &fx.cid);
                if !declared.contains(&k) {
                    declared.push(k);
                }
            }
        }
        declared.sort();
        // Interpretation (R11 does not say which error wins when both
        // apply): the session check comes first, as in `commit` (R5).
        let at = self.find(peer.instance);
        let (pre_session, pre_user) = self.pre_identity(at, peer.session, &peer.user)?;
        if declared.len() > self.cfg.max_bindings_per_instance {
            return Err(RouterError::TooManyBindings {
                would_hold: declared.len(),
                max: self.cfg.max_bindings_per_instance,
            });
        }
        let mut post_session = pre_session;
        let mut post_user = pre_user.clone();
        for fx in components {
            if let Some(s) = fx.new_session {
                post_session = s;
            }
            if let UserChange::Set(u) = &fx.new_user {
                post_user.clone_from(u);
            }
        }
        if let Some(n) = at {
            self.transition(n, &declared, &post_user);
        }
        // Receipts for unclaimed keys; for all of them when the user changed
        // (the claimed receipts name the old user).
        let user_changed = pre_user != post_user;
        if user_changed && !declared.is_empty() {
            self.note("R11 user change reissues all");
        }
        let receipt_adds: Vec<MReceipt> = declared
            .iter()
            .filter(|k| user_changed || !claimed.contains(k))
            .map(|k| receipt(peer.instance, post_user.clone(), &k.channel, &k.cid, now))
            .collect();
        if !receipt_adds.is_empty() {
            self.note("R11 receipt");
        }
        let mut receipt_drops: Vec<BindingKey> = Vec::new();
        for k in claimed {
            if !declared.contains(k) && !receipt_drops.contains(k) {
                receipt_drops.push(k.clone());
            }
        }
        receipt_drops.sort();
        if !receipt_drops.is_empty() {
            self.note("R11 claimed drop");
        }
        // R8, then R6 over the declared set, then R7 without the originator.
        self.change_identity(pre_session, &pre_user, post_session, &post_user);
        let mut self_echoes = Vec::new();
        for b in components.iter().flat_map(|fx| &fx.broadcasts) {
            if b.except
                .iter()
                .any(|who| names(who, peer.instance, post_session, &post_user))
            {
                continue;
            }
            for k in declared.iter().filter(|k| k.channel == b.channel) {
                self_echoes.push(MEcho {
                    action: b.action.clone(),
                    params: b.params.clone(),
                    cid: k.cid.clone(),
                });
            }
        }
        for b in components.iter().flat_map(|fx| &fx.broadcasts) {
            self.publish(b, Some(peer.instance));
        }
        Ok(MCommitted {
            self_echoes,
            receipt_adds,
            receipt_drops,
            session: post_session,
            user: post_user,
        })
    }

    /// R11: the instance's bindings become exactly `declared`, all tagged
    /// with `user`; adds (and retags) before drops.
    fn transition(&mut self, n: usize, declared: &[BindingKey], user: &Option<UserId>) {
        for k in declared {
            if !self.bind(n, &k.channel, &k.cid, user.clone()) {
                self.note("R11 retag");
                let b = self.instances[n]
                    .bindings
                    .iter_mut()
                    .find(|b| b.channel == k.channel && b.cid == k.cid)
                    .expect("bound");
                b.by.clone_from(user);
            }
        }
        for b in self.sorted_bindings(n) {
            if !declared.contains(&key(&b.channel, &b.cid)) {
                self.note("R11 drop undeclared");
                self.unbind(n, &b.channel, &b.cid);
            }
        }
    }

    // -- R7, R10: immediate API ---------------------------------------------------

    /// R7: an immediate broadcast (no originator).
    pub(crate) fn broadcast_action_except(
        &mut self,
        except: &[Identity],
        channel: &Channel,
        action: &str,
        params: Payload,
    ) -> Result<(), RouterError> {
        let b = MBroadcast {
            channel: channel.clone(),
            action: Action::new(action)?,
            params,
            except: except.to_vec(),
        };
        self.publish(&b, None);
        Ok(())
    }

    /// R10: returns how many instances were granted.
    pub(crate) fn subscribe(
        &mut self,
        now: Millis,
        who: &Identity,
        channel: &Channel,
        cid: &Cid,
    ) -> usize {
        let mut granted = 0;
        for n in self.named(who) {
            // Interpretation: "at their limit" means a new binding would not
            // fit; an instance already holding the key is granted again.
            if !self.is_bound(n, channel, cid)
                && self.instances[n].bindings.len() >= self.cfg.max_bindings_per_instance
            {
                self.note("R10 subscribe at limit");
                continue;
            }
            self.note("R10 subscribe");
            let (id, conn, user) = {
                let i = &self.instances[n];
                (i.id, i.conn, i.user.clone())
            };
            // A re-add keeps its tag; the receipt is signed for the tag.
            let by = if self.bind(n, channel, cid, user.clone()) {
                user
            } else {
                self.note("R10 re-add keeps its tag");
                self.instances[n]
                    .bindings
                    .iter()
                    .find(|b| b.channel == *channel && b.cid == *cid)
                    .and_then(|b| b.by.clone())
            };
            self.out.push(MOut::AddReceipts {
                conn,
                receipts: vec![receipt(id, by, channel, cid, now)],
            });
            granted += 1;
        }
        self.purge(who.clone(), channel, Some(cid.clone()), now);
        self.purge(who.clone(), channel, None, now);
        granted
    }

    /// R10.
    pub(crate) fn unsubscribe(
        &mut self,
        now: Millis,
        who: &Identity,
        channel: &Channel,
        cid: &Cid,
    ) {
        for n in self.named(who) {
            self.note("R10 unsubscribe");
            self.unbind(n, channel, cid);
            self.out.push(MOut::DropReceipts {
                conn: self.instances[n].conn,
                keys: vec![key(channel, cid)],
            });
            self.r10_presence(n, channel);
        }
        self.tombstone(who.clone(), channel, Some(cid.clone()), now);
    }

    /// R10.
    pub(crate) fn unsubscribe_all(&mut self, now: Millis, who: &Identity, channel: &Channel) {
        for n in self.named(who) {
            let cids = self.cids_on(n, channel);
            for cid in &cids {
                self.unbind(n, channel, cid);
            }
            if !cids.is_empty() {
                self.note("R10 unsubscribe_all drops");
                self.out.push(MOut::DropReceipts {
                    conn: self.instances[n].conn,
                    keys: cids.iter().map(|cid| key(channel, cid)).collect(),
                });
            }
            self.r10_presence(n, channel);
        }
        self.tombstone(who.clone(), channel, None, now);
    }

    /// R15: an R10 unsubscribe that leaves the stream no cid on the
    /// channel removes its meta there.
    fn r10_presence(&mut self, n: usize, channel: &Channel) {
        if self.cids_on(n, channel).is_empty() {
            let conn = self.instances[n].conn;
            self.drop_presence(conn, Some(channel), "R15 R10 unsubscribe removes meta");
        }
    }

    // -- R14, R15: sockets and presence ---------------------------------------------

    /// R14: an instance attached without a handshake, with no bindings.
    ///
    /// Interpretation: "same checks as R2's new-instance path" is the
    /// per-session tab limit only; nothing else of R2 happens (no refresh is
    /// scheduled, parked commands stay parked).
    pub(crate) fn connect(&mut self, peer: &Peer) -> Result<u64, RouterError> {
        if let Some(n) = self.find(peer.instance) {
            return Err(if self.instances[n].session == peer.session {
                RouterError::InstanceInUse
            } else {
                RouterError::SessionMismatch
            });
        }
        let tabs = self
            .instances
            .iter()
            .filter(|i| i.session == peer.session)
            .count();
        if tabs >= self.cfg.max_instances_per_session {
            return Err(RouterError::TooManyConnections {
                max: self.cfg.max_instances_per_session,
            });
        }
        self.note("R14 connect");
        let conn = self.mint_conn();
        self.instances.push(Inst {
            id: peer.instance,
            conn,
            session: peer.session,
            user: peer.user.clone(),
            bindings: Vec::new(),
            next_refresh: Millis::MAX,
        });
        Ok(conn)
    }

    /// R14: binds anonymously, no receipt, no tombstone. True if newly bound.
    pub(crate) fn join(
        &mut self,
        conn: u64,
        channel: &Channel,
        cid: &Cid,
    ) -> Result<bool, RouterError> {
        let n = self.find_conn(conn).ok_or(RouterError::NotAttached)?;
        if self.is_bound(n, channel, cid) {
            // R4: a re-add keeps its tag, whatever it is.
            self.note("R14 join again");
            return Ok(false);
        }
        let held = self.instances[n].bindings.len();
        if held >= self.cfg.max_bindings_per_instance {
            return Err(RouterError::TooManyBindings {
                would_hold: held + 1,
                max: self.cfg.max_bindings_per_instance,
            });
        }
        self.note("R14 join");
        self.bind(n, channel, cid, None);
        Ok(true)
    }

    /// R14: unbinds without a tombstone; R15: once the stream holds no cid on
    /// the channel, its meta there goes. True if it was bound; a stale
    /// stream does nothing.
    ///
    /// Interpretation: "leaving the channel's last cid" is checked after
    /// every leave, so a meta whose binding R5, R8 or R11 removed (see
    /// "R15 meta outlives its binding") goes at the stream's next leave of
    /// that channel.
    pub(crate) fn leave(&mut self, conn: u64, channel: &Channel, cid: &Cid) -> bool {
        let Some(n) = self.find_conn(conn) else {
            return false;
        };
        let was = self.unbind(n, channel, cid);
        self.note(if was {
            "R14 leave"
        } else {
            "R14 leave unbound"
        });
        if self.cids_on(n, channel).is_empty() {
            self.drop_presence(conn, Some(channel), "R15 leave removes meta");
        }
        was
    }

    /// R15.
    ///
    /// Interpretation: another key is a leave of the old key's meta and a
    /// join of a fresh meta without `phx_ref_prev` (only an update of the
    /// same key names the ref it replaces).
    pub(crate) fn track(
        &mut self,
        conn: u64,
        channel: &Channel,
        key: &str,
        payload: &[u8],
    ) -> Result<(), RouterError> {
        let n = self.find_conn(conn).ok_or(RouterError::NotAttached)?;
        if self.cids_on(n, channel).is_empty() {
            return Err(RouterError::NotJoined);
        }
        let old = self
            .presence
            .iter()
            .position(|t| t.channel == *channel && t.conn == conn)
            .map(|at| self.presence.remove(at));
        let mut leaves = MPresences::new();
        let prev = match old {
            Some(t) if t.key == key && t.meta.payload == payload => {
                self.note("R15 identical track");
                self.presence.push(t);
                return Ok(());
            }
            Some(t) => {
                let prev = (t.key == key).then_some(t.meta.phx_ref);
                self.note(if prev.is_some() {
                    "R15 update"
                } else {
                    "R15 key change"
                });
                leaves.insert(t.key, vec![t.meta]);
                prev
            }
            None => {
                self.note("R15 track");
                None
            }
        };
        self.last_ref += 1;
        let meta = MMeta {
            phx_ref: self.last_ref,
            phx_ref_prev: prev,
            payload: payload.to_vec(),
        };
        let mut joins = MPresences::new();
        joins.insert(key.to_owned(), vec![meta.clone()]);
        self.presence.push(Tracked {
            channel: channel.clone(),
            conn,
            key: key.to_owned(),
            meta,
        });
        self.publish_presence(channel, joins, leaves);
        Ok(())
    }

    /// R15: the stream's meta on the channel goes (nothing if none). The
    /// stream need not be live or bound.
    pub(crate) fn untrack(&mut self, conn: u64, channel: &Channel) {
        self.drop_presence(conn, Some(channel), "R15 untrack");
    }

    /// R15: removes the stream's metas (on `channel`, or everywhere), one
    /// diff per channel.
    fn drop_presence(&mut self, conn: u64, channel: Option<&Channel>, why: &'static str) {
        let (gone, kept): (Vec<Tracked>, Vec<Tracked>) = core::mem::take(&mut self.presence)
            .into_iter()
            .partition(|t| t.conn == conn && channel.is_none_or(|c| t.channel == *c));
        self.presence = kept;
        for t in gone {
            self.note(why);
            let mut leaves = MPresences::new();
            leaves.insert(t.key, vec![t.meta]);
            self.publish_presence(&t.channel, MPresences::new(), leaves);
        }
    }

    /// R15: one diff to every stream bound to the channel now; none, no output.
    fn publish_presence(&mut self, channel: &Channel, joins: MPresences, leaves: MPresences) {
        let mut recipients: Vec<u64> = (0..self.instances.len())
            .filter(|&n| !self.cids_on(n, channel).is_empty())
            .map(|n| self.instances[n].conn)
            .collect();
        recipients.sort_unstable();
        if recipients.is_empty() {
            self.note("R15 diff to nobody");
            return;
        }
        self.out.push(MOut::PresenceDiff {
            channel: channel.clone(),
            joins,
            leaves,
            recipients,
        });
    }

    /// R15: a channel's presence, key → metas.
    ///
    /// Interpretation: within a key, metas are in the order their streams
    /// were opened (the model's connection numbers), which is what
    /// `presence_state` documents as stream order.
    pub(crate) fn presence_state(&mut self, channel: &Channel) -> MPresences {
        let mut here: Vec<Tracked> = self
            .presence
            .iter()
            .filter(|t| t.channel == *channel)
            .cloned()
            .collect();
        here.sort_by_key(|t| t.conn);
        let mut state = MPresences::new();
        for t in here {
            // Not a rule, and not required to be reached: R15 lists what
            // removes a meta, and R5, R8 and R11 unbinding a stream are not
            // among them (only sockets track in practice, and those rules
            // never touch a socket's anonymous joins).
            if self
                .find_conn(t.conn)
                .is_none_or(|n| self.cids_on(n, channel).is_empty())
            {
                self.note("R15 meta outlives its binding");
            }
            state.entry(t.key).or_default().push(t.meta);
        }
        state
    }

    // -- R13: time ----------------------------------------------------------------

    /// R13.
    pub(crate) fn handle_timeout(&mut self, now: Millis) {
        let before = self.stashes.len();
        self.stashes.retain(|s| s.expires > now);
        if self.stashes.len() < before {
            self.note("R13 stash expired");
        }
        let mut rest = Vec::new();
        for p in core::mem::take(&mut self.parked) {
            if p.expires <= now {
                self.note("R13 park expired");
                self.out.push(MOut::CommandExpired(p.ticket));
            } else {
                rest.push(p);
            }
        }
        self.parked = rest;
        for n in 0..self.instances.len() {
            if self.instances[n].next_refresh > now {
                continue;
            }
            let i = &self.instances[n];
            let receipts: Vec<MReceipt> = self
                .sorted_bindings(n)
                .iter()
                .map(|b| receipt(i.id, b.by.clone(), &b.channel, &b.cid, now))
                .collect();
            let conn = i.conn;
            if receipts.is_empty() {
                self.note("R13 refresh skipped");
            } else {
                self.note("R13 refresh");
                self.out.push(MOut::RefreshReceipts { conn, receipts });
            }
            self.instances[n].next_refresh = now + self.cfg.refresh_interval;
        }
    }

    // -- queries --------------------------------------------------------------------

    /// An attached instance's bindings, sorted, with whether a user authorized each.
    pub(crate) fn bindings(&self, instance: InstanceId) -> Option<Vec<(BindingKey, bool)>> {
        let n = self.find(instance)?;
        Some(
            self.sorted_bindings(n)
                .into_iter()
                .map(|b| (key(&b.channel, &b.cid), b.by.is_some()))
                .collect(),
        )
    }

    /// The user that authorized each binding (for diagnostics).
    pub(crate) fn authorizations(&self, instance: InstanceId) -> Vec<(BindingKey, Option<UserId>)> {
        self.find(instance).map_or_else(Vec::new, |n| {
            self.sorted_bindings(n)
                .into_iter()
                .map(|b| (key(&b.channel, &b.cid), b.by))
                .collect()
        })
    }

    pub(crate) fn connection(&self, instance: InstanceId) -> Option<u64> {
        self.find(instance).map(|n| self.instances[n].conn)
    }

    pub(crate) fn peer(&self, conn: u64) -> Option<Peer> {
        self.find_conn(conn).map(|n| {
            let i = &self.instances[n];
            Peer {
                instance: i.id,
                session: i.session,
                user: i.user.clone(),
            }
        })
    }

    pub(crate) fn instance_count(&self) -> usize {
        self.instances.len()
    }

    pub(crate) fn channel_count(&self) -> usize {
        let mut channels: Vec<&Channel> = self
            .instances
            .iter()
            .flat_map(|i| i.bindings.iter().map(|b| &b.channel))
            .collect();
        channels.sort();
        channels.dedup();
        channels.len()
    }

    pub(crate) fn pending_handshakes(&self) -> usize {
        self.stashes.len()
    }

    pub(crate) fn parked_count(&self) -> usize {
        self.parked.len()
    }
}
