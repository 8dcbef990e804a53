//! The JSON bodies of the SSE + POST protocol (SPEC §6). Channels travel in
//! their JSON form; params are any JSON object, carried pre-encoded.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tidings_core::router::{BindingKey, IssuedReceipt, SelfEcho};
use tidings_core::{Channel, Cid, HandshakeId, InstanceId};

/// `POST /tidings/handshake`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandshakeRequest {
    /// The tab.
    pub instance_id: InstanceId,
    /// Every receipt token the client holds.
    pub receipts: Vec<String>,
}

/// One receipt as the client stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptJson {
    /// The channel, JSON form.
    pub channel: Channel,
    /// The component.
    pub cid: Cid,
    /// The signed token.
    pub token: String,
}

impl From<IssuedReceipt> for ReceiptJson {
    fn from(r: IssuedReceipt) -> Self {
        Self {
            channel: r.channel,
            cid: r.cid,
            token: r.token,
        }
    }
}

/// A binding key as the client names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyJson {
    /// The channel, JSON form.
    pub channel: Channel,
    /// The component.
    pub cid: Cid,
}

impl From<BindingKey> for KeyJson {
    fn from(k: BindingKey) -> Self {
        Self {
            channel: k.channel,
            cid: k.cid,
        }
    }
}

impl From<KeyJson> for BindingKey {
    fn from(k: KeyJson) -> Self {
        Self {
            channel: k.channel,
            cid: k.cid,
        }
    }
}

/// The answer to a handshake.
#[derive(Debug, Serialize)]
pub struct HandshakeResponse {
    /// Redeem once with `GET /tidings/events`.
    pub handshake_id: HandshakeId,
    /// The accepted receipts, re-signed: the client's whole store from now on.
    pub receipts: Vec<ReceiptJson>,
}

/// `POST /tidings/command`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// The tab.
    pub instance_id: InstanceId,
    /// The component whose command runs.
    pub target: Cid,
    /// The command's name.
    pub name: String,
    /// Its params: a JSON object, passed to the handler unparsed.
    pub params: Box<RawValue>,
}

/// An action to run on a component, as the client receives it.
#[derive(Debug, Serialize)]
pub struct ActionJson<'a> {
    /// The action's name.
    pub action: &'a str,
    /// Its params (pre-encoded JSON).
    pub params: &'a RawValue,
    /// The component that runs it.
    pub cid: &'a str,
}

/// The data of a `broadcast` event: one action for several cids of a tab.
#[derive(Debug, Serialize)]
pub struct BroadcastJson<'a> {
    /// The action's name.
    pub action: &'a str,
    /// Its params (pre-encoded JSON, written as is).
    pub params: &'a RawValue,
    /// The tab's components that run it.
    pub cids: Vec<&'a str>,
}

/// The receipt changes in a command or navigation response.
#[derive(Debug, Serialize, Default)]
pub struct ReceiptDiff {
    /// New receipts.
    pub adds: Vec<ReceiptJson>,
    /// Receipts to forget.
    pub drops: Vec<KeyJson>,
}

/// Params bytes as raw JSON; bytes that are not JSON become `{}` (the core
/// never parses params, so they are checked here, at the edge).
pub fn raw_params(bytes: &[u8]) -> &RawValue {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| serde_json::from_str::<&RawValue>(s).ok())
        .unwrap_or_else(|| serde_json::from_str("{}").expect("{} is JSON"))
}

/// Encodes the self-echoes of a command response.
pub fn self_echoes(echoes: &[SelfEcho]) -> Vec<ActionJson<'_>> {
    echoes
        .iter()
        .map(|e| ActionJson {
            action: e.action.as_str(),
            params: raw_params(e.params.as_bytes()),
            cid: e.cid.as_str(),
        })
        .collect()
}

/// `POST /tidings/navigate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavigateRequest {
    /// The tab.
    pub instance_id: InstanceId,
    /// The page to render (the app's route).
    pub path: String,
    /// The bindings the client holds receipts for.
    pub claimed: Vec<KeyJson>,
}

/// An error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorJson {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// A stable machine-readable code, e.g. `bad_request`.
    pub code: String,
    /// A message for humans.
    pub message: String,
}
