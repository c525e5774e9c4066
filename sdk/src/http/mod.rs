//! Outbound HTTP through `wasi:http/outgoing-handler`.
//!
//! The host lets a plugin reach only the origins (`scheme://host:port`, exact) listed under
//! `[capabilities] http` in its manifest *and* granted by an admin; anything else fails with
//! [`HttpError::Denied`]. There is no ambient network: raw sockets are not linked.
//!
//! ```no_run
//! use comfyhost_sdk::http::{self, Method};
//! # fn demo() -> Result<(), comfyhost_sdk::http::HttpError> {
//! let resp = http::Request::new(Method::Post, "https://api.runpod.ai/v2/abc/run")
//!     .header("authorization", "Bearer ...")
//!     .json(&serde_json::json!({"input": {}}))?
//!     .send()?;
//! let status: serde_json::Value = resp.error_for_status()?.json()?;
//! # Ok(()) }
//! ```

mod target;
mod url;

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use crate::types::PluginError;

pub use url::Target;

/// Largest response body read by default (8 MiB); plugins run under a memory cap.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http(s)://host[:port]/path`.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host refused the origin: it is not in the manifest's `[capabilities] http` or an admin
    /// has not granted it.
    #[error(
        "the host denied the request to {origin}: list it under [capabilities] http in plugin.toml and have an admin grant it"
    )]
    Denied {
        /// `scheme://host:port` of the refused request.
        origin: String,
    },
    /// A header name or value was rejected (malformed, or forbidden by the host, like `host`).
    #[error("header `{name}` rejected: {reason}")]
    InvalidHeader {
        /// The header name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Connecting, or waiting for the response, took too long.
    #[error("request to {origin} timed out: {detail}")]
    Timeout {
        /// `scheme://host:port`.
        origin: String,
        /// Which phase.
        detail: String,
    },
    /// DNS failure, refused or reset connection, unreachable destination.
    #[error("cannot reach {origin}: {detail}")]
    Connection {
        /// `scheme://host:port`.
        origin: String,
        /// What failed.
        detail: String,
    },
    /// The response is bigger than the configured limit.
    #[error("response body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The server answered with a status the caller treats as failure (see [`Response::error_for_status`]).
    #[error("HTTP {status}: {body_snippet}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body, for the log.
        body_snippet: String,
    },
    /// The body is not what the caller expected (not UTF-8, not the JSON type).
    #[error("response body: {0}")]
    Body(String),
    /// Anything else the HTTP layer reported (TLS, protocol errors).
    #[error("HTTP request failed: {0}")]
    Protocol(String),
    /// Outbound HTTP exists only inside the sandbox (wasm32-wasip2); this is a native build.
    #[error("outbound HTTP is only available inside comfyhost (wasm32-wasip2 build)")]
    Unavailable,
}

impl From<HttpError> for PluginError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::InvalidUrl { .. }
            | HttpError::InvalidHeader { .. }
            | HttpError::Denied { .. } => PluginError::Config(e.to_string()),
            _ => PluginError::Upstream(e.to_string()),
        }
    }
}

/// A response, body read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in the order received; names lower-case as the host delivers them.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive), when it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Ok(self)` for 2xx, otherwise [`HttpError::Status`] with the start of the body.
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.is_success() {
            return Ok(self);
        }
        let text = String::from_utf8_lossy(&self.body);
        let body_snippet: String = text.chars().take(200).collect();
        Err(HttpError::Status {
            status: self.status,
            body_snippet,
        })
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, HttpError> {
        std::str::from_utf8(&self.body).map_err(|e| HttpError::Body(format!("not UTF-8: {e}")))
    }

    /// The body decoded as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Body(format!("not the expected JSON: {e}")))
    }
}

/// A request under construction. [`Request::send`] performs it.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    connect_timeout: Option<Duration>,
    first_byte_timeout: Option<Duration>,
    between_bytes_timeout: Option<Duration>,
    max_response_bytes: usize,
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            connect_timeout: None,
            first_byte_timeout: None,
            between_bytes_timeout: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// Add a header (repeatable).
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Set a JSON body and `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| HttpError::Body(format!("cannot encode JSON body: {e}")))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Time allowed to connect. The hook's deadline bounds the whole call regardless.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// Time allowed until the first response byte.
    pub fn first_byte_timeout(mut self, d: Duration) -> Self {
        self.first_byte_timeout = Some(d);
        self
    }

    /// Time allowed between response body chunks.
    pub fn between_bytes_timeout(mut self, d: Duration) -> Self {
        self.between_bytes_timeout = Some(d);
        self
    }

    /// Largest response body accepted ([`DEFAULT_MAX_RESPONSE_BYTES`] unless set).
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// The request method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Perform the request and read the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let target = Target::parse(&self.url)?;
        target::send(&self, &target)
    }
}

/// Perform one request: `request(Method::Get, "https://example.com/x", &[("accept", "application/json")], None)`.
pub fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, HttpError> {
    let mut req = Request::new(method, url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    req.send()
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::new(Method::Get, url).send()
}

/// `POST url` with a JSON body.
pub fn post_json<T: Serialize + ?Sized>(url: &str, value: &T) -> Result<Response, HttpError> {
    Request::new(Method::Post, url).json(value)?.send()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), b"application/json".to_vec())],
            body: body.into(),
        }
    }

    #[test]
    fn response_accessors() {
        let r = resp(200, r#"{"id":"abc"}"#);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-missing"), None);
        assert_eq!(r.text().unwrap(), r#"{"id":"abc"}"#);
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["id"], "abc");
        assert!(matches!(r.json::<Vec<u8>>(), Err(HttpError::Body(_))));
    }

    #[test]
    fn error_for_status_keeps_a_snippet() {
        assert!(resp(204, "").error_for_status().is_ok());
        let long = "x".repeat(1000);
        match resp(503, &long).error_for_status() {
            Err(HttpError::Status {
                status: 503,
                body_snippet,
            }) => assert_eq!(body_snippet.len(), 200),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_map_to_plugin_errors() {
        let denied = HttpError::Denied {
            origin: "https://evil.example:443".into(),
        };
        assert!(denied.to_string().contains("[capabilities] http"));
        assert!(matches!(PluginError::from(denied), PluginError::Config(_)));
        assert!(matches!(
            PluginError::from(HttpError::BodyTooLarge { limit: 1 }),
            PluginError::Upstream(_)
        ));
    }

    #[test]
    fn invalid_url_fails_before_any_io() {
        let err = request(Method::Get, "ftp://x/", &[], None).unwrap_err();
        assert!(matches!(err, HttpError::InvalidUrl { .. }), "{err:?}");
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn native_build_is_unavailable() {
        assert_eq!(
            get("https://example.com/").unwrap_err(),
            HttpError::Unavailable
        );
    }
}
