//! Honest to the page when anything goes wrong (issue 15), with the real `comfyhost` binary, the
//! embedded ComfyUI simulator and the first-party status-overlay plugin: a ComfyUI crash mid-job
//! reaches the page on the socket it already has (which stays open and reconnects), a page that
//! was away gets its jobs' ends when it comes back, a refused prompt's banner ends, a deleted
//! prompt is `cancelled` (not `lost`), and decimal progress reads right without flooding.

use std::time::{Duration, Instant};

use crate::support::wasm::first_party_plugin;
use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(host: &Host, client_id: &str) -> Ws {
    let (ws, _) =
        tokio_tungstenite::connect_async(host.ws_url(&format!("/ws?clientId={client_id}")))
            .await
            .expect("ws through the host");
    ws
}

/// Text frames as JSON until `done` holds for one (returned last) or `within` passes. A close
/// frame fails the test: the page's socket must stay open.
async fn read_until(ws: &mut Ws, within: Duration, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(other) => panic!("the page's socket ended: {other:?}; so far: {got:#?}"),
            Err(_) => panic!("timed out; got {got:#?}"),
        };
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                let stop = done(&v);
                got.push(v);
                if stop {
                    return got;
                }
            }
            Message::Close(f) => panic!("the page's socket was closed: {f:?}; so far: {got:#?}"),
            _ => {}
        }
    }
}

/// Text frames until every predicate matched one of them (in any order).
async fn read_until_all(
    ws: &mut Ws,
    within: Duration,
    preds: &[&dyn Fn(&Value) -> bool],
) -> Vec<Value> {
    let seen = std::cell::RefCell::new(vec![false; preds.len()]);
    read_until(ws, within, |m| {
        let mut seen = seen.borrow_mut();
        for (i, p) in preds.iter().enumerate() {
            if p(m) {
                seen[i] = true;
            }
        }
        seen.iter().all(|s| *s)
    })
    .await
}

async fn submit(host: &Host, workflow: Value, client_id: &str) -> (u16, Value) {
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": workflow, "client_id": client_id}))
        .send()
        .await
        .expect("submit");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

async fn submit_ok(host: &Host, workflow: Value, client_id: &str) -> String {
    let (status, v) = submit(host, workflow, client_id).await;
    assert_eq!(status, 200, "{v:#}");
    v["prompt_id"].as_str().expect("prompt_id").to_string()
}

async fn wait_job(host: &Host, prompt_id: &str, within: Duration, status: &str) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let job = host
            .admin_get(&format!("/comfyhost/api/jobs/{prompt_id}"))
            .await;
        if job["status"] == status {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {prompt_id} is not {status}: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_overlay_end(m: &Value, prompt_id: &str) -> bool {
    m["type"] == "comfyhost.overlay"
        && m["data"]["prompt_id"] == prompt_id
        && m["data"]["terminal"] == true
}

fn kill_comfyui(pid: i32) {
    // SAFETY: SIGKILL to the simulator child the host reported.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

async fn overlay_host(extra: &[&str]) -> (Host, tempfile::TempDir) {
    let plugins = tempfile::tempdir().expect("tmp");
    let mut b = Host::builder().plugin_dir(first_party_plugin("status-overlay", plugins.path()));
    for a in extra {
        b = b.arg(*a);
    }
    (b.start().await, plugins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_job_reaches_the_page_on_its_open_socket() {
    let (host, _plugins) =
        overlay_host(&["--comfyui-arg=--sim-node-delay-ms", "--comfyui-arg=1500"]).await;
    let mut ws = connect(&host, "crash-page").await;
    read_until(&mut ws, Duration::from_secs(10), |m| m["type"] == "status").await;

    // One job running on this page, one queued by a page that is not open.
    let running = submit_ok(&host, empty_image_workflow("crash"), "crash-page").await;
    let away = submit_ok(&host, empty_image_workflow("away"), "away-page").await;
    read_until(&mut ws, Duration::from_secs(20), |m| {
        m["type"] == "executing" && m["data"]["prompt_id"] == running.as_str()
    })
    .await;

    let pid = host.comfy_state().await["pid"].as_i64().expect("pid") as i32;
    kill_comfyui(pid);
    let killed = Instant::now();
    let got = read_until_all(
        &mut ws,
        Duration::from_secs(10),
        &[
            &|m: &Value| is_overlay_end(m, &running),
            &|m: &Value| m["type"] == "comfyhost.job_failed",
            &|m: &Value| m["type"] == "comfyhost.job_ended",
            &|m: &Value| m["type"] == "comfyhost.comfyui" && m["data"]["connected"] == false,
        ],
    )
    .await;
    let took = killed.elapsed();
    println!("crash -> terminal overlay update on the page: {took:?}");
    let failed = got
        .iter()
        .find(|m| m["type"] == "comfyhost.job_failed" && m["data"]["prompt_id"] == running.as_str())
        .unwrap_or_else(|| panic!("no comfyhost.job_failed: {got:#?}"));
    assert_eq!(
        failed["data"]["error"]["type"], "comfyui_exited",
        "{failed}"
    );
    assert!(
        got.iter().any(|m| m["type"] == "comfyhost.job_ended"
            && m["data"]["prompt_id"] == running.as_str()
            && m["data"]["status"] == "failed"),
        "{got:#?}"
    );
    let end = got
        .iter()
        .find(|m| is_overlay_end(m, &running))
        .expect("overlay end");
    assert_eq!(end["data"]["severity"], "error", "{end}");
    // ComfyUI's queue is reported empty while it is down, and why.
    assert!(
        got.iter()
            .any(|m| m["type"] == "status"
                && m["data"]["status"]["exec_info"]["queue_remaining"] == 0),
        "{got:#?}"
    );

    // ComfyUI comes back: the same socket is connected again and runs the next job.
    read_until(&mut ws, Duration::from_secs(40), |m| {
        m["type"] == "comfyhost.comfyui" && m["data"]["connected"] == true
    })
    .await;
    let next = submit_ok(&host, empty_image_workflow("after"), "crash-page").await;
    read_until(&mut ws, Duration::from_secs(30), |m| {
        m["type"] == "execution_success" && m["data"]["prompt_id"] == next.as_str()
    })
    .await;

    // The page that was away gets its job's end when it opens its socket.
    wait_job(&host, &away, Duration::from_secs(5), "failed").await;
    let mut back = connect(&host, "away-page").await;
    let got = read_until(&mut back, Duration::from_secs(10), |m| {
        m["type"] == "comfyhost.job_ended" && m["data"]["prompt_id"] == away.as_str()
    })
    .await;
    assert_eq!(got.last().expect("last")["data"]["status"], "failed");
    let _ = ws.send(Message::Close(None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_prompt_ends_its_banner_and_its_job() {
    let (host, _plugins) = overlay_host(&[]).await;
    let mut ws = connect(&host, "refused-page").await;
    read_until(&mut ws, Duration::from_secs(10), |m| m["type"] == "status").await;
    // SaveImage without its images input: ComfyUI answers 400.
    let bad = json!({"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}});
    let (status, body) = submit(&host, bad, "refused-page").await;
    assert_eq!(status, 400, "{body:#}");
    let prompt_id = host.admin_get("/comfyhost/api/jobs").await[0]["prompt_id"]
        .as_str()
        .expect("the refused job is recorded")
        .to_string();
    let got = read_until_all(
        &mut ws,
        Duration::from_secs(10),
        &[&|m: &Value| is_overlay_end(m, &prompt_id), &|m: &Value| {
            m["type"] == "comfyhost.job_ended"
        }],
    )
    .await;
    let end = got
        .iter()
        .find(|m| is_overlay_end(m, &prompt_id))
        .expect("end");
    assert_eq!(end["data"]["severity"], "error", "{end}");
    let text = end["data"]["user_text"].as_str().unwrap_or_default();
    assert!(text.starts_with("Not queued: "), "{text}");
    assert!(text.contains("Required input is missing"), "{text}");
    let ended = got
        .iter()
        .find(|m| m["type"] == "comfyhost.job_ended")
        .expect("job_ended");
    assert_eq!(ended["data"]["status"], "rejected", "{ended}");
    let job = wait_job(&host, &prompt_id, Duration::from_secs(2), "rejected").await;
    assert!(job["finished_ms"].is_i64(), "{job:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_cleared_prompts_are_cancelled_not_lost() {
    let (host, _plugins) =
        overlay_host(&["--comfyui-arg=--sim-node-delay-ms", "--comfyui-arg=1500"]).await;
    let mut ws = connect(&host, "delete-page").await;
    read_until(&mut ws, Duration::from_secs(10), |m| m["type"] == "status").await;
    let running = submit_ok(&host, empty_image_workflow("keep"), "delete-page").await;
    let deleted = submit_ok(&host, empty_image_workflow("del"), "delete-page").await;
    let cleared = submit_ok(&host, empty_image_workflow("clr"), "delete-page").await;
    let http = Host::client();

    let asked = Instant::now();
    let r = http
        .post(host.url("/api/queue"))
        .json(&json!({"delete": [deleted]}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 200);
    let job = wait_job(&host, &deleted, Duration::from_secs(4), "cancelled").await;
    println!("delete -> cancelled in {:?}", asked.elapsed());
    assert!(
        job["error_json"].as_str().unwrap_or("").contains("deleted"),
        "{job:#}"
    );
    let got = read_until(&mut ws, Duration::from_secs(5), |m| {
        is_overlay_end(m, &deleted)
    })
    .await;
    let end = got.last().expect("end");
    assert!(
        end["data"]["user_text"]
            .as_str()
            .unwrap_or("")
            .starts_with("Cancelled"),
        "{end}"
    );
    assert_ne!(end["data"]["severity"], "error", "{end}");

    let r = http
        .post(host.url("/queue"))
        .json(&json!({"clear": true}))
        .send()
        .await
        .expect("clear");
    assert_eq!(r.status().as_u16(), 200);
    wait_job(&host, &cleared, Duration::from_secs(4), "cancelled").await;
    // The running one is not touched by either.
    wait_job(&host, &running, Duration::from_secs(20), "succeeded").await;

    // An admin's restart of ComfyUI cancels what it had (on purpose, not a failure).
    let victim = submit_ok(&host, empty_image_workflow("victim"), "delete-page").await;
    read_until(&mut ws, Duration::from_secs(20), |m| {
        m["type"] == "executing" && m["data"]["prompt_id"] == victim.as_str()
    })
    .await;
    let r = host
        .admin_post("/comfyhost/api/comfyui/restart", json!({}))
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let job = wait_job(&host, &victim, Duration::from_secs(15), "cancelled").await;
    assert!(
        job["error_json"]
            .as_str()
            .unwrap_or("")
            .contains("comfyui_stopped"),
        "{job:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimal_progress_is_throttled_and_not_shown_as_steps() {
    let (host, _plugins) = overlay_host(&[]).await;
    let mut ws = connect(&host, "sleep-page").await;
    read_until(&mut ws, Duration::from_secs(10), |m| m["type"] == "status").await;
    // TestSleep reports progress every 10 ms in seconds, as floats (`max: 2.0`).
    let workflow = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": 2.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "sleep"}}
    });
    let prompt_id = submit_ok(&host, workflow, "sleep-page").await;
    let got = read_until(&mut ws, Duration::from_secs(30), |m| {
        is_overlay_end(m, &prompt_id)
    })
    .await;
    let progress = got.iter().filter(|m| m["type"] == "progress").count();
    let overlay: Vec<&Value> = got
        .iter()
        .filter(|m| m["type"] == "comfyhost.overlay")
        .collect();
    println!(
        "TestSleep 2 s: {progress} progress messages from ComfyUI, {} overlay updates",
        overlay.len()
    );
    assert!(progress > 50, "the simulator sends fine-grained progress");
    // At most one update per 250 ms (or 5 %) of a 2 s node, plus queued/start/end.
    assert!(overlay.len() <= 16, "{overlay:#?}");
    for u in &overlay {
        let text = u["data"]["user_text"].as_str().unwrap_or_default();
        assert!(
            !text.contains("step"),
            "a non-sampler node shown as steps: {text}"
        );
    }
    // No update is the same as the one before it.
    for pair in overlay.windows(2) {
        assert_ne!(pair[0]["data"], pair[1]["data"], "the same update twice");
    }
    assert_eq!(overlay.last().expect("end")["data"]["severity"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_comfyui_is_down_the_page_gets_comfyui_shapes_and_an_open_socket() {
    let host = Host::builder().start().await;
    let r = host
        .admin_post("/comfyhost/api/comfyui/stop", json!({}))
        .await;
    assert_eq!(r.status().as_u16(), 202);
    host.wait_comfy("stopped", Duration::from_secs(20), |s| {
        s["state"] == "stopped"
    })
    .await;
    let http = Host::client();
    for path in ["/queue", "/api/queue"] {
        let r = http.get(host.url(path)).send().await.expect("queue");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(
            v,
            json!({"queue_running": [], "queue_pending": []}),
            "{path}"
        );
    }
    for path in ["/history", "/api/history?max_items=64", "/api/history/nope"] {
        let r = http.get(host.url(path)).send().await.expect("history");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert_eq!(r.json::<Value>().await.expect("json"), json!({}), "{path}");
    }
    // A page load gets a small page that says what is going on and retries.
    let r = http
        .get(host.url("/"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("page");
    assert_eq!(r.status().as_u16(), 503);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    let html = r.text().await.expect("html");
    assert!(html.contains("ComfyUI is stopped"), "{html}");
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");
    // API clients keep ComfyUI's error shape.
    let r = http
        .get(host.url("/system_stats"))
        .send()
        .await
        .expect("stats");
    assert_eq!(r.status().as_u16(), 503);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["type"], "comfyui_unavailable");

    // The page's socket is accepted and stays open: ComfyUI's status, then why.
    let mut ws = connect(&host, "down-page").await;
    let got = read_until(&mut ws, Duration::from_secs(5), |m| {
        m["type"] == "comfyhost.comfyui"
    })
    .await;
    assert_eq!(got[0]["type"], "status", "{got:#?}");
    assert_eq!(got[0]["data"]["sid"], "down-page");
    assert_eq!(got.last().expect("notice")["data"]["state"], "stopped");
    // Nothing else for a while: no close, no storm.
    match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        Err(_) => {}
        Ok(other) => panic!("expected a quiet open socket, got {other:?}"),
    }

    let r = host
        .admin_post("/comfyhost/api/comfyui/start", json!({}))
        .await;
    assert_eq!(r.status().as_u16(), 202);
    read_until(&mut ws, Duration::from_secs(30), |m| {
        m["type"] == "comfyhost.comfyui" && m["data"]["connected"] == true
    })
    .await;
    let prompt_id = submit_ok(&host, empty_image_workflow("back"), "down-page").await;
    read_until(&mut ws, Duration::from_secs(30), |m| {
        m["type"] == "execution_success" && m["data"]["prompt_id"] == prompt_id.as_str()
    })
    .await;
    let _ = ADMIN_TOKEN;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_readiness_anonymous_session_fast_jobs_and_attach_shutdown() {
    let http = Host::client();
    // ComfyUI that takes long to start: the host is live at once, not ready.
    let slow = Host::builder()
        .arg("--comfyui-arg=--sim-startup-delay-ms")
        .arg("--comfyui-arg=60000")
        .no_wait()
        .start()
        .await;
    let r = http
        .get(slow.url("/comfyhost/api/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status().as_u16(), 200);
    let r = http
        .get(slow.url("/comfyhost/api/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(r.status().as_u16(), 503);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["ready"], false, "{v}");
    assert_eq!(v["comfyui"], "starting", "{v}");
    drop(slow);

    let host = Host::builder().start().await;
    let r = http
        .get(host.url("/comfyhost/api/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(r.status().as_u16(), 200);
    // An anonymous page asking who it is gets an answer, not a 401 in its console.
    let r = http
        .get(host.url("/comfyhost/api/session?optional=1"))
        .send()
        .await
        .expect("session");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["user"], Value::Null);
    let js = http
        .get(host.url("/comfyhost/ext/status-overlay.js"))
        .send()
        .await
        .expect("js")
        .text()
        .await
        .expect("text");
    assert!(js.contains("/comfyhost/api/session?optional=1"));

    // A job too fast to be seen running still has its start time.
    let prompt_id = submit_ok(&host, empty_image_workflow("fast"), "fast-page").await;
    let job = wait_job(&host, &prompt_id, Duration::from_secs(20), "succeeded").await;
    let started = job["started_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("{job:#}"));
    assert!(
        started <= job["finished_ms"].as_i64().expect("finished"),
        "{job:#}"
    );

    // Attach mode: shutting down does not claim to stop a ComfyUI it does not own.
    let mut attached = Host::builder()
        .arg("--attach")
        .arg(format!("http://127.0.0.1:{}", host.comfy_port))
        .no_wait()
        .start()
        .await;
    attached
        .wait_comfy("attached", Duration::from_secs(20), |s| {
            s["state"] == "attached"
        })
        .await;
    // SAFETY: SIGTERM to the host process this test started.
    unsafe {
        libc::kill(attached.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while attached.child.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "attached host did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = attached.output_text();
    assert!(out.contains("shutting down"), "{out}");
    assert!(!out.contains("stopping ComfyUI"), "{out}");
    assert_eq!(host.comfy_state().await["state"], "ready");
}
