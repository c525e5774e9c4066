//! Outbound HTTP capability: `wasi:http/outgoing-handler` is linked for every plugin, and these
//! hooks let a request through only when its origin (scheme, host, port) is granted.

use std::sync::Arc;
use std::time::Duration;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::capabilities::log::{PluginLogLevel, PluginLogSink, emit};
use crate::grants::HttpOrigin;

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

/// Connect timeout when the guest sets none (the call deadline bounds it anyway).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First-byte and between-bytes timeout when the guest sets none.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The origin of `uri`, with the default port of its scheme when the URI has none.
pub fn origin_of(uri: &http::Uri) -> Option<HttpOrigin> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = match uri.port_u16() {
        Some(p) => p,
        None => match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        },
    };
    Some(HttpOrigin { scheme, host, port })
}

/// True when `uri`'s origin is exactly one of `allowed` (host compared case-insensitively).
pub fn is_allowed(allowed: &[HttpOrigin], uri: &http::Uri) -> bool {
    let Some(origin) = origin_of(uri) else {
        return false;
    };
    allowed.iter().any(|a| {
        a.scheme.eq_ignore_ascii_case(&origin.scheme)
            && a.host.eq_ignore_ascii_case(&origin.host)
            && a.port == origin.port
    })
}

/// Per-call `WasiHttpHooks`: allow-list check, denial logged to the plugin log.
pub struct AllowListHooks {
    allowed: Arc<[HttpOrigin]>,
    log: Arc<dyn PluginLogSink>,
    plugin_id: Arc<str>,
    prompt_id: Option<String>,
}

impl AllowListHooks {
    /// Hooks allowing exactly `allowed`.
    pub fn new(
        allowed: Arc<[HttpOrigin]>,
        log: Arc<dyn PluginLogSink>,
        plugin_id: Arc<str>,
        prompt_id: Option<String>,
    ) -> Self {
        Self {
            allowed,
            log,
            plugin_id,
            prompt_id,
        }
    }
}

impl WasiHttpHooks for AllowListHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        if !is_allowed(&self.allowed, request.uri()) {
            emit(
                &*self.log,
                &self.plugin_id,
                self.prompt_id.as_deref(),
                PluginLogLevel::Warn,
                format!(
                    "outbound HTTP to {} denied: origin not granted",
                    request.uri()
                ),
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        drop(fut);
        let mut options = options.unwrap_or_default();
        options
            .connect_timeout
            .get_or_insert(DEFAULT_CONNECT_TIMEOUT);
        options.first_byte_timeout.get_or_insert(DEFAULT_IO_TIMEOUT);
        options
            .between_bytes_timeout
            .get_or_insert(DEFAULT_IO_TIMEOUT);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn o(scheme: &str, host: &str, port: u16) -> HttpOrigin {
        HttpOrigin {
            scheme: scheme.into(),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn origins_match_exactly_with_default_ports() {
        let allowed = [
            o("https", "api.runpod.ai", 443),
            o("http", "127.0.0.1", 8189),
        ];
        let ok = |u: &str| is_allowed(&allowed, &u.parse().unwrap());
        assert!(ok("https://api.runpod.ai/v2/run"));
        assert!(ok("https://API.runpod.ai:443/x"));
        assert!(ok("http://127.0.0.1:8189/prompt"));
        assert!(!ok("http://api.runpod.ai/v2/run"), "scheme differs");
        assert!(!ok("https://api.runpod.ai:8443/"), "port differs");
        assert!(!ok("http://127.0.0.1/prompt"), "default port 80 differs");
        assert!(!ok("https://evil.api.runpod.ai/"), "subdomain");
        assert!(
            !ok("http://localhost:8189/"),
            "name is not the granted address"
        );
        assert!(!ok("/relative"), "no authority");
    }
}
