//! Header rewriting between browser and ComfyUI: hop-by-hop removal, `Host`/`Origin`
//! rewriting (with ComfyUI's own origin check applied first), and `X-Forwarded-*`.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;

use crate::error::ProxyError;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Remove hop-by-hop headers, including every header named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The `Host` the browser used (`Host` header, or the request target's authority for
/// absolute-form and HTTP/2 requests).
pub(crate) fn browser_host(
    headers: &HeaderMap,
    uri_authority: Option<&Authority>,
) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri_authority.map(|a| a.as_str().to_string()))
}

/// ComfyUI 0.3.64's origin-only middleware, applied to the browser-facing `Host`/`Origin`:
/// when `Host` is a loopback name and `Origin` names another host, answer 403. The proxy
/// rewrites both headers for ComfyUI, so it must make this decision itself.
///
/// Loopback means an IP literal in 127.0.0.0/8 or ::1, `localhost` or `*.localhost`
/// (ComfyUI also resolves other names through DNS; the host does not block on DNS here).
pub(crate) fn check_origin(host: Option<&str>, headers: &HeaderMap) -> Result<(), ProxyError> {
    let (Some(host), Some(origin)) = (host, headers.get(header::ORIGIN)) else {
        return Ok(());
    };
    let Ok(origin) = origin.to_str() else {
        return Ok(());
    };
    let host_full = host.to_ascii_lowercase();
    let (host_name, host_port) = split_host_port(&host_full);
    let origin_netloc = origin
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("")
        .to_ascii_lowercase();
    let origin_netloc = origin_netloc.rsplit('@').next().unwrap_or("").to_string();
    let (origin_name, origin_port) = split_host_port(&origin_netloc);

    if !is_loopback_name(host_name) {
        return Ok(());
    }
    let host_cmp = if origin_port.is_none() {
        host_name
    } else {
        host_full.as_str()
    };
    let origin_cmp = if host_port.is_none() {
        origin_name
    } else {
        origin_netloc.as_str()
    };
    if host_cmp.is_empty() || origin_cmp.is_empty() || host_cmp == origin_cmp {
        return Ok(());
    }
    Err(ProxyError::OriginMismatch {
        host: host_cmp.to_string(),
        origin: origin_cmp.to_string(),
    })
}

/// Split `name:port` / `[v6]:port`; the name comes back without brackets.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((name, tail)) => (name, tail.strip_prefix(':').filter(|p| !p.is_empty())),
            None => (rest, None),
        };
    }
    match s.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() => (name, Some(port)),
        Some((name, _)) => (name, None),
        None => (s, None),
    }
}

fn is_loopback_name(name: &str) -> bool {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    name == "localhost" || name.ends_with(".localhost")
}

/// What the browser-facing request looked like, for `X-Forwarded-*`.
pub(crate) struct ForwardedFor<'a> {
    pub(crate) client: Option<SocketAddr>,
    pub(crate) host: Option<&'a str>,
    pub(crate) prefix: Option<&'a str>,
}

/// Turn browser request headers into ComfyUI request headers (in place): hop-by-hop headers
/// removed, `Host` set to ComfyUI's authority, `Origin` (when present) set to
/// `http://<authority>` so ComfyUI's origin check passes, `X-Forwarded-*` added.
pub(crate) fn to_upstream(headers: &mut HeaderMap, upstream: &Authority, fwd: &ForwardedFor<'_>) {
    strip_hop_by_hop(headers);
    if let Ok(host) = HeaderValue::from_str(upstream.as_str()) {
        headers.insert(header::HOST, host);
    }
    if headers.contains_key(header::ORIGIN)
        && let Ok(origin) = HeaderValue::from_str(&format!("http://{upstream}"))
    {
        headers.insert(header::ORIGIN, origin);
    }
    if let Some(addr) = fwd.client {
        let ip = addr.ip().to_string();
        let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert("x-forwarded-for", v);
        }
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !headers.contains_key("x-forwarded-host")
        && let Some(v) = fwd.host.and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert("x-forwarded-host", v);
    }
    if let Some(v) = fwd.prefix.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert("x-forwarded-prefix", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "x"),
            ("comfy-user", "alice"),
        ]);
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["comfy-user"]);
    }

    #[test]
    fn origin_rule_matches_comfyui() {
        let check = |host: &str, origin: &str| {
            check_origin(Some(host), &map(&[("origin", origin)])).is_ok()
        };
        assert!(check("127.0.0.1:8080", "http://127.0.0.1:8080"));
        assert!(!check("127.0.0.1:8080", "http://evil.example"));
        assert!(!check("localhost:8080", "http://127.0.0.1:8080"));
        assert!(!check("[::1]:8080", "http://evil.example:8080"));
        // Port-less origin compares host names only, as ComfyUI does.
        assert!(check("localhost:8080", "http://localhost"));
        // Non-loopback Host: ComfyUI does not check.
        assert!(check("gpu.example.org", "http://evil.example"));
        // `null` origins have an empty netloc: skipped by ComfyUI.
        assert!(check("127.0.0.1:8080", "null"));
        assert!(check_origin(Some("127.0.0.1"), &HeaderMap::new()).is_ok());
    }

    #[test]
    fn upstream_headers_rewritten() {
        let mut h = map(&[
            ("host", "gpu.example.org"),
            ("origin", "http://gpu.example.org"),
            ("x-forwarded-for", "10.0.0.1"),
            ("connection", "close"),
        ]);
        let up: Authority = "127.0.0.1:8188".parse().unwrap();
        let fwd = ForwardedFor {
            client: Some("192.168.1.5:5000".parse().unwrap()),
            host: Some("gpu.example.org"),
            prefix: Some("/comfy"),
        };
        to_upstream(&mut h, &up, &fwd);
        assert_eq!(h["host"], "127.0.0.1:8188");
        assert_eq!(h["origin"], "http://127.0.0.1:8188");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.168.1.5");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "gpu.example.org");
        assert_eq!(h["x-forwarded-prefix"], "/comfy");
        assert!(!h.contains_key("connection"));
        // The rewritten pair passes ComfyUI's own check.
        assert!(check_origin(Some("127.0.0.1:8188"), &h).is_ok());
    }

    #[test]
    fn no_origin_added_when_absent() {
        let mut h = HeaderMap::new();
        let up: Authority = "127.0.0.1:8188".parse().unwrap();
        to_upstream(
            &mut h,
            &up,
            &ForwardedFor {
                client: None,
                host: None,
                prefix: None,
            },
        );
        assert!(!h.contains_key("origin"));
        assert!(!h.contains_key("x-forwarded-for"));
    }
}
