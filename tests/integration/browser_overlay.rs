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
        .arg("--comfyui-arg=--front-end-root")
        .arg(format!("--comfyui-arg={}", pre.frontend.display()))
        .arg("--comfyui-arg=--sim-node-delay-ms")
        .arg("--comfyui-arg=700")
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
        .arg("--comfyui-arg=--front-end-root")
        .arg(format!("--comfyui-arg={}", pre.frontend.display()))
        .arg("--comfyui-arg=--sim-models-dir")
        .arg(format!("--comfyui-arg={}", models.path().display()))
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

/// Queues `workflow` from the page through ComfyUI's own API object (so it carries the page's
/// clientId); returns ComfyUI's (or the host's) answer status and body.
async fn post_prompt_from_page(b: &mut Browser, workflow: &serde_json::Value) -> serde_json::Value {
    b.eval(&format!(
        "(async () => {{ const api = window.app.api; const r = await api.fetchApi('/prompt', {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: JSON.stringify({{prompt: {workflow}, client_id: api.clientId}})}}); return {{status: r.status, body: await r.json()}}; }})()"
    ))
    .await
}

fn row_text(prompt_id: &str) -> String {
    format!(
        "(document.querySelector('.comfyhost-overlay-job[data-prompt-id=\"{prompt_id}\"]')?.innerText || '')"
    )
}

fn slow_workflow(prefix: &str) -> serde_json::Value {
    // A TestSleep between the image and the save keeps the job running for a while.
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": 4.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}
    })
}

async fn load_comfyui(b: &mut Browser, url: &str) {
    b.navigate(url).await;
    b.wait_for(
        "the ComfyUI app",
        "!!(window.app && window.app.graph && window.app.api && window.app.api.socket && window.app.api.socket.readyState === 1)",
        Duration::from_secs(60),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_is_honest_about_a_crash_a_refusal_and_a_deletion() {
    let Some(pre) = browser::prereqs() else {
        return;
    };
    let plugins = tempfile::tempdir().expect("tmp");
    let host = Host::builder()
        .plugin_dir(first_party_plugin("status-overlay", plugins.path()))
        .arg("--comfyui-arg=--front-end-root")
        .arg(format!("--comfyui-arg={}", pre.frontend.display()))
        .start()
        .await;
    let mut b = Browser::launch(&pre.chromium).await;
    load_comfyui(&mut b, &host.url("/")).await;
    b.wait_for(
        "the overlay script",
        "!!window.__comfyhostOverlay",
        Duration::from_secs(20),
    )
    .await;

    // ComfyUI killed mid-job: the banner says so within 2 s, and the page throws nothing
    // while ComfyUI restarts.
    let r = post_prompt_from_page(&mut b, &slow_workflow("crash")).await;
    let crashed = r["body"]["prompt_id"].as_str().expect("id").to_string();
    b.wait_for(
        "a running banner",
        &format!("{}.includes('Running')", row_text(&crashed)),
        Duration::from_secs(20),
    )
    .await;
    let uncaught_before = b.uncaught();
    let pid = host.comfy_state().await["pid"].as_i64().expect("pid") as i32;
    // SAFETY: SIGKILL to the simulator child the host reported.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let killed = std::time::Instant::now();
    let failed = b
        .wait_for(
            "the failure in the banner within 2 s",
            &format!(
                "document.querySelector('.comfyhost-overlay-job[data-prompt-id=\"{crashed}\"]')?.dataset.severity === 'error' && {}",
                row_text(&crashed)
            ),
            Duration::from_secs(2),
        )
        .await;
    println!("banner after kill -9 ({:?}): {failed}", killed.elapsed());
    b.screenshot("overlay-crash.png").await;
    host.wait_comfy("ComfyUI back", Duration::from_secs(40), |s| {
        s["state"] == "ready" && s["restarts"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    b.wait_for(
        "the page's socket still open",
        "window.app.api.socket.readyState === 1",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        b.uncaught(),
        uncaught_before,
        "uncaught exceptions during the restart: {:?}",
        b.errors
    );

    // A prompt ComfyUI refuses: the banner ends with the reason instead of "Queued".
    let bad = json!({"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}});
    let r = post_prompt_from_page(&mut b, &bad).await;
    assert_eq!(r["status"], 400, "{r}");
    let refused = host.admin_get("/comfyhost/api/jobs").await[0]["prompt_id"]
        .as_str()
        .expect("id")
        .to_string();
    let text = b
        .wait_for(
            "the refusal in the banner",
            &format!(
                "{}.includes('Not queued') && {}",
                row_text(&refused),
                row_text(&refused)
            ),
            Duration::from_secs(10),
        )
        .await;
    println!("banner after a refusal: {text}");
    b.screenshot("overlay-refused.png").await;

    // A prompt deleted from the queue: "Cancelled", not a failure.
    let first = post_prompt_from_page(&mut b, &slow_workflow("keep")).await;
    let second = post_prompt_from_page(&mut b, &slow_workflow("drop")).await;
    let deleted = second["body"]["prompt_id"]
        .as_str()
        .expect("id")
        .to_string();
    b.eval(&format!(
        "window.app.api.fetchApi('/queue', {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: JSON.stringify({{delete: ['{deleted}']}})}}).then(r => r.status)"
    ))
    .await;
    let text = b
        .wait_for(
            "cancelled in the banner",
            &format!(
                "{}.includes('Cancelled') && {}",
                row_text(&deleted),
                row_text(&deleted)
            ),
            Duration::from_secs(10),
        )
        .await;
    println!("banner after a deletion: {text}");
    b.screenshot("overlay-cancelled.png").await;
    let kept = first["body"]["prompt_id"].as_str().expect("id").to_string();
    b.wait_for(
        "the other prompt done",
        &format!("{}.includes('Done in')", row_text(&kept)),
        Duration::from_secs(30),
    )
    .await;
    let ours: Vec<&String> = b
        .errors
        .iter()
        .chain(b.log_errors.iter())
        .filter(|e| e.contains("comfyhost"))
        .collect();
    assert!(ours.is_empty(), "errors from the host's parts: {ours:?}");
}

/// Console errors and uncaught exceptions the stock frontend shows while ComfyUI is killed and
/// comes back, loaded through the host and loaded from the simulator directly. Printed as
/// figures; the host must add no uncaught exception.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_noise_during_a_comfyui_restart_through_the_host_and_directly() {
    let Some(pre) = browser::prereqs() else {
        return;
    };
    // Through the host (it restarts ComfyUI by itself).
    let host = Host::builder()
        .arg("--comfyui-arg=--front-end-root")
        .arg(format!("--comfyui-arg={}", pre.frontend.display()))
        .start()
        .await;
    let mut b = Browser::launch(&pre.chromium).await;
    load_comfyui(&mut b, &host.url("/")).await;
    b.eval("true").await;
    let (e0, l0, u0) = (b.errors.len(), b.log_errors.len(), b.uncaught());
    let pid = host.comfy_state().await["pid"].as_i64().expect("pid") as i32;
    // SAFETY: SIGKILL to the simulator child the host reported.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let killed = std::time::Instant::now();
    host.wait_comfy("ComfyUI back", Duration::from_secs(40), |s| {
        s["state"] == "ready" && s["restarts"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let down = killed.elapsed();
    let window = down + Duration::from_secs(5);
    while killed.elapsed() < window {
        b.eval("true").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let through_host = (
        b.errors.len() - e0 - (b.uncaught() - u0),
        b.log_errors.len() - l0,
        b.uncaught() - u0,
    );
    for e in b.errors[e0..].iter().chain(b.log_errors[l0..].iter()) {
        println!(
            "through the host: {}",
            e.chars().take(200).collect::<String>()
        );
    }
    drop(b);
    drop(host);

    // Directly: the same simulator, killed and started again after the same downtime.
    let dirs = tempfile::tempdir().expect("tmp");
    let port = crate::support::free_port();
    let spawn = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_comfyhost"));
        cmd.arg("simulate-comfyui")
            .args(["--listen", "127.0.0.1", "--port", &port.to_string()])
            .arg("--front-end-root")
            .arg(&pre.frontend);
        for (flag, sub) in [
            ("--output-directory", "output"),
            ("--input-directory", "input"),
            ("--user-directory", "user"),
            ("--temp-directory", "temp"),
        ] {
            let d = dirs.path().join(sub);
            std::fs::create_dir_all(&d).expect("dir");
            cmd.arg(flag).arg(d);
        }
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("simulator")
    };
    let wait_up = || async {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("http://127.0.0.1:{port}/system_stats"))
            .await
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "simulator not up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut sim = spawn();
    wait_up().await;
    let mut b = Browser::launch(&pre.chromium).await;
    load_comfyui(&mut b, &format!("http://127.0.0.1:{port}/")).await;
    b.eval("true").await;
    let (e0, l0, u0) = (b.errors.len(), b.log_errors.len(), b.uncaught());
    let _ = sim.kill();
    let _ = sim.wait();
    let killed = std::time::Instant::now();
    while killed.elapsed() < down {
        b.eval("true").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut sim = spawn();
    wait_up().await;
    while killed.elapsed() < window {
        b.eval("true").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let directly = (
        b.errors.len() - e0 - (b.uncaught() - u0),
        b.log_errors.len() - l0,
        b.uncaught() - u0,
    );
    for e in b.errors[e0..].iter().chain(b.log_errors[l0..].iter()) {
        println!("directly: {}", e.chars().take(200).collect::<String>());
    }
    let _ = sim.kill();
    let _ = sim.wait();
    println!(
        "ComfyUI killed and back after {down:?}, observed for {window:?}: \
         through the host {} console errors + {} browser-logged errors, {} uncaught exceptions; \
         directly {} console errors + {} browser-logged errors, {} uncaught exceptions",
        through_host.0, through_host.1, through_host.2, directly.0, directly.1, directly.2
    );
    assert_eq!(through_host.2, 0, "uncaught exceptions through the host");
}
