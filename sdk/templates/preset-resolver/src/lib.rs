//! Template comfyhost plugin: a preset resolver. It lists the checkpoints a workflow loads,
//! marks those not installed as missing, and offers a one-file preset for each missing one the
//! admin listed in its config (URL, size, sha256: the host verifies both before installing).

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

use comfyhost_sdk::hooks::preset_resolver::{
    InstalledFolder, ModelRef, PresetFile, PresetPlan, Resolution,
};
use comfyhost_sdk::prelude::*;
use comfyhost_sdk::workflow::text_input;
use serde::Deserialize;

/// One downloadable checkpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
}

/// The plugin's configuration; mirrors `config.schema.json`.
#[derive(Debug, Deserialize)]
pub struct Config {
    pub checkpoints: Vec<Checkpoint>,
}

/// Required and missing checkpoints, and a preset per missing one the config knows.
pub fn resolve(workflow: &Workflow, installed: &[InstalledFolder], config: &Config) -> Resolution {
    let have: Vec<&str> = installed
        .iter()
        .filter(|f| f.folder == "checkpoints")
        .flat_map(|f| f.files.iter().map(String::as_str))
        .collect();
    let required: Vec<ModelRef> = workflow
        .nodes
        .iter()
        .filter(|n| n.class_type == "CheckpointLoaderSimple")
        .filter_map(|n| {
            Some(ModelRef {
                folder: "checkpoints".into(),
                name: text_input(n, "ckpt_name")?.to_owned(),
                node_id: n.id.clone(),
                class_type: n.class_type.clone(),
                input_name: "ckpt_name".into(),
            })
        })
        .collect();
    let missing: Vec<ModelRef> = required
        .iter()
        .filter(|r| !have.contains(&r.name.as_str()))
        .cloned()
        .collect();
    let mut presets = Vec::new();
    let mut unmapped = Vec::new();
    for r in &missing {
        match config.checkpoints.iter().find(|c| c.name == r.name) {
            Some(c) => presets.push(PresetPlan {
                id: format!("checkpoint:{}", c.name),
                name: c.name.clone(),
                files: vec![PresetFile {
                    folder: "checkpoints".into(),
                    name: c.name.clone(),
                    url: c.url.clone(),
                    size: c.size,
                    sha256: c.sha256.clone(),
                }],
                provides: vec![c.name.clone()],
            }),
            None => unmapped.push(r.clone()),
        }
    }
    Resolution {
        required,
        missing,
        presets,
        unmapped,
    }
}

struct CheckpointPresets;

impl PresetResolver for CheckpointPresets {
    fn resolve(
        workflow: Workflow,
        installed: Vec<InstalledFolder>,
    ) -> Result<Resolution, PluginError> {
        let config: Config = config()?;
        Ok(resolve(&workflow, &installed, &config))
    }
}

comfyhost_sdk::export_preset_resolver!(CheckpointPresets);

#[cfg(test)]
mod tests {
    use super::*;
    use comfyhost_sdk::testing::FakeHost;

    fn workflow() -> Workflow {
        Workflow {
            nodes: vec![
                Node::new("4", "CheckpointLoaderSimple").with_input("ckpt_name", "a.safetensors"),
                Node::new("5", "CheckpointLoaderSimple").with_input("ckpt_name", "b.safetensors"),
            ],
        }
    }

    #[test]
    fn offers_listed_checkpoints_and_reports_the_rest() {
        let _host = FakeHost::new()
            .config(&format!(
                r#"{{"checkpoints": [{{"name": "a.safetensors", "url": "https://huggingface.co/x/a.safetensors", "size": 10, "sha256": "{}"}}]}}"#,
                "0".repeat(64)
            ))
            .install();
        let r = CheckpointPresets::resolve(workflow(), Vec::new()).unwrap();
        assert_eq!(r.required.len(), 2);
        assert_eq!(r.missing.len(), 2);
        assert_eq!(r.presets.len(), 1);
        assert_eq!(r.presets[0].files[0].name, "a.safetensors");
        assert_eq!(r.unmapped[0].name, "b.safetensors");
    }

    #[test]
    fn installed_checkpoints_are_not_missing() {
        let installed = vec![InstalledFolder {
            folder: "checkpoints".into(),
            files: vec!["a.safetensors".into(), "b.safetensors".into()],
        }];
        let r = resolve(
            &workflow(),
            &installed,
            &Config {
                checkpoints: vec![],
            },
        );
        assert!(r.missing.is_empty() && r.presets.is_empty());
    }
}
