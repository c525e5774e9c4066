//! ComfyUI's error body for rejected prompts (`400 {error:{type,message,details,extra_info}, node_errors}`).
//! The host uses the same shape for its own rejections so the frontend shows them in its usual
//! error dialog.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub details: String,
    pub extra_info: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComfyErrorBody {
    pub error: ErrorDetail,
    pub node_errors: Map<String, Value>,
}

impl ComfyErrorBody {
    /// A host-originated error. `kind` should be namespaced (`comfyhost_...`).
    pub fn new(
        kind: impl Into<String>,
        message: impl Into<String>,
        details: impl Into<String>,
    ) -> Self {
        Self {
            error: ErrorDetail {
                kind: kind.into(),
                message: message.into(),
                details: details.into(),
                extra_info: Map::new(),
            },
            node_errors: Map::new(),
        }
    }

    pub fn with_extra(mut self, key: &str, value: Value) -> Self {
        self.error.extra_info.insert(key.to_string(), value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_validation_error_parses() {
        let rec: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/err_unknown_class_type.json"
        ))
        .unwrap();
        let body: ComfyErrorBody = serde_json::from_value(rec["body"].clone()).unwrap();
        assert!(!body.error.kind.is_empty());
        // Same field set on the way out.
        let out = serde_json::to_value(&body).unwrap();
        let keys: Vec<_> = out["error"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["type", "message", "details", "extra_info"]);
    }
}
