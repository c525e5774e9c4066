//! Read-only view of the messages ComfyUI sends to each browser socket.

use bytes::Bytes;
use comfyhost_protocol::WsMessage;

/// Sees what ComfyUI sends to each proxied browser socket, keyed by that socket's clientId
/// (from `?clientId=`, or the `sid` ComfyUI assigns in its first `status` message).
///
/// This is where the host detects finished outputs (`executed`, `execution_success`,
/// `executing {node:null}`): the proxy has no separate output hook.
///
/// Callbacks run synchronously on the relay task, in frame order: they must not block. Hand
/// work off to a channel or task.
pub trait WsTap: Send + Sync + 'static {
    /// A browser socket for `client_id` is relaying.
    fn on_open(&self, client_id: &str) {
        let _ = client_id;
    }

    /// ComfyUI sent a text frame to `client_id`. Frames whose known `type` has an unexpected
    /// shape arrive as [`WsMessage::Other`] with their raw `data`.
    fn on_message(&self, client_id: &str, message: &WsMessage);

    /// ComfyUI sent a binary frame (previews, progress text) to `client_id`.
    fn on_binary(&self, client_id: &str, frame: &Bytes) {
        let _ = (client_id, frame);
    }

    /// The browser socket for `client_id` is gone.
    fn on_close(&self, client_id: &str) {
        let _ = client_id;
    }
}

/// Parse a text frame for taps; never fails.
pub(crate) fn parse_for_tap(text: &str) -> WsMessage {
    WsMessage::parse(text).unwrap_or_else(|err| {
        let raw: serde_json::Value = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        let kind = raw
            .get("type")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        tracing::debug!(%err, %kind, "ComfyUI WebSocket message does not match the known shape");
        WsMessage::Other {
            kind,
            data: raw.get("data").cloned().unwrap_or(serde_json::Value::Null),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_shapes_become_other() {
        let m = parse_for_tap(r#"{"type":"executed","data":{"node":1}}"#);
        assert!(matches!(m, WsMessage::Other { ref kind, .. } if kind == "executed"));
        let m = parse_for_tap("not json");
        assert_eq!(m.kind(), "");
        let m = parse_for_tap(
            r#"{"type":"status","data":{"status":{"exec_info":{"queue_remaining":0}},"sid":"a"}}"#,
        );
        assert!(matches!(m, WsMessage::Status(_)));
    }
}
