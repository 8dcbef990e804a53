//! The framework-agnostic HTTP layer: a request in, a typed [`Route`] (or a
//! ready error response) out. Any HTTP server can embed Tidings through it;
//! [`crate::server`] is the bundled `tiny_http` binding.

use serde::Serialize;
use tidings_core::{HandshakeId, InstanceId};

use crate::session::{Session, SessionKeys};
use crate::wire::{CommandRequest, ErrorDetail, ErrorJson, HandshakeRequest, NavigateRequest};

/// Most bytes in a request body (1 MiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Where the browser client is served.
pub const CLIENT_JS_PATH: &str = "/tidings/client.js";

/// A request, as any HTTP server can describe it.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// `GET`, `POST`, ….
    pub method: &'a str,
    /// Path and query, e.g. `/tidings/events?instance_id=…`.
    pub url: &'a str,
    /// The `Cookie` header, if any.
    pub cookie: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// A Tidings endpoint with its validated input.
#[derive(Debug)]
pub enum Route {
    /// `POST /tidings/handshake`.
    Handshake(Session, HandshakeRequest),
    /// `GET /tidings/events?instance_id=…&handshake_id=…`: open the stream.
    Events {
        /// Who asks.
        session: Session,
        /// The tab.
        instance: InstanceId,
        /// From the handshake.
        handshake_id: HandshakeId,
    },
    /// `POST /tidings/command`.
    Command(Session, CommandRequest),
    /// `POST /tidings/navigate`.
    Navigate(Session, NavigateRequest),
    /// `GET /tidings/client.js`.
    ClientJs,
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A JSON response.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::to_vec(value).expect("response bodies always serialize"),
        }
    }

    /// `{"error": {"code", "message"}}` with a 4xx/5xx status.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::json(
            status,
            &ErrorJson {
                error: ErrorDetail {
                    code: code.to_owned(),
                    message: message.into(),
                },
            },
        )
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Splits a URL into its path and query.
pub fn split_url(url: &str) -> (&str, &str) {
    url.split_once('?').unwrap_or((url, ""))
}

/// The first value of `name` in a query string (ids need no decoding).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn parse_body<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, HttpResponse> {
    serde_json::from_slice(body)
        .map_err(|e| HttpResponse::error(400, "bad_request", format!("invalid request body: {e}")))
}

/// Routes a request. `Ok(None)`: not a Tidings path, the app serves it.
///
/// ```
/// use tidings_sse::http::{route, HttpRequest};
/// use tidings_sse::session::SessionKeys;
/// let keys = SessionKeys::new(b"secret");
/// let req = HttpRequest { method: "POST", url: "/tidings/command", cookie: None, body: b"{}" };
/// assert_eq!(route(&req, &keys).unwrap_err().status, 401);
/// let other = HttpRequest { method: "GET", url: "/", cookie: None, body: b"" };
/// assert!(route(&other, &keys).unwrap().is_none());
/// ```
pub fn route(req: &HttpRequest<'_>, keys: &SessionKeys) -> Result<Option<Route>, HttpResponse> {
    let (path, query) = split_url(req.url);
    let expected = match path {
        CLIENT_JS_PATH | "/tidings/events" => "GET",
        "/tidings/handshake" | "/tidings/command" | "/tidings/navigate" => "POST",
        _ => return Ok(None),
    };
    if req.method != expected {
        return Err(HttpResponse::error(
            405,
            "method_not_allowed",
            format!("{path} takes {expected}"),
        )
        .with_header("Allow", expected.to_owned()));
    }
    if path == CLIENT_JS_PATH {
        return Ok(Some(Route::ClientJs));
    }
    if req.body.len() > MAX_BODY_BYTES {
        return Err(HttpResponse::error(
            413,
            "body_too_large",
            format!(
                "request body has {} bytes; at most {MAX_BODY_BYTES} are allowed",
                req.body.len()
            ),
        ));
    }
    let Some(session) = req.cookie.and_then(|c| keys.from_cookie_header(c)) else {
        return Err(HttpResponse::error(
            401,
            "unauthorized",
            "no valid session cookie; load the page first",
        ));
    };
    Ok(Some(match path {
        "/tidings/handshake" => Route::Handshake(session, parse_body(req.body)?),
        "/tidings/command" => Route::Command(session, parse_body(req.body)?),
        "/tidings/navigate" => Route::Navigate(session, parse_body(req.body)?),
        _ => {
            let bad = |what: &str| {
                HttpResponse::error(
                    400,
                    "bad_request",
                    format!("query parameter {what} is missing or not a UUIDv4"),
                )
            };
            let instance = query_param(query, "instance_id")
                .and_then(|v| InstanceId::parse(v).ok())
                .ok_or_else(|| bad("instance_id"))?;
            let handshake_id = query_param(query, "handshake_id")
                .and_then(|v| HandshakeId::parse(v).ok())
                .ok_or_else(|| bad("handshake_id"))?;
            Route::Events {
                session,
                instance,
                handshake_id,
            }
        }
    }))
}
