//! Jobs on a remote ComfyUI: submit under the host's own clientId with the browser's
//! prompt id, relay the backend's messages to the browser (fetching outputs first, so every
//! image the browser is told about can be viewed), and settle the outcome from the backend's
//! history, which also covers messages missed while a socket was down.

use std::collections::HashSet;
use std::time::Instant;

use comfyhost_store::{BackendKind, RemoteJobRow};
use http::StatusCode;
use serde_json::{Map, Value, json};

use comfyhost_protocol::WsMessage;

use super::backend::QueueLoad;
use super::comfy_socket::{JobEvent, JobEvents};
use super::messages::{self, Failure};
use super::outputs::{self, FileRef, OutputCache};
use super::{RemoteJob, RemoteRunner, Submitted, refusal};
use crate::backends::BackendPool;
use crate::jobs::OutputRef;

/// Sends the job to `preferred`, failing over to the next healthy backend when one cannot be
/// reached. A validation error from a backend is the browser's answer (it would fail anywhere).
pub async fn submit(runner: &RemoteRunner, job: RemoteJob, preferred: &str) -> Submitted {
    let candidates = runner.inner.pool.comfy_candidates(preferred);
    if candidates.is_empty() {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "comfyhost_route_unavailable",
            &format!("No remote ComfyUI named {preferred:?} is configured"),
        );
    }
    let mut errors = Vec::new();
    for backend in candidates {
        let Some(socket) = runner.socket(&backend.name).cloned() else {
            continue;
        };
        let mut body = job.request.clone();
        if let Some(map) = body.as_object_mut() {
            map.insert("client_id".into(), json!(socket.client_id()));
            map.insert("prompt_id".into(), json!(job.prompt_id));
            map.remove("number");
            map.remove("front");
        }
        let mut row = runner.new_row(&job, BackendKind::Comfyui, &backend.name);
        // Subscribe first: the backend may start before its answer reaches us.
        let events = socket.subscribe(&job.prompt_id);
        let sent = runner
            .inner
            .http
            .post(format!("{}/prompt", backend.url))
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                runner.inner.pool.note_dispatched(&backend.name);
                row.state = "queued".into();
                let record = RemoteRunner::base_record(&row, "queued");
                runner.save(&row, record);
                tracing::info!(prompt_id = %job.prompt_id, backend = %backend.name, "sent to remote ComfyUI");
                spawn_follower(runner, row, Some(events));
                return Submitted::Accepted;
            }
            Ok(resp) if resp.status() == StatusCode::BAD_REQUEST => {
                socket.unsubscribe(&job.prompt_id);
                // ComfyUI's own validation answer, passed through with its detail.
                let body: Value = resp.json().await.unwrap_or_else(|_| json!({}));
                runner.finish_rejected(&mut row, &body);
                return Submitted::Refused {
                    status: StatusCode::BAD_REQUEST,
                    body,
                };
            }
            Ok(resp) => {
                socket.unsubscribe(&job.prompt_id);
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let e = format!("{}: HTTP {status}: {}", backend.name, truncate(&text, 300));
                runner.inner.pool.note_unreachable(&backend.name, &e);
                errors.push(e);
            }
            Err(e) => {
                socket.unsubscribe(&job.prompt_id);
                let e = format!("{}: {e}", backend.name);
                runner.inner.pool.note_unreachable(&backend.name, &e);
                errors.push(e);
            }
        }
        tracing::warn!(prompt_id = %job.prompt_id, backend = %backend.name, "backend refused the submission; trying the next");
    }
    let message = format!(
        "No remote ComfyUI could take the prompt: {}",
        errors.join("; ")
    );
    let mut row = runner.new_row(&job, BackendKind::Comfyui, preferred);
    runner.finish_failed(
        &mut row,
        &Failure::routing("BackendUnavailable", &message),
        true,
    );
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "comfyhost_route_unavailable",
        &message,
    )
}

/// One health check of the remote ComfyUI `name`: the lengths of its `GET /queue` lists, and
/// its version from `GET /system_stats` (learned, not assumed; absent when it does not say).
pub async fn health(pool: &BackendPool, name: &str) -> Result<QueueLoad, String> {
    let Some(b) = pool.comfy(name) else {
        return Err(format!("no remote ComfyUI named {name:?} is configured"));
    };
    let queue_url = format!("{}/queue", b.url);
    let stats_url = format!("{}/system_stats", b.url);
    let (q, stats) = futures::future::join(
        pool.get_json(&queue_url, None),
        pool.get_json(&stats_url, None),
    )
    .await;
    let q = q?;
    let system = stats.ok().map(|s| s["system"].clone()).unwrap_or_default();
    let text = |k: &str| system[k].as_str().map(str::to_string);
    let len = |k: &str| {
        q.get(k)
            .and_then(Value::as_array)
            .map_or(0, |a| u32::try_from(a.len()).unwrap_or(u32::MAX))
    };
    Ok(QueueLoad {
        pending: len("queue_pending"),
        running: len("queue_running"),
        comfyui_version: text("comfyui_version"),
        required_frontend_version: text("required_frontend_version"),
    })
}

/// Picks up a job found unfinished at start.
pub fn resume(runner: &RemoteRunner, row: RemoteJobRow) {
    let events = runner
        .socket(&row.backend)
        .map(|s| s.subscribe(&row.prompt_id));
    spawn_follower(runner, row, events);
}

/// Interrupts a running job or deletes a pending one on its backend.
pub async fn cancel(runner: &RemoteRunner, row: &RemoteJobRow) {
    let Some(backend) = runner.inner.pool.comfy(&row.backend) else {
        return;
    };
    let http = &runner.inner.http;
    let interrupt = http
        .post(format!("{}/interrupt", backend.url))
        .json(&json!({"prompt_id": row.prompt_id}))
        .send();
    let delete = http
        .post(format!("{}/queue", backend.url))
        .json(&json!({"delete": [row.prompt_id]}))
        .send();
    let (a, b) = futures::future::join(interrupt, delete).await;
    if let (Err(e), _) | (_, Err(e)) = (&a, &b) {
        tracing::warn!(prompt_id = %row.prompt_id, error = %e, "cancel did not reach the backend");
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn spawn_follower(runner: &RemoteRunner, row: RemoteJobRow, events: Option<JobEvents>) {
    let cancel = runner.track(&row.prompt_id, &row.backend, BackendKind::Comfyui);
    runner.emit_status(&row);
    let runner = runner.clone();
    let span =
        tracing::info_span!("remote_job", prompt_id = %row.prompt_id, backend = %row.backend);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let prompt_id = row.prompt_id.clone();
            let backend = row.backend.clone();
            Follower::new(&runner, row).run(events, cancel).await;
            if let Some(s) = runner.socket(&backend) {
                s.unsubscribe(&prompt_id);
            }
        },
        span,
    ));
}

struct Follower<'a> {
    runner: &'a RemoteRunner,
    row: RemoteJobRow,
    url: String,
    /// Nodes whose `executed` the browser has seen.
    relayed: HashSet<String>,
    error_relayed: bool,
    /// First time the prompt was in neither the backend's queue nor its history.
    missing_since: Option<Instant>,
    last_reachable: Instant,
    done: bool,
}

impl<'a> Follower<'a> {
    fn new(runner: &'a RemoteRunner, row: RemoteJobRow) -> Self {
        let url = runner
            .inner
            .pool
            .comfy(&row.backend)
            .map(|b| b.url.clone())
            .unwrap_or_default();
        Self {
            runner,
            row,
            url,
            relayed: HashSet::new(),
            error_relayed: false,
            missing_since: Some(Instant::now()),
            last_reachable: Instant::now(),
            done: false,
        }
    }

    async fn run(
        mut self,
        mut events: Option<JobEvents>,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        if self.url.is_empty() {
            let f = Failure::routing(
                "BackendRemoved",
                format!("backend {:?} is no longer configured", self.row.backend),
            );
            self.runner.finish_failed(&mut self.row, &f, false);
            return;
        }
        let timings = self.runner.inner.pool.config().timings.clone();
        let mut tick = tokio::time::interval(timings.poll_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.done {
            tokio::select! {
                _ = cancel.cancelled() => return,
                msg = async {
                    match events.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match msg {
                    Some(m) => self.on_message(m).await,
                    None => events = None,
                },
                _ = tick.tick() => self.poll(&timings).await,
            }
        }
    }

    async fn on_message(&mut self, event: JobEvent) {
        self.missing_since = None;
        let msg = match event {
            JobEvent::Binary(frame) => {
                self.runner.emit_binary(&self.row, frame);
                return;
            }
            JobEvent::Message(m) => *m,
        };
        match &msg {
            WsMessage::ExecutionStart(_) => {
                self.runner.set_running(&mut self.row);
                self.runner.emit(&self.row, &msg);
            }
            WsMessage::Executed(e) => {
                let output = Value::Object(e.output.clone());
                if let Err(err) = self.fetch_files(&outputs::node_files(&output)).await {
                    tracing::warn!(error = %err, "output not fetched yet; history will retry");
                    return;
                }
                let mut relayed = e.clone();
                if let Value::Object(o) = outputs::rewrite_node_output(&self.row.prompt_id, &output)
                {
                    relayed.output = o;
                }
                self.runner.emit(&self.row, &WsMessage::Executed(relayed));
                self.relayed.insert(e.node.clone());
            }
            WsMessage::ExecutionError(e) => {
                self.runner.emit(&self.row, &msg);
                self.error_relayed = true;
                let f = Failure::from_error(e);
                self.runner.finish_failed(&mut self.row, &f, true);
                self.done = true;
            }
            WsMessage::ExecutionInterrupted(_) => {
                self.runner.emit(&self.row, &msg);
                self.runner.finish_interrupted(&mut self.row, true);
                self.done = true;
            }
            WsMessage::ExecutionSuccess(_) => self.settle_from_history().await,
            // Our own end marker follows the outcome; the backend's would come too early.
            WsMessage::Executing(e) if e.node.is_none() => {}
            WsMessage::Executing(_) | WsMessage::Progress(_) | WsMessage::ExecutionCached(_) => {
                self.runner.set_running(&mut self.row);
                self.runner.emit(&self.row, &msg);
            }
            _ => self.runner.emit(&self.row, &msg),
        }
    }

    async fn fetch_files(&self, files: &[FileRef]) -> Result<Vec<OutputRef>, String> {
        let mut out = Vec::new();
        for f in files {
            let url = format!(
                "{}/view?filename={}&subfolder={}&type={}",
                self.url,
                enc(&f.filename),
                enc(&f.subfolder),
                enc(&f.folder_type)
            );
            let path = self
                .runner
                .fetch_output(&self.row.prompt_id, f, &url, None)
                .await?;
            let b = OutputCache::browser_ref(&self.row.prompt_id, f);
            out.push(OutputRef {
                node_id: String::new(),
                filename: b.filename,
                subfolder: b.subfolder,
                folder_type: b.folder_type,
                local_path: Some(path),
            });
        }
        Ok(out)
    }

    async fn history(&self) -> Result<Option<Value>, String> {
        let resp = self
            .runner
            .inner
            .http
            .get(format!("{}/history/{}", self.url, self.row.prompt_id))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        Ok(body.get(&self.row.prompt_id).cloned())
    }

    async fn in_queue(&self) -> Result<bool, String> {
        let q: Value = self
            .runner
            .inner
            .http
            .get(format!("{}/queue", self.url))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let listed = |k: &str| {
            q[k].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i.get(1).and_then(Value::as_str) == Some(&self.row.prompt_id))
            })
        };
        Ok(listed("queue_running") || listed("queue_pending"))
    }

    async fn poll(&mut self, timings: &crate::backends::Timings) {
        match self.history().await {
            Ok(Some(entry)) => {
                self.last_reachable = Instant::now();
                self.settle(entry).await;
                return;
            }
            Ok(None) => self.last_reachable = Instant::now(),
            Err(e) => {
                if self.last_reachable.elapsed().as_millis() as u64 > timings.unreachable_after_ms {
                    let f = Failure::routing(
                        "BackendUnreachable",
                        format!(
                            "Lost contact with backend {:?} for {} s while it ran this prompt: {e}",
                            self.row.backend,
                            timings.unreachable_after_ms / 1000
                        ),
                    );
                    self.runner.finish_failed(&mut self.row, &f, false);
                    self.done = true;
                }
                return;
            }
        }
        match self.in_queue().await {
            Ok(true) => self.missing_since = None,
            Ok(false) => {
                // In neither queue nor history. Right after a run ends this is the moment the
                // history is written, so only a lasting absence means the prompt is lost.
                let since = *self.missing_since.get_or_insert_with(Instant::now);
                if since.elapsed().as_millis() as u64 > timings.lost_after_ms {
                    let f = Failure::routing(
                        "PromptLost",
                        format!(
                            "Backend {:?} has this prompt in neither its queue nor its history \
                             ({} s after it was accepted or last seen): it restarted, or a proxy \
                             in front of it dropped the prompt. Queue it again.",
                            self.row.backend,
                            timings.lost_after_ms / 1000
                        ),
                    );
                    self.runner.finish_failed(&mut self.row, &f, false);
                    self.done = true;
                }
            }
            Err(_) => {}
        }
    }

    async fn settle_from_history(&mut self) {
        // Not written yet (or unreachable): the next poll settles it.
        if let Ok(Some(entry)) = self.history().await {
            self.settle(entry).await;
        }
    }

    /// Ends the job from the backend's history entry.
    async fn settle(&mut self, entry: Value) {
        let status = &entry["status"];
        let messages_json = status["messages"].clone();
        if status["status_str"] != "success" {
            let list = messages_json.as_array().cloned().unwrap_or_default();
            let find = |name: &str| {
                list.iter()
                    .find(|m| m.get(0).and_then(Value::as_str) == Some(name))
                    .map(|m| m[1].clone())
            };
            if find("execution_interrupted").is_some() {
                self.runner
                    .finish_interrupted(&mut self.row, self.error_relayed);
            } else {
                let f = find("execution_error")
                    .map(|d| Failure::from_execution_error(&d))
                    .unwrap_or_else(|| {
                        Failure::routing(
                            "RemoteFailed",
                            "The backend reported an error without detail",
                        )
                    });
                self.runner
                    .finish_failed(&mut self.row, &f, self.error_relayed);
            }
            self.done = true;
            return;
        }
        let outputs = entry["outputs"].as_object().cloned().unwrap_or_default();
        let mut files = Vec::new();
        let mut rewritten = Map::new();
        for (node, output) in &outputs {
            match self.fetch_files(&outputs::node_files(output)).await {
                Ok(mut f) => {
                    for r in &mut f {
                        r.node_id = node.clone();
                    }
                    files.extend(f);
                }
                Err(e) => {
                    let f = Failure::routing(
                        "OutputFetchFailed",
                        format!(
                            "The job finished on {:?} but its outputs could not be fetched: {e}",
                            self.row.backend
                        ),
                    );
                    self.runner.finish_failed(&mut self.row, &f, false);
                    self.done = true;
                    return;
                }
            }
            let out = outputs::rewrite_node_output(&self.row.prompt_id, output);
            if !self.relayed.contains(node) {
                self.runner.emit(
                    &self.row,
                    &messages::executed(&self.row.prompt_id, node, &out),
                );
            }
            rewritten.insert(node.clone(), out);
        }
        if files.is_empty() {
            let f = Failure::routing(
                "NoOutputs",
                format!(
                    "Backend {:?} reported success but produced no output files; nothing would \
                     reach you, so this counts as a failure.",
                    self.row.backend
                ),
            );
            self.runner.finish_failed(&mut self.row, &f, false);
        } else {
            self.runner
                .finish_succeeded(&mut self.row, rewritten, files, messages_json);
        }
        self.done = true;
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
