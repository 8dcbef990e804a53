//! [`HubHandle`]: the immediate API, callable from any thread or task.

use async_channel::{Sender, TrySendError};
use serde::Serialize;
use tidings_core::router::{Action, RouterError};
use tidings_core::{Channel, Cid, Identity, IntoChannel, Payload};

use crate::hub::{HubMsg, Immediate};

/// Why an immediate call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The channel or action name is invalid.
    #[error(transparent)]
    Invalid(#[from] RouterError),
    /// The hub's inbox is full; the call was dropped. Retry later.
    #[error("the hub is overloaded (its inbox of {capacity} messages is full); try again later")]
    Overloaded {
        /// The inbox capacity.
        capacity: usize,
    },
    /// The hub has shut down.
    #[error("the hub has shut down")]
    Stopped,
}

/// A cheap, cloneable handle to a running hub (`Clone + Send + Sync`). Calls
/// never block: they validate, then queue the operation for the hub.
#[derive(Clone, Debug)]
pub struct HubHandle {
    pub(crate) tx: Sender<HubMsg>,
}

impl HubHandle {
    fn send(&self, op: Immediate) -> Result<(), HubError> {
        self.tx
            .try_send(HubMsg::Immediate(op))
            .map_err(|e| match e {
                TrySendError::Full(_) => HubError::Overloaded {
                    capacity: self.tx.capacity().unwrap_or(0),
                },
                TrySendError::Closed(_) => HubError::Stopped,
            })
    }

    fn channel(channel: impl IntoChannel) -> Result<Channel, HubError> {
        channel
            .into_channel()
            .map_err(|e| HubError::Invalid(e.into()))
    }

    /// Broadcasts `action` with `params` (as JSON) to every tab bound to `channel`.
    pub fn broadcast_action(
        &self,
        channel: impl IntoChannel,
        action: &str,
        params: &impl Serialize,
    ) -> Result<(), HubError> {
        self.broadcast_action_except(&[], channel, action, params)
    }

    /// Like [`HubHandle::broadcast_action`], leaving out tabs an entry of `except` names.
    pub fn broadcast_action_except(
        &self,
        except: &[Identity],
        channel: impl IntoChannel,
        action: &str,
        params: &impl Serialize,
    ) -> Result<(), HubError> {
        let channel = Self::channel(channel)?;
        let action = Action::new(action)?;
        let params = Payload::new(serde_json::to_vec(params).expect("params serialize to JSON"));
        self.send(Immediate::Broadcast {
            except: except.to_vec(),
            channel,
            action,
            params,
        })
    }

    /// Grants `(channel, cid)` to every live tab of `identity` (a re-grant).
    pub fn subscribe(
        &self,
        identity: Identity,
        channel: impl IntoChannel,
        cid: Cid,
    ) -> Result<(), HubError> {
        let channel = Self::channel(channel)?;
        self.send(Immediate::Subscribe {
            identity,
            channel,
            cid,
        })
    }

    /// Removes `(channel, cid)` from `identity`'s tabs, across reconnects.
    pub fn unsubscribe(
        &self,
        identity: Identity,
        channel: impl IntoChannel,
        cid: Cid,
    ) -> Result<(), HubError> {
        let channel = Self::channel(channel)?;
        self.send(Immediate::Unsubscribe {
            identity,
            channel,
            cid,
        })
    }

    /// Removes every binding on `channel` from `identity`'s tabs, across reconnects.
    pub fn unsubscribe_all(
        &self,
        identity: Identity,
        channel: impl IntoChannel,
    ) -> Result<(), HubError> {
        let channel = Self::channel(channel)?;
        self.send(Immediate::UnsubscribeAll { identity, channel })
    }

    /// Asks the hub to close every stream (clients reconnect elsewhere) and
    /// stop; returns once it has.
    pub fn shutdown(&self) {
        let (tx, rx) = async_channel::bounded(1);
        if self
            .tx
            .send_blocking(HubMsg::Shutdown { reply: tx })
            .is_ok()
        {
            let _ = rx.recv_blocking();
        }
    }
}
