//! Host-originated WebSocket messages. They always carry a `comfyhost.` type so they can never
//! be mistaken for (or shadow) a ComfyUI event in the frontend.

use serde_json::Value;

/// Every host-originated message type starts with this.
pub const HOST_EVENT_PREFIX: &str = "comfyhost.";

const MAX_KIND_LEN: usize = 128;

/// A type name that breaks the `comfyhost.` namespace rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "host WebSocket event type {0:?} must be `comfyhost.<name>` with <name> made of ASCII letters, digits, '.', '_' or '-' (at most {MAX_KIND_LEN} bytes)"
)]
pub struct HostEventError(pub String);

/// A `{"type":"comfyhost.<name>","data":...}` message for one or more browser sockets.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEvent {
    kind: String,
    data: Value,
}

impl HostEvent {
    /// A message of type `kind` (must start with `comfyhost.`) carrying `data`.
    pub fn new(kind: impl Into<String>, data: Value) -> Result<Self, HostEventError> {
        let kind = kind.into();
        let name = kind.strip_prefix(HOST_EVENT_PREFIX).unwrap_or("");
        let ok = !name.is_empty()
            && kind.len() <= MAX_KIND_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self { kind, data })
        } else {
            Err(HostEventError(kind))
        }
    }

    /// The `type` string.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The `data` payload.
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// The text frame sent to the browser.
    pub fn to_text(&self) -> String {
        serde_json::json!({ "type": self.kind, "data": self.data }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespace_enforced() {
        let e = HostEvent::new("comfyhost.status", json!({"gpu": "busy"})).unwrap();
        assert_eq!(
            e.to_text(),
            r#"{"type":"comfyhost.status","data":{"gpu":"busy"}}"#
        );
        for bad in [
            "status",
            "executed",
            "comfyhost.",
            "comfyhost",
            "comfyhost.a b",
            "Comfyhost.x",
            "xcomfyhost.a",
        ] {
            assert_eq!(
                HostEvent::new(bad, Value::Null),
                Err(HostEventError(bad.into())),
                "{bad}"
            );
        }
        assert!(HostEvent::new(format!("comfyhost.{}", "a".repeat(200)), Value::Null).is_err());
        assert!(HostEvent::new("comfyhost.queue.position_v2-x", Value::Null).is_ok());
    }
}
