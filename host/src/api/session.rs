//! Sign-in for the dashboard and for workshop users' ComfyUI pages: trade a token for an
//! HttpOnly session cookie (the ComfyUI page sends no Authorization header) and a CSRF token
//! the dashboard sends back on every change. Failed attempts are rate-limited per address.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::routes::Routes;
use crate::state::AppState;
use crate::users::{Credential, LoginError, SESSION_COOKIE, SESSION_TTL_MS};

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .post("/session", login)
        .get("/session", whoami)
        .delete("/session", logout)
        .post("/session/everywhere", crate::sign_out_everywhere::handler)
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

/// `Secure` when the browser reached us over TLS (directly or through a proxy that says so).
fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn cookie(value: &str, max_age_s: i64, secure: bool) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    ))
    .ok()
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": kind, "message": message}})),
    )
        .into_response()
}

async fn login(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<Login>,
) -> Response {
    let client = addr.ip().to_string();
    match s.identity.login(body.token.trim(), &client) {
        Ok(session) => {
            s.activity(
                &session.user.id,
                "session.login",
                &session.user.id,
                json!({"from": client}),
            );
            let Some(set) = cookie(&session.id, SESSION_TTL_MS / 1000, secure(&headers)) else {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "cookie");
            };
            let mut resp = Json(json!({
                "user": session.user.id,
                "is_admin": session.user.is_admin,
                "csrf_token": session.csrf,
            }))
            .into_response();
            resp.headers_mut().insert(header::SET_COOKIE, set);
            resp
        }
        Err(LoginError::Invalid) => {
            s.activity(&client, "session.login_failed", "", json!({}));
            error(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token")
        }
        Err(e @ LoginError::RateLimited { retry_after_s }) => {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &e.to_string(),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

/// `?optional=1`: page scripts that only want to know (the status overlay) get `200` with
/// `"user": null` instead of a `401` that every anonymous page load would log in its console.
#[derive(serde::Deserialize)]
struct WhoamiQuery {
    #[serde(default)]
    optional: Option<String>,
}

async fn whoami(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<WhoamiQuery>,
    headers: HeaderMap,
) -> Response {
    match s.identity.credential(&headers) {
        Some(Credential::Session { user, csrf }) => {
            Json(json!({"user": user.id, "is_admin": user.is_admin, "csrf_token": csrf}))
                .into_response()
        }
        Some(Credential::Bearer(user)) => {
            Json(json!({"user": user.id, "is_admin": user.is_admin})).into_response()
        }
        None if q
            .optional
            .as_deref()
            .is_some_and(|v| v == "1" || v == "true") =>
        {
            Json(json!({"user": null, "is_admin": false})).into_response()
        }
        None => error(StatusCode::UNAUTHORIZED, "unauthorized", "not signed in"),
    }
}

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    s.identity.logout(&headers);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = cookie("", 0, secure(&headers)) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}
