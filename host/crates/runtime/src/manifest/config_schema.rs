//! A plugin's configuration JSON Schema: checked when loaded, used to validate admin-supplied
//! config and to fill in top-level `default`s before the plugin sees it.
//!
//! The compiled validator is not kept: a compiled 2020-12 schema holds several MB (measured
//! 5-7 MB per first-party plugin, most of the host's idle heap with five plugins, issue 24),
//! and config is validated only when a plugin loads or an admin saves it. Each validation
//! compiles the schema again (about a millisecond).
//!
//! jsonschema checks every schema against its draft's meta-schema, compiled once into a
//! process-wide static; the 2020-12 meta-schema (`$dynamicRef` throughout) grows to about
//! 26 MB there. A 2020-12 / 2019-09 schema that uses no keyword whose meaning differs in
//! draft 7 (see [`DRAFT_SENSITIVE_KEYWORDS`]) validates exactly the same as draft 7, so it is
//! compiled as draft 7 (formats as annotations, as 2020-12 does by default); any other schema
//! is compiled as it declares.

use serde_json::Value;

use crate::RuntimeError;

/// A config schema known to compile.
pub struct ConfigSchema {
    schema: Value,
}

impl std::fmt::Debug for ConfigSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSchema")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl ConfigSchema {
    /// Compiles a schema. Only local references resolve (no network, no files): the runtime is
    /// built without jsonschema's resolver features.
    pub fn new(schema: Value) -> Result<Self, RuntimeError> {
        compile(&schema)?;
        Ok(Self { schema })
    }

    /// Parses JSON text and compiles it.
    pub fn from_json_str(text: &str) -> Result<Self, RuntimeError> {
        let schema: Value = serde_json::from_str(text)
            .map_err(|e| RuntimeError::Manifest(format!("config schema is not JSON: {e}")))?;
        Self::new(schema)
    }

    /// The schema as JSON (for dashboard forms).
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Applies top-level property `default`s to `config` (an object; `null` counts as `{}`),
    /// then validates it. Returns the completed config, or [`RuntimeError::Config`] listing every
    /// violation as `<path>: <message>`.
    pub fn apply(&self, config: &Value) -> Result<Value, RuntimeError> {
        let mut config = match config {
            Value::Null => Value::Object(serde_json::Map::new()),
            other => other.clone(),
        };
        if let (Value::Object(obj), Some(Value::Object(props))) =
            (&mut config, self.schema.get("properties"))
        {
            for (name, prop) in props {
                if let Some(default) = prop.get("default")
                    && !obj.contains_key(name)
                {
                    obj.insert(name.clone(), default.clone());
                }
            }
        }
        let validator = compile(&self.schema)?;
        let errors: Vec<String> = validator
            .iter_errors(&config)
            .map(|e| {
                let path = e.instance_path.to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("{path}: {e}")
                }
            })
            .collect();
        let errors = if errors.is_empty() {
            self.check_choices(&config)
        } else {
            errors
        };
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(RuntimeError::Config(errors.join("; ")))
        }
    }
}

impl ConfigSchema {
    /// The `x-choices` extension: a string property (top level, or the values of a top-level
    /// object's `additionalProperties`) must be one of `values` or a key of the top-level object
    /// property named by `keys_of` (names the admin defined elsewhere in the same config, e.g.
    /// custom styles). JSON Schema cannot refer to sibling keys, so the host checks this at save;
    /// `null` passes (the schema's `type` decides whether it is allowed).
    fn check_choices(&self, config: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(Value::Object(props)) = self.schema.get("properties") else {
            return errors;
        };
        for (name, prop) in props {
            let value = config.get(name);
            if let Some(choices) = prop.get("x-choices") {
                check_choice(config, choices, &format!("/{name}"), value, &mut errors);
            }
            if let (Some(choices), Some(Value::Object(map))) = (
                prop.get("additionalProperties")
                    .and_then(|a| a.get("x-choices")),
                value,
            ) {
                for (key, v) in map {
                    check_choice(
                        config,
                        choices,
                        &format!("/{name}/{key}"),
                        Some(v),
                        &mut errors,
                    );
                }
            }
        }
        errors
    }
}

/// Keywords that are new since draft 7, mean something else there, or are dropped after it
/// (draft 7 ignores `$ref`'s siblings; 2020-12 ignores `dependencies` and `additionalItems`).
/// Matched as any object key (a property of that name too): over-matching only costs memory.
pub(crate) const DRAFT_SENSITIVE_KEYWORDS: &[&str] = &[
    "$schema",
    "$ref",
    "$id",
    "$defs",
    "definitions",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$recursiveRef",
    "$recursiveAnchor",
    "$vocabulary",
    "prefixItems",
    "additionalItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "minContains",
    "maxContains",
    "contentSchema",
];

const NEWER_DRAFTS: &[&str] = &[
    "https://json-schema.org/draft/2020-12/schema",
    "https://json-schema.org/draft/2019-09/schema",
];

/// True when `schema` declares 2020-12 or 2019-09 (or nothing: jsonschema's default is
/// 2020-12) and validates the same under draft 7.
fn draft7_equivalent(schema: &Value) -> bool {
    let newer = match schema.get("$schema") {
        None => true,
        Some(Value::String(uri)) => NEWER_DRAFTS.contains(&uri.trim_end_matches('#')),
        Some(_) => false,
    };
    fn sensitive(v: &Value, top: bool) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, v)| {
                (DRAFT_SENSITIVE_KEYWORDS.contains(&k.as_str()) && !(top && k == "$schema"))
                    || (k == "items" && v.is_array())
                    || sensitive(v, false)
            }),
            Value::Array(a) => a.iter().any(|v| sensitive(v, false)),
            _ => false,
        }
    }
    newer && !sensitive(schema, true)
}

/// Compiles `schema` (checked against its meta-schema first).
fn compile(schema: &Value) -> Result<jsonschema::Validator, RuntimeError> {
    let compiled = if draft7_equivalent(schema) {
        let mut plain = schema.clone();
        if let Value::Object(m) = &mut plain {
            m.remove("$schema");
        }
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(false)
            .build(&plain)
    } else {
        jsonschema::validator_for(schema)
    };
    compiled.map_err(|e| RuntimeError::Manifest(format!("config schema is not valid: {e}")))
}

fn check_choice(
    config: &Value,
    choices: &Value,
    path: &str,
    value: Option<&Value>,
    errors: &mut Vec<String>,
) {
    let Some(Value::String(v)) = value else {
        return;
    };
    let mut allowed: Vec<String> = choices
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if let Some(Value::Object(keys)) = choices
        .get("keys_of")
        .and_then(Value::as_str)
        .and_then(|k| config.get(k))
    {
        allowed.extend(keys.keys().cloned());
    }
    if !allowed.iter().any(|a| a == v) {
        errors.push(format!(
            "{path}: {v:?} is not one of {}",
            allowed.join(", ")
        ));
    }
}

/// Config of a plugin without a schema: any JSON object (`null` becomes `{}`).
pub fn apply_without_schema(config: &Value) -> Result<Value, RuntimeError> {
    match config {
        Value::Null => Ok(Value::Object(serde_json::Map::new())),
        Value::Object(_) => Ok(config.clone()),
        other => Err(RuntimeError::Config(format!(
            "config must be a JSON object, got {other}"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ConfigSchema {
        ConfigSchema::new(json!({
            "type": "object",
            "properties": {
                "endpoint": { "type": "string", "default": "local" },
                "max_queue": { "type": "integer", "minimum": 1, "default": 4 },
                "tags": { "type": "array", "items": { "type": "string" } }
            },
            "required": ["endpoint"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn choices_accept_listed_values_and_keys_defined_in_the_config() {
        let s = ConfigSchema::new(json!({
            "type": "object",
            "properties": {
                "default_style": {"type": ["string", "null"], "default": null,
                    "x-choices": {"values": ["cinematic", "minimal"], "keys_of": "styles"}},
                "user_styles": {"type": "object", "default": {},
                    "additionalProperties": {"type": "string",
                        "x-choices": {"values": ["off", "cinematic"], "keys_of": "styles"}}},
                "styles": {"type": "object", "default": {}}
            }
        }))
        .unwrap();
        assert!(s.apply(&json!({})).is_ok());
        assert!(s.apply(&json!({"default_style": "cinematic"})).is_ok());
        assert!(
            s.apply(&json!({"default_style": "poster", "styles": {"poster": "p {prompt}"}}))
                .is_ok()
        );
        let e = s
            .apply(&json!({"default_style": "cinematik"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/default_style: \"cinematik\" is not one of cinematic, minimal"),
            "{e}"
        );
        let e = s
            .apply(&json!({"user_styles": {"alice": "postr"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/user_styles/alice"), "{e}");
    }

    #[test]
    fn defaults_fill_missing_top_level_properties() {
        let s = schema();
        assert_eq!(
            s.apply(&Value::Null).unwrap(),
            json!({ "endpoint": "local", "max_queue": 4 })
        );
        assert_eq!(
            s.apply(&json!({ "max_queue": 9 })).unwrap(),
            json!({ "max_queue": 9, "endpoint": "local" })
        );
    }

    #[test]
    fn violations_are_listed_with_paths() {
        let err = schema()
            .apply(&json!({ "max_queue": 0, "tags": [1], "extra": true }))
            .unwrap_err();
        let RuntimeError::Config(msg) = err else {
            panic!("expected Config error, got {err}")
        };
        assert!(msg.contains("/max_queue"), "{msg}");
        assert!(msg.contains("/tags/0"), "{msg}");
        assert!(msg.contains("extra"), "{msg}");
    }

    #[test]
    fn validation_without_a_kept_validator_is_repeatable() {
        // The schema is compiled per `apply` (no validator held between calls): results do not
        // depend on earlier calls.
        let s = schema();
        for _ in 0..3 {
            assert!(s.apply(&json!({ "max_queue": 0 })).is_err());
            assert_eq!(
                s.apply(&json!({ "endpoint": "x" })).unwrap(),
                json!({ "endpoint": "x", "max_queue": 4 })
            );
        }
    }

    #[test]
    fn plain_newer_draft_schemas_compile_as_draft7_and_the_rest_as_declared() {
        let plain = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": { "n": { "type": "integer", "minimum": 1 }, "e": { "format": "email" } }
        });
        assert!(draft7_equivalent(&plain));
        assert!(draft7_equivalent(&json!({ "type": "object" })));
        let s = ConfigSchema::new(plain).unwrap();
        assert!(s.apply(&json!({ "n": 0 })).is_err());
        // Formats stay annotations, as in 2020-12.
        assert!(s.apply(&json!({ "e": "not an email" })).is_ok());

        for keyword in [
            "prefixItems",
            "$ref",
            "$defs",
            "dependentRequired",
            "dependencies",
        ] {
            let v = json!({ "properties": { "a": { keyword: [] } } });
            assert!(!draft7_equivalent(&v), "{keyword}");
        }
        assert!(!draft7_equivalent(
            &json!({ "$schema": "http://json-schema.org/draft-07/schema#" })
        ));
        assert!(!draft7_equivalent(
            &json!({ "items": [{ "type": "string" }] })
        ));

        // A schema that needs 2020-12 still gets it: prefixItems is enforced.
        let tuple = ConfigSchema::new(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": { "pair": { "prefixItems": [{ "type": "string" }, { "type": "integer" }] } }
        }))
        .unwrap();
        assert!(tuple.apply(&json!({ "pair": ["a", 1] })).is_ok());
        assert!(tuple.apply(&json!({ "pair": ["a", "b"] })).is_err());
    }

    #[test]
    fn invalid_schema_is_a_manifest_error() {
        let err = ConfigSchema::new(json!({ "type": "no-such-type" })).unwrap_err();
        assert!(matches!(err, RuntimeError::Manifest(_)), "{err}");
        let err = ConfigSchema::from_json_str("{ not json").unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    #[test]
    fn without_schema_only_objects_pass() {
        assert_eq!(apply_without_schema(&Value::Null).unwrap(), json!({}));
        assert!(apply_without_schema(&json!([1])).is_err());
    }
}
