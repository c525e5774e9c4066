//! One WebSocket per remote ComfyUI backend, under a host-owned clientId (never a browser's),
//! fanning each message out to the job it belongs to (by `data.prompt_id`). Reconnects with
//! backoff; a job that misses messages while it is down still ends through history polling.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Messages for one job.
pub type JobEvents = mpsc::Receiver<Value>;

/// The socket to one backend. Cheap to clone.
#[derive(Clone)]
pub struct ComfySocket {
    inner: Arc<Inner>,
}

struct Inner {
    backend: String,
    client_id: String,
    subscribers: Mutex<HashMap<String, mpsc::Sender<Value>>>,
}

impl ComfySocket {
    /// Starts the connection loop for `base_url` (`http://host:port`).
    pub fn spawn(backend: &str, base_url: &str, cancel: CancellationToken) -> Self {
        let socket = Self {
            inner: Arc::new(Inner {
                backend: backend.to_string(),
                client_id: format!("comfyhost-{}", uuid::Uuid::new_v4().simple()),
                subscribers: Mutex::new(HashMap::new()),
            }),
        };
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

    /// The clientId prompts for this backend are submitted with.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// Messages of `prompt_id` from now on (subscribe before submitting).
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
                    loop {
                        let next = tokio::select! {
                            _ = cancel.cancelled() => return,
                            n = ws.next() => n,
                        };
                        match next {
                            Some(Ok(Message::Text(t))) => self.dispatch(t.as_str()),
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => break,
                        }
                    }
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

    fn dispatch(&self, text: &str) {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let Some(prompt_id) = msg["data"]["prompt_id"].as_str().map(str::to_string) else {
            return;
        };
        let prompt_id = prompt_id.as_str();
        let tx = self.inner.subscribers.lock().get(prompt_id).cloned();
        if let Some(tx) = tx
            && tx.try_send(msg).is_err()
        {
            // A stalled job loses progress ticks, never its end: that comes from history.
            tracing::debug!(backend = %self.inner.backend, prompt_id, "job event dropped (receiver full)");
        }
    }
}
