//! UI-format (litegraph) workflows: detection, extraction of loader nodes into an API-format
//! workflow the resolver understands, and the `models[]` hints (name, url, directory) the
//! frontend stores in `properties.models` and at the top level.
//!
//! Only loader nodes need their widgets named (table in [`super::loaders`]); other nodes are
//! kept with their class and no inputs. Muted (mode 2) and bypassed (mode 4) nodes never run
//! and are skipped. Nodes inside subgraph definitions (`definitions.subgraphs[].nodes`) are
//! included with ids `<subgraph id>:<node id>`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::loaders::widget_names;

/// Which shape a submitted workflow has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowFormat {
    /// `{"<id>": {"class_type", "inputs"}}` (POST /prompt).
    Api,
    /// The editor's saved graph (`nodes[]`, `links[]`).
    Ui,
}

/// A model a UI workflow declares with its download location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelHint {
    /// File name as the loader widget holds it.
    pub name: String,
    /// Where to download it.
    pub url: String,
    /// ComfyUI model folder key (`checkpoints`, `loras`, ...).
    pub directory: String,
    /// Declared hash, when `hash_type` is `sha256` (lower-case hex).
    pub sha256: Option<String>,
    /// The node declaring it; `None` for the graph-level list.
    pub node_id: Option<String>,
}

/// Why a workflow is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkflowShapeError {
    #[error("workflow must be a JSON object")]
    NotObject,
    #[error("neither an API-format workflow (nodes with class_type) nor a UI-format one (nodes[])")]
    Unknown,
    #[error("UI workflow node #{0} has no `type`")]
    NodeWithoutType(usize),
}

/// API or UI format.
pub fn detect(wf: &Value) -> Result<WorkflowFormat, WorkflowShapeError> {
    let obj = wf.as_object().ok_or(WorkflowShapeError::NotObject)?;
    if obj.get("nodes").is_some_and(Value::is_array) {
        return Ok(WorkflowFormat::Ui);
    }
    let api = !obj.is_empty()
        && obj
            .values()
            .all(|n| n.get("class_type").is_some_and(Value::is_string));
    if api {
        Ok(WorkflowFormat::Api)
    } else {
        Err(WorkflowShapeError::Unknown)
    }
}

/// The API-format view of a UI workflow (loader inputs only) and its model hints.
pub fn to_api(wf: &Value) -> Result<(Value, Vec<ModelHint>), WorkflowShapeError> {
    let mut api = Map::new();
    let mut hints = Vec::new();
    if let Some(models) = wf.get("models").and_then(Value::as_array) {
        hints.extend(models.iter().filter_map(|m| hint(m, None)));
    }
    let top = wf.get("nodes").and_then(Value::as_array);
    let subgraphs = wf
        .pointer("/definitions/subgraphs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|sg| {
            let id = sg.get("id").and_then(Value::as_str).unwrap_or("subgraph");
            sg.get("nodes")
                .and_then(Value::as_array)
                .map(|n| (Some(id), n))
        });
    for (prefix, nodes) in top.map(|n| (None, n)).into_iter().chain(subgraphs) {
        for (idx, node) in nodes.iter().enumerate() {
            let class = node
                .get("type")
                .and_then(Value::as_str)
                .ok_or(WorkflowShapeError::NodeWithoutType(idx))?;
            let mode = node.get("mode").and_then(Value::as_u64).unwrap_or(0);
            if mode == 2 || mode == 4 {
                continue;
            }
            let raw_id = match node.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => idx.to_string(),
            };
            let id = match prefix {
                Some(p) => format!("{p}:{raw_id}"),
                None => raw_id,
            };
            if let Some(models) = node.pointer("/properties/models").and_then(Value::as_array) {
                hints.extend(models.iter().filter_map(|m| hint(m, Some(&id))));
            }
            let mut inputs = Map::new();
            if let (Some(names), Some(values)) = (
                widget_names(class),
                node.get("widgets_values").and_then(Value::as_array),
            ) {
                for (name, value) in names.iter().zip(values) {
                    inputs.insert((*name).to_owned(), value.clone());
                }
            }
            let title = node.get("title").and_then(Value::as_str).unwrap_or(class);
            api.insert(
                id,
                json!({"class_type": class, "inputs": inputs, "_meta": {"title": title}}),
            );
        }
    }
    Ok((Value::Object(api), hints))
}

fn hint(m: &Value, node_id: Option<&str>) -> Option<ModelHint> {
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    let sha256 = match s("hash_type").as_deref() {
        Some(t) if t.eq_ignore_ascii_case("sha256") => s("hash")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|h| h.to_ascii_lowercase()),
        _ => None,
    };
    Some(ModelHint {
        name: s("name")?,
        url: s("url")?,
        directory: s("directory")?,
        sha256,
        node_id: node_id.map(str::to_owned),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats() {
        assert_eq!(
            detect(&json!({"1": {"class_type": "X", "inputs": {}}})),
            Ok(WorkflowFormat::Api)
        );
        assert_eq!(
            detect(&json!({"nodes": [], "links": []})),
            Ok(WorkflowFormat::Ui)
        );
        assert_eq!(detect(&json!({"foo": 1})), Err(WorkflowShapeError::Unknown));
        assert_eq!(detect(&json!([1])), Err(WorkflowShapeError::NotObject));
    }

    #[test]
    fn converts_loaders_skips_muted_and_collects_hints() {
        let ui = json!({
            "nodes": [
                {"id": 4, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": ["sd_xl_base_1.0.safetensors"],
                 "properties": {"models": [{"name": "sd_xl_base_1.0.safetensors", "url": "https://h/x", "directory": "checkpoints",
                   "hash": "AB".repeat(32), "hash_type": "SHA256"}]}},
                {"id": 10, "type": "LoraLoader", "mode": 4, "widgets_values": ["muted.safetensors", 1.0, 1.0]},
                {"id": 11, "type": "LoraLoader", "widgets_values": ["pixel.safetensors", 0.8, 1.0]}
            ],
            "definitions": {"subgraphs": [{"id": "sg-1", "nodes": [{"id": 1, "type": "VAELoader", "widgets_values": ["v.safetensors"]}]}]},
            "models": [{"name": "pixel.safetensors", "url": "https://h/p", "directory": "loras"}]
        });
        let (api, hints) = to_api(&ui).unwrap();
        assert_eq!(
            api["4"]["inputs"]["ckpt_name"],
            "sd_xl_base_1.0.safetensors"
        );
        assert!(api.get("10").is_none());
        assert_eq!(api["11"]["inputs"]["strength_model"], 0.8);
        assert_eq!(api["sg-1:1"]["inputs"]["vae_name"], "v.safetensors");
        assert_eq!(hints.len(), 2);
        assert_eq!(hints[1].sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(hints[0].node_id, None);
    }
}
