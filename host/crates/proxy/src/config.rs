//! Static proxy configuration: where ComfyUI lives, the mount prefix, limits and timeouts.

use std::time::Duration;

use http::uri::Authority;

/// ComfyUI's default `--max-upload-size` (100 MB, counted by aiohttp as MiB).
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;

/// Errors in a [`ProxyConfig`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The upstream is not a bare `host:port` authority.
    #[error(
        "upstream {0:?} is not a host:port authority (no scheme, no path), e.g. 127.0.0.1:8188"
    )]
    BadUpstream(String),
    /// The prefix must look like `/comfy` (leading slash, no trailing slash, no query).
    #[error(
        "path prefix {0:?} must start with '/', must not end with '/', and must not contain '?' or '#'"
    )]
    BadPrefix(String),
    /// A limit or timeout is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

/// Configuration of the ComfyUI reverse proxy.
///
/// Build it with [`ProxyConfig::new`] and adjust the public fields; [`ProxyConfig::validate`]
/// (called by [`crate::ProxyState::builder`]) checks them.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// ComfyUI's `host:port` (plain HTTP, normally loopback). Can be switched at run time with
    /// [`crate::ProxyState::set_upstream`].
    pub upstream: Authority,
    /// Mount prefix such as `/comfy`; stripped (byte for byte, never decoded) before forwarding,
    /// and put back in front of `Location` headers. `None` mounts ComfyUI at `/`.
    pub prefix: Option<String>,
    /// Largest request body passed on; bigger ones get `413`. Mirrors ComfyUI's
    /// `--max-upload-size` (default 100 MiB).
    pub max_upload_bytes: u64,
    /// Largest `POST /prompt` body buffered for the [`crate::PromptInterceptor`].
    pub max_prompt_bytes: u64,
    /// TCP connect timeout towards ComfyUI (HTTP and WebSocket).
    pub connect_timeout: Duration,
    /// How long to wait for ComfyUI's response headers once the request is sent
    /// (`None`: wait forever). Bodies stream without a time limit.
    pub response_timeout: Option<Duration>,
    /// Idle keep-alive connections to ComfyUI are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Reject requests whose `Origin` does not match `Host` exactly as ComfyUI's
    /// origin-only middleware does (loopback `Host` only, `403`). The proxy rewrites both
    /// headers for ComfyUI, so without this check ComfyUI's cross-site protection would be lost.
    pub enforce_origin_check: bool,
    /// Largest WebSocket message relayed (either direction).
    pub ws_max_message_bytes: usize,
    /// Queue length for host-injected messages per browser socket.
    pub ws_injection_queue: usize,
    /// After one side of a relayed WebSocket closed, how long the other side gets to finish
    /// its close handshake.
    pub ws_close_grace: Duration,
}

impl ProxyConfig {
    /// Defaults for a ComfyUI at `upstream` (`"127.0.0.1:8188"`).
    pub fn new(upstream: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            upstream: parse_authority(upstream)?,
            prefix: None,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_prompt_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Some(Duration::from_secs(300)),
            pool_idle_timeout: Duration::from_secs(60),
            enforce_origin_check: true,
            ws_max_message_bytes: 64 * 1024 * 1024,
            ws_injection_queue: 256,
            ws_close_grace: Duration::from_secs(3),
        })
    }

    /// Set the mount prefix (`"/comfy"`); `""` or `"/"` means none.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        self.prefix = normalize_prefix(prefix)?;
        Ok(self)
    }

    /// Check every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = &self.prefix {
            normalize_prefix(p)?;
        }
        if self.max_upload_bytes == 0 {
            return Err(ConfigError::Zero("max_upload_bytes"));
        }
        if self.max_prompt_bytes == 0 {
            return Err(ConfigError::Zero("max_prompt_bytes"));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::Zero("connect_timeout"));
        }
        if self.ws_max_message_bytes == 0 {
            return Err(ConfigError::Zero("ws_max_message_bytes"));
        }
        if self.ws_injection_queue == 0 {
            return Err(ConfigError::Zero("ws_injection_queue"));
        }
        Ok(())
    }
}

/// Parse `host:port` (no scheme, no path, no userinfo).
pub fn parse_authority(s: &str) -> Result<Authority, ConfigError> {
    let bad = || ConfigError::BadUpstream(s.to_string());
    if s.is_empty() || s.contains(['/', '@', '?', '#']) {
        return Err(bad());
    }
    s.parse::<Authority>().map_err(|_| bad())
}

fn normalize_prefix(prefix: &str) -> Result<Option<String>, ConfigError> {
    if prefix.is_empty() || prefix == "/" {
        return Ok(None);
    }
    let ok = prefix.starts_with('/')
        && !prefix.ends_with('/')
        && !prefix.contains(['?', '#'])
        && prefix.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(Some(prefix.to_string()))
    } else {
        Err(ConfigError::BadPrefix(prefix.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_accepts_host_port_only() {
        assert_eq!(
            parse_authority("127.0.0.1:8188").unwrap().as_str(),
            "127.0.0.1:8188"
        );
        assert_eq!(
            parse_authority("[::1]:8188").unwrap().port_u16(),
            Some(8188)
        );
        for bad in [
            "",
            "http://127.0.0.1:8188",
            "127.0.0.1:8188/x",
            "u@h:1",
            "h:1?x",
        ] {
            assert_eq!(
                parse_authority(bad),
                Err(ConfigError::BadUpstream(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn prefix_rules() {
        let c = ProxyConfig::new("127.0.0.1:8188").unwrap();
        assert_eq!(
            c.clone().with_prefix("/comfy").unwrap().prefix.as_deref(),
            Some("/comfy")
        );
        assert_eq!(c.clone().with_prefix("/").unwrap().prefix, None);
        assert_eq!(c.clone().with_prefix("").unwrap().prefix, None);
        for bad in ["comfy", "/comfy/", "/a?b", "/a b"] {
            assert!(c.clone().with_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_limits_rejected() {
        let mut c = ProxyConfig::new("127.0.0.1:8188").unwrap();
        assert!(c.validate().is_ok());
        c.max_upload_bytes = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero("max_upload_bytes")));
    }
}
