//! ComfyUI WebSocket messages the host sends on behalf of a job that runs elsewhere, built as
//! the protocol crate's typed [`WsMessage`]s (the field sets ComfyUI sends, see
//! `comfy_execution` / `execution.py`).

use comfyhost_protocol::WsMessage;
use comfyhost_protocol::ws::{ExecutionError, ExecutionInterrupted};
use serde_json::{Map, Value, json};

fn now_ms() -> u64 {
    u64::try_from(crate::jobs::now_ms()).unwrap_or(0)
}

pub fn executed(prompt_id: &str, node: &str, output: &Value) -> WsMessage {
    WsMessage::executed(
        prompt_id,
        node,
        output.as_object().cloned().unwrap_or_else(Map::new),
    )
}

pub fn execution_start(prompt_id: &str) -> WsMessage {
    WsMessage::execution_start(prompt_id, now_ms())
}

pub fn execution_success(prompt_id: &str) -> WsMessage {
    WsMessage::execution_success(prompt_id, now_ms())
}

/// `execution_interrupted`; `node` is the node that was running, when known (ComfyUI always
/// names one; a job stopped before it started has none, sent as an empty string).
pub fn execution_interrupted(prompt_id: &str, node: Option<&str>) -> WsMessage {
    WsMessage::ExecutionInterrupted(ExecutionInterrupted {
        prompt_id: prompt_id.to_string(),
        node_id: node.unwrap_or_default().to_string(),
        node_type: String::new(),
        executed: Vec::new(),
        timestamp: now_ms(),
    })
}

/// The end marker the frontend waits for.
pub fn executing_done(prompt_id: &str) -> WsMessage {
    WsMessage::executing_done(prompt_id)
}

/// What went wrong, in ComfyUI's `execution_error` terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub node_id: Option<String>,
    pub node_type: Option<String>,
    pub exception_type: String,
    pub exception_message: String,
    pub traceback: Vec<String>,
}

impl Failure {
    /// A failure of the host's routing (never reached, lost, timed out), not of a node.
    pub fn routing(kind: &str, message: impl Into<String>) -> Self {
        Self {
            node_id: None,
            node_type: None,
            exception_type: format!("comfyhost.{kind}"),
            exception_message: message.into(),
            traceback: Vec::new(),
        }
    }

    /// From a remote ComfyUI's `execution_error` data or a history status message.
    pub fn from_execution_error(data: &Value) -> Self {
        let s = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
        Self {
            node_id: s("node_id"),
            node_type: s("node_type"),
            exception_type: s("exception_type").unwrap_or_else(|| "Exception".into()),
            exception_message: s("exception_message").unwrap_or_default(),
            traceback: data
                .get("traceback")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn to_message(&self, prompt_id: &str) -> WsMessage {
        WsMessage::ExecutionError(ExecutionError {
            prompt_id: prompt_id.to_string(),
            node_id: self.node_id.clone().unwrap_or_default(),
            node_type: self.node_type.clone().unwrap_or_default(),
            executed: Vec::new(),
            exception_message: self.exception_message.clone(),
            exception_type: self.exception_type.clone(),
            traceback: self.traceback.clone(),
            current_inputs: json!({}),
            current_outputs: json!({}),
            timestamp: now_ms(),
        })
    }

    /// From a typed `execution_error`.
    pub fn from_error(e: &ExecutionError) -> Self {
        Self {
            node_id: Some(e.node_id.clone()).filter(|s| !s.is_empty()),
            node_type: Some(e.node_type.clone()).filter(|s| !s.is_empty()),
            exception_type: e.exception_type.clone(),
            exception_message: e.exception_message.clone(),
            traceback: e.traceback.clone(),
        }
    }

    /// For the job record and `comfyhost.job_failed`.
    pub fn to_record(&self) -> Value {
        json!({
            "type": self.exception_type,
            "message": self.exception_message,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "traceback": self.traceback,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_error_has_every_field_the_frontend_reads() {
        let f = Failure::from_execution_error(&json!({
            "node_id": "3", "node_type": "KSampler", "exception_type": "RuntimeError",
            "exception_message": "CUDA out of memory", "traceback": ["a", "b"]
        }));
        let m = f.to_message("p1").to_value();
        let d = &m["data"];
        for k in [
            "prompt_id",
            "node_id",
            "node_type",
            "executed",
            "exception_message",
            "exception_type",
            "traceback",
            "current_inputs",
            "current_outputs",
            "timestamp",
        ] {
            assert!(d.get(k).is_some(), "missing {k}");
        }
        assert_eq!(d["node_type"], "KSampler");
        assert_eq!(d["traceback"][1], "b");
    }

    /// Issue 14, point 1: `node_id` is a string, as the protocol declares (was `null`).
    #[test]
    fn interrupted_names_its_node_as_a_string() {
        let m = execution_interrupted("p", None).to_value();
        assert_eq!(m["data"]["node_id"], "");
        let m = execution_interrupted("p", Some("3")).to_value();
        assert_eq!(m["data"]["node_id"], "3");
        for k in ["prompt_id", "node_id", "node_type", "executed", "timestamp"] {
            assert!(m["data"].get(k).is_some(), "missing {k}");
        }
    }
}
