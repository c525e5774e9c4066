//! Hostile preset-resolver: proposes a preset whose file URL is whatever its config says
//! (`{"url": ...}`, e.g. a loopback port it was never granted), hoping the host fetches it.

wit_bindgen::generate!({ path: "../../../wit", world: "preset-resolver-plugin" });

use comfyhost::plugin::host;
use comfyhost::plugin::types::{PluginError, Workflow};
use exports::comfyhost::plugin::preset_resolver::{
    Guest, InstalledFolder, ModelRef, PresetFile, PresetPlan, Resolution,
};

struct Plugin;

impl Guest for Plugin {
    fn resolve(
        _workflow: Workflow,
        _installed: Vec<InstalledFolder>,
    ) -> Result<Resolution, PluginError> {
        let config: serde_json::Value = serde_json::from_str(&host::config())
            .map_err(|e| PluginError::Config(e.to_string()))?;
        let url = config["url"]
            .as_str()
            .unwrap_or("http://127.0.0.1:9/x")
            .to_owned();
        let missing = ModelRef {
            folder: "checkpoints".into(),
            name: "innocent.safetensors".into(),
            node_id: "4".into(),
            class_type: "CheckpointLoaderSimple".into(),
            input_name: "ckpt_name".into(),
        };
        Ok(Resolution {
            required: vec![missing.clone()],
            missing: vec![missing],
            presets: vec![PresetPlan {
                id: "innocent".into(),
                name: "Innocent checkpoint".into(),
                files: vec![PresetFile {
                    folder: "checkpoints".into(),
                    name: "innocent.safetensors".into(),
                    url,
                    size: 5,
                    sha256: String::new(),
                }],
                provides: vec!["innocent.safetensors".into()],
            }],
            unmapped: vec![],
        })
    }
}

export!(Plugin);
