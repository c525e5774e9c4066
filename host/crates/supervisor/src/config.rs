//! Supervisor configuration: what to supervise and every timing involved.

use std::time::Duration;

use reqwest::Url;

use crate::error::SupervisorError;
use crate::spec::LaunchSpec;

/// What to do when the internal port already answers as ComfyUI at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortPolicy {
    /// Use the running ComfyUI without managing it (state `Attached`).
    Adopt,
    /// Fail with "port N is in use by another ComfyUI (pid unknown)".
    #[default]
    Refuse,
}

/// Every delay and limit of the lifecycle. Tests shrink them; production keeps the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    /// Readiness poll interval while starting (default 250 ms).
    pub probe_interval: Duration,
    /// Timeout of one `/system_stats` request (default 2 s).
    pub probe_timeout: Duration,
    /// Give up starting after this long (default 600 s: big custom-node sets take minutes).
    pub startup_timeout: Duration,
    /// SIGTERM → SIGKILL grace period on stop (default 10 s).
    pub stop_grace: Duration,
    /// First restart delay after a crash (default 1 s); doubles per consecutive crash.
    pub backoff_initial: Duration,
    /// Restart delay cap (default 60 s).
    pub backoff_max: Duration,
    /// Ready this long without crashing resets the backoff (default 60 s).
    pub stable_after: Duration,
    /// This many crashes within `crash_loop_window` means a crash loop → `Failed` (default 5).
    /// Only crashes before ComfyUI became ready count; one that was ready is always restarted
    /// (with backoff).
    pub crash_loop_max: u32,
    /// Window for crash-loop detection (default 300 s).
    pub crash_loop_window: Duration,
    /// Health-check interval in attach mode and for an adopted ComfyUI (default 2 s).
    pub attach_interval: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_millis(250),
            probe_timeout: Duration::from_secs(2),
            startup_timeout: Duration::from_secs(600),
            stop_grace: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
            crash_loop_max: 5,
            crash_loop_window: Duration::from_secs(300),
            attach_interval: Duration::from_secs(2),
        }
    }
}

impl Timings {
    /// Defaults for the embedded simulator, which is ready in well under a second.
    pub fn simulator() -> Self {
        Self {
            probe_interval: Duration::from_millis(100),
            startup_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(5),
            stable_after: Duration::from_secs(10),
            ..Self::default()
        }
    }
}

/// What the supervisor looks after.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per supervisor; boxing would only complicate construction"
)]
pub enum Target {
    /// Launch and manage a ComfyUI process.
    Managed(LaunchSpec),
    /// Only health-check a ComfyUI someone else runs, at this base URL.
    Attach(Url),
}

/// Full supervisor configuration. Build with [`SupervisorConfig::managed`] or
/// [`SupervisorConfig::attach`], then adjust the public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// What to supervise.
    pub target: Target,
    /// Lifecycle timings.
    pub timings: Timings,
    /// Policy when the port already answers as ComfyUI at start.
    pub port_policy: PortPolicy,
    /// Lines kept in the log ring buffer (default 5000).
    pub log_capacity: usize,
    /// Lines of log shown in the status while starting / failed (default 20).
    pub status_tail_lines: usize,
}

impl SupervisorConfig {
    /// Manage the process described by `spec` with default timings.
    pub fn managed(spec: LaunchSpec) -> Self {
        Self {
            target: Target::Managed(spec),
            timings: Timings::default(),
            port_policy: PortPolicy::default(),
            log_capacity: 5000,
            status_tail_lines: 20,
        }
    }

    /// Health-check the ComfyUI at `url` (e.g. `http://127.0.0.1:8188` or a path-prefixed URL);
    /// manage no process.
    pub fn attach(url: &str) -> Result<Self, SupervisorError> {
        let invalid = |reason: &str| SupervisorError::InvalidAttachUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("scheme must be http or https"));
        }
        if parsed.host_str().is_none() {
            return Err(invalid("URL has no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("URL must not have a query or fragment"));
        }
        // A trailing slash makes `join("system_stats")` append instead of replacing a segment.
        if !parsed.path().ends_with('/') {
            let path = format!("{}/", parsed.path());
            parsed.set_path(&path);
        }
        Ok(Self {
            target: Target::Attach(parsed),
            ..Self::managed(LaunchSpec::comfyui("python", ".", 8188))
        })
    }

    /// Base URL of the supervised ComfyUI, without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.target {
            Target::Managed(spec) => spec.base_url(),
            Target::Attach(url) => url.as_str().trim_end_matches('/').to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_url_is_normalised_and_validated() {
        let c = SupervisorConfig::attach("http://127.0.0.1:8188").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8188");
        let c = SupervisorConfig::attach("https://gpu.example/comfy").unwrap();
        let Target::Attach(url) = &c.target else {
            panic!("attach target")
        };
        assert_eq!(
            url.join("system_stats").unwrap().as_str(),
            "https://gpu.example/comfy/system_stats"
        );
        for bad in ["", "ftp://x/", "127.0.0.1:8188", "http://h/?q=1"] {
            assert!(
                matches!(
                    SupervisorConfig::attach(bad),
                    Err(SupervisorError::InvalidAttachUrl { .. })
                ),
                "{bad}"
            );
        }
    }
}
