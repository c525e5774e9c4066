//! ComfyUI WebSocket messages → the WIT `execution-event` a status-overlay plugin sees.

use comfyhost_protocol::WsMessage;
use comfyhost_runtime::types::{ExecutionEvent, ExecutionFailure};
use serde_json::Value;

/// A `progress` value as the WIT's u32 (ComfyUI sends floats for some nodes: `"max": 20.0`,
/// seconds, fractions).
fn as_u32(v: f64) -> u32 {
    v.clamp(0.0, f64::from(u32::MAX)) as u32
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The event a message means, if any (`status`, previews and end markers mean none).
pub fn from_message(m: &WsMessage) -> Option<ExecutionEvent> {
    Some(match m {
        WsMessage::ExecutionStart(_) => ExecutionEvent::Started,
        WsMessage::ExecutionCached(c) => ExecutionEvent::Cached {
            nodes: c.nodes.clone(),
        },
        WsMessage::Executing(e) => ExecutionEvent::Executing {
            node: e.node.clone()?,
        },
        WsMessage::Progress(p) => ExecutionEvent::Progress {
            node: p.node.clone().unwrap_or_default(),
            value: as_u32(p.value),
            max: as_u32(p.max),
        },
        WsMessage::Executed(e) => ExecutionEvent::Executed {
            node: e.node.clone(),
            files: e
                .output
                .values()
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(|f| f["filename"].as_str().map(str::to_string))
                .collect(),
        },
        WsMessage::ExecutionSuccess(_) => ExecutionEvent::Succeeded,
        WsMessage::ExecutionInterrupted(_) => ExecutionEvent::Interrupted,
        WsMessage::ExecutionError(e) => ExecutionEvent::Failed(ExecutionFailure {
            node_id: non_empty(&e.node_id),
            node_type: non_empty(&e.node_type),
            exception_type: e.exception_type.clone(),
            exception_message: e.exception_message.clone(),
            traceback: e.traceback.clone(),
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_every_execution_message() {
        let ev =
            |t: &str, d: Value| from_message(&WsMessage::from_value(json!({"type": t, "data": d})));
        assert_eq!(
            ev("execution_start", json!({"prompt_id": "p", "timestamp": 1})),
            Some(ExecutionEvent::Started)
        );
        assert_eq!(
            ev(
                "execution_cached",
                json!({"nodes": ["1", "2"], "prompt_id": "p", "timestamp": 1})
            ),
            Some(ExecutionEvent::Cached {
                nodes: vec!["1".into(), "2".into()]
            })
        );
        assert_eq!(
            ev("executing", json!({"node": null, "prompt_id": "p"})),
            None
        );
        assert_eq!(
            ev(
                "progress",
                json!({"value": 3, "max": 20, "node": "3", "prompt_id": "p"})
            ),
            Some(ExecutionEvent::Progress {
                node: "3".into(),
                value: 3,
                max: 20
            })
        );
        assert_eq!(
            ev(
                "executed",
                json!({"node": "9", "output": {"images": [{"filename": "a.png"}]}, "prompt_id": "p"})
            ),
            Some(ExecutionEvent::Executed {
                node: "9".into(),
                files: vec!["a.png".into()]
            })
        );
        let Some(ExecutionEvent::Failed(f)) = ev(
            "execution_error",
            json!({"node_id": "3", "node_type": "KSampler", "exception_type": "RuntimeError",
                   "exception_message": "boom", "traceback": ["t"], "prompt_id": "p",
                   "executed": [], "current_inputs": {}, "current_outputs": {}, "timestamp": 1}),
        ) else {
            panic!("expected a failure")
        };
        assert_eq!(f.node_type.as_deref(), Some("KSampler"));
        assert_eq!(ev("status", json!({})), None);
    }
}
