//! `/userdata` (saved workflows etc.) and `/settings`, in the request's user directory
//! (`user/default`, or the `comfy-user` one with `--multi-user`: [`crate::users`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::paths::{list_tree, safe_join};
use crate::routes::users::{unauthorized, user_root};
use crate::routes::{empty, internal_error, json_response, text};
use crate::state::Sim;

/// `GET /userdata?dir=&recurse=&full_info=&split=`.
pub async fn list(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let dir = q.get("dir").cloned().unwrap_or_default();
    if dir.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Directory not provided");
    }
    // An unknown user raises `KeyError` here: aiohttp's 500 page.
    let Ok(root) = user_root(&sim, &headers) else {
        return internal_error();
    };
    let Some(path) = safe_join(&root, &dir) else {
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
pub async fn get_file(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    let Ok(root) = user_root(&sim, &headers) else {
        return internal_error();
    };
    let Some(path) = safe_join(&root, &file) else {
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
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Ok(root) = user_root(&sim, &headers) else {
        return internal_error();
    };
    let Some(path) = safe_join(&root, &file) else {
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
pub async fn delete_file(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    let Ok(root) = user_root(&sim, &headers) else {
        return internal_error();
    };
    let Some(path) = safe_join(&root, &file) else {
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

fn read_settings(path: &std::path::Path) -> Map<String, Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_settings(path: &std::path::Path, settings: &Map<String, Value>) -> bool {
    path.parent()
        .is_some_and(|p| std::fs::create_dir_all(p).is_ok())
        && serde_json::to_vec_pretty(settings).is_ok_and(|b| std::fs::write(path, b).is_ok())
}

/// `comfy.settings.json` of the request's user; `None` for an unknown user (ComfyUI answers
/// `HTTPUnauthorized`).
fn settings_path(sim: &Sim, headers: &HeaderMap) -> Option<PathBuf> {
    user_root(sim, headers)
        .ok()
        .map(|root| root.join("comfy.settings.json"))
}

/// `GET /settings`.
pub async fn get_settings(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    match settings_path(&sim, &headers) {
        Some(path) => json_response(StatusCode::OK, &Value::Object(read_settings(&path))),
        None => unauthorized(),
    }
}

/// `POST /settings`: merges a dict.
pub async fn post_settings(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(Value::Object(new)) = serde_json::from_slice::<Value>(&body) else {
        return internal_error();
    };
    let Some(path) = settings_path(&sim, &headers) else {
        return unauthorized();
    };
    let mut s = read_settings(&path);
    s.extend(new);
    if write_settings(&path, &s) {
        empty(StatusCode::OK)
    } else {
        internal_error()
    }
}

/// `GET /settings/{id}`.
pub async fn get_setting(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match settings_path(&sim, &headers) {
        Some(path) => json_response(
            StatusCode::OK,
            read_settings(&path).get(&id).unwrap_or(&Value::Null),
        ),
        None => unauthorized(),
    }
}

/// `POST /settings/{id}`.
pub async fn post_setting(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return internal_error();
    };
    let Some(path) = settings_path(&sim, &headers) else {
        return unauthorized();
    };
    let mut s = read_settings(&path);
    s.insert(id, v);
    if write_settings(&path, &s) {
        empty(StatusCode::OK)
    } else {
        internal_error()
    }
}
