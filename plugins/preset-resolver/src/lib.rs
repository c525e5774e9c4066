//! preset-resolver: lists the model files a workflow needs (loader node -> input -> model
//! folder), compares them with what the host reports as installed, and maps the missing ones
//! to presets from a registry (a JSON file in a granted read-only directory and/or inline in
//! the config; format in [`registry`]). The host turns the chosen preset into downloads.

pub mod loaders;
pub mod registry;
pub mod resolve;

use comfyhost_sdk::hooks::preset_resolver::{InstalledFolder, Resolution};
use comfyhost_sdk::prelude::*;
use serde::Deserialize;

use crate::loaders::LoaderInput;
use crate::registry::{Preset, Registry};

/// The plugin configuration (`config.schema.json`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// Guest path of a registry file, e.g. `/presets/registry.json`.
    #[serde(default)]
    pub registry_file: Option<String>,
    /// Inline presets (merged after the file's).
    #[serde(default)]
    pub presets: Vec<Preset>,
    /// Loader rules for custom nodes.
    #[serde(default)]
    pub extra_loaders: Vec<LoaderInput>,
}

/// Read the file registry (if configured) and merge the inline presets.
pub fn load_registry(
    cfg: &Config,
    read: impl Fn(&str) -> std::io::Result<String>,
) -> Result<Registry, PluginError> {
    let mut reg = match &cfg.registry_file {
        Some(path) => {
            let text = read(path).map_err(|e| {
                PluginError::Config(format!(
                    "cannot read registry file {path}: {e} (is the presets directory granted?)"
                ))
            })?;
            Registry::parse(&text).map_err(|e| PluginError::Config(format!("{path}: {e}")))?
        }
        None => Registry::default(),
    };
    let inline = Registry {
        version: 1,
        presets: cfg.presets.clone(),
    };
    inline
        .validate()
        .map_err(|e| PluginError::Config(format!("inline presets: {e}")))?;
    reg.merge(inline);
    Ok(reg)
}

struct Resolver;

impl PresetResolver for Resolver {
    fn resolve(
        workflow: Workflow,
        installed: Vec<InstalledFolder>,
    ) -> Result<Resolution, PluginError> {
        let cfg: Config = comfyhost_sdk::config()?;
        let registry = load_registry(&cfg, |p| std::fs::read_to_string(p))?;
        let r = resolve::resolve(&workflow, &installed, &registry, &cfg.extra_loaders);
        info!(
            "resolved: {} required, {} missing, {} preset(s), {} unmapped",
            r.required.len(),
            r.missing.len(),
            r.presets.len(),
            r.unmapped.len()
        );
        Ok(r)
    }
}

comfyhost_sdk::export_preset_resolver!(Resolver);
