//! Output sync (admin): `GET /outputs` — backlog, full-pass progress, held removals and, per
//! output-sync plugin, last success and last error with its type; `POST
//! /outputs/removals/release` — let held mirror deletions through.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::ApiError;
use super::routes::Routes;
use crate::outputs::OutputsHealth;
use crate::state::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/outputs", health)
        .post("/outputs/removals/release", release)
}

async fn health(State(s): State<AppState>) -> Result<Json<OutputsHealth>, ApiError> {
    s.outputs
        .health()
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Passes the held deletions on: the pass that runs now marks every synced file missing from
/// the output directory for mirror deletion, however many. 409 when nothing is held.
async fn release(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let Some(held) = s.outputs.release_removals().await else {
        return Err(ApiError::Conflict("no held removals to release".into()));
    };
    s.activity(
        &s.actor(&headers),
        "outputs.release_removals",
        "output-sync",
        json!({"count": held.count, "cap": held.cap, "sample": held.sample}),
    );
    tracing::warn!(count = held.count, "admin released held mirror deletions");
    let health = s
        .outputs
        .health()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({"released": held, "health": health})))
}
