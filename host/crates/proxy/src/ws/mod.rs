//! WebSocket relay (`/ws?clientId=...`, or any other path with an upgrade).
//!
//! The proxy opens ComfyUI's socket first, with the browser's path and query (so the browser
//! keeps its own clientId), then answers the browser's handshake and relays frames opaquely
//! (text, binary previews, ping/pong, close codes).
//!
//! - ComfyUI unreachable: the browser's socket is accepted and closed at once with
//!   `1013 Try Again Later` and a reason naming the supervisor state.
//! - ComfyUI refuses the upgrade with HTTP (403, 404...): that response goes to the browser.
//! - ComfyUI's socket breaks mid-session: the browser gets `1012 Service Restart` (planned
//!   restart) or `1011 Internal Error`, never a hanging socket.

mod handshake;
mod host_event;
mod host_socket;
mod hub;
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
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::error::ProxyError;
use crate::headers::{self, ForwardedFor};
use crate::state::ProxyState;
use futures::{SinkExt, StreamExt};
use relay::{RelayContext, close_frame, relay};

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
    let mut up_headers = req.headers().clone();
    headers::to_upstream(&mut up_headers, &upstream, &fwd);
    let ws_config = upstream_ws::ws_config(config.ws_max_message_bytes);
    let connected = upstream_ws::connect(
        &upstream,
        &upstream_pq,
        up_headers,
        config.connect_timeout,
        config.response_timeout,
        ws_config,
    )
    .await;
    let client_id = client_id_from_query(&upstream_pq);

    match connected {
        Ok((upstream_socket, upstream_resp)) => {
            let protocol = upstream_resp
                .headers()
                .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                .cloned();
            let ctx = RelayContext {
                client_id,
                hub: state.hub(),
                upstream_state: state.upstream_state(),
                injection_queue: config.ws_injection_queue,
                close_grace: config.ws_close_grace,
            };
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let browser = WebSocketStream::from_raw_socket(
                            TokioIo::new(upgraded),
                            Role::Server,
                            Some(ws_config),
                        )
                        .await;
                        relay(browser, upstream_socket, ctx).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "browser WebSocket upgrade failed"),
                }
            });
            handshake::switching_protocols(&accept, protocol.as_ref())
        }
        Err(UpstreamWsError::Unreachable { upstream, cause }) => {
            let snapshot = Box::new(state.upstream_state().snapshot());
            tracing::debug!(%upstream, %cause, state = %snapshot.state, "ComfyUI unreachable for a WebSocket");
            let reason = format!("ComfyUI is not running (state: {})", snapshot.state);
            let grace = config.ws_close_grace;
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let mut browser = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config),
                )
                .await;
                let frame = close_frame(CloseCode::Again, &reason);
                if browser.send(Message::Close(Some(frame))).await.is_ok() {
                    let _ = tokio::time::timeout(grace, async {
                        while browser.next().await.is_some() {}
                    })
                    .await;
                }
            });
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
