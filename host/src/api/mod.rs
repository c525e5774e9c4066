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
mod room;
mod routes;
mod session;
mod shadow;
mod system;
mod trust;
mod users;

use axum::Router;

use crate::auth::require_admin;
use crate::state::AppState;

pub use error::ApiError;
pub use routes::RouteEntry;
use routes::Routes;

/// Every route of the API, by who may use it.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Open to anyone (`health`, a user's own `session`).
    pub public: Vec<RouteEntry>,
    /// Admins only: the admin token, or an admin session with its CSRF token on changes.
    pub admin: Vec<RouteEntry>,
}

/// What [`router`] serves, as a list.
pub fn route_table() -> RouteTable {
    let (_, public) = public_routes().into_parts();
    let (_, admin) = admin_routes().into_parts();
    RouteTable { public, admin }
}

fn public_routes() -> Routes<AppState> {
    Routes::new()
        .get("/health", health)
        .merge(session::routes())
}

fn admin_routes() -> Routes<AppState> {
    Routes::new()
        .merge(workshop::routes())
        .merge(comfyui::routes())
        .merge(backends::routes())
        .merge(activity::routes())
        .merge(plugins::routes())
        .merge(gpu::routes())
        .merge(jobs::routes())
        .merge(outputs::routes())
        .merge(models::routes())
        .merge(users::routes())
        .merge(room::routes())
        .merge(system::routes())
        .merge(trust::routes())
        .merge(shadow::routes())
}

/// The API router (to be nested at `/comfyhost/api`).
pub fn router(state: AppState) -> Router {
    let (admin, _) = admin_routes().into_parts();
    let admin = admin.route_layer(axum::middleware::from_fn_with_state(
        state.identity.clone(),
        require_admin,
    ));
    let (public, _) = public_routes().into_parts();
    public.merge(admin).with_state(state)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

// Workshop settings (sign-in required, isolation): see docs/workshop.md.
mod workshop;
