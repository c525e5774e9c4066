//! OpenAI-compatible chat completion: request body and answer parsing (pure), and the call
//! through the SDK's wasi:http client.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

/// `llm` section of the config.
#[derive(Debug, Clone, Deserialize)]
pub struct LlmConfig {
    /// `http(s)://host:port/v1/chat/completions`.
    pub url: String,
    /// Model name sent in the request.
    pub model: String,
    /// Secret holding the API key (sent as `Authorization: Bearer`).
    #[serde(default)]
    pub api_key_secret: Option<String>,
    /// Time allowed for the whole answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `max_tokens` of the request.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// `temperature` of the request.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
}

fn default_timeout_ms() -> u64 {
    2500
}
fn default_max_tokens() -> u32 {
    200
}
fn default_temperature() -> f64 {
    0.7
}

/// The chat request asking for `prompt` rewritten in `style` (`template` shows the intent).
pub fn request_body(cfg: &LlmConfig, style: &str, template: &str, prompt: &str) -> Value {
    json!({
        "model": cfg.model,
        "messages": [
            {"role": "system", "content": format!(
                "You rewrite prompts for a text-to-image diffusion model. Style: {style}. \
                 The static version of this style is: \"{template}\". Keep the subject, add \
                 concrete visual detail, answer with the rewritten prompt only, one line, no quotes.")},
            {"role": "user", "content": prompt}
        ],
        "max_tokens": cfg.max_tokens,
        "temperature": cfg.temperature,
        "stream": false
    })
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}
#[derive(Deserialize)]
struct Choice {
    message: Message,
}
#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

/// The rewritten prompt from a `chat.completion` body: first choice, trimmed, surrounding
/// quotes removed, one line. `Err` for anything unusable (the caller falls back).
pub fn parse_answer(body: &[u8]) -> Result<String, String> {
    let c: Completion =
        serde_json::from_slice(body).map_err(|e| format!("not a chat.completion body: {e}"))?;
    let text = c
        .choices
        .into_iter()
        .next()
        .and_then(|c| c.message.content)
        .ok_or("no choices[0].message.content")?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .trim_matches(|c| c == '"' || c == '\'')
        .trim()
        .to_owned();
    if line.is_empty() {
        return Err("empty answer".into());
    }
    Ok(line)
}

/// Ask the LLM. Every failure (denied origin, timeout, HTTP error, bad body) is an `Err` text
/// for the note; the caller then uses the static style.
pub fn enhance(
    cfg: &LlmConfig,
    style: &str,
    template: &str,
    prompt: &str,
) -> Result<String, String> {
    use comfyhost_sdk::http::{Method, Request};
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let mut req = Request::new(Method::Post, &cfg.url)
        .connect_timeout(timeout)
        .first_byte_timeout(timeout)
        .between_bytes_timeout(timeout)
        .max_response_bytes(256 * 1024)
        .json(&request_body(cfg, style, template, prompt))
        .map_err(|e| e.to_string())?;
    if let Some(name) = &cfg.api_key_secret {
        let key = comfyhost_sdk::secrets::optional_secret(name)
            .ok_or_else(|| format!("secret {name} is not declared and granted"))?;
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let resp = req.send().map_err(|e| e.to_string())?;
    let resp = resp.error_for_status().map_err(|e| e.to_string())?;
    parse_answer(&resp.body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_completion_shape() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m",
          "choices":[{"index":0,"message":{"role":"assistant","content":"\"A fox, golden hour\"\n"},"finish_reason":"stop"}],
          "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        assert_eq!(parse_answer(body).unwrap(), "A fox, golden hour");
    }

    #[test]
    fn unusable_answers_are_errors() {
        assert!(parse_answer(b"{}").is_err());
        assert!(parse_answer(br#"{"choices":[]}"#).is_err());
        assert!(parse_answer(br#"{"choices":[{"message":{"content":"  "}}]}"#).is_err());
        assert!(parse_answer(b"<html>").is_err());
    }

    #[test]
    fn request_names_model_and_style() {
        let cfg: LlmConfig =
            serde_json::from_str(r#"{"url":"http://x:1/v1/chat/completions","model":"m"}"#)
                .unwrap();
        let b = request_body(&cfg, "cinematic", "t {prompt}", "a cat");
        assert_eq!(b["model"], "m");
        assert_eq!(b["messages"][1]["content"], "a cat");
        assert!(
            b["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("cinematic")
        );
        assert_eq!(cfg.timeout_ms, 2500);
    }

    #[test]
    fn native_build_falls_back() {
        let cfg: LlmConfig =
            serde_json::from_str(r#"{"url":"http://127.0.0.1:9/v1/chat/completions","model":"m"}"#)
                .unwrap();
        assert!(enhance(&cfg, "detailed", "{prompt}", "a").is_err());
    }
}
