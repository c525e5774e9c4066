//! Files a node wrote, queued with their owner the moment ComfyUI announces them (`executed` on
//! a browser socket) rather than only when the job ends: a host killed between the two (or a job
//! that fails after its first save) still knows whose files they are, so a later full pass does
//! not file them under `anonymous`.

use comfyhost_protocol::WsMessage;
use comfyhost_proxy::ws::WsTap;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::OutputSync;
use crate::jobs::{JobTracker, OutputRef, history_outputs};

/// One `executed` message: its prompt and the files it names.
type Announced = (String, Vec<OutputRef>);

/// The proxy tap. Parsing happens on the relay task (cheap, non-blocking); the store work on a
/// task of its own.
pub struct ExecutedTap {
    tx: mpsc::UnboundedSender<Announced>,
}

impl ExecutedTap {
    /// Starts the worker that queues announced files until `cancel`.
    pub fn spawn(outputs: OutputSync, jobs: JobTracker, cancel: CancellationToken) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Announced>();
        tokio::spawn(async move {
            loop {
                let (prompt_id, files) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    next = rx.recv() => match next {
                        Some(a) => a,
                        None => return,
                    },
                };
                let user_id = match jobs.job(&prompt_id) {
                    Ok(Some(job)) => job.user_id,
                    Ok(None) => None, // not submitted through this host
                    Err(e) => {
                        tracing::warn!(prompt_id, error = %e, "cannot read the job of announced outputs");
                        None
                    }
                };
                outputs.record_files(&prompt_id, user_id.as_deref(), &files);
            }
        });
        Self { tx }
    }
}

/// The files an `executed` message names, if it is one.
pub fn announced(message: &Value) -> Option<Announced> {
    if message["type"] != "executed" {
        return None;
    }
    let data = &message["data"];
    let prompt_id = data["prompt_id"].as_str()?.to_owned();
    let node = data["node"].as_str().unwrap_or("?");
    let files = history_outputs(&json!({ node: data["output"] }), None);
    (!files.is_empty()).then_some((prompt_id, files))
}

impl WsTap for ExecutedTap {
    fn on_message(&self, _client_id: &str, message: &WsMessage) {
        if !matches!(message, WsMessage::Executed(_)) {
            return;
        }
        if let Some(a) = announced(&message.to_value()) {
            let _ = self.tx.send(a);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn executed_messages_name_their_output_files() {
        let m = json!({"type": "executed", "data": {"node": "9", "display_node": "9",
            "prompt_id": "p1", "output": {"images": [
                {"filename": "a_00001_.png", "subfolder": "sub", "type": "output"},
                {"filename": "prev.png", "subfolder": "", "type": "temp"}]}}});
        let (prompt_id, files) = announced(&m).unwrap();
        assert_eq!(prompt_id, "p1");
        assert_eq!(files.len(), 2);
        assert_eq!(
            (
                files[0].filename.as_str(),
                files[0].subfolder.as_str(),
                files[0].folder_type.as_str()
            ),
            ("a_00001_.png", "sub", "output")
        );
        // Text outputs and other messages name nothing.
        let text = json!({"type": "executed", "data": {"node": "3", "prompt_id": "p1",
            "output": {"text": ["hello"]}}});
        assert!(announced(&text).is_none());
        assert!(announced(&json!({"type": "executing", "data": {"node": "9"}})).is_none());
        assert!(announced(&json!({"type": "executed", "data": {}})).is_none());
    }
}
