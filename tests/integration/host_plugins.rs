//! Plugins inside the real `comfyhost` binary: drop-in discovery, the install API, live config
//! and enablement, the declared-AND-granted rule on updates, rollback, and a hostile router that
//! is cut off at its deadline and tripped by the crash-loop breaker while the host keeps serving.

use std::time::{Duration, Instant};

use crate::support::wasm::{build_component, plugin_dir, workspace_root};
use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use serde_json::{Value, json};

fn template_manifest() -> String {
    std::fs::read_to_string(workspace_root().join("sdk/templates/queue-router/plugin.toml"))
        .expect("template manifest")
}

fn template_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, dir) = plugin_dir("comfyhost-template-queue-router", &template_manifest());
    std::fs::copy(
        workspace_root().join("sdk/templates/queue-router/config.schema.json"),
        dir.join("config.schema.json"),
    )
    .expect("schema");
    (tmp, dir)
}

async fn submit(host: &Host) -> (u16, Value) {
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": empty_image_workflow("plug"), "client_id": "itest-plugins"}))
        .send()
        .await
        .expect("submit");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn admin_put(host: &Host, path: &str, body: Value) -> reqwest::Response {
    Host::client()
        .put(host.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn drop_in_router_config_and_toggle_take_effect_live() {
    let (_tmp, dir) = template_dir();
    let host = Host::builder().plugin_dir(dir).start().await;

    let info = host.admin_get("/comfyhost/api/plugins/node-limit").await;
    assert_eq!(info["state"]["state"], "enabled", "{info:#}");
    assert_eq!(info["sha256"].as_str().map(str::len), Some(64));

    // Default config lets a 2-node workflow through.
    let (status, body) = submit(&host).await;
    assert_eq!(status, 200, "{body}");

    // Invalid config is refused with the validator's message and changes nothing.
    let r = admin_put(
        &host,
        "/comfyhost/api/plugins/node-limit/config",
        json!({"max_nodes": "many"}),
    )
    .await;
    assert_eq!(r.status(), 400);

    let r = admin_put(
        &host,
        "/comfyhost/api/plugins/node-limit/config",
        json!({"max_nodes": 1}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let (status, body) = submit(&host).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "comfyhost_rejected");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 1"),
        "{body}"
    );
    assert!(
        body["node_errors"].is_object(),
        "ComfyUI's error shape: {body}"
    );

    // Disable: prompts flow again; enable: rejected again.
    let r = host
        .admin_post("/comfyhost/api/plugins/node-limit/disable", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(submit(&host).await.0, 200);
    let r = host
        .admin_post("/comfyhost/api/plugins/node-limit/enable", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(submit(&host).await.0, 400);

    // Plugin logs carry its own records.
    let logs = host
        .admin_get("/comfyhost/api/plugins/node-limit/logs")
        .await;
    assert!(logs.to_string().contains("rejected"), "{logs}");
}

async fn install(host: &Host, manifest: &str, wasm: &[u8]) -> reqwest::Response {
    let schema = std::fs::read_to_string(
        workspace_root().join("sdk/templates/queue-router/config.schema.json"),
    )
    .expect("template schema");
    let form = reqwest::multipart::Form::new()
        .text("manifest", manifest.to_string())
        .text("schema", schema)
        .part(
            "wasm",
            reqwest::multipart::Part::bytes(wasm.to_vec()).file_name("plugin.wasm"),
        );
    Host::client()
        .post(host.url("/comfyhost/api/plugins"))
        .bearer_auth(ADMIN_TOKEN)
        .multipart(form)
        .send()
        .await
        .expect("install")
}

#[tokio::test]
async fn install_api_update_needs_approval_and_rollback() {
    let host = Host::builder().start().await;
    let wasm = std::fs::read(build_component("comfyhost-template-queue-router")).unwrap();
    let v1 = template_manifest();

    // Unauthenticated install is refused.
    let r = Host::client()
        .post(host.url("/comfyhost/api/plugins"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A component that is not wasm is a clear 400.
    let r = install(&host, &v1, b"not a component").await;
    assert_eq!(r.status(), 400, "{:?}", r.text().await);

    let r = install(&host, &v1, &wasm).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["version"], "0.1.0");
    assert_eq!(info["state"]["state"], "enabled");

    // v2 asks for an outbound host: installed but not running until approved.
    let v2 = v1
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"")
        .replace(
            "[budget]",
            "[capabilities]\nhttp = [\"https://api.example.com:443\"]\n\n[budget]",
        );
    let r = install(&host, &v2, &wasm).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["version"], "0.2.0");
    assert_eq!(info["state"]["state"], "needs_approval", "{info:#}");
    assert!(
        info["pending"].to_string().contains("api.example.com"),
        "{info:#}"
    );

    let r = admin_put(
        &host,
        "/comfyhost/api/plugins/node-limit/grants",
        json!({"http": ["https://api.example.com:443"]}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let info = host.admin_get("/comfyhost/api/plugins/node-limit").await;
    assert_eq!(info["state"]["state"], "enabled", "{info:#}");

    // Roll back to 0.1.0.
    let r = host
        .admin_post("/comfyhost/api/plugins/node-limit/rollback", json!({}))
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let info = host.admin_get("/comfyhost/api/plugins/node-limit").await;
    assert_eq!(info["version"], "0.1.0", "{info:#}");
}

#[tokio::test]
async fn hostile_router_is_cut_off_then_tripped_while_the_host_keeps_serving() {
    let manifest = r#"
id = "spin-loop"
version = "0.1.0"
name = "Spins forever"
wit = "0.1.0"
hooks = ["queue-router"]
wasm = "hostile_spin_loop.wasm"

[budget]
deadline_ms = 100
memory_mb = 16
failure = "fail-closed"
"#;
    let (_tmp, dir) = plugin_dir("hostile-spin-loop", manifest);
    let host = Host::builder().plugin_dir(dir).start().await;

    let mut refused = 0;
    for _ in 0..10 {
        let started = Instant::now();
        let (status, body) = submit(&host).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["type"], "comfyhost_plugin_failed", "{body}");
        assert!(
            body["error"]["details"].to_string().contains("deadline"),
            "{body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cut off near its deadline"
        );
        refused += 1;
        // Other traffic is unaffected.
        let r = Host::client()
            .get(host.url("/system_stats"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(refused >= 1, "the spinning router was called");
    let info = host.admin_get("/comfyhost/api/plugins/spin-loop").await;
    assert_eq!(info["state"]["state"], "tripped", "{info:#}");
    // Tripped plugins leave the chain: prompts run again.
    assert_eq!(submit(&host).await.0, 200);
}

#[tokio::test]
async fn a_plugin_copied_into_the_drop_in_directory_is_loaded_live() {
    let host = Host::builder()
        .arg("--plugins-rescan")
        .arg("1")
        .start()
        .await;
    assert_eq!(host.admin_get("/comfyhost/api/plugins").await, json!([]));
    let (_tmp, dir) = template_dir();
    let target = host.data_dir.path().join("plugins").join("node-limit");
    std::fs::create_dir_all(&target).unwrap();
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), target.join(f.file_name())).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = host.admin_get("/comfyhost/api/plugins").await;
        if list.as_array().is_some_and(|l| {
            l.iter()
                .any(|p| p["id"] == "node-limit" && p["state"]["state"] == "enabled")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drop-in plugin never loaded: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Removing the directory unloads it.
    std::fs::remove_dir_all(&target).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while host.admin_get("/comfyhost/api/plugins").await != json!([]) {
        assert!(Instant::now() < deadline, "removed plugin still listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
