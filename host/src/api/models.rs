//! Models: resolve what a workflow needs, list installed models, install presets, and follow
//! or control the downloads. All routes are admin-only (nested in the admin router).
//!
//! - `POST /models/resolve` `{workflow, comfyui_error?}` -> [`crate::models::ModelResolution`] plus
//!   `download_origins` (the origins installs may download from)
//! - `GET  /models/installed` -> `[{folder, files}]`
//! - `POST /models/install` `{preset_id, preset_name?, files:[{folder,name,url,size,sha256}]}`
//!   -> 202 `{operation_id, operation}`; 507 `insufficient_storage` when the disk is too small
//! - `GET  /models/downloads` -> `[operation]`; `GET /models/downloads/{id}` -> operation
//!   (`state`, `bytes_done`, `bytes_total`, `rate_bps`, `files[]`; poll it for progress)
//! - `POST /models/downloads/{id}/pause|resume|cancel` -> operation

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::routes::Routes;
use crate::models::ResolveError;
use crate::models::downloads::{ControlError, InstallError, InstallRequest, OperationView};
use crate::state::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .post("/models/resolve", resolve)
        .get("/models/installed", installed)
        .post("/models/install", install)
        .get("/models/downloads", list)
        .get("/models/downloads/{id}", one)
        .post("/models/downloads/{id}/pause", pause)
        .post("/models/downloads/{id}/resume", resume)
        .post("/models/downloads/{id}/cancel", cancel)
}

/// Body of `POST /models/resolve`.
#[derive(Debug, Deserialize)]
struct ResolveBody {
    workflow: Value,
    /// ComfyUI's 400 body for this workflow.
    #[serde(default)]
    comfyui_error: Option<Value>,
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Shape(_) => ApiError::BadRequest(e.to_string()),
            ResolveError::NoResolver => ApiError::Conflict(e.to_string()),
            ResolveError::Plugin(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ControlError::WrongState(..) => ApiError::Conflict(e.to_string()),
        }
    }
}

async fn resolve(
    State(s): State<AppState>,
    Json(body): Json<ResolveBody>,
) -> Result<Json<Value>, ApiError> {
    let started = std::time::Instant::now();
    let r = s
        .models
        .resolve(&body.workflow, body.comfyui_error.as_ref())
        .await?;
    tracing::debug!(
        required = r.required.len(),
        missing = r.missing.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "models resolved"
    );
    // The dashboard shows every proposed file with whether its origin is allowed.
    let mut v = serde_json::to_value(&r).map_err(|e| ApiError::Internal(e.to_string()))?;
    v["download_origins"] = json!(s.models.downloads().allowed_origins());
    Ok(Json(v))
}

async fn installed(State(s): State<AppState>) -> Json<Value> {
    Json(json!(s.models.installed().await))
}

/// Install refusal; 507 for a disk that is too small.
struct InstallRefused(InstallError);

impl IntoResponse for InstallRefused {
    fn into_response(self) -> Response {
        let (status, kind) = match &self.0 {
            InstallError::InsufficientSpace { .. } => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            InstallError::NoDestination(_) => (StatusCode::CONFLICT, "conflict"),
            InstallError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            InstallError::Empty | InstallError::BadFile { .. } => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
        };
        (
            status,
            Json(json!({"error": {"type": kind, "message": self.0.to_string()}})),
        )
            .into_response()
    }
}

async fn install(
    State(s): State<AppState>,
    Json(req): Json<InstallRequest>,
) -> Result<(StatusCode, Json<Value>), InstallRefused> {
    let mgr = s.models.downloads().clone();
    let id = mgr.install(req).map_err(InstallRefused)?;
    let view = mgr.view(&id).ok();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"operation_id": id, "operation": view})),
    ))
}

async fn list(State(s): State<AppState>) -> Json<Vec<OperationView>> {
    Json(s.models.downloads().list())
}

async fn one(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OperationView>, ApiError> {
    Ok(Json(s.models.downloads().view(&id)?))
}

async fn pause(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OperationView>, ApiError> {
    Ok(Json(s.models.downloads().pause(&id).await?))
}

async fn resume(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OperationView>, ApiError> {
    Ok(Json(s.models.downloads().resume(&id)?))
}

async fn cancel(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OperationView>, ApiError> {
    Ok(Json(s.models.downloads().cancel(&id).await?))
}
