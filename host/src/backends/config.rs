//! The backends file:
//!
//! ```toml
//! [[comfyui]]
//! name = "gpu-a"
//! url = "http://10.0.0.5:8188"
//!
//! [[serverless]]
//! name = "runpod-sdxl"
//! url = "https://api.runpod.ai/v2/abc123"   # /run, /status/{id}, /cancel/{id}, /health
//! api_key_env = "RUNPOD_API_KEY"            # sent as `Authorization: Bearer ...`
//!
//! [timings]          # all optional; milliseconds
//! health_every_ms = 2000
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Errors reading the backends file.
#[derive(Debug, thiserror::Error)]
pub enum BackendsConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("backend {name:?}: {message}")]
    Invalid { name: String, message: String },
}

/// A remote ComfyUI server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComfyBackend {
    pub name: String,
    /// Base URL (`http://host:port`, no path).
    pub url: String,
}

/// A RunPod-compatible serverless endpoint running worker-comfyui.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerlessBackend {
    pub name: String,
    /// Endpoint base URL; `/run`, `/status/{id}`, `/cancel/{id}` and `/health` hang off it.
    pub url: String,
    /// Environment variable holding the API key (never the key itself in the file).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Longest wait for a worker to pick the job up (cold start) before it is cancelled and
    /// reported as a routing failure.
    #[serde(default = "default_cold_start_s")]
    pub cold_start_timeout_s: u64,
    /// Longest run once a worker has it.
    #[serde(default = "default_execution_s")]
    pub execution_timeout_s: u64,
}

fn default_cold_start_s() -> u64 {
    600
}
fn default_execution_s() -> u64 {
    1800
}

/// How often and how patiently the host talks to backends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timings {
    /// Health/queue check of every backend.
    pub health_every_ms: u64,
    /// Poll of a running remote job (history or serverless status).
    pub poll_every_ms: u64,
    /// A prompt a remote ComfyUI accepted but has in neither its queue nor its history for
    /// this long is reported lost (a "routing" error) instead of waiting forever.
    pub lost_after_ms: u64,
    /// A backend that cannot be reached for this long fails the jobs running on it.
    pub unreachable_after_ms: u64,
    /// Timeout of one HTTP request to a backend.
    pub request_timeout_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            health_every_ms: 2_000,
            poll_every_ms: 1_000,
            lost_after_ms: 15_000,
            unreachable_after_ms: 30_000,
            request_timeout_ms: 15_000,
        }
    }
}

impl Timings {
    pub fn health_every(&self) -> Duration {
        Duration::from_millis(self.health_every_ms.max(50))
    }
    pub fn poll_every(&self) -> Duration {
        Duration::from_millis(self.poll_every_ms.max(20))
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(100))
    }
}

/// Everything in the backends file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendsConfig {
    #[serde(default)]
    pub comfyui: Vec<ComfyBackend>,
    #[serde(default)]
    pub serverless: Vec<ServerlessBackend>,
    #[serde(default)]
    pub timings: Timings,
}

fn valid_base_url(name: &str, url: &str) -> Result<String, BackendsConfigError> {
    let invalid = |message: String| BackendsConfigError::Invalid {
        name: name.to_string(),
        message,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("url {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(format!(
            "url {url:?} must be http(s)://host[:port]"
        )));
    }
    Ok(url.trim_end_matches('/').to_string())
}

impl BackendsConfig {
    /// Reads and validates the file.
    pub fn load(path: &Path) -> Result<Self, BackendsConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| BackendsConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            BackendsConfigError::Parse { message, .. } => BackendsConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text: names unique and non-empty, URLs http(s).
    pub fn parse(text: &str) -> Result<Self, BackendsConfigError> {
        let mut cfg: Self = toml::from_str(text).map_err(|e| BackendsConfigError::Parse {
            path: "backends".into(),
            message: e.to_string(),
        })?;
        let mut seen = std::collections::HashSet::new();
        let names = cfg
            .comfyui
            .iter()
            .map(|b| b.name.clone())
            .chain(cfg.serverless.iter().map(|b| b.name.clone()));
        for name in names {
            if name.is_empty() || name == "local" {
                return Err(BackendsConfigError::Invalid {
                    name,
                    message: "names must be non-empty and not \"local\"".into(),
                });
            }
            if !seen.insert(name.clone()) {
                return Err(BackendsConfigError::Invalid {
                    name,
                    message: "duplicate name".into(),
                });
            }
        }
        for b in &mut cfg.comfyui {
            b.url = valid_base_url(&b.name, &b.url)?;
        }
        for b in &mut cfg.serverless {
            b.url = valid_base_url(&b.name, &b.url)?;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_with_defaults() {
        let cfg = BackendsConfig::parse(
            r#"
            [[comfyui]]
            name = "gpu-a"
            url = "http://127.0.0.1:9001/"
            [[serverless]]
            name = "pod"
            url = "https://api.runpod.ai/v2/abc"
            api_key_env = "RUNPOD_API_KEY"
            [timings]
            lost_after_ms = 500
            "#,
        )
        .unwrap();
        assert_eq!(cfg.comfyui[0].url, "http://127.0.0.1:9001");
        assert_eq!(cfg.serverless[0].cold_start_timeout_s, 600);
        assert_eq!(cfg.timings.lost_after_ms, 500);
        assert_eq!(cfg.timings.poll_every_ms, 1_000);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dup =
            "[[comfyui]]\nname='a'\nurl='http://x:1'\n[[serverless]]\nname='a'\nurl='http://y:1'\n";
        assert!(
            BackendsConfig::parse(dup)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
        let local = "[[comfyui]]\nname='local'\nurl='http://x:1'\n";
        assert!(BackendsConfig::parse(local).is_err());
        let scheme = "[[comfyui]]\nname='a'\nurl='ftp://x:1'\n";
        assert!(
            BackendsConfig::parse(scheme)
                .unwrap_err()
                .to_string()
                .contains("http(s)")
        );
        let typo = "[[comfyui]]\nname='a'\nurl='http://x:1'\nurll='x'\n";
        assert!(BackendsConfig::parse(typo).is_err());
    }
}
