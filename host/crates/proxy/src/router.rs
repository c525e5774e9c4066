//! The axum entry point: one fallback handler that dispatches to HTTP forwarding or the
//! WebSocket relay.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::Method;

use crate::error::ProxyError;
use crate::headers::{self, ForwardedFor};
use crate::path::{PrefixMatch, strip_prefix};
use crate::state::ProxyState;
use crate::{http_forward, unavailable_page, ws};

/// The proxy as an axum router with only a fallback, so every route the host registers itself
/// (`/comfyhost/*`, dashboard, API) takes precedence:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use comfyhost_proxy::{ProxyConfig, ProxyState, router};
/// let proxy = ProxyState::builder(ProxyConfig::new("127.0.0.1:8188")?).build()?;
/// let host_routes = axum::Router::new().route("/comfyhost/health", axum::routing::get(|| async { "ok" }));
/// let app = host_routes.fallback_service(router(proxy.clone()));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
/// # Ok(()) }
/// ```
///
/// Serve with `ConnectInfo<SocketAddr>` to get `X-Forwarded-For`; the upgrade support of
/// `axum::serve` is needed for WebSockets.
pub fn router(state: ProxyState) -> Router {
    Router::new().fallback(proxy_request).with_state(state)
}

async fn proxy_request(State(state): State<ProxyState>, req: Request) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let config = state.config();
    let prefix = config.prefix.as_deref();
    let upstream_pq = match strip_prefix(prefix, &pq) {
        PrefixMatch::Inside(p) => p.into_owned(),
        PrefixMatch::Bare(rest) => {
            if matches!(*req.method(), Method::GET | Method::HEAD)
                && !ws::is_upgrade_request(req.headers())
            {
                // The frontend needs the trailing slash to compute its API base.
                return Redirect::permanent(&format!("{}/{rest}", prefix.unwrap_or("")))
                    .into_response();
            }
            format!("/{rest}")
        }
        PrefixMatch::Outside => return ProxyError::NotFound(pq).into_response(),
    };

    let host = headers::browser_host(req.headers(), req.uri().authority());
    if config.enforce_origin_check
        && let Err(e) = headers::check_origin(host.as_deref(), req.headers())
    {
        tracing::warn!(%e, "rejected cross-origin request (ComfyUI origin rule)");
        return e.into_response();
    }
    let fwd = ForwardedFor {
        client,
        host: host.as_deref(),
        prefix,
    };

    if ws::is_upgrade_request(req.headers()) {
        return ws::handle(state.clone(), req, upstream_pq, fwd).await;
    }
    let page_load = unavailable_page::wants_html(req.method(), req.headers());
    match http_forward::forward(&state, req, &upstream_pq, fwd).await {
        Ok(resp) => resp,
        Err(ProxyError::Unavailable {
            snapshot, cause, ..
        }) if page_load => unavailable_page::response(&snapshot, &cause),
        Err(e) => e.into_response(),
    }
}
