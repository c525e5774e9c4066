//! Remote jobs with the current ComfyUI (issue 19, findings 3 and 5): a simulator in its
//! default 0.33.0 profile acts as the remote backend; its previews and `progress_text` frames,
//! the page's `status`, integer queue numbers and a validation refusal recorded `rejected`.

use std::time::{Duration, Instant};

use crate::support::remote::{RemoteSim, backends_file};
use crate::support::wasm::first_party_plugin;
use crate::support::{
    ADMIN_TOKEN, Host, empty_image_workflow, models_dir_with_checkpoint, sampler_workflow,
};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const FAST_TIMINGS: &str = "[timings]\nhealth_every_ms = 200\npoll_every_ms = 100\nlost_after_ms = 3000\nunreachable_after_ms = 3000\nrequest_timeout_ms = 3000\n";

struct Setup {
    host: Host,
    _plugin: tempfile::TempDir,
    _cfg: tempfile::TempDir,
}

/// A host whose every prompt goes to the remote ComfyUI `a`.
async fn start(remote: &RemoteSim) -> Setup {
    let cfg = tempfile::tempdir().expect("tempdir");
    let file = backends_file(
        cfg.path(),
        &format!(
            "[[comfyui]]\nname = \"a\"\nurl = \"{}\"\n{FAST_TIMINGS}",
            remote.url()
        ),
    );
    let plugin = tempfile::tempdir().expect("tempdir");
    let dir = first_party_plugin("queue-redirect", plugin.path());
    let host = Host::builder()
        .plugin_dir(dir)
        .arg("--backends")
        .arg(file.display().to_string())
        .start()
        .await;
    let r = Host::client()
        .put(host.url("/comfyhost/api/plugins/queue-redirect/config"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"rules": [{"name": "all", "route": "backend:a"}]}))
        .send()
        .await
        .expect("config");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let b = host.admin_get("/comfyhost/api/backends").await;
        if let Some(a) = b.as_array().into_iter().flatten().find(|x| {
            // The version comes from a second request beside the queue check; under load
            // the first healthy check can come back before it did.
            x["status"]["name"] == "a"
                && x["status"]["healthy"] == true
                && !x["comfyui_version"].is_null()
        }) {
            // Item 5: the host learned what the backend is, from its /system_stats.
            assert_eq!(a["comfyui_version"], "0.33.0", "{a:#}");
            assert!(a["required_frontend_version"].is_string(), "{a:#}");
            break;
        }
        assert!(Instant::now() < deadline, "backend never healthy: {b:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Setup {
        host,
        _plugin: plugin,
        _cfg: cfg,
    }
}

async fn connect(host: &Host, client_id: &str) -> Ws {
    let (ws, _) =
        tokio_tungstenite::connect_async(host.ws_url(&format!("/ws?clientId={client_id}")))
            .await
            .expect("ws connect");
    ws
}

/// Every frame until `prompt_id`'s end marker: text messages and binary frames.
async fn frames_until_done(ws: &mut Ws, prompt_id: &str) -> (Vec<Value>, Vec<Vec<u8>>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (mut texts, mut binaries) = (Vec::new(), Vec::new());
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let m: Value = serde_json::from_str(t.as_str()).expect("json");
                let end = m["type"] == "executing"
                    && m["data"]["node"].is_null()
                    && m["data"]["prompt_id"] == prompt_id;
                texts.push(m);
                if end {
                    return (texts, binaries);
                }
            }
            Ok(Some(Ok(Message::Binary(b)))) => binaries.push(b.to_vec()),
            Ok(Some(Ok(_))) => {}
            other => panic!("no end for {prompt_id}: {other:?}; got {texts:#?}"),
        }
    }
}

fn event_type(frame: &[u8]) -> u32 {
    u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]])
}

async fn submit(host: &Host, workflow: Value, client_id: &str) -> (u16, String) {
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": workflow, "client_id": client_id}))
        .send()
        .await
        .expect("submit");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_progress_text_and_status_of_a_remote_job_reach_its_page() {
    let models = models_dir_with_checkpoint();
    let models_arg = models.path().display().to_string();
    let remote = RemoteSim::start(&[
        "--sim-models-dir",
        &models_arg,
        "--sim-progress-text",
        "--sim-node-delay-ms",
        "60",
    ])
    .await;
    let s = start(&remote).await;
    let host = &s.host;
    let mut ws = connect(host, "c-previews").await;
    let (st, body) = submit(host, sampler_workflow(), "c-previews").await;
    assert_eq!(st, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    let (texts, binaries) = frames_until_done(&mut ws, &pid).await;

    // progress_text (binary type 3): node id length, node id, text, as the backend sent it.
    let texts_of_node: Vec<String> = binaries
        .iter()
        .filter(|f| f.len() >= 8 && event_type(f) == 3)
        .map(|f| {
            let n = u32::from_be_bytes([f[4], f[5], f[6], f[7]]) as usize;
            assert_eq!(&f[8..8 + n], b"3");
            String::from_utf8_lossy(&f[8 + n..]).into_owned()
        })
        .collect();
    assert_eq!(
        texts_of_node,
        ["step 1/4", "step 2/4", "step 3/4", "step 4/4"],
        "progress_text frames"
    );
    // Previews: the host's socket asked for previews with metadata (type 4), naming the job.
    let previews: Vec<&Vec<u8>> = binaries
        .iter()
        .filter(|f| f.len() >= 4 && event_type(f) == 4)
        .collect();
    assert_eq!(previews.len(), 4, "one preview per step");
    let p = previews[0];
    let n = u32::from_be_bytes([p[4], p[5], p[6], p[7]]) as usize;
    let meta: Value = serde_json::from_slice(&p[8..8 + n]).expect("metadata");
    assert_eq!(meta["prompt_id"], pid.as_str());
    assert_eq!(&p[8 + n..8 + n + 4], b"\x89PNG");
    // The page's counter: a status counting the remote job while it runs, and 0 at its end.
    let remaining: Vec<u64> = texts
        .iter()
        .filter(|m| m["type"] == "status")
        .filter_map(|m| m["data"]["status"]["exec_info"]["queue_remaining"].as_u64())
        .collect();
    assert!(
        remaining.contains(&1),
        "status while running: {remaining:?}"
    );
    // As in ComfyUI, the status after the run follows the end marker.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let m: Value = serde_json::from_str(t.as_str()).expect("json");
                if m["type"] == "status" {
                    assert_eq!(m["data"]["status"]["exec_info"]["queue_remaining"], 0);
                    break;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no status after the end: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_numbers_are_integers_and_a_validation_refusal_is_rejected() {
    let remote = RemoteSim::start(&[]).await;
    let s = start(&remote).await;
    let host = &s.host;
    let mut ws = connect(host, "c-numbers").await;

    // Finding 5: `number` is an integer in the answer, /queue, and /api/jobs `priority`.
    let (st, text) = submit(host, empty_image_workflow("num"), "c-numbers").await;
    assert_eq!(st, 200, "{text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert!(body["number"].is_i64(), "integer number: {text}");
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    frames_until_done(&mut ws, &pid).await;
    let jobs: Value = Host::client()
        .get(host.url(&format!("/api/jobs/{pid}")))
        .send()
        .await
        .expect("job")
        .json()
        .await
        .expect("json");
    assert!(jobs["priority"].is_i64(), "integer priority: {jobs:#}");

    // A prompt the backend refuses at validation ends `rejected`, as a local refusal does.
    let bad = json!({"1": {"class_type": "NoSuchNode", "inputs": {}}});
    let (st, text) = submit(host, bad, "c-numbers").await;
    assert_eq!(st, 400, "{text}");
    let jobs = host.admin_get("/comfyhost/api/jobs").await;
    let list = jobs
        .get("jobs")
        .and_then(Value::as_array)
        .or_else(|| jobs.as_array())
        .cloned()
        .unwrap_or_default();
    let refused: Vec<&Value> = list
        .iter()
        .filter(|j| j["backend"] == "a" && j["prompt_id"] != pid.as_str())
        .collect();
    assert_eq!(refused.len(), 1, "{jobs:#}");
    assert_eq!(refused[0]["status"], "rejected", "{jobs:#}");
}
