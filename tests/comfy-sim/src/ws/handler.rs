//! `GET /ws?clientId=`: status on connect, `feature_flags` handshake, frames from the hub.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::Sim;
use crate::ws::Outgoing;

/// Query string of the upgrade request.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

/// Server feature flags (`GET /features` and the WS handshake answer).
pub fn server_features(sim: &Sim) -> Value {
    let max_upload_size = sim.opts.max_upload_size_mb * 1024 * 1024;
    if sim.opts.profile.is_current() {
        json!({
            "supports_preview_metadata": true,
            "supports_model_type_tags": true,
            "max_upload_size": max_upload_size,
            "extension": {"manager": {"supports_v4": true}},
            "node_replacements": true,
            "assets": false,
        })
    } else {
        json!({"supports_preview_metadata": true, "max_upload_size": max_upload_size})
    }
}

/// Upgrade handler.
pub async fn ws_handler(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let sid = q
        .client_id
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    ws.on_upgrade(move |socket| serve_socket(sim, sid, socket))
}

async fn serve_socket(sim: Arc<Sim>, sid: String, socket: WebSocket) {
    let (conn, mut rx) = sim.hub.register(&sid);
    // Snapshot the executing state with the registration, not after the hello went out:
    // a prompt the client posts right after reading the hello must not look like a
    // "reconnect while executing" (ComfyUI does the same check in one event-loop turn).
    let exec = sim.exec();
    let (mut sink, mut stream) = socket.split();
    let hello = crate::pyjson::to_string(
        &json!({"type": "status", "data": {"status": sim.exec_info(), "sid": sid}}),
    );
    if sink.send(Message::Text(hello.into())).await.is_err() {
        sim.hub.unregister(&sid, conn);
        return;
    }
    if exec.client_id.as_deref() == Some(sid.as_str())
        && let Some(node) = exec.last_node_id
    {
        let msg = crate::pyjson::to_string(&json!({"type": "executing", "data": {"node": node}}));
        let _ = sink.send(Message::Text(msg.into())).await;
    }
    let mut first_message = true;
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                let frame = match out {
                    Outgoing::Text(t) => Message::Text(t.into()),
                    Outgoing::Binary(b) => Message::Binary(b),
                };
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
            incoming = stream.next() => {
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        match serde_json::from_str::<Value>(text.as_str()) {
                            Ok(data) => {
                                if first_message && data.get("type").and_then(Value::as_str) == Some("feature_flags") {
                                    let flags = data.get("data").cloned().unwrap_or_else(|| json!({}));
                                    sim.hub.set_feature_flags(&sid, conn, &flags);
                                    sim.hub.send("feature_flags", server_features(&sim), Some(&sid));
                                }
                            }
                            Err(_) => tracing::warn!(sid, "Invalid JSON received from client"),
                        }
                        first_message = false;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    sim.hub.unregister(&sid, conn);
}
