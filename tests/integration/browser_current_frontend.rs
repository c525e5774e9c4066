//! The current ComfyUI frontend (1.58.x, `COMFYHOST_FRONTEND_CURRENT_DIR`) against the host in
//! simulator mode (0.33.0 profile) with a remote ComfyUI backend (issue 19): a job that runs on
//! the remote backend is what the page's queue reads (`/api/jobs`), and the host causes no
//! console error.

use std::time::Duration;

use crate::support::browser::{self, Browser};
use crate::support::remote::{RemoteSim, backends_file};
use crate::support::wasm::first_party_plugin;
use crate::support::{ADMIN_TOKEN, Host};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_current_frontend_shows_a_remote_job_in_its_queue() {
    let Some(pre) = browser::prereqs_current_frontend() else {
        return;
    };
    let remote = RemoteSim::start(&["--sim-node-delay-ms", "100"]).await;
    let cfg = tempfile::tempdir().expect("tmp");
    let file = backends_file(
        cfg.path(),
        &format!(
            "[[comfyui]]\nname = \"a\"\nurl = \"{}\"\n[timings]\nhealth_every_ms = 200\n",
            remote.url()
        ),
    );
    let plugins = tempfile::tempdir().expect("tmp");
    let host = Host::builder()
        .plugin_dir(first_party_plugin("queue-redirect", plugins.path()))
        .arg("--backends")
        .arg(file.display().to_string())
        .arg("--comfyui-arg=--front-end-root")
        .arg(format!("--comfyui-arg={}", pre.frontend.display()))
        .start()
        .await;
    let r = Host::client()
        .put(host.url("/comfyhost/api/plugins/queue-redirect/config"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"rules": [{"name": "all", "route": "backend:a"}]}))
        .send()
        .await
        .expect("config");
    assert!(r.status().is_success());
    let mut b = Browser::launch(&pre.chromium).await;
    b.navigate(&host.url("/")).await;
    b.wait_for(
        "the ComfyUI app",
        "!!(window.app && window.app.graph && window.app.api && window.app.api.socket && window.app.api.socket.readyState === 1)",
        Duration::from_secs(60),
    )
    .await;
    // Wait for the backend to be healthy before queueing.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !host
        .admin_get("/comfyhost/api/backends")
        .await
        .to_string()
        .contains("\"healthy\":true")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "backend never healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let workflow = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 7}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": 4.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "cur"}}
    });
    let answer = b
        .eval(&format!(
            "(async () => {{ const api = window.app.api; const r = await api.fetchApi('/prompt', {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: JSON.stringify({{prompt: {workflow}, client_id: api.clientId}})}}); return await r.json(); }})()"
        ))
        .await;
    let pid = answer["prompt_id"].as_str().expect("prompt id").to_string();
    // The page's own queue view (the jobs API the queue panel reads) lists it running.
    b.wait_for(
        "the remote job in the page's queue",
        &format!(
            "(async () => {{ const r = await window.app.api.fetchApi('/api/jobs?status=in_progress,pending'); const j = await r.json(); return (j.jobs || []).some(x => x.id === '{pid}' && x.status === 'in_progress'); }})()"
        ),
        Duration::from_secs(20),
    )
    .await;
    // ...and completed afterwards.
    b.wait_for(
        "the remote job completed in the page's queue",
        &format!(
            "(async () => {{ const r = await window.app.api.fetchApi('/api/jobs?status=completed'); const j = await r.json(); return (j.jobs || []).some(x => x.id === '{pid}'); }})()"
        ),
        Duration::from_secs(30),
    )
    .await;
    // The simulator has no `comfyui-workflow-templates` package behind `/templates/*` (a real
    // ComfyUI installs it), so 1.58's template loader logs a 404: the simulator's, not the
    // host's. Every other console error counts.
    let host_errors: Vec<&String> = b
        .errors
        .iter()
        .filter(|e| !e.contains("Error loading core workflow templates"))
        .collect();
    assert!(
        host_errors.is_empty(),
        "console errors with frontend 1.58: {host_errors:#?}"
    );
    assert!(
        remote.history_ids().await.contains(&pid),
        "ran on the remote"
    );
}
