//! The author's loop without a host: `comfyhost plugin new` scaffolds a prompt-transform plugin,
//! cargo builds it for wasm32-wasip2, and `comfyhost plugin call` runs it in the sandbox on a
//! workflow file, printing its answer, log, time and memory.

use std::process::Command;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_comfyhost");

#[test]
fn scaffold_build_and_call_a_prompt_transform_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["plugin", "new", "prompt-transform", "my-style", "--dir"])
        .arg(tmp.path())
        .arg("--sdk")
        .arg(comfyhost_test_wasm::workspace_root().join("sdk"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tmp.path().join("my-style");
    assert!(String::from_utf8_lossy(&out.stdout).contains("plugin call"));

    let target = comfyhost_test_wasm::wasm_target_dir();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&dir)
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "building the scaffolded plugin failed");
    let wasm = target.join("wasm32-wasip2/debug/my_style.wasm");
    assert!(wasm.exists(), "{}", wasm.display());

    let workflow = tmp.path().join("workflow_api.json");
    std::fs::write(
        &workflow,
        json!({
            "prompt": {
                "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
                "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
                "3": {"class_type": "KSampler", "inputs": {"positive": ["6", 0], "negative": ["7", 0], "seed": 1}}
            }
        })
        .to_string(),
    )
    .unwrap();
    let config = tmp.path().join("config.json");
    std::fs::write(&config, r#"{"suffix": "watercolor"}"#).unwrap();

    let out = Command::new(BIN)
        .args(["plugin", "call", "--json"])
        .arg(&wasm)
        .arg("--manifest")
        .arg(dir.join("plugin.toml"))
        .arg("--workflow")
        .arg(&workflow)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["plugin"], "my-style");
    assert_eq!(v["hook"], "prompt-transform");
    let rewritten = &v["result"]["Rewritten"];
    assert_eq!(
        rewritten["workflow"]["6"]["inputs"]["text"], "a lighthouse, watercolor",
        "{v:#}"
    );
    assert_eq!(rewritten["workflow"]["7"]["inputs"]["text"], "blurry");
    assert!(v["logs"].to_string().contains("watercolor"), "{v:#}");
    assert!(v["elapsed_ms"].as_f64().unwrap() > 0.0);
    let peak = v["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak > 0 && peak <= v["memory_budget_bytes"].as_u64().unwrap());

    // Config the schema refuses is refused before the plugin runs, as the host would.
    std::fs::write(&config, r#"{"suffix": 7}"#).unwrap();
    let out = Command::new(BIN)
        .args(["plugin", "call"])
        .arg(&wasm)
        .arg("--manifest")
        .arg(dir.join("plugin.toml"))
        .arg("--workflow")
        .arg(&workflow)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("suffix"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
