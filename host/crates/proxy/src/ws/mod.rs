//! WebSocket relay (`/ws?clientId=...`, or any other path with an upgrade).
//!
//! The proxy opens ComfyUI's socket first, with the browser's path and query (so the browser
//! keeps its own clientId), then answers the browser's handshake and relays frames opaquely
//! (text, binary previews, ping/pong, close codes).
//!
//! The browser's socket belongs to the host, not to ComfyUI's lifetime (see [`relay`]):
//! - ComfyUI unreachable: the browser's socket is accepted anyway; the host sends ComfyUI's
//!   `status` (empty queue, a clientId it mints when the page sent none) and a
//!   `comfyhost.comfyui` notice, and connects to ComfyUI under that clientId once it answers.
//! - ComfyUI's socket breaks mid-session (crash, restart): the browser socket stays open, gets
//!   an empty-queue `status` and the notice, and is reconnected the same way.
//! - ComfyUI refuses the upgrade with HTTP (403, 404...): that response goes to the browser.
//! - ComfyUI closes the socket on purpose (a code other than going-away/restart/error): the
//!   close frame goes to the browser.

mod handshake;
mod host_event;
mod host_socket;
mod hub;
mod owned_headers;
mod relay;
mod tap;
mod upstream_ws;

pub use host_event::{HOST_EVENT_PREFIX, HostEvent, HostEventError};
pub use host_socket::{HOST_CLIENT_ID_PREFIX, HostSocket, new_host_client_id};
pub use hub::{InjectError, WsHub};
pub use tap::WsTap;
pub use upstream_ws::{UpstreamSocket, UpstreamWsError};

pub(crate) use handshake::is_upgrade_request;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::error::ProxyError;
use crate::headers::{self, ForwardedFor};
use crate::state::ProxyState;
use relay::{Reconnect, RelayContext, relay};

/// `clientId` from a raw query string, decoded the way aiohttp decodes it.
pub(crate) fn client_id_from_query(path_and_query: &str) -> Option<String> {
    let query = path_and_query.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "clientId")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// Handle a browser upgrade request whose ComfyUI path-and-query is `upstream_pq`.
pub(crate) async fn handle(
    state: ProxyState,
    mut req: Request,
    upstream_pq: String,
    fwd: ForwardedFor<'_>,
) -> Response {
    let accept = match handshake::accept_key(req.method(), req.headers()) {
        Ok(a) => a,
        Err(e) => return ProxyError::BadRequest(e.to_string()).into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = state.config();
    let upstream = state.upstream();
    let mut up_headers = owned_headers::owned(req.headers());
    headers::to_upstream(&mut up_headers, &upstream, &fwd);
    let ws_config = upstream_ws::ws_config(config.ws_max_message_bytes);
    let connected = upstream_ws::connect(
        &upstream,
        &upstream_pq,
        up_headers.clone(),
        config.connect_timeout,
        config.response_timeout,
        ws_config,
    )
    .await;
    let client_id = client_id_from_query(&upstream_pq);

    let ctx = RelayContext {
        client_id,
        hub: state.hub(),
        injection_queue: config.ws_injection_queue,
        close_grace: config.ws_close_grace,
        reconnect: Reconnect {
            state: state.clone(),
            path_and_query: upstream_pq,
            headers: up_headers,
            ws_config,
        },
    };
    match connected {
        Ok((upstream_socket, upstream_resp)) => {
            let protocol = upstream_resp
                .headers()
                .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                .cloned();
            spawn_session(on_upgrade, ws_config, Some(upstream_socket), ctx);
            handshake::switching_protocols(&accept, protocol.as_ref())
        }
        Err(UpstreamWsError::Unreachable { upstream, cause }) => {
            // The socket is the host's: accepted now, connected to ComfyUI when it is back.
            tracing::debug!(%upstream, %cause, "ComfyUI unreachable for a WebSocket; the host holds the browser socket");
            spawn_session(on_upgrade, ws_config, None, ctx);
            handshake::switching_protocols(&accept, None)
        }
        Err(UpstreamWsError::Rejected(resp)) => rejected_response(*resp),
        Err(e @ UpstreamWsError::Handshake(_)) => {
            let snapshot = Box::new(state.upstream_state().snapshot());
            ProxyError::BrokenResponse {
                snapshot,
                upstream: upstream.to_string(),
                cause: e.to_string(),
            }
            .into_response()
        }
    }
}

/// Completes the browser's upgrade and runs its session.
fn spawn_session(
    on_upgrade: hyper::upgrade::OnUpgrade,
    ws_config: tokio_tungstenite::tungstenite::protocol::WebSocketConfig,
    upstream: Option<UpstreamSocket>,
    ctx: RelayContext,
) {
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let browser = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config),
                )
                .await;
                relay(browser, upstream, ctx).await;
            }
            Err(e) => tracing::debug!(error = %e, "browser WebSocket upgrade failed"),
        }
    });
}

/// ComfyUI's plain-HTTP refusal, passed to the browser.
fn rejected_response(resp: http::Response<Option<Vec<u8>>>) -> Response {
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_decoded_from_query() {
        assert_eq!(
            client_id_from_query("/ws?clientId=abc123").as_deref(),
            Some("abc123")
        );
        assert_eq!(
            client_id_from_query("/ws?x=1&clientId=a%20b").as_deref(),
            Some("a b")
        );
        assert_eq!(client_id_from_query("/ws?clientId="), None);
        assert_eq!(client_id_from_query("/ws"), None);
    }
}
