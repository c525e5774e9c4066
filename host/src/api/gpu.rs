//! GPU inventory, attention decision, reasons and confirmation.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/gpu", get(report))
}

async fn report(State(s): State<AppState>) -> Json<serde_json::Value> {
    let report = s
        .gpu
        .read()
        .ok()
        .and_then(|r| r.as_ref().map(serde_json::to_value));
    match report {
        Some(Ok(r)) => Json(r),
        Some(Err(e)) => Json(serde_json::json!({"detected": false, "reason": e.to_string()})),
        None => Json(serde_json::json!({
            "detected": false,
            "reason": "GPU detection is off (attach mode or --no-gpu-detect)"
        })),
    }
}
