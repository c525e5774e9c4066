//! Registry of relayed browser sockets: host-message injection and tap fan-out.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use comfyhost_protocol::WsMessage;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

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
    /// Frames injected into this socket (host notices, relayed remote-job messages).
    tx: mpsc::Sender<Message>,
}

/// How long a message kept for an absent page waits for it to come back.
const KEEP_FOR: Duration = Duration::from_secs(15 * 60);
/// Messages kept per clientId (the oldest go first).
const KEEP_PER_CLIENT: usize = 32;
/// clientIds with kept messages (the stalest go first).
const KEEP_CLIENTS: usize = 4096;

/// Messages waiting for a page that is away (reloading, offline), by clientId.
#[derive(Default)]
struct Kept {
    by_client: HashMap<String, VecDeque<(Instant, Utf8Bytes)>>,
}

impl Kept {
    fn keep(&mut self, client_id: &str, text: Utf8Bytes) {
        let now = Instant::now();
        self.by_client.retain(|_, q| {
            q.back()
                .is_some_and(|(t, _)| now.duration_since(*t) < KEEP_FOR)
        });
        if !self.by_client.contains_key(client_id) && self.by_client.len() >= KEEP_CLIENTS {
            let stalest = self
                .by_client
                .iter()
                .min_by_key(|(_, q)| q.back().map(|(t, _)| *t))
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                self.by_client.remove(&k);
            }
        }
        let q = self.by_client.entry(client_id.to_string()).or_default();
        if q.len() >= KEEP_PER_CLIENT {
            q.pop_front();
        }
        q.push_back((now, text));
    }

    fn take(&mut self, client_id: &str) -> Vec<Utf8Bytes> {
        let now = Instant::now();
        self.by_client
            .remove(client_id)
            .map(|q| {
                q.into_iter()
                    .filter(|(t, _)| now.duration_since(*t) < KEEP_FOR)
                    .map(|(_, m)| m)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The browser sockets the proxy is relaying, by clientId.
///
/// Get it from [`crate::ProxyState::ws`]. When a clientId reconnects, the newest socket wins,
/// as in ComfyUI.
pub struct WsHub {
    clients: Mutex<HashMap<String, Slot>>,
    kept: Mutex<Kept>,
    taps: Vec<Arc<dyn WsTap>>,
    next_conn: AtomicU64,
}

impl WsHub {
    pub(crate) fn new(taps: Vec<Arc<dyn WsTap>>) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            kept: Mutex::new(Kept::default()),
            taps,
            next_conn: AtomicU64::new(1),
        }
    }

    /// Queue `event` for the browser socket `client_id`.
    pub fn send_to(&self, client_id: &str, event: &HostEvent) -> Result<(), InjectError> {
        self.send_text(client_id, Utf8Bytes::from(event.to_text()))
    }

    /// Like [`WsHub::send_to`], but when the page is away (no socket, or one that is not
    /// reading) the message is kept for a while (15 minutes, the last 32 per clientId) and
    /// delivered first when a socket with that clientId connects. For what a page must not
    /// miss: a job's terminal state.
    pub fn send_or_keep(&self, client_id: &str, event: &HostEvent) -> Result<(), InjectError> {
        let text = Utf8Bytes::from(event.to_text());
        let sent = self.send_text(client_id, text.clone());
        if sent.is_err() {
            self.kept.lock().keep(client_id, text);
        }
        sent
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

    /// Queue a ComfyUI-native binary frame (a preview, `progress_text`, a preview with
    /// metadata: 4-byte event type, then the payload) for the browser socket `client_id`, for
    /// jobs the host runs elsewhere. Passed as received.
    pub fn relay_comfy_binary(&self, client_id: &str, frame: Bytes) -> Result<(), InjectError> {
        self.send_frame(client_id, Message::Binary(frame))
    }

    fn send_text(&self, client_id: &str, text: Utf8Bytes) -> Result<(), InjectError> {
        self.send_frame(client_id, Message::Text(text))
    }

    fn send_frame(&self, client_id: &str, frame: Message) -> Result<(), InjectError> {
        let clients = self.clients.lock();
        let slot = clients
            .get(client_id)
            .ok_or_else(|| InjectError::NotConnected(client_id.to_string()))?;
        slot.tx.try_send(frame).map_err(|e| match e {
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
            .filter(|slot| slot.tx.try_send(Message::Text(text.clone())).is_ok())
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
        tx: mpsc::Sender<Message>,
    ) -> Registration {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        for text in self.kept.lock().take(&client_id) {
            if tx.try_send(Message::Text(text)).is_err() {
                tracing::debug!(%client_id, "a kept message did not fit the new socket's queue");
            }
        }
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
        assert_eq!(rx.recv().await.unwrap().to_text().unwrap(), ev.to_text());
        assert_eq!(hub.broadcast(&ev), 1);
        drop(reg);
        assert!(!hub.is_connected("x"));
    }

    #[tokio::test]
    async fn kept_messages_reach_the_next_socket_of_that_client_only() {
        let hub = Arc::new(WsHub::new(vec![]));
        let ev = HostEvent::new("comfyhost.job_ended", json!({"prompt_id": "p"})).unwrap();
        assert!(hub.send_or_keep("away", &ev).is_err());
        let (tx_other, mut rx_other) = mpsc::channel(4);
        let _other = hub.register("other".into(), tx_other);
        assert!(rx_other.try_recv().is_err());
        let (tx, mut rx) = mpsc::channel(4);
        let _reg = hub.register("away".into(), tx);
        assert_eq!(rx.recv().await.unwrap().to_text().unwrap(), ev.to_text());
        // Delivered once.
        let (tx2, mut rx2) = mpsc::channel(4);
        let _again = hub.register("away".into(), tx2);
        assert!(rx2.try_recv().is_err());
    }

    /// Issue 19, finding 3: binary frames of a remote job reach the page as binary frames.
    #[tokio::test]
    async fn binary_frames_are_relayed_as_binary() {
        let hub = Arc::new(WsHub::new(vec![]));
        let (tx, mut rx) = mpsc::channel(4);
        let _reg = hub.register("x".into(), tx);
        let frame = Bytes::from_static(&[0, 0, 0, 3, 0, 0, 0, 1, b'3', b'h', b'i']);
        hub.relay_comfy_binary("x", frame.clone()).unwrap();
        assert_eq!(rx.recv().await.unwrap(), Message::Binary(frame));
    }

    #[test]
    fn kept_messages_are_bounded_per_client() {
        let mut kept = Kept::default();
        for i in 0..(KEEP_PER_CLIENT + 5) {
            kept.keep("c", Utf8Bytes::from(i.to_string()));
        }
        let all = kept.take("c");
        assert_eq!(all.len(), KEEP_PER_CLIENT);
        assert_eq!(all[0].as_str(), "5");
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
