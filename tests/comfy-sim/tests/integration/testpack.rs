//! The "testpack" recordings (TestSleep: progress, interrupts, queue delete/clear, prompts
//! without client_id) replayed against the simulator; sequences are compared structurally
//! with progress ticks collapsed (their count depends on wall-clock time).

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

fn request(name: &str) -> Value {
    recording(name)["request"]["json"].clone()
}

async fn post(sim: &Sim, body: &Value) -> String {
    let (status, resp) = sim.post_json("/prompt", body).await;
    assert_eq!(status, 200, "{resp}");
    resp["prompt_id"].as_str().unwrap().to_string()
}

fn is_executing(m: &Value, node: &str) -> bool {
    m["type"] == "executing" && m["data"]["node"] == node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testpack_phase_matches_recordings() {
    let sim = start_v0_3_64(|_, _| {}).await;
    let ids = recording("run_ids_testpack.json");
    let client = ids["client_id"].as_str().unwrap();
    let (mut ws, _) = sim.ws(Some(client)).await;

    // 1. TestSleep 0.3 s: progress + progress_state.
    let sleep = post(&sim, &request("tp_run_sleep_post_prompt.json")).await;
    let got = until_done(&mut ws, &sleep).await;
    assert_eq!(
        skeleton(&got),
        skeleton(&ws_recording("tp_ws_run_sleep_progress.jsonl"))
    );
    let tick = got.iter().find(|m| m["type"] == "progress").unwrap();
    let rec_tick = ws_recording("tp_ws_run_sleep_progress.jsonl")
        .into_iter()
        .find(|m| m["type"] == "progress")
        .unwrap();
    assert_same_shape(tick, &rec_tick, "progress");

    // 2. long prompt running + pending one; clear the queue, then interrupt the running one.
    let long = post(&sim, &request("tp_long_post_prompt.json")).await;
    let mut got = until(&mut ws, |m| m["type"] == "progress").await;
    let pending = post(&sim, &request("tp_pending_post_prompt.json")).await;
    // Let the sleep tick a little with two prompts queued (the recording waited ~0.5 s).
    got.extend(until(&mut ws, |m| m["type"] == "status").await);
    got.extend(until(&mut ws, |m| m["type"] == "progress").await);
    let queue = sim.get_json("/queue").await;
    let map = [
        (long.as_str(), ids["long"].as_str().unwrap()),
        (pending.as_str(), ids["pending"].as_str().unwrap()),
    ];
    assert_eq!(
        normalize(&queue, &map),
        recording("tp_get_queue_running_and_pending.json")["body"]
    );
    assert_eq!(
        sim.get_json("/prompt").await,
        recording("tp_get_prompt_while_busy.json")["body"]
    );
    let (s, _) = sim.post_json("/queue", &json!({"clear": true})).await;
    assert_eq!(s, 200);
    let queue = sim.get_json("/queue").await;
    assert_eq!(
        normalize(&queue, &map),
        recording("tp_get_queue_after_clear.json")["body"]
    );
    let (s, _) = sim
        .post_json("/interrupt", &json!({"prompt_id": long}))
        .await;
    assert_eq!(s, 200);
    got.extend(until_done(&mut ws, &long).await);
    assert_eq!(
        skeleton(&got),
        skeleton(&ws_recording("tp_ws_interrupt_and_clear.jsonl"))
    );
    let interrupted = got
        .iter()
        .find(|m| m["type"] == "execution_interrupted")
        .unwrap();
    let rec = ws_recording("tp_ws_interrupt_and_clear.jsonl");
    let rec_int = rec
        .iter()
        .find(|m| m["type"] == "execution_interrupted")
        .unwrap();
    assert_eq!(normalize(interrupted, &map), normalize(rec_int, &[]));
    let h = sim.get_json(&format!("/history/{long}")).await;
    assert_eq!(
        normalize(&h, &map),
        normalize(&recording("tp_get_history_interrupted.json")["body"], &[])
    );
    assert_eq!(
        sim.get_json(&format!("/history/{pending}")).await,
        json!({}),
        "cleared prompt has no history"
    );

    // 3. a runs, b is deleted from pending (two status messages: delete of the last wipes).
    let mut a_req = request("tp_delete_target_post_prompt.json");
    a_req["prompt"]["1"]["inputs"]["color"] = json!(3);
    a_req["prompt"]["3"]["inputs"]["filename_prefix"] = json!("tp_a");
    let a = post(&sim, &a_req).await;
    let mut got = until(&mut ws, |m| m["type"] == "progress").await;
    let b = post(&sim, &request("tp_delete_target_post_prompt.json")).await;
    let (s, _) = sim.post_json("/queue", &json!({"delete": [b]})).await;
    assert_eq!(s, 200);
    let map = [
        (a.as_str(), ids["a"].as_str().unwrap()),
        (b.as_str(), ids["b"].as_str().unwrap()),
    ];
    assert_eq!(
        normalize(&sim.get_json("/queue").await, &map),
        recording("tp_get_queue_after_delete.json")["body"]
    );
    got.extend(until_done(&mut ws, &a).await);
    assert_eq!(
        skeleton(&got),
        skeleton(&ws_recording("tp_ws_delete_pending.jsonl"))
    );

    // 4. global interrupt.
    let mut g = recording("tp_long_post_prompt.json")["request"]["json"].clone();
    g["prompt"]["2"]["inputs"]["seconds"] = json!(5.0);
    g["prompt"]["1"]["inputs"]["color"] = json!(5);
    let global = post(&sim, &g).await;
    let mut got = until(&mut ws, |m| m["type"] == "progress").await;
    let (s, _) = sim.post_json("/interrupt", &json!({})).await;
    assert_eq!(s, 200);
    got.extend(until_done(&mut ws, &global).await);
    assert_eq!(
        skeleton(&got),
        skeleton(&ws_recording("tp_ws_interrupt_global.jsonl"))
    );

    // 5. a prompt without client_id: a connected client sees status + progress only.
    let noclient = post(&sim, &request("tp_noclient_post_prompt.json")).await;
    let got = until(&mut ws, |m| {
        m["type"] == "status" && m["data"]["status"]["exec_info"]["queue_remaining"] == 0
    })
    .await;
    assert_eq!(
        skeleton(&got),
        skeleton(&ws_recording("tp_ws_other_client_prompt.jsonl"))
    );
    let map = [(noclient.as_str(), ids["noclient"].as_str().unwrap())];
    let h = sim.get_json(&format!("/history/{noclient}")).await;
    assert_eq!(
        normalize(&h, &map),
        normalize(&recording("tp_get_history_noclient.json")["body"], &[])
    );
    assert!(
        drain(&mut ws, Duration::from_millis(200)).await.is_empty(),
        "no executing(null) without client_id"
    );
}

#[tokio::test]
async fn interrupt_of_another_prompt_id_is_ignored() {
    let sim = start_v0_3_64(|_, _| {}).await;
    let (mut ws, _) = sim.ws(Some("c")).await;
    let mut r = request("tp_run_sleep_post_prompt.json");
    r["client_id"] = json!("c");
    let pid = post(&sim, &r).await;
    until(&mut ws, |m| is_executing(m, "2")).await;
    let (s, _) = sim
        .post_json("/interrupt", &json!({"prompt_id": "not-running"}))
        .await;
    assert_eq!(s, 200);
    let got = until_done(&mut ws, &pid).await;
    assert!(got.iter().any(|m| m["type"] == "execution_success"));
}
