//! Browser sessions for workshop users: trade a token for an HttpOnly cookie, so the ComfyUI
//! page (which sends no Authorization header) is attributed to its user.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;
use crate::users::TOKEN_COOKIE;

pub fn router() -> Router<AppState> {
    Router::new().route("/session", post(login).get(whoami).delete(logout))
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

fn cookie(value: &str, max_age_s: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{TOKEN_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}"
    ))
    .ok()
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"type": "unauthorized", "message": message}})),
    )
        .into_response()
}

async fn login(State(s): State<AppState>, Json(body): Json<Login>) -> Response {
    let Some(user) = s.identity.user_for_token(body.token.trim()) else {
        return unauthorized("unknown token");
    };
    let Some(set) = cookie(body.token.trim(), 60 * 60 * 24 * 30) else {
        return unauthorized("malformed token");
    };
    let mut resp = Json(json!({"user": user.id, "is_admin": user.is_admin})).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set);
    resp
}

async fn whoami(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match s.identity.identify(&headers) {
        Some(u) => Json(json!({"user": u.id, "is_admin": u.is_admin})).into_response(),
        None => unauthorized("not signed in"),
    }
}

async fn logout() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = cookie("", 0) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}
