//! The small HTML page a browser gets instead of ComfyUI's UI while ComfyUI is down: what is
//! happening (starting, restarting, stopped, failed), the supervisor's reason, and a reload
//! every few seconds until ComfyUI answers. JSON clients keep the ComfyUI-shaped error.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::upstream::UpstreamSnapshot;

/// Seconds between automatic retries (also sent as `Retry-After`).
const RETRY_S: u32 = 3;

/// Whether the request is a page load (`GET`/`HEAD` accepting `text/html`).
pub(crate) fn wants_html(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        && headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The headline for a supervisor state.
fn headline(snapshot: &UpstreamSnapshot) -> &'static str {
    match snapshot.state.as_str() {
        "starting" => "ComfyUI is starting",
        "backoff" | "restarting" => "ComfyUI is restarting",
        "stopping" => "ComfyUI is stopping",
        "stopped" => "ComfyUI is stopped",
        "failed" => "ComfyUI failed to start",
        _ if snapshot.restarting => "ComfyUI is restarting",
        _ => "ComfyUI is not reachable",
    }
}

/// `503` with the page.
pub(crate) fn response(snapshot: &UpstreamSnapshot, cause: &str) -> Response {
    let title = headline(snapshot);
    let reason = match &snapshot.details {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) if !v.is_null() => v.to_string(),
        _ => cause.to_string(),
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{RETRY_S}\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;background:#202020;color:#ddd;display:flex;\
align-items:center;justify-content:center;min-height:100vh;margin:0}}main{{max-width:36em;padding:2em}}\
h1{{font-size:1.4em;color:#fff}}code{{color:#aaa;white-space:pre-wrap}}</style></head>\
<body><main><h1 id=\"comfyhost-state\" data-state=\"{state}\">{title}</h1>\
<p>State: <b>{state}</b></p><p>Reason: <code>{reason}</code></p>\
<p>This page reloads by itself every {RETRY_S} seconds and shows ComfyUI as soon as it answers.</p>\
</main></body></html>\n",
        state = escape(&snapshot.state),
        reason = escape(&reason),
    );
    let mut resp = Response::new(Body::from(html));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_S));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_the_state_and_escapes_the_reason() {
        let mut s = UpstreamSnapshot::new("backoff");
        s.details = Some(serde_json::json!("exit code 1 <script>"));
        let r = response(&s, "refused");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert_eq!(headline(&s), "ComfyUI is restarting");
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
        assert_eq!(
            headline(&UpstreamSnapshot::new("failed")),
            "ComfyUI failed to start"
        );
    }

    #[test]
    fn only_page_loads_get_html() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html,*/*"));
        assert!(wants_html(&Method::GET, &h));
        assert!(!wants_html(&Method::POST, &h));
        assert!(!wants_html(&Method::GET, &HeaderMap::new()));
    }
}
