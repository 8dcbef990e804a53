//! Drives a real [`Router`] and the reference [`Model`] side by side over a
//! sequence of [`Op`]s and panics, naming the op and both outputs, on the
//! first difference.
//!
//! The two sides never share connection numbers or hash orders, so every
//! output is normalized: router `ConnId`s go through a bijection built at
//! each successful attach, receipt tokens are decoded with
//! `Router::verify_receipt` and compared by content, presence `phx_ref`s
//! (random on the router's side) go through a bijection onto the model's
//! sequential meta numbers built in first-seen order (so a `phx_ref_prev`
//! must name the ref the model says it replaced), `Fanout`s keep their
//! relative order (recipients as a set), the parked-command releases of an
//! attach or park keep theirs (R2: park order), and every other output is
//! compared as a sorted multiset — `PresenceDiff` included, its recipients
//! as a sorted set: the router lists them in its subscriber-list order,
//! which no rule fixes. After every op the instances' bindings,
//! connections, peers, the router's counts and every pool channel's
//! `presence_state` are compared too.

use std::collections::BTreeMap;
use std::fmt::{Debug, Write as _};

use arbitrary::{Arbitrary, Unstructured};
use tidings_core::presence::Presences;
use tidings_core::router::{
    BindingKey, Committed, ConnId, Effects, HandlerKind, HandshakeReply, IssuedReceipt, Millis,
    Output, Router, RouterConfig,
};
use tidings_core::{
    Channel, Cid, Identity, InstanceId, Payload, Peer, SeededEntropy, SessionId, Topic, UserId,
};

use super::{MCommitted, MEffects, MKind, MMeta, MOut, MPresences, MReceipt, MToken, Model};

const SECOND: Millis = 1000;
const HOUR: Millis = 3600 * SECOND;

/// The channel pool (text form).
pub(crate) const CHANNELS: [&str; 5] = [
    "{:room, 1}",
    "{:room, \"1\"}",
    ":news",
    "{:user, 1}",
    "{:doc, :a, 2}",
];
/// The cid pool.
pub(crate) const CIDS: [&str; 4] = ["page", "layout", "c1", "c2"];
/// Action names: the last is invalid (empty).
const ACTIONS: [&str; 4] = ["hello", "bye", "tick", ""];
/// Presence keys (R15).
pub(crate) const KEYS: [&str; 2] = ["alice", "bob"];
/// Presence payloads (R15): few, so identical re-tracks happen.
pub(crate) const PAYLOADS: [&str; 3] = ["{}", "{\"s\":1}", "{\"s\":2}"];

// -- ops --------------------------------------------------------------------------

/// Which peer: `inst` picks one of 8 instances (see `Pools::any`); with
/// `current` and the instance attached, its identity now; else its home
/// session (`inst % 2`) unless `sess % 4 == 3` picks any of 3 sessions, and
/// `user` picks one of `None`, `Int(1)`, `Str("1")`, `Int(2)`.
#[derive(Debug, Clone, Arbitrary)]
pub(crate) struct PeerSel {
    pub(crate) inst: u8,
    pub(crate) sess: u8,
    pub(crate) user: u8,
    pub(crate) current: bool,
}

/// An identity level: instance (of 8, see `Pools::any`), session (of 3),
/// user (`Int(1)`, `Str("1")`, `Int(2)`).
#[derive(Debug, Clone, Arbitrary)]
pub(crate) enum IdSel {
    Instance(u8),
    Session(u8),
    User(u8),
}

/// Who opens a socket (R14): `inst % 4 != 3` one of the 4 socket instances,
/// else one of the 4 page instances; with `current` and the instance
/// attached, its session now (R14's `InstanceInUse`); else `sess % 4` picks
/// one of the 3 sessions or (3) a session of sockets only; `user` as in
/// [`PeerSel`].
#[derive(Debug, Clone, Arbitrary)]
pub(crate) struct SocketSel {
    pub(crate) inst: u8,
    pub(crate) sess: u8,
    pub(crate) user: u8,
    pub(crate) current: bool,
}

/// A token a handshake presents.
#[derive(Debug, Clone, Arbitrary)]
pub(crate) enum TokenSrc {
    /// One of the tokens ever issued for the handshaking instance.
    Own(u16),
    /// One of the 4 latest tokens issued for the handshaking instance (a
    /// client that missed a `DropReceipts`).
    Latest(u8),
    /// Any token ever issued.
    Any(u16),
    /// A token issued to another instance.
    Foreign(u16),
    /// Not a token at all.
    Garbage(u8),
    /// An issued token with one character changed.
    Tampered(u16),
}

/// How an `Attach` differs from the handshake it redeems.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub(crate) enum Tweak {
    Same,
    OtherInstance,
    OtherSession,
    OtherUser,
    /// A handshake id that was never issued.
    UnknownId,
}

/// One thing a handler does to its effects.
#[derive(Debug, Clone, Arbitrary)]
pub(crate) enum FxOp {
    Put(u8),
    Delete(u8),
    Broadcast {
        chan: u8,
        action: u8,
        #[arbitrary(with = up_to_3)]
        except: Vec<IdSel>,
    },
    SetUser(u8),
    SetSession(u8),
}

/// One page component's `init`.
#[derive(Debug, Clone, Arbitrary)]
pub(crate) struct Component {
    pub(crate) cid: u8,
    #[arbitrary(with = up_to_6)]
    pub(crate) fx: Vec<FxOp>,
}

/// A time step (see [`Step::millis`]).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub(crate) struct Step {
    pub(crate) kind: u8,
    pub(crate) x: u16,
}

impl Step {
    /// 0 ms .. 80 h, with the rules' boundaries (park 5 s, handshake 60 s,
    /// refresh 12 h, receipt age and tombstone TTL 72 h) hit exactly and ±1.
    pub(crate) fn millis(self) -> Millis {
        let x = Millis::from(self.x);
        match self.kind % 12 {
            0 => 0,
            1 => 1,
            2 => x % 2000,
            3 => 5 * SECOND - 1 + x % 3,
            4 => 60 * SECOND - 1 + x % 3,
            5 => 12 * HOUR - 1 + x % 3,
            6 => 72 * HOUR - 1 + x % 3,
            7 => x * SECOND,
            8 => (x % 81) * HOUR,
            9 => x % 60_000,
            _ => x % 100,
        }
    }
}

/// What happens to a command transaction once the handler has run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Then {
    /// Commit at once.
    Commit,
    /// Keep it pending for a later `Op::Commit`.
    Keep,
    /// Detach the instance's stream, then commit (R5 without an instance).
    DetachAndCommit,
}

/// One input to both sides.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Handshake, then attach with the same peer at once.
    Connect {
        peer: PeerSel,
        /// Also present the client's current receipt store.
        store: bool,
        tokens: Vec<TokenSrc>,
    },
    /// Handshake only; the id is kept for `Attach`.
    Handshake {
        peer: PeerSel,
        store: bool,
        tokens: Vec<TokenSrc>,
    },
    /// Redeem an issued handshake id (maybe already redeemed).
    Attach {
        hs: u8,
        tweak: Tweak,
    },
    /// Detach the instance's latest stream, or (`stale % 4 == 0`) an older one.
    Detach {
        inst: u8,
        stale: u8,
    },
    /// `command` + effects, then `then`.
    Command {
        /// Half the time an attached instance (see `live_instance`).
        inst: u8,
        /// `None`: the instance's current (or home) session.
        sess: Option<u8>,
        target: u8,
        fx: Vec<FxOp>,
        then: Then,
    },
    /// Commit a pending command transaction.
    Commit {
        slot: u8,
    },
    /// A page render: 1–3 components against claimed keys.
    CommitPage {
        peer: PeerSel,
        comps: Vec<Component>,
        /// `(channel, cid)` claims.
        claimed: Vec<(u8, u8)>,
        /// Also claim the client's current receipt store.
        claim_store: bool,
    },
    /// Commit effects of the wrong kind / instance.
    WrongEffects {
        inst: u8,
        page: bool,
    },
    Park {
        inst: u8,
    },
    Broadcast {
        chan: u8,
        action: u8,
        except: Vec<IdSel>,
    },
    Subscribe {
        who: IdSel,
        chan: u8,
        cid: u8,
    },
    Unsubscribe {
        who: IdSel,
        chan: u8,
        cid: u8,
    },
    UnsubscribeAll {
        who: IdSel,
        chan: u8,
    },
    /// Move the clock; with `timeout`, then `handle_timeout`.
    Advance {
        step: Step,
        timeout: bool,
    },
    /// `handle_timeout` at the current time.
    Timeout,
    /// R14: `connect`.
    Socket {
        who: SocketSel,
    },
    /// R14: `join` on a stream (see `Harness::pick_conn`) of a pool channel.
    Join {
        conn: u8,
        chan: u8,
        cid: u8,
    },
    /// R14: `leave`, mostly of a binding the stream holds (see
    /// `Harness::pick_binding`).
    Leave {
        conn: u8,
        chan: u8,
        cid: u8,
    },
    /// R15: `track` one of [`KEYS`] with one of [`PAYLOADS`], mostly on a
    /// channel the stream is bound to.
    Track {
        conn: u8,
        chan: u8,
        key: u8,
        payload: u8,
    },
    /// R15: `untrack`.
    Untrack {
        conn: u8,
        chan: u8,
    },
}

fn up_to<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>, max: usize) -> arbitrary::Result<Vec<T>> {
    let len = u.int_in_range(0..=max)?;
    (0..len).map(|_| T::arbitrary(u)).collect()
}

fn up_to_3<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> arbitrary::Result<Vec<T>> {
    up_to(u, 3)
}

fn up_to_6<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> arbitrary::Result<Vec<T>> {
    up_to(u, 6)
}

impl<'a> Arbitrary<'a> for Op {
    /// Weighted so that connections and commands dominate; sockets and
    /// presence take a fifth.
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=124)? {
            0..=15 => Op::Connect {
                peer: u.arbitrary()?,
                store: u.ratio(3, 4)?,
                tokens: up_to(u, 4)?,
            },
            16..=20 => Op::Handshake {
                peer: u.arbitrary()?,
                store: u.arbitrary()?,
                tokens: up_to(u, 6)?,
            },
            21..=26 => Op::Attach {
                hs: u.arbitrary()?,
                tweak: if u.ratio(1, 2)? {
                    Tweak::Same
                } else {
                    u.arbitrary()?
                },
            },
            27..=31 => Op::Detach {
                inst: u.arbitrary()?,
                stale: u.arbitrary()?,
            },
            32..=51 => Op::Command {
                inst: u.arbitrary()?,
                sess: if u.ratio(7, 8)? {
                    None
                } else {
                    Some(u.arbitrary()?)
                },
                target: u.arbitrary()?,
                fx: up_to(u, 5)?,
                then: match u.int_in_range(0u8..=19)? {
                    0..=11 => Then::Commit,
                    12..=16 => Then::Keep,
                    _ => Then::DetachAndCommit,
                },
            },
            52..=56 => Op::Commit {
                slot: u.arbitrary()?,
            },
            57..=65 => Op::CommitPage {
                peer: u.arbitrary()?,
                comps: {
                    let n = u.int_in_range(1..=3)?;
                    (0..n)
                        .map(|_| u.arbitrary())
                        .collect::<arbitrary::Result<_>>()?
                },
                claimed: up_to(u, 3)?,
                claim_store: u.arbitrary()?,
            },
            66 => Op::WrongEffects {
                inst: u.arbitrary()?,
                page: u.arbitrary()?,
            },
            67..=71 => Op::Park {
                inst: u.arbitrary()?,
            },
            72..=77 => Op::Broadcast {
                chan: u.arbitrary()?,
                action: u.arbitrary()?,
                except: up_to(u, 3)?,
            },
            78..=83 => Op::Subscribe {
                who: u.arbitrary()?,
                chan: u.arbitrary()?,
                cid: u.arbitrary()?,
            },
            84..=87 => Op::Unsubscribe {
                who: u.arbitrary()?,
                chan: u.arbitrary()?,
                cid: u.arbitrary()?,
            },
            88..=90 => Op::UnsubscribeAll {
                who: u.arbitrary()?,
                chan: u.arbitrary()?,
            },
            91..=98 => Op::Advance {
                step: u.arbitrary()?,
                timeout: u.ratio(3, 4)?,
            },
            99 => Op::Timeout,
            n => socket_op(u, n)?,
        })
    }
}

/// The socket and presence ops: `n` is 100..=124 from [`Op::arbitrary`].
fn socket_op(u: &mut Unstructured<'_>, n: u8) -> arbitrary::Result<Op> {
    Ok(match n {
        100..=105 => Op::Socket {
            who: u.arbitrary()?,
        },
        106..=111 => Op::Join {
            conn: u.arbitrary()?,
            chan: u.arbitrary()?,
            cid: u.arbitrary()?,
        },
        112..=114 => Op::Leave {
            conn: u.arbitrary()?,
            chan: u.arbitrary()?,
            cid: u.arbitrary()?,
        },
        115..=121 => Op::Track {
            conn: u.arbitrary()?,
            chan: u.arbitrary()?,
            key: u.arbitrary()?,
            payload: u.arbitrary()?,
        },
        _ => Op::Untrack {
            conn: u.arbitrary()?,
            chan: u.arbitrary()?,
        },
    })
}

/// A proptest strategy for one op: random bytes through [`Arbitrary`], so
/// proptest shrinks whole ops away and each op towards its first variant.
/// (Test builds only: the fuzz target reuses this file without proptest.)
#[cfg(test)]
pub(crate) fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::strategy::Strategy as _;
    proptest::collection::vec(proptest::num::u8::ANY, 0..40)
        .prop_map(|bytes| Op::arbitrary(&mut Unstructured::new(&bytes)).unwrap_or(Op::Timeout))
}

/// A proptest strategy for up to `max` ops.
#[cfg(test)]
pub(crate) fn ops_strategy(max: usize) -> impl proptest::strategy::Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_strategy(), 0..=max)
}

// -- coverage ---------------------------------------------------------------------

/// How often each call outcome and output kind occurred.
#[derive(Debug, Default, Clone)]
pub(crate) struct Coverage {
    pub(crate) counts: BTreeMap<String, usize>,
}

impl Coverage {
    fn hit(&mut self, what: impl Into<String>) {
        *self.counts.entry(what.into()).or_default() += 1;
    }

    fn outcome<T, E: Debug>(&mut self, call: &str, r: &Result<T, E>) {
        match r {
            Ok(_) => self.hit(format!("{call}: Ok")),
            Err(e) => {
                let name = format!("{e:?}");
                let name = name.split(['(', ' ', '{']).next().unwrap_or_default();
                self.hit(format!("{call}: Err {name}"));
            }
        }
    }

    /// How often `what` occurred.
    pub(crate) fn get(&self, what: &str) -> usize {
        self.counts.get(what).copied().unwrap_or(0)
    }

    pub(crate) fn merge(&mut self, other: &Coverage) {
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_default() += v;
        }
    }
}

// -- normalized values --------------------------------------------------------------

/// A receipt by content, or why the router's token could not be read.
type NReceipt = Result<MReceipt, String>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Norm {
    Fanout {
        channel: Channel,
        action: String,
        params: Vec<u8>,
        /// Sorted by connection.
        recipients: Vec<(u64, Vec<Cid>)>,
    },
    AddReceipts {
        conn: u64,
        receipts: Vec<NReceipt>,
    },
    DropReceipts {
        conn: u64,
        keys: Vec<BindingKey>,
    },
    RefreshReceipts {
        conn: u64,
        receipts: Vec<NReceipt>,
    },
    IdentityChanged {
        conn: u64,
        session: SessionId,
        user: Option<UserId>,
    },
    Close {
        conn: u64,
    },
    ChannelUp(Topic),
    ChannelDown(Topic),
    CommandReady(u64),
    CommandExpired(u64),
    PresenceDiff {
        channel: Channel,
        joins: MPresences,
        leaves: MPresences,
        /// Sorted by connection.
        recipients: Vec<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NReply {
    receipts: Vec<NReceipt>,
    rejected: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NCommitted {
    /// `(action, params, cid)` in order.
    self_echoes: Vec<(String, Vec<u8>, Cid)>,
    receipt_adds: Vec<NReceipt>,
    receipt_drops: Vec<BindingKey>,
    session: SessionId,
    user: Option<UserId>,
}

impl From<MCommitted> for NCommitted {
    fn from(c: MCommitted) -> Self {
        NCommitted {
            self_echoes: c
                .self_echoes
                .into_iter()
                .map(|e| {
                    (
                        e.action.as_str().to_owned(),
                        e.params.as_bytes().to_vec(),
                        e.cid,
                    )
                })
                .collect(),
            receipt_adds: c.receipt_adds.into_iter().map(Ok).collect(),
            receipt_drops: c.receipt_drops,
            session: c.session,
            user: c.user,
        }
    }
}

/// What a handler sees of its effects.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FxView {
    command: bool,
    instance: InstanceId,
    session: SessionId,
    user: Option<UserId>,
    cid: Cid,
    /// Sorted: the rules do not fix the order.
    subscriptions: Vec<Channel>,
    broadcasts: usize,
}

fn view(fx: &Effects) -> FxView {
    let mut subscriptions = fx.subscriptions().to_vec();
    subscriptions.sort();
    FxView {
        command: fx.kind() == HandlerKind::Command,
        instance: fx.instance_id(),
        session: fx.session_id(),
        user: fx.user_id().cloned(),
        cid: fx.cid().clone(),
        subscriptions,
        broadcasts: fx.broadcasts().len(),
    }
}

fn mview(fx: &MEffects) -> FxView {
    let mut subscriptions = fx.subscriptions.clone();
    subscriptions.sort();
    FxView {
        command: fx.kind == MKind::Command,
        instance: fx.instance,
        session: fx.session_id(),
        user: fx.user_id().cloned(),
        cid: fx.cid.clone(),
        subscriptions,
        broadcasts: fx.broadcasts.len(),
    }
}

/// Splits outputs into the ordered part (fanouts; with `commands`, also
/// parked-command releases) and the rest, sorted.
fn canonical(mut outs: Vec<Norm>, commands: bool) -> (Vec<Norm>, Vec<Norm>) {
    for o in &mut outs {
        match o {
            Norm::Fanout { recipients, .. } => recipients.sort(),
            Norm::PresenceDiff { recipients, .. } => recipients.sort_unstable(),
            _ => {}
        }
    }
    let (ordered, mut rest): (Vec<Norm>, Vec<Norm>) = outs.into_iter().partition(|o| {
        matches!(o, Norm::Fanout { .. })
            || (commands && matches!(o, Norm::CommandReady(_) | Norm::CommandExpired(_)))
    });
    rest.sort();
    (ordered, rest)
}

// -- the harness --------------------------------------------------------------------

/// The fixed identities and values ops pick from.
struct Pools {
    /// Page instances (`Connect`, `Park`, ...).
    instances: [InstanceId; 4],
    /// Socket instances (`Socket`).
    sockets: [InstanceId; 4],
    sessions: [SessionId; 3],
    /// A session only sockets open in.
    socket_session: SessionId,
    users: [Option<UserId>; 4],
    channels: Vec<Channel>,
    cids: Vec<Cid>,
}

impl Pools {
    fn new() -> Self {
        let mut e = SeededEntropy::new(0x7715);
        let instances = core::array::from_fn(|_| InstanceId::mint(&mut e));
        let sessions = core::array::from_fn(|_| SessionId::mint(&mut e));
        let sockets = core::array::from_fn(|_| InstanceId::mint(&mut e));
        Self {
            instances,
            sockets,
            sessions,
            socket_session: SessionId::mint(&mut e),
            users: [
                None,
                Some(UserId::int(1)),
                Some(UserId::str("1")),
                Some(UserId::int(2)),
            ],
            channels: CHANNELS
                .iter()
                .map(|c| Channel::parse(c).expect("pool channel"))
                .collect(),
            cids: CIDS
                .iter()
                .map(|c| Cid::new(c).expect("pool cid"))
                .collect(),
        }
    }

    fn instance(&self, i: u8) -> InstanceId {
        self.instances[usize::from(i) % 4]
    }

    /// A page instance, or a socket instance for a quarter of the values
    /// (`i % 16 >= 12`; never for 0–11, which hand-written sequences use).
    fn any(&self, i: u8) -> InstanceId {
        if i % 16 >= 12 {
            self.sockets[usize::from(i) % 4]
        } else {
            self.instance(i)
        }
    }

    /// Page instances, then socket instances.
    fn all_instances(&self) -> impl Iterator<Item = InstanceId> + '_ {
        self.instances.iter().chain(&self.sockets).copied()
    }

    fn session(&self, s: u8) -> SessionId {
        self.sessions[usize::from(s) % 3]
    }

    fn user(&self, u: u8) -> Option<UserId> {
        self.users[usize::from(u) % 4].clone()
    }

    fn channel(&self, c: u8) -> Channel {
        self.channels[usize::from(c) % self.channels.len()].clone()
    }

    fn cid(&self, c: u8) -> Cid {
        self.cids[usize::from(c) % self.cids.len()].clone()
    }

    fn identity(&self, who: &IdSel) -> Identity {
        match who {
            IdSel::Instance(i) => Identity::Instance(self.any(*i)),
            IdSel::Session(s) => Identity::Session(self.session(*s)),
            IdSel::User(u) => Identity::User(self.user(u % 3 + 1).expect("a user")),
        }
    }
}

struct IssuedHs {
    reply: HandshakeReply,
    peer: Peer,
    model_id: String,
}

struct ConnPair {
    router: ConnId,
    model: u64,
    instance: InstanceId,
}

/// A token the router issued, with its content.
type Issued = (String, MReceipt);

/// A client's receipt store: what it would present at its next handshake.
type Store = Vec<(BindingKey, String, MReceipt)>;

struct Harness<'o> {
    ops: &'o [Op],
    at: usize,
    cfg: RouterConfig,
    pools: Pools,
    router: Router,
    model: Model,
    entropy: SeededEntropy,
    now: Millis,
    conns: Vec<ConnPair>,
    handshakes: Vec<IssuedHs>,
    /// Every token the router issued, with its content.
    tokens: Vec<Issued>,
    stores: Vec<(InstanceId, Store)>,
    pending: Vec<(Effects, MEffects)>,
    next_ticket: u64,
    /// Every router `phx_ref` seen, in first-seen order: the n-th is the
    /// model's meta number n + 1.
    refs: Vec<String>,
    cov: Coverage,
}

/// Runs `ops` against a router and the model, under the default limits and
/// then under tight ones; panics on the first difference.
pub(crate) fn run(ops: &[Op]) -> Coverage {
    let mut cov = run_with(&RouterConfig::default(), ops);
    cov.merge(&run_with(&tight_config(), ops));
    cov
}

/// Default timings, limits small enough for the ops to reach.
pub(crate) fn tight_config() -> RouterConfig {
    RouterConfig {
        max_bindings_per_instance: 3,
        max_receipts_per_handshake: 4,
        max_pending_handshakes: 3,
        max_parked_per_instance: 2,
        max_parked_total: 3,
        max_instances_per_session: 2,
        ..RouterConfig::default()
    }
}

/// Runs `ops` under `cfg`; panics on the first difference.
pub(crate) fn run_with(cfg: &RouterConfig, ops: &[Op]) -> Coverage {
    let mut h = Harness {
        ops,
        at: 0,
        cfg: cfg.clone(),
        pools: Pools::new(),
        router: Router::new(b"model secret", cfg.clone()),
        model: Model::new(cfg.clone()),
        entropy: SeededEntropy::new(99),
        now: 1_000,
        conns: Vec::new(),
        handshakes: Vec::new(),
        tokens: Vec::new(),
        stores: Vec::new(),
        pending: Vec::new(),
        next_ticket: 1,
        refs: Vec::new(),
        cov: Coverage::default(),
    };
    for (at, op) in ops.iter().enumerate() {
        h.at = at;
        h.step(op);
        h.check_state();
    }
    h.cov
}

impl Harness<'_> {
    #[track_caller]
    fn fail(&self, what: &str, router: &dyn Debug, model: &dyn Debug) -> ! {
        let mut bindings = String::new();
        for i in self.pools.instances {
            let _ = write!(bindings, "\n    {i}: {:?}", self.model.authorizations(i));
        }
        panic!(
            "router and model differ at op #{at}: {op:?}\n  in: {what}\n  router: {router:#?}\n  model:  {model:#?}\n  \
             now: {now}, config: {cfg:?}\n  model bindings (who authorized each) at this point:{bindings}",
            at = self.at,
            op = self.ops[self.at],
            now = self.now,
            cfg = self.cfg,
        )
    }

    #[track_caller]
    fn same<T: PartialEq + Debug>(&self, what: &str, router: &T, model: &T) {
        if router != model {
            self.fail(what, router, model);
        }
    }

    /// [`Harness::same`], naming what only on a difference (formatting
    /// on every check costs a tenth of the run).
    #[track_caller]
    fn same_for<T: PartialEq + Debug>(&self, what: impl FnOnce() -> String, router: &T, model: &T) {
        if router != model {
            self.fail(&what(), router, model);
        }
    }

    // -- normalization ----------------------------------------------------------

    fn model_conn(&self, conn: ConnId) -> u64 {
        match self.conns.iter().find(|p| p.router == conn) {
            Some(p) => p.model,
            None => self.fail("router output names a ConnId never attached", &conn, &"-"),
        }
    }

    fn norm_receipt(&self, r: &IssuedReceipt) -> NReceipt {
        match self.router.verify_receipt(&r.token, self.now) {
            Ok(c) if c.channel == r.channel && c.cid == r.cid => Ok(MReceipt {
                instance: c.instance,
                user: c.user,
                channel: c.channel,
                cid: c.cid,
                created_at: c.created_at,
            }),
            Ok(c) => Err(format!(
                "labelled {} {} but the token says {c:?}",
                r.channel, r.cid
            )),
            Err(e) => Err(format!(
                "token for {} {} does not verify: {e}",
                r.channel, r.cid
            )),
        }
    }

    fn norm_output(&self, o: &Output) -> Norm {
        match o {
            Output::Fanout {
                broadcast,
                recipients,
            } => Norm::Fanout {
                channel: broadcast.channel.clone(),
                action: broadcast.action.as_str().to_owned(),
                params: broadcast.params.as_bytes().to_vec(),
                recipients: recipients
                    .iter()
                    .map(|r| (self.model_conn(r.conn), r.cids.as_slice().to_vec()))
                    .collect(),
            },
            Output::AddReceipts { conn, receipts } => Norm::AddReceipts {
                conn: self.model_conn(*conn),
                receipts: receipts.iter().map(|r| self.norm_receipt(r)).collect(),
            },
            Output::DropReceipts { conn, keys } => Norm::DropReceipts {
                conn: self.model_conn(*conn),
                keys: keys.clone(),
            },
            Output::RefreshReceipts { conn, receipts } => Norm::RefreshReceipts {
                conn: self.model_conn(*conn),
                receipts: receipts.iter().map(|r| self.norm_receipt(r)).collect(),
            },
            Output::IdentityChanged {
                conn,
                session,
                user,
            } => Norm::IdentityChanged {
                conn: self.model_conn(*conn),
                session: *session,
                user: user.clone(),
            },
            Output::Close { conn, .. } => Norm::Close {
                conn: self.model_conn(*conn),
            },
            Output::ChannelUp(t) => Norm::ChannelUp(t.clone()),
            Output::ChannelDown(t) => Norm::ChannelDown(t.clone()),
            Output::CommandReady { ticket } => Norm::CommandReady(*ticket),
            Output::CommandExpired { ticket } => Norm::CommandExpired(*ticket),
            Output::PresenceDiff {
                channel,
                diff,
                recipients,
            } => Norm::PresenceDiff {
                channel: channel.clone(),
                joins: self.norm_presences(&diff.joins),
                leaves: self.norm_presences(&diff.leaves),
                recipients: recipients.iter().map(|c| self.model_conn(*c)).collect(),
            },
        }
    }

    /// Records the router's `phx_ref`s not seen before, in order.
    fn learn_refs(&mut self, presences: &Presences) {
        for m in presences.values().flatten() {
            if !self.refs.contains(&m.phx_ref) {
                self.refs.push(m.phx_ref.clone());
            }
        }
    }

    /// The model's number for a router `phx_ref` already seen.
    fn norm_ref(&self, phx_ref: &str) -> u64 {
        match self.refs.iter().position(|r| r == phx_ref) {
            Some(n) => n as u64 + 1,
            None => self.fail(
                "router names a phx_ref it never announced in a join",
                &phx_ref,
                &"-",
            ),
        }
    }

    fn norm_presences(&self, presences: &Presences) -> MPresences {
        presences
            .iter()
            .map(|(key, metas)| {
                let metas = metas
                    .iter()
                    .map(|m| MMeta {
                        phx_ref: self.norm_ref(&m.phx_ref),
                        phx_ref_prev: m.phx_ref_prev.as_deref().map(|r| self.norm_ref(r)),
                        payload: m.payload.as_bytes().to_vec(),
                    })
                    .collect();
                (key.clone(), metas)
            })
            .collect()
    }

    fn norm_mout(o: MOut) -> Norm {
        match o {
            MOut::Fanout {
                channel,
                action,
                params,
                recipients,
            } => Norm::Fanout {
                channel,
                action: action.as_str().to_owned(),
                params: params.as_bytes().to_vec(),
                recipients,
            },
            MOut::AddReceipts { conn, receipts } => Norm::AddReceipts {
                conn,
                receipts: receipts.into_iter().map(Ok).collect(),
            },
            MOut::DropReceipts { conn, keys } => Norm::DropReceipts { conn, keys },
            MOut::RefreshReceipts { conn, receipts } => Norm::RefreshReceipts {
                conn,
                receipts: receipts.into_iter().map(Ok).collect(),
            },
            MOut::IdentityChanged {
                conn,
                session,
                user,
            } => Norm::IdentityChanged {
                conn,
                session,
                user,
            },
            MOut::Close { conn } => Norm::Close { conn },
            MOut::ChannelUp(c) => Norm::ChannelUp(c.topic()),
            MOut::ChannelDown(c) => Norm::ChannelDown(c.topic()),
            MOut::CommandReady(t) => Norm::CommandReady(t),
            MOut::CommandExpired(t) => Norm::CommandExpired(t),
            MOut::PresenceDiff {
                channel,
                joins,
                leaves,
                recipients,
            } => Norm::PresenceDiff {
                channel,
                joins,
                leaves,
                recipients,
            },
        }
    }

    fn norm_committed(&self, c: &Committed) -> NCommitted {
        NCommitted {
            self_echoes: c
                .self_echoes
                .iter()
                .map(|e| {
                    (
                        e.action.as_str().to_owned(),
                        e.params.as_bytes().to_vec(),
                        e.cid.clone(),
                    )
                })
                .collect(),
            receipt_adds: c
                .receipt_adds
                .iter()
                .map(|r| self.norm_receipt(r))
                .collect(),
            receipt_drops: c.receipt_drops.clone(),
            session: c.session,
            user: c.user.clone(),
        }
    }

    /// Drains both sides' outputs and compares them; then lets the clients
    /// absorb the router's receipt pushes.
    fn drain(&mut self, what: &str, commands_in_order: bool) {
        let raw: Vec<Output> = std::iter::from_fn(|| self.router.poll_output()).collect();
        for o in &raw {
            if let Output::PresenceDiff { diff, .. } = o {
                self.learn_refs(&diff.joins);
            }
        }
        let router: Vec<Norm> = raw.iter().map(|o| self.norm_output(o)).collect();
        let model: Vec<Norm> = self
            .model
            .take_outputs()
            .into_iter()
            .map(Self::norm_mout)
            .collect();
        for note in self.model.take_notes() {
            self.cov.hit(note);
        }
        for o in &router {
            let name = format!("{o:?}");
            let name = name.split(['(', ' ', '{']).next().unwrap_or_default();
            self.cov.hit(format!("output {name}"));
        }
        let (r, m) = (
            canonical(router, commands_in_order),
            canonical(model, commands_in_order),
        );
        if r != m {
            self.fail(&format!("outputs of {what}"), &r, &m);
        }
        for o in &raw {
            self.absorb(o);
        }
    }

    // -- clients' receipt stores ----------------------------------------------

    fn store_mut(&mut self, instance: InstanceId) -> &mut Store {
        let at = if let Some(at) = self.stores.iter().position(|(i, _)| *i == instance) {
            at
        } else {
            self.stores.push((instance, Vec::new()));
            self.stores.len() - 1
        };
        &mut self.stores[at].1
    }

    fn store(&self, instance: InstanceId) -> Store {
        self.stores
            .iter()
            .find(|(i, _)| *i == instance)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    /// Records issued receipts in the token pool and returns them with content.
    fn remember(&mut self, receipts: &[IssuedReceipt]) -> Vec<(BindingKey, String, MReceipt)> {
        let mut out = Vec::new();
        for r in receipts {
            let Ok(content) = self.norm_receipt(r) else {
                continue;
            };
            self.tokens.push((r.token.clone(), content.clone()));
            let key = BindingKey {
                channel: r.channel.clone(),
                cid: r.cid.clone(),
            };
            out.push((key, r.token.clone(), content));
        }
        out
    }

    fn store_add(&mut self, instance: InstanceId, receipts: &[IssuedReceipt]) {
        let new = self.remember(receipts);
        let store = self.store_mut(instance);
        for entry in new {
            store.retain(|(k, _, _)| *k != entry.0);
            store.push(entry);
        }
    }

    fn store_replace(&mut self, instance: InstanceId, receipts: &[IssuedReceipt]) {
        let new = self.remember(receipts);
        *self.store_mut(instance) = new;
    }

    fn store_drop(&mut self, instance: InstanceId, keys: &[BindingKey]) {
        self.store_mut(instance)
            .retain(|(k, _, _)| !keys.contains(k));
    }

    fn absorb(&mut self, o: &Output) {
        let instance_of = |h: &Self, c: &ConnId| {
            h.conns
                .iter()
                .find(|p| p.router == *c)
                .map(|p| p.instance)
                .expect("known conn")
        };
        match o {
            Output::AddReceipts { conn, receipts } => {
                let i = instance_of(self, conn);
                self.store_add(i, receipts);
            }
            Output::RefreshReceipts { conn, receipts } => {
                let i = instance_of(self, conn);
                self.store_replace(i, receipts);
            }
            Output::DropReceipts { conn, keys } => {
                let i = instance_of(self, conn);
                self.store_drop(i, keys);
            }
            _ => {}
        }
    }

    // -- picking inputs -----------------------------------------------------------

    /// Page and socket instance `n` live in session `n % 2`.
    fn home_session(&self, instance: InstanceId) -> SessionId {
        let n = self
            .pools
            .instances
            .iter()
            .chain(&self.pools.sockets)
            .position(|i| *i == instance)
            .unwrap_or(0);
        self.pools.sessions[n % 2]
    }

    fn peer(&self, sel: &PeerSel) -> Peer {
        let instance = self.pools.any(sel.inst);
        if sel.current
            && let Some(peer) = self
                .model
                .connection(instance)
                .and_then(|c| self.model.peer(c))
        {
            return peer;
        }
        let session = if sel.sess % 4 == 3 {
            self.pools.session(sel.sess / 4)
        } else {
            self.home_session(instance)
        };
        Peer {
            instance,
            session,
            user: self.pools.user(sel.user),
        }
    }

    /// Half the time (`inst >= 128`) an attached instance, if there is one.
    fn live_instance(&self, inst: u8) -> InstanceId {
        let live: Vec<InstanceId> = self
            .pools
            .all_instances()
            .filter(|i| self.model.connection(*i).is_some())
            .collect();
        if inst >= 128 && !live.is_empty() {
            live[usize::from(inst) % live.len()]
        } else {
            self.pools.instance(inst)
        }
    }

    /// The instance's identity now, or its home session, anonymous.
    fn current_peer(&self, instance: InstanceId) -> Peer {
        self.model
            .connection(instance)
            .and_then(|c| self.model.peer(c))
            .unwrap_or_else(|| Peer {
                instance,
                session: self.home_session(instance),
                user: None,
            })
    }

    fn pick_tokens(
        &self,
        instance: InstanceId,
        srcs: &[TokenSrc],
        store: bool,
    ) -> Vec<(String, MToken)> {
        let mut picked: Vec<(String, MToken)> = Vec::new();
        if store {
            picked.extend(
                self.store(instance)
                    .into_iter()
                    .map(|(_, t, c)| (t, Some(c))),
            );
        }
        let (own, foreign): (Vec<&Issued>, Vec<&Issued>) = self
            .tokens
            .iter()
            .partition(|(_, c)| c.instance == instance);
        for src in srcs {
            match src {
                TokenSrc::Own(n) if !own.is_empty() => {
                    let (t, c) = own[usize::from(*n) % own.len()];
                    picked.push((t.clone(), Some(c.clone())));
                }
                TokenSrc::Latest(n) if !own.is_empty() => {
                    let back = usize::from(*n % 4).min(own.len() - 1);
                    let (t, c) = own[own.len() - 1 - back];
                    picked.push((t.clone(), Some(c.clone())));
                }
                TokenSrc::Foreign(n) if !foreign.is_empty() => {
                    let (t, c) = foreign[usize::from(*n) % foreign.len()];
                    picked.push((t.clone(), Some(c.clone())));
                }
                TokenSrc::Any(n) if !self.tokens.is_empty() => {
                    let (t, c) = &self.tokens[usize::from(*n) % self.tokens.len()];
                    picked.push((t.clone(), Some(c.clone())));
                }
                TokenSrc::Tampered(n) if !self.tokens.is_empty() => {
                    let (t, _) = &self.tokens[usize::from(*n) % self.tokens.len()];
                    let mut bytes = t.clone().into_bytes();
                    let mid = bytes.len() / 2;
                    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
                    picked.push((String::from_utf8(bytes).expect("ascii"), None));
                }
                TokenSrc::Garbage(g) => {
                    let junk = match g % 5 {
                        0 => String::new(),
                        1 => "garbage".to_owned(),
                        2 => "AAAA".repeat(20),
                        3 => "!!not base64!!".to_owned(),
                        _ => "x".repeat(40_000),
                    };
                    picked.push((junk, None));
                }
                _ => {}
            }
        }
        picked
    }

    // -- steps ----------------------------------------------------------------------

    fn step(&mut self, op: &Op) {
        match op {
            Op::Connect {
                peer,
                store,
                tokens,
            } => {
                let peer = self.peer(peer);
                if let Some(n) = self.handshake(&peer, tokens, *store) {
                    let (reply, model_id) = (
                        self.handshakes[n].reply.clone(),
                        self.handshakes[n].model_id.clone(),
                    );
                    self.attach(&reply, &model_id, &peer);
                }
            }
            Op::Handshake {
                peer,
                store,
                tokens,
            } => {
                let peer = self.peer(peer);
                self.handshake(&peer, tokens, *store);
            }
            Op::Attach { hs, tweak } => self.attach_op(*hs, *tweak),
            Op::Detach { inst, stale } => self.detach(*inst, *stale),
            Op::Command {
                inst,
                sess,
                target,
                fx,
                then,
            } => self.command(*inst, *sess, *target, fx, *then),
            Op::Commit { slot } => {
                if !self.pending.is_empty() {
                    let (r, m) = self.pending.remove(usize::from(*slot) % self.pending.len());
                    self.commit(r, &m);
                }
            }
            Op::CommitPage {
                peer,
                comps,
                claimed,
                claim_store,
            } => self.commit_page(peer, comps, claimed, *claim_store),
            Op::WrongEffects { inst, page } => self.wrong_effects(*inst, *page),
            Op::Park { inst } => self.park(*inst),
            Op::Broadcast {
                chan,
                action,
                except,
            } => self.broadcast(*chan, *action, except),
            Op::Subscribe { .. } | Op::Unsubscribe { .. } | Op::UnsubscribeAll { .. } => {
                self.immediate(op);
            }
            Op::Advance { step, timeout } => {
                self.now += step.millis();
                if *timeout {
                    self.timeout();
                }
            }
            Op::Timeout => self.timeout(),
            Op::Socket { who } => self.socket(who),
            Op::Join { conn, chan, cid } => self.join(*conn, *chan, *cid),
            Op::Leave { conn, chan, cid } => self.leave(*conn, *chan, *cid),
            Op::Track {
                conn,
                chan,
                key,
                payload,
            } => self.track(*conn, *chan, *key, *payload),
            Op::Untrack { conn, chan } => self.untrack(*conn, *chan),
        }
    }

    /// A stream for a socket op: 7 times in 8 a live one (if any), else
    /// any ever attached (maybe stale); `None` before the first attach.
    fn pick_conn(&self, sel: u8) -> Option<(ConnId, u64)> {
        let live: Vec<&ConnPair> = self
            .conns
            .iter()
            .filter(|p| self.model.peer(p.model).is_some())
            .collect();
        let pick = if sel % 8 != 7 && !live.is_empty() {
            live[usize::from(sel / 8) % live.len()]
        } else {
            self.conns
                .get(usize::from(sel / 8) % self.conns.len().max(1))?
        };
        Some((pick.router, pick.model))
    }

    /// For a socket op on stream `mc`: 3 times in 4 one of its bindings (if
    /// any), else pool channel `chan` with pool cid `cid`.
    fn pick_binding(&self, mc: u64, chan: u8, cid: u8) -> (Channel, Cid) {
        let bound = self
            .model
            .peer(mc)
            .and_then(|p| self.model.bindings(p.instance))
            .unwrap_or_default();
        if chan % 4 != 3 && !bound.is_empty() {
            let (k, _) = &bound[usize::from(chan / 4) % bound.len()];
            (k.channel.clone(), k.cid.clone())
        } else {
            (self.pools.channel(chan), self.pools.cid(cid))
        }
    }

    /// R14: `connect`.
    fn socket(&mut self, who: &SocketSel) {
        let instance = if who.inst % 4 == 3 {
            self.pools.instance(who.inst / 4)
        } else {
            self.pools.sockets[usize::from(who.inst / 4) % 4]
        };
        let current = self
            .model
            .connection(instance)
            .and_then(|c| self.model.peer(c))
            .filter(|_| who.current);
        let session = match current {
            Some(p) => p.session,
            None if who.sess % 4 == 3 => self.pools.socket_session,
            None => self.pools.session(who.sess),
        };
        let peer = Peer {
            instance,
            session,
            user: self.pools.user(who.user),
        };
        let r = self.router.connect(&peer);
        let m = self.model.connect(&peer);
        self.cov.outcome("connect (socket)", &r);
        self.same(
            "connect result",
            &r.as_ref().map(|_| ()),
            &m.as_ref().map(|_| ()),
        );
        if let (Ok(rc), Ok(mc)) = (r, m) {
            if self.conns.iter().any(|p| p.router == rc || p.model == mc) {
                self.fail("connect returned a used connection", &rc, &mc);
            }
            self.conns.push(ConnPair {
                router: rc,
                model: mc,
                instance,
            });
        }
        self.drain("connect", false);
    }

    /// R14: `join`.
    fn join(&mut self, conn: u8, chan: u8, cid: u8) {
        let Some((rc, mc)) = self.pick_conn(conn) else {
            return;
        };
        let (channel, cid) = (self.pools.channel(chan), self.pools.cid(cid));
        let r = self.router.join(rc, &channel, &cid);
        let m = self.model.join(mc, &channel, &cid);
        self.cov.outcome("join", &r);
        self.same("join result", &r, &m);
        self.drain("join", false);
    }

    /// R14, R15: `leave`.
    fn leave(&mut self, conn: u8, chan: u8, cid: u8) {
        let Some((rc, mc)) = self.pick_conn(conn) else {
            return;
        };
        let (channel, cid) = self.pick_binding(mc, chan, cid);
        let r = self.router.leave(rc, &channel, &cid);
        let m = self.model.leave(mc, &channel, &cid);
        self.cov.outcome("leave", &r);
        self.same("leave result", &r, &Ok(m));
        self.drain("leave", false);
    }

    /// R15: `track`.
    fn track(&mut self, conn: u8, chan: u8, key: u8, payload: u8) {
        let Some((rc, mc)) = self.pick_conn(conn) else {
            return;
        };
        let (channel, _) = self.pick_binding(mc, chan, 0);
        let key = KEYS[usize::from(key) % KEYS.len()];
        let payload = PAYLOADS[usize::from(payload) % PAYLOADS.len()].as_bytes();
        let r = self.router.track(
            rc,
            &channel,
            key,
            Payload::new(payload.to_vec()),
            &mut self.entropy,
        );
        let m = self.model.track(mc, &channel, key, payload);
        self.cov.outcome("track", &r);
        self.same("track result", &r, &m);
        self.drain("track", false);
    }

    /// R15: `untrack`.
    fn untrack(&mut self, conn: u8, chan: u8) {
        let Some((rc, mc)) = self.pick_conn(conn) else {
            return;
        };
        let (channel, _) = self.pick_binding(mc, chan, 0);
        let r = self.router.untrack(rc, &channel);
        self.model.untrack(mc, &channel);
        self.cov.outcome("untrack", &r);
        self.same("untrack result", &r, &Ok(()));
        self.drain("untrack", false);
    }

    /// R12.
    fn park(&mut self, inst: u8) {
        let instance = self.pools.instance(inst);
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let r = self.router.park(self.now, instance, ticket);
        let m = self.model.park(self.now, instance, ticket);
        self.cov.outcome("park", &r);
        self.same("park result", &r, &m);
        self.drain("park", true);
    }

    /// R7, immediate.
    fn broadcast(&mut self, chan: u8, action: u8, except: &[IdSel]) {
        let channel = self.pools.channel(chan);
        let action = ACTIONS[usize::from(action) % ACTIONS.len()];
        let params = Payload::new(&b"{\"n\":1}"[..]);
        let except: Vec<Identity> = except.iter().map(|w| self.pools.identity(w)).collect();
        let r = if except.is_empty() {
            self.router
                .broadcast_action(&channel, action, params.clone())
        } else {
            self.router
                .broadcast_action_except(&except, &channel, action, params.clone())
        };
        let m = self
            .model
            .broadcast_action_except(&except, &channel, action, params);
        self.cov.outcome("broadcast", &r);
        self.same("broadcast result", &r, &m);
        self.drain("broadcast", false);
    }

    /// R10.
    fn immediate(&mut self, op: &Op) {
        match op {
            Op::Subscribe { who, chan, cid } => {
                let (who, channel, cid) = (
                    self.pools.identity(who),
                    self.pools.channel(*chan),
                    self.pools.cid(*cid),
                );
                let r = self.router.subscribe(self.now, &who, &channel, cid.clone());
                let m = self.model.subscribe(self.now, &who, &channel, &cid);
                self.cov.hit(format!(
                    "subscribe: granted {}",
                    r.as_ref().map_or(0, |n| (*n).min(2))
                ));
                self.same("subscribe result", &r, &Ok(m));
                self.drain("subscribe", false);
            }
            Op::Unsubscribe { who, chan, cid } => {
                let (who, channel, cid) = (
                    self.pools.identity(who),
                    self.pools.channel(*chan),
                    self.pools.cid(*cid),
                );
                let r = self
                    .router
                    .unsubscribe(self.now, &who, &channel, cid.clone());
                self.model.unsubscribe(self.now, &who, &channel, &cid);
                self.same("unsubscribe result", &r, &Ok(()));
                self.drain("unsubscribe", false);
            }
            Op::UnsubscribeAll { who, chan } => {
                let (who, channel) = (self.pools.identity(who), self.pools.channel(*chan));
                let r = self.router.unsubscribe_all(self.now, &who, &channel);
                self.model.unsubscribe_all(self.now, &who, &channel);
                self.same("unsubscribe_all result", &r, &Ok(()));
                self.drain("unsubscribe_all", false);
            }
            _ => unreachable!("not an immediate subscription op"),
        }
    }

    fn timeout(&mut self) {
        self.router.handle_timeout(self.now);
        self.model.handle_timeout(self.now);
        self.drain("handle_timeout", false);
    }

    /// R1. Returns the index of the issued handshake.
    fn handshake(&mut self, peer: &Peer, srcs: &[TokenSrc], store: bool) -> Option<usize> {
        let tokens = self.pick_tokens(peer.instance, srcs, store);
        let strs: Vec<&str> = tokens.iter().map(|(t, _)| t.as_str()).collect();
        let contents: Vec<MToken> = tokens.iter().map(|(_, c)| c.clone()).collect();
        let r = self
            .router
            .handshake(self.now, &mut self.entropy, peer, &strs);
        let model_id = match &r {
            Ok(reply) => reply.handshake_id.to_string(),
            Err(_) => format!("refused at op {}", self.at),
        };
        let m = self
            .model
            .handshake(self.now, model_id.clone(), peer, &contents);
        self.cov.outcome("handshake", &r);
        if let Ok(reply) = &r {
            self.cov.hit(format!(
                "handshake: accepted {}",
                reply.receipts.len().min(3)
            ));
            self.cov
                .hit(format!("handshake: rejected {}", reply.rejected.min(3)));
        }
        let rn = r.as_ref().map(|reply| NReply {
            receipts: reply
                .receipts
                .iter()
                .map(|x| self.norm_receipt(x))
                .collect(),
            rejected: reply.rejected,
        });
        let mn = m.map(|reply| NReply {
            receipts: reply.receipts.into_iter().map(Ok).collect(),
            rejected: reply.rejected,
        });
        self.same("handshake reply", &rn.map_err(Clone::clone), &mn);
        self.drain("handshake", false);
        let reply = r.ok()?;
        // The client replaces its store with the accepted receipts.
        self.store_replace(peer.instance, &reply.receipts);
        self.handshakes.push(IssuedHs {
            reply,
            peer: peer.clone(),
            model_id,
        });
        Some(self.handshakes.len() - 1)
    }

    /// R2.
    fn attach(&mut self, reply: &HandshakeReply, model_id: &str, peer: &Peer) {
        let r = self.router.attach(self.now, &reply.handshake_id, peer);
        let m = self.model.attach(self.now, model_id, peer);
        self.cov.outcome("attach", &r);
        self.same(
            "attach result",
            &r.as_ref().map(|_| ()),
            &m.as_ref().map(|_| ()),
        );
        if let (Ok(rc), Ok(mc)) = (r, m) {
            if self.conns.iter().any(|p| p.router == rc || p.model == mc) {
                self.fail("attach returned a used connection", &rc, &mc);
            }
            self.conns.push(ConnPair {
                router: rc,
                model: mc,
                instance: peer.instance,
            });
        }
        self.drain("attach", true);
    }

    fn attach_op(&mut self, hs: u8, tweak: Tweak) {
        if self.handshakes.is_empty() {
            return;
        }
        let issued = &self.handshakes[usize::from(hs) % self.handshakes.len()];
        let (mut reply, mut model_id, mut peer) = (
            issued.reply.clone(),
            issued.model_id.clone(),
            issued.peer.clone(),
        );
        let other = |i: usize| (i + 1) % 4;
        match tweak {
            Tweak::Same => {}
            Tweak::OtherInstance => {
                let n = self
                    .pools
                    .instances
                    .iter()
                    .position(|i| *i == peer.instance)
                    .unwrap_or(0);
                peer.instance = self.pools.instances[other(n)];
            }
            Tweak::OtherSession => {
                let n = self
                    .pools
                    .sessions
                    .iter()
                    .position(|s| *s == peer.session)
                    .unwrap_or(0);
                peer.session = self.pools.sessions[(n + 1) % 3];
            }
            Tweak::OtherUser => {
                let n = self
                    .pools
                    .users
                    .iter()
                    .position(|u| *u == peer.user)
                    .unwrap_or(0);
                peer.user = self.pools.users[other(n)].clone();
            }
            Tweak::UnknownId => {
                reply.handshake_id = "0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6b"
                    .parse()
                    .expect("a UUIDv4");
                model_id = reply.handshake_id.to_string();
            }
        }
        self.attach(&reply, &model_id, &peer);
    }

    /// R3.
    fn detach(&mut self, inst: u8, stale: u8) {
        let instance = self.pools.any(inst);
        let mine: Vec<(ConnId, u64)> = self
            .conns
            .iter()
            .filter(|p| p.instance == instance)
            .map(|p| (p.router, p.model))
            .collect();
        let Some(&latest) = mine.last() else { return };
        let (r, m) = if stale.is_multiple_of(4) {
            mine[usize::from(stale / 4) % mine.len()]
        } else {
            latest
        };
        self.router.detach(r);
        self.model.detach(m);
        self.drain("detach", false);
    }

    /// Applies handler ops to both sides' effects.
    fn apply_fx(&mut self, r: &mut Effects, m: &mut MEffects, ops: &[FxOp]) {
        for op in ops {
            match op {
                FxOp::Put(c) => {
                    let ch = self.pools.channel(*c);
                    let res = r.put_subscription(&ch);
                    m.put_subscription(&ch);
                    self.same("put_subscription", &res, &Ok(()));
                }
                FxOp::Delete(c) => {
                    let ch = self.pools.channel(*c);
                    let res = r.delete_subscription(&ch);
                    m.delete_subscription(&ch);
                    self.same("delete_subscription", &res, &Ok(()));
                }
                FxOp::Broadcast {
                    chan,
                    action,
                    except,
                } => {
                    let ch = self.pools.channel(*chan);
                    let action = ACTIONS[usize::from(*action) % ACTIONS.len()];
                    let except: Vec<Identity> =
                        except.iter().map(|w| self.pools.identity(w)).collect();
                    let params = Payload::new(&b"[1]"[..]);
                    let res = if except.is_empty() {
                        r.put_broadcast(&ch, action, params.clone())
                    } else {
                        r.put_broadcast_except(&except, &ch, action, params.clone())
                    };
                    let mres = m.put_broadcast_except(&except, &ch, action, params);
                    self.same("put_broadcast", &res, &mres);
                }
                FxOp::SetUser(u) => {
                    let user = self.pools.user(*u);
                    r.set_user_id(user.clone());
                    m.set_user_id(user);
                }
                FxOp::SetSession(s) => {
                    let session = self.pools.session(*s);
                    r.set_session_id(session);
                    m.set_session_id(session);
                }
            }
        }
        self.same("effects after the handler", &view(r), &mview(m));
    }

    /// R5.
    fn command(&mut self, inst: u8, sess: Option<u8>, target: u8, ops: &[FxOp], then: Then) {
        let instance = self.live_instance(inst);
        let session = match sess {
            None => self.current_peer(instance).session,
            Some(s) => self.pools.session(s),
        };
        let target = self.pools.cid(target);
        let r = self.router.command(instance, session, target.clone());
        let m = self.model.command(instance, session, target);
        self.cov.outcome("command", &r);
        self.same(
            "command",
            &r.as_ref().map(view).map_err(Clone::clone),
            &m.as_ref().map(mview).map_err(Clone::clone),
        );
        if let (Ok(mut r), Ok(mut m)) = (r, m) {
            self.apply_fx(&mut r, &mut m, ops);
            match then {
                Then::Commit => self.commit(r, &m),
                Then::Keep => {
                    self.pending.push((r, m));
                    if self.pending.len() > 4 {
                        self.pending.remove(0);
                    }
                }
                Then::DetachAndCommit => {
                    let conns = (
                        self.router.connection(&instance),
                        self.model.connection(instance),
                    );
                    if let (Some(rc), Some(mc)) = conns {
                        self.router.detach(rc);
                        self.model.detach(mc);
                        self.drain("detach", false);
                    }
                    self.commit(r, &m);
                }
            }
        }
    }

    /// R5, R6, R7, R8.
    fn commit(&mut self, r: Effects, m: &MEffects) {
        let instance = r.instance_id();
        let attached = self.model.connection(instance).is_some();
        let r = self.router.commit(self.now, r);
        let m = self.model.commit(self.now, m);
        self.cov.outcome(
            if attached {
                "commit (attached)"
            } else {
                "commit (detached)"
            },
            &r,
        );
        let rn = r
            .as_ref()
            .map(|c| self.norm_committed(c))
            .map_err(Clone::clone);
        self.same("commit", &rn, &m.map(NCommitted::from));
        self.drain("commit", false);
        if let Ok(c) = r {
            self.cov
                .hit(format!("commit: echoes {}", c.self_echoes.len().min(2)));
            self.store_drop(instance, &c.receipt_drops);
            self.store_add(instance, &c.receipt_adds);
        }
    }

    /// R11.
    fn commit_page(
        &mut self,
        peer: &PeerSel,
        comps: &[Component],
        claimed: &[(u8, u8)],
        claim_store: bool,
    ) {
        let peer = self.peer(peer);
        let (mut rs, mut ms) = (Vec::new(), Vec::new());
        for c in comps {
            let cid = self.pools.cid(c.cid);
            let mut r = Effects::init(&peer, cid.clone());
            let mut m = MEffects::init(&peer, cid);
            self.apply_fx(&mut r, &mut m, &c.fx);
            rs.push(r);
            ms.push(m);
        }
        let mut keys: Vec<BindingKey> = claimed
            .iter()
            .map(|(ch, cid)| BindingKey {
                channel: self.pools.channel(*ch),
                cid: self.pools.cid(*cid),
            })
            .collect();
        if claim_store {
            keys.extend(self.store(peer.instance).into_iter().map(|(k, _, _)| k));
        }
        let attached = self.model.connection(peer.instance).is_some();
        let r = self.router.commit_page(self.now, &peer, rs, &keys);
        let m = self.model.commit_page(self.now, &peer, &ms, &keys);
        self.cov.outcome(
            if attached {
                "commit_page (attached)"
            } else {
                "commit_page (detached)"
            },
            &r,
        );
        let rn = r
            .as_ref()
            .map(|c| self.norm_committed(c))
            .map_err(Clone::clone);
        self.same("commit_page", &rn, &m.map(NCommitted::from));
        self.drain("commit_page", false);
        if let Ok(c) = r {
            self.store_drop(peer.instance, &c.receipt_drops);
            self.store_add(peer.instance, &c.receipt_adds);
        }
    }

    fn wrong_effects(&mut self, inst: u8, page: bool) {
        let peer = self.current_peer(self.pools.instance(inst));
        let (r, m) = if page {
            let other = self.current_peer(self.pools.instance(inst.wrapping_add(1)));
            let r = self.router.commit_page(
                self.now,
                &peer,
                vec![Effects::init(&other, Cid::PAGE)],
                &[],
            );
            let m =
                self.model
                    .commit_page(self.now, &peer, &[MEffects::init(&other, Cid::PAGE)], &[]);
            (r, m)
        } else {
            let r = self
                .router
                .commit(self.now, Effects::init(&peer, Cid::PAGE));
            let m = self
                .model
                .commit(self.now, &MEffects::init(&peer, Cid::PAGE));
            (r, m)
        };
        self.cov.outcome("wrong effects", &r);
        let rn = r
            .as_ref()
            .map(|c| self.norm_committed(c))
            .map_err(Clone::clone);
        self.same("commit of wrong effects", &rn, &m.map(NCommitted::from));
        self.drain("commit of wrong effects", false);
    }

    /// Compares everything the router exposes about its state.
    fn check_state(&mut self) {
        let instances: Vec<InstanceId> = self.pools.all_instances().collect();
        for instance in instances {
            let rb = self.router.bindings(&instance);
            let mb = self.model.bindings(instance);
            self.same_for(|| format!("bindings of {instance}"), &rb, &mb);
            let rc = self.router.connection(&instance);
            let mc = self.model.connection(instance);
            self.same_for(
                || format!("connection of {instance}"),
                &rc.map(|c| self.model_conn(c)),
                &mc,
            );
            if let (Some(rc), Some(mc)) = (rc, mc) {
                self.same_for(
                    || format!("peer of {instance}"),
                    &self.router.peer(rc),
                    &self.model.peer(mc),
                );
            }
        }
        for p in &self.conns {
            if self.model.peer(p.model).is_none() && self.router.peer(p.router).is_some() {
                self.fail(
                    "a stale connection still has a peer",
                    &self.router.peer(p.router),
                    &None::<Peer>,
                );
            }
        }
        let s = self.router.stats();
        let router = (s.instances, s.channels, s.pending_handshakes, s.parked);
        let model = (
            self.model.instance_count(),
            self.model.channel_count(),
            self.model.pending_handshakes(),
            self.model.parked_count(),
        );
        self.same(
            "stats (instances, channels, pending handshakes, parked)",
            &router,
            &model,
        );
        // R15: every channel's presence, metas in order within a key.
        for c in 0..self.pools.channels.len() {
            let channel = &self.pools.channels[c];
            // Strict: every ref in the state must have been announced in a
            // diff already (the tracker always gets its own join).
            let r = self
                .router
                .presence_state(channel)
                .map(|state| self.norm_presences(&state));
            let m = Ok(self.model.presence_state(&self.pools.channels[c]));
            self.same_for(
                || format!("presence_state of {}", self.pools.channels[c]),
                &r,
                &m,
            );
        }
        for note in self.model.take_notes() {
            self.cov.hit(note);
        }
    }
}
