//! The REST broadcast endpoints (P§3.4), blocking (`ureq`): callers run
//! them off the executor (`smol::unblock`).
//!
//! * batch: `POST <base>/api/broadcast?<query>` with
//!   `{"messages":[{topic, event, payload, private}]}` (the HTTP fallback);
//! * single: `POST <base>/api/broadcast/<subtopic>/events/<event>?<query>[&private=true]`
//!   with the raw payload (`Client::http_send`, `Client::http_send_binary`,
//!   and the fallback for binary broadcasts: the batch endpoint is JSON only).
//!
//! Headers as realtime-js: `apikey`, `Content-Type: application/json` (or
//! `application/octet-stream` for bytes), and `Authorization: Bearer <token>`
//! when there is a token. Any 2xx (the server answers 202) is success.

use std::time::Duration;

use serde_json::Value;

use crate::frame::Payload;

use super::conn::HttpBroadcast;
use super::error::{Error, ErrorCode};
use super::tls::TlsOptions;
use super::wire::{self, HttpEndpoint};

const JSON: &str = "application/json";
const OCTET_STREAM: &str = "application/octet-stream";

/// Largest response body read (for error messages).
const MAX_BODY: u64 = 64 * 1024;

/// One client's HTTP side: the endpoint, the apikey and a pooled agent.
pub(crate) struct Http {
    endpoint: HttpEndpoint,
    apikey: Option<String>,
    agent: ureq::Agent,
}

impl Http {
    /// `timeout` bounds each whole request (realtime-js aborts its fetch
    /// after the push timeout).
    #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
    pub(crate) fn new(
        socket_url: &str,
        apikey: Option<String>,
        timeout: Duration,
        tls: &TlsOptions,
    ) -> Result<Self, Error> {
        let endpoint = HttpEndpoint::from_socket_url(socket_url)?;
        let builder = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("tidings-ws/", env!("CARGO_PKG_VERSION")));
        #[cfg(feature = "tls")]
        let builder = builder.tls_config(super::tls::http_config(tls));
        Ok(Self {
            endpoint,
            apikey,
            agent: builder.build().into(),
        })
    }

    /// POSTs a fallback broadcast: JSON to the batch endpoint, bytes to the
    /// single endpoint.
    pub(crate) fn broadcast(&self, req: &HttpBroadcast) -> Result<(), Error> {
        let Some(batch) = req.body() else {
            return self.send(
                &req.topic,
                &req.event,
                &req.payload,
                req.private,
                req.token.as_deref(),
            );
        };
        let url = self.endpoint.batch_url();
        let (status, body) = self.post(&url, req.token.as_deref(), JSON, batch.as_bytes())?;
        check(status, &body, &url, false).map_err(|e| e.with("topic", req.topic.clone()))
    }

    /// POSTs `payload` as is to the single endpoint: JSON as
    /// `application/json`, bytes as `application/octet-stream`.
    pub(crate) fn send(
        &self,
        topic: &str,
        event: &str,
        payload: &Payload,
        private: bool,
        token: Option<&str>,
    ) -> Result<(), Error> {
        let url = self
            .endpoint
            .single_url(wire::subtopic(topic), event, private);
        let (content_type, bytes) = match payload {
            Payload::Json(j) => (JSON, j.get().as_bytes()),
            Payload::Binary(b) => (OCTET_STREAM, b.as_slice()),
        };
        let (status, body) = self.post(&url, token, content_type, bytes)?;
        check(status, &body, &url, true).map_err(|e| e.with("topic", topic.to_owned()))
    }

    fn post(
        &self,
        url: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, String), Error> {
        #[cfg(not(feature = "tls"))]
        if url.starts_with("https://") {
            return Err(Error::new(
                ErrorCode::Unsupported,
                "https:// needs TLS, which this build does not include (feature `tls`)",
            )
            .with("url", path_of(url)));
        }
        let mut r = self.agent.post(url).header("Content-Type", content_type);
        if let Some(k) = &self.apikey {
            r = r.header("apikey", k);
        }
        if let Some(t) = token {
            r = r.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = r.send(body).map_err(|e| request_error(&e, url))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .unwrap_or_default();
        Ok((status, text))
    }
}

/// The URL without its query (which carries the apikey), for error context.
fn path_of(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

fn request_error(e: &ureq::Error, url: &str) -> Error {
    let (code, what) = match e {
        ureq::Error::Timeout(_) => (ErrorCode::Timeout, "the HTTP request timed out"),
        ureq::Error::Http(_) | ureq::Error::BadUri(_) => {
            (ErrorCode::InvalidInput, "the HTTP request is invalid")
        }
        ureq::Error::Tls(_) => (ErrorCode::Tls, "the TLS handshake failed"),
        #[cfg(feature = "tls")]
        ureq::Error::Rustls(_) => (ErrorCode::Tls, "the TLS handshake failed"),
        #[cfg(feature = "tls")]
        ureq::Error::Io(io) if super::tls::tls_failure(io).is_some() => {
            (ErrorCode::Tls, "the TLS handshake failed")
        }
        _ => (ErrorCode::Io, "the HTTP request failed"),
    };
    Error::new(code, what)
        .with("url", path_of(url))
        .with("reason", e.to_string())
}

/// 2xx is success; anything else an error carrying the server's
/// `error`/`message` (realtime-js `httpSend`).
fn check(status: u16, body: &str, url: &str, single: bool) -> Result<(), Error> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let reason = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        ["error", "message"]
            .iter()
            .find_map(|k| v.get(k).and_then(Value::as_str).map(str::to_owned))
    });
    let (code, message) = match status {
        404 if single => (
            ErrorCode::Unsupported,
            "the server is too old for POST /api/broadcast/:topic/events/:event \
             (Supabase Realtime has it from 2.97.0); upgrade the server"
                .to_owned(),
        ),
        404 => (
            ErrorCode::Unsupported,
            "the server has no REST broadcast endpoint (POST /api/broadcast)".to_owned(),
        ),
        401 | 403 => (
            ErrorCode::Unauthorized,
            reason
                .unwrap_or_else(|| format!("the server refused the broadcast with HTTP {status}")),
        ),
        _ => (
            ErrorCode::Rejected,
            reason
                .unwrap_or_else(|| format!("the server refused the broadcast with HTTP {status}")),
        ),
    };
    let mut snippet: String = body.chars().take(512).collect();
    if snippet.len() < body.len() {
        snippet.push('…');
    }
    Err(Error::new(code, message)
        .with("url", path_of(url))
        .with("status", status.to_string())
        .with("body", snippet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_codes_and_server_messages() {
        assert!(check(202, "", "http://h/api/broadcast", false).is_ok());
        assert!(check(200, "", "http://h/api/broadcast", true).is_ok());
        let e = check(404, "", "http://h/api/broadcast/r/events/e?apikey=K", true).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert!(e.message.contains("too old"), "{e}");
        assert_eq!(e.context("url"), Some("http://h/api/broadcast/r/events/e"));
        let e = check(
            429,
            r#"{"error":"You have exceeded your rate limit"}"#,
            "u",
            false,
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str(), e.context("status")),
            (
                ErrorCode::Rejected,
                "You have exceeded your rate limit",
                Some("429")
            )
        );
        let e = check(403, r#"{"message":"suspended"}"#, "u", false).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::Unauthorized, "suspended")
        );
        let e = check(500, "<html>", "u", false).unwrap_err();
        assert_eq!(e.message, "the server refused the broadcast with HTTP 500");
        assert_eq!(e.context("body"), Some("<html>"));
    }
}
