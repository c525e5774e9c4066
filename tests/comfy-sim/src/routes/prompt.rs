//! `GET /prompt` and `POST /prompt` (validation, queueing).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::pyfmt::py_str;
use crate::routes::{internal_error, json_response};
use crate::state::{QueueItem, Sim};
use crate::validation::{Rejected, validate_prompt};

/// Keys stripped from `extra_data` before it is queued (`SENSITIVE_EXTRA_DATA_KEYS`).
const SENSITIVE_EXTRA_DATA_KEYS: &[&str] = &["auth_token_comfy_org", "api_key_comfy_org"];

/// `GET /prompt`.
pub async fn get_prompt(State(sim): State<Arc<Sim>>) -> Response {
    json_response(StatusCode::OK, &sim.exec_info())
}

/// `POST /prompt`.
pub async fn post_prompt(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    tracing::info!("got prompt");
    let Ok(Value::Object(json_data)) = serde_json::from_slice::<Value>(&body) else {
        return internal_error();
    };
    let number: Value = match json_data.get("number") {
        Some(n) => match n
            .as_f64()
            .or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))
        {
            Some(f) => json!(f),
            None => return internal_error(),
        },
        None => {
            let front = json_data
                .get("front")
                .is_some_and(|f| f.as_bool().unwrap_or(!f.is_null()));
            json!(sim.next_number(front))
        }
    };
    let Some(prompt) = json_data.get("prompt") else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({
                "error": {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}},
                "node_errors": {},
            }),
        );
    };
    let Value::Object(prompt) = prompt else {
        return internal_error();
    };
    let mut prompt = prompt.clone();
    let prompt_id = if sim.opts.profile.is_current() {
        match json_data.get("prompt_id") {
            None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
            Some(v) => match validate_job_id(v) {
                Some(id) => id,
                None => return invalid_prompt_id(),
            },
        }
    } else {
        match json_data.get("prompt_id") {
            Some(v) => py_str(v),
            None => uuid::Uuid::new_v4().to_string(),
        }
    };
    let partial: Option<Vec<String>> = match json_data.get("partial_execution_targets") {
        Some(Value::Array(a)) => Some(a.iter().map(py_str).collect()),
        Some(Value::Null) | None => None,
        Some(_) => return internal_error(),
    };
    let validation = validate_prompt(
        &sim.catalogue,
        &sim.opts.input_dir,
        &mut prompt,
        partial.as_deref(),
    );
    let mut extra_data: Map<String, Value> = match json_data.get("extra_data") {
        Some(Value::Object(e)) => e.clone(),
        None => Map::new(),
        Some(_) => return internal_error(),
    };
    if let Some(c) = json_data.get("client_id") {
        extra_data.insert("client_id".into(), c.clone());
    }
    match validation {
        Ok(accepted) => {
            for k in SENSITIVE_EXTRA_DATA_KEYS {
                extra_data.shift_remove(*k);
            }
            if sim.opts.profile.is_current() {
                extra_data.insert("create_time".into(), json!(now_millis()));
            }
            sim.put(QueueItem {
                number: number.clone(),
                prompt_id: prompt_id.clone(),
                prompt: Value::Object(prompt),
                extra_data,
                outputs: accepted.outputs,
            });
            json_response(
                StatusCode::OK,
                &json!({"prompt_id": prompt_id, "number": number, "node_errors": accepted.node_errors}),
            )
        }
        Err(Rejected { error, node_errors }) => {
            tracing::warn!(prompt_id, "invalid prompt: {}", error);
            json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": error, "node_errors": node_errors}),
            )
        }
    }
}

/// `comfy_execution.jobs.validate_job_id`: a client-supplied id must be a string that is a UUID
/// in canonical lowercase hyphenated form (`str(uuid.UUID(v)) == v`).
pub fn validate_job_id(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    let parsed = uuid::Uuid::parse_str(s).ok()?;
    (parsed.hyphenated().to_string() == s).then(|| s.to_string())
}

/// 0.33.0's answer to a malformed client `prompt_id`.
fn invalid_prompt_id() -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "error": {
                "type": "invalid_prompt_id",
                "message": "prompt_id must be a valid UUID",
                "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one",
                "extra_info": {},
            },
            "node_errors": {},
        }),
    )
}

/// `int(time.time() * 1000)`.
fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_must_be_canonical_lowercase_uuids() {
        let ok = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";
        assert_eq!(validate_job_id(&json!(ok)).as_deref(), Some(ok));
        assert_eq!(validate_job_id(&json!(ok.to_uppercase())), None);
        assert_eq!(
            validate_job_id(&json!("0b1c2d3e4f504a6b8c7d9e0f1a2b3c4d")),
            None
        );
        assert_eq!(validate_job_id(&json!("my-job")), None);
        assert_eq!(validate_job_id(&json!(7)), None);
    }
}
