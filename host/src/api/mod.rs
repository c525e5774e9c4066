//! The host's own JSON API under `<prefix>/comfyhost/api`. Everything but `health` and
//! `session` (a user's own sign-in) needs the admin token.

mod activity;
mod backends;
mod comfyui;
mod error;
pub mod gpu;
mod jobs;
mod models;
mod outputs;
mod plugins;
mod session;
mod system;
mod users;

use axum::Router;
use axum::routing::get;

use crate::auth::require_admin;
use crate::state::AppState;

pub use error::ApiError;

/// The API router (to be nested at `/comfyhost/api`).
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .merge(comfyui::router())
        .merge(backends::router())
        .merge(activity::router())
        .merge(plugins::router())
        .merge(gpu::router())
        .merge(jobs::router())
        .merge(outputs::router())
        .merge(models::router())
        .merge(users::router())
        .merge(system::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.identity.clone(),
            require_admin,
        ));
    Router::new()
        .route("/health", get(health))
        .merge(session::router())
        .merge(admin)
        .with_state(state)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}
