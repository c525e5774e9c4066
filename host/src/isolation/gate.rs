//! The sign-in gate in front of ComfyUI's routes, the sign-in page and the page script that
//! shows who is signed in. With "sign-in required" in effect (see [`super::settings`]), an
//! anonymous browser asking for the ComfyUI page is redirected to `<prefix>/comfyhost/signin`
//! and anonymous API use is refused with 401 in ComfyUI's error shape. Static files of the
//! frontend (scripts, styles, fonts, icons) stay public: they carry nobody's data. `/ws` is
//! left to the socket rules (a socket only receives messages for its own client id).

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{Method, StatusCode, header};

use super::Isolation;

/// Path of the sign-in page, under the prefix.
pub const SIGNIN_PATH: &str = "/comfyhost/signin";
/// Path of the page script showing who is signed in (added to ComfyUI's `/extensions`).
pub const BADGE_PATH: &str = "/comfyhost/ext/signin-badge.js";

const SIGNIN_HTML: &str = include_str!("../../assets/signin.html");
const BADGE_JS: &str = include_str!("../../assets/signin-badge.js");

/// State of the gate middleware.
#[derive(Clone)]
pub struct Gate {
    pub isolation: Isolation,
    pub prefix: String,
}

/// Extensions of the frontend's static files, served to anyone.
const STATIC_EXT: &[&str] = &[
    "js",
    "mjs",
    "css",
    "map",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "svg",
    "ico",
    "png",
    "webp",
    "jpg",
    "jpeg",
    "gif",
    "webmanifest",
];

/// Paths that are ComfyUI API routes even when they end like a file.
const API_ROOTS: &[&str] = &["/api", "/userdata", "/view", "/upload", "/internal"];

/// What the gate does with an anonymous request while sign-in is required.
#[derive(Debug, PartialEq, Eq)]
enum Anonymous {
    Pass,
    Redirect,
    Refuse,
}

fn classify(method: &Method, path: &str) -> Anonymous {
    // The list of page scripts carries nobody's data, and the badge it adds offers sign-in.
    if path.starts_with("/comfyhost/")
        || path == "/ws"
        || path == "/extensions"
        || path == "/api/extensions"
    {
        return Anonymous::Pass;
    }
    let page = matches!(*method, Method::GET | Method::HEAD)
        && (path.is_empty() || path == "/" || path == "/index.html");
    if page {
        return Anonymous::Redirect;
    }
    let api = API_ROOTS.iter().any(|r| {
        path.strip_prefix(r)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    let ext = path
        .rsplit('/')
        .next()
        .and_then(|last| last.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    let static_file = matches!(*method, Method::GET | Method::HEAD)
        && ext.is_some_and(|e| STATIC_EXT.contains(&e.as_str()));
    if static_file && !api {
        Anonymous::Pass
    } else {
        Anonymous::Refuse
    }
}

/// Middleware on ComfyUI's routes: a `/ws` client id another user claimed is dropped from
/// the request (ComfyUI gives the socket a fresh one).
pub async fn bind_client_id(State(g): State<Gate>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let is_ws = path.strip_prefix(g.prefix.as_str()).unwrap_or(path) == "/ws";
    if is_ws
        && let Some(query) = req.uri().query()
        && let Some(id) = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "clientId")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty())
    {
        let caller =
            super::Caller::from_user(g.isolation.identity().identify(req.headers()).as_ref());
        if !g.isolation.socket_client_id(&id, &caller) {
            tracing::info!(client_id = %id, "socket asked for another user's client id; opened without it");
            let pq = super::client_ids::without_client_id(req.uri().path(), query);
            match pq.parse() {
                Ok(uri) => *req.uri_mut() = uri,
                Err(_) => return StatusCode::BAD_REQUEST.into_response(),
            }
        }
    }
    next.run(req).await
}

/// Middleware on ComfyUI's routes.
pub async fn require_sign_in(State(g): State<Gate>, req: Request, next: Next) -> Response {
    let path = req
        .uri()
        .path()
        .strip_prefix(g.prefix.as_str())
        .unwrap_or(req.uri().path())
        .to_string();
    let decision = classify(req.method(), &path);
    if decision == Anonymous::Pass
        || g.isolation.identity().identify(req.headers()).is_some()
        || !g.isolation.settings().sign_in_required
    {
        return next.run(req).await;
    }
    let signin = format!("{}{SIGNIN_PATH}", g.prefix);
    match decision {
        Anonymous::Redirect => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, format!("{signin}?next={}/", g.prefix)),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
        )
            .into_response(),
        _ => {
            let mut resp = super::refusal(
                StatusCode::UNAUTHORIZED,
                "comfyhost_sign_in_required",
                "Sign in first: this workshop host does not accept anonymous use",
                &format!("Open {signin} and sign in with the token your instructor gave you."),
            );
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            resp
        }
    }
}

/// The sign-in page and the badge script, for `prefix`.
pub fn router(prefix: &str) -> Router {
    let p = prefix.to_string();
    Router::new()
        .route(
            &format!("{prefix}{SIGNIN_PATH}"),
            get(move || {
                let page = SIGNIN_HTML.replace("{{PREFIX}}", &html_escape(&p));
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                            (header::CACHE_CONTROL, "no-store"),
                        ],
                        page,
                    )
                }
            }),
        )
        .route(
            &format!("{prefix}{BADGE_PATH}"),
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    BADGE_JS,
                )
            }),
        )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_redirect_api_refuses_static_files_pass() {
        let get = Method::GET;
        assert_eq!(classify(&get, "/"), Anonymous::Redirect);
        assert_eq!(classify(&get, ""), Anonymous::Redirect);
        assert_eq!(classify(&get, "/index.html"), Anonymous::Redirect);
        assert_eq!(classify(&get, "/assets/index-abc.js"), Anonymous::Pass);
        assert_eq!(classify(&get, "/comfyhost/signin"), Anonymous::Pass);
        assert_eq!(classify(&get, "/ws"), Anonymous::Pass);
        assert_eq!(classify(&get, "/api/extensions"), Anonymous::Pass);
        for api in [
            "/queue",
            "/api/queue",
            "/history",
            "/api/jobs",
            "/prompt",
            "/view",
            "/api/userdata/workflows%2Fa.json",
            "/userdata/a.json",
            "/object_info",
            "/api/settings",
        ] {
            assert_eq!(classify(&get, api), Anonymous::Refuse, "{api}");
        }
        assert_eq!(classify(&Method::POST, "/prompt"), Anonymous::Refuse);
        assert_eq!(classify(&Method::POST, "/x.js"), Anonymous::Refuse);
    }
}
