//! Sockets (R14) and presence (R15): Phoenix-style connections that join
//! channels themselves, without receipts, and track presence on them.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::{Output, Router, RouterError};
use crate::channel::IntoChannel;
use crate::identity::{Cid, Entropy, Peer};
use crate::presence::{Diff, Presences};
use crate::router::types::{ConnId, Payload};

impl Router {
    /// Opens a socket: an instance attached without a handshake, holding no
    /// bindings (R14). Its instance id must not be attached already
    /// (`SessionMismatch` under another session, `InstanceInUse` otherwise);
    /// it counts towards `max_instances_per_session`.
    ///
    /// ```
    /// use tidings_core::router::{Output, Router, RouterConfig};
    /// use tidings_core::{Channel, Cid, InstanceId, Payload, Peer, SeededEntropy, SessionId};
    ///
    /// let mut e = SeededEntropy::new(7);
    /// let mut router = Router::new(b"secret", RouterConfig::default());
    /// let peer = Peer { instance: InstanceId::mint(&mut e), session: SessionId::mint(&mut e), user: None };
    /// let conn = router.connect(&peer).unwrap();
    /// router.join(conn, "{:realtime, \"lobby\"}", &Cid::PAGE).unwrap();
    /// router.track(conn, "{:realtime, \"lobby\"}", "alice", Payload::new(&b"{}"[..]), &mut e).unwrap();
    /// let diff = std::iter::from_fn(|| router.poll_output()).find_map(|o| match o {
    ///     Output::PresenceDiff { diff, recipients, .. } => Some((diff, recipients)),
    ///     _ => None,
    /// });
    /// let (diff, recipients) = diff.unwrap();
    /// assert_eq!(recipients, vec![conn]);
    /// assert_eq!(diff.joins["alice"].len(), 1);
    /// ```
    pub fn connect(&mut self, peer: &Peer) -> Result<ConnId, RouterError> {
        if let Some(slot) = self.table.slot_of(&peer.instance) {
            return Err(if self.table.instance(slot).session == peer.session {
                RouterError::InstanceInUse
            } else {
                RouterError::SessionMismatch
            });
        }
        if self.table.session_len(&peer.session) >= self.config.max_instances_per_session {
            return Err(RouterError::TooManyConnections {
                max: self.config.max_instances_per_session,
            });
        }
        let slot = self
            .table
            .insert_instance(peer.instance, peer.session, peer.user.clone());
        Ok(self.table.instance(slot).conn)
    }

    /// Binds `(channel, cid)` for a live stream on its own request (R14): no
    /// receipt, no tombstone, anonymous tag (it survives login and logout).
    /// Returns whether it was newly bound. `NotAttached` for a stale handle,
    /// `TooManyBindings` past `max_bindings_per_instance`.
    pub fn join(
        &mut self,
        conn: ConnId,
        channel: impl IntoChannel,
        cid: &Cid,
    ) -> Result<bool, RouterError> {
        let channel = channel.into_channel()?;
        let slot = self
            .table
            .slot_of_conn(conn)
            .ok_or(RouterError::NotAttached)?;
        if self
            .table
            .cids_on(slot, &channel)
            .is_some_and(|c| c.contains(cid))
        {
            return Ok(false);
        }
        let count = self.table.instance(slot).count;
        if count >= self.config.max_bindings_per_instance {
            return Err(RouterError::TooManyBindings {
                would_hold: count + 1,
                max: self.config.max_bindings_per_instance,
            });
        }
        self.table
            .add_binding(slot, &channel, cid, 0, &mut self.out);
        Ok(true)
    }

    /// Unbinds `(channel, cid)` for a live stream on its own request and
    /// untracks its presence there (R14, R15); no tombstone. Returns whether
    /// it was bound. A stale handle does nothing.
    pub fn leave(
        &mut self,
        conn: ConnId,
        channel: impl IntoChannel,
        cid: &Cid,
    ) -> Result<bool, RouterError> {
        let channel = channel.into_channel()?;
        let Some(slot) = self.table.slot_of_conn(conn) else {
            return Ok(false);
        };
        let was = self
            .table
            .remove_binding(slot, &channel, cid, &mut self.out);
        if self.table.cids_on(slot, &channel).is_none()
            && let Some(diff) = self.presence.untrack(&channel.topic(), conn.get())
        {
            self.publish_presence(channel, diff);
        }
        Ok(was)
    }

    /// Tracks `payload` (a JSON object) under `key` for a stream bound to
    /// `channel` (R15): every stream bound there, this one included, gets
    /// [`Output::PresenceDiff`]. An identical payload under the same key is
    /// a no-op. `NotAttached` for a stale handle, `NotJoined` if unbound.
    pub fn track(
        &mut self,
        conn: ConnId,
        channel: impl IntoChannel,
        key: &str,
        payload: Payload,
        entropy: &mut impl Entropy,
    ) -> Result<(), RouterError> {
        let channel = channel.into_channel()?;
        let slot = self
            .table
            .slot_of_conn(conn)
            .ok_or(RouterError::NotAttached)?;
        if self.table.cids_on(slot, &channel).is_none() {
            return Err(RouterError::NotJoined);
        }
        if let Some(diff) = self
            .presence
            .track(&channel.topic(), conn.get(), key, payload, entropy)
        {
            self.publish_presence(channel, diff);
        }
        Ok(())
    }

    /// Removes a stream's presence on `channel` (R15); nothing if it had none.
    pub fn untrack(&mut self, conn: ConnId, channel: impl IntoChannel) -> Result<(), RouterError> {
        let channel = channel.into_channel()?;
        if let Some(diff) = self.presence.untrack(&channel.topic(), conn.get()) {
            self.publish_presence(channel, diff);
        }
        Ok(())
    }

    /// A channel's presence: key → metas, each key's metas in the order
    /// their streams were opened, oldest first (an update keeps its place;
    /// the order does not depend on when each stream tracked). Sent as
    /// `presence_state` after a join.
    pub fn presence_state(&self, channel: impl IntoChannel) -> Result<Presences, RouterError> {
        Ok(self.presence.state(&channel.into_channel()?.topic()))
    }

    /// R10 unbound a stream (`slot`): its meta on `channel` goes once it
    /// holds no cid there.
    pub(super) fn presence_after_unbind(&mut self, slot: usize, channel: &crate::Channel) {
        if self.table.cids_on(slot, channel).is_none() {
            let conn = self.table.instance(slot).conn;
            if let Some(diff) = self.presence.untrack(&channel.topic(), conn.get()) {
                self.publish_presence(channel.clone(), diff);
            }
        }
    }

    /// Drops every presence of a stream that is going away.
    pub(super) fn leave_presence(&mut self, conn: ConnId) {
        for (topic, diff) in self.presence.leave_all(conn.get()) {
            self.publish_presence(topic.channel(), diff);
        }
    }

    fn publish_presence(&mut self, channel: crate::Channel, diff: Diff) {
        let mut recipients = Vec::new();
        self.table.fanout(&channel, &[], &mut recipients);
        if recipients.is_empty() {
            return;
        }
        self.out.push_back(Output::PresenceDiff {
            channel,
            diff: Arc::new(diff),
            recipients: recipients.into_iter().map(|r| r.conn).collect(),
        });
    }
}
