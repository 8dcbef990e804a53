//! The Supabase join payload (P§2.2) and the join reply's
//! `postgres_changes` echo (P§2.3).

use serde::Deserialize;
use serde_json::value::RawValue;

/// A boolean that Supabase also accepts as `"true"`/`"false"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Bool(bool),
            Text(String),
            Null(()),
        }
        Ok(Flag(match Either::deserialize(d)? {
            Either::Bool(b) => b,
            Either::Text(t) => t.eq_ignore_ascii_case("true"),
            Either::Null(()) => false,
        }))
    }
}

/// `config.broadcast`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BroadcastConfig {
    /// The sender receives its own broadcasts.
    #[serde(rename = "self")]
    pub self_: Flag,
    /// Broadcast pushes get an ok reply.
    pub ack: Flag,
}

/// `config.presence`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PresenceConfig {
    /// The presence key; empty → one is generated at join.
    pub key: Option<String>,
    /// Send `presence_state` after the join.
    pub enabled: Flag,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigJson {
    broadcast: BroadcastConfig,
    presence: PresenceConfig,
    postgres_changes: Vec<Box<RawValue>>,
    private: Flag,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JoinJson {
    config: ConfigJson,
    access_token: Option<String>,
    user_token: Option<String>,
}

/// A Supabase join's settings. An invalid payload yields the defaults, as
/// Supabase Realtime does (it logs and proceeds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinConfig {
    /// `config.broadcast`.
    pub broadcast: BroadcastConfig,
    /// `config.presence`.
    pub presence: PresenceConfig,
    /// `config.private`.
    pub private: bool,
    /// `user_token`, else `access_token`.
    pub access_token: Option<String>,
    /// The `postgres_changes` filters as sent, in order.
    pub postgres_changes: Vec<String>,
}

impl JoinConfig {
    /// Reads a join payload.
    ///
    /// ```
    /// use tidings_ws::server::join::JoinConfig;
    /// let c = JoinConfig::parse(r#"{"config":{"broadcast":{"self":true,"ack":"true"},"presence":{"key":"u1"}}}"#);
    /// assert!(c.broadcast.self_.0 && c.broadcast.ack.0);
    /// assert_eq!(c.presence.key.as_deref(), Some("u1"));
    /// assert_eq!(JoinConfig::parse("[1,2]"), JoinConfig::default());
    /// ```
    pub fn parse(payload: &str) -> Self {
        let Ok(j) = serde_json::from_str::<JoinJson>(payload) else {
            return Self::default();
        };
        Self {
            broadcast: j.config.broadcast,
            presence: j.config.presence,
            private: j.config.private.0,
            access_token: j.user_token.or(j.access_token),
            postgres_changes: j
                .config
                .postgres_changes
                .into_iter()
                .map(|r| r.get().to_owned())
                .collect(),
        }
    }

    /// The join reply's response: every `postgres_changes` filter echoed in
    /// order with an `id` (realtime-js matches them by index).
    ///
    /// ```
    /// use tidings_ws::server::join::JoinConfig;
    /// let c = JoinConfig::parse(r#"{"config":{"postgres_changes":[{"event":"INSERT","schema":"public","table":"todos"}]}}"#);
    /// let r: serde_json::Value = serde_json::from_str(&c.reply_response()).unwrap();
    /// assert_eq!(r["postgres_changes"][0]["table"], "todos");
    /// assert!(r["postgres_changes"][0]["id"].is_u64());
    /// ```
    pub fn reply_response(&self) -> String {
        let mut out = String::from(r#"{"postgres_changes":["#);
        for (i, filter) in self.postgres_changes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let mut map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(filter).unwrap_or_default();
            map.insert("id".into(), filter_id(filter).into());
            out.push_str(&serde_json::Value::Object(map).to_string());
        }
        out.push_str("]}");
        out
    }
}

/// A stable id for a filter (FNV-1a of its JSON text), like Supabase's
/// `phash2` integer.
fn filter_id(filter: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in filter.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h & ((1 << 53) - 1)
}
