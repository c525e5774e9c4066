//! Shared helpers for the runtime's integration tests and benchmarks: build the wasm test
//! plugins once per process and make call environments.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use comfyhost_runtime::capabilities::kv::MemoryKv;
use comfyhost_runtime::capabilities::log::MemoryLogSink;
use comfyhost_runtime::grants::EffectiveCaps;
use comfyhost_runtime::manifest::{Budget, FailurePolicy};
use comfyhost_runtime::sandbox::CallEnv;
use comfyhost_runtime::types::Submission;

/// Test plugins under `tests/hostile-plugins/`, by directory name.
pub const PLUGINS: [&str; 9] = [
    "plain-sync",
    "mirror-panicker",
    "spin-loop",
    "memory-bomb",
    "fs-escape",
    "http-escape",
    "panicker",
    "host-blocker",
    "well-behaved",
];

/// The workspace root (three levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

fn wasm_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        let target_dir = root.join("target/wasm-tests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root)
            .args([
                "build",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "wasm-release",
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        for p in PLUGINS {
            cmd.args(["-p", &format!("hostile-{p}")]);
        }
        let status = cmd.status().expect("run cargo to build the test plugins");
        assert!(status.success(), "building the wasm test plugins failed");
        target_dir.join("wasm32-wasip2/wasm-release")
    })
}

/// Bytes of test plugin `name` (e.g. `spin-loop`), built on first use.
pub fn wasm(name: &str) -> Vec<u8> {
    let file = wasm_dir().join(format!("hostile_{}.wasm", name.replace('-', "_")));
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
        budgets: comfyhost_runtime::sandbox::budget::SharedBudgets::standalone(),
    };
    TestEnv { env, kv, log }
}
