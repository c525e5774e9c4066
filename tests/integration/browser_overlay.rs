//! Browser end-to-end: the real ComfyUI frontend (`comfyui-frontend-package`, served by the
//! simulator) loaded through the real `comfyhost` binary in headless Chromium. Queues a
//! workflow from the page, watches the status-overlay banner progress to completion and to a
//! readable error, checks the admin view and that disabling the plugin removes the banner on
//! the next page load; and the frontend's stock default workflow built and run in simulator
//! mode. Screenshots are kept under `target/test-artifacts/`.

use std::time::Duration;

use crate::support::browser::{self, Browser};
use crate::support::wasm::first_party_plugin;
use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use serde_json::json;

const BANNER_TEXT: &str = "(document.getElementById('comfyhost-overlay')?.innerText || '')";

async fn queue_from_page(b: &mut Browser, workflow: serde_json::Value) {
    let expr = format!(
        "(async () => {{ await window.app.loadApiJson({workflow}, 'e2e.json'); await window.app.queuePrompt(0, 1); return true; }})()"
    );
    b.eval(&expr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_follows_a_workflow_queued_in_the_real_frontend() {
    let Some(pre) = browser::prereqs() else {
        return;
    };
    let plugins = tempfile::tempdir().expect("tmp");
    let host = Host::builder()
        .plugin_dir(first_party_plugin("status-overlay", plugins.path()))
        .arg("--comfyui-arg")
        .arg(format!(
            "--front-end-root {} --sim-node-delay-ms 700",
            pre.frontend.display()
        ))
        .start()
        .await;
    let mut b = Browser::launch(&pre.chromium).await;
    // Sign in as the admin the way a page does (session cookie), then load ComfyUI.
    b.navigate(&host.url("/comfyhost/api/health")).await;
    let signed_in = b
        .eval(&format!(
            "fetch('/comfyhost/api/session', {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: JSON.stringify({{token: '{ADMIN_TOKEN}'}})}}).then(r => r.status)"
        ))
        .await;
    assert_eq!(signed_in, json!(200));
    b.navigate(&host.url("/")).await;
    b.wait_for(
        "the ComfyUI app",
        "!!(window.app && window.app.graph)",
        Duration::from_secs(60),
    )
    .await;
    b.wait_for(
        "the overlay script",
        "!!window.__comfyhostOverlay",
        Duration::from_secs(20),
    )
    .await;

    queue_from_page(&mut b, empty_image_workflow("e2e")).await;
    let running = b
        .wait_for(
            "a running banner",
            &format!("{BANNER_TEXT}.includes('Running') && {BANNER_TEXT}"),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        running.as_str().unwrap_or("").contains("nodes"),
        "{running}"
    );
    b.screenshot("overlay-running.png").await;
    let done = b
        .wait_for(
            "a finished banner",
            &format!("{BANNER_TEXT}.includes('Done in') && {BANNER_TEXT}"),
            Duration::from_secs(30),
        )
        .await;
    println!("banner: {done}");
    b.screenshot("overlay-done.png").await;

    // Admin view: ids and backend.
    b.eval("document.querySelector('.comfyhost-overlay-mode')?.click(); true")
        .await;
    let admin = b
        .wait_for(
            "admin detail",
            "document.querySelector('.comfyhost-overlay-admin')?.innerText",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        admin.as_str().unwrap_or("").contains("backend local"),
        "{admin}"
    );
    b.screenshot("overlay-admin.png").await;

    // A failing workflow: a readable error.
    queue_from_page(&mut b, empty_image_workflow("../escape")).await;
    let err = b
        .wait_for(
            "an error banner",
            &format!("{BANNER_TEXT}.includes('failed') && {BANNER_TEXT}"),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        err.as_str().unwrap_or("").contains("SaveImage failed"),
        "{err}"
    );
    b.screenshot("overlay-error.png").await;
    let ours: Vec<&String> = b
        .errors
        .iter()
        .filter(|e| e.contains("comfyhost"))
        .collect();
    assert!(ours.is_empty(), "overlay script errors: {ours:?}");

    // Disabled in the host: gone on the next page load, and the page still works.
    let r = host
        .admin_post("/comfyhost/api/plugins/status-overlay/disable", json!({}))
        .await;
    assert!(r.status().is_success());
    b.navigate(&host.url("/")).await;
    b.wait_for(
        "the ComfyUI app",
        "!!(window.app && window.app.graph)",
        Duration::from_secs(60),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.eval("!!window.__comfyhostOverlay").await, json!(false));
    assert_eq!(
        b.eval("!!document.getElementById('comfyhost-overlay')")
            .await,
        json!(false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frontends_default_workflow_runs_in_simulator_mode() {
    let Some(pre) = browser::prereqs() else {
        return;
    };
    // The checkpoint the stock default workflow names, in the simulated models folder.
    let models = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(models.path().join("checkpoints")).expect("mkdir");
    std::fs::write(
        models
            .path()
            .join("checkpoints/v1-5-pruned-emaonly-fp16.safetensors"),
        b"not really a model",
    )
    .expect("write");
    let plugins = tempfile::tempdir().expect("tmp");
    let host = Host::builder()
        .plugin_dir(first_party_plugin("queue-redirect", plugins.path()))
        .arg("--comfyui-arg")
        .arg(format!(
            "--front-end-root {} --sim-models-dir {}",
            pre.frontend.display(),
            models.path().display()
        ))
        .start()
        .await;
    let mut b = Browser::launch(&pre.chromium).await;
    b.navigate(&host.url("/")).await;
    b.wait_for(
        "the ComfyUI app",
        "!!(window.app && window.app.graph)",
        Duration::from_secs(60),
    )
    .await;
    // The stock default graph, built from the simulator's node list, queued from the page.
    let types = b
        .wait_for(
            "the default graph",
            "(async () => { await window.app.loadGraphData(); \
             const t = window.app.graph._nodes.map(n => n.type).sort(); return t.length >= 7 && t.join(','); })()",
            Duration::from_secs(20),
        )
        .await;
    println!("default graph: {types}");
    let api = b
        .eval("(async () => JSON.stringify((await window.app.graphToPrompt()).output))()")
        .await;
    let api: serde_json::Value =
        serde_json::from_str(api.as_str().unwrap_or("null")).expect("api json");
    for (id, node) in api.as_object().expect("api prompt") {
        assert!(
            node["class_type"].is_string(),
            "node {id}: {node}; page errors: {:#?}",
            b.errors
        );
    }
    b.eval("(async () => { await window.app.queuePrompt(0, 1); return true; })()")
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = host.admin_get("/comfyhost/api/jobs").await;
        let statuses: Vec<String> = jobs["jobs"]
            .as_array()
            .or(jobs.as_array())
            .into_iter()
            .flatten()
            .map(|j| j["status"].as_str().unwrap_or("?").to_string())
            .collect();
        if statuses.iter().any(|s| s == "succeeded") {
            break;
        }
        assert!(
            !statuses.iter().any(|s| s == "rejected" || s == "failed"),
            "{jobs:#}"
        );
        assert!(std::time::Instant::now() < deadline, "{jobs:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An unknown node type gets ComfyUI's own validation error, not a plugin failure.
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(
            &json!({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}, "client_id": "x"}),
        )
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_prompt", "{body}");
    assert_eq!(
        body["error"]["message"], "Cannot execute because node NoSuchNode does not exist.",
        "{body}"
    );
}
