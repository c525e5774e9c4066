//! Shared helpers for the runtime's integration tests and benchmarks: the wasm test plugins
//! (`comfyhost_test_wasm`) and call environments.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use comfyhost_runtime::capabilities::kv::MemoryKv;
use comfyhost_runtime::capabilities::log::MemoryLogSink;
use comfyhost_runtime::grants::EffectiveCaps;
use comfyhost_runtime::manifest::{Budget, FailurePolicy};
use comfyhost_runtime::sandbox::{CallEnv, CallUsage};
use comfyhost_runtime::types::Submission;

/// The workspace root (three levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// A compiled-artifact cache shared by every test process of this run (`<target>/test-plugin-cache`;
/// artifacts are keyed by the code's sha256): each test plugin is compiled once, not once per test.
pub fn shared_cache_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("test-plugin-cache")))
        .unwrap_or_else(|| std::env::temp_dir().join("comfyhost-test-plugin-cache"))
}

/// Bytes of test plugin `name` (e.g. `spin-loop`), built on first use.
pub fn wasm(name: &str) -> Vec<u8> {
    let file = comfyhost_test_wasm::component(&format!("hostile-{name}"));
    std::fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
}

/// The test prompt: ComfyUI's default SD1.5 graph in API format.
pub fn submission(prompt_id: &str) -> Submission {
    let path = workspace_root().join("tests/fixtures/workflows/sd15_txt2img_api.json");
    let workflow = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    Submission {
        prompt_id: prompt_id.into(),
        client_id: Some("client-1".into()),
        user: None,
        workflow,
        flags: vec![("route".into(), "auto".into())],
    }
}

/// A call environment with its kv store and log sink exposed for assertions.
pub struct TestEnv {
    pub env: CallEnv,
    pub kv: Arc<MemoryKv>,
    pub log: Arc<MemoryLogSink>,
    pub usage: Arc<CallUsage>,
}

/// Builds a call environment.
pub fn env(
    plugin_id: &str,
    caps: EffectiveCaps,
    config_json: &str,
    deadline: Duration,
    memory_bytes: u64,
) -> TestEnv {
    let kv = Arc::new(MemoryKv::new());
    let log = Arc::new(MemoryLogSink::new());
    let usage = Arc::new(CallUsage::default());
    let env = CallEnv {
        plugin_id: plugin_id.into(),
        prompt_id: Some(format!("prompt-of-{plugin_id}")),
        budget: Budget {
            deadline,
            memory_bytes,
            failure: FailurePolicy::FailClosed,
        },
        caps: Arc::new(caps),
        config_json: config_json.into(),
        secrets: Arc::new(HashMap::new()),
        kv: kv.clone(),
        log: log.clone(),
        host_info: Arc::new(vec![("host-version".into(), "test".into())]),
        usage: Some(usage.clone()),
        budgets: comfyhost_runtime::sandbox::budget::SharedBudgets::standalone(),
    };
    TestEnv {
        env,
        kv,
        log,
        usage,
    }
}
