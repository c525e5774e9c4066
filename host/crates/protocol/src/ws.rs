//! Text messages on ComfyUI's `/ws` socket: `{"type": ..., "data": {...}}`.
//!
//! Known types are typed structs; fields ComfyUI adds later land in `extra` and survive a
//! round trip. Unknown types (custom nodes send their own) are kept as [`WsMessage::Other`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecInfo {
    pub queue_remaining: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusInner {
    pub exec_info: ExecInfo,
}

/// `status`: queue size, broadcast to every client; the first one carries `sid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub status: StatusInner,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// `execution_start`, `execution_success`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptTimestamp {
    pub prompt_id: String,
    pub timestamp: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `execution_cached`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionCached {
    pub nodes: Vec<String>,
    pub prompt_id: String,
    pub timestamp: u64,
}

/// `executing`; `node: null` marks the end of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executing {
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_node: Option<String>,
    pub prompt_id: Option<String>,
}

/// `progress`: sampler steps inside a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub value: f64,
    pub max: f64,
    pub prompt_id: Option<String>,
    pub node: Option<String>,
}

/// `executed`: a node's UI output (`images`, `gifs`, `audio`, `text`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executed {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_node: Option<String>,
    pub output: Map<String, Value>,
    pub prompt_id: String,
}

/// A file reference inside an `executed` output or a history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Executed {
    /// Every file reference in the output, whatever the key (`images`, `gifs`, `audio`, ...).
    pub fn files(&self) -> Vec<FileRef> {
        self.output
            .values()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|v| serde_json::from_value::<FileRef>(v.clone()).ok())
            .collect()
    }
}

/// `execution_error`: every field the frontend's error dialog reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionError {
    pub prompt_id: String,
    pub node_id: String,
    pub node_type: String,
    pub executed: Vec<String>,
    pub exception_message: String,
    pub exception_type: String,
    pub traceback: Vec<String>,
    pub current_inputs: Value,
    pub current_outputs: Value,
    pub timestamp: u64,
}

/// `execution_interrupted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInterrupted {
    pub prompt_id: String,
    pub node_id: String,
    pub node_type: String,
    pub executed: Vec<String>,
    pub timestamp: u64,
}

/// A text message on `/ws`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum WsMessage {
    Status(Status),
    ExecutionStart(PromptTimestamp),
    ExecutionCached(ExecutionCached),
    Executing(Executing),
    Progress(Progress),
    /// Per-node state map; kept as JSON (its shape is still moving upstream).
    ProgressState(Value),
    Executed(Executed),
    ExecutionSuccess(PromptTimestamp),
    ExecutionError(ExecutionError),
    ExecutionInterrupted(ExecutionInterrupted),
    FeatureFlags(Map<String, Value>),
    /// Any other type (custom nodes, host-namespaced `comfyhost.*`).
    #[serde(skip)]
    Other {
        kind: String,
        data: Value,
    },
}

impl WsMessage {
    /// Parse a text frame. Unknown `type`s become [`WsMessage::Other`]; a known type whose
    /// data does not match is an error.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let raw: Value = serde_json::from_str(text)?;
        let kind = raw.get("type").and_then(Value::as_str).unwrap_or_default();
        if KNOWN.contains(&kind) {
            serde_json::from_value(raw)
        } else {
            Ok(WsMessage::Other {
                kind: kind.to_string(),
                data: raw.get("data").cloned().unwrap_or(Value::Null),
            })
        }
    }

    /// The message as a text frame.
    pub fn to_text(&self) -> String {
        self.to_value().to_string()
    }

    /// The message as JSON (`{"type": ..., "data": {...}}`), for consumers that keep JSON.
    pub fn to_value(&self) -> Value {
        match self {
            WsMessage::Other { kind, data } => {
                serde_json::json!({ "type": kind, "data": data })
            }
            known => serde_json::to_value(known).unwrap_or(Value::Null),
        }
    }

    /// A message from its JSON form; unknown types become [`WsMessage::Other`] and a known
    /// type with data that does not fit is kept as `Other` too, so nothing is dropped.
    pub fn from_value(raw: Value) -> Self {
        let kind = raw
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if KNOWN.contains(&kind.as_str())
            && let Ok(m) = serde_json::from_value(raw.clone())
        {
            return m;
        }
        WsMessage::Other {
            kind,
            data: raw.get("data").cloned().unwrap_or(Value::Null),
        }
    }

    /// `executing` with `node: null`: the end of a prompt, the marker the frontend waits for.
    pub fn executing_done(prompt_id: &str) -> Self {
        WsMessage::Executing(Executing {
            node: None,
            display_node: None,
            prompt_id: Some(prompt_id.to_string()),
        })
    }

    /// `execution_start` at `timestamp` (ms).
    pub fn execution_start(prompt_id: &str, timestamp: u64) -> Self {
        WsMessage::ExecutionStart(PromptTimestamp {
            prompt_id: prompt_id.to_string(),
            timestamp,
            extra: Map::new(),
        })
    }

    /// `execution_success` at `timestamp` (ms).
    pub fn execution_success(prompt_id: &str, timestamp: u64) -> Self {
        WsMessage::ExecutionSuccess(PromptTimestamp {
            prompt_id: prompt_id.to_string(),
            timestamp,
            extra: Map::new(),
        })
    }

    /// `executed` for `node` (its own display node) with a UI `output`.
    pub fn executed(prompt_id: &str, node: &str, output: Map<String, Value>) -> Self {
        WsMessage::Executed(Executed {
            node: node.to_string(),
            display_node: Some(node.to_string()),
            output,
            prompt_id: prompt_id.to_string(),
        })
    }

    /// `status` with `queue_remaining` (no `sid`: only the first status of a socket has one).
    pub fn status(queue_remaining: u64) -> Self {
        WsMessage::Status(Status {
            status: StatusInner {
                exec_info: ExecInfo { queue_remaining },
            },
            sid: None,
        })
    }

    /// The prompt id in the data of an unknown message type (custom nodes that follow
    /// ComfyUI's convention), or of a known one ([`WsMessage::prompt_id`]).
    pub fn any_prompt_id(&self) -> Option<&str> {
        match self {
            WsMessage::Other { data, .. } => data.get("prompt_id").and_then(Value::as_str),
            known => known.prompt_id(),
        }
    }

    /// The `type` string.
    pub fn kind(&self) -> &str {
        match self {
            WsMessage::Status(_) => "status",
            WsMessage::ExecutionStart(_) => "execution_start",
            WsMessage::ExecutionCached(_) => "execution_cached",
            WsMessage::Executing(_) => "executing",
            WsMessage::Progress(_) => "progress",
            WsMessage::ProgressState(_) => "progress_state",
            WsMessage::Executed(_) => "executed",
            WsMessage::ExecutionSuccess(_) => "execution_success",
            WsMessage::ExecutionError(_) => "execution_error",
            WsMessage::ExecutionInterrupted(_) => "execution_interrupted",
            WsMessage::FeatureFlags(_) => "feature_flags",
            WsMessage::Other { kind, .. } => kind,
        }
    }

    /// The prompt id the message is about, if any.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            WsMessage::ExecutionStart(m) | WsMessage::ExecutionSuccess(m) => Some(&m.prompt_id),
            WsMessage::ExecutionCached(m) => Some(&m.prompt_id),
            WsMessage::Executing(m) => m.prompt_id.as_deref(),
            WsMessage::Progress(m) => m.prompt_id.as_deref(),
            WsMessage::ProgressState(v) => v.get("prompt_id").and_then(Value::as_str),
            WsMessage::Executed(m) => Some(&m.prompt_id),
            WsMessage::ExecutionError(m) => Some(&m.prompt_id),
            WsMessage::ExecutionInterrupted(m) => Some(&m.prompt_id),
            _ => None,
        }
    }
}

const KNOWN: [&str; 11] = [
    "status",
    "execution_start",
    "execution_cached",
    "executing",
    "progress",
    "progress_state",
    "executed",
    "execution_success",
    "execution_error",
    "execution_interrupted",
    "feature_flags",
];

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDINGS: [&str; 7] = [
        include_str!("../tests/fixtures/ws_run1.jsonl"),
        include_str!("../tests/fixtures/ws_run2_cached.jsonl"),
        include_str!("../tests/fixtures/ws_full_session_basic.jsonl"),
        include_str!("../tests/fixtures/tp_ws_interrupt_global.jsonl"),
        include_str!("../tests/fixtures/ws_feature_flags_negotiation.jsonl"),
        include_str!("../tests/fixtures/ws_run4_custom_prompt_id.jsonl"),
        include_str!("../tests/fixtures/tp_ws_run_sleep_progress.jsonl"),
    ];

    /// Every recorded text message parses into a known type and serializes back to the same
    /// JSON (same keys, same values), so relaying through these types loses nothing.
    #[test]
    fn every_recorded_message_round_trips() {
        let mut seen = std::collections::BTreeSet::new();
        for rec in RECORDINGS {
            for line in rec.lines().filter(|l| !l.trim().is_empty()) {
                let entry: Value = serde_json::from_str(line).unwrap();
                if entry["kind"] != "text" {
                    continue;
                }
                let text = entry["data"].to_string();
                let msg = WsMessage::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                assert!(!matches!(msg, WsMessage::Other { .. }), "unknown: {text}");
                seen.insert(msg.kind().to_string());
                let back: Value = serde_json::from_str(&msg.to_text()).unwrap();
                assert_eq!(back, entry["data"], "round trip changed {text}");
            }
        }
        for kind in [
            "status",
            "execution_start",
            "execution_cached",
            "executing",
            "progress",
            "executed",
            "execution_success",
            "execution_error",
            "execution_interrupted",
            "feature_flags",
        ] {
            assert!(seen.contains(kind), "recordings never showed {kind}");
        }
    }

    /// Issue 14, point 1: what the host builds itself has the recorded field sets, with a
    /// string `node_id` in `execution_interrupted` as ComfyUI sends.
    #[test]
    fn constructors_have_the_recorded_shapes() {
        let done = WsMessage::executing_done("p").to_value();
        assert_eq!(
            done,
            serde_json::json!({"type": "executing", "data": {"node": null, "prompt_id": "p"}})
        );
        let start = WsMessage::execution_start("p", 5).to_value();
        assert_eq!(
            start,
            serde_json::json!({"type": "execution_start", "data": {"prompt_id": "p", "timestamp": 5}})
        );
        let i = WsMessage::ExecutionInterrupted(ExecutionInterrupted {
            prompt_id: "p".into(),
            node_id: "3".into(),
            node_type: "KSampler".into(),
            executed: vec![],
            timestamp: 1,
        });
        assert!(i.to_value()["data"]["node_id"].is_string());
        let st = WsMessage::status(2).to_text();
        assert_eq!(
            st,
            r#"{"type":"status","data":{"status":{"exec_info":{"queue_remaining":2}}}}"#
        );
        // A known type with data that does not fit is kept, not lost.
        let odd = WsMessage::from_value(serde_json::json!({"type": "executed", "data": {"x": 1}}));
        assert_eq!(odd.kind(), "executed");
        assert!(matches!(odd, WsMessage::Other { .. }));
    }

    #[test]
    fn unknown_types_are_kept() {
        let msg = WsMessage::parse(r#"{"type":"comfyhost.status","data":{"a":1}}"#).unwrap();
        assert_eq!(msg.kind(), "comfyhost.status");
        assert_eq!(
            msg.to_text(),
            r#"{"type":"comfyhost.status","data":{"a":1}}"#
        );
    }

    #[test]
    fn executed_lists_files() {
        let msg = WsMessage::parse(
            r#"{"type":"executed","data":{"node":"2","display_node":"2","output":{"images":[{"filename":"a.png","subfolder":"","type":"output"}]},"prompt_id":"p"}}"#,
        )
        .unwrap();
        let WsMessage::Executed(e) = msg else {
            panic!()
        };
        assert_eq!(e.files()[0].filename, "a.png");
    }
}
