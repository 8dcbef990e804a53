//! The handler-side transaction: what an `init` or `command` handler asks
//! for, recorded and applied only by [`Router::commit`](super::Router::commit)
//! (or [`Router::commit_page`](super::Router::commit_page)). Dropping an
//! `Effects` without committing it discards everything.

use alloc::vec::Vec;

use super::RouterError;
use super::types::{Action, Payload};
use crate::Channel;
use crate::channel::IntoChannel;
use crate::identity::{Cid, Identity, InstanceId, Peer, SessionId, UserId};

/// Which handler the effects come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    /// A page, layout or component `init` during a page render.
    Init,
    /// A component's `command`.
    Command,
}

/// A subscription change recorded by a handler; the last one per channel wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubOp {
    /// `put_subscription`.
    Put,
    /// `delete_subscription`.
    Delete,
}

/// A broadcast queued by a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedBroadcast {
    /// Where to publish.
    pub channel: Channel,
    /// The action.
    pub action: Action,
    /// Its pre-encoded params.
    pub params: Payload,
    /// Identities to leave out (exact match).
    pub except: Vec<Identity>,
}

impl QueuedBroadcast {
    /// Validates the channel and action name.
    pub(crate) fn new(
        except: &[Identity],
        channel: impl IntoChannel,
        action: &str,
        params: Payload,
    ) -> Result<Self, RouterError> {
        Ok(Self {
            channel: channel.into_channel()?,
            action: Action::new(action)?,
            params,
            except: except.to_vec(),
        })
    }
}

/// The transaction of one handler for one component (`cid`).
///
/// ```
/// use tidings_core::{Cid, Effects, InstanceId, Payload, Peer, SeededEntropy, SessionId};
/// let mut e = SeededEntropy::new(1);
/// let peer = Peer { instance: InstanceId::mint(&mut e), session: SessionId::mint(&mut e), user: None };
/// let mut fx = Effects::init(&peer, Cid::PAGE);
/// fx.put_subscription("{:room, 42}").unwrap();
/// fx.put_broadcast("{:room, 42}", "joined", Payload::new(&b"{}"[..])).unwrap();
/// assert_eq!(fx.subscriptions().len(), 1);
/// assert!(fx.put_subscription("{:room}").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Effects {
    pub(crate) kind: HandlerKind,
    pub(crate) instance: InstanceId,
    pub(crate) session: SessionId,
    pub(crate) user: Option<UserId>,
    pub(crate) cid: Cid,
    subscriptions: Vec<Channel>,
    pub(crate) ops: Vec<(Channel, SubOp)>,
    pub(crate) broadcasts: Vec<QueuedBroadcast>,
    pub(crate) new_session: Option<SessionId>,
    /// `None`: unchanged; `Some(None)`: logged out.
    #[allow(clippy::option_option)]
    pub(crate) new_user: Option<Option<UserId>>,
}

impl Effects {
    /// Effects for an `init` handler of component `cid` during a page render:
    /// its subscriptions start empty.
    pub fn init(peer: &Peer, cid: Cid) -> Self {
        Self::new(HandlerKind::Init, peer, cid, Vec::new())
    }

    pub(crate) fn new(
        kind: HandlerKind,
        peer: &Peer,
        cid: Cid,
        subscriptions: Vec<Channel>,
    ) -> Self {
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
            new_user: None,
        }
    }

    /// Which handler these effects belong to.
    pub fn kind(&self) -> HandlerKind {
        self.kind
    }

    /// The instance the handler runs for.
    pub fn instance_id(&self) -> InstanceId {
        self.instance
    }

    /// The session, as the handler has left it.
    pub fn session_id(&self) -> SessionId {
        self.new_session.unwrap_or(self.session)
    }

    /// The user, as the handler has left it.
    pub fn user_id(&self) -> Option<&UserId> {
        match &self.new_user {
            Some(u) => u.as_ref(),
            None => self.user.as_ref(),
        }
    }

    /// The component the handler belongs to.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// This component's bindings as the handler has left them: in a command
    /// its current bindings, in `init` what it put so far.
    pub fn subscriptions(&self) -> &[Channel] {
        &self.subscriptions
    }

    /// The broadcasts queued so far, in call order.
    pub fn broadcasts(&self) -> &[QueuedBroadcast] {
        &self.broadcasts
    }

    fn record(&mut self, channel: Channel, op: SubOp) {
        match self.ops.iter_mut().find(|(c, _)| *c == channel) {
            Some(entry) => entry.1 = op,
            None => self.ops.push((channel, op)),
        }
    }

    /// Binds a channel to this component, on commit.
    pub fn put_subscription(&mut self, channel: impl IntoChannel) -> Result<(), RouterError> {
        let channel = channel.into_channel()?;
        if !self.subscriptions.contains(&channel) {
            self.subscriptions.push(channel.clone());
        }
        self.record(channel, SubOp::Put);
        Ok(())
    }

    /// Unbinds a channel from this component, on commit (recorded even
    /// when it was not bound; a command's delete leaves a tombstone).
    pub fn delete_subscription(&mut self, channel: impl IntoChannel) -> Result<(), RouterError> {
        let channel = channel.into_channel()?;
        self.subscriptions.retain(|c| *c != channel);
        self.record(channel, SubOp::Delete);
        Ok(())
    }

    /// Queues a broadcast, published on commit.
    pub fn put_broadcast(
        &mut self,
        channel: impl IntoChannel,
        action: &str,
        params: Payload,
    ) -> Result<(), RouterError> {
        self.put_broadcast_except(&[], channel, action, params)
    }

    /// Queues a broadcast that leaves out `except`, published on commit.
    pub fn put_broadcast_except(
        &mut self,
        except: &[Identity],
        channel: impl IntoChannel,
        action: &str,
        params: Payload,
    ) -> Result<(), RouterError> {
        self.broadcasts
            .push(QueuedBroadcast::new(except, channel, action, params)?);
        Ok(())
    }

    /// Logs in (`Some`) or out (`None`), on commit: an identity change.
    pub fn set_user_id(&mut self, user: Option<UserId>) {
        self.new_user = Some(user);
    }

    /// Rotates the session, on commit: an identity change.
    pub fn set_session_id(&mut self, session: SessionId) {
        self.new_session = Some(session);
    }
}
