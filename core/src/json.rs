//! The JSON codec, for browsers: `{"t":"notifications"}`,
//! `{"t":"room","v":[42]}`.
//!
//! Values map as integer → number, string → string, `true`/`false`/`nil` →
//! `true`/`false`/`null`, any other atom → `{"a":"red"}`. `Channel`'s serde
//! impls are this form, so channels embed directly in JSON messages.

use alloc::string::String;
use alloc::vec::Vec;

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value as Json;

use crate::channel::{Atom, Channel, Value};
use crate::error::{ChannelError, Quote};
use crate::limits::ChannelLimits;

fn json_err(reason: core::fmt::Arguments<'_>) -> ChannelError {
    ChannelError::Json {
        reason: Quote::from_fmt(reason),
    }
}

fn quote_json(v: &Json) -> Quote {
    Quote::from_fmt(format_args!("{v}"))
}

impl Channel {
    /// Parses the JSON form under the default limits.
    ///
    /// ```
    /// use tidings_core::Channel;
    /// let ch = Channel::from_json(r#"{"t":"tag","v":[{"a":"red"},true,null,"s",-1]}"#).unwrap();
    /// assert_eq!(ch.to_string(), r#"{:tag, :red, true, nil, "s", -1}"#);
    /// ```
    pub fn from_json(json: &str) -> Result<Self, ChannelError> {
        Self::from_json_with(json, &ChannelLimits::DEFAULT)
    }

    /// Parses the JSON form under `limits`.
    pub fn from_json_with(json: &str, limits: &ChannelLimits) -> Result<Self, ChannelError> {
        let value: Json = serde_json::from_str(json).map_err(|e| json_err(format_args!("{e}")))?;
        Self::from_json_value(&value, limits)
    }

    /// Converts an already parsed JSON value.
    pub fn from_json_value(json: &Json, limits: &ChannelLimits) -> Result<Self, ChannelError> {
        let obj = match json {
            Json::Object(obj) => obj,
            Json::String(_) => {
                return Err(ChannelError::BareString {
                    got: quote_json(json),
                });
            }
            _ => {
                return Err(ChannelError::NotAChannel {
                    got: quote_json(json),
                });
            }
        };
        if let Some(k) = obj.keys().find(|k| *k != "t" && *k != "v") {
            return Err(json_err(format_args!(
                "unknown field {k:?}; only \"t\" and \"v\" are allowed"
            )));
        }
        let tag = match obj.get("t") {
            Some(Json::String(t)) => Atom::new(t)?,
            Some(other) => {
                return Err(json_err(format_args!(
                    "\"t\" must be a string naming the tag atom; got {other}"
                )));
            }
            None => return Err(json_err(format_args!("missing field \"t\""))),
        };
        let Some(values) = obj.get("v") else {
            return Ok(Channel::Atom(tag));
        };
        let Json::Array(values) = values else {
            return Err(json_err(format_args!(
                "\"v\" must be an array of values; got {values}"
            )));
        };
        if values.is_empty() {
            return Err(ChannelError::TooFewElements {
                size: 1,
                channel: quote_json(json),
            });
        }
        crate::sink::check_arity(values.len(), limits)?;
        let values = values
            .iter()
            .map(|v| json_value(v, json))
            .collect::<Result<Vec<_>, _>>()?;
        Channel::tuple_with(tag.as_str(), values, limits)
    }

    /// The JSON form as a string.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a channel always serializes to JSON")
    }
}

fn json_value(v: &Json, channel: &Json) -> Result<Value, ChannelError> {
    let not_primitive = || ChannelError::NotPrimitive {
        element: quote_json(v),
        channel: quote_json(channel),
    };
    Ok(match v {
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None if n.is_u64() => {
                return Err(ChannelError::IntegerOutOfRange {
                    literal: Quote::from_fmt(format_args!("{n}")),
                });
            }
            None => return Err(not_primitive()),
        },
        Json::String(s) => Value::str(s),
        Json::Bool(true) => Value::atom("true")?,
        Json::Bool(false) => Value::atom("false")?,
        Json::Null => Value::atom("nil")?,
        Json::Object(o) if o.len() == 1 => match o.get("a") {
            Some(Json::String(a)) => Value::atom(a)?,
            _ => return Err(not_primitive()),
        },
        _ => return Err(not_primitive()),
    })
}

/// A value in its JSON form (also how a [`UserId`](crate::UserId) travels).
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Int(i) => s.serialize_i64(*i),
            Value::Str(v) => s.serialize_str(v),
            Value::Atom(a) => match a.as_str() {
                "true" => s.serialize_bool(true),
                "false" => s.serialize_bool(false),
                "nil" => s.serialize_unit(),
                name => {
                    let mut m = s.serialize_map(Some(1))?;
                    m.serialize_entry("a", name)?;
                    m.end()
                }
            },
        }
    }
}

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let values = self.values();
        let mut m = s.serialize_map(Some(if values.is_empty() { 1 } else { 2 }))?;
        m.serialize_entry("t", self.tag().as_str())?;
        if !values.is_empty() {
            m.serialize_entry("v", &ValuesForm(values))?;
        }
        m.end()
    }
}

struct ValuesForm<'a>(&'a [Value]);

impl Serialize for ValuesForm<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = Json::deserialize(d)?;
        Channel::from_json_value(&json, &ChannelLimits::DEFAULT).map_err(D::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = Json::deserialize(d)?;
        json_value(&json, &json).map_err(D::Error::custom)
    }
}
