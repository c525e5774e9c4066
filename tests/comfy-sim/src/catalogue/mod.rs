//! The node catalogue: `object_info` definitions recorded from ComfyUI 0.3.64 (see
//! `object_info.json`), with model/file combos filled from the simulator's directories.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::paths;

const OBJECT_INFO: &str = include_str!("object_info.json");
const EXTENSIONS: &str = include_str!("extensions.json");

/// Where a declared input lives in `INPUT_TYPES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputCategory {
    /// `required`.
    Required,
    /// `optional`.
    Optional,
}

/// One declared (non-hidden) input of a node class.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// Input name.
    pub name: String,
    /// Required or optional.
    pub category: InputCategory,
    /// The type: a string like `"INT"` or, for combos, the JSON list of allowed values.
    pub input_type: Value,
    /// The options dict (`{}` when the recording had none).
    pub extra: Map<String, Value>,
}

impl InputSpec {
    /// `[input_type, extra_info]`, the `input_config` ComfyUI puts in validation errors.
    pub fn config(&self) -> Value {
        json!([self.input_type, self.extra])
    }

    /// The type name for link checks (`COMBO` for lists).
    pub fn type_name(&self) -> &str {
        match &self.input_type {
            Value::String(s) => s,
            _ => "COMBO",
        }
    }
}

/// A node class as the validator and executor see it.
#[derive(Debug, Clone)]
pub struct NodeClass {
    /// Class name (`class_type`).
    pub name: String,
    /// Declared inputs, required first, in declaration order.
    pub inputs: Vec<InputSpec>,
    /// `RETURN_TYPES`.
    pub outputs: Vec<String>,
    /// `OUTPUT_NODE`.
    pub output_node: bool,
    /// Whether a hidden `UNIQUE_ID` input exists (node id becomes part of the cache key).
    pub wants_unique_id: bool,
}

/// The simulator's node catalogue.
#[derive(Debug, Clone)]
pub struct Catalogue {
    defs: Map<String, Value>,
    models_dir: PathBuf,
    input_dir: PathBuf,
}

impl Catalogue {
    /// Loads the recorded definitions; combos are listed from `models_dir` / `input_dir` on demand.
    pub fn new(models_dir: PathBuf, input_dir: PathBuf) -> Self {
        let defs = serde_json::from_str::<Map<String, Value>>(OBJECT_INFO).unwrap_or_default();
        Self {
            defs,
            models_dir,
            input_dir,
        }
    }

    /// `GET /extensions` body (recorded list of core frontend extensions).
    pub fn extensions() -> Value {
        serde_json::from_str(EXTENSIONS).unwrap_or_else(|_| json!([]))
    }

    /// Class names, in recorded `object_info` order.
    pub fn class_names(&self) -> impl Iterator<Item = &str> {
        self.defs.keys().map(String::as_str)
    }

    /// The `object_info` entry of one class, with live combo lists.
    pub fn node_info(&self, class: &str) -> Option<Value> {
        let mut def = self.defs.get(class)?.clone();
        for (input, values) in self.dynamic_combos(class) {
            let Some(spec) = def.pointer_mut(&format!("/input/required/{input}")) else {
                continue;
            };
            // V1 combos carry the list first (`[[..], {..}]`); V3 ones are
            // `["COMBO", {"options": [..]}]`.
            if spec.get(0).and_then(Value::as_str) == Some("COMBO") {
                if let Some(options) = spec.pointer_mut("/1/options") {
                    *options = Value::Array(values);
                }
            } else if let Some(slot) = spec.get_mut(0) {
                *slot = Value::Array(values);
            }
        }
        Some(def)
    }

    /// The whole `GET /object_info` body.
    pub fn object_info(&self) -> Value {
        let mut out = Map::new();
        for name in self.defs.keys() {
            if let Some(info) = self.node_info(name) {
                out.insert(name.clone(), info);
            }
        }
        Value::Object(out)
    }

    /// The parsed class, or `None` if unknown.
    pub fn class(&self, class: &str) -> Option<NodeClass> {
        let info = self.node_info(class)?;
        let mut inputs = Vec::new();
        for (cat_name, category) in [
            ("required", InputCategory::Required),
            ("optional", InputCategory::Optional),
        ] {
            let Some(section) = info
                .pointer(&format!("/input/{cat_name}"))
                .and_then(Value::as_object)
            else {
                continue;
            };
            for (name, spec) in section {
                let input_type = spec.get(0).cloned().unwrap_or(Value::Null);
                let extra = spec
                    .get(1)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                inputs.push(InputSpec {
                    name: name.clone(),
                    category,
                    input_type,
                    extra,
                });
            }
        }
        let outputs = info
            .get("output")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let wants_unique_id = info
            .pointer("/input/hidden")
            .and_then(Value::as_object)
            .is_some_and(|h| h.values().any(|v| v == "UNIQUE_ID"));
        Some(NodeClass {
            name: class.to_string(),
            inputs,
            outputs,
            output_node: info
                .get("output_node")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            wants_unique_id,
        })
    }

    fn dynamic_combos(&self, class: &str) -> Vec<(&'static str, Vec<Value>)> {
        let strings = |v: Vec<String>| v.into_iter().map(Value::String).collect::<Vec<_>>();
        let models = |input: &'static str, folder: &str| {
            vec![(input, strings(paths::list_models(&self.models_dir, folder)))]
        };
        match class {
            "CheckpointLoaderSimple" | "ImageOnlyCheckpointLoader" => {
                models("ckpt_name", "checkpoints")
            }
            "LoraLoader" | "LoraLoaderModelOnly" => models("lora_name", "loras"),
            "ControlNetLoader" => models("control_net_name", "controlnet"),
            "UNETLoader" => models("unet_name", "diffusion_models"),
            "UpscaleModelLoader" => models("model_name", "upscale_models"),
            "StyleModelLoader" => models("style_model_name", "style_models"),
            "GLIGENLoader" => models("gligen_name", "gligen"),
            "VAELoader" => {
                let mut v = paths::list_models(&self.models_dir, "vae");
                v.push("pixel_space".into());
                vec![("vae_name", strings(v))]
            }
            "LoadImage" => vec![("image", strings(paths::list_files(&self.input_dir)))],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalogue_parses_and_has_the_core_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalogue::new(dir.path().join("models"), dir.path().join("input"));
        for n in [
            "EmptyImage",
            "SaveImage",
            "PreviewImage",
            "LoadImage",
            "CheckpointLoaderSimple",
            "CLIPTextEncode",
            "KSampler",
            "EmptyLatentImage",
            "VAEDecode",
            "LoraLoader",
            "VAELoader",
            "TestSleep",
            // Every loader the stock frontend maps model folders to (it fails to build a
            // Load Checkpoint node when one is missing).
            "ImageOnlyCheckpointLoader",
            "LoraLoaderModelOnly",
            "ControlNetLoader",
            "UNETLoader",
            "UpscaleModelLoader",
            "StyleModelLoader",
            "GLIGENLoader",
        ] {
            assert!(c.class(n).is_some(), "{n}");
        }
        let save = c.class("SaveImage").unwrap();
        assert!(save.output_node);
        assert_eq!(
            save.inputs[0].config(),
            json!(["IMAGE", {"tooltip": "The images to save."}])
        );
        assert!(c.class("TestSleep").unwrap().wants_unique_id);
        assert!(
            Catalogue::extensions()
                .as_array()
                .is_some_and(|a| !a.is_empty())
        );
    }

    #[test]
    fn checkpoint_combo_lists_the_models_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("models/checkpoints")).unwrap();
        std::fs::write(dir.path().join("models/checkpoints/sim.safetensors"), b"x").unwrap();
        let c = Catalogue::new(dir.path().join("models"), dir.path().join("input"));
        let info = c.node_info("CheckpointLoaderSimple").unwrap();
        assert_eq!(
            info["input"]["required"]["ckpt_name"][0],
            json!(["sim.safetensors"])
        );
        assert_eq!(
            c.node_info("VAELoader").unwrap()["input"]["required"]["vae_name"][0],
            json!(["pixel_space"])
        );
        std::fs::create_dir_all(dir.path().join("models/upscale_models")).unwrap();
        std::fs::write(dir.path().join("models/upscale_models/x4.pth"), b"x").unwrap();
        assert_eq!(
            c.node_info("UpscaleModelLoader").unwrap()["input"]["required"]["model_name"][1]["options"],
            json!(["x4.pth"])
        );
    }
}
