//! ComfyUI WebSocket messages the host sends on behalf of a job that runs elsewhere, with the
//! field sets ComfyUI 0.3.64 uses (see `comfy_execution` / `execution.py`).

use serde_json::{Value, json};

fn now_ms() -> i64 {
    crate::jobs::now_ms()
}

pub fn message(kind: &str, data: Value) -> Value {
    json!({"type": kind, "data": data})
}

pub fn execution_start(prompt_id: &str) -> Value {
    message(
        "execution_start",
        json!({"prompt_id": prompt_id, "timestamp": now_ms()}),
    )
}

pub fn executed(prompt_id: &str, node: &str, output: &Value) -> Value {
    message(
        "executed",
        json!({"node": node, "display_node": node, "output": output, "prompt_id": prompt_id}),
    )
}

pub fn execution_success(prompt_id: &str) -> Value {
    message(
        "execution_success",
        json!({"prompt_id": prompt_id, "timestamp": now_ms()}),
    )
}

pub fn execution_interrupted(prompt_id: &str, node: Option<&str>) -> Value {
    message(
        "execution_interrupted",
        json!({"prompt_id": prompt_id, "node_id": node, "node_type": null, "executed": [], "timestamp": now_ms()}),
    )
}

/// The end marker the frontend waits for.
pub fn executing_done(prompt_id: &str) -> Value {
    message("executing", json!({"node": null, "prompt_id": prompt_id}))
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

    pub fn to_message(&self, prompt_id: &str) -> Value {
        message(
            "execution_error",
            json!({
                "prompt_id": prompt_id,
                "node_id": self.node_id.clone().unwrap_or_default(),
                "node_type": self.node_type.clone().unwrap_or_default(),
                "executed": [],
                "exception_message": self.exception_message,
                "exception_type": self.exception_type,
                "traceback": self.traceback,
                "current_inputs": {},
                "current_outputs": {},
                "timestamp": now_ms(),
            }),
        )
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
        let m = f.to_message("p1");
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
}
