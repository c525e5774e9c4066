//! ComfyUI's origin-only middleware: a loopback `Host` with a different `Origin` gets 403
//! (or, with `--enable-cors-header`, CORS headers instead of the check).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::routes::empty;
use crate::state::Sim;

/// `(hostname, port)` of an authority like `127.0.0.1:8188` or `[::1]:80`.
fn split_authority(authority: &str) -> (String, Option<String>) {
    let a = authority.trim().to_ascii_lowercase();
    if let Some(rest) = a.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        return (host.to_string(), tail.strip_prefix(':').map(String::from));
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p.to_string())),
        _ => (a, None),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether ComfyUI would refuse this `Host`/`Origin` pair.
pub fn mismatched(host: &str, origin: &str) -> bool {
    let origin_netloc = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    let (host_name, host_port) = split_authority(host);
    let (origin_name, origin_port) = split_authority(origin_netloc);
    if !is_loopback(&host_name) || host_name.is_empty() || origin_name.is_empty() {
        return false;
    }
    let host_cmp = if origin_port.is_none() {
        host_name.clone()
    } else {
        host.trim().to_ascii_lowercase()
    };
    let origin_cmp = if host_port.is_none() {
        origin_name
    } else {
        origin_netloc.to_ascii_lowercase()
    };
    host_cmp != origin_cmp
}

/// The middleware.
pub async fn origin_check(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    if let Some(allow) = &sim.opts.enable_cors_header {
        if req.method() == Method::OPTIONS {
            return cors(empty(StatusCode::OK), allow);
        }
        let resp = next.run(req).await;
        return cors(resp, allow);
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if let (Some(host), Some(origin)) = (host, origin)
        && mismatched(host, origin)
    {
        tracing::warn!(
            "WARNING: request with non matching host and origin {host} != {origin}, returning 403"
        );
        return empty(StatusCode::FORBIDDEN);
    }
    if req.method() == Method::OPTIONS {
        return empty(StatusCode::OK);
    }
    next.run(req).await
}

fn cors(mut resp: Response, allow: &str) -> Response {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(allow) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, DELETE, PUT, OPTIONS, PATCH"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::mismatched;

    #[test]
    fn host_origin_rules_follow_comfyui() {
        assert!(!mismatched("127.0.0.1:8188", "http://127.0.0.1:8188"));
        assert!(mismatched("127.0.0.1:8188", "https://comfy.example.com"));
        assert!(mismatched("localhost:8188", "http://127.0.0.1:8188"));
        // Non-loopback Host: never checked.
        assert!(!mismatched("comfy.example.com", "https://evil.example"));
        // Port-less origin compares host names only.
        assert!(!mismatched("127.0.0.1:8188", "http://127.0.0.1"));
    }
}
