//! Job tracking: every prompt the host forwards to ComfyUI is recorded in the store before
//! ComfyUI sees it, followed to its end through ComfyUI's history, and, when ComfyUI dies or
//! forgets it, recorded as failed and reported to the browser (`comfyhost.job_failed`) instead
//! of being silently lost. Survives host restarts: unfinished jobs are picked up again at start.
//!
//! Every job ends in exactly one terminal state: `succeeded`, `failed` (with the reason),
//! `interrupted`, `cancelled` (deleted from the queue, or ComfyUI stopped or restarted on
//! purpose), `rejected` (refused before it ran) or `lost` (only when nothing is known). The
//! job's page gets `comfyhost.job_ended` with that state (kept for a while when the page is
//! away, see `WsHub::send_or_keep`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfyhost_proxy::{HostEvent, ProxyState};

use crate::fair_queue::FairQueue;
use crate::poll_schedule::{PollSchedule, pick_due};
use comfyhost_store::{JobRecord, Store};
use comfyhost_supervisor::{Supervisor, SupervisorEvent, SupervisorState};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// How often unfinished jobs are checked against ComfyUI's history and queue.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// A job missing from both queue and history for this long was never queued or was removed.
const LOST_AFTER_MS: i64 = 5_000;
/// History look-ups per poll (the rest wait for the next one, longest waiting first).
const POLL_BATCH: usize = 64;
/// The largest history entry the tracker reads; a larger one ends the job without its outputs
/// instead of being fetched again and again.
const MAX_HISTORY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
struct InFlight {
    client_id: Option<String>,
    submitted_ms: i64,
    /// First time the job was seen in neither queue nor history.
    missing_since_ms: Option<i64>,
    /// Seen running (its start is recorded once).
    running: bool,
    /// Removed from ComfyUI's queue on purpose (`POST /queue {delete|clear}`): why.
    cancel_requested: Option<String>,
    /// When its history is looked up next (per-job backoff).
    schedule: PollSchedule,
}

/// One file a finished job produced, as ComfyUI lists it in the history's `outputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRef {
    /// Node that produced it.
    pub node_id: String,
    pub filename: String,
    /// ComfyUI subfolder (may be empty).
    pub subfolder: String,
    /// `output`, `temp` or `input`.
    pub folder_type: String,
    /// Where the file lies on this machine, when the host knows (the managed ComfyUI's
    /// output directory, or the host's copy of a remote job's outputs).
    pub local_path: Option<PathBuf>,
}

/// A job reached its end. Sent on [`JobTracker::subscribe_finished`].
#[derive(Debug, Clone)]
pub struct FinishedJob {
    pub prompt_id: String,
    pub client_id: Option<String>,
    /// Authenticated submitter, when known.
    pub user_id: Option<String>,
    /// `succeeded`, `failed`, `interrupted`, `cancelled`, `lost`.
    pub status: String,
    /// Files the job produced (empty unless it succeeded).
    pub outputs: Vec<OutputRef>,
}

/// A prompt going to the local ComfyUI.
pub struct LocalSubmission<'a> {
    pub prompt_id: &'a str,
    pub client_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    /// The workflow as forwarded.
    pub workflow: &'a Value,
    /// The workflow as the browser sent it, when a plugin rewrote it.
    pub original_workflow: Option<&'a Value>,
}

/// Records and follows jobs. Cheap to clone.
#[derive(Clone)]
pub struct JobTracker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    in_flight: Mutex<HashMap<String, InFlight>>,
    upstream: String,
    http: reqwest::Client,
    /// The managed ComfyUI's output directory (`None` in attach mode).
    output_dir: Option<PathBuf>,
    finished: broadcast::Sender<FinishedJob>,
    fair: FairQueue,
    overlay: std::sync::OnceLock<crate::overlay::OverlayDriver>,
    /// Hears which prompts were running when ComfyUI died.
    poison: std::sync::OnceLock<crate::poison::PoisonGuard>,
    /// Where the browsers are (set by [`JobTracker::spawn`]).
    proxy: std::sync::OnceLock<ProxyState>,
}

/// A record with only identity, status and submission time set; the store keeps earlier
/// values of the fields left `None`.
fn record(prompt_id: &str, client_id: Option<&str>, status: &str, submitted_ms: i64) -> JobRecord {
    JobRecord {
        prompt_id: prompt_id.to_string(),
        client_id: client_id.map(str::to_string),
        user_id: None,
        route: None,
        backend: None,
        status: status.to_string(),
        submitted_ms,
        started_ms: None,
        finished_ms: None,
        error_json: None,
        workflow_json: None,
        original_workflow_json: None,
        transform_notes_json: None,
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl JobTracker {
    /// `upstream` is ComfyUI's base URL (`http://127.0.0.1:8189`); `output_dir` its output
    /// directory when the host manages it. Unfinished jobs from an earlier run are loaded and
    /// followed again.
    pub fn new(
        store: Store,
        upstream: String,
        output_dir: Option<PathBuf>,
        fair: FairQueue,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let tracker = Self {
            inner: Arc::new(Inner {
                store,
                in_flight: Mutex::new(HashMap::new()),
                upstream: upstream.trim_end_matches('/').to_string(),
                http,
                output_dir,
                finished: broadcast::channel(256).0,
                fair,
                overlay: std::sync::OnceLock::new(),
                poison: std::sync::OnceLock::new(),
                proxy: std::sync::OnceLock::new(),
            }),
        };
        let unfinished = tracker
            .inner
            .store
            .recent_jobs(None, 10_000)?
            .into_iter()
            .filter(|j| matches!(j.status.as_str(), "queued" | "running"))
            // Remote jobs are followed by the remote runner.
            .filter(|j| j.route.as_deref().is_none_or(|r| r == "local"));
        let mut map = tracker.inner.in_flight.lock();
        for job in unfinished {
            tracing::info!(prompt_id = %job.prompt_id, "following an unfinished job from an earlier run");
            map.insert(
                job.prompt_id.clone(),
                InFlight {
                    client_id: job.client_id.clone(),
                    submitted_ms: job.submitted_ms,
                    missing_since_ms: None,
                    running: job.status == "running",
                    cancel_requested: None,
                    schedule: PollSchedule::now(now_ms()),
                },
            );
        }
        drop(map);
        Ok(tracker)
    }

    /// A prompt is about to be forwarded to the local ComfyUI.
    pub fn submitted(&self, job: LocalSubmission<'_>) {
        let LocalSubmission {
            prompt_id,
            client_id,
            user_id,
            workflow,
            original_workflow,
        } = job;
        let now = now_ms();
        let record = JobRecord {
            route: Some("local".to_string()),
            backend: Some("local".to_string()),
            user_id: user_id.map(str::to_string),
            workflow_json: Some(workflow.to_string()),
            original_workflow_json: original_workflow.map(Value::to_string),
            ..record(prompt_id, client_id, "queued", now)
        };
        // Queued for the store's writer thread: the request path never waits on SQLite.
        self.inner.store.queue_job(record);
        self.inner.in_flight.lock().insert(
            prompt_id.to_string(),
            InFlight {
                client_id: client_id.map(str::to_string),
                submitted_ms: now,
                missing_since_ms: None,
                running: false,
                cancel_requested: None,
                schedule: PollSchedule::now(now),
            },
        );
    }

    /// Prompts removed from ComfyUI's queue through the host (`POST /queue {"delete": ids}`):
    /// once ComfyUI no longer has them they end `cancelled`, not `lost`.
    pub fn cancel_requested(&self, prompt_ids: &[String], why: &str) {
        let mut map = self.inner.in_flight.lock();
        for id in prompt_ids {
            if let Some(job) = map.get_mut(id) {
                job.cancel_requested = Some(why.to_string());
            }
        }
    }

    /// Every local job not yet seen running (`POST /queue {"clear": true}`, a restart asked
    /// for from the page).
    pub fn cancel_requested_all_pending(&self, why: &str) {
        for job in self.inner.in_flight.lock().values_mut() {
            if !job.running {
                job.cancel_requested = Some(why.to_string());
            }
        }
    }

    /// Lets the poison-prompt guard hear which prompts were running when ComfyUI died.
    pub fn set_poison(&self, guard: crate::poison::PoisonGuard) {
        let _ = self.inner.poison.set(guard);
    }

    /// Lets the status overlay hear about jobs the host ends itself.
    pub fn set_overlay(&self, overlay: crate::overlay::OverlayDriver) {
        let _ = self.inner.overlay.set(overlay);
    }

    /// Writes a job record as is (remote jobs keep theirs current through this).
    pub fn upsert(&self, record: &JobRecord) {
        if let Err(e) = self.inner.store.upsert_job(record) {
            tracing::error!(prompt_id = %record.prompt_id, error = %e, "cannot record job");
        }
    }

    /// Tells subscribers a job ended (the remote runner's jobs end outside this tracker).
    pub fn announce(&self, job: FinishedJob) {
        let _ = self.inner.finished.send(job);
    }

    /// ComfyUI refused a prompt the host forwarded (validation error): it never entered the
    /// queue, so the job ends now, with ComfyUI's answer, instead of being reported lost later.
    pub fn rejected_by_comfyui(&self, prompt_id: &str, answer: &Value) {
        self.never_queued(prompt_id, "comfyui_rejected", answer);
    }

    /// ComfyUI could not be reached with a prompt the host was forwarding: it never ran.
    pub fn unreachable(&self, prompt_id: &str, answer: &Value) {
        self.never_queued(prompt_id, "comfyui_unavailable", answer);
    }

    /// A forwarded prompt that never entered ComfyUI's queue ends `rejected`, with the answer
    /// (of type `kind`), and its banner says why.
    fn never_queued(&self, prompt_id: &str, kind: &str, answer: &Value) {
        let client_id = self
            .inner
            .in_flight
            .lock()
            .remove(prompt_id)
            .and_then(|j| j.client_id);
        let error = json!({"type": kind, "answer": answer});
        self.end_rejected(prompt_id, client_id.as_deref(), None, None, &error);
        if let Some(overlay) = self.inner.overlay.get() {
            overlay.host_rejected(prompt_id, &rejection_message(answer));
        }
    }

    /// A prompt refused by the host (plugin rejection or failure); never reaches ComfyUI.
    /// `user_id` is whoever sent it (when a token came with it).
    pub fn refused(
        &self,
        prompt_id: &str,
        client_id: Option<&str>,
        user_id: Option<&str>,
        error: &Value,
    ) {
        self.end_rejected(prompt_id, client_id, user_id, Some("reject"), error);
    }

    /// What prompt-transform plugins changed in a job (`[{"plugin_id", "notes"}]`), kept in
    /// its record for the dashboard.
    pub fn transform_notes(&self, prompt_id: &str, notes: &Value) {
        match self
            .inner
            .store
            .set_job_transform_notes(prompt_id, &notes.to_string())
        {
            Ok(true) => {}
            Ok(false) => tracing::debug!(prompt_id, "transform notes for a job not recorded"),
            Err(e) => tracing::error!(prompt_id, error = %e, "cannot record transform notes"),
        }
    }

    /// ComfyUI announced that it started a local job (`execution_start` on a browser socket,
    /// `at_ms` its timestamp): its start is recorded then, so "waited" and "ran" are known
    /// even for a job that ran between two polls.
    pub fn started(&self, prompt_id: &str, at_ms: i64) {
        // Held while writing: a poll that ends the job takes it out of the map first, so a
        // late start never overwrites the job's end.
        let mut map = self.inner.in_flight.lock();
        let Some(job) = map.get_mut(prompt_id) else {
            return;
        };
        if job.running {
            return;
        }
        job.running = true;
        let record = JobRecord {
            started_ms: Some(at_ms),
            ..record(
                prompt_id,
                job.client_id.as_deref(),
                "running",
                job.submitted_ms,
            )
        };
        if let Err(e) = self.inner.store.upsert_job(&record) {
            tracing::error!(prompt_id, error = %e, "cannot record job start");
        }
    }

    /// An admin cancels a local job: a queued one is deleted from ComfyUI's queue (and ends
    /// `cancelled`), a running one is interrupted (and ends `interrupted`). `Ok(None)` when
    /// the job is not a local job in flight; otherwise what was done.
    pub async fn cancel_local(&self, prompt_id: &str) -> anyhow::Result<Option<&'static str>> {
        let running = match self.inner.in_flight.lock().get(prompt_id) {
            Some(job) => job.running,
            None => return Ok(None),
        };
        let (path, body, done) = if running {
            ("interrupt", json!({"prompt_id": prompt_id}), "interrupted")
        } else {
            (
                "queue",
                json!({"delete": [prompt_id]}),
                "deleted from the queue",
            )
        };
        let url = format!("{}/{path}", self.inner.upstream);
        self.inner
            .http
            .post(url)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        if !running {
            self.cancel_requested(
                &[prompt_id.to_string()],
                "cancelled by an admin from the dashboard",
            );
        }
        Ok(Some(done))
    }

    /// Records a job that ends `rejected` now, before it ever ran.
    fn end_rejected(
        &self,
        prompt_id: &str,
        client_id: Option<&str>,
        user_id: Option<&str>,
        route: Option<&str>,
        error: &Value,
    ) {
        self.inner.fair.done(prompt_id);
        let now = now_ms();
        let record = JobRecord {
            route: route.map(str::to_owned),
            user_id: user_id.map(str::to_owned),
            finished_ms: Some(now),
            error_json: Some(error.to_string()),
            ..record(prompt_id, client_id, "rejected", now)
        };
        self.inner.store.queue_job(record);
        crate::metrics::job_ended(route.unwrap_or("local"), "rejected");
        if let Some(client) = client_id {
            self.tell_page(client, prompt_id, "rejected", Some(error));
        }
    }

    /// `comfyhost.job_ended` (and `comfyhost.job_failed` for failures) to the job's page, kept
    /// for a while when the page is away.
    fn tell_page(&self, client_id: &str, prompt_id: &str, status: &str, error: Option<&Value>) {
        let Some(proxy) = self.inner.proxy.get() else {
            return;
        };
        let data = json!({"prompt_id": prompt_id, "status": status, "error": error});
        let mut events = Vec::new();
        if matches!(status, "failed" | "lost") {
            events.extend(HostEvent::new("comfyhost.job_failed", data.clone()));
        }
        events.extend(HostEvent::new("comfyhost.job_ended", data));
        for event in events {
            if let Err(e) = proxy.ws().send_or_keep(client_id, &event) {
                tracing::debug!(prompt_id, error = %e, "job end kept for the page's return");
            }
        }
    }

    /// Every job's end, with the files it produced. Slow receivers lag (they miss events,
    /// and should fall back to a full pass); nothing blocks the tracker.
    pub fn subscribe_finished(&self) -> broadcast::Receiver<FinishedJob> {
        self.inner.finished.subscribe()
    }

    pub fn job(&self, prompt_id: &str) -> anyhow::Result<Option<JobRecord>> {
        Ok(self.inner.store.job(prompt_id)?)
    }

    pub fn recent(&self, limit: u32) -> anyhow::Result<Vec<JobRecord>> {
        Ok(self.inner.store.recent_jobs(None, limit)?)
    }

    /// Follow jobs until `cancel`: poll ComfyUI, and fail every unfinished job when ComfyUI
    /// exits (it keeps its queue in memory only, so a restarted ComfyUI will not run them).
    pub fn spawn(
        &self,
        supervisor: &Arc<Supervisor>,
        proxy: ProxyState,
        cancel: CancellationToken,
    ) {
        let tracker = self.clone();
        let _ = self.inner.proxy.set(proxy.clone());
        let supervisor = supervisor.clone();
        let mut events = supervisor.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    ev = events.recv() => match ev {
                        // The supervisor asked for it (an admin's stop or restart): on purpose.
                        Ok(SupervisorEvent::Exited { exit, .. }) if exit.expected => {
                            let why = format!(
                                "ComfyUI was stopped or restarted on purpose (by an admin or the \
                                 host; {}) while this prompt was queued or running",
                                exit.description
                            );
                            tracker.end_all("cancelled", "comfyui_stopped", &why, &proxy);
                        }
                        Ok(SupervisorEvent::Exited { exit, .. }) => {
                            if let Some(poison) = tracker.inner.poison.get() {
                                let running: Vec<String> = tracker
                                    .inner
                                    .in_flight
                                    .lock()
                                    .iter()
                                    .filter(|(_, j)| j.running)
                                    .map(|(k, _)| k.clone())
                                    .collect();
                                poison.crashed(&exit.description, &running);
                            }
                            let why = format!(
                                "ComfyUI exited ({}) while this prompt was queued or running; \
                                 ComfyUI does not keep its queue across restarts, so queue it again",
                                exit.description
                            );
                            tracker.end_all("failed", "comfyui_exited", &why, &proxy);
                        }
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return,
                    },
                    _ = tick.tick() => {
                        if matches!(
                            supervisor.status().state,
                            SupervisorState::Ready | SupervisorState::Attached
                        ) {
                            tracker.poll(&proxy).await;
                        }
                    }
                }
            }
        });
    }

    fn end_all(&self, status: &str, kind: &str, message: &str, proxy: &ProxyState) {
        let jobs: Vec<(String, InFlight)> = self.inner.in_flight.lock().drain().collect();
        for (prompt_id, job) in jobs {
            self.finish(
                &prompt_id,
                &job,
                Outcome {
                    status: status.into(),
                    error: Some(json!({"type": kind, "message": message})),
                    outputs: Vec::new(),
                    started_ms: None,
                },
                proxy,
            );
        }
    }

    fn finish(&self, prompt_id: &str, job: &InFlight, outcome: Outcome, proxy: &ProxyState) {
        let Outcome {
            status,
            error,
            outputs,
            started_ms,
        } = outcome;
        let status = status.as_str();
        self.inner.fair.done(prompt_id);
        let record = JobRecord {
            finished_ms: Some(now_ms()),
            // A job too fast to be seen running: its start from ComfyUI's history.
            started_ms: started_ms.filter(|_| !job.running),
            error_json: error.as_ref().map(Value::to_string),
            ..record(
                prompt_id,
                job.client_id.as_deref(),
                status,
                job.submitted_ms,
            )
        };
        if let Err(e) = self.inner.store.upsert_job(&record) {
            tracing::error!(prompt_id, error = %e, "cannot record job outcome");
        }
        if let (Some(err), Some(overlay)) = (&error, self.inner.overlay.get())
            && err.get("messages").is_none()
        {
            // Ends ComfyUI did not report itself (it exited, forgot or dropped the prompt).
            if status == "cancelled" {
                overlay.host_cancelled(prompt_id);
            } else {
                overlay.host_failure(
                    prompt_id,
                    err["type"].as_str().unwrap_or("JobFailed"),
                    err["message"].as_str().unwrap_or(status),
                );
            }
        }
        match &error {
            Some(err) => tracing::warn!(prompt_id, status, error = %err, "job ended"),
            None => tracing::info!(prompt_id, status, "job ended"),
        }
        let user_id = self
            .inner
            .store
            .job(prompt_id)
            .ok()
            .flatten()
            .and_then(|j| j.user_id);
        // No receiver is fine: nothing listens for job ends.
        let _ = self.inner.finished.send(FinishedJob {
            prompt_id: prompt_id.to_string(),
            client_id: job.client_id.clone(),
            user_id,
            status: status.to_string(),
            outputs,
        });
        if let Some(client) = &job.client_id {
            let _ = self.inner.proxy.set(proxy.clone());
            self.tell_page(client, prompt_id, status, error.as_ref());
        }
    }

    async fn poll(&self, proxy: &ProxyState) {
        if self.inner.in_flight.lock().is_empty() {
            return;
        }
        let queue = self.queue_ids().await;
        let now = now_ms();
        // Jobs still in ComfyUI's queue need no history look-up: one `/queue` answers for all.
        type Jobs = Vec<(String, InFlight)>;
        let (in_queue, batch): (Jobs, Jobs) = {
            let map = self.inner.in_flight.lock();
            let in_queue: Vec<(String, InFlight)> = match &queue {
                Some(q) => q
                    .running
                    .iter()
                    .chain(&q.pending)
                    .filter_map(|id| map.get(id).map(|j| (id.clone(), j.clone())))
                    .collect(),
                None => Vec::new(),
            };
            let queued: HashSet<&str> = in_queue.iter().map(|(k, _)| k.as_str()).collect();
            let due = pick_due(
                map.iter()
                    .filter(|(k, _)| !queued.contains(k.as_str()))
                    .map(|(k, v)| (k, &v.schedule)),
                now,
                POLL_BATCH,
            );
            let batch = due
                .into_iter()
                .filter_map(|k| map.get(&k).map(|v| (k, v.clone())))
                .collect();
            (in_queue, batch)
        };
        for (prompt_id, job) in in_queue {
            self.check_missing(&prompt_id, &job, queue.as_ref(), proxy);
        }
        for (prompt_id, job) in batch {
            match self.history_outcome(&prompt_id).await {
                Ok(Some(outcome)) => {
                    self.inner.in_flight.lock().remove(&prompt_id);
                    self.finish(&prompt_id, &job, outcome, proxy);
                }
                Ok(None) => {
                    self.backoff(&prompt_id);
                    self.check_missing(&prompt_id, &job, queue.as_ref(), proxy);
                }
                Err(e) => {
                    self.backoff(&prompt_id);
                    tracing::debug!(prompt_id, error = %e, "history poll failed");
                }
            }
        }
    }

    /// Not settled yet: look at it again later, each time a little later.
    fn backoff(&self, prompt_id: &str) {
        if let Some(job) = self.inner.in_flight.lock().get_mut(prompt_id) {
            job.schedule.missed(now_ms());
        }
    }

    /// Not in history: still queued or running? If it is in neither for a while, it is lost.
    fn check_missing(
        &self,
        prompt_id: &str,
        job: &InFlight,
        queue: Option<&QueueIds>,
        proxy: &ProxyState,
    ) {
        let Some(queue) = queue else { return };
        let now = now_ms();
        if queue.running.iter().any(|id| id == prompt_id) {
            if !job.running {
                if let Some(entry) = self.inner.in_flight.lock().get_mut(prompt_id) {
                    entry.running = true;
                    entry.schedule.reset(now);
                }
                self.mark_running(prompt_id, job);
            }
            return;
        }
        if queue.pending.iter().any(|id| id == prompt_id) {
            return;
        }
        if let Some(why) = &job.cancel_requested {
            // Deleted on purpose and now gone from ComfyUI's queue.
            self.inner.in_flight.lock().remove(prompt_id);
            self.finish(
                prompt_id,
                job,
                Outcome {
                    status: "cancelled".into(),
                    error: Some(json!({"type": "cancelled", "message": why})),
                    outputs: Vec::new(),
                    started_ms: None,
                },
                proxy,
            );
            return;
        }
        if now - job.submitted_ms < LOST_AFTER_MS {
            return;
        }
        let since = {
            let mut map = self.inner.in_flight.lock();
            let Some(entry) = map.get_mut(prompt_id) else {
                return;
            };
            *entry.missing_since_ms.get_or_insert(now)
        };
        if now - since >= LOST_AFTER_MS {
            self.inner.in_flight.lock().remove(prompt_id);
            self.finish(
                prompt_id,
                job,
                Outcome {
                    status: "lost".into(),
                    error: Some(json!({
                        "type": "comfyui_forgot_prompt",
                        "message": "ComfyUI has this prompt neither in its queue nor in its history: it \
                                    rejected it, it was removed from the queue, or ComfyUI restarted"
                    })),
                    outputs: Vec::new(),
                    started_ms: None,
                },
                proxy,
            );
        }
    }

    fn mark_running(&self, prompt_id: &str, job: &InFlight) {
        let record = JobRecord {
            started_ms: Some(now_ms()),
            ..record(
                prompt_id,
                job.client_id.as_deref(),
                "running",
                job.submitted_ms,
            )
        };
        if let Err(e) = self.inner.store.upsert_job(&record) {
            tracing::error!(prompt_id, error = %e, "cannot record job start");
        }
    }

    /// `Some(outcome)` once ComfyUI's history has the prompt.
    async fn history_outcome(&self, prompt_id: &str) -> anyhow::Result<Option<Outcome>> {
        let id = percent_encoding::utf8_percent_encode(prompt_id, PATH_SEGMENT);
        let url = format!("{}/history/{id}", self.inner.upstream);
        let response = self.inner.http.get(url).send().await?;
        if response.status().is_client_error() {
            // ComfyUI does not know this id (or cannot look it up): not in history.
            return Ok(None);
        }
        let mut response = response.error_for_status()?;
        let mut bytes = Vec::new();
        let too_large = response
            .content_length()
            .is_some_and(|n| n > MAX_HISTORY_BYTES as u64);
        while !too_large && let Some(chunk) = response.chunk().await? {
            if bytes.len() + chunk.len() > MAX_HISTORY_BYTES {
                return Ok(Some(history_too_large()));
            }
            bytes.extend_from_slice(&chunk);
        }
        if too_large {
            return Ok(Some(history_too_large()));
        }
        let body: Value = serde_json::from_slice(&bytes)?;
        let Some(entry) = body.get(prompt_id) else {
            return Ok(None);
        };
        let status = &entry["status"];
        let started_ms = execution_start_ms(&status["messages"]);
        if status["status_str"] == "success" {
            return Ok(Some(Outcome {
                status: "succeeded".into(),
                error: None,
                outputs: history_outputs(&entry["outputs"], self.inner.output_dir.as_deref()),
                started_ms,
            }));
        }
        // Failed or interrupted: keep ComfyUI's own messages.
        let messages = status["messages"].clone();
        let interrupted = messages.to_string().contains("execution_interrupted");
        let kind = if interrupted { "interrupted" } else { "failed" };
        Ok(Some(Outcome {
            status: kind.into(),
            error: Some(json!({"type": format!("comfyui_{kind}"), "messages": messages})),
            outputs: Vec::new(),
            started_ms,
        }))
    }

    async fn queue_ids(&self) -> Option<QueueIds> {
        let url = format!("{}/queue", self.inner.upstream);
        let body: Value = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        // Queue items are `[number, prompt_id, prompt, extra_data, outputs_to_execute, ...]`.
        let ids = |key: &str| -> Vec<String> {
            body[key]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.get(1).and_then(Value::as_str).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(QueueIds {
            running: ids("queue_running"),
            pending: ids("queue_pending"),
        })
    }
}

/// Characters escaped in a prompt id put into an upstream URL path segment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A history entry too large to read: ComfyUI finished the job (it is in its history), but its
/// outcome and outputs are not read, so it is never fetched again.
fn history_too_large() -> Outcome {
    Outcome {
        status: "lost".into(),
        error: Some(json!({
            "type": "history_too_large",
            "message": format!(
                "ComfyUI finished this prompt, but its history entry is larger than {} MiB, so \
                 the host did not read its outcome or outputs (see ComfyUI's own history)",
                MAX_HISTORY_BYTES / (1024 * 1024)
            ),
        })),
        outputs: Vec::new(),
        started_ms: None,
    }
}

/// How a job ended.
struct Outcome {
    status: String,
    error: Option<Value>,
    outputs: Vec<OutputRef>,
    /// When ComfyUI started it (from the history's `execution_start`), if known.
    started_ms: Option<i64>,
}

/// The `timestamp` of `execution_start` in a history entry's `status.messages`
/// (`[["execution_start", {"prompt_id", "timestamp"}], ...]`).
fn execution_start_ms(messages: &Value) -> Option<i64> {
    messages
        .as_array()?
        .iter()
        .find(|m| m[0] == "execution_start")
        .and_then(|m| m[1]["timestamp"].as_i64())
}

/// One line for the page from ComfyUI's (or the proxy's) refusal body.
pub(crate) fn rejection_message(answer: &Value) -> String {
    let error = &answer["error"];
    let message = error["message"]
        .as_str()
        .or_else(|| answer.as_str())
        .unwrap_or("ComfyUI refused the prompt");
    let mut nodes: Vec<String> = answer["node_errors"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .flat_map(|n| n["errors"].as_array().into_iter().flatten())
        .filter_map(|e| {
            let m = e["message"].as_str()?;
            Some(match e["details"].as_str().filter(|d| !d.is_empty()) {
                Some(d) => format!("{m}: {d}"),
                None => m.to_string(),
            })
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    nodes.sort();
    if nodes.is_empty() {
        message.to_string()
    } else {
        format!("{message}: {}", nodes.join("; "))
    }
}

/// Files in a history entry's `outputs`: `{node_id: {images|gifs|audio|video|...: [{filename,
/// subfolder, type}]}}`. Entries that are not file references (text, numbers) are skipped.
pub fn history_outputs(outputs: &Value, output_dir: Option<&std::path::Path>) -> Vec<OutputRef> {
    let mut files = Vec::new();
    let Some(nodes) = outputs.as_object() else {
        return files;
    };
    for (node_id, node) in nodes {
        let Some(kinds) = node.as_object() else {
            continue;
        };
        for items in kinds.values().filter_map(Value::as_array) {
            for item in items {
                let (Some(filename), Some(folder_type)) = (
                    item.get("filename").and_then(Value::as_str),
                    item.get("type").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let subfolder = item.get("subfolder").and_then(Value::as_str).unwrap_or("");
                let local_path = match (output_dir, folder_type) {
                    (Some(dir), "output") => Some(dir.join(subfolder).join(filename)),
                    _ => None,
                };
                files.push(OutputRef {
                    node_id: node_id.clone(),
                    filename: filename.to_string(),
                    subfolder: subfolder.to_string(),
                    folder_type: folder_type.to_string(),
                    local_path,
                });
            }
        }
    }
    files
}

struct QueueIds {
    running: Vec<String>,
    pending: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_and_refusal_text_come_from_comfyui_answers() {
        let messages = json!([
            ["execution_start", {"prompt_id": "p", "timestamp": 1795418347739_i64}],
            ["execution_cached", {"nodes": [], "prompt_id": "p", "timestamp": 1795418347740_i64}]
        ]);
        assert_eq!(execution_start_ms(&messages), Some(1795418347739));
        assert_eq!(execution_start_ms(&json!(null)), None);
        let answer = json!({
            "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": ""},
            "node_errors": {"2": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                "details": "ckpt_name: 'x.safetensors' not in []"}]}}
        });
        assert_eq!(
            rejection_message(&answer),
            "Prompt outputs failed validation: Value not in list: ckpt_name: 'x.safetensors' not in []"
        );
        assert_eq!(rejection_message(&json!("bad")), "bad");
    }

    #[test]
    fn history_outputs_lists_file_references_only() {
        let outputs = json!({
            "9": {"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"}]},
            "12": {
                "gifs": [{"filename": "v.mp4", "subfolder": "vid", "type": "output", "format": "video/h264-mp4"}],
                "text": ["not a file"]
            },
            "15": {"images": [{"filename": "p.png", "subfolder": "", "type": "temp"}]},
            "bad": "not an object"
        });
        let dir = std::path::Path::new("/data/output");
        let mut files = history_outputs(&outputs, Some(dir));
        files.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].node_id, "12");
        assert_eq!(files[0].local_path, Some(dir.join("vid/v.mp4")));
        assert_eq!(files[1].filename, "p.png");
        assert_eq!(files[1].local_path, None, "temp files are not output files");
        assert_eq!(files[2].local_path, Some(dir.join("a_00001_.png")));
        assert!(history_outputs(&json!(null), Some(dir)).is_empty());
        assert!(
            history_outputs(&outputs, None)
                .iter()
                .all(|f| f.local_path.is_none())
        );
    }
}
