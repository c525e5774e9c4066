//! The real `comfyhost` binary with its embedded ComfyUI simulator: proxy round trips (HTTP,
//! WebSocket, binary frames, %2F paths), ComfyUI crash -> restart with backoff -> ready,
//! state events, startup timeout, ComfyUI down -> clear errors, admin auth.

use std::time::Duration;

use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn ws_connect(
    host: &Host,
    client_id: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, _) =
        tokio_tungstenite::connect_async(host.ws_url(&format!("/ws?clientId={client_id}")))
            .await
            .expect("ws connect through the host");
    ws
}

/// Read text messages until one of type `until` arrives (binary frames are counted).
async fn read_until(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    until: &str,
) -> (Vec<Value>, usize) {
    let mut texts = Vec::new();
    let mut binaries = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {until} within 30 s; got {texts:#?}"))
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("json text frame");
                let done = v["type"] == until;
                texts.push(v);
                if done {
                    return (texts, binaries);
                }
            }
            Message::Binary(b) => {
                assert!(b.len() > 8, "binary frame has event type + payload");
                binaries += 1;
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn proxies_http_and_ws_through_the_real_binary() {
    let host = Host::builder().start().await;
    let http = Host::client();

    // Plain GETs, both spellings.
    for path in ["/system_stats", "/api/system_stats"] {
        let r = http.get(host.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["system"]["comfyui_version"].is_string(), "{v}");
    }

    // WS first (execution messages only go to the submitting client), then queue a prompt.
    let client_id = "itest-client-1";
    let mut ws = ws_connect(&host, client_id).await;
    let (first, _) = read_until(&mut ws, "status").await;
    assert_eq!(first[0]["type"], "status");

    let r = http
        .post(host.url("/prompt"))
        .json(&json!({"prompt": empty_image_workflow("itest"), "client_id": client_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let accepted: Value = r.json().await.unwrap();
    let prompt_id = accepted["prompt_id"]
        .as_str()
        .expect("prompt_id")
        .to_string();

    let (msgs, _) = read_until(&mut ws, "execution_success").await;
    let kinds: Vec<&str> = msgs.iter().filter_map(|m| m["type"].as_str()).collect();
    for k in [
        "execution_start",
        "execution_cached",
        "executing",
        "executed",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
    let executed = msgs.iter().find(|m| m["type"] == "executed").unwrap();
    let image = &executed["data"]["output"]["images"][0];
    let filename = image["filename"].as_str().unwrap();
    assert!(filename.starts_with("itest_"), "{filename}");

    // History and /view through the proxy.
    let hist: Value = http
        .get(host.url(&format!("/history/{prompt_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        hist[&prompt_id]["outputs"]["2"]["images"].is_array(),
        "{hist}"
    );
    let png = http
        .get(host.url(&format!("/view?filename={filename}&subfolder=&type=output")))
        .send()
        .await
        .unwrap();
    assert_eq!(png.status(), 200);
    let bytes = png.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"\x89PNG");
    assert!(host.output_dir().join(filename).exists());

    // userdata with an encoded slash: stored and read back under the same raw path.
    let body = br#"{"nodes":[],"links":[]}"#.to_vec();
    let r = http
        .post(host.url("/api/userdata/workflows%2Fitest.json?overwrite=true"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "userdata POST: {}", r.status());
    let r = http
        .get(host.url("/api/userdata/workflows%2Fitest.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);

    // WS client -> server direction still works after all that (feature flags message).
    ws.send(Message::Text(
        json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn binary_preview_frames_are_relayed() {
    let models = crate::support::models_dir_with_checkpoint();
    let host = Host::builder()
        .arg("--comfyui-arg=--sim-models-dir")
        .arg(format!("--comfyui-arg={}", models.path().display()))
        .start()
        .await;
    let client_id = "itest-preview";
    let mut ws = ws_connect(&host, client_id).await;
    read_until(&mut ws, "status").await;
    // A sampler workflow whose model the simulator provides.
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": crate::support::sampler_workflow(), "client_id": client_id}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body:#}");
    let (_, binaries) = read_until(&mut ws, "execution_success").await;
    assert!(
        binaries > 0,
        "expected binary preview frames during sampling"
    );
}

#[tokio::test]
async fn comfyui_crash_restarts_with_backoff_and_reports_events() {
    let host = Host::builder().start().await;
    let before = host.comfy_state().await;
    let pid = before["pid"].as_i64().expect("pid of the managed ComfyUI") as i32;

    // Watch the event stream while we crash ComfyUI.
    let events = Host::client()
        .get(host.url("/comfyhost/api/comfyui/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut stream = events.bytes_stream();

    // SAFETY: SIGKILL to the simulator child we just looked up.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }

    let after = host
        .wait_comfy("restart after kill -9", Duration::from_secs(30), |s| {
            s["state"] == "ready" && s["restarts"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    assert_ne!(after["pid"].as_i64().unwrap() as i32, pid, "a new process");
    let exit = after["last_exit"].to_string();
    assert!(exit.contains('9'), "last exit records SIGKILL: {exit}");

    // The SSE stream carried the state changes.
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(seen.contains("backoff") || seen.contains("starting")) || !seen.contains("ready") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no state events; saw:\n{seen}"))
            .expect("stream open")
            .expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk).to_lowercase());
    }
    assert!(seen.contains("event: supervisor"), "{seen}");

    // And the proxy works again.
    let r = Host::client()
        .get(host.url("/system_stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn startup_timeout_is_a_clear_failed_state() {
    let host = Host::builder()
        .arg("--startup-timeout")
        .arg("1")
        .arg("--comfyui-arg=--sim-startup-delay-ms")
        .arg("--comfyui-arg=60000")
        .no_wait()
        .start()
        .await;
    let s = host
        .wait_comfy(
            "failed after the startup timeout",
            Duration::from_secs(30),
            |s| s["state"] == "failed",
        )
        .await;
    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("timeout"), "{s:#}");
}

#[tokio::test]
async fn comfyui_down_gives_clear_errors_not_hangs() {
    let host = Host::builder().start().await;
    let r = host
        .admin_post("/comfyhost/api/comfyui/stop", json!({}))
        .await;
    assert_eq!(r.status(), 202);
    host.wait_comfy("stopped", Duration::from_secs(20), |s| {
        s["state"] == "stopped"
    })
    .await;

    let started = std::time::Instant::now();
    let r = Host::client()
        .get(host.url("/system_stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "comfyui_unavailable", "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered promptly"
    );

    // The browser socket is the host's: accepted and kept open, with ComfyUI's status.
    let mut ws = ws_connect(&host, "itest-down").await;
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("status promptly");
    match msg {
        Some(Ok(Message::Text(t))) => {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["type"], "status", "{v}");
            assert_eq!(v["data"]["sid"], "itest-down", "{v}");
        }
        other => panic!("expected ComfyUI's status, got {other:?}"),
    }

    // Start again through the API.
    let r = host
        .admin_post("/comfyhost/api/comfyui/start", json!({}))
        .await;
    assert_eq!(r.status(), 202);
    host.wait_comfy("ready again", Duration::from_secs(20), |s| {
        s["state"] == "ready"
    })
    .await;
}

#[tokio::test]
async fn admin_api_requires_the_token() {
    let host = Host::builder().start().await;
    let http = Host::client();
    for (method, path) in [
        ("POST", "/comfyhost/api/comfyui/restart"),
        ("POST", "/comfyhost/api/comfyui/stop"),
        ("GET", "/comfyhost/api/comfyui"),
        ("GET", "/comfyhost/api/plugins"),
        ("GET", "/comfyhost/api/gpu"),
    ] {
        let req = http.request(method.parse().unwrap(), host.url(path));
        let r = req.try_clone().unwrap().send().await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path} without token");
        // A wrong token authenticates nobody: 401 (403 is for a known non-admin user).
        let r = req.bearer_auth("wrong-token").send().await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path} with a wrong token");
    }
    let r = http
        .get(host.url("/comfyhost/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The GPU report is served (CPU mode on a machine without a driver).
    let gpu = host.admin_get("/comfyhost/api/gpu").await;
    assert!(gpu["decision"]["flags"].is_array(), "{gpu:#}");
}

#[tokio::test]
async fn jobs_are_recorded_and_a_crash_mid_job_is_reported_not_lost() {
    // Slow nodes so the second prompt is still running when ComfyUI dies.
    let host = Host::builder()
        .arg("--comfyui-arg=--sim-node-delay-ms")
        .arg("--comfyui-arg=1500")
        .start()
        .await;
    let http = Host::client();
    let submit = |prefix: &'static str| {
        let http = http.clone();
        let url = host.url("/prompt");
        async move {
            let r = http
                .post(url)
                .json(&json!({"prompt": empty_image_workflow(prefix), "client_id": "itest-jobs"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            v["prompt_id"].as_str().unwrap().to_string()
        }
    };

    // A job that completes is recorded as succeeded, with timings.
    let ok_id = submit("jobok").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job = host
            .admin_get(&format!("/comfyhost/api/jobs/{ok_id}"))
            .await;
        if job["status"] == "succeeded" {
            assert!(job["finished_ms"].as_i64().unwrap() >= job["submitted_ms"].as_i64().unwrap());
            assert_eq!(job["route"], "local");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never finished: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A job in flight when ComfyUI is killed is recorded as failed with the reason.
    let lost_id = submit("jobkill").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = host.comfy_state().await["pid"].as_i64().unwrap() as i32;
    // SAFETY: SIGKILL to the simulator child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = host
            .admin_get(&format!("/comfyhost/api/jobs/{lost_id}"))
            .await;
        if job["status"] == "failed" {
            let err: Value = serde_json::from_str(job["error_json"].as_str().unwrap()).unwrap();
            assert_eq!(err["type"], "comfyui_exited", "{err:#}");
            assert!(
                err["message"].as_str().unwrap().contains("SIGKILL"),
                "{err:#}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "crash not recorded: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = host.admin_get("/comfyhost/api/jobs").await;
    assert!(all.as_array().unwrap().len() >= 2, "{all:#}");
}

/// First start with no admin token configured: the generated token is printed once, with the
/// dashboard's address to use it at.
#[test]
fn first_start_prints_the_token_and_where_to_sign_in() {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().expect("tmp");
    let mut child = crate::support::host_command()
        .args(["run", "--listen", "127.0.0.1:0", "--plugins-rescan", "0"])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--comfyui-port", &crate::support::free_port().to_string()])
        .env_remove("COMFYHOST_ADMIN_TOKEN")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn comfyhost");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains("Sign in to the dashboard with it at http://127.0.0.1:")
                    && line.trim_end().ends_with("/comfyhost/");
                seen.push(line);
                if hit {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "no sign-in address printed:\n{}", seen.join("\n"));
    assert!(
        seen.iter().any(|l| l.contains("admin token (shown once")),
        "{}",
        seen.join("\n")
    );
}
