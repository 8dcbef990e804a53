//! What an application implements: pages (route → component `init`s) and
//! component commands. Handlers get the transaction of SPEC §4 (an
//! [`Effects`]) and return `Result`; an `Err` or a panic commits nothing.

use serde::Serialize;
use tidings_core::{Channel, Cid, Effects, Payload, Peer};

/// Encodes params for a broadcast as JSON.
///
/// ```
/// let p = tidings_smol::params(&serde_json::json!({"text": "hi"}));
/// assert_eq!(p.as_bytes(), br#"{"text":"hi"}"#);
/// ```
pub fn params(value: &impl Serialize) -> Payload {
    Payload::new(serde_json::to_vec(value).expect("params serialize to JSON"))
}

/// A page render in progress: one [`Effects`] per component, in render order.
pub struct Page {
    peer: Peer,
    pub(crate) components: Vec<Effects>,
}

impl Page {
    pub(crate) fn new(peer: Peer) -> Self {
        Self {
            peer,
            components: Vec::new(),
        }
    }

    /// Who the page is rendered for (a fresh instance on first load).
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The `init` effects of component `cid` (created on first use; its
    /// subscriptions start empty whatever other components did).
    pub fn component(&mut self, cid: Cid) -> &mut Effects {
        let at = if let Some(at) = self.components.iter().position(|fx| *fx.cid() == cid) {
            at
        } else {
            self.components.push(Effects::init(&self.peer, cid));
            self.components.len() - 1
        };
        &mut self.components[at]
    }
}

/// The action a command asks its own component (or another) to run next.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextAction {
    /// The action's name.
    pub action: String,
    /// Its params.
    pub params: serde_json::Value,
    /// The component that runs it; the command's target when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
}

impl NextAction {
    /// `action` with `params`, on the command's own component.
    pub fn new(action: &str, params: serde_json::Value) -> Self {
        Self {
            action: action.to_owned(),
            params,
            cid: None,
        }
    }
}

/// A handler's refusal, answered as `{"error": {code, message}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    /// HTTP status (4xx/5xx).
    pub status: u16,
    /// Machine-readable code.
    pub code: String,
    /// For humans.
    pub message: String,
}

impl AppError {
    /// A 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: "bad_request".into(),
            message: message.into(),
        }
    }

    /// A 404 `unknown_command`.
    pub fn unknown_command(name: &str) -> Self {
        Self {
            status: 404,
            code: "unknown_command".into(),
            message: format!("no command named {name:?} on this component"),
        }
    }
}

impl From<tidings_core::router::RouterError> for AppError {
    fn from(e: tidings_core::router::RouterError) -> Self {
        Self::bad_request(e.to_string())
    }
}

/// An application served by the hub.
pub trait App: Send + Sync + 'static {
    /// Renders the page at `path` (no query): declare each component's
    /// subscriptions and broadcasts on `page`, return the HTML, or `None`
    /// for "no such page". The hub injects the Tidings boot data at
    /// `<!--tidings-boot-->` (or before `</head>`).
    fn render(&self, path: &str, page: &mut Page) -> Result<Option<String>, AppError>;

    /// Runs command `name` of component `fx.cid()` with its params.
    fn command(
        &self,
        fx: &mut Effects,
        name: &str,
        params: &serde_json::Value,
    ) -> Result<Option<NextAction>, AppError>;

    /// Accepts or refuses a WebSocket connection or a REST broadcast call
    /// by its API key (WebSocket: the `apikey` query parameter, else the
    /// `x-api-key` header; REST: the `apikey` header, else `x-api-key`, else
    /// the query). A refusal answers with 401 `{"error": message}`. Default:
    /// accept, anonymous.
    fn authenticate(&self, apikey: Option<&str>) -> Result<(), String> {
        let _ = apikey;
        Ok(())
    }

    /// Allows or denies what a Phoenix client asks on a channel (SPEC §10).
    /// `token` is the access token its join carried, or the latest
    /// `access_token` push. A denial answers `Unauthorized: <message>` (and
    /// a revoked token closes the channel). Default: allow; Tidings does no
    /// implicit authorization.
    fn authorize(
        &self,
        peer: &Peer,
        access: Access,
        channel: &Channel,
        token: Option<&str>,
    ) -> Result<(), String> {
        let _ = (peer, access, channel, token);
        Ok(())
    }
}

/// What a Phoenix client asks to do on a channel, for [`App::authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Join it (and, on an `access_token` push, keep it).
    Join,
    /// Broadcast on it.
    Broadcast,
    /// Track presence on it.
    Presence,
}
