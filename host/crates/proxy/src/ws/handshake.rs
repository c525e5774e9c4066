//! The browser side of the WebSocket opening handshake (RFC 6455 §4.2).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// `Upgrade: websocket` with `Connection: upgrade`.
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(header::UPGRADE, "websocket") && has_token(header::CONNECTION, "upgrade")
}

/// Why the browser's handshake is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    #[error("WebSocket upgrade must be a GET request")]
    NotGet,
    #[error("missing Sec-WebSocket-Key")]
    NoKey,
    #[error("unsupported Sec-WebSocket-Version (only 13)")]
    BadVersion,
}

/// Validate the browser's handshake and compute `Sec-WebSocket-Accept`.
pub(crate) fn accept_key(
    method: &http::Method,
    headers: &HeaderMap,
) -> Result<String, HandshakeError> {
    if method != http::Method::GET {
        return Err(HandshakeError::NotGet);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(HandshakeError::BadVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(HandshakeError::NoKey)?;
    Ok(derive_accept_key(key.as_bytes()))
}

/// The `101 Switching Protocols` answer, echoing the subprotocol ComfyUI chose (if any).
pub(crate) fn switching_protocols(accept: &str, protocol: Option<&HeaderValue>) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn detects_upgrade_tokens_case_insensitively() {
        assert!(is_upgrade_request(&headers(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade")
        ])));
        assert!(!is_upgrade_request(&headers(&[
            ("upgrade", "h2c"),
            ("connection", "upgrade")
        ])));
        assert!(!is_upgrade_request(&headers(&[("upgrade", "websocket")])));
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        let h = headers(&[
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ]);
        assert_eq!(
            accept_key(&http::Method::GET, &h).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            accept_key(&http::Method::POST, &h),
            Err(HandshakeError::NotGet)
        );
        let h = headers(&[("sec-websocket-key", "x"), ("sec-websocket-version", "8")]);
        assert_eq!(
            accept_key(&http::Method::GET, &h),
            Err(HandshakeError::BadVersion)
        );
        let h = headers(&[("sec-websocket-version", "13")]);
        assert_eq!(
            accept_key(&http::Method::GET, &h),
            Err(HandshakeError::NoKey)
        );
    }
}
