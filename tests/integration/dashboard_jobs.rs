//! What the dashboard's Jobs page reads, recorded by the REAL `comfyhost` binary: what a
//! prompt-transform plugin changed (its notes, kept in the job record as the WIT promises),
//! who sent a prompt the host refused, when ComfyUI started a local job (from
//! `execution_start`), and an admin cancelling a queued job.

use std::time::{Duration, Instant};

use crate::support::wasm::{plugin_dir, workspace_root};
use crate::support::{
    ADMIN_TOKEN, Host, empty_image_workflow, models_dir_with_checkpoint, sampler_workflow,
};
use serde_json::{Value, json};

/// The job record once `done(record)` holds.
async fn job_when(host: &Host, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = Host::client()
            .get(host.url(&format!("/comfyhost/api/jobs/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("job");
        if r.status() == 200 {
            let j: Value = r.json().await.expect("json");
            if done(&j) {
                return j;
            }
        }
        assert!(Instant::now() < deadline, "job {id} never got there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ended(j: &Value) -> bool {
    j["finished_ms"].is_i64()
}

#[tokio::test]
async fn a_rewritten_job_keeps_the_transform_notes_and_a_refused_one_its_user() {
    let models = models_dir_with_checkpoint();
    let manifest =
        std::fs::read_to_string(workspace_root().join("plugins/prompt-enhance/plugin.toml"))
            .expect("manifest");
    let (_tmp, dir) = plugin_dir("comfyhost-plugin-prompt-enhance", &manifest);
    std::fs::copy(
        workspace_root().join("plugins/prompt-enhance/config.schema.json"),
        dir.join("config.schema.json"),
    )
    .expect("schema");
    let host = Host::builder()
        .plugin_dir(dir)
        .arg("--comfyui-arg=--sim-models-dir")
        .arg(format!("--comfyui-arg={}", models.path().display()))
        .start()
        .await;

    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": sampler_workflow(), "client_id": "itest-notes",
                      "prompt_id": "00000000-0000-4000-8000-00000000e001", "extra_data": {"comfyhost": {"enhance": "cinematic"}}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let j = job_when(&host, "00000000-0000-4000-8000-00000000e001", ended).await;
    let notes: Value =
        serde_json::from_str(j["transform_notes_json"].as_str().expect("notes kept"))
            .expect("json");
    assert_eq!(notes[0]["plugin_id"], "prompt-enhance", "{notes:#}");
    assert!(
        notes[0]["notes"].to_string().contains("cinematic"),
        "{notes:#}"
    );

    // Refused by the host (not an API-format workflow, with a transform chain): recorded with
    // the user whose token came with it.
    let r = Host::client()
        .post(host.url("/prompt"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"prompt": {"1": "not a node"}, "client_id": "itest-notes", "prompt_id": "00000000-0000-4000-8000-00000000f001"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 400, "{:?}", r.text().await);
    let j = job_when(&host, "00000000-0000-4000-8000-00000000f001", ended).await;
    assert_eq!(j["status"], "rejected", "{j:#}");
    assert_eq!(j["route"], "reject", "{j:#}");
    assert_eq!(j["user_id"], "admin", "{j:#}");
}

const FIRST: &str = "00000000-0000-4000-8000-0000000000a1";
const SECOND: &str = "00000000-0000-4000-8000-0000000000a2";
const THIRD: &str = "00000000-0000-4000-8000-0000000000a3";

#[tokio::test]
async fn a_local_job_records_when_comfyui_started_it_and_an_admin_cancels_a_queued_one() {
    let host = Host::builder()
        .arg("--comfyui-arg=--sim-node-delay-ms")
        .arg("--comfyui-arg=600")
        .start()
        .await;
    // A page is connected: ComfyUI's `execution_start` reaches the host on its socket.
    let (_ws, _) = tokio_tungstenite::connect_async(host.ws_url("/ws?clientId=itest-started"))
        .await
        .expect("ws");
    let submit = |id: &'static str| {
        let host = &host;
        async move {
            let r = Host::client()
                .post(host.url("/prompt"))
                .json(&json!({"prompt": empty_image_workflow("itest-started"), "client_id": "itest-started", "prompt_id": id}))
                .send()
                .await
                .expect("submit");
            assert_eq!(r.status(), 200, "{:?}", r.text().await);
        }
    };
    submit(FIRST).await;
    submit(SECOND).await;
    submit(THIRD).await;
    // The third waits behind the others: an admin takes it out of the queue.
    let r = host
        .admin_post(&format!("/comfyhost/api/jobs/{THIRD}/cancel"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["done"], "deleted from the queue", "{body:#}");
    let third = job_when(&host, THIRD, ended).await;
    assert_eq!(third["status"], "cancelled", "{third:#}");

    // The second waited behind the first, then ran: both times are known.
    let second = job_when(&host, SECOND, ended).await;
    assert_eq!(second["status"], "succeeded", "{second:#}");
    let (sub, start, fin) = (
        second["submitted_ms"].as_i64().expect("submitted"),
        second["started_ms"].as_i64().expect("started recorded"),
        second["finished_ms"].as_i64().expect("finished"),
    );
    assert!(sub <= start && start <= fin, "{second:#}");

    // Nothing left to cancel.
    let r = host
        .admin_post(&format!("/comfyhost/api/jobs/{SECOND}/cancel"), json!({}))
        .await;
    assert_eq!(r.status(), 409);
}
