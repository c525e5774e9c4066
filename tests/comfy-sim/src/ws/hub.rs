//! Connected WebSocket clients and ComfyUI's `send_sync(event, data, sid)` semantics:
//! `sid = None` broadcasts, otherwise only that client gets the message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A frame queued for one socket.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A JSON text frame.
    Text(String),
    /// A binary frame (previews).
    Binary(Bytes),
}

struct Client {
    conn: u64,
    tx: mpsc::UnboundedSender<Outgoing>,
    supports_preview_metadata: bool,
}

/// All connected sockets by sid.
#[derive(Default)]
pub struct Hub {
    clients: Mutex<HashMap<String, Client>>,
    next_conn: AtomicU64,
}

/// Binary event type of a preview image (`BinaryEventTypes.PREVIEW_IMAGE`).
pub const PREVIEW_IMAGE: u32 = 1;
/// Binary event type of a node's progress text (`BinaryEventTypes.TEXT`).
pub const TEXT: u32 = 3;
/// Binary event type of a preview with metadata (`PREVIEW_IMAGE_WITH_METADATA`).
pub const PREVIEW_IMAGE_WITH_METADATA: u32 = 4;

impl Hub {
    /// Registers a socket under `sid`, replacing any previous socket with that sid.
    pub fn register(&self, sid: &str) -> (u64, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut clients = self.lock();
        if clients.contains_key(sid) {
            tracing::info!(sid, "Reusing existing session");
        }
        clients.insert(
            sid.to_string(),
            Client {
                conn,
                tx,
                supports_preview_metadata: false,
            },
        );
        (conn, rx)
    }

    /// Removes `sid` if it still belongs to connection `conn`.
    pub fn unregister(&self, sid: &str, conn: u64) {
        let mut clients = self.lock();
        if clients.get(sid).is_some_and(|c| c.conn == conn) {
            clients.remove(sid);
        }
    }

    /// Records the client's `feature_flags`.
    pub fn set_feature_flags(&self, sid: &str, conn: u64, flags: &Value) {
        if let Some(c) = self.lock().get_mut(sid).filter(|c| c.conn == conn) {
            c.supports_preview_metadata = flags
                .get("supports_preview_metadata")
                .and_then(Value::as_bool)
                == Some(true);
        }
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends `{"type": event, "data": data}` to `sid`, or to everyone when `sid` is `None`.
    pub fn send(&self, event: &str, data: Value, sid: Option<&str>) {
        let text = crate::pyjson::to_string(&json!({"type": event, "data": data}));
        let clients = self.lock();
        match sid {
            Some(sid) => {
                if let Some(c) = clients.get(sid) {
                    let _ = c.tx.send(Outgoing::Text(text));
                }
            }
            None => {
                for c in clients.values() {
                    let _ = c.tx.send(Outgoing::Text(text.clone()));
                }
            }
        }
    }

    /// Sends a PNG preview: type 4 (with metadata) to clients that announced
    /// `supports_preview_metadata`, type 1 to the others.
    pub fn send_preview(&self, png: &[u8], metadata: &Value, sid: Option<&str>) {
        let plain = {
            let mut b = Vec::with_capacity(png.len() + 8);
            b.extend_from_slice(&PREVIEW_IMAGE.to_be_bytes());
            b.extend_from_slice(&2u32.to_be_bytes()); // 2 = PNG
            b.extend_from_slice(png);
            Bytes::from(b)
        };
        let with_meta = {
            let meta = crate::pyjson::to_string(metadata);
            let mut b = Vec::with_capacity(png.len() + meta.len() + 8);
            b.extend_from_slice(&PREVIEW_IMAGE_WITH_METADATA.to_be_bytes());
            b.extend_from_slice(&(meta.len() as u32).to_be_bytes());
            b.extend_from_slice(meta.as_bytes());
            b.extend_from_slice(png);
            Bytes::from(b)
        };
        let clients = self.lock();
        let pick = |c: &Client| {
            if c.supports_preview_metadata {
                with_meta.clone()
            } else {
                plain.clone()
            }
        };
        match sid {
            Some(sid) => {
                if let Some(c) = clients.get(sid) {
                    let _ = c.tx.send(Outgoing::Binary(pick(c)));
                }
            }
            None => {
                for c in clients.values() {
                    let _ = c.tx.send(Outgoing::Binary(pick(c)));
                }
            }
        }
    }

    /// `send_progress_text(text, node_id, sid)`: type 3, then the node id's length (4 bytes,
    /// big-endian), the node id and the UTF-8 text.
    pub fn send_progress_text(&self, text: &str, node_id: &str, sid: Option<&str>) {
        let mut b = Vec::with_capacity(8 + node_id.len() + text.len());
        b.extend_from_slice(&TEXT.to_be_bytes());
        b.extend_from_slice(&(node_id.len() as u32).to_be_bytes());
        b.extend_from_slice(node_id.as_bytes());
        b.extend_from_slice(text.as_bytes());
        let frame = Bytes::from(b);
        let clients = self.lock();
        match sid {
            Some(sid) => {
                if let Some(c) = clients.get(sid) {
                    let _ = c.tx.send(Outgoing::Binary(frame));
                }
            }
            None => {
                for c in clients.values() {
                    let _ = c.tx.send(Outgoing::Binary(frame.clone()));
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Client>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn targeted_messages_reach_only_their_client_and_reuse_replaces() {
        let hub = Hub::default();
        let (_a, mut ra) = hub.register("a");
        let (_b, mut rb) = hub.register("b");
        hub.send("executing", json!({"node": "1"}), Some("a"));
        hub.send("status", json!({}), None);
        assert!(
            matches!(ra.try_recv(), Ok(Outgoing::Text(t)) if t.starts_with("{\"type\": \"executing\""))
        );
        assert!(matches!(ra.try_recv(), Ok(Outgoing::Text(_))));
        assert!(matches!(rb.try_recv(), Ok(Outgoing::Text(t)) if t.contains("status")));
        assert!(rb.try_recv().is_err());

        let (new_a, mut ra2) = hub.register("a");
        hub.send("x", json!({}), Some("a"));
        assert!(ra2.try_recv().is_ok());
        assert!(ra.try_recv().is_err());
        hub.unregister("a", new_a - 2); // stale connection id: no effect
        assert_eq!(hub.len(), 2);
    }
}
