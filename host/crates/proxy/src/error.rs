//! Errors the proxy answers itself, rendered in ComfyUI's error shape
//! (`{"error":{type,message,details,extra_info},"node_errors":{}}`) so the frontend's usual
//! error handling shows them.

use axum::body::Body;
use axum::response::Response;
use comfyhost_protocol::ComfyErrorBody;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::upstream::UpstreamSnapshot;

/// Why the proxy answered instead of ComfyUI.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// ComfyUI could not be reached (connection refused, connect timeout).
    #[error("ComfyUI is not running (state: {})", .snapshot.state)]
    Unavailable {
        snapshot: Box<UpstreamSnapshot>,
        upstream: String,
        cause: String,
    },
    /// The connection broke after the request was sent (reset, malformed response).
    #[error("ComfyUI closed the connection (state: {})", .snapshot.state)]
    BrokenResponse {
        snapshot: Box<UpstreamSnapshot>,
        upstream: String,
        cause: String,
    },
    /// ComfyUI did not send response headers in time.
    #[error("ComfyUI did not answer within {secs} s")]
    Timeout { secs: u64, upstream: String },
    /// The request body is over the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// `Origin` does not match `Host` (ComfyUI's own cross-site check).
    #[error("request with non matching host and origin {host} != {origin}")]
    OriginMismatch { host: String, origin: String },
    /// The path is outside the proxy's mount prefix.
    #[error("no route for {0}")]
    NotFound(String),
    /// The request cannot be forwarded as is.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The prompt interceptor failed (panicked); the prompt was not queued.
    #[error("the prompt interceptor failed: {0}")]
    InterceptorFailed(String),
}

impl ProxyError {
    /// HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BrokenResponse { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::OriginMismatch { .. } => StatusCode::FORBIDDEN,
            ProxyError::NotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::InterceptorFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error.type` string.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Unavailable { .. } | ProxyError::BrokenResponse { .. } => {
                "comfyui_unavailable"
            }
            ProxyError::Timeout { .. } => "comfyui_timeout",
            ProxyError::PayloadTooLarge { .. } => "payload_too_large",
            ProxyError::OriginMismatch { .. } => "origin_mismatch",
            ProxyError::NotFound(_) => "not_found",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::InterceptorFailed(_) => "comfyhost_interceptor_failed",
        }
    }

    /// The JSON body (ComfyUI error shape).
    pub fn body(&self) -> ComfyErrorBody {
        let details = match self {
            ProxyError::Unavailable { cause, .. } | ProxyError::BrokenResponse { cause, .. } => {
                cause.clone()
            }
            ProxyError::Timeout { upstream, .. } => format!("upstream {upstream}"),
            _ => String::new(),
        };
        let mut body = ComfyErrorBody::new(self.kind(), self.to_string(), details);
        match self {
            ProxyError::Unavailable {
                snapshot, upstream, ..
            }
            | ProxyError::BrokenResponse {
                snapshot, upstream, ..
            } => {
                body = body
                    .with_extra("state", json!(snapshot.state))
                    .with_extra("restarting", json!(snapshot.restarting))
                    .with_extra("upstream", json!(upstream));
                if let Some(d) = &snapshot.details {
                    body = body.with_extra("supervisor", d.clone());
                }
            }
            ProxyError::PayloadTooLarge { limit } => {
                body = body.with_extra("max_upload_bytes", json!(limit));
            }
            _ => {}
        }
        body
    }

    /// The full HTTP answer.
    pub fn into_response(self) -> Response {
        json_response(
            self.status(),
            &serde_json::to_value(self.body()).unwrap_or(Value::Null),
        )
    }
}

/// A JSON response with `Cache-Control: no-store`.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_body_names_state_and_cause() {
        let mut snapshot = UpstreamSnapshot::new("restarting");
        snapshot.restarting = true;
        snapshot.details = Some(json!({"exit_code": 1}));
        let e = ProxyError::Unavailable {
            snapshot: Box::new(snapshot),
            upstream: "127.0.0.1:8188".into(),
            cause: "connection refused".into(),
        };
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let v = serde_json::to_value(e.body()).unwrap();
        assert_eq!(v["error"]["type"], "comfyui_unavailable");
        assert_eq!(
            v["error"]["message"],
            "ComfyUI is not running (state: restarting)"
        );
        assert_eq!(v["error"]["details"], "connection refused");
        assert_eq!(v["error"]["extra_info"]["supervisor"]["exit_code"], 1);
        assert_eq!(v["node_errors"], json!({}));
    }

    #[test]
    fn too_large_is_413() {
        let e = ProxyError::PayloadTooLarge { limit: 10 };
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.body().error.extra_info["max_upload_bytes"], 10);
    }
}
