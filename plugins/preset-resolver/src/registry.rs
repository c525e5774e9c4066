//! The preset registry: a JSON document listing presets and the files each installs.
//!
//! ```json
//! {
//!   "version": 1,
//!   "presets": [
//!     {
//!       "id": "sd15-base",
//!       "name": "Stable Diffusion 1.5 base",
//!       "description": "optional",
//!       "files": [
//!         {"folder": "checkpoints", "name": "v1-5-pruned-emaonly.safetensors",
//!          "url": "https://huggingface.co/.../v1-5-pruned-emaonly.safetensors",
//!          "size": 4265146304, "sha256": "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"}
//!       ]
//!     }
//!   ]
//! }
//! ```
//!
//! `folder` is a ComfyUI model folder key, `name` the path relative to it as workflows write it
//! (sub-folders with `/`), `size` bytes, `sha256` lower-case hex (64 chars).

use serde::Deserialize;

/// A whole registry file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Registry {
    /// Format version; only 1 exists.
    #[serde(default = "one")]
    pub version: u32,
    /// The presets, in preference order for ties.
    #[serde(default)]
    pub presets: Vec<Preset>,
}

fn one() -> u32 {
    1
}

/// One preset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Preset {
    /// Stable id (`sd15-base`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text for the dashboard.
    #[serde(default)]
    pub description: String,
    /// Files it installs.
    pub files: Vec<RegistryFile>,
}

/// One file of a preset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegistryFile {
    /// ComfyUI model folder key.
    pub folder: String,
    /// Path relative to the folder, `/`-separated.
    pub name: String,
    /// Download URL.
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// Why a registry is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError(pub String);

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Registry {
    /// Parse and validate a registry document.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let doc: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| RegistryError(format!("registry is not valid JSON: {e}")))?;
        if !doc.is_object() {
            return Err(RegistryError(
                "registry must be a JSON object with `presets`".into(),
            ));
        }
        let reg: Registry = serde_json::from_value(doc).map_err(|e| {
            RegistryError(format!("registry does not have the documented shape: {e}"))
        })?;
        reg.validate()?;
        Ok(reg)
    }

    /// Check version, ids, names and hashes.
    pub fn validate(&self) -> Result<(), RegistryError> {
        if self.version != 1 {
            return Err(RegistryError(format!(
                "registry version {} is not supported (expected 1)",
                self.version
            )));
        }
        for p in &self.presets {
            if p.id.trim().is_empty() {
                return Err(RegistryError("a preset has an empty id".into()));
            }
            for f in &p.files {
                let bad_name = f.name.is_empty()
                    || f.name.starts_with('/')
                    || f.name.split(['/', '\\']).any(|c| c == "..");
                if bad_name {
                    return Err(RegistryError(format!(
                        "preset {}: file name `{}` must be a relative path without `..`",
                        p.id, f.name
                    )));
                }
                if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(RegistryError(format!(
                        "preset {}: sha256 of `{}` must be 64 hex characters",
                        p.id, f.name
                    )));
                }
                if !(f.url.starts_with("https://") || f.url.starts_with("http://")) {
                    return Err(RegistryError(format!(
                        "preset {}: url of `{}` must be http(s)",
                        p.id, f.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Append another registry's presets (ids already present are kept from `self`).
    pub fn merge(&mut self, other: Registry) {
        for p in other.presets {
            if !self.presets.iter().any(|q| q.id == p.id) {
                self.presets.push(p);
            }
        }
    }
}
