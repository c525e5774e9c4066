//! Remote backends: health, queue depth and the last error of each.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::backends::pool::BackendHealth;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/backends", get(list))
}

async fn list(State(s): State<AppState>) -> Json<Vec<BackendHealth>> {
    Json(s.remote.pool().health())
}
