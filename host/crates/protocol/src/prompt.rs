//! `POST /prompt`: the request a browser sends and the answer ComfyUI gives.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Why a `/prompt` body could not be understood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptRequestError {
    #[error("request body is not valid JSON: {0}")]
    Json(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("no prompt provided")]
    NoPrompt,
    #[error("prompt must be an object of nodes keyed by node id")]
    PromptNotObject,
    #[error("field {field} has the wrong type: {expected}")]
    FieldType {
        field: &'static str,
        expected: &'static str,
    },
}

/// A parsed `POST /prompt` body. Unknown fields are kept verbatim in `rest`, so a rewritten
/// request forwards everything the frontend sent (`extra_data.extra_pnginfo`, `front`,
/// `number`, `partial_execution_targets`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRequest {
    /// The API-format workflow: node id -> `{class_type, inputs, _meta}`.
    pub prompt: Map<String, Value>,
    pub client_id: Option<String>,
    /// A client-chosen prompt id (ComfyUI honours it).
    pub prompt_id: Option<String>,
    /// `extra_data` as sent (object), if any.
    pub extra_data: Option<Map<String, Value>>,
    /// Every other top-level field, in order.
    pub rest: Map<String, Value>,
}

impl PromptRequest {
    /// Parse a request body.
    pub fn parse(body: &[u8]) -> Result<Self, PromptRequestError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| PromptRequestError::Json(e.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(PromptRequestError::NotAnObject);
        };
        let prompt = match map.remove("prompt") {
            None | Some(Value::Null) => return Err(PromptRequestError::NoPrompt),
            Some(Value::Object(p)) => p,
            Some(_) => return Err(PromptRequestError::PromptNotObject),
        };
        let client_id = take_opt_string(&mut map, "client_id")?;
        let prompt_id = take_opt_string(&mut map, "prompt_id")?;
        let extra_data = match map.remove("extra_data") {
            None | Some(Value::Null) => None,
            Some(Value::Object(e)) => Some(e),
            Some(_) => {
                return Err(PromptRequestError::FieldType {
                    field: "extra_data",
                    expected: "object",
                });
            }
        };
        Ok(Self {
            prompt,
            client_id,
            prompt_id,
            extra_data,
            rest: map,
        })
    }

    /// String-valued options under `extra_data.comfyhost` (non-strings are skipped).
    pub fn comfyhost_flags(&self) -> Vec<(String, String)> {
        let Some(Value::Object(flags)) = self.extra_data.as_ref().and_then(|e| e.get("comfyhost"))
        else {
            return Vec::new();
        };
        flags
            .iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k.clone(), s.clone())),
                Value::Bool(b) => Some((k.clone(), b.to_string())),
                Value::Number(n) => Some((k.clone(), n.to_string())),
                _ => None,
            })
            .collect()
    }

    /// Serialize back into a body ComfyUI accepts, fields in ComfyUI's usual order.
    pub fn to_body(&self) -> Vec<u8> {
        let mut map = Map::new();
        map.insert("prompt".into(), Value::Object(self.prompt.clone()));
        if let Some(c) = &self.client_id {
            map.insert("client_id".into(), Value::String(c.clone()));
        }
        if let Some(p) = &self.prompt_id {
            map.insert("prompt_id".into(), Value::String(p.clone()));
        }
        if let Some(e) = &self.extra_data {
            map.insert("extra_data".into(), Value::Object(e.clone()));
        }
        for (k, v) in &self.rest {
            map.insert(k.clone(), v.clone());
        }
        // Serializing a Map of Values cannot fail.
        serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
    }
}

fn take_opt_string(
    map: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, PromptRequestError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(PromptRequestError::FieldType {
            field,
            expected: "string",
        }),
    }
}

/// ComfyUI's 200 answer to `POST /prompt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptAccepted {
    pub prompt_id: String,
    pub number: f64,
    pub node_errors: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_recorded_request_and_round_trips() {
        let rec: Value =
            serde_json::from_str(include_str!("../tests/fixtures/run1_post_prompt.json")).unwrap();
        let body = serde_json::to_vec(&rec["request"]["json"]).unwrap();
        let req = PromptRequest::parse(&body).unwrap();
        assert_eq!(req.prompt.len(), 2);
        assert_eq!(
            req.client_id.as_deref(),
            Some("lab-488d4197bb8243b4a6b872fadaf51000")
        );
        let again = PromptRequest::parse(&req.to_body()).unwrap();
        assert_eq!(again, req);
        let accepted: PromptAccepted = serde_json::from_value(rec["body"].clone()).unwrap();
        assert_eq!(accepted.number, 0.0);
    }

    #[test]
    fn keeps_unknown_fields_and_reads_flags() {
        let body = br#"{"prompt":{"1":{"class_type":"X","inputs":{}}},"front":true,
            "extra_data":{"extra_pnginfo":{"workflow":{}},"comfyhost":{"route":"serverless","enhance":true,"n":3,"o":{}}}}"#;
        let req = PromptRequest::parse(body).unwrap();
        assert_eq!(req.rest.get("front"), Some(&Value::Bool(true)));
        assert_eq!(
            req.comfyhost_flags(),
            vec![
                ("route".to_string(), "serverless".to_string()),
                ("enhance".to_string(), "true".to_string()),
                ("n".to_string(), "3".to_string())
            ]
        );
        let out: Value = serde_json::from_slice(&req.to_body()).unwrap();
        assert_eq!(out["front"], Value::Bool(true));
        assert!(out["extra_data"]["extra_pnginfo"].is_object());
    }

    #[test]
    fn rejects_bad_bodies_with_typed_errors() {
        assert!(matches!(
            PromptRequest::parse(b"{not json"),
            Err(PromptRequestError::Json(_))
        ));
        assert_eq!(
            PromptRequest::parse(b"[]"),
            Err(PromptRequestError::NotAnObject)
        );
        assert_eq!(
            PromptRequest::parse(b"{}"),
            Err(PromptRequestError::NoPrompt)
        );
        assert_eq!(
            PromptRequest::parse(br#"{"prompt":[1]}"#),
            Err(PromptRequestError::PromptNotObject)
        );
        assert!(matches!(
            PromptRequest::parse(br#"{"prompt":{},"client_id":5}"#),
            Err(PromptRequestError::FieldType {
                field: "client_id",
                ..
            })
        ));
    }
}
