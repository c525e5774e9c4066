//! The machine: `GET /system` (current readings, the last hour, the low-disk guard, ComfyUI
//! memory growth, the memory guard) and `PUT /system/low-disk` (the threshold, applied at once).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use serde::Deserialize;

use super::ApiError;
use super::routes::Routes;
use crate::machine::SystemView;
use crate::state::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/system", view)
        .put("/system/low-disk", set_low_disk)
}

async fn view(State(s): State<AppState>) -> Json<SystemView> {
    Json(s.machine.view())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LowDiskBody {
    threshold_bytes: u64,
}

async fn set_low_disk(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<LowDiskBody>, JsonRejection>,
) -> Result<Json<SystemView>, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"threshold_bytes\": <non-negative integer>}}: {}",
            e.body_text()
        ))
    })?;
    let actor = s.actor(&headers);
    s.machine
        .set_low_disk_threshold(body.threshold_bytes, &actor)
        .await;
    Ok(Json(s.machine.view()))
}
