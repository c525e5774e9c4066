//! One WebSocket per remote ComfyUI backend, under a host-owned clientId (never a browser's),
//! fanning each frame out to the job it belongs to. Reconnects with backoff; a job that misses
//! messages while it is down still ends through history polling.
//!
//! On connect the socket sends the `feature_flags` handshake the current frontend sends
//! (`supports_preview_metadata`), so the backend sends previews with metadata (binary type 4,
//! which names its prompt). Routing: a text message by its `data.prompt_id`; a binary frame of
//! type 4 by the prompt its metadata names; anything else without a prompt id (previews of
//! type 1, `progress_text` = type 3, `notification`, `logs`, custom messages) to the prompt
//! running on the backend now: ComfyUI sends those only to the client whose prompt runs, and
//! every prompt on this socket is one of the host's. The backend's own `status` and
//! `feature_flags` are not a job's and are not relayed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use comfyhost_protocol::WsMessage;
use comfyhost_protocol::binary::{BinaryEventType, split_frame};
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// One frame of a job's run on the backend.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// A text message, typed.
    Message(Box<WsMessage>),
    /// A binary frame (4-byte event type, then the payload), relayed as is.
    Binary(Bytes),
}

/// Frames for one job.
pub type JobEvents = mpsc::Receiver<JobEvent>;

/// The socket to one backend. Cheap to clone.
#[derive(Clone)]
pub struct ComfySocket {
    inner: Arc<Inner>,
}

struct Inner {
    backend: String,
    client_id: String,
    subscribers: Mutex<HashMap<String, mpsc::Sender<JobEvent>>>,
    /// The prompt the backend is executing now (from `execution_start` / `executing`).
    running: Mutex<Option<String>>,
}

/// What the host's socket announces to a backend, as the current frontend does.
pub fn client_feature_flags() -> Value {
    json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}})
}

impl ComfySocket {
    /// Starts the connection loop for `base_url` (`http://host:port`).
    pub fn spawn(backend: &str, base_url: &str, cancel: CancellationToken) -> Self {
        let socket = Self::new(backend);
        let ws_url = format!(
            "{}/ws?clientId={}",
            base_url
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1),
            socket.inner.client_id
        );
        let s = socket.clone();
        tokio::spawn(async move { s.run(ws_url, cancel).await });
        socket
    }

    fn new(backend: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend: backend.to_string(),
                client_id: format!("comfyhost-{}", uuid::Uuid::new_v4().simple()),
                subscribers: Mutex::new(HashMap::new()),
                running: Mutex::new(None),
            }),
        }
    }

    /// The clientId prompts for this backend are submitted with.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// Frames of `prompt_id` from now on (subscribe before submitting).
    pub fn subscribe(&self, prompt_id: &str) -> JobEvents {
        let (tx, rx) = mpsc::channel(1024);
        self.inner
            .subscribers
            .lock()
            .insert(prompt_id.to_string(), tx);
        rx
    }

    pub fn unsubscribe(&self, prompt_id: &str) {
        self.inner.subscribers.lock().remove(prompt_id);
    }

    async fn run(self, url: String, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let connect = tokio_tungstenite::connect_async(url.as_str());
            let conn = tokio::select! {
                _ = cancel.cancelled() => return,
                c = connect => c,
            };
            match conn {
                Ok((mut ws, _)) => {
                    tracing::debug!(backend = %self.inner.backend, "backend socket connected");
                    backoff = Duration::from_millis(200);
                    let hello = Message::Text(client_feature_flags().to_string().into());
                    if let Err(e) = ws.send(hello).await {
                        tracing::debug!(backend = %self.inner.backend, error = %e, "feature_flags not sent");
                    }
                    loop {
                        let next = tokio::select! {
                            _ = cancel.cancelled() => return,
                            n = ws.next() => n,
                        };
                        match next {
                            Some(Ok(Message::Text(t))) => self.dispatch_text(t.as_str()),
                            Some(Ok(Message::Binary(b))) => self.dispatch_binary(b),
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => break,
                        }
                    }
                    *self.inner.running.lock() = None;
                    tracing::warn!(backend = %self.inner.backend, "backend socket closed; reconnecting");
                }
                Err(e) => {
                    tracing::debug!(backend = %self.inner.backend, error = %e, "backend socket connect failed");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn dispatch_text(&self, text: &str) {
        let Ok(raw) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let msg = WsMessage::from_value(raw);
        self.note_running(&msg);
        let target = match &msg {
            WsMessage::Status(_) | WsMessage::FeatureFlags(_) => return,
            m => m
                .any_prompt_id()
                .map(str::to_string)
                .or_else(|| self.inner.running.lock().clone()),
        };
        if let Some(prompt_id) = target {
            self.deliver(&prompt_id, JobEvent::Message(Box::new(msg)));
        }
    }

    fn dispatch_binary(&self, frame: Bytes) {
        let target = preview_prompt_id(&frame).or_else(|| self.inner.running.lock().clone());
        if let Some(prompt_id) = target {
            self.deliver(&prompt_id, JobEvent::Binary(frame));
        }
    }

    /// Follows which prompt runs now, for frames that do not name theirs.
    fn note_running(&self, msg: &WsMessage) {
        let mut running = self.inner.running.lock();
        match msg {
            WsMessage::ExecutionStart(m) => *running = Some(m.prompt_id.clone()),
            WsMessage::Executing(e) if e.node.is_some() => {
                if let Some(p) = &e.prompt_id {
                    *running = Some(p.clone());
                }
            }
            WsMessage::Executing(_)
            | WsMessage::ExecutionSuccess(_)
            | WsMessage::ExecutionError(_)
            | WsMessage::ExecutionInterrupted(_)
                if running.as_deref() == msg.prompt_id() || msg.prompt_id().is_none() =>
            {
                *running = None;
            }
            _ => {}
        }
    }

    fn deliver(&self, prompt_id: &str, event: JobEvent) {
        let tx = self.inner.subscribers.lock().get(prompt_id).cloned();
        if let Some(tx) = tx
            && tx.try_send(event).is_err()
        {
            // A stalled job loses progress ticks, never its end: that comes from history.
            tracing::debug!(backend = %self.inner.backend, prompt_id, "job event dropped (receiver full)");
        }
    }
}

/// The prompt a preview-with-metadata frame (binary type 4: metadata length, metadata JSON,
/// image) names.
fn preview_prompt_id(frame: &[u8]) -> Option<String> {
    let (kind, payload) = split_frame(frame)?;
    if kind != BinaryEventType::PreviewImageWithMetadata {
        return None;
    }
    let (len, rest) = payload.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    let meta: Value = serde_json::from_slice(rest.get(..len)?).ok()?;
    meta.get("prompt_id")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &ComfySocket, v: Value) {
        s.dispatch_text(&v.to_string());
    }

    /// Issue 19, finding 3: frames without a prompt id reach the job that runs now.
    #[test]
    fn frames_without_a_prompt_id_go_to_the_running_job() {
        let s = ComfySocket::new("b");
        let mut a = s.subscribe("a");
        let mut other = s.subscribe("z");
        // Before anything runs, a preview belongs to nobody.
        s.dispatch_binary(Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 2, 1]));
        assert!(a.try_recv().is_err());
        text(
            &s,
            json!({"type": "execution_start", "data": {"prompt_id": "a", "timestamp": 1}}),
        );
        assert!(matches!(a.try_recv(), Ok(JobEvent::Message(_))));
        let progress_text = Bytes::from_static(&[0, 0, 0, 3, 0, 0, 0, 1, b'3', b'h', b'i']);
        s.dispatch_binary(progress_text.clone());
        assert!(matches!(a.try_recv(), Ok(JobEvent::Binary(b)) if b == progress_text));
        text(&s, json!({"type": "notification", "data": {"value": "hi"}}));
        assert!(
            matches!(a.try_recv(), Ok(JobEvent::Message(m)) if matches!(&*m, WsMessage::Other { kind, .. } if kind == "notification"))
        );
        // The backend's own status is not a job's.
        text(
            &s,
            json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}),
        );
        assert!(a.try_recv().is_err());
        // A preview with metadata goes to the prompt it names.
        let meta = br#"{"prompt_id":"z","node_id":"3"}"#;
        let mut f = vec![0, 0, 0, 4];
        f.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        f.extend_from_slice(meta);
        f.extend_from_slice(&[0x89, b'P']);
        s.dispatch_binary(Bytes::from(f));
        assert!(matches!(other.try_recv(), Ok(JobEvent::Binary(_))));
        assert!(a.try_recv().is_err());
        // After the end, nothing runs.
        text(
            &s,
            json!({"type": "executing", "data": {"node": null, "prompt_id": "a"}}),
        );
        assert!(a.try_recv().is_ok());
        s.dispatch_binary(progress_text);
        assert!(a.try_recv().is_err());
    }

    #[test]
    fn the_handshake_asks_for_previews_with_metadata() {
        assert_eq!(
            client_feature_flags()["data"]["supports_preview_metadata"],
            true
        );
    }
}
