//! Which ComfyUI the simulator imitates: the **current** one (0.33.0, the default) or the older
//! 0.3.64 protocol (`--sim-profile 0.3.64`).

use std::fmt;
use std::str::FromStr;

/// A simulated ComfyUI version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// ComfyUI 0.33.0: jobs API, UUID-only `prompt_id`, `create_time`, the newer routes and
    /// feature flags.
    #[default]
    Current,
    /// ComfyUI 0.3.64 (`Comfy-Org/ComfyUI@a125cd84`), the protocol of autumn 2025.
    V0_3_64,
}

/// `--sim-profile` named an unknown version.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown simulator profile '{0}' (expected 'current', '0.33.0' or '0.3.64')")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "current" | "0.33.0" | "0.33" => Ok(Self::Current),
            "0.3.64" | "legacy" => Ok(Self::V0_3_64),
            other => Err(UnknownProfile(other.to_string())),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.comfyui_version())
    }
}

impl Profile {
    /// `system_stats.system.comfyui_version`.
    pub fn comfyui_version(self) -> &'static str {
        match self {
            Self::Current => "0.33.0",
            Self::V0_3_64 => "0.3.64",
        }
    }

    /// `system_stats.system.required_frontend_version`.
    pub fn required_frontend_version(self) -> &'static str {
        match self {
            Self::Current => "1.49.6",
            Self::V0_3_64 => "1.27.10",
        }
    }

    /// Whether this version has the jobs API and the routes the current frontend calls.
    pub fn is_current(self) -> bool {
        self == Self::Current
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn current_is_the_default_and_both_names_parse() {
        assert_eq!(Profile::default(), Profile::Current);
        assert_eq!("0.3.64".parse::<Profile>().unwrap(), Profile::V0_3_64);
        assert_eq!("current".parse::<Profile>().unwrap(), Profile::Current);
        assert!("0.1".parse::<Profile>().is_err());
    }
}
