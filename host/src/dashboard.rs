//! The admin dashboard (`dashboard/`): static files compiled into the binary and served
//! at `<prefix>/comfyhost/`. No build step; it talks to the host API with the admin's session
//! cookie and CSRF token.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const TRUST_JS: &str = include_str!("../../dashboard/trust.js");
const STYLE: &str = include_str!("../../dashboard/style.css");
const USERS_JS: &str = include_str!("../../dashboard/users.js");
const ROOM_JS: &str = include_str!("../../dashboard/room.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// Routes for `prefix` (`""` or `/comfy`).
pub fn router(prefix: &str) -> Router {
    let base = format!("{prefix}/comfyhost");
    let slash = format!("{base}/");
    Router::new()
        .route(
            &base,
            get(move || {
                let to = slash.clone();
                async move { Redirect::permanent(&to) }
            }),
        )
        .route(
            &format!("{base}/"),
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            &format!("{base}/app.js"),
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            &format!("{base}/trust.js"),
            get(|| async { asset("text/javascript; charset=utf-8", TRUST_JS) }),
        )
        .route(
            &format!("{base}/style.css"),
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            &format!("{base}/users.js"),
            get(|| async { asset("text/javascript; charset=utf-8", USERS_JS) }),
        )
        .route(
            &format!("{base}/room.js"),
            get(|| async { asset("text/javascript; charset=utf-8", ROOM_JS) }),
        )
}
