//! The jobs API of ComfyUI 0.33.0 (`comfy_execution/jobs.py` + `server.py`): `GET /api/jobs`,
//! `GET /api/jobs/{id}`, `POST /api/jobs/{id}/cancel`, `POST /api/jobs/cancel`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::routes::json_response;
use crate::routes::prompt::validate_job_id;
use crate::state::{QueueItem, Sim};

/// `JobStatus.ALL`.
const ALL_STATUSES: &[&str] = &["pending", "in_progress", "completed", "failed", "cancelled"];
const PREVIEWABLE: &[&str] = &["images", "video", "audio", "3d", "text"];
const THREE_D: &[&str] = &[".obj", ".fbx", ".gltf", ".glb", ".usdz"];
const TEXT_EXT: &[&str] = &[".txt", ".md", ".json"];

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

/// `prune_dict`: drops `None` values.
fn prune(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn job_metadata(extra: &Map<String, Value>) -> (Value, Value) {
    let create_time = extra.get("create_time").cloned().unwrap_or(Value::Null);
    let workflow_id = extra
        .get("extra_pnginfo")
        .and_then(|p| p.get("workflow"))
        .and_then(|w| w.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    (create_time, workflow_id)
}

/// `normalize_queue_item`.
fn queue_job(item: &QueueItem, status: &str) -> Value {
    let (create_time, workflow_id) = job_metadata(&item.extra_data);
    Value::Object(prune(vec![
        ("id", json!(item.prompt_id)),
        ("status", json!(status)),
        ("priority", item.number.clone()),
        ("create_time", create_time),
        ("outputs_count", json!(0)),
        ("previewable_outputs_count", json!(0)),
        ("workflow_id", workflow_id),
    ]))
}

fn ends_with_any(name: &str, exts: &[&str]) -> bool {
    let lower = name.to_lowercase();
    exts.iter().any(|e| lower.ends_with(e))
}

fn is_previewable(media_type: &str, item: &Map<String, Value>) -> bool {
    if PREVIEWABLE.contains(&media_type) {
        return true;
    }
    let fmt = item.get("format").and_then(Value::as_str).unwrap_or("");
    if fmt.starts_with("video/") || fmt.starts_with("audio/") {
        return true;
    }
    let filename = item.get("filename").and_then(Value::as_str).unwrap_or("");
    ends_with_any(filename, THREE_D) || ends_with_any(filename, TEXT_EXT)
}

/// `normalize_output_item` for non-dict items: 3D file names become file dicts.
fn normalize_item(item: &Value) -> Option<Map<String, Value>> {
    match item {
        Value::Object(m) => Some(m.clone()),
        Value::String(s) if ends_with_any(s, THREE_D) => Some(prune(vec![
            ("filename", json!(s)),
            ("type", json!("output")),
            ("subfolder", json!("")),
            ("mediaType", json!("3d")),
        ])),
        _ => None,
    }
}

/// `get_outputs_summary` + `count_previewable_outputs`: `(count, preview, previewable)`.
fn outputs_summary(outputs: &Value) -> (u64, Value, u64) {
    let mut count = 0;
    let mut previewable = 0;
    let (mut preview, mut fallback, mut text_file, mut text) = (None, None, None, None);
    let Some(nodes) = outputs.as_object() else {
        return (0, Value::Null, 0);
    };
    for (node_id, node_outputs) in nodes {
        let Some(node_outputs) = node_outputs.as_object() else {
            continue;
        };
        for (media_type, items) in node_outputs {
            let Some(items) = items.as_array().filter(|_| media_type != "animated") else {
                continue;
            };
            for raw in items {
                let Some(item) = normalize_item(raw) else {
                    if media_type == "text" && preview.is_none() && text.is_none() && !raw.is_null()
                    {
                        let value = raw.as_str().map_or_else(|| raw.to_string(), String::from);
                        let mut t = Map::new();
                        let truncated = value.chars().count() > 1024;
                        t.insert(
                            "content".into(),
                            json!(value.chars().take(1024).collect::<String>()),
                        );
                        if truncated {
                            t.insert("truncated".into(), json!(true));
                        }
                        t.insert("nodeId".into(), json!(node_id));
                        t.insert("mediaType".into(), json!(media_type));
                        text = Some(Value::Object(t));
                    }
                    continue;
                };
                count += 1;
                let can_preview = is_previewable(media_type, &item);
                if can_preview {
                    previewable += 1;
                }
                if preview.is_some() || !can_preview {
                    continue;
                }
                let mut enriched = item.clone();
                enriched.insert("nodeId".into(), json!(node_id));
                if !item.contains_key("mediaType") {
                    enriched.insert("mediaType".into(), json!(media_type));
                }
                let filename = item.get("filename").and_then(Value::as_str).unwrap_or("");
                if media_type == "text" || ends_with_any(filename, TEXT_EXT) {
                    text_file.get_or_insert(Value::Object(enriched));
                } else if item.get("type").and_then(Value::as_str) == Some("output") {
                    preview = Some(Value::Object(enriched));
                } else {
                    fallback.get_or_insert(Value::Object(enriched));
                }
            }
        }
    }
    let preview = preview
        .or(fallback)
        .or(text_file)
        .or(text)
        .unwrap_or(Value::Null);
    (count, preview, previewable)
}

/// `normalize_history_item`.
fn history_job(prompt_id: &str, entry: &Value, include_outputs: bool) -> Value {
    let prompt_tuple = entry.get("prompt").and_then(Value::as_array);
    let at = |i: usize| {
        prompt_tuple
            .and_then(|t| t.get(i))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let extra = at(3).as_object().cloned().unwrap_or_default();
    let (create_time, workflow_id) = job_metadata(&extra);
    let status_info = entry.get("status").cloned().unwrap_or(Value::Null);
    let status_str = status_info.get("status_str").and_then(Value::as_str);
    let (mut start, mut end, mut error, mut interrupted) =
        (Value::Null, Value::Null, Value::Null, false);
    for m in status_info
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(name), Some(data)) = (m.get(0).and_then(Value::as_str), m.get(1)) else {
            continue;
        };
        if !data.is_object() {
            continue;
        }
        let ts = data.get("timestamp").cloned().unwrap_or(Value::Null);
        match name {
            "execution_start" => start = ts,
            "execution_success" => end = ts,
            "execution_error" => {
                end = ts;
                error = data.clone();
            }
            "execution_interrupted" => {
                end = ts;
                interrupted = true;
            }
            _ => {}
        }
    }
    let status = match status_str {
        Some("error") if interrupted => "cancelled",
        Some("error") => "failed",
        _ => "completed",
    };
    let outputs = entry.get("outputs").cloned().unwrap_or_else(|| json!({}));
    let (count, preview, previewable) = outputs_summary(&outputs);
    let mut job = prune(vec![
        ("id", json!(prompt_id)),
        ("status", json!(status)),
        ("priority", at(0)),
        ("create_time", create_time),
        ("execution_start_time", start),
        ("execution_end_time", end),
        ("execution_error", error),
        ("outputs_count", json!(count)),
        ("previewable_outputs_count", json!(previewable)),
        ("preview_output", preview),
        ("workflow_id", workflow_id),
    ]);
    if include_outputs {
        job.insert("outputs".into(), normalize_outputs(&outputs));
        job.insert("execution_status".into(), status_info);
        job.insert(
            "workflow".into(),
            json!({"prompt": at(2), "extra_data": Value::Object(extra)}),
        );
    }
    Value::Object(job)
}

/// `normalize_outputs`: 3D file names become dicts, `None` items are dropped.
fn normalize_outputs(outputs: &Value) -> Value {
    let Some(nodes) = outputs.as_object() else {
        return outputs.clone();
    };
    let mut out = Map::new();
    for (node_id, node_outputs) in nodes {
        let Some(node_map) = node_outputs.as_object() else {
            out.insert(node_id.clone(), node_outputs.clone());
            continue;
        };
        let mut node = Map::new();
        for (media_type, items) in node_map {
            match items.as_array().filter(|_| media_type != "animated") {
                Some(items) => {
                    let items: Vec<Value> = items
                        .iter()
                        .filter(|i| !i.is_null())
                        .map(|i| normalize_item(i).map_or_else(|| i.clone(), Value::Object))
                        .collect();
                    node.insert(media_type.clone(), Value::Array(items));
                }
                None => {
                    node.insert(media_type.clone(), items.clone());
                }
            }
        }
        out.insert(node_id.clone(), Value::Object(node));
    }
    Value::Object(out)
}

fn number(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64).unwrap_or(0.0)
}

/// `GET /api/jobs?status=&workflow_id=&sort_by=&sort_order=&limit=&offset=`.
pub async fn list(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let status_filter: Vec<String> = match q.get("status").filter(|s| !s.is_empty()) {
        Some(s) => {
            let wanted: Vec<String> = s
                .split(',')
                .map(|p| p.trim().to_lowercase())
                .filter(|p| !p.is_empty())
                .collect();
            let invalid: Vec<&str> = wanted
                .iter()
                .map(String::as_str)
                .filter(|s| !ALL_STATUSES.contains(s))
                .collect();
            if !invalid.is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "Invalid status value(s): {}. Valid values: {}",
                        invalid.join(", "),
                        ALL_STATUSES.join(", ")
                    ),
                );
            }
            wanted
        }
        None => ALL_STATUSES.iter().map(|s| s.to_string()).collect(),
    };
    let wants = |s: &str| status_filter.iter().any(|w| w == s);
    let sort_by = q
        .get("sort_by")
        .map_or("created_at".into(), |s| s.to_lowercase());
    let sort_order = q
        .get("sort_order")
        .map_or("desc".into(), |s| s.to_lowercase());
    if sort_by != "created_at" && sort_by != "execution_duration" {
        return error(
            StatusCode::BAD_REQUEST,
            "sort_by must be 'created_at' or 'execution_duration'",
        );
    }
    if sort_order != "asc" && sort_order != "desc" {
        return error(
            StatusCode::BAD_REQUEST,
            "sort_order must be 'asc' or 'desc'",
        );
    }
    let limit = match q.get("limit").map(|l| l.trim().parse::<i64>()) {
        None => None,
        Some(Ok(l)) if l > 0 => Some(usize::try_from(l).unwrap_or(usize::MAX)),
        Some(Ok(_)) => return error(StatusCode::BAD_REQUEST, "limit must be a positive integer"),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "limit must be an integer"),
    };
    let offset = match q.get("offset").map(|o| o.trim().parse::<i64>()) {
        None => 0,
        Some(Ok(o)) => usize::try_from(o).unwrap_or(0),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "offset must be an integer"),
    };
    let (running, pending) = sim.queue_snapshot();
    let history = sim.history_snapshot();
    let mut jobs = Vec::new();
    if wants("in_progress") {
        jobs.extend(running.iter().map(|i| queue_job(i, "in_progress")));
    }
    if wants("pending") {
        jobs.extend(pending.iter().map(|i| queue_job(i, "pending")));
    }
    for (id, entry) in &history {
        let job = history_job(id, entry, false);
        if job.get("status").and_then(Value::as_str).is_some_and(wants) {
            jobs.push(job);
        }
    }
    if let Some(wf) = q.get("workflow_id").filter(|w| !w.is_empty()) {
        jobs.retain(|j| j.get("workflow_id").and_then(Value::as_str) == Some(wf.as_str()));
    }
    let key = |j: &Value| -> f64 {
        if sort_by == "execution_duration" {
            let (s, e) = (
                number(j.get("execution_start_time")),
                number(j.get("execution_end_time")),
            );
            if s != 0.0 && e != 0.0 { e - s } else { 0.0 }
        } else {
            number(j.get("create_time"))
        }
    };
    // Python's `sorted` is stable, also with `reverse=True`.
    jobs.sort_by(|a, b| {
        let ord = key(a)
            .partial_cmp(&key(b))
            .unwrap_or(std::cmp::Ordering::Equal);
        if sort_order == "desc" {
            ord.reverse()
        } else {
            ord
        }
    });
    let total = jobs.len();
    let page: Vec<Value> = jobs
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    let has_more = offset + page.len() < total;
    json_response(
        StatusCode::OK,
        &json!({
            "jobs": page,
            "pagination": {"offset": offset, "limit": limit, "total": total, "has_more": has_more},
        }),
    )
}

/// `GET /api/jobs/{job_id}`.
pub async fn get_one(State(sim): State<Arc<Sim>>, Path(job_id): Path<String>) -> Response {
    let (running, pending) = sim.queue_snapshot();
    if let Some(entry) = sim.history_snapshot().get(&job_id) {
        return json_response(StatusCode::OK, &history_job(&job_id, entry, true));
    }
    let found = running
        .iter()
        .find(|i| i.prompt_id == job_id)
        .map(|i| queue_job(i, "in_progress"))
        .or_else(|| {
            pending
                .iter()
                .find(|i| i.prompt_id == job_id)
                .map(|i| queue_job(i, "pending"))
        });
    match found {
        Some(job) => json_response(StatusCode::OK, &job),
        None => error(StatusCode::NOT_FOUND, "Job not found"),
    }
}

/// `_cancel_job_by_id`: interrupt when running, dequeue when pending; `true` when it acted.
fn cancel_by_id(sim: &Sim, job_id: &str) -> bool {
    let (running, pending) = sim.queue_snapshot();
    if running.iter().any(|i| i.prompt_id == job_id) {
        tracing::info!(prompt_id = job_id, "Cancelling running prompt {job_id}");
        return sim.interrupt_if_running(job_id);
    }
    if pending.iter().any(|i| i.prompt_id == job_id) {
        tracing::info!(prompt_id = job_id, "Cancelling pending prompt {job_id}");
        return sim.delete_queue_item(job_id) || sim.interrupt_if_running(job_id);
    }
    false
}

/// `POST /api/jobs/{job_id}/cancel`: always 200 `{"cancelled": bool}`.
pub async fn cancel_one(State(sim): State<Arc<Sim>>, Path(job_id): Path<String>) -> Response {
    let cancelled = cancel_by_id(&sim, &job_id);
    json_response(StatusCode::OK, &json!({ "cancelled": cancelled }))
}

/// `POST /api/jobs/cancel {"job_ids": [...]}`: every id must be a canonical UUID.
pub async fn cancel_batch(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Ok(data) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Request body must be valid JSON");
    };
    let Some(ids) = data.get("job_ids").and_then(Value::as_array) else {
        return error(StatusCode::BAD_REQUEST, "job_ids must be a list");
    };
    let invalid: Vec<Value> = ids
        .iter()
        .filter(|id| validate_job_id(id).is_none())
        .map(|id| match id {
            Value::String(_) => id.clone(),
            other => json!(crate::pyfmt::py_repr(other)),
        })
        .collect();
    if !invalid.is_empty() {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "job_ids contains invalid id(s)", "invalid_ids": invalid}),
        );
    }
    let mut cancelled = false;
    for id in ids.iter().filter_map(Value::as_str) {
        cancelled |= cancel_by_id(&sim, id);
    }
    json_response(StatusCode::OK, &json!({ "cancelled": cancelled }))
}
