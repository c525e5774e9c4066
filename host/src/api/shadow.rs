//! Admin API of shadow mode: list shadow plugins with their recent decisions next to the
//! active chain's and summary figures (agreement, faults, latency), install a version in
//! shadow (the plugin upload form), promote, discard.

use axum::Json;
use axum::extract::{Multipart, Path, State};
use comfyhost_runtime::registry::PluginInfo;
use comfyhost_store::{SHADOW_RING, ShadowRow};
use serde_json::{Value, json};

use super::ApiError;
use super::plugins::{MAX_UPLOAD, blocking, read_upload};
use super::routes::Routes;
use crate::state::AppState;

/// Decisions listed per shadow plugin (the figures use the whole ring).
const LISTED: usize = 20;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/shadow", list)
        .post("/shadow", install)
        .post("/shadow/{id}/promote", promote)
        .post("/shadow/{id}/discard", discard)
        .map_router(|r| r.layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD)))
}

async fn list(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for info in s.plugins.shadows() {
        let rows = s
            .store
            .shadow_decisions(&info.id, SHADOW_RING)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut entry = serde_json::to_value(&info).unwrap_or(Value::Null);
        entry["summary"] = summary(&rows);
        entry["decisions"] = rows.iter().take(LISTED).map(decision).collect();
        out.push(entry);
    }
    Ok(Json(
        json!({ "shadows": out, "skipped": crate::shadow::skipped() }),
    ))
}

/// Figures over the recorded decisions: count, agreement (percent of all decisions, faults
/// count as disagreeing), faults, mean and max latency.
fn summary(rows: &[ShadowRow]) -> Value {
    let n = rows.len();
    let agreed = rows.iter().filter(|r| r.agreed).count();
    let faults = rows.iter().filter(|r| r.fault.is_some()).count();
    let total_ms: i64 = rows.iter().map(|r| r.latency_ms).sum();
    json!({
        "decisions": n,
        "agreed": agreed,
        "agreement_pct": if n == 0 { Value::Null } else { json!((agreed * 100) as f64 / n as f64) },
        "faults": faults,
        "latency_ms_mean": if n == 0 { Value::Null } else { json!(total_ms as f64 / n as f64) },
        "latency_ms_max": rows.iter().map(|r| r.latency_ms).max(),
    })
}

fn decision(r: &ShadowRow) -> Value {
    json!({
        "prompt_id": r.prompt_id,
        "hook": r.hook,
        "ts_ms": r.ts_ms,
        "active": serde_json::from_str::<Value>(&r.active_json).unwrap_or(Value::Null),
        "shadow": serde_json::from_str::<Value>(&r.shadow_json).unwrap_or(Value::Null),
        "agreed": r.agreed,
        "fault": r.fault,
        "latency_ms": r.latency_ms,
    })
}

/// The plugin upload form (`manifest`, `wasm`, `schema`, `signature`, `public_key`).
async fn install(State(s): State<AppState>, form: Multipart) -> Result<Json<Value>, ApiError> {
    let u = read_upload(form).await?;
    let plugins = s.plugins.clone();
    let info = blocking(move || {
        plugins.install_shadow(&u.manifest, &u.wasm, u.schema.as_deref(), u.signature)
    })
    .await?;
    // A new shadow starts with a clean record.
    if let Err(e) = s.store.clear_shadow(&info.id) {
        tracing::warn!(plugin = %info.id, error = %e, "cannot clear old shadow decisions");
    }
    Ok(Json(serde_json::to_value(info).unwrap_or(Value::Null)))
}

async fn promote(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    let plugins = s.plugins.clone();
    let pid = id.clone();
    let info = blocking(move || plugins.promote_shadow(&pid)).await?;
    if let Err(e) = s.store.clear_shadow(&id) {
        tracing::warn!(plugin = %id, error = %e, "cannot clear shadow decisions");
    }
    Ok(Json(info))
}

async fn discard(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let plugins = s.plugins.clone();
    let pid = id.clone();
    blocking(move || plugins.discard_shadow(&pid)).await?;
    if let Err(e) = s.store.clear_shadow(&id) {
        tracing::warn!(plugin = %id, error = %e, "cannot clear shadow decisions");
    }
    Ok(Json(json!({ "discarded": id })))
}
