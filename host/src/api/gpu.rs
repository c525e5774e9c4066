//! GPU inventory, attention decision, reasons and confirmation; the admin's attention override
//! (kept in the store, applied to the decision at once and to ComfyUI on its next start, or
//! right away with `restart: true`).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use comfyhost_gpu::{DetectConfig, DeviceSelection, OverrideSetting};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::routes::Routes;
use crate::state::AppState;

/// Store key of the override.
pub const OVERRIDE_KEY: &str = "gpu.override";

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/gpu", report)
        .get("/gpu/override", get_override)
        .put("/gpu/override", put_override)
}

async fn report(State(s): State<AppState>) -> Json<Value> {
    let report = s
        .gpu
        .read()
        .ok()
        .and_then(|r| r.as_ref().map(serde_json::to_value));
    match report {
        Some(Ok(r)) => Json(r),
        Some(Err(e)) => Json(json!({"detected": false, "reason": e.to_string()})),
        None => Json(json!({
            "detected": false,
            "reason": "GPU detection is off (attach mode or --no-gpu-detect)"
        })),
    }
}

/// The stored override (the default `auto` when none).
pub fn stored_override(store: &comfyhost_store::Store) -> OverrideSetting {
    store
        .setting(OVERRIDE_KEY)
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

async fn get_override(State(s): State<AppState>) -> Json<OverrideSetting> {
    Json(stored_override(&s.store))
}

#[derive(Deserialize)]
struct PutOverride {
    #[serde(flatten)]
    setting: Value,
    /// Restart ComfyUI now with the new flags.
    #[serde(default)]
    restart: bool,
}

async fn put_override(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<PutOverride>,
) -> Result<Json<Value>, ApiError> {
    let mut setting = body.setting;
    if let Some(m) = setting.as_object_mut() {
        m.remove("restart");
    }
    let over: OverrideSetting = serde_json::from_value(setting.clone()).map_err(|e| {
        ApiError::BadRequest(format!(
            "override: {e} (expected {{\"attention\": \"auto\" | {{\"force\": \"sage|flash|xformers|pytorch|split|quad|cpu\"}}, \"extra_flags\": [...], \"allow_incompatible\": bool}})"
        ))
    })?;
    let decision = {
        let mut guard = s
            .gpu
            .write()
            .map_err(|_| ApiError::Internal("GPU report lock poisoned".into()))?;
        let Some(report) = guard.as_mut() else {
            return Err(ApiError::Conflict(
                "GPU detection is off (attach mode or --no-gpu-detect): nothing to override".into(),
            ));
        };
        let selection = DetectConfig::default()
            .visible_devices()
            .as_deref()
            .map_or(DeviceSelection::Default, DeviceSelection::parse);
        report.decision = comfyhost_gpu::decide(
            &report.inventory,
            report.probe.as_ref(),
            report.accepted_flags.as_ref(),
            &over,
            &selection,
        );
        report.decision.clone()
    };
    s.store
        .set_setting(
            OVERRIDE_KEY,
            &serde_json::to_value(&over).unwrap_or(setting),
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    s.activity(
        &s.actor(&headers),
        "gpu.override",
        "attention",
        json!({"override": over, "flags": decision.flags, "restart": body.restart}),
    );
    let op = if body.restart && decision.refusal.is_none() {
        Some(
            s.supervisor
                .restart_with_flags(decision.flags.clone())
                .await,
        )
    } else {
        None
    };
    Ok(Json(json!({
        "override": over,
        "decision": decision,
        "restart_op": op,
        "applies": if op.is_some() { "now (ComfyUI is restarting)" } else { "at the next ComfyUI start or restart" },
    })))
}
