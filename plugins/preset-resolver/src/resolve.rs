//! Pure resolution: required models of a workflow, which are missing, which presets provide
//! them (greedy set cover: the preset covering most missing files first, then the smaller
//! download), and which no preset provides.

use std::collections::{BTreeSet, HashSet};

use comfyhost_sdk::hooks::preset_resolver::{
    InstalledFolder, ModelRef, PresetFile, PresetPlan, Resolution,
};
use comfyhost_sdk::types::{InputValue, Workflow};

use crate::loaders::{LoaderInput, folder_for};
use crate::registry::{Preset, Registry};

/// `a\b.safetensors` and `a/b.safetensors` name the same file (workflows saved on Windows).
fn norm(name: &str) -> String {
    name.replace('\\', "/")
}

/// Every model file the workflow's loader nodes name, in workflow order, deduplicated per
/// `(folder, name, node, input)`.
pub fn required_models(wf: &Workflow, extra: &[LoaderInput]) -> Vec<ModelRef> {
    let mut out = Vec::new();
    for node in &wf.nodes {
        for input in &node.inputs {
            let InputValue::Text(value) = &input.value else {
                continue;
            };
            if value.trim().is_empty() {
                continue;
            }
            if let Some(folder) = folder_for(extra, &node.class_type, &input.name) {
                out.push(ModelRef {
                    folder: folder.to_owned(),
                    name: value.clone(),
                    node_id: node.id.clone(),
                    class_type: node.class_type.clone(),
                    input_name: input.name.clone(),
                });
            }
        }
    }
    out
}

/// Set of `(folder, normalized name)` present.
fn installed_set(installed: &[InstalledFolder]) -> HashSet<(String, String)> {
    installed
        .iter()
        .flat_map(|f| f.files.iter().map(|n| (f.folder.clone(), norm(n))))
        .collect()
}

fn key(r: &ModelRef) -> (String, String) {
    (r.folder.clone(), norm(&r.name))
}

/// Full resolution of `wf` against `installed` and `registry`.
pub fn resolve(
    wf: &Workflow,
    installed: &[InstalledFolder],
    registry: &Registry,
    extra: &[LoaderInput],
) -> Resolution {
    let required = required_models(wf, extra);
    let have = installed_set(installed);
    let missing: Vec<ModelRef> = required
        .iter()
        .filter(|r| !have.contains(&key(r)))
        .cloned()
        .collect();

    // Distinct missing files still to cover.
    let mut uncovered: BTreeSet<(String, String)> = missing.iter().map(key).collect();
    let mut presets = Vec::new();
    let mut used: HashSet<&str> = HashSet::new();
    loop {
        let best = registry
            .presets
            .iter()
            .filter(|p| !used.contains(p.id.as_str()))
            .map(|p| (p, covers(p, &uncovered), download_size(p, &have)))
            .filter(|(_, c, _)| !c.is_empty())
            // most files covered, then smallest download, then registry order (stable max_by)
            .min_by(|(_, ca, sa), (_, cb, sb)| cb.len().cmp(&ca.len()).then(sa.cmp(sb)));
        let Some((preset, covered, _)) = best else {
            break;
        };
        used.insert(preset.id.as_str());
        for k in &covered {
            uncovered.remove(k);
        }
        presets.push(plan(preset, &covered, &have));
    }

    let unmapped = missing
        .iter()
        .filter(|r| uncovered.contains(&key(r)))
        .cloned()
        .collect();
    Resolution {
        required,
        missing,
        presets,
        unmapped,
    }
}

fn covers(p: &Preset, uncovered: &BTreeSet<(String, String)>) -> Vec<(String, String)> {
    p.files
        .iter()
        .map(|f| (f.folder.clone(), norm(&f.name)))
        .filter(|k| uncovered.contains(k))
        .collect()
}

fn download_size(p: &Preset, have: &HashSet<(String, String)>) -> u64 {
    p.files
        .iter()
        .filter(|f| !have.contains(&(f.folder.clone(), norm(&f.name))))
        .map(|f| f.size)
        .sum()
}

/// The preset's files that are not installed yet, and the names it provides.
fn plan(p: &Preset, covered: &[(String, String)], have: &HashSet<(String, String)>) -> PresetPlan {
    PresetPlan {
        id: p.id.clone(),
        name: p.name.clone(),
        files: p
            .files
            .iter()
            .filter(|f| !have.contains(&(f.folder.clone(), norm(&f.name))))
            .map(|f| PresetFile {
                folder: f.folder.clone(),
                name: f.name.clone(),
                url: f.url.clone(),
                size: f.size,
                sha256: f.sha256.to_ascii_lowercase(),
            })
            .collect(),
        provides: covered.iter().map(|(_, n)| n.clone()).collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use comfyhost_sdk::types::{Node, NodeInput, NodeLink};

    fn node(id: &str, class: &str, inputs: &[(&str, InputValue)]) -> Node {
        Node {
            id: id.into(),
            class_type: class.into(),
            title: None,
            inputs: inputs
                .iter()
                .map(|(n, v)| NodeInput {
                    name: (*n).into(),
                    value: v.clone(),
                })
                .collect(),
        }
    }

    fn text(s: &str) -> InputValue {
        InputValue::Text(s.into())
    }

    fn workflow() -> Workflow {
        Workflow {
            nodes: vec![
                node(
                    "4",
                    "CheckpointLoaderSimple",
                    &[("ckpt_name", text("sd_xl_base_1.0.safetensors"))],
                ),
                node(
                    "10",
                    "LoraLoader",
                    &[
                        ("lora_name", text("styles\\pixel-art-xl.safetensors")),
                        ("strength_model", InputValue::Number(0.8)),
                        (
                            "model",
                            InputValue::Link(NodeLink {
                                node_id: "4".into(),
                                output_index: 0,
                            }),
                        ),
                    ],
                ),
                node(
                    "11",
                    "VAELoader",
                    &[("vae_name", text("sdxl_vae.safetensors"))],
                ),
                node(
                    "12",
                    "UpscaleModelLoader",
                    &[("model_name", text("4x-UltraSharp.pth"))],
                ),
                node(
                    "6",
                    "CLIPTextEncode",
                    &[("text", text("a cat.safetensors"))],
                ),
            ],
        }
    }

    const HASH_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    /// Test registry: SDXL base (checkpoint + VAE), a LoRA pack, and a bigger pack that also
    /// carries the checkpoint (the smaller one must win the tie).
    fn registry() -> Registry {
        let file = |folder: &str, name: &str, size: u64| {
            format!(
                r#"{{"folder":"{folder}","name":"{name}","url":"http://127.0.0.1:1/{name}","size":{size},"sha256":"{HASH_A}"}}"#
            )
        };
        let doc = format!(
            r#"{{"version":1,"presets":[
              {{"id":"sdxl-everything","name":"All","files":[{},{},{}]}},
              {{"id":"sdxl-base","name":"SDXL","files":[{},{}]}},
              {{"id":"sdxl-pixel-art-lora","name":"Pixel","files":[{}]}}]}}"#,
            file("checkpoints", "sd_xl_base_1.0.safetensors", 100),
            file("vae", "sdxl_vae.safetensors", 10),
            file("embeddings", "huge.pt", 1_000_000),
            file("checkpoints", "sd_xl_base_1.0.safetensors", 100),
            file("vae", "sdxl_vae.safetensors", 10),
            file("loras", "styles/pixel-art-xl.safetensors", 5),
        );
        Registry::parse(&doc).unwrap()
    }

    #[test]
    fn example_registry_is_valid() {
        let reg = Registry::parse(include_str!("../presets.example.json")).unwrap();
        assert!(reg.presets.iter().any(|p| p.id == "sdxl-base"));
    }

    #[test]
    fn finds_every_loader_input_and_ignores_prompt_text() {
        let req = required_models(&workflow(), &[]);
        let folders: Vec<_> = req
            .iter()
            .map(|r| (r.folder.as_str(), r.input_name.as_str()))
            .collect();
        assert_eq!(
            folders,
            [
                ("checkpoints", "ckpt_name"),
                ("loras", "lora_name"),
                ("vae", "vae_name"),
                ("upscale_models", "model_name")
            ]
        );
    }

    #[test]
    fn installed_files_are_not_missing_and_presets_cover_the_rest() {
        let installed = vec![InstalledFolder {
            folder: "vae".into(),
            files: vec!["sdxl_vae.safetensors".into()],
        }];
        let r = resolve(&workflow(), &installed, &registry(), &[]);
        assert_eq!(r.required.len(), 4);
        let missing: Vec<_> = r.missing.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            missing,
            [
                "sd_xl_base_1.0.safetensors",
                "styles\\pixel-art-xl.safetensors",
                "4x-UltraSharp.pth"
            ]
        );
        let ids: Vec<_> = r.presets.iter().map(|p| p.id.as_str()).collect();
        // One missing file each: the smaller download first; the big pack is never chosen.
        assert_eq!(ids, ["sdxl-pixel-art-lora", "sdxl-base"]);
        // The installed VAE is not downloaded again.
        assert!(r.presets[1].files.iter().all(|f| f.folder != "vae"));
        assert_eq!(r.presets[1].provides, ["sd_xl_base_1.0.safetensors"]);
        assert_eq!(r.unmapped.len(), 1);
        assert_eq!(r.unmapped[0].name, "4x-UltraSharp.pth");
    }

    #[test]
    fn extra_loaders_extend_the_table() {
        let wf = Workflow {
            nodes: vec![node(
                "1",
                "IPAdapterModelLoader",
                &[("ipadapter_file", text("ip.bin"))],
            )],
        };
        assert!(required_models(&wf, &[]).is_empty());
        let extra = vec![LoaderInput {
            class_type: "IPAdapterModelLoader".into(),
            input: "ipadapter_file".into(),
            folder: "ipadapter".into(),
        }];
        let r = resolve(&wf, &[], &Registry::default(), &extra);
        assert_eq!(r.unmapped[0].folder, "ipadapter");
    }

    #[test]
    fn bad_registries_are_refused() {
        assert!(Registry::parse("[]").is_err());
        assert!(Registry::parse(r#"{"version":2,"presets":[]}"#).is_err());
        let bad_hash = r#"{"presets":[{"id":"x","name":"x","files":[{"folder":"vae","name":"a","url":"https://x/a","size":1,"sha256":"zz"}]}]}"#;
        assert!(Registry::parse(bad_hash).is_err());
        let escape = r#"{"presets":[{"id":"x","name":"x","files":[{"folder":"vae","name":"../a","url":"https://x/a","size":1,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}]}]}"#;
        assert!(Registry::parse(escape).is_err());
    }
}
