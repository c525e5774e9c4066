//! The listener is bound and answering before the host is assembled (compiling plugins and
//! probing Python can take seconds on a first start): liveness (`/comfyhost/api/health`)
//! answers at once, readiness (`/comfyhost/api/ready`) says whether the host is assembled and
//! ComfyUI is ready, and everything else gets `503 starting` until the full app is in place.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use comfyhost_supervisor::{Supervisor, SupervisorState};
use http::StatusCode;
use serde_json::json;
use tower::ServiceExt;

/// What the early router needs once the host is assembled.
pub struct Assembled {
    pub app: Router,
    pub supervisor: Arc<Supervisor>,
}

/// Filled in once the host is assembled.
pub type Slot = Arc<OnceLock<Assembled>>;

/// Health, readiness and the hand-over to the full app, under `prefix`.
pub fn router(prefix: &str, slot: Slot) -> Router {
    let ready_slot = slot.clone();
    Router::new()
        .route(&format!("{prefix}/comfyhost/api/health"), get(health))
        .route(
            &format!("{prefix}/comfyhost/api/ready"),
            get(move || ready(ready_slot.clone())),
        )
        .fallback(move |req: Request| {
            let slot = slot.clone();
            async move {
                match slot.get() {
                    Some(a) => match a.app.clone().oneshot(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    },
                    None => starting(),
                }
            }
        })
}

/// Liveness: the process serves HTTP.
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Readiness: `200` once the host is assembled and ComfyUI answers, `503` with the reason
/// before.
async fn ready(slot: Slot) -> Response {
    let Some(a) = slot.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "host": "starting", "comfyui": null})),
        )
            .into_response();
    };
    let status = a.supervisor.status();
    let comfyui = format!("{:?}", status.state).to_lowercase();
    let ok = matches!(
        status.state,
        SupervisorState::Ready | SupervisorState::Attached
    );
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(
            json!({"ready": ok, "host": "ready", "comfyui": comfyui, "reason": status.reason}),
        ),
    )
        .into_response()
}

fn starting() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(http::header::RETRY_AFTER, "2")],
        axum::Json(json!({
            "error": {"type": "comfyhost_starting", "message": "comfyhost is starting",
                      "details": "loading plugins and probing the GPU environment", "extra_info": {}},
            "node_errors": {}
        })),
    )
        .into_response()
}
