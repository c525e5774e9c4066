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

/// `GET /system_stats` (shape of the profile's version on `--cpu`; the simulator has no GPU).
pub async fn system_stats(State(sim): State<Arc<Sim>>) -> Response {
    let (total, free) = memory();
    let profile = sim.opts.profile;
    let mut body = json!({
        "system": {
            "os": "posix",
            "ram_total": total,
            "ram_free": free,
            "comfyui_version": profile.comfyui_version(),
            "required_frontend_version": profile.required_frontend_version(),
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
    if profile.is_current()
        && let Some(system) = body.get_mut("system").and_then(|s| s.as_object_mut())
    {
        // 0.33.0 adds these two keys (after `required_templates_version` / `embedded_python`).
        // A list, as ComfyUI sends it (frontend 1.58 iterates it); empty: the simulator has
        // no pip packages to report.
        system.shift_insert(7, "comfy_package_versions".into(), json!([]));
        let argv_at = system.len() - 1;
        system.shift_insert(argv_at, "deploy_environment".into(), json!("local"));
    }
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
