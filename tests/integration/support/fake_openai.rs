//! A protocol-faithful fake of an OpenAI-compatible chat endpoint for tests:
//! `POST /v1/chat/completions` answering the real `chat.completion` shape, with modes that
//! delay past a caller's deadline or fail with 500. It records the requests it received.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// How the fake answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// 200 with this assistant content.
    Answer(String),
    /// Wait this long, then answer (to exceed the caller's timeout).
    Delay(Duration, String),
    /// 500 with an OpenAI-style error body.
    ServerError,
}

#[derive(Clone)]
struct Shared {
    mode: Arc<Mutex<Mode>>,
    requests: Arc<Mutex<Vec<Value>>>,
}

/// A running fake on 127.0.0.1.
pub struct FakeOpenAi {
    pub origin: String,
    shared: Shared,
}

impl FakeOpenAi {
    pub async fn start(mode: Mode) -> Self {
        let shared = Shared {
            mode: Arc::new(Mutex::new(mode)),
            requests: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(shared.clone());
        let (port, _task) = crate::support::serve_on_free_port(app).await;
        FakeOpenAi {
            origin: format!("http://127.0.0.1:{port}"),
            shared,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/v1/chat/completions", self.origin)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().expect("mode") = mode;
    }

    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().expect("requests").clone()
    }
}

async fn completions(State(s): State<Shared>, Json(body): Json<Value>) -> Response {
    s.requests.lock().expect("requests").push(body.clone());
    let mode = s.mode.lock().expect("mode").clone();
    let content = match mode {
        Mode::Answer(c) => c,
        Mode::Delay(d, c) => {
            tokio::time::sleep(d).await;
            c
        }
        Mode::ServerError => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": {"message": "The server had an error while processing your request.",
                                      "type": "server_error", "param": null, "code": null}})),
            )
                .into_response();
        }
    };
    Json(json!({
        "id": "chatcmpl-fake0001",
        "object": "chat.completion",
        "created": 1_763_900_000u64,
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59},
        "system_fingerprint": "fp_fake"
    }))
    .into_response()
}
