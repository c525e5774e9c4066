//! `POST <prefix>/comfyhost/api/session/everywhere`: "sign out everywhere". An admin ends every
//! session on the host (every user's, every browser's); a workshop user ends all of their own.
//! With a session cookie the request must carry the session's CSRF token (`X-CSRF-Token`), as
//! every signed-in change does; with `Authorization: Bearer` it needs none. The caller's own
//! cookie is cleared too.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;
use crate::users::{Credential, SESSION_COOKIE};

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": kind, "message": message}})),
    )
        .into_response()
}

pub async fn handler(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(cred) = s.identity.credential(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "not signed in");
    };
    if let Credential::Session { csrf, .. } = &cred
        && !crate::auth::csrf_ok(&headers, csrf)
    {
        return error(
            StatusCode::FORBIDDEN,
            "csrf",
            "missing or wrong X-CSRF-Token for a signed-in change",
        );
    }
    let user = cred.user();
    let (result, scope) = if user.is_admin {
        (s.identity.end_all_sessions(), "all")
    } else {
        (s.identity.end_user_sessions(&user.id), "own")
    };
    if let Err(e) = result {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        );
    }
    s.activity(
        &user.id,
        "session.sign_out_everywhere",
        &user.id,
        json!({"scope": scope}),
    );
    let mut resp = Json(json!({"ended": scope})).into_response();
    if let Ok(v) =
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0").parse()
    {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
