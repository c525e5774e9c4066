//! Jobs on a RunPod-compatible serverless endpoint running worker-comfyui:
//! `POST /run {"input": {"workflow", "images": [{name, image}]}}` → `{id, status}`,
//! `GET /status/{id}` → `IN_QUEUE | IN_PROGRESS | COMPLETED | FAILED | CANCELLED | TIMED_OUT`
//! with `output: {"images": [{"filename", "type": "base64" | "s3_url", "data"}], "errors"?}`,
//! `POST /cancel/{id}`.
//!
//! A serverless endpoint reports no per-node progress, so the browser gets only what is real:
//! a `comfyhost.job_status` notice while it waits for a worker (cold start), `execution_start`
//! when a worker has it, then the outputs and the outcome.

use std::time::{Duration, Instant};

use base64::Engine;
use comfyhost_store::{BackendKind, RemoteJobRow};
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::backend::QueueLoad;
use super::messages::{self, Failure};
use super::outputs::{FileRef, OutputCache};
use super::{RemoteJob, RemoteRunner, Submitted, refusal};
use crate::backends::pool::api_key;
use crate::backends::{BackendPool, ServerlessBackend};
use crate::jobs::OutputRef;

/// How often a waiting browser hears that the job is still queued.
const QUEUED_NOTICE_EVERY: Duration = Duration::from_secs(5);

/// One health check of the serverless endpoint `name` (RunPod `GET /health`:
/// `{"jobs": {"inQueue", "inProgress", ...}, "workers": {...}}`).
pub async fn health(pool: &BackendPool, name: &str) -> Result<QueueLoad, String> {
    let Some(b) = pool.serverless(name) else {
        return Err(format!(
            "no serverless endpoint named {name:?} is configured"
        ));
    };
    let key = api_key(b);
    let h = pool
        .get_json(&format!("{}/health", b.url), key.as_deref())
        .await?;
    let n = |k: &str| {
        h["jobs"][k]
            .as_u64()
            .map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX))
    };
    Ok(QueueLoad {
        pending: n("inQueue"),
        running: n("inProgress"),
        ..QueueLoad::default()
    })
}

pub async fn submit(runner: &RemoteRunner, job: RemoteJob, name: &str) -> Submitted {
    let Some(endpoint) = runner.inner.pool.serverless(name).cloned() else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "comfyhost_route_unavailable",
            &format!("No serverless endpoint named {name:?} is configured"),
        );
    };
    let images = match input_images(runner, &job.request["prompt"]).await {
        Ok(i) => i,
        Err(message) => {
            return refusal(StatusCode::BAD_REQUEST, "comfyhost_missing_input", &message);
        }
    };
    let mut row = runner.new_row(&job, BackendKind::Serverless, name);
    let body = json!({"input": {"workflow": job.request["prompt"], "images": images}});
    let mut req = runner
        .inner
        .http
        .post(format!("{}/run", endpoint.url))
        .json(&body);
    if let Some(key) = api_key(&endpoint) {
        req = req.bearer_auth(key);
    }
    let failed = |runner: &RemoteRunner, row: &mut RemoteJobRow, kind: &str, message: String| {
        runner.finish_failed(row, &Failure::routing(kind, &message), true);
        refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "comfyhost_route_unavailable",
            &message,
        )
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            runner.inner.pool.note_unreachable(name, &e.to_string());
            return failed(
                runner,
                &mut row,
                "BackendUnavailable",
                format!("Serverless endpoint {name:?} cannot be reached: {e}"),
            );
        }
    };
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return failed(
            runner,
            &mut row,
            "ServerlessAuth",
            format!("Serverless endpoint {name:?} refused the API key ({status})"),
        );
    }
    let Some(remote_id) = answer["id"].as_str().filter(|_| status.is_success()) else {
        return failed(
            runner,
            &mut row,
            "ServerlessRefused",
            format!("Serverless endpoint {name:?} answered {status}: {answer}"),
        );
    };
    row.remote_id = Some(remote_id.to_string());
    row.state = "queued".into();
    let record = RemoteRunner::base_record(&row, "queued");
    runner.save(&row, record);
    tracing::info!(prompt_id = %row.prompt_id, endpoint = name, remote_id, "sent to serverless endpoint");
    spawn_follower(runner, row, endpoint);
    Submitted::Accepted
}

pub fn resume(runner: &RemoteRunner, mut row: RemoteJobRow) {
    let Some(endpoint) = runner.inner.pool.serverless(&row.backend).cloned() else {
        let f = Failure::routing(
            "BackendRemoved",
            format!("endpoint {:?} is no longer configured", row.backend),
        );
        runner.finish_failed(&mut row, &f, false);
        return;
    };
    if row.remote_id.is_none() {
        let f = Failure::routing(
            "HostRestarted",
            "The host restarted before the serverless endpoint confirmed this job; queue it again",
        );
        runner.finish_failed(&mut row, &f, false);
        return;
    }
    spawn_follower(runner, row, endpoint);
}

pub async fn cancel(runner: &RemoteRunner, row: &RemoteJobRow) {
    let (Some(endpoint), Some(id)) = (runner.inner.pool.serverless(&row.backend), &row.remote_id)
    else {
        return;
    };
    let mut req = runner
        .inner
        .http
        .post(format!("{}/cancel/{id}", endpoint.url));
    if let Some(key) = api_key(endpoint) {
        req = req.bearer_auth(key);
    }
    if let Err(e) = req.send().await {
        tracing::warn!(prompt_id = %row.prompt_id, error = %e, "cancel did not reach the endpoint");
    }
}

/// Images the workflow loads (`LoadImage`-style `image` inputs) from the local input dir.
async fn input_images(runner: &RemoteRunner, prompt: &Value) -> Result<Vec<Value>, String> {
    let mut images = Vec::new();
    let Some(nodes) = prompt.as_object() else {
        return Ok(images);
    };
    for (id, node) in nodes {
        let class = node["class_type"].as_str().unwrap_or_default();
        if !class.starts_with("LoadImage") {
            continue;
        }
        let Some(name) = node["inputs"]["image"].as_str() else {
            continue;
        };
        // ComfyUI annotates names like "x.png [output]"; only plain input files travel.
        let name = name.trim_end_matches(" [input]");
        let Some(dir) = &runner.inner.input_dir else {
            return Err(format!(
                "node {id} loads {name:?}, but this host has no input directory to send it from"
            ));
        };
        if name.contains("..") || name.starts_with('/') {
            return Err(format!("node {id}: unsafe image name {name:?}"));
        }
        let bytes = tokio::fs::read(dir.join(name))
            .await
            .map_err(|e| format!("node {id} loads {name:?}, which cannot be read: {e}"))?;
        images.push(json!({
            "name": name,
            "image": base64::engine::general_purpose::STANDARD.encode(bytes),
        }));
    }
    Ok(images)
}

fn spawn_follower(runner: &RemoteRunner, row: RemoteJobRow, endpoint: ServerlessBackend) {
    let cancel = runner.track(&row.prompt_id, &row.backend, BackendKind::Serverless);
    runner.emit_status(&row);
    let runner = runner.clone();
    let span =
        tracing::info_span!("remote_job", prompt_id = %row.prompt_id, backend = %row.backend);
    tokio::spawn(tracing::Instrument::instrument(
        async move { follow(runner, row, endpoint, cancel).await },
        span,
    ));
}

async fn follow(
    runner: RemoteRunner,
    mut row: RemoteJobRow,
    endpoint: ServerlessBackend,
    cancel: tokio_util::sync::CancellationToken,
) {
    let timings = runner.inner.pool.config().timings.clone();
    let key = api_key(&endpoint);
    let Some(remote_id) = row.remote_id.clone() else {
        return;
    };
    let since = Instant::now();
    let mut running_since: Option<Instant> = None;
    let mut last_notice: Option<Instant> = None;
    let mut last_reachable = Instant::now();
    let mut tick = tokio::time::interval(timings.poll_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut req = runner
            .inner
            .http
            .get(format!("{}/status/{remote_id}", endpoint.url));
        if let Some(k) = &key {
            req = req.bearer_auth(k);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                if last_reachable.elapsed().as_millis() as u64 > timings.unreachable_after_ms {
                    let f = Failure::routing(
                        "BackendUnreachable",
                        format!(
                            "Lost contact with serverless endpoint {:?}: {e}",
                            row.backend
                        ),
                    );
                    runner.finish_failed(&mut row, &f, false);
                    return;
                }
                continue;
            }
        };
        last_reachable = Instant::now();
        if resp.status() == StatusCode::NOT_FOUND {
            let f = Failure::routing(
                "PromptLost",
                format!(
                    "Serverless endpoint {:?} no longer knows job {remote_id} (expired or never queued). Queue it again.",
                    row.backend
                ),
            );
            runner.finish_failed(&mut row, &f, false);
            return;
        }
        let status: Value = match resp.json().await {
            Ok(v) => v,
            Err(_) => continue,
        };
        match status["status"].as_str().unwrap_or_default() {
            "IN_QUEUE" => {
                let waited = since.elapsed();
                if waited.as_secs() >= endpoint.cold_start_timeout_s {
                    cancel_quietly(&runner, &row).await;
                    let f = Failure::routing(
                        "ColdStartTimeout",
                        format!(
                            "No serverless worker picked this job up within {} s; it was cancelled. Try again, or use another route.",
                            endpoint.cold_start_timeout_s
                        ),
                    );
                    runner.finish_failed(&mut row, &f, false);
                    return;
                }
                if last_notice.is_none_or(|t| t.elapsed() >= QUEUED_NOTICE_EVERY) {
                    last_notice = Some(Instant::now());
                    runner.notice(&row, "comfyhost.job_status", json!({
                        "prompt_id": row.prompt_id, "state": "queued", "backend": row.backend,
                        "waited_ms": waited.as_millis() as u64,
                        "detail": "waiting for a serverless worker (a cold start can take minutes)",
                    }));
                }
            }
            "IN_PROGRESS" => {
                if running_since.is_none() {
                    running_since = Some(Instant::now());
                    if row.state != "running" {
                        runner.set_running(&mut row);
                        runner.emit(&row, &messages::execution_start(&row.prompt_id));
                    }
                }
                if running_since
                    .is_some_and(|t| t.elapsed().as_secs() >= endpoint.execution_timeout_s)
                {
                    cancel_quietly(&runner, &row).await;
                    let f = Failure::routing(
                        "ExecutionTimeout",
                        format!(
                            "The serverless job ran longer than {} s and was cancelled",
                            endpoint.execution_timeout_s
                        ),
                    );
                    runner.finish_failed(&mut row, &f, false);
                    return;
                }
            }
            "COMPLETED" => {
                if row.state != "running" {
                    runner.set_running(&mut row);
                    runner.emit(&row, &messages::execution_start(&row.prompt_id));
                }
                complete(&runner, &mut row, &status["output"]).await;
                return;
            }
            "FAILED" | "TIMED_OUT" => {
                let f = failure_from_error(&status);
                runner.finish_failed(&mut row, &f, false);
                return;
            }
            "CANCELLED" => {
                runner.finish_interrupted(&mut row, false);
                return;
            }
            other => tracing::debug!(status = other, "unknown serverless status"),
        }
    }
}

async fn cancel_quietly(runner: &RemoteRunner, row: &RemoteJobRow) {
    cancel(runner, row).await;
}

/// worker-comfyui reports failures as text like
/// `Workflow execution error: Node Type: KSampler, Node ID: 3, Message: ...`.
fn failure_from_error(status: &Value) -> Failure {
    let error = match &status["error"] {
        Value::String(s) => s.clone(),
        Value::Null => status["output"]["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "serverless job {}",
                    status["status"].as_str().unwrap_or("failed")
                )
            }),
        other => other.to_string(),
    };
    let field = |label: &str| {
        error.split(label).nth(1).map(|rest| {
            rest.split([',', '\n'])
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
    };
    Failure {
        node_id: field("Node ID:"),
        node_type: field("Node Type:"),
        exception_type: if status["status"] == "TIMED_OUT" {
            "comfyhost.ServerlessTimedOut".into()
        } else {
            "comfyhost.ServerlessFailed".into()
        },
        exception_message: error,
        traceback: Vec::new(),
    }
}

/// Output node the images belong to: the first save/preview node of the workflow.
fn output_node(prompt: &Value) -> String {
    prompt
        .as_object()
        .and_then(|nodes| {
            let mut ids: Vec<&String> = nodes
                .iter()
                .filter(|(_, n)| {
                    let c = n["class_type"].as_str().unwrap_or_default();
                    c.starts_with("Save") || c.starts_with("Preview")
                })
                .map(|(id, _)| id)
                .collect();
            ids.sort();
            ids.first().map(|s| s.to_string())
        })
        .unwrap_or_else(|| "output".into())
}

async fn complete(runner: &RemoteRunner, row: &mut RemoteJobRow, output: &Value) {
    let images = output["images"].as_array().cloned().unwrap_or_default();
    let request: Value = serde_json::from_str(&row.request_json).unwrap_or(Value::Null);
    let node = output_node(&request["prompt"]);
    let mut refs = Vec::new();
    let mut files = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let filename = img["filename"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("serverless_{i:05}.png"));
        let file = FileRef {
            filename,
            subfolder: String::new(),
            folder_type: "output".into(),
        };
        let data = img["data"].as_str().unwrap_or_default();
        let stored = match img["type"].as_str() {
            Some("base64") => match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
                Ok(bytes) => runner
                    .inner
                    .cache
                    .store(&row.prompt_id, &file, &bytes)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("{}: bad base64: {e}", file.filename)),
            },
            Some("s3_url") => runner.fetch_output(&row.prompt_id, &file, data, None).await,
            other => Err(format!("{}: unknown image type {other:?}", file.filename)),
        };
        match stored {
            Ok(path) => {
                let b = OutputCache::browser_ref(&row.prompt_id, &file);
                refs.push(json!({"filename": b.filename, "subfolder": b.subfolder, "type": b.folder_type}));
                files.push(OutputRef {
                    node_id: node.clone(),
                    filename: b.filename,
                    subfolder: b.subfolder,
                    folder_type: b.folder_type,
                    local_path: Some(path),
                });
            }
            Err(e) => {
                let f = Failure::routing(
                    "OutputFetchFailed",
                    format!("The serverless job finished but an output could not be stored: {e}"),
                );
                runner.finish_failed(row, &f, false);
                return;
            }
        }
    }
    if files.is_empty() {
        let errors = output["errors"].to_string();
        let f = Failure::routing(
            "NoOutputs",
            format!(
                "Serverless endpoint {:?} reported success but returned no images (errors: {errors}); nothing would reach you, so this counts as a failure.",
                row.backend
            ),
        );
        runner.finish_failed(row, &f, false);
        return;
    }
    let node_output = json!({"images": refs});
    runner.emit(
        row,
        &messages::executed(&row.prompt_id, &node, &node_output),
    );
    let mut outputs = Map::new();
    outputs.insert(node, node_output);
    runner.finish_succeeded(row, outputs, files, json!([]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_error_text_names_the_node() {
        let f = failure_from_error(&json!({
            "status": "FAILED",
            "error": "Workflow execution error: Node Type: KSampler, Node ID: 3, Message: out of memory"
        }));
        assert_eq!(f.node_id.as_deref(), Some("3"));
        assert_eq!(f.node_type.as_deref(), Some("KSampler"));
        assert!(f.exception_message.contains("out of memory"));
        let t = failure_from_error(&json!({"status": "TIMED_OUT"}));
        assert_eq!(t.exception_type, "comfyhost.ServerlessTimedOut");
    }

    #[test]
    fn output_node_is_the_first_save_node() {
        let p = json!({"9": {"class_type": "SaveImage"}, "3": {"class_type": "KSampler"}, "12": {"class_type": "PreviewImage"}});
        assert_eq!(output_node(&p), "12");
        assert_eq!(output_node(&json!({})), "output");
    }
}
