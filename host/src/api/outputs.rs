//! Output sync health: `GET /outputs` (admin) — backlog, full-pass progress and, per
//! output-sync plugin, last success and last error with its type.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::ApiError;
use crate::outputs::OutputsHealth;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/outputs", get(health))
}

async fn health(State(s): State<AppState>) -> Result<Json<OutputsHealth>, ApiError> {
    s.outputs
        .health()
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}
