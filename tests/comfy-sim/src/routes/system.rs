//! Read-only informational routes: `/system_stats`, `/features`, `/object_info`, `/models`, ...

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::catalogue::Catalogue;
use crate::paths;
use crate::routes::{empty, json_response};
use crate::state::Sim;

/// `(MemTotal, MemAvailable)` in bytes from `/proc/meminfo` (fallback: 16 GiB / 8 GiB).
fn memory() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (
        field("MemTotal:").unwrap_or(16 << 30),
        field("MemAvailable:").unwrap_or(8 << 30),
    )
}

/// `GET /system_stats` (shape of 0.3.64 on `--cpu`; the simulator has no GPU).
pub async fn system_stats(State(sim): State<Arc<Sim>>) -> Response {
    let (total, free) = memory();
    let body = json!({
        "system": {
            "os": "posix",
            "ram_total": total,
            "ram_free": free,
            "comfyui_version": "0.3.64",
            "required_frontend_version": "1.27.10",
            "installed_templates_version": "0.1.95",
            "required_templates_version": "0.1.95",
            "python_version": "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]",
            "pytorch_version": "2.8.0+cu128",
            "embedded_python": false,
            "argv": sim.opts.argv,
        },
        "devices": [{
            "name": "cpu", "type": "cpu", "index": null,
            "vram_total": total, "vram_free": free, "torch_vram_total": total, "torch_vram_free": free,
        }],
    });
    json_response(StatusCode::OK, &body)
}

/// `GET /features`.
pub async fn features(State(sim): State<Arc<Sim>>) -> Response {
    json_response(StatusCode::OK, &crate::ws::handler::server_features(&sim))
}

/// `GET /embeddings`: embedding names without extension.
pub async fn embeddings(State(sim): State<Arc<Sim>>) -> Response {
    let names: Vec<String> = paths::list_models(&sim.opts.models_dir, "embeddings")
        .into_iter()
        .map(|n| {
            n.rsplit_once('.')
                .map_or(n.clone(), |(stem, _)| stem.to_string())
        })
        .collect();
    json_response(StatusCode::OK, &json!(names))
}

/// `GET /extensions`.
pub async fn extensions() -> Response {
    json_response(StatusCode::OK, &Catalogue::extensions())
}

/// `GET /models`: the folder keys.
pub async fn models() -> Response {
    json_response(StatusCode::OK, &json!(paths::FOLDER_KEYS))
}

/// `GET /models/{folder}`: files of one folder, 404 for unknown keys.
pub async fn models_in_folder(State(sim): State<Arc<Sim>>, Path(folder): Path<String>) -> Response {
    if !paths::is_folder_key(&folder) {
        return empty(StatusCode::NOT_FOUND);
    }
    json_response(
        StatusCode::OK,
        &json!(paths::list_models(&sim.opts.models_dir, &folder)),
    )
}

/// `GET /object_info`.
pub async fn object_info(State(sim): State<Arc<Sim>>) -> Response {
    json_response(StatusCode::OK, &sim.catalogue.object_info())
}

/// `GET /object_info/{class}`: `{class: info}` or `{}`.
pub async fn object_info_one(State(sim): State<Arc<Sim>>, Path(class): Path<String>) -> Response {
    let body = match sim.catalogue.node_info(&class) {
        Some(info) => json!({ class: info }),
        None => json!({}),
    };
    json_response(StatusCode::OK, &body)
}

/// `{}` (`/i18n`, `/workflow_templates` without custom nodes).
pub async fn empty_object() -> Response {
    json_response(StatusCode::OK, &json!({}))
}

/// `GET /users` in single-user mode.
pub async fn users() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"storage": "server", "migrated": true}),
    )
}
