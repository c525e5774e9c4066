//! ComfyUI WebSocket messages → the WIT `execution-event` a status-overlay plugin sees.

use comfyhost_runtime::types::{ExecutionEvent, ExecutionFailure};
use serde_json::Value;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The event a message means, if any (`status`, previews and end markers mean none).
pub fn from_message(m: &Value) -> Option<ExecutionEvent> {
    let d = &m["data"];
    // ComfyUI sends floats for some nodes (`"max": 20.0`, seconds, fractions).
    let u32_of = |k: &str| {
        d[k].as_f64()
            .map_or(0, |v| v.clamp(0.0, f64::from(u32::MAX)) as u32)
    };
    Some(match m["type"].as_str()? {
        "execution_start" => ExecutionEvent::Started,
        "execution_cached" => ExecutionEvent::Cached {
            nodes: strings(&d["nodes"]),
        },
        "executing" => ExecutionEvent::Executing {
            node: d["node"].as_str()?.to_string(),
        },
        "progress" => ExecutionEvent::Progress {
            node: d["node"].as_str().unwrap_or_default().to_string(),
            value: u32_of("value"),
            max: u32_of("max"),
        },
        "executed" => ExecutionEvent::Executed {
            node: d["node"].as_str().unwrap_or_default().to_string(),
            files: d["output"]
                .as_object()
                .into_iter()
                .flat_map(|o| o.values())
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(|f| f["filename"].as_str().map(str::to_string))
                .collect(),
        },
        "execution_success" => ExecutionEvent::Succeeded,
        "execution_interrupted" => ExecutionEvent::Interrupted,
        "execution_error" => ExecutionEvent::Failed(ExecutionFailure {
            node_id: d["node_id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            node_type: d["node_type"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            exception_type: d["exception_type"]
                .as_str()
                .unwrap_or("Exception")
                .to_string(),
            exception_message: d["exception_message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            traceback: strings(&d["traceback"]),
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
        let ev = |t: &str, d: Value| from_message(&json!({"type": t, "data": d}));
        assert_eq!(
            ev("execution_start", json!({"prompt_id": "p"})),
            Some(ExecutionEvent::Started)
        );
        assert_eq!(
            ev(
                "execution_cached",
                json!({"nodes": ["1", "2"], "prompt_id": "p"})
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
                   "exception_message": "boom", "traceback": ["t"], "prompt_id": "p"}),
        ) else {
            panic!("expected a failure")
        };
        assert_eq!(f.node_type.as_deref(), Some("KSampler"));
        assert_eq!(ev("status", json!({})), None);
    }
}
