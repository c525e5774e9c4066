//! Queue redirection end to end, with the real `comfyhost` binary, the first-party
//! `queue-redirect` plugin, two standalone ComfyUI simulators as remote backends and a
//! protocol-faithful RunPod fake: routing by rule, least-busy choice, failover, serverless
//! cold start, early "lost prompt" errors, remote errors and images delivered to the browser's
//! own socket, interrupts reaching the remote, a host restart mid-job, and per-user fairness.

use std::time::{Duration, Instant};

use crate::support::remote::{
    FakeRunpod, RemoteSim, RunpodBehaviour, backends_file, black_hole_comfyui, hollow_comfyui,
};
use crate::support::wasm::first_party_plugin;
use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const FAST_TIMINGS: &str = "[timings]\nhealth_every_ms = 200\npoll_every_ms = 100\nlost_after_ms = 1500\nunreachable_after_ms = 3000\nrequest_timeout_ms = 3000\n";

/// The queue-redirect plugin as a drop-in directory.
fn redirect_plugin() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = first_party_plugin("queue-redirect", tmp.path());
    (tmp, dir)
}

struct Setup {
    host: Host,
    _plugin: tempfile::TempDir,
    _cfg: tempfile::TempDir,
}

async fn start(backends: &str, config: Value, extra: &[&str]) -> Setup {
    let cfg = tempfile::tempdir().expect("tempdir");
    let file = backends_file(cfg.path(), backends);
    let (plugin, dir) = redirect_plugin();
    let mut b = Host::builder()
        .plugin_dir(dir)
        .arg("--backends")
        .arg(file.display().to_string())
        .env("RUNPOD_TEST_KEY", "rp-key-123");
    for a in extra {
        b = b.arg(*a);
    }
    let host = b.start().await;
    configure(&host, config).await;
    Setup {
        host,
        _plugin: plugin,
        _cfg: cfg,
    }
}

async fn configure(host: &Host, config: Value) {
    let r = Host::client()
        .put(host.url("/comfyhost/api/plugins/queue-redirect/config"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&config)
        .send()
        .await
        .expect("config");
    assert!(
        r.status().is_success(),
        "config refused: {}",
        r.text().await.unwrap_or_default()
    );
}

async fn wait_backends_healthy(host: &Host, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let b = host.admin_get("/comfyhost/api/backends").await;
        let ok = names.iter().all(|n| {
            b.as_array()
                .into_iter()
                .flatten()
                .any(|x| x["status"]["name"] == *n && x["status"]["healthy"] == true)
        });
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "backends never healthy: {b:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(host: &Host, client_id: &str) -> Ws {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(host.ws_url(&format!("/ws?clientId={client_id}")))
            .await
            .expect("ws connect");
    // The hello (status).
    let _ = next_json(&mut ws, Duration::from_secs(10)).await;
    ws
}

async fn next_json(ws: &mut Ws, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Messages about `prompt_id` until its end marker (`executing` with node null).
async fn until_done(ws: &mut Ws, prompt_id: &str, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let Some(m) = next_json(ws, deadline - Instant::now()).await else {
            break;
        };
        if m["data"]["prompt_id"] != prompt_id {
            continue;
        }
        let end = m["type"] == "executing" && m["data"]["node"].is_null();
        got.push(m);
        if end {
            return got;
        }
    }
    panic!("no end for {prompt_id} within {within:?}; got {got:#?}");
}

fn types(msgs: &[Value]) -> Vec<String> {
    let mut t: Vec<String> = msgs
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?").to_string())
        .collect();
    t.dedup();
    t
}

async fn submit(
    host: &Host,
    workflow: Value,
    client_id: &str,
    token: Option<&str>,
    flags: Value,
) -> (u16, Value) {
    let mut req = Host::client().post(host.url("/prompt")).json(&json!({
        "prompt": workflow, "client_id": client_id, "extra_data": {"comfyhost": flags}
    }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("submit");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn job(host: &Host, prompt_id: &str) -> Value {
    host.admin_get(&format!("/comfyhost/api/jobs/{prompt_id}"))
        .await
}

fn two_backends(a: &RemoteSim, b: &RemoteSim) -> String {
    format!(
        "[[comfyui]]\nname = \"a\"\nurl = \"{}\"\n[[comfyui]]\nname = \"b\"\nurl = \"{}\"\n{FAST_TIMINGS}",
        a.url(),
        b.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_rule_and_results_come_back_to_the_browser() {
    let a = RemoteSim::start(&["--sim-node-delay-ms", "400"]).await;
    let b = RemoteSim::start(&[]).await;
    let s = start(
        &two_backends(&a, &b),
        json!({"rules": [
            {"name": "alice on a", "users": ["alice"], "route": "backend:a"},
            {"name": "opt-in", "flag": "route", "equals": "remote", "route": "pool"}
        ]}),
        &[],
    )
    .await;
    let host = &s.host;
    wait_backends_healthy(host, &["a", "b"]).await;
    let alice = host.create_user("alice").await;
    // Anonymous visitors stay welcome here (sign-in is required by default once users exist).
    let r = Host::client()
        .put(host.url("/comfyhost/api/workshop"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"sign_in_required": false}))
        .send()
        .await
        .expect("workshop settings");
    assert_eq!(r.status().as_u16(), 200);

    // 1. Alice's prompt runs on backend a, by rule; the browser sees it as if local.
    let mut ws = connect(host, "browser-alice").await;
    let (st, body) = submit(
        host,
        empty_image_workflow("alice"),
        "browser-alice",
        Some(&alice),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let pid = body["prompt_id"].as_str().expect("prompt id").to_string();
    assert!(
        body["number"].is_number() && body["node_errors"] == json!({}),
        "{body}"
    );
    let msgs = until_done(&mut ws, &pid, Duration::from_secs(30)).await;
    let t = types(&msgs);
    for want in [
        "execution_start",
        "executing",
        "executed",
        "execution_success",
    ] {
        assert!(t.contains(&want.to_string()), "missing {want} in {t:?}");
    }
    assert_eq!(t.last().map(String::as_str), Some("executing"));
    assert!(a.history_ids().await.contains(&pid), "ran on a");
    let executed = msgs
        .iter()
        .find(|m| m["type"] == "executed")
        .expect("executed");
    let img = &executed["data"]["output"]["images"][0];
    assert_eq!(img["subfolder"], format!("comfyhost-remote/{pid}"));
    // The image is viewable through the host, under the name the browser was given.
    // Alice's image is hers to view (other users get 404).
    let view = Host::client()
        .get(host.url("/view"))
        .bearer_auth(&alice)
        .query(&[
            ("filename", img["filename"].as_str().unwrap_or("")),
            ("subfolder", img["subfolder"].as_str().unwrap_or("")),
            ("type", "output"),
        ])
        .send()
        .await
        .expect("view");
    assert_eq!(view.status().as_u16(), 200);
    assert_eq!(&view.bytes().await.expect("bytes")[..4], b"\x89PNG");
    // ...and listed in /history (both spellings) with the same reference.
    for path in [format!("/history/{pid}"), format!("/api/history/{pid}")] {
        let h: Value = Host::client()
            .get(host.url(&path))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        assert_eq!(h[&pid]["status"]["status_str"], "success", "{h:#}");
        assert_eq!(
            h[&pid]["outputs"]["2"]["images"][0]["subfolder"],
            img["subfolder"]
        );
    }
    let full: Value = Host::client()
        .get(host.url("/history"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("h")
        .json()
        .await
        .expect("json");
    assert!(full.get(&pid).is_some(), "remote job in full history");
    let j = job(host, &pid).await;
    assert_eq!(
        (
            j["route"].as_str(),
            j["backend"].as_str(),
            j["user_id"].as_str(),
            j["status"].as_str()
        ),
        (Some("backend"), Some("a"), Some("alice"), Some("succeeded")),
        "{j:#}"
    );

    // 2. Least busy: keep a busy (slow prompts straight to it, distinct so none is served
    // from ComfyUI's cache), then opt in to the pool.
    for i in 0..5 {
        let mut w = empty_image_workflow(&format!("busy{i}"));
        w["1"]["inputs"]["color"] = json!(i + 1);
        reqwest::Client::new()
            .post(format!("{}/prompt", a.url()))
            .json(&json!({"prompt": w}))
            .send()
            .await
            .expect("direct");
    }
    tokio::time::sleep(Duration::from_millis(600)).await; // > one health check
    let mut ws2 = connect(host, "browser-anon").await;
    let (st, body) = submit(
        host,
        empty_image_workflow("anon"),
        "browser-anon",
        None,
        json!({"route": "remote"}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let pid2 = body["prompt_id"].as_str().expect("id").to_string();
    until_done(&mut ws2, &pid2, Duration::from_secs(30)).await;
    let j2 = job(host, &pid2).await;
    assert!(
        b.history_ids().await.contains(&pid2),
        "least busy backend b ran it: {j2:#} {:#}",
        host.admin_get("/comfyhost/api/backends").await
    );
    assert_eq!(job(host, &pid2).await["backend"], "b");

    // 3. No rule matches: local.
    let (st, body) = submit(
        host,
        empty_image_workflow("local"),
        "browser-anon",
        None,
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    let pid3 = body["prompt_id"].as_str().expect("id").to_string();
    until_done(&mut ws2, &pid3, Duration::from_secs(30)).await;
    assert_eq!(job(host, &pid3).await["route"], "local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_went_down_costs_a_retry_not_the_job() {
    let mut a = RemoteSim::start(&[]).await;
    let b = RemoteSim::start(&[]).await;
    // Slow health checks: the host still believes a is up when it is already gone.
    let toml = two_backends(&a, &b).replace("health_every_ms = 200", "health_every_ms = 60000");
    let s = start(&toml, json!({"rules": [{"route": "backend:a"}]}), &[]).await;
    wait_backends_healthy(&s.host, &["a", "b"]).await;
    a.kill();
    let mut ws = connect(&s.host, "c-failover").await;
    let (st, body) = submit(
        &s.host,
        empty_image_workflow("fo"),
        "c-failover",
        None,
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    let msgs = until_done(&mut ws, &pid, Duration::from_secs(30)).await;
    assert!(types(&msgs).contains(&"execution_success".to_string()));
    assert!(b.history_ids().await.contains(&pid));
    assert_eq!(job(&s.host, &pid).await["backend"], "b");
    let health = s.host.admin_get("/comfyhost/api/backends").await;
    let a_health = health
        .as_array()
        .and_then(|l| l.iter().find(|x| x["status"]["name"] == "a"))
        .expect("a");
    assert_eq!(a_health["status"]["healthy"], false, "{a_health:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_execution_error_reaches_the_browser_with_every_field() {
    let a = RemoteSim::start(&[]).await;
    let b = RemoteSim::start(&[]).await;
    let s = start(
        &two_backends(&a, &b),
        json!({"rules": [{"route": "backend:a"}]}),
        &[],
    )
    .await;
    wait_backends_healthy(&s.host, &["a"]).await;
    let mut ws = connect(&s.host, "c-err").await;
    // Saving outside the output folder fails at execution time in ComfyUI.
    let (st, body) = submit(
        &s.host,
        empty_image_workflow("../escape"),
        "c-err",
        None,
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    let msgs = until_done(&mut ws, &pid, Duration::from_secs(30)).await;
    let err = msgs
        .iter()
        .find(|m| m["type"] == "execution_error")
        .expect("execution_error");
    let d = &err["data"];
    for k in [
        "prompt_id",
        "node_id",
        "node_type",
        "executed",
        "exception_message",
        "exception_type",
        "traceback",
        "current_inputs",
        "current_outputs",
        "timestamp",
    ] {
        assert!(d.get(k).is_some(), "execution_error lacks {k}: {d:#}");
    }
    assert_eq!(d["node_id"], "2");
    assert_eq!(d["node_type"], "SaveImage");
    assert!(
        d["exception_message"]
            .as_str()
            .unwrap_or("")
            .contains("outside the output folder"),
        "{d:#}"
    );
    assert!(!d["traceback"].as_array().map(Vec::is_empty).unwrap_or(true));
    let j = job(&s.host, &pid).await;
    assert_eq!(j["status"], "failed");
    assert!(
        j["error_json"]
            .as_str()
            .unwrap_or("")
            .contains("outside the output folder")
    );
    let h: Value = Host::client()
        .get(s.host.url(&format!("/history/{pid}")))
        .send()
        .await
        .expect("h")
        .json()
        .await
        .expect("json");
    assert_eq!(h[&pid]["status"]["status_str"], "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_the_backend_forgets_is_an_early_routing_error() {
    let (port, _task) = black_hole_comfyui().await;
    let toml =
        format!("[[comfyui]]\nname = \"hole\"\nurl = \"http://127.0.0.1:{port}\"\n{FAST_TIMINGS}");
    let s = start(&toml, json!({"rules": [{"route": "backend:hole"}]}), &[]).await;
    wait_backends_healthy(&s.host, &["hole"]).await;
    let mut ws = connect(&s.host, "c-lost").await;
    let started = Instant::now();
    let (st, body) = submit(
        &s.host,
        empty_image_workflow("lost"),
        "c-lost",
        None,
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    let msgs = until_done(&mut ws, &pid, Duration::from_secs(20)).await;
    let err = msgs
        .iter()
        .find(|m| m["type"] == "execution_error")
        .expect("error");
    assert_eq!(
        err["data"]["exception_type"], "comfyhost.PromptLost",
        "{err:#}"
    );
    println!(
        "lost prompt reported after {:?} (lost_after_ms = 1500)",
        started.elapsed()
    );
    let j = job(&s.host, &pid).await;
    assert_eq!(j["status"], "failed");
    assert!(
        j["error_json"]
            .as_str()
            .unwrap_or("")
            .contains("PromptLost")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_cold_start_is_reported_and_images_come_back() {
    let sim = RemoteSim::start(&[]).await;
    let pod = FakeRunpod::start(
        sim.url(),
        RunpodBehaviour {
            cold_start: Duration::from_millis(2500),
            api_key: Some("rp-key-123".into()),
            forget_jobs: false,
        },
    )
    .await;
    let toml = format!(
        "[[serverless]]\nname = \"pod\"\nurl = \"{}\"\napi_key_env = \"RUNPOD_TEST_KEY\"\n{FAST_TIMINGS}",
        pod.url()
    );
    let s = start(
        &toml,
        json!({"rules": [{"flag": "route", "equals": "serverless", "route": "serverless:pod"}]}),
        &[],
    )
    .await;
    wait_backends_healthy(&s.host, &["pod"]).await;
    let mut ws = connect(&s.host, "c-pod").await;
    let (st, body) = submit(
        &s.host,
        empty_image_workflow("pod"),
        "c-pod",
        None,
        json!({"route": "serverless"}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    // While no worker has it, the browser hears why it waits (host notice, real state only).
    let mut notices = Vec::new();
    let mut msgs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(m) = next_json(&mut ws, Duration::from_secs(30)).await else {
            break;
        };
        if m["type"] == "comfyhost.job_status" {
            notices.push(m.clone());
        }
        if m["data"]["prompt_id"] == pid.as_str() {
            let end = m["type"] == "executing" && m["data"]["node"].is_null();
            msgs.push(m);
            if end {
                break;
            }
        }
    }
    assert!(
        notices.iter().any(|n| n["data"]["state"] == "queued"),
        "no queued notice: {notices:#?}"
    );
    let t = types(&msgs);
    assert!(
        t.contains(&"execution_start".to_string()) && t.contains(&"execution_success".to_string()),
        "{t:?}"
    );
    let exec = msgs
        .iter()
        .find(|m| m["type"] == "executed")
        .expect("executed");
    assert_eq!(exec["data"]["node"], "2", "images belong to the save node");
    let img = &exec["data"]["output"]["images"][0];
    let view = Host::client()
        .get(s.host.url("/api/view"))
        .query(&[
            ("filename", img["filename"].as_str().unwrap_or("")),
            ("subfolder", img["subfolder"].as_str().unwrap_or("")),
            ("type", "output"),
        ])
        .send()
        .await
        .expect("view");
    assert_eq!(&view.bytes().await.expect("bytes")[..4], b"\x89PNG");
    // worker-comfyui's input shape.
    let runs = pod.runs.lock().expect("lock").clone();
    assert_eq!(runs[0]["input"]["workflow"]["2"]["class_type"], "SaveImage");
    assert!(runs[0]["input"]["images"].is_array());
    let j = job(&s.host, &pid).await;
    assert_eq!(
        (j["route"].as_str(), j["status"].as_str()),
        (Some("serverless"), Some("succeeded"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_job_the_endpoint_forgets_and_wrong_key_are_clear_errors() {
    let sim = RemoteSim::start(&[]).await;
    let pod = FakeRunpod::start(
        sim.url(),
        RunpodBehaviour {
            forget_jobs: true,
            ..Default::default()
        },
    )
    .await;
    let locked = FakeRunpod::start(
        sim.url(),
        RunpodBehaviour {
            api_key: Some("other".into()),
            ..Default::default()
        },
    )
    .await;
    let toml = format!(
        "[[serverless]]\nname = \"pod\"\nurl = \"{}\"\n[[serverless]]\nname = \"locked\"\nurl = \"{}\"\napi_key_env = \"RUNPOD_TEST_KEY\"\n{FAST_TIMINGS}",
        pod.url(),
        locked.url()
    );
    let s = start(
        &toml,
        json!({"rules": [
            {"flag": "to", "equals": "locked", "route": "serverless:locked"},
            {"route": "serverless:pod"}
        ]}),
        &[],
    )
    .await;
    wait_backends_healthy(&s.host, &["pod"]).await;
    let mut ws = connect(&s.host, "c-forget").await;
    let (st, body) = submit(
        &s.host,
        empty_image_workflow("f"),
        "c-forget",
        None,
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    let msgs = until_done(&mut ws, &pid, Duration::from_secs(20)).await;
    let err = msgs
        .iter()
        .find(|m| m["type"] == "execution_error")
        .expect("error");
    assert_eq!(err["data"]["exception_type"], "comfyhost.PromptLost");
    // /health of the locked endpoint needs no key in RunPod, so it looks healthy; /run refuses.
    let (st, body) = submit(
        &s.host,
        empty_image_workflow("k"),
        "c-forget",
        None,
        json!({"to": "locked"}),
    )
    .await;
    assert_eq!(st, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("refused the API key"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_from_the_browser_reaches_the_remote() {
    let a = RemoteSim::start(&["--sim-node-delay-ms", "3000"]).await;
    let b = RemoteSim::start(&[]).await;
    let s = start(
        &two_backends(&a, &b),
        json!({"rules": [{"route": "backend:a"}]}),
        &[],
    )
    .await;
    wait_backends_healthy(&s.host, &["a"]).await;
    let mut ws = connect(&s.host, "c-int").await;
    let (_, body) = submit(
        &s.host,
        empty_image_workflow("int"),
        "c-int",
        None,
        json!({}),
    )
    .await;
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    // Wait until it runs remotely, and the browser's queue shows it running.
    loop {
        let m = next_json(&mut ws, Duration::from_secs(20))
            .await
            .expect("event");
        if m["type"] == "execution_start" && m["data"]["prompt_id"] == pid.as_str() {
            break;
        }
    }
    let q: Value = Host::client()
        .get(s.host.url("/queue"))
        .send()
        .await
        .expect("q")
        .json()
        .await
        .expect("json");
    assert!(
        q["queue_running"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i[1] == pid.as_str()),
        "{q:#}"
    );
    let r = Host::client()
        .post(s.host.url("/interrupt"))
        .json(&json!({"prompt_id": pid}))
        .send()
        .await
        .expect("interrupt");
    assert_eq!(r.status().as_u16(), 200);
    let msgs = until_done(&mut ws, &pid, Duration::from_secs(20)).await;
    assert!(
        types(&msgs).contains(&"execution_interrupted".to_string()),
        "{:?}",
        types(&msgs)
    );
    let h = a.history(&pid).await;
    assert!(
        h[&pid]["status"]["messages"]
            .to_string()
            .contains("execution_interrupted"),
        "{h:#}"
    );
    assert_eq!(job(&s.host, &pid).await["status"], "interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_restart_mid_job_loses_nothing() {
    let a = RemoteSim::start(&["--sim-node-delay-ms", "1500"]).await;
    let b = RemoteSim::start(&[]).await;
    let toml = two_backends(&a, &b);
    let config = json!({"rules": [{"route": "backend:a"}]});
    let mut s = start(&toml, config.clone(), &[]).await;
    wait_backends_healthy(&s.host, &["a"]).await;
    let mut ws = connect(&s.host, "c-restart").await;
    let (_, body) = submit(
        &s.host,
        empty_image_workflow("rs"),
        "c-restart",
        None,
        json!({}),
    )
    .await;
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    loop {
        let m = next_json(&mut ws, Duration::from_secs(20))
            .await
            .expect("event");
        if m["type"] == "execution_start" {
            break;
        }
    }
    // Crash the host (no graceful shutdown), then start it again on the same data.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.host.child.id() as i32, libc::SIGKILL) };
    let _ = s.host.child.wait();
    let data = std::mem::replace(&mut s.host.data_dir, tempfile::tempdir().expect("tmp"));
    let file = backends_file(s._cfg.path(), &toml);
    let host = Host::builder()
        .data_dir(data)
        .arg("--backends")
        .arg(file.display().to_string())
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let j = loop {
        let j = job(&host, &pid).await;
        if j["status"] != "running" && j["status"] != "queued" {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "job never finished after restart: {j:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(j["status"], "succeeded", "{j:#}");
    let h: Value = Host::client()
        .get(host.url(&format!("/history/{pid}")))
        .send()
        .await
        .expect("h")
        .json()
        .await
        .expect("json");
    let img = &h[&pid]["outputs"]["2"]["images"][0];
    let view = Host::client()
        .get(host.url("/view"))
        .query(&[
            ("filename", img["filename"].as_str().unwrap_or("")),
            ("subfolder", img["subfolder"].as_str().unwrap_or("")),
            ("type", "output"),
        ])
        .send()
        .await
        .expect("view");
    assert_eq!(view.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_starve_another_in_the_local_queue() {
    let host = Host::builder()
        .arg("--comfyui-arg=--sim-node-delay-ms")
        .arg("--comfyui-arg=250")
        .start()
        .await;
    let flood = host.create_user("flood").await;
    let late = host.create_user("late").await;
    // One socket watches both users' prompts: a trusted room (workshop isolation off).
    let r = Host::client()
        .put(host.url("/comfyhost/api/workshop"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"isolation": false}))
        .send()
        .await
        .expect("workshop settings");
    assert_eq!(r.status().as_u16(), 200);
    let mut ws = connect(&host, "c-fair").await;
    let mut flood_ids = Vec::new();
    for i in 0..5 {
        let (st, body) = submit(
            &host,
            empty_image_workflow(&format!("f{i}")),
            "c-fair",
            Some(&flood),
            json!({}),
        )
        .await;
        assert_eq!(st, 200, "{body}");
        flood_ids.push(body["prompt_id"].as_str().expect("id").to_string());
    }
    let (_, body) = submit(
        &host,
        empty_image_workflow("late"),
        "c-fair",
        Some(&late),
        json!({}),
    )
    .await;
    let late_id = body["prompt_id"].as_str().expect("id").to_string();
    // Order in which prompts start.
    let mut started = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while started.len() < 6 && Instant::now() < deadline {
        let Some(m) = next_json(&mut ws, Duration::from_secs(30)).await else {
            break;
        };
        if m["type"] == "execution_start" {
            started.push(m["data"]["prompt_id"].as_str().unwrap_or("").to_string());
        }
    }
    let pos = started
        .iter()
        .position(|p| *p == late_id)
        .expect("late prompt ran");
    assert!(
        pos <= 2,
        "late user's prompt started {}th of {started:?} (flood: {flood_ids:?})",
        pos + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_serverless_job_during_its_cold_start_reaches_the_endpoint() {
    let sim = RemoteSim::start(&[]).await;
    let pod = FakeRunpod::start(
        sim.url(),
        RunpodBehaviour {
            cold_start: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .await;
    let toml = format!(
        "[[serverless]]\nname = \"pod\"\nurl = \"{}\"\n{FAST_TIMINGS}",
        pod.url()
    );
    let s = start(&toml, json!({"rules": [{"route": "serverless:pod"}]}), &[]).await;
    wait_backends_healthy(&s.host, &["pod"]).await;
    let mut ws = connect(&s.host, "c-cancel").await;
    let (st, body) = submit(
        &s.host,
        empty_image_workflow("cx"),
        "c-cancel",
        None,
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    let q: Value = Host::client()
        .get(s.host.url("/api/queue"))
        .send()
        .await
        .expect("q")
        .json()
        .await
        .expect("json");
    assert!(
        q["queue_pending"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i[1] == pid.as_str()),
        "{q:#}"
    );
    // The frontend's "delete from queue" for a pending prompt.
    let r = Host::client()
        .post(s.host.url("/queue"))
        .json(&json!({"delete": [pid]}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 200);
    let msgs = until_done(&mut ws, &pid, Duration::from_secs(10)).await;
    assert!(
        types(&msgs).contains(&"execution_interrupted".to_string()),
        "{:?}",
        types(&msgs)
    );
    assert_eq!(
        pod.cancels.lock().expect("lock").len(),
        1,
        "cancel reached the endpoint"
    );
    assert_eq!(job(&s.host, &pid).await["status"], "interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_without_outputs_is_a_failure() {
    let (port, _task) = hollow_comfyui().await;
    let toml = format!(
        "[[comfyui]]\nname = \"hollow\"\nurl = \"http://127.0.0.1:{port}\"\n{FAST_TIMINGS}"
    );
    let s = start(&toml, json!({"rules": [{"route": "backend:hollow"}]}), &[]).await;
    wait_backends_healthy(&s.host, &["hollow"]).await;
    let mut ws = connect(&s.host, "c-hollow").await;
    let (st, body) = submit(
        &s.host,
        empty_image_workflow("h"),
        "c-hollow",
        None,
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let pid = body["prompt_id"].as_str().expect("id").to_string();
    let msgs = until_done(&mut ws, &pid, Duration::from_secs(20)).await;
    let t = types(&msgs);
    assert!(!t.contains(&"execution_success".to_string()), "{t:?}");
    let err = msgs
        .iter()
        .find(|m| m["type"] == "execution_error")
        .expect("error");
    assert_eq!(
        err["data"]["exception_type"], "comfyhost.NoOutputs",
        "{err:#}"
    );
    let j = job(&s.host, &pid).await;
    assert_eq!(j["status"], "failed");
}

/// A workflow whose first node is not in the backend's cache (a cached node would let the
/// interrupt land only after the slow last node).
fn uncached_workflow(tag: &str, color: u64) -> Value {
    let mut w = empty_image_workflow(tag);
    w["1"]["inputs"]["color"] = json!(color);
    w
}

/// `GET /api/jobs[?query]` through the host.
async fn jobs_api(host: &Host, path_and_query: &str) -> Value {
    Host::client()
        .get(host.url(path_and_query))
        .send()
        .await
        .expect("jobs api")
        .json()
        .await
        .expect("json")
}

async fn remote_was_interrupted(remote: &RemoteSim, pid: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = remote.history(pid).await;
        if h[pid]["status"]["messages"]
            .to_string()
            .contains("execution_interrupted")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "remote never interrupted {pid}: {h:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_api_lists_remote_jobs_and_cancels_them_on_their_backend() {
    // Both backends and the local ComfyUI are simulators in their default, current (0.33.0) profile.
    let a = RemoteSim::start(&["--sim-node-delay-ms", "3000"]).await;
    let b = RemoteSim::start(&[]).await;
    let s = start(
        &two_backends(&a, &b),
        json!({"rules": [
            {"name": "slow", "flag": "route", "equals": "slow", "route": "backend:a"},
            {"name": "fast", "route": "backend:b"}
        ]}),
        &[],
    )
    .await;
    let host = &s.host;
    wait_backends_healthy(host, &["a", "b"]).await;
    let mut ws = connect(host, "c-jobs").await;

    // 1. A finished remote job is listed as completed, with its outputs.
    let (st, body) = submit(
        host,
        empty_image_workflow("jobs-done"),
        "c-jobs",
        None,
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let done = body["prompt_id"].as_str().expect("id").to_string();
    until_done(&mut ws, &done, Duration::from_secs(30)).await;
    assert!(b.history_ids().await.contains(&done), "ran on b");
    let list = jobs_api(host, "/api/jobs?status=completed").await;
    let entry = list["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| j["id"] == done.as_str())
        .unwrap_or_else(|| panic!("remote job missing from /api/jobs: {list:#}"));
    assert_eq!(entry["status"], "completed");
    assert!(entry["outputs_count"].as_u64() >= Some(1), "{entry:#}");
    assert_eq!(entry["preview_output"]["mediaType"], "images", "{entry:#}");
    // The host's fair-queue number, as `/queue` shows it (not yet an integer: see issue 19, item 5).
    assert!(entry["priority"].is_number(), "{entry:#}");
    assert!(list["pagination"]["total"].as_u64() >= Some(1), "{list:#}");
    let one = jobs_api(host, &format!("/api/jobs/{done}")).await;
    assert_eq!(one["status"], "completed", "{one:#}");
    assert!(
        one["outputs"].as_object().is_some_and(|o| !o.is_empty()),
        "{one:#}"
    );

    // 2. A running remote job is listed as in progress and cancelled by `POST /api/jobs/{id}/cancel`.
    let (st, body) = submit(
        host,
        uncached_workflow("jobs-run", 1),
        "c-jobs",
        None,
        json!({"route": "slow"}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let running = body["prompt_id"].as_str().expect("id").to_string();
    loop {
        let m = next_json(&mut ws, Duration::from_secs(20))
            .await
            .expect("event");
        if m["type"] == "execution_start" && m["data"]["prompt_id"] == running.as_str() {
            break;
        }
    }
    let list = jobs_api(host, "/api/jobs?status=in_progress,pending").await;
    assert!(
        list["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|j| j["id"] == running.as_str() && j["status"] == "in_progress"),
        "{list:#}"
    );
    let r = Host::client()
        .post(host.url(&format!("/api/jobs/{running}/cancel")))
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"cancelled": true})
    );
    remote_was_interrupted(&a, &running).await;
    until_done(&mut ws, &running, Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let one = jobs_api(host, &format!("/api/jobs/{running}")).await;
        if one["status"] == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "never cancelled: {one:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 3. `POST /api/jobs/cancel {"job_ids": [...]}` reaches the backend too.
    let (st, body) = submit(
        host,
        uncached_workflow("jobs-batch", 2),
        "c-jobs",
        None,
        json!({"route": "slow"}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let batch = body["prompt_id"].as_str().expect("id").to_string();
    loop {
        let m = next_json(&mut ws, Duration::from_secs(20))
            .await
            .expect("event");
        if m["type"] == "execution_start" && m["data"]["prompt_id"] == batch.as_str() {
            break;
        }
    }
    let r = Host::client()
        .post(host.url("/api/jobs/cancel"))
        .json(&json!({"job_ids": [batch]}))
        .send()
        .await
        .expect("cancel batch");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"cancelled": true})
    );
    remote_was_interrupted(&a, &batch).await;
    until_done(&mut ws, &batch, Duration::from_secs(20)).await;

    // 4. `POST /queue {"clear": true}` removes a remote job waiting on its backend.
    let (_, body) = submit(
        host,
        uncached_workflow("jobs-first", 3),
        "c-jobs",
        None,
        json!({"route": "slow"}),
    )
    .await;
    let first = body["prompt_id"].as_str().expect("id").to_string();
    loop {
        let m = next_json(&mut ws, Duration::from_secs(20))
            .await
            .expect("event");
        if m["type"] == "execution_start" && m["data"]["prompt_id"] == first.as_str() {
            break;
        }
    }
    let (_, body) = submit(
        host,
        uncached_workflow("jobs-waiting", 4),
        "c-jobs",
        None,
        json!({"route": "slow"}),
    )
    .await;
    let waiting = body["prompt_id"].as_str().expect("id").to_string();
    let remote_pending = |q: &Value| {
        q["queue_pending"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i[1] == waiting.as_str())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let q: Value = Host::client()
            .get(format!("{}/queue", a.url()))
            .send()
            .await
            .expect("q")
            .json()
            .await
            .expect("json");
        if remote_pending(&q) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "second job never queued on a: {q:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = Host::client()
        .post(host.url("/queue"))
        .json(&json!({"clear": true}))
        .send()
        .await
        .expect("clear");
    assert_eq!(r.status().as_u16(), 200);
    let q: Value = Host::client()
        .get(format!("{}/queue", a.url()))
        .send()
        .await
        .expect("q")
        .json()
        .await
        .expect("json");
    assert!(!remote_pending(&q), "still pending on a after clear: {q:#}");
    let one = jobs_api(host, &format!("/api/jobs/{waiting}")).await;
    assert_eq!(one["status"], "cancelled", "{one:#}");
}
