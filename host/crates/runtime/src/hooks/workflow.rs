//! ComfyUI API-format workflow JSON <-> WIT `workflow` record.
//!
//! API format is an object of node id -> `{ "class_type", "inputs", "_meta": { "title" } }`.
//! Inputs become typed `input-value`s: `["id", 0]` pairs (exactly a string and a non-negative
//! integer that fits `u32`) are links, scalars map to their variants, and any other nested
//! list/object (and integers beyond `i64`) travels as `input-value::json` text. Node and
//! input order is preserved both ways (`serde_json` is built with `preserve_order`). Keys of a
//! node other than `class_type`, `inputs` and `_meta.title` are not carried.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::bindings::wit_types::{InputValue, Node, NodeInput, NodeLink, Workflow};

/// Why a workflow could not be converted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowError {
    #[error("workflow must be a JSON object of node id -> node")]
    NotAnObject,
    #[error("node ids must not be empty")]
    EmptyNodeId,
    #[error("node {0} appears more than once")]
    DuplicateNode(String),
    #[error("node {0} is not a JSON object")]
    NodeNotObject(String),
    #[error("node {0} has no string `class_type`")]
    MissingClassType(String),
    #[error("node {0}: `inputs` is not a JSON object")]
    InputsNotObject(String),
    #[error("node {node}: input {input} appears more than once")]
    DuplicateInput { node: String, input: String },
    #[error("node {node}: input {input} carries invalid JSON: {reason}")]
    BadJson {
        node: String,
        input: String,
        reason: String,
    },
    #[error("node {node}: input {input} is not a finite number")]
    NonFiniteNumber { node: String, input: String },
}

/// Converts an API-format workflow to the WIT record.
pub fn workflow_to_wit(value: &Value) -> Result<Workflow, WorkflowError> {
    let obj = value.as_object().ok_or(WorkflowError::NotAnObject)?;
    let mut nodes = Vec::with_capacity(obj.len());
    for (id, node) in obj {
        if id.is_empty() {
            return Err(WorkflowError::EmptyNodeId);
        }
        let node_obj = node
            .as_object()
            .ok_or_else(|| WorkflowError::NodeNotObject(id.clone()))?;
        let class_type = node_obj
            .get("class_type")
            .and_then(Value::as_str)
            .ok_or_else(|| WorkflowError::MissingClassType(id.clone()))?
            .to_owned();
        let title = node_obj
            .get("_meta")
            .and_then(|m| m.get("title"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let inputs = match node_obj.get("inputs") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(name, v)| NodeInput {
                    name: name.clone(),
                    value: input_to_wit(v),
                })
                .collect(),
            Some(_) => return Err(WorkflowError::InputsNotObject(id.clone())),
        };
        nodes.push(Node {
            id: id.clone(),
            class_type,
            title,
            inputs,
        });
    }
    Ok(Workflow { nodes })
}

fn input_to_wit(v: &Value) -> InputValue {
    match v {
        Value::Null => InputValue::Null,
        Value::Bool(b) => InputValue::Boolean(*b),
        Value::String(s) => InputValue::Text(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                InputValue::Integer(i)
            } else if n.is_f64() {
                InputValue::Number(n.as_f64().unwrap_or(f64::NAN))
            } else {
                // u64 beyond i64: keep it exact as JSON text.
                InputValue::Json(n.to_string())
            }
        }
        Value::Array(items) => match link_of(items) {
            Some(link) => InputValue::Link(link),
            None => InputValue::Json(v.to_string()),
        },
        Value::Object(_) => InputValue::Json(v.to_string()),
    }
}

fn link_of(items: &[Value]) -> Option<NodeLink> {
    match items {
        [Value::String(node_id), Value::Number(idx)] => {
            let output_index = u32::try_from(idx.as_u64()?).ok()?;
            Some(NodeLink {
                node_id: node_id.clone(),
                output_index,
            })
        }
        _ => None,
    }
}

/// Converts the WIT record back to API-format JSON, rejecting what ComfyUI could not accept
/// (empty or duplicate ids, duplicate inputs, invalid JSON text, NaN/infinite numbers).
pub fn workflow_from_wit(workflow: &Workflow) -> Result<Value, WorkflowError> {
    let mut out = Map::with_capacity(workflow.nodes.len());
    for node in &workflow.nodes {
        if node.id.is_empty() {
            return Err(WorkflowError::EmptyNodeId);
        }
        if out.contains_key(&node.id) {
            return Err(WorkflowError::DuplicateNode(node.id.clone()));
        }
        if node.class_type.is_empty() {
            return Err(WorkflowError::MissingClassType(node.id.clone()));
        }
        let mut inputs = Map::with_capacity(node.inputs.len());
        let mut seen = HashSet::with_capacity(node.inputs.len());
        for input in &node.inputs {
            if !seen.insert(input.name.as_str()) {
                return Err(WorkflowError::DuplicateInput {
                    node: node.id.clone(),
                    input: input.name.clone(),
                });
            }
            inputs.insert(input.name.clone(), input_from_wit(&node.id, input)?);
        }
        let mut node_obj = Map::new();
        node_obj.insert("inputs".into(), Value::Object(inputs));
        node_obj.insert("class_type".into(), Value::String(node.class_type.clone()));
        if let Some(title) = &node.title {
            let mut meta = Map::new();
            meta.insert("title".into(), Value::String(title.clone()));
            node_obj.insert("_meta".into(), Value::Object(meta));
        }
        out.insert(node.id.clone(), Value::Object(node_obj));
    }
    Ok(Value::Object(out))
}

fn input_from_wit(node: &str, input: &NodeInput) -> Result<Value, WorkflowError> {
    Ok(match &input.value {
        InputValue::Link(l) => Value::Array(vec![
            Value::String(l.node_id.clone()),
            Value::from(l.output_index),
        ]),
        InputValue::Text(s) => Value::String(s.clone()),
        InputValue::Integer(i) => Value::from(*i),
        InputValue::Number(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| WorkflowError::NonFiniteNumber {
                node: node.to_owned(),
                input: input.name.clone(),
            })?,
        InputValue::Boolean(b) => Value::Bool(*b),
        InputValue::Null => Value::Null,
        InputValue::Json(text) => {
            serde_json::from_str(text).map_err(|e| WorkflowError::BadJson {
                node: node.to_owned(),
                input: input.name.clone(),
                reason: e.to_string(),
            })?
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> (String, Value) {
        let path = format!(
            "{}/../../../tests/fixtures/workflows/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let value = serde_json::from_str(&text).unwrap();
        (text, value)
    }

    #[test]
    fn real_workflows_round_trip_in_order() {
        for name in [
            "sd15_txt2img_api.json",
            "run1_empty_image_api.json",
            "test_sleep_api.json",
        ] {
            let (_, wf) = fixture(name);
            let wit = workflow_to_wit(&wf).unwrap();
            let ids: Vec<_> = wit.nodes.iter().map(|n| n.id.as_str()).collect();
            let json_ids: Vec<_> = wf.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(ids, json_ids, "{name}: node order");
            for (node, (_, json_node)) in wit.nodes.iter().zip(wf.as_object().unwrap()) {
                let names: Vec<_> = node.inputs.iter().map(|i| i.name.as_str()).collect();
                let json_names: Vec<_> = json_node["inputs"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(names, json_names, "{name}: input order of node {}", node.id);
            }
            assert!(
                wit.nodes
                    .iter()
                    .flat_map(|n| &n.inputs)
                    .any(|i| matches!(i.value, InputValue::Link(_))),
                "{name}: links recognised"
            );
            let back = workflow_from_wit(&wit).unwrap();
            assert_eq!(back, wf, "{name}");
            assert_eq!(workflow_to_wit(&back).unwrap(), wit, "{name}: stable");
        }
    }

    #[test]
    fn frontend_export_is_byte_identical_after_round_trip() {
        // The ComfyUI frontend writes `inputs`, `class_type`, `_meta` in that order, which is
        // the order `workflow_from_wit` emits.
        let (text, wf) = fixture("sd15_txt2img_api.json");
        let back = workflow_from_wit(&workflow_to_wit(&wf).unwrap()).unwrap();
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&reparsed).unwrap()
        );
        let wit = workflow_to_wit(&wf).unwrap();
        assert_eq!(wit.nodes[0].title.as_deref(), Some("KSampler"));
        let cfg = wit.nodes[0]
            .inputs
            .iter()
            .find(|i| i.name == "cfg")
            .unwrap();
        assert!(matches!(cfg.value, InputValue::Number(f) if f == 8.0));
    }

    #[test]
    fn values_map_to_the_right_variants() {
        let wf = json!({
            "1": {"class_type": "X", "inputs": {
                "link": ["4", 0], "text": "a cat", "int": -3, "float": 7.5, "bool": true,
                "null": null, "list": [1, 2, 3], "obj": {"a": [1]}, "not_link": ["4", -1],
                "three": ["4", 0, 1], "big": 18446744073709551615u64, "idx_too_big": ["4", 4294967296u64]
            }}
        });
        let wit = workflow_to_wit(&wf).unwrap();
        let v = |name: &str| {
            wit.nodes[0]
                .inputs
                .iter()
                .find(|i| i.name == name)
                .unwrap()
                .value
                .clone()
        };
        assert!(
            matches!(v("link"), InputValue::Link(NodeLink { ref node_id, output_index: 0 }) if node_id == "4")
        );
        assert!(matches!(v("text"), InputValue::Text(ref s) if s == "a cat"));
        assert!(matches!(v("int"), InputValue::Integer(-3)));
        assert!(matches!(v("float"), InputValue::Number(f) if f == 7.5));
        assert!(matches!(v("bool"), InputValue::Boolean(true)));
        assert!(matches!(v("null"), InputValue::Null));
        for name in ["list", "obj", "not_link", "three", "big", "idx_too_big"] {
            assert!(matches!(v(name), InputValue::Json(_)), "{name}");
        }
        assert_eq!(workflow_from_wit(&wit).unwrap(), wf);
    }

    #[test]
    fn bad_json_input_is_rejected_not_panicking() {
        assert_eq!(
            workflow_to_wit(&json!([1])),
            Err(WorkflowError::NotAnObject)
        );
        assert_eq!(
            workflow_to_wit(&json!({"1": 3})),
            Err(WorkflowError::NodeNotObject("1".into()))
        );
        assert_eq!(
            workflow_to_wit(&json!({"1": {"inputs": {}}})),
            Err(WorkflowError::MissingClassType("1".into()))
        );
        assert_eq!(
            workflow_to_wit(&json!({"1": {"class_type": "X", "inputs": [1]}})),
            Err(WorkflowError::InputsNotObject("1".into()))
        );
        assert_eq!(
            workflow_to_wit(&json!({"": {"class_type": "X"}})),
            Err(WorkflowError::EmptyNodeId)
        );
        // missing inputs is an empty input list
        assert!(
            workflow_to_wit(&json!({"1": {"class_type": "X"}}))
                .unwrap()
                .nodes[0]
                .inputs
                .is_empty()
        );
    }

    #[test]
    fn bad_plugin_output_is_rejected() {
        let node = |id: &str, inputs: Vec<NodeInput>| Node {
            id: id.into(),
            class_type: "X".into(),
            title: None,
            inputs,
        };
        let input = |name: &str, value: InputValue| NodeInput {
            name: name.into(),
            value,
        };
        let dup = Workflow {
            nodes: vec![node("1", vec![]), node("1", vec![])],
        };
        assert_eq!(
            workflow_from_wit(&dup),
            Err(WorkflowError::DuplicateNode("1".into()))
        );
        let bad_json = Workflow {
            nodes: vec![node(
                "1",
                vec![input("a", InputValue::Json("{nope".into()))],
            )],
        };
        assert!(matches!(
            workflow_from_wit(&bad_json),
            Err(WorkflowError::BadJson { .. })
        ));
        let nan = Workflow {
            nodes: vec![node("1", vec![input("a", InputValue::Number(f64::NAN))])],
        };
        assert!(matches!(
            workflow_from_wit(&nan),
            Err(WorkflowError::NonFiniteNumber { .. })
        ));
        let dup_input = Workflow {
            nodes: vec![node(
                "1",
                vec![input("a", InputValue::Null), input("a", InputValue::Null)],
            )],
        };
        assert!(matches!(
            workflow_from_wit(&dup_input),
            Err(WorkflowError::DuplicateInput { .. })
        ));
        let empty_class = Workflow {
            nodes: vec![Node {
                class_type: String::new(),
                ..node("1", vec![])
            }],
        };
        assert!(matches!(
            workflow_from_wit(&empty_class),
            Err(WorkflowError::MissingClassType(_))
        ));
    }
}
