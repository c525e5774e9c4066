//! Readiness / health probe (`GET /system_stats`) and the pre-launch port check.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use reqwest::Url;

use crate::error::SupervisorError;

/// Largest `/system_stats` body we read (real ones are well under 4 KiB).
const MAX_BODY_BYTES: usize = 256 * 1024;

/// What a `GET <base>/system_stats` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// HTTP 200 with ComfyUI's shape (`{"system": {"comfyui_version": …}, …}`).
    ComfyUi {
        /// `system.comfyui_version`, when present.
        version: Option<String>,
    },
    /// HTTP 200 but the body is not ComfyUI's system stats.
    OtherOk,
    /// Any other HTTP status.
    HttpStatus(u16),
    /// No HTTP answer (refused, reset, timeout, not HTTP); the text says which.
    Unreachable(String),
}

impl ProbeOutcome {
    /// Readiness: HTTP 200 from `/system_stats`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::ComfyUi { .. } | Self::OtherOk)
    }

    /// Short text for status reasons.
    pub fn describe(&self) -> String {
        match self {
            Self::ComfyUi { version: Some(v) } => format!("ComfyUI {v}"),
            Self::ComfyUi { version: None } => "ComfyUI (version unknown)".to_owned(),
            Self::OtherOk => "HTTP 200 but not ComfyUI's /system_stats".to_owned(),
            Self::HttpStatus(code) => format!("HTTP {code} from /system_stats"),
            Self::Unreachable(why) => why.clone(),
        }
    }
}

/// A lean HTTP client for probes: no proxy from the environment, short timeouts.
#[derive(Debug, Clone)]
pub struct Prober {
    client: reqwest::Client,
}

impl Prober {
    /// Builds the client; `timeout` bounds each whole request.
    pub fn new(timeout: Duration) -> Result<Self, SupervisorError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| SupervisorError::HttpClient(e.to_string()))?;
        Ok(Self { client })
    }

    /// `GET <base>system_stats`; `base` must end with `/`.
    pub async fn probe(&self, base: &Url) -> ProbeOutcome {
        let url = match base.join("system_stats") {
            Ok(url) => url,
            Err(e) => return ProbeOutcome::Unreachable(format!("bad URL: {e}")),
        };
        let mut response = match self.client.get(url.clone()).send().await {
            Ok(r) => r,
            Err(e) => return ProbeOutcome::Unreachable(describe_reqwest_error(&url, &e)),
        };
        let status = response.status().as_u16();
        if status != 200 {
            return ProbeOutcome::HttpStatus(status);
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_BODY_BYTES {
                        return ProbeOutcome::OtherOk;
                    }
                }
                Ok(None) => break,
                Err(e) => return ProbeOutcome::Unreachable(describe_reqwest_error(&url, &e)),
            }
        }
        classify_body(&body)
    }
}

fn describe_reqwest_error(url: &Url, e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The source chain carries the useful part ("Connection refused (os error 111)").
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        format!("GET {url}: {kind}")
    } else {
        format!("GET {url}: {kind}: {detail}")
    }
}

/// Tells ComfyUI's `/system_stats` body from anything else.
pub fn classify_body(body: &[u8]) -> ProbeOutcome {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return ProbeOutcome::OtherOk;
    };
    match value.get("system").and_then(|s| s.as_object()) {
        Some(system)
            if value.get("devices").is_some() || system.contains_key("comfyui_version") =>
        {
            ProbeOutcome::ComfyUi {
                version: system
                    .get("comfyui_version")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
            }
        }
        _ => ProbeOutcome::OtherOk,
    }
}

/// Who holds the internal port before a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortCheck {
    /// Nobody; we may launch.
    Free,
    /// A ComfyUI answers there.
    ComfyUi {
        /// Its version, if reported.
        version: Option<String>,
    },
    /// Something else holds it (the text says what we saw).
    Other(String),
}

/// Checks `127.0.0.1:<port>`: bindable → free; otherwise probe it to see who answers.
pub async fn check_port(port: u16, prober: &Prober) -> PortCheck {
    // std sets SO_REUSEADDR, so sockets in TIME_WAIT from a previous run do not count as taken.
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(listener) => {
            drop(listener);
            return PortCheck::Free;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        Err(e) => return PortCheck::Other(format!("cannot bind 127.0.0.1:{port}: {e}")),
    }
    let base = match Url::parse(&format!("http://127.0.0.1:{port}/")) {
        Ok(url) => url,
        Err(e) => return PortCheck::Other(e.to_string()),
    };
    match prober.probe(&base).await {
        ProbeOutcome::ComfyUi { version } => PortCheck::ComfyUi { version },
        other => PortCheck::Other(other.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_recorded_system_stats() {
        let body = br#"{"system":{"os":"posix","comfyui_version":"0.3.64","argv":["main.py"]},"devices":[]}"#;
        assert_eq!(
            classify_body(body),
            ProbeOutcome::ComfyUi {
                version: Some("0.3.64".into())
            }
        );
        assert_eq!(classify_body(b"<html>"), ProbeOutcome::OtherOk);
        assert_eq!(classify_body(br#"{"system":"x"}"#), ProbeOutcome::OtherOk);
        assert!(ProbeOutcome::OtherOk.is_ok());
        assert!(!ProbeOutcome::HttpStatus(404).is_ok());
    }

    #[tokio::test]
    async fn free_and_foreign_ports() {
        let prober = Prober::new(Duration::from_millis(500)).unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        // Held by a socket that never answers HTTP: "other", with the reason.
        match check_port(port, &prober).await {
            PortCheck::Other(why) => assert!(why.contains("system_stats"), "{why}"),
            other => panic!("expected Other, got {other:?}"),
        }
        drop(listener);
        assert_eq!(check_port(port, &prober).await, PortCheck::Free);
        let base = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        match prober.probe(&base).await {
            ProbeOutcome::Unreachable(why) => assert!(why.contains("connection"), "{why}"),
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }
}
