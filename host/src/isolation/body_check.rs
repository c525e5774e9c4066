//! `POST /prompt` bodies the host cannot read the way ComfyUI would (not JSON to a strict
//! parser — `NaN`, `Infinity` —, not an object, no `prompt`, a `prompt` that is not an
//! object, a `client_id` / `prompt_id` / `extra_data` of the wrong type) are refused before
//! ComfyUI, in ComfyUI's error shape, so nothing bypasses the plugins, the job record or the
//! fair queue numbering.

use comfyhost_protocol::ComfyErrorBody;
use comfyhost_protocol::PromptRequestError;

/// ComfyUI's error body for a body that failed to parse.
pub fn refusal(e: &PromptRequestError) -> ComfyErrorBody {
    match e {
        // ComfyUI's own words for a body without a prompt.
        PromptRequestError::NoPrompt => {
            ComfyErrorBody::new("no_prompt", "No prompt provided", "No prompt provided")
        }
        other => ComfyErrorBody::new(
            "invalid_prompt",
            "The request body is not a prompt this host can read",
            other.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comfyhost_protocol::PromptRequest;

    #[test]
    fn odd_bodies_are_refused_with_comfyui_shapes() {
        for body in [
            &br#"{"prompt": {}, "client_id": 777, "number": -100}"#[..],
            br#"{"prompt": {}, "prompt_id": ["x"]}"#,
            br#"{"prompt": {"1": {"class_type": "X", "inputs": {"v": NaN}}}}"#,
            br#"{"prompt": {"1": {"class_type": "X", "inputs": {"v": Infinity}}}}"#,
            br#"{"prompt": [1, 2]}"#,
            br#"[]"#,
        ] {
            let e = PromptRequest::parse(body).unwrap_err();
            let v = serde_json::to_value(refusal(&e)).unwrap();
            assert_eq!(
                v["error"]["type"],
                "invalid_prompt",
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(v["node_errors"].is_object() && v["error"]["extra_info"].is_object());
        }
        let e = PromptRequest::parse(br#"{"client_id": "c"}"#).unwrap_err();
        assert_eq!(
            serde_json::to_value(refusal(&e)).unwrap()["error"]["type"],
            "no_prompt"
        );
    }
}
