//! Plugins inside the real `comfyhost` binary: drop-in discovery, the install API, live config
//! and enablement, the declared-AND-granted rule on updates, rollback, and a hostile router that
//! is cut off at its deadline and tripped by the crash-loop breaker while the host keeps serving,
//! a tripped fail-closed router that keeps its hook closed, and malformed prompts refused by the
//! host before any plugin runs.

use std::time::{Duration, Instant};

use crate::support::wasm::{build_component, first_party_plugin, plugin_dir, workspace_root};
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

    // Disable: the limit is fail-closed, so its hook stays closed (never a silent skip);
    // enable: the limit applies again.
    let r = host
        .admin_post("/comfyhost/api/plugins/node-limit/disable", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let (status, body) = submit(&host).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"]["type"], "comfyhost_plugin_unavailable",
        "{body}"
    );
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
        assert_eq!(status, 503, "{body}");
        if body["error"]["type"] == "comfyhost_plugin_unavailable" {
            break;
        }
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
    assert!(
        info["breaker"]["fault_time_ms"].as_u64().unwrap_or(0) >= 100,
        "time spent in faults is counted: {info:#}"
    );
    // A tripped fail-closed router keeps its hook closed: refused at once, never skipped.
    let started = Instant::now();
    let (status, body) = submit(&host).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"]["type"], "comfyhost_plugin_unavailable",
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not called again"
    );
}

/// A submission that is not an API-format workflow, as the stock frontend sends when a node
/// type is missing (no `class_type`).
async fn submit_malformed(host: &Host) -> (u16, Value) {
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": {"4": {"inputs": {"UNKNOWN": "x"}}}, "client_id": "x"}))
        .send()
        .await
        .expect("submit");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The first-party prompt-enhance plugin as shipped (its manifest and schema, no grants).
fn prompt_enhance_plugin(root: &std::path::Path) -> std::path::PathBuf {
    let wasm = build_component("comfyhost-plugin-prompt-enhance");
    let dir = root.join("prompt-enhance");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let src = workspace_root().join("plugins/prompt-enhance");
    for f in ["plugin.toml", "config.schema.json"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy plugin file");
    }
    std::fs::copy(&wasm, dir.join(wasm.file_name().expect("wasm name"))).expect("copy wasm");
    dir
}

#[tokio::test]
async fn malformed_prompts_are_refused_by_the_host_and_leave_every_plugin_enabled() {
    let root = tempfile::tempdir().expect("tempdir");
    let redirect = first_party_plugin("queue-redirect", root.path());
    let enhance = prompt_enhance_plugin(root.path());
    let host = Host::builder()
        .plugin_dir(redirect)
        .plugin_dir(enhance)
        .start()
        .await;
    let r = admin_put(
        &host,
        "/comfyhost/api/plugins/queue-redirect/config",
        json!({"default_route": "reject"}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    for _ in 0..5 {
        let (status, body) = submit_malformed(&host).await;
        // ComfyUI's own answer for a node without class_type, from the host, no plugin run.
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["type"], "invalid_prompt", "{body}");
        assert_eq!(
            body["error"]["message"],
            "Cannot execute because a node is missing the class_type property.",
            "{body}"
        );
        assert_eq!(body["error"]["details"], "Node ID '#4'", "{body}");
        assert_eq!(body["node_errors"], json!({}), "{body}");
    }
    for p in host
        .admin_get("/comfyhost/api/plugins")
        .await
        .as_array()
        .expect("list")
    {
        assert_eq!(p["state"]["state"], "enabled", "{p:#}");
        assert_eq!(p["breaker"]["failures_in_window"], 0, "{p:#}");
        assert_eq!(p["stats"]["calls"], 0, "no plugin ran: {p:#}");
    }
    // The router's policy still applies: a valid prompt is rejected, not run locally.
    let (status, body) = submit(&host).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "comfyhost_rejected", "{body}");
}

#[tokio::test]
async fn a_fail_closed_router_tripped_by_traps_refuses_prompts_until_re_enabled() {
    let manifest = r#"
id = "trapper"
version = "0.1.0"
name = "Traps on every call"
wit = "0.1.0"
hooks = ["queue-router"]
wasm = "hostile_trapping_router.wasm"

[budget]
failure = "fail-closed"
"#;
    let (_tmp, dir) = plugin_dir("hostile-trapping-router", manifest);
    let host = Host::builder().plugin_dir(dir).start().await;

    // Faults: each refused as a plugin failure, until the breaker trips (three in a row).
    let mut faults = 0;
    loop {
        let (status, body) = submit(&host).await;
        assert_eq!(status, 503, "{body}");
        if body["error"]["type"] == "comfyhost_plugin_unavailable" {
            break;
        }
        assert_eq!(body["error"]["type"], "comfyhost_plugin_failed", "{body}");
        assert!(
            body["error"]["details"].to_string().contains("trap"),
            "{body}"
        );
        faults += 1;
        assert!(faults <= 5, "the breaker never tripped");
    }
    assert_eq!(faults, 3, "three faults in a row trip it");
    let info = host.admin_get("/comfyhost/api/plugins/trapper").await;
    assert_eq!(info["state"]["state"], "tripped", "{info:#}");
    assert_eq!(info["breaker"]["reason"], "consecutive_faults", "{info:#}");
    assert!(
        info["breaker"]["last_error_at_ms"].as_u64().is_some(),
        "{info:#}"
    );

    // Tripped: every prompt is refused with a clear message, the plugin is not called again.
    for _ in 0..3 {
        let (status, body) = submit(&host).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["type"], "comfyhost_plugin_unavailable");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("trapper"), "{body}");
        assert!(body["node_errors"].is_object(), "ComfyUI's shape: {body}");
    }
    let info = host.admin_get("/comfyhost/api/plugins/trapper").await;
    assert_eq!(info["stats"]["calls"], 3, "{info:#}");
    // The admin is alerted: the trip is in the activity, the refusals in the plugin's log.
    let activity = host.admin_get("/comfyhost/api/activity").await;
    assert!(
        activity.to_string().contains("plugin.breaker_tripped"),
        "{activity:#}"
    );
    let logs = host.admin_get("/comfyhost/api/plugins/trapper/logs").await;
    assert!(logs.to_string().contains("refused"), "{logs:#}");
    assert!(
        logs.to_string().contains("queue-router failed: trap"),
        "{logs:#}"
    );

    // Re-enabled by the admin: it runs (and faults) again.
    let r = host
        .admin_post("/comfyhost/api/plugins/trapper/enable", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let (status, body) = submit(&host).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "comfyhost_plugin_failed", "{body}");
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

async fn activity_with(host: &Host, action: &str, target: &str) -> Vec<Value> {
    host.admin_get("/comfyhost/api/activity")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["action"] == action && a["target"] == target)
        .collect()
}

async fn wait_activity(host: &Host, action: &str, target: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(a) = activity_with(host, action, target).await.into_iter().next() {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no {action} for {target}: {:#}",
            host.admin_get("/comfyhost/api/activity").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_admin_sees_every_plugin_change_and_a_broken_folder_is_warned_once() {
    let host = Host::builder()
        .arg("--plugins-rescan")
        .arg("1")
        .start()
        .await;
    // Drop-in install: recorded with version and hash.
    let (_tmp, dir) = template_dir();
    let target = host.data_dir.path().join("plugins").join("node-limit");
    std::fs::create_dir_all(&target).unwrap();
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), target.join(f.file_name())).unwrap();
    }
    let a = wait_activity(&host, "plugin.dropin_installed", "node-limit").await;
    assert_eq!(a["detail"]["version"], "0.1.0", "{a:#}");
    assert_eq!(
        a["detail"]["sha256"].as_str().map(str::len),
        Some(64),
        "{a:#}"
    );

    // A config change records what changed.
    let before =
        host.admin_get("/comfyhost/api/plugins/node-limit").await["config"]["max_nodes"].clone();
    let r = admin_put(
        &host,
        "/comfyhost/api/plugins/node-limit/config",
        json!({"max_nodes": 7}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let a = wait_activity(&host, "plugin.config", "node-limit").await;
    assert_eq!(
        a["detail"]["changed"]["max_nodes"],
        json!({"from": before, "to": 7}),
        "{a:#}"
    );

    // Drop-in replacement (a new version copied over the old one).
    let manifest = std::fs::read_to_string(target.join("plugin.toml"))
        .unwrap()
        .replace("version = \"0.1.0\"", "version = \"0.1.1\"");
    std::fs::write(target.join("plugin.toml"), manifest).unwrap();
    let a = wait_activity(&host, "plugin.dropin_replaced", "node-limit").await;
    assert_eq!(
        (
            a["detail"]["previous"].as_str(),
            a["detail"]["version"].as_str()
        ),
        (Some("0.1.0"), Some("0.1.1")),
        "{a:#}"
    );

    // A broken folder: listed with its error, warned once however many rescans.
    let broken = host.data_dir.path().join("plugins").join("half-copied");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("plugin.toml"), "id = ").unwrap();
    for _ in 0..4 {
        let r = host
            .admin_post("/comfyhost/api/plugins/rescan", json!({}))
            .await;
        assert_eq!(r.status(), 200);
    }
    let list = host.admin_get("/comfyhost/api/plugins").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "half-copied" && p["state"]["state"] == "broken"),
        "{list:#}"
    );
    let warnings = host
        .output_text()
        .lines()
        .filter(|l| l.contains("plugin directory is broken") && l.contains("half-copied"))
        .count();
    assert_eq!(warnings, 1, "{}", host.output_text());
}

#[tokio::test]
async fn an_empty_schema_part_in_an_upload_counts_as_absent() {
    let host = Host::builder().start().await;
    let wasm = std::fs::read(build_component("comfyhost-template-queue-router")).unwrap();
    let upload = |manifest: String| {
        let form = reqwest::multipart::Form::new()
            .text("manifest", manifest)
            .part(
                "schema",
                reqwest::multipart::Part::bytes(Vec::new()).file_name(""),
            )
            .part(
                "wasm",
                reqwest::multipart::Part::bytes(wasm.clone()).file_name("plugin.wasm"),
            );
        Host::client()
            .post(host.url("/comfyhost/api/plugins"))
            .bearer_auth(ADMIN_TOKEN)
            .multipart(form)
            .send()
    };
    // The manifest names a schema: the clear "no schema supplied" message, not a JSON error.
    let r = upload(template_manifest()).await.unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("no schema was supplied"), "{text}");
    // A manifest without a schema installs.
    let no_schema = template_manifest().replace("[config]\nschema = \"config.schema.json\"", "");
    let r = upload(no_schema).await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let a = wait_activity(&host, "plugin.install", "node-limit").await;
    assert_eq!(a["detail"]["version"], "0.1.0");
}
