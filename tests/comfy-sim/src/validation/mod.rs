//! `POST /prompt` validation, a port of ComfyUI 0.3.64 `execution.validate_prompt` /
//! `validate_inputs`: same error types, messages, details, `extra_info` and ordering.

pub mod convert;

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::catalogue::{Catalogue, InputCategory, NodeClass};
use crate::pyfmt::{py_repr, py_str};

/// A successful validation: outputs to execute and (possibly non-empty) node errors.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Output node ids that validated, in prompt order.
    pub outputs: Vec<String>,
    /// Errors of outputs that failed while others passed.
    pub node_errors: Map<String, Value>,
}

/// A refused prompt: the `error` object and `node_errors` of the 400 body.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// `{type, message, details, extra_info}`.
    pub error: Value,
    /// Per-node errors.
    pub node_errors: Map<String, Value>,
}

/// A Python exception raised while validating (becomes `exception_during_validation`).
struct PyException {
    exception_type: &'static str,
    message: String,
    traceback: Vec<String>,
}

const VALIDATE_TB: [&str; 2] = [
    "  File \"/opt/comfy/ComfyUI/execution.py\", line 1010, in validate_prompt\n    m = await validate_inputs(prompt_id, prompt, o, validated)\n        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
    "  File \"/opt/comfy/ComfyUI/execution.py\", line 788, in validate_inputs\n    o_class_type = prompt[o_id]['class_type']\n                   ~~~~~~^^^^^^\n",
];

fn error_obj(kind: &str, message: &str, details: &str) -> Value {
    json!({"type": kind, "message": message, "details": details, "extra_info": {}})
}

/// Ordered memo of validated nodes (Python dict insertion order matters for `node_errors`).
#[derive(Default)]
struct Validated {
    order: Vec<String>,
    results: HashMap<String, (bool, Vec<Value>)>,
}

impl Validated {
    fn insert(&mut self, id: &str, result: (bool, Vec<Value>)) {
        if !self.results.contains_key(id) {
            self.order.push(id.to_string());
        }
        self.results.insert(id.to_string(), result);
    }
}

struct Validator<'a> {
    catalogue: &'a Catalogue,
    input_dir: &'a Path,
    prompt: &'a mut Map<String, Value>,
    validated: Validated,
}

/// Validates (and, like ComfyUI, normalises widget values in) `prompt`.
#[allow(clippy::result_large_err)]
pub fn validate_prompt(
    catalogue: &Catalogue,
    input_dir: &Path,
    prompt: &mut Map<String, Value>,
    partial_targets: Option<&[String]>,
) -> Result<Accepted, Rejected> {
    let mut outputs = Vec::new();
    for (id, node) in prompt.iter() {
        let class_type = match node.get("class_type") {
            Some(c) => c,
            None => {
                return Err(Rejected {
                    error: error_obj(
                        "invalid_prompt",
                        "Cannot execute because a node is missing the class_type property.",
                        &format!("Node ID '#{id}'"),
                    ),
                    node_errors: Map::new(),
                });
            }
        };
        let class_name = py_str(class_type);
        let Some(class) = catalogue.class(&class_name) else {
            return Err(Rejected {
                error: error_obj(
                    "invalid_prompt",
                    &format!("Cannot execute because node {class_name} does not exist."),
                    &format!("Node ID '#{id}'"),
                ),
                node_errors: Map::new(),
            });
        };
        if class.output_node && partial_targets.is_none_or(|t| t.iter().any(|x| x == id)) {
            outputs.push(id.clone());
        }
    }
    if outputs.is_empty() {
        return Err(Rejected {
            error: error_obj("prompt_no_outputs", "Prompt has no outputs", ""),
            node_errors: Map::new(),
        });
    }

    let mut v = Validator {
        catalogue,
        input_dir,
        prompt,
        validated: Validated::default(),
    };
    let mut good = Vec::new();
    let mut errors: Vec<(String, Vec<Value>)> = Vec::new();
    let mut node_errors = Map::new();
    for o in &outputs {
        let (valid, reasons) = match v.validate_inputs(o) {
            Ok(r) => r,
            Err(ex) => {
                let reasons = vec![json!({
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": ex.message,
                    "extra_info": {"exception_type": ex.exception_type, "traceback": ex.traceback},
                })];
                v.validated.insert(o, (false, reasons.clone()));
                (false, reasons)
            }
        };
        if valid {
            good.push(o.clone());
            continue;
        }
        if !reasons.is_empty() {
            tracing::error!(output = %o, "Failed to validate prompt for output {o}");
            errors.push((o.clone(), reasons));
        }
        for id in &v.validated.order {
            let Some((ok, reasons)) = v.validated.results.get(id) else {
                continue;
            };
            if *ok || reasons.is_empty() {
                continue;
            }
            let entry = node_errors.entry(id.clone()).or_insert_with(|| {
                let class_type = v
                    .prompt
                    .get(id)
                    .and_then(|n| n.get("class_type"))
                    .cloned()
                    .unwrap_or(Value::Null);
                json!({"errors": reasons, "dependent_outputs": [], "class_type": class_type})
            });
            if let Some(deps) = entry
                .get_mut("dependent_outputs")
                .and_then(Value::as_array_mut)
                && !deps.iter().any(|d| d == o)
            {
                deps.push(Value::String(o.clone()));
            }
        }
    }
    if good.is_empty() {
        let details: Vec<String> = errors
            .iter()
            .flat_map(|(_, reasons)| reasons.iter())
            .map(|e| format!("{}: {}", py_str(&e["message"]), py_str(&e["details"])))
            .collect();
        return Err(Rejected {
            error: error_obj(
                "prompt_outputs_failed_validation",
                "Prompt outputs failed validation",
                &details.join("\n"),
            ),
            node_errors,
        });
    }
    Ok(Accepted {
        outputs: good,
        node_errors,
    })
}

impl Validator<'_> {
    fn validate_inputs(&mut self, id: &str) -> Result<(bool, Vec<Value>), PyException> {
        if let Some(r) = self.validated.results.get(id) {
            return Ok(r.clone());
        }
        let node = self.prompt.get(id).cloned().unwrap_or(Value::Null);
        let Some(inputs) = node.get("inputs").and_then(Value::as_object).cloned() else {
            return Err(PyException {
                exception_type: "KeyError",
                message: "'inputs'".into(),
                traceback: VALIDATE_TB[..1].iter().map(|s| s.to_string()).collect(),
            });
        };
        let class_name = py_str(&node["class_type"]);
        let Some(class) = self.catalogue.class(&class_name) else {
            return Err(PyException {
                exception_type: "KeyError",
                message: py_repr(&node["class_type"]),
                traceback: VALIDATE_TB.iter().map(|s| s.to_string()).collect(),
            });
        };
        let custom_validated = custom_validation_inputs(&class);
        let mut errors = Vec::new();
        let mut valid = true;
        let mut converted: Vec<(String, Value)> = Vec::new();

        for spec in &class.inputs {
            let x = spec.name.as_str();
            let info = spec.config();
            let Some(val) = inputs.get(x) else {
                if spec.category == InputCategory::Required {
                    errors.push(json!({
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": x,
                        "extra_info": {"input_name": x},
                    }));
                }
                continue;
            };
            if let Value::Array(link) = val {
                if link.len() != 2 {
                    errors.push(json!({
                        "type": "bad_linked_input",
                        "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        "details": x,
                        "extra_info": {"input_name": x, "input_config": info, "received_value": val},
                    }));
                    continue;
                }
                let o_id = py_str(&link[0]);
                let o_class_name = match (&link[0], self.prompt.get(&o_id)) {
                    (Value::String(_), Some(n)) => py_str(&n["class_type"]),
                    _ => {
                        return Err(PyException {
                            exception_type: "KeyError",
                            message: py_repr(&link[0]),
                            traceback: VALIDATE_TB.iter().map(|s| s.to_string()).collect(),
                        });
                    }
                };
                let o_class = self.catalogue.class(&o_class_name);
                let slot = link[1].as_i64();
                let received = match (o_class.as_ref(), slot) {
                    (Some(c), Some(s)) => {
                        let idx = if s < 0 { c.outputs.len() as i64 + s } else { s };
                        usize::try_from(idx)
                            .ok()
                            .and_then(|i| c.outputs.get(i))
                            .cloned()
                    }
                    _ => None,
                };
                let Some(received) = received else {
                    let message = if slot.is_none() {
                        format!(
                            "tuple indices must be integers or slices, not {}",
                            crate::pyfmt::py_type_name(&link[1])
                        )
                    } else {
                        "tuple index out of range".to_string()
                    };
                    return Err(PyException {
                        exception_type: if slot.is_none() {
                            "TypeError"
                        } else {
                            "IndexError"
                        },
                        message,
                        traceback: VALIDATE_TB.iter().map(|s| s.to_string()).collect(),
                    });
                };
                if !types_compatible(&received, spec) {
                    errors.push(json!({
                        "type": "return_type_mismatch",
                        "message": "Return type mismatch between linked nodes",
                        "details": format!("{x}, received_type({received}) mismatch input_type({})", type_display(spec)),
                        "extra_info": {"input_name": x, "input_config": info, "received_type": received, "linked_node": val},
                    }));
                    continue;
                }
                let (ok, _) = self.validate_inputs(&o_id)?;
                if !ok {
                    valid = false;
                }
                continue;
            }

            // A widget value.
            let mut val = val.clone();
            if let Some(inner) = val.as_object().and_then(|o| o.get("__value__")).cloned() {
                val = inner;
            }
            if let Value::String(t) = &spec.input_type {
                match convert::convert(t, &val) {
                    Ok(c) => val = c,
                    Err(ex) => {
                        errors.push(json!({
                            "type": "invalid_input_type",
                            "message": format!("Failed to convert an input value to a {t} value"),
                            "details": format!("{x}, {}, {ex}", py_str(&val)),
                            "extra_info": {"input_name": x, "input_config": info, "received_value": val, "exception_message": ex},
                        }));
                        continue;
                    }
                }
            }
            converted.push((x.to_string(), val.clone()));
            if custom_validated.contains(&x) {
                continue;
            }
            if let Some(min) = spec.extra.get("min")
                && convert::compare(&val, min) == Some(std::cmp::Ordering::Less)
            {
                errors.push(json!({
                        "type": "value_smaller_than_min",
                        "message": format!("Value {} smaller than min of {}", py_str(&val), py_str(min)),
                        "details": x,
                        "extra_info": {"input_name": x, "input_config": info, "received_value": val},
                    }));
                continue;
            }
            if let Some(max) = spec.extra.get("max")
                && convert::compare(&val, max) == Some(std::cmp::Ordering::Greater)
            {
                errors.push(json!({
                    "type": "value_bigger_than_max",
                    "message": format!("Value {} bigger than max of {}", py_str(&val), py_str(max)),
                    "details": x,
                    "extra_info": {"input_name": x, "input_config": info, "received_value": val},
                }));
                continue;
            }
            if let Value::Array(options) = &spec.input_type
                && !options.iter().any(|o| convert::py_eq(o, &val))
            {
                let (list_info, input_config) = if options.len() > 20 {
                    (format!("(list of length {})", options.len()), Value::Null)
                } else {
                    (py_repr(&spec.input_type), info.clone())
                };
                errors.push(json!({
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": format!("{x}: '{}' not in {list_info}", py_str(&val)),
                        "extra_info": {"input_name": x, "input_config": input_config, "received_value": val},
                    }));
                continue;
            }
        }

        // Write normalised values back, as ComfyUI does (`inputs[x] = val`).
        if let Some(node_inputs) = self
            .prompt
            .get_mut(id)
            .and_then(|n| n.get_mut("inputs"))
            .and_then(Value::as_object_mut)
        {
            for (k, v) in converted {
                node_inputs.insert(k, v);
            }
        }

        for x in &custom_validated {
            if let Some(r) = self.custom_validate(&class, x, &inputs) {
                errors.push(json!({
                    "type": "custom_validation_failed",
                    "message": "Custom validation failed for node",
                    "details": format!("{x} - {r}"),
                    "extra_info": {"input_name": x},
                }));
            }
        }

        let result = if !errors.is_empty() || !valid {
            (false, errors)
        } else {
            (true, Vec::new())
        };
        self.validated.insert(id, result.clone());
        Ok(result)
    }

    /// `VALIDATE_INPUTS` of the classes that define it; `Some(reason)` when it fails.
    fn custom_validate(
        &self,
        class: &NodeClass,
        input: &str,
        inputs: &Map<String, Value>,
    ) -> Option<String> {
        match (class.name.as_str(), input) {
            ("LoadImage", "image") => {
                let image = inputs.get("image").map(py_str).unwrap_or_default();
                let (name, _) = crate::execution::values::annotated_name(&image);
                let exists =
                    crate::paths::safe_join(self.input_dir, name).is_some_and(|p| p.is_file());
                (!exists).then(|| format!("Invalid image file: {image}"))
            }
            _ => None,
        }
    }
}

/// Inputs handled by a class's `VALIDATE_INPUTS` (they skip the min/max/combo checks).
fn custom_validation_inputs(class: &NodeClass) -> Vec<&'static str> {
    match class.name.as_str() {
        "LoadImage" => vec!["image"],
        _ => Vec::new(),
    }
}

fn type_display(spec: &crate::catalogue::InputSpec) -> String {
    match &spec.input_type {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// ComfyUI `validate_node_input` (non-strict): `*` matches anything, comma unions by subset.
fn types_compatible(received: &str, spec: &crate::catalogue::InputSpec) -> bool {
    let input = spec.type_name();
    if received == input || received == "*" || input == "*" {
        return true;
    }
    if spec.input_type.is_array() {
        return received == "COMBO";
    }
    let inputs: Vec<&str> = input.split(',').map(str::trim).collect();
    received
        .split(',')
        .map(str::trim)
        .all(|r| inputs.contains(&r))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn catalogue() -> (tempfile::TempDir, Catalogue) {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalogue::new(dir.path().join("models"), dir.path().join("input"));
        (dir, c)
    }

    #[allow(clippy::result_large_err)]
    fn run(c: &Catalogue, dir: &Path, prompt: Value) -> Result<Accepted, Rejected> {
        let mut p = prompt.as_object().unwrap().clone();
        validate_prompt(c, dir, &mut p, None)
    }

    #[test]
    fn good_prompt_is_accepted_and_values_are_normalised() {
        let (dir, c) = catalogue();
        let mut p = json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": "64", "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
        })
        .as_object()
        .unwrap()
        .clone();
        let ok = validate_prompt(&c, dir.path(), &mut p, None).unwrap();
        assert_eq!(ok.outputs, vec!["2"]);
        assert_eq!(p["1"]["inputs"]["width"], json!(64));
    }

    #[test]
    fn out_of_range_and_bad_slot_are_reported() {
        let (dir, c) = catalogue();
        let err = run(&c, dir.path(), json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 99999, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
        }))
        .unwrap_err();
        assert_eq!(
            err.node_errors["1"]["errors"][0]["type"],
            "value_bigger_than_max"
        );
        assert_eq!(
            err.node_errors["1"]["errors"][0]["message"],
            "Value 99999 bigger than max of 16384"
        );

        let err = run(&c, dir.path(), json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 5], "filename_prefix": "x"}}
        }))
        .unwrap_err();
        assert_eq!(
            err.node_errors["2"]["errors"][0]["type"],
            "exception_during_validation"
        );
        assert_eq!(
            err.node_errors["2"]["errors"][0]["extra_info"]["exception_type"],
            "IndexError"
        );
    }

    #[test]
    fn missing_class_type_is_invalid_prompt() {
        let (dir, c) = catalogue();
        let err = run(&c, dir.path(), json!({"1": {"inputs": {}}})).unwrap_err();
        assert_eq!(err.error["type"], "invalid_prompt");
        assert_eq!(err.error["details"], "Node ID '#1'");
    }

    #[test]
    fn load_image_uses_custom_validation() {
        let (dir, c) = catalogue();
        let err = run(
            &c,
            dir.path(),
            json!({
                "1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}},
                "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
            }),
        )
        .unwrap_err();
        assert_eq!(
            err.node_errors["1"]["errors"][0]["type"],
            "custom_validation_failed"
        );
        assert_eq!(
            err.node_errors["1"]["errors"][0]["details"],
            "image - Invalid image file: nope.png"
        );
    }
}
