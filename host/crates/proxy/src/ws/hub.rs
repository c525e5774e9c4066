//! Registry of relayed browser sockets: host-message injection and tap fan-out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use comfyhost_protocol::WsMessage;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::host_event::HostEvent;
use super::tap::WsTap;

/// Why a host message was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InjectError {
    /// No browser socket with that clientId is relaying right now.
    #[error("no browser WebSocket with clientId {0:?} is connected")]
    NotConnected(String),
    /// The socket's injection queue is full (the browser is not reading).
    #[error("the injection queue for clientId {0:?} is full")]
    QueueFull(String),
}

struct Slot {
    conn: u64,
    tx: mpsc::Sender<Utf8Bytes>,
}

/// The browser sockets the proxy is relaying, by clientId.
///
/// Get it from [`crate::ProxyState::ws`]. When a clientId reconnects, the newest socket wins,
/// as in ComfyUI.
pub struct WsHub {
    clients: Mutex<HashMap<String, Slot>>,
    taps: Vec<Arc<dyn WsTap>>,
    next_conn: AtomicU64,
}

impl WsHub {
    pub(crate) fn new(taps: Vec<Arc<dyn WsTap>>) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            taps,
            next_conn: AtomicU64::new(1),
        }
    }

    /// Queue `event` for the browser socket `client_id`.
    pub fn send_to(&self, client_id: &str, event: &HostEvent) -> Result<(), InjectError> {
        self.send_text(client_id, Utf8Bytes::from(event.to_text()))
    }

    /// Queue a ComfyUI-native message (`{"type": "executing", "data": {...}}`) for the browser
    /// socket `client_id`. For jobs the host runs elsewhere (a remote ComfyUI, a serverless
    /// endpoint): the browser must see the same messages it would from its own ComfyUI, so
    /// these are not namespaced. Host-originated notices use [`WsHub::send_to`] instead.
    pub fn relay_comfy_message(
        &self,
        client_id: &str,
        message: &serde_json::Value,
    ) -> Result<(), InjectError> {
        self.send_text(client_id, Utf8Bytes::from(message.to_string()))
    }

    fn send_text(&self, client_id: &str, text: Utf8Bytes) -> Result<(), InjectError> {
        let clients = self.clients.lock();
        let slot = clients
            .get(client_id)
            .ok_or_else(|| InjectError::NotConnected(client_id.to_string()))?;
        slot.tx.try_send(text).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InjectError::QueueFull(client_id.to_string()),
            mpsc::error::TrySendError::Closed(_) => {
                InjectError::NotConnected(client_id.to_string())
            }
        })
    }

    /// Queue `event` for every browser socket; returns how many accepted it.
    pub fn broadcast(&self, event: &HostEvent) -> usize {
        let text = Utf8Bytes::from(event.to_text());
        self.clients
            .lock()
            .values()
            .filter(|slot| slot.tx.try_send(text.clone()).is_ok())
            .count()
    }

    /// clientIds of the browser sockets relaying now.
    pub fn clients(&self) -> Vec<String> {
        self.clients.lock().keys().cloned().collect()
    }

    /// Whether a browser socket with `client_id` is relaying now.
    pub fn is_connected(&self, client_id: &str) -> bool {
        self.clients.lock().contains_key(client_id)
    }

    pub(crate) fn has_taps(&self) -> bool {
        !self.taps.is_empty()
    }

    /// Register a socket; the returned guard unregisters it (and tells the taps) when dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        client_id: String,
        tx: mpsc::Sender<Utf8Bytes>,
    ) -> Registration {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        if self
            .clients
            .lock()
            .insert(client_id.clone(), Slot { conn, tx })
            .is_some()
        {
            tracing::debug!(%client_id, "browser WebSocket replaced an older one with the same clientId");
        }
        for tap in &self.taps {
            tap.on_open(&client_id);
        }
        Registration {
            hub: Arc::clone(self),
            client_id,
            conn,
        }
    }

    pub(crate) fn tap_text(&self, client_id: &str, message: &WsMessage) {
        for tap in &self.taps {
            tap.on_message(client_id, message);
        }
    }

    pub(crate) fn tap_binary(&self, client_id: &str, frame: &Bytes) {
        for tap in &self.taps {
            tap.on_binary(client_id, frame);
        }
    }
}

/// A registered browser socket; unregisters on drop.
pub(crate) struct Registration {
    hub: Arc<WsHub>,
    client_id: String,
    conn: u64,
}

impl Registration {
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        {
            let mut clients = self.hub.clients.lock();
            if clients
                .get(&self.client_id)
                .is_some_and(|s| s.conn == self.conn)
            {
                clients.remove(&self.client_id);
            }
        }
        for tap in &self.hub.taps {
            tap.on_close(&self.client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn inject_reaches_registered_socket_only() {
        let hub = Arc::new(WsHub::new(vec![]));
        let ev = HostEvent::new("comfyhost.status", json!({"a": 1})).unwrap();
        assert_eq!(
            hub.send_to("x", &ev),
            Err(InjectError::NotConnected("x".into()))
        );
        let (tx, mut rx) = mpsc::channel(1);
        let reg = hub.register("x".into(), tx);
        hub.send_to("x", &ev).unwrap();
        assert_eq!(
            hub.send_to("x", &ev),
            Err(InjectError::QueueFull("x".into()))
        );
        assert_eq!(rx.recv().await.unwrap().as_str(), ev.to_text());
        assert_eq!(hub.broadcast(&ev), 1);
        drop(reg);
        assert!(!hub.is_connected("x"));
    }

    #[test]
    fn newest_socket_wins_and_old_guard_does_not_evict_it() {
        let hub = Arc::new(WsHub::new(vec![]));
        let (tx1, _rx1) = mpsc::channel(1);
        let (tx2, _rx2) = mpsc::channel(1);
        let old = hub.register("x".into(), tx1);
        let _new = hub.register("x".into(), tx2);
        drop(old);
        assert!(hub.is_connected("x"));
        assert_eq!(hub.clients(), ["x"]);
    }
}
