//! The channel store: a concurrent map, owned by one client, that mirrors
//! every channel's state (the Elixir client's ETS `Channel.Store`).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::conn::{StoreUpdate, normalize_topic};
use super::types::{ChannelInfo, ChannelState};

/// A channel store, readable from any thread. Cloning shares it.
///
/// ```no_run
/// use tidings_ws::client::{ChannelOptions, ChannelState, Client, ClientConfig};
/// let client = Client::connect(ClientConfig::new("ws://127.0.0.1:4000/socket")).unwrap();
/// client.channel("room1", ChannelOptions::default());
/// let info = client.store().channel("room1").unwrap();
/// assert_eq!((info.topic.as_str(), info.state), ("realtime:room1", ChannelState::Closed));
/// assert_eq!(client.store().channels().len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Store {
    map: Arc<RwLock<HashMap<String, ChannelInfo>>>,
}

impl Store {
    pub(crate) fn apply(&self, u: StoreUpdate) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        match u {
            StoreUpdate::Upsert(info) => {
                map.insert(info.topic.clone(), info);
            }
            StoreUpdate::Remove(topic) => {
                map.remove(&topic);
            }
        }
    }

    /// Every channel, sorted by topic.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<ChannelInfo> = map.values().cloned().collect();
        v.sort_by(|a, b| a.topic.cmp(&b.topic));
        v
    }

    /// The channel for `topic` (`realtime:` added when missing).
    pub fn channel(&self, topic: &str) -> Option<ChannelInfo> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(&normalize_topic(topic)).cloned()
    }

    /// The state of the channel for `topic`.
    pub fn state(&self, topic: &str) -> Option<ChannelState> {
        self.channel(topic).map(|c| c.state)
    }

    /// How many channels there are.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
