//! Remote execution targets for tests: standalone ComfyUI simulators (the `comfyhost` binary's
//! `simulate-comfyui` mode, as a separate process on its own port) and a protocol-faithful
//! RunPod serverless fake that runs worker-comfyui's job shape against one of them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::free_port;

/// A ComfyUI simulator in its own process.
pub struct RemoteSim {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl RemoteSim {
    /// Starts a simulator with `extra` flags and waits until it answers.
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_comfyhost"))
            .arg("simulate-comfyui")
            .args(["--listen", "127.0.0.1", "--port", &port.to_string()])
            .arg("--output-directory")
            .arg(dir.path().join("output"))
            .arg("--temp-directory")
            .arg(dir.path().join("temp"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn simulator");
        let sim = Self { child, port, dir };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client
                .get(format!("{}/system_stats", sim.url()))
                .send()
                .await
                && r.status().is_success()
            {
                return sim;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("simulator on {port} did not start");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn history(&self, prompt_id: &str) -> Value {
        reqwest::get(format!("{}/history/{prompt_id}", self.url()))
            .await
            .expect("history")
            .json::<Value>()
            .await
            .expect("history json")
    }

    /// Prompt ids in this simulator's history.
    pub async fn history_ids(&self) -> Vec<String> {
        let h: Value = reqwest::get(format!("{}/history", self.url()))
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        h.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RemoteSim {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Behaviour knobs of the RunPod fake.
#[derive(Debug, Clone, Default)]
pub struct RunpodBehaviour {
    /// Time a job spends IN_QUEUE before a "worker" takes it (cold start).
    pub cold_start: Duration,
    /// Required `Authorization: Bearer` key.
    pub api_key: Option<String>,
    /// Forget jobs right after accepting them (status 404), like an expired job.
    pub forget_jobs: bool,
}

#[derive(Debug, Clone)]
struct FakeJob {
    status: String,
    output: Option<Value>,
    error: Option<String>,
    cancelled: bool,
}

/// A protocol-faithful fake of a RunPod serverless endpoint running worker-comfyui
/// (`/run`, `/status/{id}`, `/cancel/{id}`, `/health`), which really executes each workflow
/// on a ComfyUI simulator and returns images the way worker-comfyui 5.x does
/// (`output.images[] = {filename, type: "base64", data}`).
pub struct FakeRunpod {
    pub port: u16,
    pub runs: Arc<Mutex<Vec<Value>>>,
    pub cancels: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRunpod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRunpod {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v2/fake-endpoint", self.port)
    }

    pub async fn start(comfy_url: String, behaviour: RunpodBehaviour) -> Self {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, post};
        use axum::{Json, Router};

        #[derive(Clone)]
        struct St {
            comfy: String,
            b: RunpodBehaviour,
            jobs: Arc<Mutex<std::collections::HashMap<String, FakeJob>>>,
            runs: Arc<Mutex<Vec<Value>>>,
            cancels: Arc<Mutex<Vec<String>>>,
        }
        fn authorized(st: &St, h: &HeaderMap) -> bool {
            match &st.b.api_key {
                None => true,
                Some(k) => h
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v == format!("Bearer {k}")),
            }
        }
        async fn run(
            State(st): State<St>,
            h: HeaderMap,
            Json(body): Json<Value>,
        ) -> (StatusCode, Json<Value>) {
            if !authorized(&st, &h) {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "Unauthorized"})),
                );
            }
            let Some(workflow) = body["input"]["workflow"].as_object().cloned() else {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "input.workflow missing"})),
                );
            };
            st.runs.lock().expect("lock").push(body.clone());
            let id = format!("{}-u1", uuid_like());
            st.jobs.lock().expect("lock").insert(
                id.clone(),
                FakeJob {
                    status: "IN_QUEUE".into(),
                    output: None,
                    error: None,
                    cancelled: false,
                },
            );
            let job_id = id.clone();
            let st2 = st.clone();
            tokio::spawn(async move { work(st2, job_id, Value::Object(workflow)).await });
            (
                StatusCode::OK,
                Json(json!({"id": id, "status": "IN_QUEUE"})),
            )
        }
        async fn work(st: St, id: String, workflow: Value) {
            tokio::time::sleep(st.b.cold_start).await;
            let set = |f: &dyn Fn(&mut FakeJob)| {
                if let Some(j) = st.jobs.lock().expect("lock").get_mut(&id) {
                    f(j);
                }
            };
            if st
                .jobs
                .lock()
                .expect("lock")
                .get(&id)
                .is_some_and(|j| j.cancelled)
            {
                return;
            }
            set(&|j| j.status = "IN_PROGRESS".into());
            // worker-comfyui: queue on the local ComfyUI, wait for history, return images.
            let http = reqwest::Client::new();
            let resp = http
                .post(format!("{}/prompt", st.comfy))
                .json(&json!({"prompt": workflow}))
                .send()
                .await;
            let prompt_id = match resp {
                Ok(r) if r.status().is_success() => {
                    let v: Value = r.json().await.unwrap_or_default();
                    v["prompt_id"].as_str().unwrap_or_default().to_string()
                }
                Ok(r) => {
                    let text = r.text().await.unwrap_or_default();
                    set(&|j| {
                        j.status = "FAILED".into();
                        j.error = Some(format!("Workflow validation failed: {text}"));
                    });
                    return;
                }
                Err(e) => {
                    set(&|j| {
                        j.status = "FAILED".into();
                        j.error = Some(format!("ComfyUI unreachable: {e}"));
                    });
                    return;
                }
            };
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if st
                    .jobs
                    .lock()
                    .expect("lock")
                    .get(&id)
                    .is_some_and(|j| j.cancelled)
                {
                    let _ = http.post(format!("{}/interrupt", st.comfy)).send().await;
                    return;
                }
                let h: Value = match http
                    .get(format!("{}/history/{prompt_id}", st.comfy))
                    .send()
                    .await
                {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => continue,
                };
                let Some(entry) = h.get(&prompt_id) else {
                    continue;
                };
                if entry["status"]["status_str"] != "success" {
                    let msgs = entry["status"]["messages"].to_string();
                    let err = entry["status"]["messages"]
                        .as_array()
                        .and_then(|m| m.iter().find(|m| m[0] == "execution_error"))
                        .map(|m| {
                            format!(
                                "Workflow execution error: Node Type: {}, Node ID: {}, Message: {}",
                                m[1]["node_type"].as_str().unwrap_or(""),
                                m[1]["node_id"].as_str().unwrap_or(""),
                                m[1]["exception_message"].as_str().unwrap_or("")
                            )
                        })
                        .unwrap_or(msgs);
                    set(&|j| {
                        j.status = "FAILED".into();
                        j.error = Some(err.clone());
                    });
                    return;
                }
                let mut images = Vec::new();
                for node in entry["outputs"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.values())
                {
                    for img in node["images"].as_array().into_iter().flatten() {
                        let url = format!(
                            "{}/view?filename={}&subfolder={}&type={}",
                            st.comfy,
                            img["filename"].as_str().unwrap_or(""),
                            img["subfolder"].as_str().unwrap_or(""),
                            img["type"].as_str().unwrap_or("output")
                        );
                        if let Ok(r) = http.get(url).send().await
                            && let Ok(bytes) = r.bytes().await
                        {
                            images.push(json!({
                                "filename": img["filename"],
                                "type": "base64",
                                "data": base64::engine::general_purpose::STANDARD.encode(&bytes),
                            }));
                        }
                    }
                }
                let output = json!({"images": images});
                set(&|j| {
                    j.status = "COMPLETED".into();
                    j.output = Some(output.clone());
                });
                return;
            }
        }
        async fn status(
            State(st): State<St>,
            h: HeaderMap,
            Path(id): Path<String>,
        ) -> (StatusCode, Json<Value>) {
            if !authorized(&st, &h) {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "Unauthorized"})),
                );
            }
            if st.b.forget_jobs {
                return (
                    StatusCode::NOT_FOUND,
                    Json(json!({"error": "job not found"})),
                );
            }
            let jobs = st.jobs.lock().expect("lock");
            match jobs.get(&id) {
                None => (
                    StatusCode::NOT_FOUND,
                    Json(json!({"error": "job not found"})),
                ),
                Some(j) => {
                    let mut v = json!({"id": id, "status": j.status, "delayTime": 0});
                    if let Some(o) = &j.output {
                        v["output"] = o.clone();
                        v["executionTime"] = json!(1);
                    }
                    if let Some(e) = &j.error {
                        v["error"] = json!(e);
                    }
                    (StatusCode::OK, Json(v))
                }
            }
        }
        async fn cancel(State(st): State<St>, Path(id): Path<String>) -> (StatusCode, Json<Value>) {
            st.cancels.lock().expect("lock").push(id.clone());
            if let Some(j) = st.jobs.lock().expect("lock").get_mut(&id) {
                j.cancelled = true;
                j.status = "CANCELLED".into();
            }
            (
                StatusCode::OK,
                Json(json!({"id": id, "status": "CANCELLED"})),
            )
        }
        async fn health(State(st): State<St>) -> Json<Value> {
            let jobs = st.jobs.lock().expect("lock");
            let count = |s: &str| jobs.values().filter(|j| j.status == s).count();
            Json(json!({
                "jobs": {"completed": count("COMPLETED"), "failed": count("FAILED"),
                         "inProgress": count("IN_PROGRESS"), "inQueue": count("IN_QUEUE"), "retried": 0},
                "workers": {"idle": 0, "running": count("IN_PROGRESS")}
            }))
        }
        fn uuid_like() -> String {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(1);
            format!("sync-{:08x}", N.fetch_add(1, Ordering::Relaxed))
        }

        let runs = Arc::new(Mutex::new(Vec::new()));
        let cancels = Arc::new(Mutex::new(Vec::new()));
        let st = St {
            comfy: comfy_url,
            b: behaviour,
            jobs: Arc::new(Mutex::new(std::collections::HashMap::new())),
            runs: runs.clone(),
            cancels: cancels.clone(),
        };
        let app = Router::new()
            .route("/v2/fake-endpoint/run", post(run))
            .route("/v2/fake-endpoint/status/{id}", get(status))
            .route("/v2/fake-endpoint/cancel/{id}", post(cancel))
            .route("/v2/fake-endpoint/health", get(health))
            .with_state(st);
        let (port, task) = super::serve_on_free_port(app).await;
        Self {
            port,
            runs,
            cancels,
            task,
        }
    }
}

/// A "ComfyUI" that accepts every prompt and then forgets it, like a backend behind a proxy
/// that drops requests or one that restarted right after answering.
pub async fn black_hole_comfyui() -> (u16, tokio::task::JoinHandle<()>) {
    use axum::Json;
    use axum::routing::get;
    super::serve_on_free_port(accepting_comfyui(get(|| async { Json(json!({})) }))).await
}

/// A "ComfyUI" that accepts every prompt, has an empty queue, no WebSocket, and answers
/// `/history/{id}` with `history`.
fn accepting_comfyui(history: axum::routing::MethodRouter) -> axum::Router {
    use axum::routing::{get, post};
    use axum::{Json, Router};
    Router::new()
        .route(
            "/prompt",
            post(|Json(b): Json<Value>| async move {
                Json(json!({"prompt_id": b["prompt_id"], "number": 0, "node_errors": {}}))
            }),
        )
        .route(
            "/queue",
            get(|| async { Json(json!({"queue_running": [], "queue_pending": []})) }),
        )
        .route("/history/{id}", history)
        .route("/ws", get(|| async { axum::http::StatusCode::NOT_FOUND }))
}

/// A "ComfyUI" that accepts every prompt and reports it a success with no outputs at all, as
/// a misconfigured backend (outputs to a node the host cannot see) would.
pub async fn hollow_comfyui() -> (u16, tokio::task::JoinHandle<()>) {
    use axum::Json;
    use axum::extract::Path;
    use axum::routing::get;
    let history = get(|Path(id): Path<String>| async move {
        Json(json!({ id: {
            "prompt": [0, "", {}, {}, []],
            "outputs": {},
            "status": {"status_str": "success", "completed": true, "messages": []},
            "meta": {}
        }}))
    });
    super::serve_on_free_port(accepting_comfyui(history)).await
}

/// Writes a backends file and returns its path (inside `dir`).
pub fn backends_file(dir: &std::path::Path, toml: &str) -> PathBuf {
    let p = dir.join("backends.toml");
    std::fs::write(&p, toml).expect("write backends");
    p
}
