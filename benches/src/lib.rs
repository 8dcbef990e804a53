//! Benchmarks live in `benches/`; the memory and SSE measurements in
//! `examples/`.
//!
//! This library holds the setup they share, through the public API only:
//! building router tables ([`router`]) and serving and subscribing over SSE
//! ([`sse`]).

pub mod router {
    //! Router setup helpers: attached instances, bindings, receipts.

    use tidings_core::router::{BindingKey, ConnId, Output};
    use tidings_core::{Channel, Cid, Effects, InstanceId, Peer, Router, SeededEntropy, SessionId};
    use tidings_core::{Identity, Value};

    /// The secret every benchmark router signs with.
    pub const SECRET: &[u8] = b"tidings benchmark secret";

    /// `{:room, i}`.
    pub fn room(i: i64) -> Channel {
        Channel::tuple("room", [Value::Int(i)]).expect("room channel is valid")
    }

    /// `{:room, 0}` .. `{:room, n - 1}`.
    pub fn rooms(n: usize) -> Vec<Channel> {
        (0..i64::try_from(n).expect("fits i64")).map(room).collect()
    }

    /// A fresh anonymous peer.
    pub fn peer(e: &mut SeededEntropy) -> Peer {
        Peer {
            instance: InstanceId::mint(e),
            session: SessionId::mint(e),
            user: None,
        }
    }

    /// Drains every queued output; returns how many there were.
    pub fn drain(router: &mut Router) -> usize {
        std::iter::from_fn(|| router.poll_output()).count()
    }

    /// Handshakes `peer` with `tokens` and attaches it, draining outputs.
    pub fn attach_with(
        router: &mut Router,
        now: u64,
        e: &mut SeededEntropy,
        peer: &Peer,
        tokens: &[&str],
    ) -> ConnId {
        let hs = router
            .handshake(now, e, peer, tokens)
            .expect("handshake succeeds");
        let conn = router
            .attach(now, &hs.handshake_id, peer)
            .expect("attach succeeds");
        drain(router);
        conn
    }

    /// Attaches a fresh anonymous instance with no bindings.
    pub fn attach_new(router: &mut Router, now: u64, e: &mut SeededEntropy) -> (Peer, ConnId) {
        let p = peer(e);
        let conn = attach_with(router, now, e, &p, &[]);
        (p, conn)
    }

    /// The page-cid binding keys of `channels`.
    pub fn page_keys(channels: &[Channel]) -> Vec<BindingKey> {
        channels
            .iter()
            .map(|c| BindingKey {
                channel: c.clone(),
                cid: Cid::PAGE,
            })
            .collect()
    }

    /// Page `init` effects putting each channel (one component per channel,
    /// all on cid `page`, so building them is linear in `channels`).
    pub fn page_effects(peer: &Peer, channels: &[Channel]) -> Vec<Effects> {
        channels
            .iter()
            .map(|c| {
                let mut fx = Effects::init(peer, Cid::PAGE);
                fx.put_subscription(c).expect("valid channel");
                fx
            })
            .collect()
    }

    /// Binds `(channel, page)` for every channel to an attached instance
    /// through `commit_page` with every key claimed: the table changes, but
    /// no receipt is signed and no tombstone or purge marker is written.
    pub fn bind_page_claimed(router: &mut Router, now: u64, peer: &Peer, channels: &[Channel]) {
        let claimed = page_keys(channels);
        let done = router
            .commit_page(now, peer, page_effects(peer, channels), &claimed)
            .expect("commit_page succeeds");
        assert!(done.receipt_adds.is_empty() && done.receipt_drops.is_empty());
        drain(router);
    }

    /// Binds `(channel, page)` for every channel through `subscribe` (one
    /// receipt signed and two purge markers written per binding).
    pub fn bind_subscribe(router: &mut Router, now: u64, peer: &Peer, channels: &[Channel]) {
        let who = Identity::Instance(peer.instance);
        for c in channels {
            let granted = router
                .subscribe(now, &who, c, Cid::PAGE)
                .expect("subscribe succeeds");
            assert_eq!(granted, 1, "instance is attached and under its limit");
            drain(router);
        }
    }

    /// Subscribes an attached instance to `channels` and returns the receipt
    /// tokens the router pushed to it.
    pub fn issue_tokens(
        router: &mut Router,
        now: u64,
        peer: &Peer,
        channels: &[Channel],
    ) -> Vec<String> {
        let who = Identity::Instance(peer.instance);
        let mut tokens = Vec::with_capacity(channels.len());
        for c in channels {
            router
                .subscribe(now, &who, c, Cid::PAGE)
                .expect("subscribe succeeds");
            while let Some(o) = router.poll_output() {
                if let Output::AddReceipts { receipts, .. } = o {
                    tokens.extend(receipts.into_iter().map(|r| r.token));
                }
            }
        }
        assert_eq!(tokens.len(), channels.len());
        tokens
    }
}

pub mod child;
pub mod fanout;
pub mod load;
pub mod sse;
pub mod ws;
