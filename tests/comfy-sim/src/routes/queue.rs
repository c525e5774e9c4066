//! `/queue`, `/interrupt`, `/free` and `/history`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::pyfmt::py_str;
use crate::routes::{empty, internal_error, json_response};
use crate::state::Sim;

fn parse_object(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// `GET /queue`.
pub async fn get_queue(State(sim): State<Arc<Sim>>) -> Response {
    json_response(StatusCode::OK, &sim.queue_json())
}

/// `POST /queue {"clear": true}` / `{"delete": [ids]}`: pending prompts vanish silently.
pub async fn post_queue(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Some(data) = parse_object(&body) else {
        return internal_error();
    };
    if data.get("clear").is_some_and(truthy) {
        sim.wipe_queue();
    }
    if let Some(delete) = data.get("delete") {
        let Value::Array(ids) = delete else {
            return internal_error();
        };
        for id in ids {
            sim.delete_queue_item(&py_str(id));
        }
    }
    empty(StatusCode::OK)
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `POST /interrupt` (optionally `{"prompt_id": ...}`: only interrupts that prompt if running).
pub async fn interrupt(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let data = parse_object(&body).unwrap_or_default();
    match data.get("prompt_id").filter(|p| truthy(p)) {
        Some(pid) => {
            let pid = py_str(pid);
            if sim.running_prompt_id().as_deref() == Some(pid.as_str()) {
                tracing::info!(prompt_id = %pid, "Interrupting prompt {pid}");
                sim.interrupt();
            } else {
                tracing::info!(prompt_id = %pid, "Prompt {pid} is not currently running, skipping interrupt");
            }
        }
        None => {
            tracing::info!("Global interrupt (no prompt_id specified)");
            sim.interrupt();
        }
    }
    empty(StatusCode::OK)
}

/// `POST /free` (nothing to unload in a simulator; accepted like ComfyUI).
pub async fn free(body: Bytes) -> Response {
    if parse_object(&body).is_none() {
        return internal_error();
    }
    empty(StatusCode::OK)
}

/// `GET /history?max_items=&offset=`.
pub async fn get_history(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let max_items = match q.get("max_items").map(|m| m.trim().parse::<i64>()) {
        None => None,
        Some(Ok(m)) => Some(usize::try_from(m).unwrap_or(0)),
        Some(Err(_)) => return internal_error(),
    };
    let offset = match q.get("offset").map(|o| o.trim().parse::<i64>()) {
        None => -1,
        Some(Ok(o)) => o,
        Some(Err(_)) => return internal_error(),
    };
    json_response(StatusCode::OK, &sim.history(None, max_items, offset))
}

/// `GET /history/{prompt_id}`.
pub async fn get_history_one(
    State(sim): State<Arc<Sim>>,
    Path(prompt_id): Path<String>,
) -> Response {
    json_response(StatusCode::OK, &sim.history(Some(&prompt_id), None, -1))
}

/// `POST /history {"clear": true}` / `{"delete": [ids]}`.
pub async fn post_history(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Some(data) = parse_object(&body) else {
        return internal_error();
    };
    if data.get("clear").is_some_and(truthy) {
        sim.clear_history();
    }
    if let Some(delete) = data.get("delete") {
        let Value::Array(ids) = delete else {
            return internal_error();
        };
        for id in ids {
            sim.delete_history(&py_str(id));
        }
    }
    empty(StatusCode::OK)
}
