//! ComfyUI's `POST /prompt` 400 body -> the model files it rejected. A missing model shows up
//! as `node_errors[<id>].errors[]` with `type: "value_not_in_list"` and
//! `extra_info: {input_name, received_value, input_config}`; the node's class comes from
//! `node_errors[<id>].class_type` (or the submitted workflow), the folder from the loader table.

use comfyhost_runtime::types::ModelRef;
use serde_json::Value;

use super::loaders::folder_for;

/// Every rejected model value, in node order; non-model `value_not_in_list` errors (a sampler
/// name, a scheduler) are left out.
pub fn rejected_models(workflow: &Value, body: &Value) -> Vec<ModelRef> {
    let mut out = Vec::new();
    let Some(node_errors) = body.get("node_errors").and_then(Value::as_object) else {
        return out;
    };
    for (node_id, entry) in node_errors {
        let class_type = entry
            .get("class_type")
            .and_then(Value::as_str)
            .or_else(|| workflow.get(node_id)?.get("class_type")?.as_str())
            .unwrap_or_default();
        for err in entry
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if err.get("type").and_then(Value::as_str) != Some("value_not_in_list") {
                continue;
            }
            let info = err.get("extra_info");
            let input = info
                .and_then(|i| i.get("input_name"))
                .and_then(Value::as_str);
            let value = info
                .and_then(|i| i.get("received_value"))
                .and_then(Value::as_str);
            let (Some(input), Some(value)) = (input, value) else {
                continue;
            };
            if let Some(folder) = folder_for(class_type, input) {
                out.push(ModelRef {
                    folder: folder.to_owned(),
                    name: value.to_owned(),
                    node_id: node_id.clone(),
                    class_type: class_type.to_owned(),
                    input_name: input.to_owned(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_recorded_comfyui_rejection() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/comfyui-transcripts/err_ckpt_not_found.json"
        );
        let rec: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let refs = rejected_models(&rec["request"]["json"]["prompt"], &rec["body"]);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].folder, "checkpoints");
        assert_eq!(refs[0].name, "does_not_exist.safetensors");
        assert_eq!(refs[0].node_id, "1");
        assert_eq!(refs[0].input_name, "ckpt_name");
    }

    #[test]
    fn skips_non_model_lists_and_uses_the_workflow_class() {
        let wf = json!({"3": {"class_type": "KSampler"}, "10": {"class_type": "LoraLoader"}});
        let body = json!({"node_errors": {
            "3": {"errors": [{"type": "value_not_in_list", "extra_info": {"input_name": "sampler_name", "received_value": "nope"}}]},
            "10": {"errors": [
                {"type": "value_not_in_list", "extra_info": {"input_name": "lora_name", "received_value": "a/b.safetensors", "input_config": null}},
                {"type": "value_bigger_than_max", "extra_info": {"input_name": "strength_model", "received_value": 99}}
            ]}
        }});
        let refs = rejected_models(&wf, &body);
        assert_eq!(refs.len(), 1);
        assert_eq!(
            (refs[0].folder.as_str(), refs[0].class_type.as_str()),
            ("loras", "LoraLoader")
        );
        assert!(rejected_models(&wf, &json!({"error": {}})).is_empty());
    }
}
