//! Runs prompts the queue router sent away from the local ComfyUI: on a remote ComfyUI
//! ([`comfy`]) or a RunPod-compatible serverless endpoint ([`serverless`]), while the browser's
//! page keeps working as if the job ran locally: it gets a prompt id at once, the ComfyUI
//! WebSocket messages for its client id, outputs it can `/view`, and entries in `/history` and
//! `/queue` ([`views`]). Every job is persisted (`remote_jobs` + `jobs`) and picked up again
//! after a host restart.

pub mod backend;
pub mod comfy;
pub mod comfy_socket;
pub mod jobs_view;
pub mod messages;
pub mod outputs;
pub mod serverless;
pub mod views;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use comfyhost_protocol::{ComfyErrorBody, WsMessage};
use comfyhost_proxy::{HostEvent, ProxyState};
pub use comfyhost_store::BackendKind;
use comfyhost_store::{JobRecord, RemoteJobRow, Store};
use http::StatusCode;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::backends::BackendPool;
use crate::fair_queue::FairQueue;
use crate::jobs::{FinishedJob, JobTracker, OutputRef};
use crate::overlay::OverlayDriver;
use comfy_socket::ComfySocket;
use messages::Failure;
use outputs::OutputCache;

/// A prompt on its way to a remote backend.
#[derive(Debug, Clone)]
pub struct RemoteJob {
    pub prompt_id: String,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    /// Queue number the browser sees (an integer, as ComfyUI's).
    pub number: i64,
    /// The `/prompt` body after the plugins (`prompt`, `extra_data`, ...).
    pub request: Value,
}

/// How a submission went.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// The remote has it; the browser gets `{prompt_id, number, node_errors: {}}`.
    Accepted,
    /// Not queued anywhere; the browser gets this status and ComfyUI-shaped body.
    Refused { status: StatusCode, body: Value },
}

/// A job being followed now.
#[derive(Debug, Clone)]
struct Active {
    backend: String,
    kind: BackendKind,
    cancel: CancellationToken,
}

/// Runs remote jobs. Cheap to clone.
#[derive(Clone)]
pub struct RemoteRunner {
    inner: Arc<Inner>,
}

struct Inner {
    pool: BackendPool,
    store: Store,
    jobs: JobTracker,
    fair: FairQueue,
    proxy: ProxyState,
    cache: OutputCache,
    http: reqwest::Client,
    sockets: HashMap<String, ComfySocket>,
    active: Mutex<HashMap<String, Active>>,
    /// Local ComfyUI input directory (images a serverless job needs are read from here).
    input_dir: Option<PathBuf>,
    overlay: OverlayDriver,
    cancel: CancellationToken,
}

/// Everything [`RemoteRunner::new`] needs.
pub struct RemoteSetup {
    pub pool: BackendPool,
    pub store: Store,
    pub jobs: JobTracker,
    pub fair: FairQueue,
    pub proxy: ProxyState,
    pub cache_dir: PathBuf,
    pub input_dir: Option<PathBuf>,
    /// Sees every message relayed to a browser (status overlay).
    pub overlay: OverlayDriver,
    pub cancel: CancellationToken,
}

impl RemoteRunner {
    /// Opens a socket to every remote ComfyUI and resumes unfinished jobs.
    pub fn new(setup: RemoteSetup) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(setup.pool.config().timings.request_timeout())
            .build()?;
        let sockets = setup
            .pool
            .config()
            .comfyui
            .iter()
            .map(|b| {
                (
                    b.name.clone(),
                    ComfySocket::spawn(&b.name, &b.url, setup.cancel.child_token()),
                )
            })
            .collect();
        let runner = Self {
            inner: Arc::new(Inner {
                pool: setup.pool,
                store: setup.store,
                jobs: setup.jobs,
                fair: setup.fair,
                proxy: setup.proxy,
                cache: OutputCache::new(setup.cache_dir),
                http,
                sockets,
                active: Mutex::new(HashMap::new()),
                input_dir: setup.input_dir,
                overlay: setup.overlay,
                cancel: setup.cancel,
            }),
        };
        runner.resume_unfinished()?;
        Ok(runner)
    }

    pub fn pool(&self) -> &BackendPool {
        &self.inner.pool
    }

    pub fn cache(&self) -> &OutputCache {
        &self.inner.cache
    }

    /// Runs `job` where the router said: a named ComfyUI backend or serverless endpoint.
    pub async fn submit(&self, job: RemoteJob, kind: BackendKind, name: &str) -> Submitted {
        backend::for_kind(kind).submit(self, job, name).await
    }

    /// Whether `prompt_id` is a remote job the host is following now.
    pub fn is_active(&self, prompt_id: &str) -> bool {
        self.inner.active.lock().contains_key(prompt_id)
    }

    /// Cancels a remote job (browser interrupt or queue delete). `false` when it is not one.
    pub async fn cancel(&self, prompt_id: &str) -> bool {
        let Some(active) = self.inner.active.lock().get(prompt_id).cloned() else {
            return false;
        };
        let Ok(Some(row)) = self.inner.store.remote_job(prompt_id) else {
            return false;
        };
        tracing::info!(prompt_id, backend = %active.backend, "cancelling remote job");
        backend::for_kind(active.kind).cancel(self, &row).await;
        // A running job ends through its follower (the backend reports the interruption); one
        // that never started will not be reported by anyone, so it ends here.
        if row.state != "running" {
            self.untrack(prompt_id);
            let mut row = row;
            self.finish_interrupted(&mut row, false);
        }
        true
    }

    fn resume_unfinished(&self) -> anyhow::Result<()> {
        for row in self.inner.store.remote_jobs(true, 10_000)? {
            tracing::info!(prompt_id = %row.prompt_id, backend = %row.backend, state = %row.state,
                "resuming a remote job from an earlier run");
            self.inner.fair.restore(&row.prompt_id, row.number as i64);
            backend::for_kind(row.kind).resume(self, row);
        }
        Ok(())
    }

    // ----- shared by the followers -------------------------------------------------------------

    fn socket(&self, backend: &str) -> Option<&ComfySocket> {
        self.inner.sockets.get(backend)
    }

    fn track(&self, prompt_id: &str, backend: &str, kind: BackendKind) -> CancellationToken {
        let cancel = self.inner.cancel.child_token();
        self.inner.active.lock().insert(
            prompt_id.to_string(),
            Active {
                backend: backend.to_string(),
                kind,
                cancel: cancel.clone(),
            },
        );
        cancel
    }

    fn untrack(&self, prompt_id: &str) {
        if let Some(a) = self.inner.active.lock().remove(prompt_id) {
            a.cancel.cancel();
        }
    }

    /// Sends a ComfyUI-native message to the job's browser, if it is connected.
    fn emit(&self, row: &RemoteJobRow, message: &WsMessage) {
        self.inner.overlay.observe(message);
        let value = message.to_value();
        if let Some(client) = &row.client_id
            && let Err(e) = self.inner.proxy.ws().relay_comfy_message(client, &value)
        {
            tracing::debug!(prompt_id = %row.prompt_id, error = %e, "browser not reachable for a job event");
        }
    }

    /// Sends a ComfyUI binary frame of the job's run (preview, `progress_text`, preview with
    /// metadata) to its browser, as received.
    fn emit_binary(&self, row: &RemoteJobRow, frame: bytes::Bytes) {
        if let Some(client) = &row.client_id
            && let Err(e) = self.inner.proxy.ws().relay_comfy_binary(client, frame)
        {
            tracing::debug!(prompt_id = %row.prompt_id, error = %e, "browser not reachable for a binary frame");
        }
    }

    /// Sends the job's browser a `status` whose `queue_remaining` counts the remote jobs
    /// unfinished now, so the page's active counter (and the current frontend's queue panel,
    /// which refreshes on `status`) includes them; its local ComfyUI's own `status` messages
    /// follow as usual.
    fn emit_status(&self, row: &RemoteJobRow) {
        let active = self.inner.active.lock().len();
        self.emit(row, &WsMessage::status(active as u64));
    }

    /// Sends a `comfyhost.*` notice to the job's browser.
    fn notice(&self, row: &RemoteJobRow, kind: &str, data: Value) {
        if let (Some(client), Ok(ev)) = (&row.client_id, HostEvent::new(kind, data)) {
            // A job's end is kept for a page that is away; status updates are not.
            let _ = if kind == "comfyhost.job_failed" {
                self.inner.proxy.ws().send_or_keep(client, &ev)
            } else {
                self.inner.proxy.ws().send_to(client, &ev)
            };
        }
    }

    /// Persists the row and mirrors it into the job record.
    fn save(&self, row: &RemoteJobRow, record: JobRecord) {
        if let Err(e) = self.inner.store.put_remote_job(row) {
            tracing::error!(prompt_id = %row.prompt_id, error = %e, "cannot persist remote job");
        }
        self.inner.jobs.upsert(&record);
    }

    fn base_record(row: &RemoteJobRow, status: &str) -> JobRecord {
        JobRecord {
            prompt_id: row.prompt_id.clone(),
            client_id: row.client_id.clone(),
            user_id: row.user_id.clone(),
            route: Some(
                match row.kind {
                    BackendKind::Comfyui => "backend",
                    BackendKind::Serverless => "serverless",
                }
                .into(),
            ),
            backend: Some(row.backend.clone()),
            status: status.to_string(),
            submitted_ms: crate::jobs::now_ms(),
            ..Default::default()
        }
    }

    fn set_running(&self, row: &mut RemoteJobRow) {
        if row.state == "running" {
            return;
        }
        row.state = "running".into();
        let record = JobRecord {
            started_ms: Some(crate::jobs::now_ms()),
            ..Self::base_record(row, "running")
        };
        self.save(row, record);
    }

    /// The job succeeded; `outputs` maps node id → node output with host-side references.
    fn finish_succeeded(
        &self,
        row: &mut RemoteJobRow,
        outputs: serde_json::Map<String, Value>,
        files: Vec<OutputRef>,
        messages: Value,
    ) {
        row.state = "succeeded".into();
        row.history_json = Some(
            views::history_entry(row, &Value::Object(outputs), "success", true, messages)
                .to_string(),
        );
        let record = JobRecord {
            finished_ms: Some(crate::jobs::now_ms()),
            ..Self::base_record(row, "succeeded")
        };
        self.save(row, record);
        self.emit(row, &messages::execution_success(&row.prompt_id));
        self.emit(row, &messages::executing_done(&row.prompt_id));
        self.end(row, files);
    }

    /// The job failed. `relayed`: the browser already got the remote's own `execution_error`.
    fn finish_failed(&self, row: &mut RemoteJobRow, failure: &Failure, relayed: bool) {
        tracing::warn!(prompt_id = %row.prompt_id, backend = %row.backend,
            error = %failure.exception_message, kind = %failure.exception_type, "remote job failed");
        row.state = "failed".into();
        let msgs = json!([[
            "execution_error",
            failure.to_message(&row.prompt_id).to_value()["data"]
        ]]);
        row.history_json =
            Some(views::history_entry(row, &json!({}), "error", false, msgs).to_string());
        let record = JobRecord {
            finished_ms: Some(crate::jobs::now_ms()),
            error_json: Some(failure.to_record().to_string()),
            ..Self::base_record(row, "failed")
        };
        self.save(row, record);
        if !relayed {
            self.emit(row, &failure.to_message(&row.prompt_id));
        }
        self.emit(row, &messages::executing_done(&row.prompt_id));
        self.notice(
            row,
            "comfyhost.job_failed",
            json!({"prompt_id": row.prompt_id, "status": "failed", "backend": row.backend, "error": failure.to_record()}),
        );
        self.end(row, Vec::new());
    }

    /// The backend refused the prompt at validation (HTTP 400): like a local refusal, the job
    /// never entered a queue and ends `rejected`, with the backend's answer (which the browser
    /// gets as the `/prompt` answer). No history entry: ComfyUI keeps none for it either.
    fn finish_rejected(&self, row: &mut RemoteJobRow, answer: &Value) {
        tracing::info!(prompt_id = %row.prompt_id, backend = %row.backend, "remote backend rejected the prompt");
        row.state = "rejected".into();
        let record = JobRecord {
            finished_ms: Some(crate::jobs::now_ms()),
            error_json: Some(
                json!({"type": "comfyui_rejected", "backend": row.backend, "answer": answer})
                    .to_string(),
            ),
            ..Self::base_record(row, "rejected")
        };
        self.save(row, record);
        self.end(row, Vec::new());
    }

    fn finish_interrupted(&self, row: &mut RemoteJobRow, relayed: bool) {
        row.state = "interrupted".into();
        let msgs = json!([["execution_interrupted", {"prompt_id": row.prompt_id}]]);
        row.history_json =
            Some(views::history_entry(row, &json!({}), "error", false, msgs).to_string());
        let record = JobRecord {
            finished_ms: Some(crate::jobs::now_ms()),
            error_json: Some(json!({"type": "interrupted"}).to_string()),
            ..Self::base_record(row, "interrupted")
        };
        self.save(row, record);
        if !relayed {
            self.emit(row, &messages::execution_interrupted(&row.prompt_id, None));
        }
        self.emit(row, &messages::executing_done(&row.prompt_id));
        self.end(row, Vec::new());
    }

    fn end(&self, row: &RemoteJobRow, outputs: Vec<OutputRef>) {
        self.inner.fair.done(&row.prompt_id);
        self.inner.active.lock().remove(&row.prompt_id);
        self.emit_status(row);
        self.inner.jobs.announce(FinishedJob {
            prompt_id: row.prompt_id.clone(),
            client_id: row.client_id.clone(),
            user_id: row.user_id.clone(),
            status: row.state.clone(),
            outputs,
        });
    }

    /// The row for a new job, persisted before anything leaves the host.
    fn new_row(&self, job: &RemoteJob, kind: BackendKind, backend: &str) -> RemoteJobRow {
        let row = RemoteJobRow {
            prompt_id: job.prompt_id.clone(),
            kind,
            backend: backend.to_string(),
            remote_id: None,
            client_id: job.client_id.clone(),
            user_id: job.user_id.clone(),
            number: job.number as f64,
            state: "submitting".into(),
            request_json: job.request.to_string(),
            history_json: None,
            updated_ms: 0,
        };
        let record = JobRecord {
            workflow_json: Some(job.request["prompt"].to_string()),
            ..Self::base_record(&row, "queued")
        };
        self.save(&row, record);
        row
    }

    /// Downloads `file` from `url` into the cache (skipped when already there).
    async fn fetch_output(
        &self,
        prompt_id: &str,
        file: &outputs::FileRef,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<PathBuf, String> {
        let path = self
            .inner
            .cache
            .path(prompt_id, file)
            .map_err(|e| e.to_string())?;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let mut req = self.inner.http.get(url);
        if let Some(k) = bearer {
            req = req.bearer_auth(k);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("fetching {}: {e}", file.filename))?;
        if !resp.status().is_success() {
            return Err(format!("fetching {}: {}", file.filename, resp.status()));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("fetching {}: {e}", file.filename))?;
        self.inner
            .cache
            .store(prompt_id, file, &bytes)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A refusal in ComfyUI's `/prompt` error shape, so the frontend shows it in its dialog.
pub fn refusal(status: StatusCode, kind: &str, message: &str) -> Submitted {
    let body = ComfyErrorBody::new(kind, message, message);
    Submitted::Refused {
        status,
        body: serde_json::to_value(body).unwrap_or(Value::Null),
    }
}

impl RemoteRunner {
    /// Remote jobs for `/queue` (unfinished) or `/history` (all, newest 10 000). Rejected ones
    /// never entered a queue and are left out, as ComfyUI leaves out prompts it refused.
    pub fn store_rows(&self, unfinished_only: bool) -> Vec<RemoteJobRow> {
        self.inner
            .store
            .remote_jobs(unfinished_only, 10_000)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read remote jobs");
                Vec::new()
            })
            .into_iter()
            .filter(|r| r.state != "rejected")
            .collect()
    }

    /// One remote job's row, finished or not (not a rejected one).
    pub fn store_row(&self, prompt_id: &str) -> Option<RemoteJobRow> {
        self.inner
            .store
            .remote_job(prompt_id)
            .ok()
            .flatten()
            .filter(|r| r.state != "rejected")
    }

    /// The `/history/{id}` entry of a finished remote job.
    pub fn history_entry(&self, prompt_id: &str) -> Option<Value> {
        let row = self.inner.store.remote_job(prompt_id).ok().flatten()?;
        row.history_json
            .as_deref()
            .and_then(|h| serde_json::from_str(h).ok())
    }
}
