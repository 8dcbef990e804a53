//! The sans-IO router: subscription tables, receipts, tombstones, handler
//! transactions and broadcast routing, as one deterministic state machine.
//!
//! Inputs are method calls that carry the time (`now`, milliseconds) and,
//! where randomness is needed, an [`Entropy`]. Outputs — deliveries,
//! receipt pushes, closes, channel transitions, parked-command wake-ups — are
//! queued and drained with [`Router::poll_output`]; the next deadline comes
//! from [`Router::poll_timeout`] and is fed back through
//! [`Router::handle_timeout`]. The router never blocks, never reads a clock
//! and never knows what a socket is.
//!
//! # Rules
//!
//! Numbered so tests and notes can cite them. "Sorted" means by
//! `(channel, cid)` for binding keys and by cid text for cids; instances an
//! identity names are visited in instance-id order.
//!
//! * **R1 Handshake.** More tokens than `max_receipts_per_handshake` →
//!   `TooManyReceipts`; `max_pending_handshakes` unredeemed stashes →
//!   `TooManyHandshakes`. A token is accepted iff its signature is valid,
//!   `now - created_at <= receipt_max_age`, it names this instance, its user
//!   is `None` or equals the peer's user, and no tombstone covers it (R9).
//!   Duplicates `(channel, cid)` keep the first; at most
//!   `max_bindings_per_instance` are accepted. Accepted ones are re-signed
//!   with `created_at = now` and the same user, in input order. The stash
//!   expires at `now + handshake_ttl`.
//! * **R2 Attach.** The handshake id is consumed whatever happens. Unknown →
//!   `UnknownHandshake`; `expires <= now` → `HandshakeExpired`; another peer
//!   → `HandshakeMismatch`. If the instance is attached: another session →
//!   `SessionMismatch`; else the old stream gets `Close{Superseded}`, the
//!   prior bindings stay (the stash's are ignored) and the identity is set
//!   to the peer's (R8's drop rule applies; drops go to the new stream),
//!   then the new stream gets `RefreshReceipts` for every binding (sorted,
//!   if any) and `DropReceipts` for stash keys not bound (in stash order,
//!   if any), so the client's store matches what holds. Else, if the
//!   session already has `max_instances_per_session` attached instances →
//!   `TooManyConnections`; else
//!   the instance is created with the stash's bindings. Then its parked
//!   commands come out in park order: `CommandReady` if not expired, else
//!   `CommandExpired`. A refresh is due at `now + refresh_interval`.
//! * **R3 Detach.** The current stream's instance and bindings are forgotten,
//!   without tombstones; a stale `ConnId` does nothing.
//! * **R4 Bindings.** `(channel, cid)` per instance, tagged with the user who
//!   authorized it or anonymous. Re-adding keeps the old tag. A channel
//!   gaining its first binding on this router emits `ChannelUp`, losing its
//!   last `ChannelDown`.
//! * **R5 Command.** `command` needs an attached instance (`NotAttached`;
//!   the caller may `park`) of the same session (`SessionMismatch`); the
//!   effects start with the target cid's current channels. `commit`: a
//!   change that would exceed `max_bindings_per_instance` →
//!   `TooManyBindings`, nothing applied. Then, per channel in first-op order
//!   (last op wins): put binds, tagged with the post-handler user, and issues
//!   a receipt if newly bound (or, when the commit changes the user, if
//!   already bound: it is retagged for the new user so R8 keeps it); delete
//!   unbinds (if bound), writes an instance
//!   tombstone and reports a drop, bound or not, so a stale receipt cannot
//!   bring it back. With no attached instance every put counts as newly bound.
//! * **R6 Self-echoes.** For each queued broadcast in call order whose
//!   `except` does not name the post-handler peer: one echo per cid of the
//!   originator bound to the channel after the commit (sorted); unattached,
//!   the target cid if the commit put that channel. Pages use the declared set.
//! * **R7 Publish.** Every broadcast (handler or immediate) reaches every
//!   attached instance bound to exactly its channel, minus instances whose
//!   instance, session or user an `except` entry names exactly, minus the
//!   originator for handler broadcasts: one `Fanout` per broadcast with one
//!   recipient per instance carrying all its bound cids. No recipients → no
//!   output.
//! * **R8 Identity change.** When a commit leaves another session or user,
//!   every attached instance of the *pre* session takes the new identity and
//!   gets `IdentityChanged`; if its user changed, its bindings authorized by
//!   any other user are dropped (`DropReceipts`, sorted, if any).
//!   Anonymous bindings survive login and logout.
//! * **R9 Tombstones.** Keys `(identity, channel, cid)` and `(identity,
//!   channel)`, max-merged by time, ignored when a purge marker strictly
//!   newer exists; a purge removes tombstones no newer than it (so at equal
//!   times the later call wins). A
//!   receipt is covered when a tombstone at the instance, the session, the
//!   receipt's user or the current user, binding-level or channel-wide, has
//!   `created_at <= ts` and `ts + tombstone_ttl > now`.
//! * **R10 Immediate API.** `subscribe` binds for every attached instance the
//!   identity names (tag: that instance's user; a re-add keeps its tag and
//!   its receipt is signed for that tag), skipping instances at their
//!   limit, pushes each an `AddReceipts` with one fresh receipt, then purges
//!   both tombstone keys at that identity level. `unsubscribe` unbinds,
//!   pushes `DropReceipts` for the key to every named instance (bound or
//!   not) and writes a binding tombstone. `unsubscribe_all` unbinds every cid
//!   on the channel, pushes `DropReceipts` (sorted) where something was
//!   bound, and writes a channel-wide tombstone.
//! * **R11 Page.** `commit_page` takes the `init` effects of one instance; a
//!   declared set over `max_bindings_per_instance` → `TooManyBindings`. If
//!   attached (same session, else `SessionMismatch`), the bindings become the
//!   declared set, all tagged with the post-render user, added before old
//!   ones are dropped. Receipts for declared keys the client did not claim
//!   (for every declared key when the user changed: the claimed receipts
//!   name the old user) (sorted), drops for claimed keys not declared
//!   (sorted). Then R8, R6
//!   over the declared set, R7 without the originator.
//! * **R12 Parking.** `park` on an attached instance emits `CommandReady` at
//!   once; else it holds the ticket until attach (R2) or `now + park_ttl`
//!   (`CommandExpired` from `handle_timeout`), up to
//!   `max_parked_per_instance` / `max_parked_total` (`ParkFull`).
//! * **R13 Time.** `handle_timeout(now)` expires stashes (`expires <= now`),
//!   parked commands, and runs due refreshes: `RefreshReceipts` with every
//!   binding re-signed (sorted; skipped when there are none), next due at
//!   `now + refresh_interval`.
//! * **R14 Sockets.** `connect` attaches an instance without a handshake
//!   (same checks as R2's new-instance path; an attached id →
//!   `InstanceInUse`, or `SessionMismatch` under another session). `join`
//!   binds `(channel, cid)` for a live stream with the anonymous tag, no
//!   receipt and no tombstone (`TooManyBindings` past the limit); `leave`
//!   unbinds without a tombstone. Detach (R3) forgets them as any binding.
//! * **R15 Presence.** A stream bound to a channel may `track` one meta per
//!   channel under a key; an identical payload is a no-op, a new payload an
//!   update (fresh `phx_ref`, `phx_ref_prev` = the old one, diff = join +
//!   leave), another key a leave of the old key. `untrack`, leaving the
//!   channel's last cid, an R10 unsubscribe that leaves the stream no cid
//!   on the channel (after its `DropReceipts`), detach and supersede remove
//!   the meta. (R5/R8/R11 unbinding does not: only sockets track, and their
//!   anonymous joins are never touched by those rules.) Every change
//!   is one `PresenceDiff` to every stream bound to the channel at that
//!   moment, the tracker included (none → no output).
//!
//! ```
//! use tidings_core::router::{Output, Router, RouterConfig};
//! use tidings_core::{Cid, InstanceId, Payload, Peer, SeededEntropy, SessionId};
//!
//! let mut e = SeededEntropy::new(1);
//! let mut router = Router::new(b"server secret", RouterConfig::default());
//! let peer = Peer { instance: InstanceId::mint(&mut e), session: SessionId::mint(&mut e), user: None };
//! let hs = router.handshake(0, &mut e, &peer, &[]).unwrap();
//! let conn = router.attach(1, &hs.handshake_id, &peer).unwrap();
//! router.subscribe(2, &tidings_core::Identity::Instance(peer.instance), "{:room, 1}", Cid::PAGE).unwrap();
//! router.broadcast_action("{:room, 1}", "hello", Payload::new(&b"{}"[..])).unwrap();
//! let delivered = std::iter::from_fn(|| router.poll_output()).any(|o| matches!(
//!     o, Output::Fanout { recipients, .. } if recipients[0].conn == conn));
//! assert!(delivered);
//! ```

mod effects;
mod receipt;
mod socket;
mod table;
mod tombstone;
mod types;

use alloc::collections::{BTreeSet, BinaryHeap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cmp::Reverse;

use hashbrown::HashMap;

pub use effects::{Effects, HandlerKind, QueuedBroadcast, SubOp};
pub use receipt::{MAX_RECEIPT_TOKEN_BYTES, Receipt, ReceiptError};
pub use table::{InstanceSlot, SubscriptionTable};
pub use types::{
    Action, BindingKey, Broadcast, Cids, CloseReason, ConnId, IssuedReceipt, MAX_ACTION_BYTES,
    Millis, Output, Payload, Recipient, SelfEcho,
};

use self::receipt::Signer;
use self::table::SubscriptionTable as Table;
use self::tombstone::{StoneKey, Tombstones};
use crate::channel::IntoChannel;
use crate::identity::{Cid, Entropy, HandshakeId, Identity, InstanceId, Peer, SessionId, UserId};
use crate::presence::PresenceTable;
use crate::{Channel, ChannelError};

const SECOND: Millis = 1000;
const HOUR: Millis = 3600 * SECOND;

/// The router's limits and timings. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// Oldest receipt a handshake accepts (72 h).
    pub receipt_max_age: Millis,
    /// How long tombstones and purge markers are kept (72 h).
    pub tombstone_ttl: Millis,
    /// How often expired tombstones are swept (30 min).
    pub sweep_interval: Millis,
    /// How long a handshake id can be redeemed (60 s).
    pub handshake_ttl: Millis,
    /// How long a command waits for its instance's stream (5 s).
    pub park_ttl: Millis,
    /// How often a stream's receipts are re-signed (12 h).
    pub refresh_interval: Millis,
    /// Most bindings one instance may hold (1 000).
    pub max_bindings_per_instance: usize,
    /// Most receipts one handshake may carry (1 000).
    pub max_receipts_per_handshake: usize,
    /// Most handshakes waiting to be redeemed (100 000).
    pub max_pending_handshakes: usize,
    /// Most commands parked for one instance (32).
    pub max_parked_per_instance: usize,
    /// Most attached instances (tabs) one session may have (100).
    pub max_instances_per_session: usize,
    /// Most commands parked in all (10 000).
    pub max_parked_total: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            receipt_max_age: 72 * HOUR,
            tombstone_ttl: 72 * HOUR,
            sweep_interval: HOUR / 2,
            handshake_ttl: 60 * SECOND,
            park_ttl: 5 * SECOND,
            refresh_interval: 12 * HOUR,
            max_bindings_per_instance: 1000,
            max_receipts_per_handshake: 1000,
            max_pending_handshakes: 100_000,
            max_parked_per_instance: 32,
            max_instances_per_session: 100,
            max_parked_total: 10_000,
        }
    }
}

/// Why the router refused an input. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// The channel is invalid.
    #[error(transparent)]
    Channel(alloc::boxed::Box<ChannelError>),
    /// The action name is empty or too long.
    #[error("action name must have 1 to {max} bytes; got {len}")]
    ActionName {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The change would leave the instance with too many bindings.
    #[error("instance would hold {would_hold} bindings; at most {max} are allowed")]
    TooManyBindings {
        /// How many it would hold.
        would_hold: usize,
        /// The limit.
        max: usize,
    },
    /// A handshake carried too many receipts.
    #[error("handshake carries {got} receipts; at most {max} are allowed")]
    TooManyReceipts {
        /// How many it carried.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// Too many handshakes are waiting to be redeemed.
    #[error("too many pending handshakes (at most {max}); try again shortly")]
    TooManyHandshakes {
        /// The limit.
        max: usize,
    },
    /// The handshake id is unknown or was already used.
    #[error("handshake id is unknown or was already used; handshake again")]
    UnknownHandshake,
    /// The handshake id expired before it was redeemed.
    #[error("handshake id has expired; handshake again")]
    HandshakeExpired,
    /// The stream claims another instance, session or user than the handshake.
    #[error("handshake was made for a different instance, session or user")]
    HandshakeMismatch,
    /// The instance is attached under another session.
    #[error("instance belongs to another session")]
    SessionMismatch,
    /// The instance has no attached stream (a command may be parked).
    #[error("instance has no attached stream")]
    NotAttached,
    /// The session already has its maximum of attached instances.
    #[error("session already has {max} attached tabs; at most {max} are allowed")]
    TooManyConnections {
        /// The limit.
        max: usize,
    },
    /// Too many commands are parked.
    #[error("too many parked commands (at most {max} per instance, {max_total} in all)")]
    ParkFull {
        /// Per-instance limit.
        max: usize,
        /// Overall limit.
        max_total: usize,
    },
    /// The instance id is already attached (sockets need a fresh one).
    #[error("instance is already attached; open the socket with a fresh instance id")]
    InstanceInUse,
    /// Presence needs the stream to be bound to the channel.
    #[error("the stream has not joined this channel; join it before tracking presence")]
    NotJoined,
    /// Effects of the wrong kind or for another instance were committed.
    #[error("effects do not belong to this commit: {0}")]
    WrongEffects(&'static str),
}

impl From<ChannelError> for RouterError {
    fn from(e: ChannelError) -> Self {
        RouterError::Channel(alloc::boxed::Box::new(e))
    }
}

/// The answer to a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeReply {
    /// Redeem once, within the handshake TTL, with [`Router::attach`].
    pub handshake_id: HandshakeId,
    /// The accepted receipts, re-signed; the client replaces its store with these.
    pub receipts: Vec<IssuedReceipt>,
    /// How many of the given tokens were refused.
    pub rejected: usize,
}

/// What a committed transaction returns to its originator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Actions the originator runs after the handler's own next action.
    pub self_echoes: Vec<SelfEcho>,
    /// New receipts for the originator.
    pub receipt_adds: Vec<IssuedReceipt>,
    /// Receipts the originator must forget.
    pub receipt_drops: Vec<BindingKey>,
    /// The session after the handler.
    pub session: SessionId,
    /// The user after the handler.
    pub user: Option<UserId>,
}

/// Counts of what the router holds, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouterStats {
    /// Attached instances.
    pub instances: usize,
    /// Channels with at least one binding.
    pub channels: usize,
    /// Tombstones and purge markers.
    pub tombstones: usize,
    /// Handshakes waiting to be redeemed.
    pub pending_handshakes: usize,
    /// Parked commands.
    pub parked: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Handshake(HandshakeId),
    Park(InstanceId, u64),
    Refresh(ConnId),
    Sweep,
}

struct Stash {
    peer: Peer,
    bindings: Vec<(Channel, Cid, bool)>,
    expires: Millis,
}

/// The routing state machine. See the [module docs](self).
pub struct Router {
    config: RouterConfig,
    signer: Signer,
    table: Table,
    tombstones: Tombstones,
    handshakes: HashMap<HandshakeId, Stash>,
    parked: HashMap<InstanceId, VecDeque<(u64, Millis)>>,
    parked_total: usize,
    timers: BinaryHeap<Reverse<(Millis, Timer)>>,
    sweep_armed: bool,
    presence: PresenceTable,
    out: VecDeque<Output>,
}

impl Router {
    /// A router signing receipts with `secret` (keep it stable across
    /// restarts so clients' receipts stay valid).
    pub fn new(secret: &[u8], config: RouterConfig) -> Self {
        Self {
            config,
            signer: Signer::new(secret),
            table: Table::default(),
            tombstones: Tombstones::default(),
            handshakes: HashMap::new(),
            parked: HashMap::new(),
            parked_total: 0,
            timers: BinaryHeap::new(),
            sweep_armed: false,
            presence: PresenceTable::default(),
            out: VecDeque::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    // -- outputs and time ---------------------------------------------------

    /// The next queued output. Drain after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Router::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Runs every deadline at or before `now`: handshake and park expiry,
    /// receipt refresh, tombstone sweeps.
    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Handshake(id) => {
                    if self.handshakes.get(&id).is_some_and(|s| s.expires <= now) {
                        self.handshakes.remove(&id);
                    }
                }
                Timer::Park(instance, ticket) => self.expire_parked(now, instance, ticket),
                Timer::Refresh(conn) => self.refresh(now, conn),
                Timer::Sweep => {
                    self.tombstones.sweep(now, self.config.tombstone_ttl);
                    self.sweep_armed = false;
                    self.arm_sweep(now);
                }
            }
        }
    }

    fn arm(&mut self, at: Millis, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
    }

    fn arm_sweep(&mut self, now: Millis) {
        if !self.sweep_armed && self.tombstones.len() > 0 {
            self.sweep_armed = true;
            self.arm(now.saturating_add(self.config.sweep_interval), Timer::Sweep);
        }
    }

    fn refresh(&mut self, now: Millis, conn: ConnId) {
        let Some(slot) = self.table.slot_of_conn(conn) else {
            return;
        };
        let receipts = self.sign_all(slot, now);
        if !receipts.is_empty() {
            self.out
                .push_back(Output::RefreshReceipts { conn, receipts });
        }
        self.arm(
            now.saturating_add(self.config.refresh_interval),
            Timer::Refresh(conn),
        );
    }

    fn sign_all(&self, slot: usize, now: Millis) -> Vec<IssuedReceipt> {
        let inst = self.table.instance(slot);
        self.table
            .bindings(slot)
            .into_iter()
            .map(|(channel, cid, epoch)| {
                let user = if epoch == 0 { None } else { inst.user.as_ref() };
                let token = self.signer.sign(inst.id, user, &channel, &cid, now);
                IssuedReceipt {
                    channel,
                    cid,
                    token,
                }
            })
            .collect()
    }

    fn issue(
        &self,
        instance: InstanceId,
        user: Option<&UserId>,
        channel: Channel,
        cid: Cid,
        now: Millis,
    ) -> IssuedReceipt {
        let token = self.signer.sign(instance, user, &channel, &cid, now);
        IssuedReceipt {
            channel,
            cid,
            token,
        }
    }

    /// Verifies a receipt token on its own (signature and age only).
    pub fn verify_receipt(&self, token: &str, now: Millis) -> Result<Receipt, ReceiptError> {
        self.signer.verify(token, now, self.config.receipt_max_age)
    }

    // -- connections --------------------------------------------------------

    /// Verifies the client's receipts for `peer` and stashes the accepted
    /// bindings under a fresh single-use handshake id.
    ///
    /// A receipt is accepted when its signature is valid and it is younger
    /// than the maximum age, it was issued to this instance, it is anonymous
    /// or issued to the current user, and no live tombstone at or after its
    /// creation covers it at the instance, the session, the receipt's user
    /// or the current user.
    pub fn handshake(
        &mut self,
        now: Millis,
        entropy: &mut impl Entropy,
        peer: &Peer,
        tokens: &[&str],
    ) -> Result<HandshakeReply, RouterError> {
        if tokens.len() > self.config.max_receipts_per_handshake {
            return Err(RouterError::TooManyReceipts {
                got: tokens.len(),
                max: self.config.max_receipts_per_handshake,
            });
        }
        if self.handshakes.len() >= self.config.max_pending_handshakes {
            return Err(RouterError::TooManyHandshakes {
                max: self.config.max_pending_handshakes,
            });
        }
        let mut bindings = Vec::new();
        let mut receipts = Vec::new();
        let mut seen = BTreeSet::new();
        for token in tokens {
            let Ok(r) = self.verify_receipt(token, now) else {
                continue;
            };
            if r.instance != peer.instance || (r.user.is_some() && r.user != peer.user) {
                continue;
            }
            let mut levels = alloc::vec![
                Identity::Instance(peer.instance),
                Identity::Session(peer.session)
            ];
            levels.extend(r.user.clone().map(Identity::User));
            if let Some(u) = &peer.user
                && r.user.as_ref() != Some(u)
            {
                levels.push(Identity::User(u.clone()));
            }
            let topic = r.channel.topic();
            if self.tombstones.covers(
                &levels,
                &topic,
                &r.cid,
                r.created_at,
                now,
                self.config.tombstone_ttl,
            ) {
                continue;
            }
            if bindings.len() >= self.config.max_bindings_per_instance
                || !seen.insert((r.channel.clone(), r.cid.clone()))
            {
                continue;
            }
            receipts.push(self.issue(
                peer.instance,
                r.user.as_ref(),
                r.channel.clone(),
                r.cid.clone(),
                now,
            ));
            bindings.push((r.channel, r.cid, r.user.is_some()));
        }
        let handshake_id = HandshakeId::mint(entropy);
        let expires = now.saturating_add(self.config.handshake_ttl);
        self.handshakes.insert(
            handshake_id,
            Stash {
                peer: peer.clone(),
                bindings,
                expires,
            },
        );
        self.arm(expires, Timer::Handshake(handshake_id));
        Ok(HandshakeReply {
            handshake_id,
            rejected: tokens.len() - receipts.len(),
            receipts,
        })
    }

    /// Redeems a handshake id and attaches the instance's stream. A live
    /// older stream of the same instance and session is superseded: it gets
    /// [`Output::Close`] and its bindings carry over. Parked commands of the
    /// instance are released as [`Output::CommandReady`].
    pub fn attach(
        &mut self,
        now: Millis,
        handshake_id: &HandshakeId,
        peer: &Peer,
    ) -> Result<ConnId, RouterError> {
        let stash = self
            .handshakes
            .remove(handshake_id)
            .ok_or(RouterError::UnknownHandshake)?;
        if stash.expires <= now {
            return Err(RouterError::HandshakeExpired);
        }
        if stash.peer != *peer {
            return Err(RouterError::HandshakeMismatch);
        }
        let conn = if let Some(slot) = self.table.slot_of(&peer.instance) {
            if self.table.instance(slot).session != peer.session {
                return Err(RouterError::SessionMismatch);
            }
            let old = self.table.instance(slot).conn;
            let conn = self.table.renew_conn(slot);
            self.out.push_back(Output::Close {
                conn: old,
                reason: CloseReason::Superseded,
            });
            self.leave_presence(old);
            let dropped =
                self.table
                    .set_identity(slot, peer.session, peer.user.clone(), &mut self.out);
            self.push_drops(conn, dropped);
            // The client just replaced its store with the stash's receipts,
            // but the prior bindings are what holds: resync it.
            let receipts = self.sign_all(slot, now);
            let bound: BTreeSet<(&Channel, &Cid)> =
                receipts.iter().map(|r| (&r.channel, &r.cid)).collect();
            let stale: Vec<(Channel, Cid)> = stash
                .bindings
                .iter()
                .filter(|(ch, cid, _)| !bound.contains(&(ch, cid)))
                .map(|(ch, cid, _)| (ch.clone(), cid.clone()))
                .collect();
            if !receipts.is_empty() {
                self.out
                    .push_back(Output::RefreshReceipts { conn, receipts });
            }
            self.push_drops(conn, stale);
            conn
        } else {
            if self.table.session_len(&peer.session) >= self.config.max_instances_per_session {
                return Err(RouterError::TooManyConnections {
                    max: self.config.max_instances_per_session,
                });
            }
            let slot = self
                .table
                .insert_instance(peer.instance, peer.session, peer.user.clone());
            let epoch = self.table.instance(slot).epoch;
            for (channel, cid, tagged) in &stash.bindings {
                self.table.add_binding(
                    slot,
                    channel,
                    cid,
                    if *tagged { epoch } else { 0 },
                    &mut self.out,
                );
            }
            self.table.instance(slot).conn
        };
        self.arm(
            now.saturating_add(self.config.refresh_interval),
            Timer::Refresh(conn),
        );
        if let Some(queue) = self.parked.remove(&peer.instance) {
            self.parked_total -= queue.len();
            for (ticket, expires) in queue {
                self.out.push_back(if expires > now {
                    Output::CommandReady { ticket }
                } else {
                    Output::CommandExpired { ticket }
                });
            }
        }
        Ok(conn)
    }

    /// The stream ended. Its instance and bindings are forgotten (the client
    /// keeps its receipts); no tombstones are written. A stale handle is ignored.
    pub fn detach(&mut self, conn: ConnId) {
        if let Some(slot) = self.table.slot_of_conn(conn) {
            self.table.remove_instance(slot, &mut self.out);
            self.leave_presence(conn);
        }
    }

    fn push_drops(&mut self, conn: ConnId, dropped: Vec<(Channel, Cid)>) {
        if !dropped.is_empty() {
            let keys = dropped
                .into_iter()
                .map(|(channel, cid)| BindingKey { channel, cid })
                .collect();
            self.out.push_back(Output::DropReceipts { conn, keys });
        }
    }

    // -- parked commands ----------------------------------------------------

    /// Holds a command for an instance whose stream is not attached yet.
    /// [`Output::CommandReady`] releases it on attach (at once if attached
    /// already); [`Output::CommandExpired`] after the park TTL.
    pub fn park(
        &mut self,
        now: Millis,
        instance: InstanceId,
        ticket: u64,
    ) -> Result<(), RouterError> {
        if self.table.slot_of(&instance).is_some() {
            self.out.push_back(Output::CommandReady { ticket });
            return Ok(());
        }
        let full = RouterError::ParkFull {
            max: self.config.max_parked_per_instance,
            max_total: self.config.max_parked_total,
        };
        if self.parked_total >= self.config.max_parked_total {
            return Err(full);
        }
        let queue = self.parked.entry(instance).or_default();
        if queue.len() >= self.config.max_parked_per_instance {
            return Err(full);
        }
        let expires = now.saturating_add(self.config.park_ttl);
        queue.push_back((ticket, expires));
        self.parked_total += 1;
        self.arm(expires, Timer::Park(instance, ticket));
        Ok(())
    }

    fn expire_parked(&mut self, now: Millis, instance: InstanceId, ticket: u64) {
        let Some(queue) = self.parked.get_mut(&instance) else {
            return;
        };
        let Some(pos) = queue.iter().position(|&(t, exp)| t == ticket && exp <= now) else {
            return;
        };
        queue.remove(pos);
        self.parked_total -= 1;
        if queue.is_empty() {
            self.parked.remove(&instance);
        }
        self.out.push_back(Output::CommandExpired { ticket });
    }

    // -- handler transactions -----------------------------------------------

    /// Opens a command transaction for component `target` of an attached
    /// instance owned by `session`; its subscriptions are the component's
    /// current bindings.
    pub fn command(
        &self,
        instance: InstanceId,
        session: SessionId,
        target: Cid,
    ) -> Result<Effects, RouterError> {
        let slot = self
            .table
            .slot_of(&instance)
            .ok_or(RouterError::NotAttached)?;
        let inst = self.table.instance(slot);
        if inst.session != session {
            return Err(RouterError::SessionMismatch);
        }
        let subscriptions = self
            .table
            .bindings(slot)
            .into_iter()
            .filter(|(_, cid, _)| *cid == target)
            .map(|(channel, _, _)| channel)
            .collect();
        let peer = Peer {
            instance,
            session,
            user: inst.user.clone(),
        };
        Ok(Effects::new(
            HandlerKind::Command,
            &peer,
            target,
            subscriptions,
        ))
    }

    /// Commits a command's effects atomically, in order: subscription changes
    /// (tombstones, receipts), identity change, self-echoes, broadcasts.
    pub fn commit(&mut self, now: Millis, fx: Effects) -> Result<Committed, RouterError> {
        if fx.kind != HandlerKind::Command {
            return Err(RouterError::WrongEffects(
                "init effects are committed with commit_page",
            ));
        }
        let slot = self.table.slot_of(&fx.instance);
        let (pre_session, pre_user) = self.pre_identity(slot, fx.session, &fx.user)?;
        let post_session = fx.new_session.unwrap_or(pre_session);
        let post_user = fx.new_user.clone().unwrap_or_else(|| pre_user.clone());
        if let Some(s) = slot {
            self.check_command_limit(s, &fx)?;
        }
        // 1. Subscription changes, tombstones, receipts.
        let tag = self.post_tag(slot, &pre_user, &post_user);
        let user_changes = pre_user != post_user;
        let (receipt_adds, receipt_drops) =
            self.apply_ops(now, slot, &fx, tag, post_user.as_ref(), user_changes);
        // 2. Identity change, for every tab of the session.
        self.change_identity(pre_session, &pre_user, post_session, &post_user);
        // 3. Self-echoes, against what the originator is bound to now.
        let post = Peer {
            instance: fx.instance,
            session: post_session,
            user: post_user,
        };
        let self_echoes = self.command_echoes(slot, &fx, &post);
        // 4. Broadcasts, in call order, without the originator.
        for b in fx.broadcasts {
            self.publish(&b, Some(fx.instance));
        }
        self.arm_sweep(now);
        Ok(Committed {
            self_echoes,
            receipt_adds,
            receipt_drops,
            session: post.session,
            user: post.user,
        })
    }

    /// The identity before a commit: the table's when attached (which must
    /// be the same session), else the handler's.
    fn pre_identity(
        &self,
        slot: Option<usize>,
        session: SessionId,
        user: &Option<UserId>,
    ) -> Result<(SessionId, Option<UserId>), RouterError> {
        match slot {
            Some(s) => {
                let inst = self.table.instance(s);
                if inst.session != session {
                    return Err(RouterError::SessionMismatch);
                }
                Ok((inst.session, inst.user.clone()))
            }
            None => Ok((session, user.clone())),
        }
    }

    fn check_command_limit(&self, slot: usize, fx: &Effects) -> Result<(), RouterError> {
        let mut count = self.table.instance(slot).count;
        for (channel, op) in &fx.ops {
            let bound = self
                .table
                .cids_on(slot, channel)
                .is_some_and(|c| c.contains(&fx.cid));
            match (op, bound) {
                (SubOp::Put, false) => count += 1,
                (SubOp::Delete, true) => count -= 1,
                _ => {}
            }
        }
        if count > self.config.max_bindings_per_instance {
            return Err(RouterError::TooManyBindings {
                would_hold: count,
                max: self.config.max_bindings_per_instance,
            });
        }
        Ok(())
    }

    /// Applies a command's subscription ops. Without a live entry every put
    /// counts as added; every delete is tombstoned and reported.
    fn apply_ops(
        &mut self,
        now: Millis,
        slot: Option<usize>,
        fx: &Effects,
        tag: u32,
        user: Option<&UserId>,
        user_changes: bool,
    ) -> (Vec<IssuedReceipt>, Vec<BindingKey>) {
        let mut adds = Vec::new();
        let mut drops = Vec::new();
        for (channel, op) in &fx.ops {
            match op {
                SubOp::Put => {
                    let mut added = slot.is_none_or(|s| {
                        self.table
                            .add_binding(s, channel, &fx.cid, tag, &mut self.out)
                    });
                    // A put again under a user change is re-authorized by the
                    // new user (else R8 would drop it) and gets a fresh receipt.
                    if let Some(s) = slot
                        && !added
                        && user_changes
                    {
                        self.table.set_tag(s, channel, &fx.cid, tag);
                        added = true;
                    }
                    if added {
                        adds.push(self.issue(
                            fx.instance,
                            user,
                            channel.clone(),
                            fx.cid.clone(),
                            now,
                        ));
                    }
                }
                SubOp::Delete => {
                    // Bound or not: a stale receipt held by the client must
                    // not bring the binding back at its next handshake.
                    if let Some(s) = slot {
                        self.table
                            .remove_binding(s, channel, &fx.cid, &mut self.out);
                    }
                    self.tombstone(
                        now,
                        Identity::Instance(fx.instance),
                        channel,
                        Some(fx.cid.clone()),
                    );
                    drops.push(BindingKey {
                        channel: channel.clone(),
                        cid: fx.cid.clone(),
                    });
                }
            }
        }
        (adds, drops)
    }

    fn command_echoes(&self, slot: Option<usize>, fx: &Effects, post: &Peer) -> Vec<SelfEcho> {
        let mut echoes = Vec::new();
        for b in &fx.broadcasts {
            if post.is_excluded_by(&b.except) {
                continue;
            }
            let cids: Vec<Cid> = match slot {
                Some(s) => self
                    .table
                    .cids_on(s, &b.channel)
                    .map(|c| c.as_slice().to_vec())
                    .unwrap_or_default(),
                None => fx
                    .ops
                    .iter()
                    .filter(|(c, op)| *op == SubOp::Put && *c == b.channel)
                    .map(|_| fx.cid.clone())
                    .collect(),
            };
            echoes.extend(cids.into_iter().map(|cid| SelfEcho {
                action: b.action.clone(),
                params: b.params.clone(),
                cid,
            }));
        }
        echoes
    }

    /// Commits a page render or navigation: the `init` effects of every
    /// component in render order, against the bindings the client claims.
    ///
    /// The instance's bindings (if attached) become exactly the declared set
    /// — bindings declared again cause no channel churn, dropped ones are
    /// not tombstoned; the client gets receipts for declared keys it did not
    /// claim and drops for claimed keys not declared.
    pub fn commit_page(
        &mut self,
        now: Millis,
        peer: &Peer,
        components: Vec<Effects>,
        claimed: &[BindingKey],
    ) -> Result<Committed, RouterError> {
        if components
            .iter()
            .any(|fx| fx.kind != HandlerKind::Init || fx.instance != peer.instance)
        {
            return Err(RouterError::WrongEffects(
                "page effects must be init effects of the page's instance",
            ));
        }
        let slot = self.table.slot_of(&peer.instance);
        let (pre_session, pre_user) = self.pre_identity(slot, peer.session, &peer.user)?;
        let mut declared: BTreeSet<BindingKey> = BTreeSet::new();
        let mut post_session = pre_session;
        let mut post_user = pre_user.clone();
        for fx in &components {
            declared.extend(fx.subscriptions().iter().map(|channel| BindingKey {
                channel: channel.clone(),
                cid: fx.cid.clone(),
            }));
            if let Some(s) = fx.new_session {
                post_session = s;
            }
            if let Some(u) = &fx.new_user {
                post_user.clone_from(u);
            }
        }
        if declared.len() > self.config.max_bindings_per_instance {
            return Err(RouterError::TooManyBindings {
                would_hold: declared.len(),
                max: self.config.max_bindings_per_instance,
            });
        }
        // 1. Transition and the client's receipt diff.
        let tag = self.post_tag(slot, &pre_user, &post_user);
        if let Some(s) = slot {
            self.transition(s, &declared, tag);
        }
        let claimed: BTreeSet<&BindingKey> = claimed.iter().collect();
        // A user change retags every binding: the claimed receipts carry the
        // old user and would be refused at the next handshake, so re-issue.
        let reissue_all = pre_user != post_user;
        let receipt_adds = declared
            .iter()
            .filter(|k| reissue_all || !claimed.contains(k))
            .map(|k| {
                self.issue(
                    peer.instance,
                    post_user.as_ref(),
                    k.channel.clone(),
                    k.cid.clone(),
                    now,
                )
            })
            .collect();
        let receipt_drops = claimed
            .iter()
            .filter(|k| !declared.contains(*k))
            .map(|k| (*k).clone())
            .collect();
        // 2. Identity change.
        self.change_identity(pre_session, &pre_user, post_session, &post_user);
        // 3. Self-echoes against the declared set.
        let post = Peer {
            instance: peer.instance,
            session: post_session,
            user: post_user,
        };
        let mut self_echoes = Vec::new();
        for b in components.iter().flat_map(|fx| &fx.broadcasts) {
            if !post.is_excluded_by(&b.except) {
                self_echoes.extend(declared.iter().filter(|k| k.channel == b.channel).map(|k| {
                    SelfEcho {
                        action: b.action.clone(),
                        params: b.params.clone(),
                        cid: k.cid.clone(),
                    }
                }));
            }
        }
        // 4. Broadcasts.
        for b in components.into_iter().flat_map(|fx| fx.broadcasts) {
            self.publish(&b, Some(peer.instance));
        }
        Ok(Committed {
            self_echoes,
            receipt_adds,
            receipt_drops,
            session: post.session,
            user: post.user,
        })
    }

    /// Makes an instance's bindings exactly `declared`, tagged `tag`: adds
    /// and retags first, then drops, so a kept channel never goes through zero.
    fn transition(&mut self, slot: usize, declared: &BTreeSet<BindingKey>, tag: u32) {
        let current = self.table.bindings(slot);
        for key in declared {
            if !self
                .table
                .add_binding(slot, &key.channel, &key.cid, tag, &mut self.out)
            {
                self.table.set_tag(slot, &key.channel, &key.cid, tag);
            }
        }
        for (channel, cid, _) in current {
            let key = BindingKey { channel, cid };
            if !declared.contains(&key) {
                self.table
                    .remove_binding(slot, &key.channel, &key.cid, &mut self.out);
            }
        }
    }

    /// The epoch tag new bindings get when the commit leaves `post_user`.
    fn post_tag(
        &self,
        slot: Option<usize>,
        pre_user: &Option<UserId>,
        post_user: &Option<UserId>,
    ) -> u32 {
        let Some(s) = slot else { return 0 };
        if post_user.is_none() {
            return 0;
        }
        let epoch = self.table.instance(s).epoch;
        if pre_user == post_user {
            epoch
        } else {
            epoch + 1
        }
    }

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
        for slot in self.table.resolve(&Identity::Session(pre_session)) {
            let dropped =
                self.table
                    .set_identity(slot, post_session, post_user.clone(), &mut self.out);
            let conn = self.table.instance(slot).conn;
            self.out.push_back(Output::IdentityChanged {
                conn,
                session: post_session,
                user: post_user.clone(),
            });
            self.push_drops(conn, dropped);
        }
    }

    fn publish(&mut self, b: &QueuedBroadcast, originator: Option<InstanceId>) {
        let mut except = b.except.clone();
        if let Some(i) = originator {
            except.push(Identity::Instance(i));
        }
        let mut recipients = Vec::new();
        self.table.fanout(&b.channel, &except, &mut recipients);
        if !recipients.is_empty() {
            self.out.push_back(Output::Fanout {
                broadcast: Arc::new(Broadcast {
                    channel: b.channel.clone(),
                    action: b.action.clone(),
                    params: b.params.clone(),
                }),
                recipients,
            });
        }
    }

    fn tombstone(&mut self, now: Millis, identity: Identity, channel: &Channel, cid: Option<Cid>) {
        self.tombstones.insert(
            StoneKey {
                identity,
                topic: channel.topic(),
                cid,
            },
            now,
        );
    }

    // -- immediate API ------------------------------------------------------

    /// Broadcasts to every live instance bound to `channel`.
    pub fn broadcast_action(
        &mut self,
        channel: impl IntoChannel,
        action: &str,
        params: Payload,
    ) -> Result<(), RouterError> {
        self.broadcast_action_except(&[], channel, action, params)
    }

    /// Broadcasts to every live instance bound to `channel` except those an
    /// entry of `except` names (exact match).
    pub fn broadcast_action_except(
        &mut self,
        except: &[Identity],
        channel: impl IntoChannel,
        action: &str,
        params: Payload,
    ) -> Result<(), RouterError> {
        let b = QueuedBroadcast::new(except, channel, action, params)?;
        self.publish(&b, None);
        Ok(())
    }

    /// Grants `(channel, cid)` to every live instance `identity` names, pushing
    /// each a fresh receipt, and purges tombstones at that identity level (a
    /// re-grant). Instances at their binding limit are skipped. Returns how
    /// many instances were granted.
    pub fn subscribe(
        &mut self,
        now: Millis,
        identity: &Identity,
        channel: impl IntoChannel,
        cid: Cid,
    ) -> Result<usize, RouterError> {
        let channel = channel.into_channel()?;
        let mut granted = 0;
        for slot in self.table.resolve(identity) {
            let inst = self.table.instance(slot);
            let bound = self
                .table
                .cids_on(slot, &channel)
                .is_some_and(|c| c.contains(&cid));
            if !bound && inst.count >= self.config.max_bindings_per_instance {
                continue;
            }
            let (conn, id, user, epoch) = (inst.conn, inst.id, inst.user.clone(), inst.epoch);
            let tag = if user.is_some() { epoch } else { 0 };
            // A re-add keeps its tag, so its receipt is signed for that tag.
            let tag = self.table.epoch_of(slot, &channel, &cid).unwrap_or(tag);
            self.table
                .add_binding(slot, &channel, &cid, tag, &mut self.out);
            let signer = if tag == 0 { None } else { user.as_ref() };
            let receipt = self.issue(id, signer, channel.clone(), cid.clone(), now);
            self.out.push_back(Output::AddReceipts {
                conn,
                receipts: alloc::vec![receipt],
            });
            granted += 1;
        }
        let topic = channel.topic();
        for cid in [Some(cid), None] {
            self.tombstones.purge(
                StoneKey {
                    identity: identity.clone(),
                    topic: topic.clone(),
                    cid,
                },
                now,
            );
        }
        self.arm_sweep(now);
        Ok(granted)
    }

    /// Removes `(channel, cid)` from every live instance `identity` names and
    /// tombstones it at that level, so it stays removed across reconnects.
    pub fn unsubscribe(
        &mut self,
        now: Millis,
        identity: &Identity,
        channel: impl IntoChannel,
        cid: Cid,
    ) -> Result<(), RouterError> {
        let channel = channel.into_channel()?;
        for slot in self.table.resolve(identity) {
            self.table
                .remove_binding(slot, &channel, &cid, &mut self.out);
            let conn = self.table.instance(slot).conn;
            self.out.push_back(Output::DropReceipts {
                conn,
                keys: alloc::vec![BindingKey {
                    channel: channel.clone(),
                    cid: cid.clone(),
                }],
            });
            self.presence_after_unbind(slot, &channel);
        }
        self.tombstone(now, identity.clone(), &channel, Some(cid));
        self.arm_sweep(now);
        Ok(())
    }

    /// Removes every cid's binding on `channel` from every live instance
    /// `identity` names, with a channel-wide tombstone at that level.
    pub fn unsubscribe_all(
        &mut self,
        now: Millis,
        identity: &Identity,
        channel: impl IntoChannel,
    ) -> Result<(), RouterError> {
        let channel = channel.into_channel()?;
        self.tombstone(now, identity.clone(), &channel, None);
        for slot in self.table.resolve(identity) {
            let cids = self.table.remove_channel(slot, &channel, &mut self.out);
            if !cids.is_empty() {
                let conn = self.table.instance(slot).conn;
                let keys = cids
                    .into_iter()
                    .map(|cid| BindingKey {
                        channel: channel.clone(),
                        cid,
                    })
                    .collect();
                self.out.push_back(Output::DropReceipts { conn, keys });
            }
            self.presence_after_unbind(slot, &channel);
        }
        self.arm_sweep(now);
        Ok(())
    }

    // -- queries ------------------------------------------------------------

    /// The live stream of an instance.
    pub fn connection(&self, instance: &InstanceId) -> Option<ConnId> {
        self.table
            .slot_of(instance)
            .map(|s| self.table.instance(s).conn)
    }

    /// The peer of a live stream.
    pub fn peer(&self, conn: ConnId) -> Option<Peer> {
        let inst = self.table.instance(self.table.slot_of_conn(conn)?);
        Some(Peer {
            instance: inst.id,
            session: inst.session,
            user: inst.user.clone(),
        })
    }

    /// An attached instance's bindings, sorted, each with whether a user
    /// authorized it (`false`: anonymous, survives login and logout).
    pub fn bindings(&self, instance: &InstanceId) -> Option<Vec<(BindingKey, bool)>> {
        let slot = self.table.slot_of(instance)?;
        Some(
            self.table
                .bindings(slot)
                .into_iter()
                .map(|(channel, cid, epoch)| (BindingKey { channel, cid }, epoch != 0))
                .collect(),
        )
    }

    /// What the router holds.
    pub fn stats(&self) -> RouterStats {
        RouterStats {
            instances: self.table.instance_count(),
            channels: self.table.channel_count(),
            tombstones: self.tombstones.len(),
            pending_handshakes: self.handshakes.len(),
            parked: self.parked_total,
        }
    }
}
