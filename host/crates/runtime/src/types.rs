//! Host-side types of the hook contract (mirrors `wit/`), independent of generated bindings.
//! Workflows stay `serde_json::Value` in API format at this edge; [`crate::hooks`] converts them
//! to and from the WIT records.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub is_admin: bool,
}

/// A prompt as received from a browser (`POST /prompt`), before it is queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub prompt_id: String,
    pub client_id: Option<String>,
    pub user: Option<User>,
    /// API-format workflow (the `prompt` field).
    pub workflow: serde_json::Value,
    /// String options from `extra_data.comfyhost`.
    pub flags: Vec<(String, String)>,
}

/// One enum for the backend kind across the host (defined next to the column that stores it).
pub use comfyhost_store::BackendKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub kind: BackendKind,
    pub healthy: bool,
    pub queue_pending: u32,
    pub queue_running: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "route", content = "target")]
pub enum Route {
    Local,
    Backend(String),
    Serverless(String),
    Reject(String),
    Pass,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TransformResult {
    Unchanged,
    Rewritten {
        workflow: serde_json::Value,
        notes: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobContext {
    pub prompt_id: String,
    pub client_id: Option<String>,
    pub user: Option<User>,
    pub backend: String,
    pub gpu: Option<String>,
    pub nodes_total: u32,
    pub nodes_done: u32,
    pub elapsed_ms: u64,
    pub since_last_event_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionFailure {
    pub node_id: Option<String>,
    pub node_type: Option<String>,
    pub exception_type: String,
    pub exception_message: String,
    pub traceback: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ExecutionEvent {
    Queued { position: Option<u32> },
    Started,
    Cached { nodes: Vec<String> },
    Executing { node: String },
    Progress { node: String, value: u32, max: u32 },
    Executed { node: String, files: Vec<String> },
    Succeeded,
    Failed(ExecutionFailure),
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Progress,
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlayUpdate {
    pub severity: Severity,
    pub user_text: String,
    pub admin_detail: Vec<String>,
    pub fraction: Option<f32>,
    pub terminal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledFolder {
    pub folder: String,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub folder: String,
    pub name: String,
    pub node_id: String,
    pub class_type: String,
    pub input_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresetFile {
    pub folder: String,
    pub name: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresetPlan {
    pub id: String,
    pub name: String,
    pub files: Vec<PresetFile>,
    pub provides: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub required: Vec<ModelRef>,
    pub missing: Vec<ModelRef>,
    pub presets: Vec<PresetPlan>,
    pub unmapped: Vec<ModelRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Image,
    Video,
    Audio,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub guest_path: String,
    pub filename: String,
    pub subfolder: String,
    pub kind: OutputKind,
    pub size: u64,
    pub modified_ms: u64,
    pub prompt_id: Option<String>,
    pub user: Option<User>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum SyncOutcome {
    Synced(String),
    Skipped(String),
    RetryLater(String),
}

/// What an `output-mirror.on-removed` call did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum RemovalOutcome {
    Removed(String),
    Kept(String),
    RetryLater(String),
}
