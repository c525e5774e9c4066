//! Replays the recordings of a real ComfyUI 0.33.0 (`recordings/0.33.0`, made with
//! `recordings/record.py`) against the simulator in its default, current profile: the jobs
//! API, the cancel endpoints, the `prompt_id` rules, the newer routes and the feature flags.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

fn rec(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("recordings/0.33.0")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Timestamps → 0 (they are wall-clock values in both).
fn strip_times(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(strip_times).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = match k.as_str() {
                        "create_time"
                        | "execution_start_time"
                        | "execution_end_time"
                        | "timestamp"
                            if x.is_number() =>
                        {
                            json!(0)
                        }
                        _ => strip_times(x),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Replays a recording and checks status, content type and body, key order included.
async fn check(sim: &Sim, name: &str) -> Value {
    let r = rec(name);
    let (status, headers, body) = sim.replay(&r).await;
    assert_eq!(
        status as u64,
        r["status"].as_u64().unwrap(),
        "{name}: status"
    );
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        r["content_type"].as_str(),
        "{name}: content type"
    );
    let actual: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        strip_times(&actual).to_string(),
        strip_times(&r["body"]).to_string(),
        "{name}: body"
    );
    actual
}

async fn wait_status(sim: &Sim, id: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = sim.get_json(&format!("/api/jobs/{id}")).await;
        if job["status"] == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never {status}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_errors_and_prompt_id_rules_match_0_33_0() {
    let sim = start(|_, _| {}).await;
    for name in [
        "get_features.json",
        "get_assets_disabled.json",
        "get_v2_userdata.json",
        "jobs_invalid_status.json",
        "jobs_bad_sort_by.json",
        "jobs_bad_sort_order.json",
        "jobs_limit_zero.json",
        "jobs_limit_not_int.json",
        "jobs_offset_not_int.json",
        "jobs_empty.json",
        "job_not_found.json",
        "cancel_unknown.json",
        "cancel_batch_invalid_ids.json",
        "cancel_batch_not_list.json",
        "cancel_batch_bad_json.json",
        "cancel_batch_unknown.json",
        "err_prompt_id_uppercase.json",
        "err_prompt_id_not_uuid.json",
        "err_prompt_id_unhyphenated.json",
        "err_prompt_id_number.json",
    ] {
        check(&sim, name).await;
    }
    // Same shapes, different content (the real one has bundled blueprints and install paths).
    for (path, name) in [
        ("/api/node_replacements", "get_node_replacements.json"),
        ("/api/global_subgraphs", "get_global_subgraphs.json"),
        ("/internal/logs/raw", "get_internal_logs_raw.json"),
    ] {
        let got = sim.get_json(path).await;
        let want = rec(name)["body"].clone();
        assert_eq!(
            std::mem::discriminant(&got),
            std::mem::discriminant(&want),
            "{name}"
        );
    }
    let models = sim.get_json("/api/experiment/models").await;
    let want = rec("get_experiment_models.json")["body"].clone();
    let names = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].clone())
            .collect()
    };
    for n in names(&models) {
        assert!(
            names(&want).contains(&n),
            "{n} not in 0.33.0's experiment/models"
        );
    }
    assert_same_shape(&models[0], &want[0], "experiment/models[0]");
    let stats = sim.get_json("/system_stats").await;
    let want = rec("get_system_stats.json")["body"].clone();
    assert_eq!(
        stats["system"]["comfyui_version"],
        want["system"]["comfyui_version"]
    );
    let keys =
        |v: &Value| -> Vec<String> { v["system"].as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&stats), keys(&want), "system_stats keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_flags_handshake_matches_0_33_0() {
    let sim = start(|_, _| {}).await;
    let (mut ws, hello) = sim.ws(Some("ff-client")).await;
    let want = rec("ws_feature_flags.json")["messages"].clone();
    assert_eq!(hello["type"], want[0]["type"]);
    send_text(
        &mut ws,
        &json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}}),
    )
    .await;
    let answer = next_text(&mut ws).await.unwrap();
    assert_eq!(answer.to_string(), want[1].to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_listed_and_fetched_like_0_33_0() {
    let sim = start(|_, _| {}).await;
    // The recording posted four rejected prompts first: `number` counts them too.
    for name in [
        "err_prompt_id_uppercase.json",
        "err_prompt_id_not_uuid.json",
        "err_prompt_id_unhyphenated.json",
        "err_prompt_id_number.json",
    ] {
        check(&sim, name).await;
    }
    let post = check(&sim, "run_post_prompt.json").await;
    let id = post["prompt_id"].as_str().unwrap().to_string();
    assert!(post["number"].is_i64(), "number is an integer: {post}");
    wait_status(&sim, &id, "completed").await;
    check(&sim, "job_completed.json").await;
    check(&sim, "jobs_after_run.json").await;
    check(&sim, "jobs_filtered.json").await;
    check(&sim, "cancel_terminal.json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_pending_and_running_jobs_matches_0_33_0() {
    let sim = start(|_, _| {}).await;
    let cancelled = rec("job_cancelled.json")["body"].clone();
    let pending = rec("job_pending.json")["body"].clone();
    let running_id = cancelled["id"].as_str().unwrap();
    let pending_id = pending["id"].as_str().unwrap();
    // Align the `number` counter with the recording (priority of the running job).
    let priority = cancelled["priority"].as_i64().unwrap();
    for _ in 0..priority {
        sim.post_json("/prompt", &json!({"prompt": {}})).await;
    }
    let prompt = cancelled["workflow"]["prompt"].clone();
    let client = cancelled["workflow"]["extra_data"]["client_id"].clone();
    let (s, _) = sim
        .post_json(
            "/prompt",
            &json!({"prompt": prompt, "prompt_id": running_id, "client_id": client}),
        )
        .await;
    assert_eq!(s, 200);
    wait_status(&sim, running_id, "in_progress").await;
    let mut later = prompt.clone();
    later["2"]["inputs"]["seconds"] = json!(5.1);
    let (s, _) = sim
        .post_json(
            "/prompt",
            &json!({"prompt": later, "prompt_id": pending_id, "client_id": client}),
        )
        .await;
    assert_eq!(s, 200);
    check(&sim, "job_in_progress.json").await;
    check(&sim, "job_pending.json").await;
    check(&sim, "jobs_active.json").await;
    check(&sim, "cancel_pending.json").await;
    check(&sim, "cancel_running_batch.json").await;
    wait_status(&sim, running_id, "cancelled").await;
    let got = sim.get_json(&format!("/api/jobs/{running_id}")).await;
    // Where the sleep was interrupted differs run to run; the shape and status do not.
    assert_same_shape(
        &strip_times(&got),
        &strip_times(&cancelled),
        "job_cancelled",
    );
    assert_eq!(got["status"], "cancelled");
    assert_eq!(got["execution_status"]["status_str"], "error");
    check(&sim, "job_pending_after_cancel.json").await;
}
