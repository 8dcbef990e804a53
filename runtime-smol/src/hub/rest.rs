//! The hub's side of the REST broadcast endpoints ([`crate::rest`]): a call
//! the worker validated is authenticated, authorized and broadcast here,
//! all or nothing. The broadcasts take the same road as a Phoenix client's
//! (`ws_broadcast`): the router's `broadcast_action_except`, whose fan-out
//! `drain_outputs` renders for sockets with `ws_fanout` (one shared text
//! `broadcast` frame per version; for a binary payload, one kind-4 frame
//! for V2 sockets and nothing for V1 ones) and for pages as SSE events
//! (JSON payloads only). Nobody is excluded: an HTTP caller has no socket
//! to echo to.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tidings_core::{Channel, InstanceId, Peer};
use tidings_sse::session::Session;

use super::Hub;
use crate::app::Access;
use crate::rest::{RestCall, RestError, topic_of};

impl Hub {
    /// Authenticates `call`'s key, authorizes a broadcast on each distinct
    /// channel with its bearer token, then broadcasts every message in
    /// order; a refusal broadcasts nothing.
    pub(crate) fn rest_broadcast(
        &mut self,
        session: &Session,
        call: RestCall,
    ) -> Result<(), RestError> {
        let app = &*self.app;
        match catch_unwind(AssertUnwindSafe(|| {
            app.authenticate(call.apikey.as_deref())
        })) {
            Err(_) => {
                return Err(RestError::HookPanicked {
                    hook: "authenticate",
                });
            }
            Ok(Err(msg)) => return Err(RestError::Unauthenticated(msg)),
            Ok(Ok(())) => {}
        }
        // The caller as `authorize` sees it: a one-off instance of its
        // session (the cookie's, if it sent one).
        let peer = Peer {
            instance: InstanceId::mint(&mut self.entropy),
            session: session.id,
            user: session.user.clone(),
        };
        let token = call.token.as_deref();
        let mut allowed: Vec<&Channel> = Vec::new();
        for m in &call.messages {
            if allowed.contains(&&m.channel) {
                continue;
            }
            let verdict = catch_unwind(AssertUnwindSafe(|| {
                app.authorize(&peer, Access::Broadcast, &m.channel, token)
            }));
            match verdict {
                Err(_) => return Err(RestError::HookPanicked { hook: "authorize" }),
                Ok(Err(reason)) => {
                    return Err(RestError::Forbidden {
                        topic: topic_of(&m.channel),
                        reason,
                    });
                }
                Ok(Ok(())) => allowed.push(&m.channel),
            }
        }
        for m in call.messages {
            // Channel and event were validated by the worker; the router
            // cannot refuse them. A binary payload keeps its flag.
            let _ =
                self.router
                    .broadcast_action_except(&[], m.channel, m.event.as_str(), m.payload);
        }
        Ok(())
    }
}
