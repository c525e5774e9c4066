//! Routes the current frontend calls beyond 0.3.64's core API: `/node_replacements`,
//! `/global_subgraphs`, `/api/assets*` (disabled without `--enable-assets`), `/v2/userdata`,
//! `/templates/*`, plus `/internal/*` and `/experiment/models`, which 0.3.64 already had.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::paths;
use crate::routes::{json_response, text};
use crate::state::Sim;

/// `GET /node_replacements`: the registry is empty without custom nodes.
pub async fn node_replacements() -> Response {
    json_response(StatusCode::OK, &json!({}))
}

/// `GET /global_subgraphs`: no blueprints without custom nodes.
pub async fn global_subgraphs() -> Response {
    json_response(StatusCode::OK, &json!({}))
}

/// `GET /global_subgraphs/{id}`: `sanitize_entry(None)` is `null`.
pub async fn global_subgraph_one() -> Response {
    json_response(StatusCode::OK, &Value::Null)
}

/// Every `/api/assets*` and `/api/tags` route without `--enable-assets`.
pub async fn assets_disabled() -> Response {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": {
            "code": "SERVICE_DISABLED",
            "message": "Assets system is disabled. Start the server with --enable-assets to use this feature.",
            "details": {},
        }}),
    )
}

/// `GET /templates/{path}`: no workflow-templates package is installed in the simulator.
pub async fn templates() -> Response {
    text(StatusCode::NOT_FOUND, "404: Not Found")
}

/// `GET /v2/userdata?path=`: files and directories below the user's directory, directories first.
pub async fn userdata_v2(
    State(sim): State<Arc<Sim>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Ok(base) = crate::routes::users::user_root(&sim, &headers) else {
        return text(StatusCode::FORBIDDEN, "Invalid user specified in request");
    };
    let rel = q.get("path").cloned().unwrap_or_default();
    let target = if rel.is_empty() {
        base.clone()
    } else {
        match paths::safe_join(&base, &rel) {
            Some(t) => t,
            None => return text(StatusCode::BAD_REQUEST, "Invalid path requested"),
        }
    };
    if !target.exists() {
        if target == base {
            return json_response(StatusCode::OK, &json!([]));
        }
        return text(StatusCode::NOT_FOUND, "Requested path not found");
    }
    if !target.is_dir() {
        return text(StatusCode::BAD_REQUEST, "Requested path is not a directory");
    }
    let mut entries = Vec::new();
    walk(&base, &target, &mut entries);
    entries.sort_by_key(|e| {
        (
            e.get("type").and_then(Value::as_str) != Some("directory"),
            e.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_lowercase(),
        )
    });
    json_response(StatusCode::OK, &Value::Array(entries))
}

fn walk(base: &FsPath, dir: &FsPath, out: &mut Vec<Value>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = path
            .strip_prefix(base)
            .map(|r| r.to_string_lossy().replace('\\', "/"))
            .unwrap_or_else(|_| name.clone());
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            out.push(json!({"name": name, "path": rel, "type": "directory"}));
            walk(base, &path, out);
        } else {
            let modified = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            out.push(json!({"name": name, "path": rel, "type": "file", "size": meta.len(), "modified": modified}));
        }
    }
}

/// `GET /internal/logs`: the log as one string.
pub async fn internal_logs() -> Response {
    json_response(StatusCode::OK, &json!(""))
}

/// `GET /internal/logs/raw`.
pub async fn internal_logs_raw() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"entries": [], "size": {"cols": 80, "rows": 24}}),
    )
}

fn folder_dirs(sim: &Sim, key: &str) -> Vec<String> {
    paths::subdirs(key)
        .iter()
        .map(|s| sim.opts.models_dir.join(s).to_string_lossy().into_owned())
        .collect()
}

/// `GET /internal/folder_paths`: `{key: [dirs]}`.
pub async fn internal_folder_paths(State(sim): State<Arc<Sim>>) -> Response {
    let map: Map<String, Value> = paths::FOLDER_KEYS
        .iter()
        .map(|k| (k.to_string(), json!(folder_dirs(&sim, k))))
        .collect();
    json_response(StatusCode::OK, &Value::Object(map))
}

/// `GET /experiment/models`: every folder key except `configs` and `custom_nodes`.
pub async fn experiment_models(State(sim): State<Arc<Sim>>) -> Response {
    let folders: Vec<Value> = paths::FOLDER_KEYS
        .iter()
        .filter(|k| !matches!(**k, "configs" | "custom_nodes"))
        .map(|k| {
            let extensions: &[&str] = if *k == "configs" {
                &[".yaml"]
            } else {
                &[
                    ".bin",
                    ".ckpt",
                    ".pkl",
                    ".pt",
                    ".pt2",
                    ".pth",
                    ".safetensors",
                    ".sft",
                ]
            };
            json!({"name": k, "folders": folder_dirs(&sim, k), "extensions": extensions})
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(folders))
}
