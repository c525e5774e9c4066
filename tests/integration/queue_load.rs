//! Load test (bounded, loopback only): 20 workshop users, 5 prompts each, routed by the
//! queue-redirect plugin across 2 remote ComfyUI simulators. Checks nothing is lost: every
//! prompt reaches its end on its user's own socket, succeeded, and is recorded. Prints
//! throughput and the latency the host adds to a submission (no timed assertions; run with
//! `cargo test --release -p comfyhost --test queue_load -- --nocapture` for figures).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::remote::{RemoteSim, backends_file};
use crate::support::wasm::first_party_plugin;
use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const USERS: usize = 20;
const PER_USER: usize = 5;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn workflow(user: usize, k: usize) -> Value {
    let mut w = empty_image_workflow(&format!("u{user}_{k}"));
    // Distinct inputs, so no prompt is answered from ComfyUI's cache.
    w["1"]["inputs"]["color"] = json!(user * 100 + k + 1);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_users_five_prompts_two_backends_nothing_lost() {
    let a = RemoteSim::start(&[]).await;
    let b = RemoteSim::start(&[]).await;
    let cfg = tempfile::tempdir().expect("tmp");
    let file = backends_file(
        cfg.path(),
        &format!(
            "[[comfyui]]\nname = \"a\"\nurl = \"{}\"\n[[comfyui]]\nname = \"b\"\nurl = \"{}\"\n[timings]\nhealth_every_ms = 200\npoll_every_ms = 200\n",
            a.url(),
            b.url()
        ),
    );
    let plugin = tempfile::tempdir().expect("tmp");
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
        .json(&json!({"rules": [{"route": "pool"}], "default_route": "pool"}))
        .send()
        .await
        .expect("config");
    assert!(r.status().is_success());
    // Both backends healthy before the load starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = host.admin_get("/comfyhost/api/backends").await;
        if h.as_array()
            .is_some_and(|l| l.iter().all(|x| x["status"]["healthy"] == true))
        {
            break;
        }
        assert!(Instant::now() < deadline, "backends not healthy: {h:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Baseline: the same submission straight to a backend.
    let http = reqwest::Client::new();
    let mut direct = Vec::new();
    for i in 0..50 {
        let mut w = workflow(99, i);
        w["2"]["inputs"]["filename_prefix"] = json!(format!("baseline{i}"));
        let t = Instant::now();
        let r = http
            .post(format!("{}/prompt", b.url()))
            .json(&json!({"prompt": w}))
            .send()
            .await
            .expect("direct");
        assert!(r.status().is_success());
        direct.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // Let the baseline work drain before the measured run.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The host's own cost on an idle machine: sequential submissions routed to the pool.
    let mut idle = Vec::new();
    for i in 0..30 {
        let mut w = workflow(98, i);
        w["2"]["inputs"]["filename_prefix"] = json!(format!("idle{i}"));
        let t = Instant::now();
        let r = http
            .post(host.url("/prompt"))
            .json(&json!({"prompt": w}))
            .send()
            .await
            .expect("idle");
        assert!(r.status().is_success());
        idle.push(t.elapsed().as_secs_f64() * 1e3);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut tokens = Vec::new();
    for u in 0..USERS {
        let r = host
            .admin_post("/comfyhost/api/users", json!({"id": format!("student{u}")}))
            .await;
        let v: Value = r.json().await.expect("json");
        tokens.push(v["token"].as_str().expect("token").to_string());
    }

    let started = Instant::now();
    let mut tasks = Vec::new();
    for (u, token) in tokens.into_iter().enumerate() {
        let base = host.base.clone();
        let ws_base = host.ws_url("");
        tasks.push(tokio::spawn(async move {
            let client_id = format!("student-browser-{u}");
            let (mut ws, _) =
                tokio_tungstenite::connect_async(format!("{ws_base}/ws?clientId={client_id}"))
                    .await
                    .expect("ws");
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut ids = Vec::new();
            for k in 0..PER_USER {
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/prompt"))
                    .bearer_auth(&token)
                    .json(&json!({"prompt": workflow(u, k), "client_id": client_id}))
                    .send()
                    .await
                    .expect("submit");
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                let status = r.status();
                let v: Value = r.json().await.expect("json");
                assert!(status.is_success(), "user {u} prompt {k}: {status} {v}");
                ids.push(v["prompt_id"].as_str().expect("id").to_string());
            }
            // Every prompt ends, successfully, on this user's own socket.
            let mut outcome: HashMap<String, bool> = HashMap::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while outcome.len() < ids.len() {
                let m = match tokio::time::timeout_at(deadline, ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        serde_json::from_str::<Value>(t.as_str()).expect("json")
                    }
                    Ok(Some(Ok(_))) => continue,
                    _ => panic!(
                        "user {u}: only {} of {} prompts ended",
                        outcome.len(),
                        ids.len()
                    ),
                };
                let pid = m["data"]["prompt_id"].as_str().unwrap_or("").to_string();
                if !ids.contains(&pid) {
                    assert!(pid.is_empty(), "user {u} got another user's event: {m}");
                    continue;
                }
                match m["type"].as_str() {
                    Some("execution_success") => {
                        outcome.insert(pid, true);
                    }
                    Some("execution_error") => {
                        outcome.insert(pid, false);
                    }
                    _ => {}
                }
            }
            (ids, latencies, outcome)
        }));
    }
    let mut all_ids = Vec::new();
    let mut host_lat = Vec::new();
    for t in tasks {
        let (ids, lat, outcome) = t.await.expect("user task");
        assert!(outcome.values().all(|ok| *ok), "failures: {outcome:?}");
        all_ids.extend(ids);
        host_lat.extend(lat);
    }
    let elapsed = started.elapsed();
    assert_eq!(all_ids.len(), USERS * PER_USER);

    // Nothing lost: every job recorded as succeeded, and both backends did work.
    let mut per_backend: HashMap<String, usize> = HashMap::new();
    for id in &all_ids {
        let j = host.admin_get(&format!("/comfyhost/api/jobs/{id}")).await;
        assert_eq!(j["status"], "succeeded", "{j:#}");
        *per_backend
            .entry(j["backend"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    assert_eq!(per_backend.len(), 2, "both backends used: {per_backend:?}");

    host_lat.sort_by(f64::total_cmp);
    direct.sort_by(f64::total_cmp);
    idle.sort_by(f64::total_cmp);
    println!(
        "one submission at a time through host: p50 {:.2} ms, p99 {:.2} ms (added vs direct p50 {:.2} ms)",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        percentile(&idle, 0.5) - percentile(&direct, 0.5),
    );
    println!(
        "queue load: {} prompts ({USERS} users x {PER_USER}) in {:.2} s = {:.1} prompts/s; split {per_backend:?}",
        all_ids.len(),
        elapsed.as_secs_f64(),
        all_ids.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "submission latency through host: p50 {:.2} ms, p99 {:.2} ms; direct to backend: p50 {:.2} ms, p99 {:.2} ms; added p50 {:.2} ms, p99 {:.2} ms",
        percentile(&host_lat, 0.5),
        percentile(&host_lat, 0.99),
        percentile(&direct, 0.5),
        percentile(&direct, 0.99),
        percentile(&host_lat, 0.5) - percentile(&direct, 0.5),
        percentile(&host_lat, 0.99) - percentile(&direct, 0.99),
    );
}
