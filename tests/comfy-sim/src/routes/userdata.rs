//! `/userdata` (saved workflows etc.) and `/settings`, single-user (`user/default`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::paths::{list_tree, safe_join};
use crate::routes::{empty, internal_error, json_response, text};
use crate::state::Sim;

fn user_root(sim: &Sim) -> PathBuf {
    sim.opts.user_dir.join("default")
}

/// `GET /userdata?dir=&recurse=&full_info=&split=`.
pub async fn list(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let dir = q.get("dir").cloned().unwrap_or_default();
    if dir.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Directory not provided");
    }
    let Some(path) = safe_join(&user_root(&sim), &dir) else {
        return text(StatusCode::FORBIDDEN, "Invalid directory");
    };
    if !path.exists() {
        return text(StatusCode::NOT_FOUND, "Directory not found");
    }
    let flag = |k: &str| q.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let files = list_tree(&path, flag("recurse"));
    let body: Vec<Value> = files
        .into_iter()
        .map(|rel| {
            if flag("full_info") {
                let meta = std::fs::metadata(path.join(&rel)).ok();
                let modified = meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                json!({"path": rel, "size": meta.map_or(0, |m| m.len()), "modified": modified})
            } else if flag("split") {
                let mut parts = vec![Value::String(rel.clone())];
                parts.extend(rel.split('/').map(|p| Value::String(p.to_string())));
                Value::Array(parts)
            } else {
                Value::String(rel)
            }
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(body))
}

/// `GET /userdata/{file}` (`file` arrives percent-decoded: `workflows%2Fa.json`).
pub async fn get_file(State(sim): State<Arc<Sim>>, Path(file): Path<String>) -> Response {
    let Some(path) = safe_join(&user_root(&sim), &file) else {
        return empty(StatusCode::FORBIDDEN);
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) if path.is_file() => {
            let mut r = Response::new(Body::from(bytes));
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::routes::files::mime_for(name)),
            );
            r
        }
        _ => empty(StatusCode::NOT_FOUND),
    }
}

/// `POST /userdata/{file}?overwrite=&full_info=`: writes the raw body.
pub async fn post_file(
    State(sim): State<Arc<Sim>>,
    Path(file): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some(path) = safe_join(&user_root(&sim), &file) else {
        return empty(StatusCode::FORBIDDEN);
    };
    let overwrite = q.get("overwrite").is_none_or(|v| v != "false");
    if !overwrite && path.exists() {
        return text(StatusCode::CONFLICT, "File already exists");
    }
    if let Some(parent) = path.parent()
        && tokio::fs::create_dir_all(parent).await.is_err()
    {
        return internal_error();
    }
    if tokio::fs::write(&path, &body).await.is_err() {
        return internal_error();
    }
    let rel = file.trim_start_matches('/').to_string();
    if q.get("full_info")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        let modified = std::fs::metadata(&path)
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        return json_response(
            StatusCode::OK,
            &json!({"path": rel, "size": body.len(), "modified": modified}),
        );
    }
    json_response(StatusCode::OK, &json!(rel))
}

/// `DELETE /userdata/{file}`.
pub async fn delete_file(State(sim): State<Arc<Sim>>, Path(file): Path<String>) -> Response {
    let Some(path) = safe_join(&user_root(&sim), &file) else {
        return empty(StatusCode::FORBIDDEN);
    };
    if !path.is_file() {
        return empty(StatusCode::NOT_FOUND);
    }
    match tokio::fs::remove_file(&path).await {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(_) => internal_error(),
    }
}

fn settings_path(sim: &Sim) -> PathBuf {
    user_root(sim).join("comfy.settings.json")
}

fn read_settings(sim: &Sim) -> Map<String, Value> {
    std::fs::read(settings_path(sim))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_settings(sim: &Sim, settings: &Map<String, Value>) -> bool {
    let path = settings_path(sim);
    path.parent()
        .is_some_and(|p| std::fs::create_dir_all(p).is_ok())
        && serde_json::to_vec_pretty(settings).is_ok_and(|b| std::fs::write(&path, b).is_ok())
}

/// `GET /settings`.
pub async fn get_settings(State(sim): State<Arc<Sim>>) -> Response {
    json_response(StatusCode::OK, &Value::Object(read_settings(&sim)))
}

/// `POST /settings`: merges a dict.
pub async fn post_settings(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Ok(Value::Object(new)) = serde_json::from_slice::<Value>(&body) else {
        return internal_error();
    };
    let mut s = read_settings(&sim);
    s.extend(new);
    if write_settings(&sim, &s) {
        empty(StatusCode::OK)
    } else {
        internal_error()
    }
}

/// `GET /settings/{id}`.
pub async fn get_setting(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    json_response(
        StatusCode::OK,
        read_settings(&sim).get(&id).unwrap_or(&Value::Null),
    )
}

/// `POST /settings/{id}`.
pub async fn post_setting(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return internal_error();
    };
    let mut s = read_settings(&sim);
    s.insert(id, v);
    if write_settings(&sim, &s) {
        empty(StatusCode::OK)
    } else {
        internal_error()
    }
}
