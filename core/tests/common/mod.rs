//! Shared fixture for the router integration tests: a router with a fixed
//! secret, deterministic ids, and helpers that handshake, attach, commit and
//! drain outputs.
//!
//! Receipts for handshakes are minted by a *separate* signer router holding
//! the same secret, so making a token never touches the router under test.

#![allow(dead_code)]

use tidings_core::router::{
    BindingKey, Committed, ConnId, HandshakeReply, IssuedReceipt, Output, Router, RouterConfig,
};
use tidings_core::{
    Channel, Cid, Effects, Identity, InstanceId, Payload, Peer, SeededEntropy, SessionId, UserId,
};

/// The secret both the router under test and the signer use.
pub(crate) const SECRET: &[u8] = b"tidings router test secret";

/// One hour in milliseconds.
pub(crate) const HOUR: u64 = 3_600_000;

pub(crate) struct Fixture {
    pub(crate) router: Router,
    pub(crate) entropy: SeededEntropy,
    signer: Router,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        Self::with_config(RouterConfig::default())
    }

    pub(crate) fn with_config(config: RouterConfig) -> Self {
        Self {
            router: Router::new(SECRET, config),
            entropy: SeededEntropy::new(0x7157_0001),
            signer: Router::new(SECRET, RouterConfig::default()),
        }
    }

    /// A new tab in a new session.
    pub(crate) fn peer(&mut self, user: Option<UserId>) -> Peer {
        let session = SessionId::mint(&mut self.entropy);
        self.peer_in(session, user)
    }

    /// A new tab in `session`.
    pub(crate) fn peer_in(&mut self, session: SessionId, user: Option<UserId>) -> Peer {
        Peer {
            instance: InstanceId::mint(&mut self.entropy),
            session,
            user,
        }
    }

    /// A sibling tab: same session and user, new instance.
    pub(crate) fn tab(&mut self, of: &Peer) -> Peer {
        self.peer_in(of.session, of.user.clone())
    }

    /// A fresh session id.
    pub(crate) fn session(&mut self) -> SessionId {
        SessionId::mint(&mut self.entropy)
    }

    pub(crate) fn handshake(&mut self, now: u64, peer: &Peer, tokens: &[&str]) -> HandshakeReply {
        self.router
            .handshake(now, &mut self.entropy, peer, tokens)
            .expect("handshake")
    }

    /// Handshake with `tokens`, then attach; outputs are left queued.
    pub(crate) fn attach(&mut self, now: u64, peer: &Peer, tokens: &[&str]) -> ConnId {
        let hs = self.handshake(now, peer, tokens);
        self.router
            .attach(now, &hs.handshake_id, peer)
            .expect("attach")
    }

    /// Attach with no receipts and drain whatever that queued.
    pub(crate) fn connect(&mut self, now: u64, peer: &Peer) -> ConnId {
        let conn = self.attach(now, peer, &[]);
        self.drain();
        conn
    }

    /// Attach with bindings `keys` (receipts signed for `peer.user` at
    /// `now`) and drain whatever that queued.
    pub(crate) fn connect_with(&mut self, now: u64, peer: &Peer, keys: &[(&str, &str)]) -> ConnId {
        let tokens: Vec<String> = keys
            .iter()
            .map(|(c, id)| self.token(now, peer.instance, peer.user.clone(), c, id))
            .collect();
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let conn = self.attach(now, peer, &refs);
        assert_eq!(
            self.router.bindings(&peer.instance).map(|b| b.len()),
            Some(keys.len()),
            "fixture: every receipt should have been accepted"
        );
        self.drain();
        conn
    }

    /// Every output queued so far, in order.
    pub(crate) fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.router.poll_output()).collect()
    }

    /// A receipt token for `(channel, cid)` issued to `instance`, authorized
    /// by `user`, created at `now`, from the signer router.
    pub(crate) fn token(
        &mut self,
        now: u64,
        instance: InstanceId,
        user: Option<UserId>,
        channel: &str,
        cid_text: &str,
    ) -> String {
        let peer = Peer {
            instance,
            session: SessionId::mint(&mut self.entropy),
            user,
        };
        let mut fx = Effects::init(&peer, cid(cid_text));
        fx.put_subscription(channel).expect("valid channel");
        let committed = self
            .signer
            .commit_page(now, &peer, vec![fx], &[])
            .expect("signer commit_page");
        assert_eq!(committed.receipt_adds.len(), 1);
        committed.receipt_adds[0].token.clone()
    }

    /// A receipt token for `peer` itself (its instance and user).
    pub(crate) fn token_for(
        &mut self,
        now: u64,
        peer: &Peer,
        channel: &str,
        cid_text: &str,
    ) -> String {
        self.token(now, peer.instance, peer.user.clone(), channel, cid_text)
    }

    /// The instance's bindings, or panics when it is not attached.
    pub(crate) fn bindings(&self, peer: &Peer) -> Vec<(BindingKey, bool)> {
        self.router
            .bindings(&peer.instance)
            .expect("instance is attached")
    }

    /// The instance's binding keys, without tags.
    pub(crate) fn keys(&self, peer: &Peer) -> Vec<BindingKey> {
        self.bindings(peer).into_iter().map(|(k, _)| k).collect()
    }

    /// Opens a command for `peer`'s component `cid_text`.
    pub(crate) fn command(&self, peer: &Peer, cid_text: &str) -> Effects {
        self.router
            .command(peer.instance, peer.session, cid(cid_text))
            .expect("command")
    }

    pub(crate) fn commit(&mut self, now: u64, fx: Effects) -> Committed {
        self.router.commit(now, fx).expect("commit")
    }

    /// Runs every deadline up to and including `to`, one at a time, so
    /// re-armed timers (sweeps, refreshes) that fall before `to` run too.
    pub(crate) fn advance(&mut self, to: u64) {
        while let Some(at) = self.router.poll_timeout() {
            if at > to {
                break;
            }
            self.router.handle_timeout(at);
        }
        self.router.handle_timeout(to);
    }

    /// Whether a handshake for `peer` at `now` accepts `token`.
    pub(crate) fn accepts(&mut self, now: u64, peer: &Peer, token: &str) -> bool {
        let reply = self.handshake(now, peer, &[token]);
        reply.rejected == 0 && reply.receipts.len() == 1
    }
}

pub(crate) fn ch(text: &str) -> Channel {
    Channel::parse(text).expect("valid channel")
}

pub(crate) fn cid(text: &str) -> Cid {
    Cid::new(text).expect("valid cid")
}

pub(crate) fn key(channel: &str, cid_text: &str) -> BindingKey {
    BindingKey {
        channel: ch(channel),
        cid: cid(cid_text),
    }
}

/// `Some(UserId::int(id))`: the shape `Peer::user` and `Committed::user` take.
#[allow(clippy::unnecessary_wraps)]
pub(crate) fn user(id: i64) -> Option<UserId> {
    Some(UserId::int(id))
}

pub(crate) fn payload(bytes: &'static [u8]) -> Payload {
    Payload::new(bytes)
}

pub(crate) fn empty() -> Payload {
    Payload::new(&b"{}"[..])
}

pub(crate) fn instance_of(peer: &Peer) -> Identity {
    Identity::Instance(peer.instance)
}

pub(crate) fn session_of(peer: &Peer) -> Identity {
    Identity::Session(peer.session)
}

pub(crate) fn user_of(id: i64) -> Identity {
    Identity::User(UserId::int(id))
}

/// The keys of issued receipts, in their order.
pub(crate) fn receipt_keys(receipts: &[IssuedReceipt]) -> Vec<BindingKey> {
    receipts
        .iter()
        .map(|r| BindingKey {
            channel: r.channel.clone(),
            cid: r.cid.clone(),
        })
        .collect()
}

/// One delivery of a `Fanout`: flattened per recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) channel: Channel,
    pub(crate) action: String,
    pub(crate) params: Vec<u8>,
    pub(crate) conn: ConnId,
    pub(crate) cids: Vec<Cid>,
}

/// Every delivery in `outputs`, in output order then recipient order.
pub(crate) fn deliveries(outputs: &[Output]) -> Vec<Delivery> {
    let mut all = Vec::new();
    for o in outputs {
        if let Output::Fanout {
            broadcast,
            recipients,
        } = o
        {
            for r in recipients {
                all.push(Delivery {
                    channel: broadcast.channel.clone(),
                    action: broadcast.action.as_str().to_owned(),
                    params: broadcast.params.as_bytes().to_vec(),
                    conn: r.conn,
                    cids: r.cids.as_slice().to_vec(),
                });
            }
        }
    }
    all
}

/// `(conn, action, cids as text)` per delivery: the usual thing to compare.
pub(crate) fn delivered(outputs: &[Output]) -> Vec<(ConnId, String, Vec<String>)> {
    deliveries(outputs)
        .into_iter()
        .map(|d| {
            (
                d.conn,
                d.action,
                d.cids.iter().map(|c| c.as_str().to_owned()).collect(),
            )
        })
        .collect()
}

/// The `ChannelUp` / `ChannelDown` outputs, as `(up?, channel)`.
pub(crate) fn crossings(outputs: &[Output]) -> Vec<(bool, Channel)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ChannelUp(t) => Some((true, t.channel())),
            Output::ChannelDown(t) => Some((false, t.channel())),
            _ => None,
        })
        .collect()
}

/// `(action, cid)` of each self-echo, in order.
pub(crate) fn echoes(c: &Committed) -> Vec<(String, String)> {
    c.self_echoes
        .iter()
        .map(|e| (e.action.as_str().to_owned(), e.cid.as_str().to_owned()))
        .collect()
}

/// The `init` effects of a page render declaring `(channel, cid)` pairs: one
/// `Effects` per cid, in first-appearance order.
pub(crate) fn page_effects(peer: &Peer, declared: &[(&str, &str)]) -> Vec<Effects> {
    let mut all: Vec<Effects> = Vec::new();
    for (channel, cid_text) in declared {
        let id = cid(cid_text);
        let pos = if let Some(pos) = all.iter().position(|fx| *fx.cid() == id) {
            pos
        } else {
            all.push(Effects::init(peer, id));
            all.len() - 1
        };
        all[pos].put_subscription(*channel).expect("valid channel");
    }
    all
}

/// The keys of `(channel, cid)` pairs, sorted (the router's order).
pub(crate) fn sorted_keys(pairs: &[(&str, &str)]) -> Vec<BindingKey> {
    let mut keys: Vec<BindingKey> = pairs.iter().map(|(c, id)| key(c, id)).collect();
    keys.sort();
    keys
}

/// The outputs other than `ChannelUp` / `ChannelDown`, in order.
pub(crate) fn non_crossings(outputs: &[Output]) -> Vec<Output> {
    outputs
        .iter()
        .filter(|o| !matches!(o, Output::ChannelUp(_) | Output::ChannelDown(_)))
        .cloned()
        .collect()
}
