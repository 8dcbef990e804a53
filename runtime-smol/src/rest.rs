//! Supabase's REST broadcast endpoints (P§3.4, checklist P§10 item 12), on
//! the same listener as SSE and the Phoenix sockets: `POST /api/broadcast`
//! (a JSON batch) and `POST /api/broadcast/<topic>/events/<event>` (one
//! payload: JSON, or any bytes as `application/octet-stream`), both also
//! under `/realtime/v1`.
//!
//! The wire (paths, validation, statuses, error messages, the differences
//! from Supabase) is sans-IO in [`tidings_ws::server::rest`], whose items
//! are re-exported here. This module is the glue: it reads a request off
//! the `tiny_http` listener (refusing what the head alone refuses before
//! it reads any body, and a body over [`RestConfig::max_body_bytes`]
//! without reading past it), [`parse`]s it, and hands the validated
//! [`RestCall`] to the hub, which authenticates its key with
//! [`App::authenticate`](crate::App::authenticate) (401 if refused),
//! authorizes [`Access::Broadcast`](crate::Access::Broadcast) on each of its
//! channels with [`App::authorize`](crate::App::authorize), given the bearer
//! token (403), and broadcasts it, all or nothing. The answer is 202 with
//! an empty body ([`accepted`]), or the error as
//! `{"error": "<what was wrong and what is allowed>"}` ([`error_response`];
//! 500 if an app hook panicked, 503 if the hub is not running).

use std::io::Read;

use tidings_core::{Channel, OsEntropy};
use tidings_sse::http::{HttpResponse, split_url};
use tidings_sse::server::respond;
use tidings_sse::session::SessionKeys;
use tidings_ws::server::topic::{REALTIME_PREFIX, realtime_topic};

pub use tidings_ws::server::rest::{
    BROADCAST_PATHS, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_MESSAGES, Endpoint, RestCall, RestConfig,
    RestError, RestHead, RestMessage, is_rest_path, parse, route,
};

use crate::handle::HubHandle;
use crate::hub::HubMsg;

/// The response to a refused call: [`RestError::body_json`] as
/// `application/json` with [`RestError::status`] (and `Allow: POST` on a
/// 405, [`RestError::allow`]).
///
/// ```
/// use tidings_smol::rest::{RestError, error_response};
/// let resp = error_response(&RestError::MethodNotAllowed { method: "GET".into() });
/// assert_eq!((resp.status, resp.content_type), (405, "application/json"));
/// assert_eq!(resp.headers, [("Allow", "POST".to_owned())]);
/// assert_eq!(resp.body, br#"{"error":"method GET is not allowed here; only POST is"}"#);
/// ```
pub fn error_response(e: &RestError) -> HttpResponse {
    HttpResponse {
        status: e.status(),
        content_type: "application/json",
        headers: e
            .allow()
            .map(|methods| ("Allow", methods.to_owned()))
            .into_iter()
            .collect(),
        body: e.body_json().into_bytes(),
    }
}

/// The 202 answer to an accepted call.
pub fn accepted() -> HttpResponse {
    HttpResponse {
        status: 202,
        content_type: "text/plain; charset=utf-8",
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// `realtime:<name>` for a message's channel, for error messages.
pub(crate) fn topic_of(channel: &Channel) -> String {
    realtime_topic(channel).unwrap_or_else(|| format!("{REALTIME_PREFIX}{channel}"))
}

// -- the tiny_http glue --------------------------------------------------------

/// Whether a request is for the REST endpoints.
pub(crate) fn is_rest(rq: &tiny_http::Request) -> bool {
    is_rest_path(split_url(rq.url()).0)
}

fn header<'a>(rq: &'a tiny_http::Request, name: &'static str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Reads at most `max` bytes of body; more is a [`RestError::BodyTooLarge`].
fn read_body(rq: &mut tiny_http::Request, max: usize) -> Result<Vec<u8>, RestError> {
    if rq.body_length().is_some_and(|n| n > max) {
        return Err(RestError::BodyTooLarge { max });
    }
    let mut body = Vec::new();
    rq.as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| RestError::BodyUnreadable(e.to_string()))?;
    if body.len() > max {
        return Err(RestError::BodyTooLarge { max });
    }
    Ok(body)
}

fn call(
    rq: &mut tiny_http::Request,
    hub: &HubHandle,
    keys: &SessionKeys,
    config: &RestConfig,
) -> Result<(), RestError> {
    let owned = |name| header(rq, name).map(str::to_owned);
    let method = rq.method().as_str().to_owned();
    let url = rq.url().to_owned();
    let content_type = owned("Content-Type");
    let apikey = owned("apikey").or_else(|| owned("x-api-key"));
    let authorization = owned("Authorization");
    let cookie = owned("Cookie");
    let head = RestHead {
        method: &method,
        url: &url,
        content_type: content_type.as_deref(),
        apikey: apikey.as_deref(),
        authorization: authorization.as_deref(),
    };
    // What the head alone refuses is refused before any body is read.
    route(&head)?;
    let body = read_body(rq, config.max_body_bytes)?;
    let call = parse(&head, &body, config)?;
    let session = cookie
        .and_then(|c| keys.from_cookie_header(&c))
        .unwrap_or_else(|| keys.mint(&mut OsEntropy));
    let (reply, answer) = async_channel::bounded(1);
    let msg = HubMsg::Rest {
        session,
        call,
        reply,
    };
    hub.tx
        .send_blocking(msg)
        .map_err(|_| RestError::Unavailable)?;
    answer.recv_blocking().map_err(|_| RestError::Unavailable)?
}

/// Answers a REST request on a worker thread: validates it, has the hub
/// broadcast it, and responds 202 or the error.
pub(crate) fn serve(
    mut rq: tiny_http::Request,
    hub: &HubHandle,
    keys: &SessionKeys,
    config: &RestConfig,
) {
    let resp = match call(&mut rq, hub, keys, config) {
        Ok(()) => accepted(),
        Err(e) => error_response(&e),
    };
    let _ = respond(rq, resp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_answers_json_with_its_message() {
        let e = RestError::Forbidden {
            topic: "realtime:x".into(),
            reason: "no".into(),
        };
        let resp = error_response(&e);
        assert_eq!((resp.status, resp.content_type), (403, "application/json"));
        assert!(resp.headers.is_empty());
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "Unauthorized: cannot broadcast on realtime:x: no"})
        );
        let e = route(&RestHead {
            method: "PUT",
            url: "/api/broadcast",
            content_type: None,
            apikey: None,
            authorization: None,
        })
        .unwrap_err();
        assert_eq!(
            error_response(&e).headers,
            vec![("Allow", "POST".to_owned())],
            "a 405 says what is allowed"
        );
        let ok = accepted();
        assert_eq!((ok.status, ok.body.len()), (202, 0));
    }

    #[test]
    fn topic_of_names_the_realtime_topic() {
        let ch = tidings_ws::server::topic::realtime_channel("room 1").unwrap();
        assert_eq!(topic_of(&ch), "realtime:room 1");
    }
}
