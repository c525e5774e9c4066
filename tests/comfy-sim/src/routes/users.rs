//! `GET /users` and `POST /users` (ComfyUI's `UserManager` routes), and the user directory a
//! request resolves to. See [`crate::users`] for the `--multi-user` rules.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::routes::{internal_error, json_response, text};
use crate::state::Sim;
use crate::users::UnknownUser;

/// `user/<id>` of the request's user (`get_request_user_filepath(request, None)`).
pub fn user_root(sim: &Sim, headers: &HeaderMap) -> Result<PathBuf, UnknownUser> {
    let user = sim.users.request_user(headers)?;
    if user.is_empty() || user.contains(['/', '\\']) || user == "." || user == ".." {
        return Err(UnknownUser(user));
    }
    Ok(sim.opts.user_dir.join(user))
}

/// aiohttp's `HTTPUnauthorized` page (what `/settings` answers for an unknown user).
pub fn unauthorized() -> Response {
    text(StatusCode::UNAUTHORIZED, "401: Unauthorized")
}

/// `GET /users`: the registered users with `--multi-user`, else whether `user/default` exists.
pub async fn list(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if sim.users.multi_user() {
        return json_response(
            StatusCode::OK,
            &json!({"storage": "server", "users": sim.users.all()}),
        );
    }
    match user_root(&sim, &headers) {
        Ok(dir) => json_response(
            StatusCode::OK,
            &json!({"storage": "server", "migrated": dir.exists()}),
        ),
        Err(_) => internal_error(),
    }
}

/// `POST /users {"username": name}`: answers the new user's id (a JSON string).
pub async fn create(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    // `body["username"]` on anything else raises: aiohttp's 500 page.
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return internal_error();
    };
    let Some(Value::String(name)) = body.get("username") else {
        return internal_error();
    };
    match sim.users.add(name) {
        Ok(id) => json_response(StatusCode::OK, &Value::String(id)),
        Err(crate::users::AddUserError::Write) => internal_error(),
        Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
    }
}
