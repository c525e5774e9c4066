//! Shared helpers for the simulator's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Sim {
    pub base: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/comfyui-transcripts")
}

pub fn recording(name: &str) -> Value {
    let text =
        std::fs::read_to_string(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The `data` of every text message of a `.jsonl` recording.
pub fn ws_recording(name: &str) -> Vec<Value> {
    std::fs::read_to_string(fixtures().join(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m["kind"] == "text")
        .map(|m| m["data"].clone())
        .collect()
}

pub async fn start(configure: impl FnOnce(&mut comfy_sim::SimOptions, &std::path::Path)) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = comfy_sim::SimOptions {
        output_dir: dir.path().join("output"),
        input_dir: dir.path().join("input"),
        user_dir: dir.path().join("user"),
        temp_dir: dir.path().to_path_buf(),
        models_dir: dir.path().join("models"),
        node_delay: Duration::from_millis(2),
        ..Default::default()
    };
    configure(&mut opts, dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        comfy_sim::serve(opts, listener).await.unwrap();
    });
    Sim {
        base: format!("http://127.0.0.1:{port}"),
        port,
        dir,
        http: reqwest::Client::new(),
        task,
    }
}

/// A simulator in the 0.3.64 profile (what the recordings in `tests/fixtures` were made with).
pub async fn start_v0_3_64(
    configure: impl FnOnce(&mut comfy_sim::SimOptions, &std::path::Path),
) -> Sim {
    start(|o, dir| {
        o.profile = comfy_sim::Profile::V0_3_64;
        configure(o, dir);
    })
    .await
}

impl Sim {
    pub async fn ws(&self, client_id: Option<&str>) -> (Ws, Value) {
        let url = match client_id {
            Some(c) => format!("ws://127.0.0.1:{}/ws?clientId={c}", self.port),
            None => format!("ws://127.0.0.1:{}/ws", self.port),
        };
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let first = next_text(&mut ws).await.expect("status on connect");
        (ws, first)
    }

    /// Replays the request of an HTTP recording; returns (status, headers, body bytes).
    pub async fn replay(&self, rec: &Value) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let req = &rec["request"];
        self.request(
            req["method"].as_str().unwrap(),
            req["path"].as_str().unwrap(),
            req,
        )
        .await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        req: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let url = format!("{}{}", self.base, path);
        let mut rb = match method {
            "GET" => self.http.get(url),
            "POST" => self.http.post(url),
            m => panic!("method {m}"),
        };
        if let Some(raw) = req.get("raw_body").and_then(Value::as_str) {
            rb = rb.body(raw.to_string());
        } else if let Some(j) = req.get("json") {
            rb = rb.json(j);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.bytes().await.unwrap().to_vec())
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, _, b) = self.request("POST", path, &json!({"json": body})).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let (s, _, b) = self.request("GET", path, &json!({})).await;
        assert_eq!(s, 200, "GET {path}");
        serde_json::from_slice(&b).unwrap()
    }
}

pub async fn next_frame(ws: &mut Ws) -> Option<Message> {
    match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        _ => None,
    }
}

pub async fn next_text(ws: &mut Ws) -> Option<Value> {
    loop {
        match next_frame(ws).await? {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Message::Binary(_) => continue,
            _ => continue,
        }
    }
}

/// Text messages until `executing {node: null}` for `prompt_id` (inclusive).
pub async fn until_done(ws: &mut Ws, prompt_id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(m) = next_text(ws).await {
        let done = m["type"] == "executing"
            && m["data"]["node"].is_null()
            && m["data"]["prompt_id"] == prompt_id;
        out.push(m);
        if done {
            return out;
        }
    }
    panic!("socket ended before {prompt_id} finished; got {out:#?}");
}

/// Messages until `pred` matches (inclusive).
pub async fn until(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(m) = next_text(ws).await {
        let hit = pred(&m);
        out.push(m);
        if hit {
            return out;
        }
    }
    panic!("socket ended; got {out:#?}");
}

/// Collects messages arriving within `window`.
pub async fn drain(ws: &mut Ws, window: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => out.push(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Some(Ok(_))) => {}
            _ => return out,
        }
    }
}

pub async fn send_text(ws: &mut Ws, v: &Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Replaces volatile values: `timestamp` numbers → 0, the given ids → placeholders,
/// and sorts `executed` / `current_outputs` (Python set order in ComfyUI).
pub fn normalize(v: &Value, ids: &[(&str, &str)]) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            for (from, to) in ids {
                if s == *from {
                    s = (*to).to_string();
                }
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| normalize(x, ids)).collect()),
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                let nk = ids
                    .iter()
                    .find(|(f, _)| f == k)
                    .map_or(k.clone(), |(_, t)| (*t).to_string());
                let nv = match k.as_str() {
                    "timestamp" if x.is_number() => json!(0),
                    "executed" | "current_outputs" if x.is_array() => {
                        let mut items: Vec<Value> = x
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|i| normalize(i, ids))
                            .collect();
                        items.sort_by_key(|i| i.to_string());
                        Value::Array(items)
                    }
                    _ => normalize(x, ids),
                };
                out.insert(nk, nv);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Same keys (recursively, in order) and same JSON types; arrays compared element-wise.
pub fn assert_same_shape(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            let ak: Vec<&String> = a.keys().collect();
            let ek: Vec<&String> = e.keys().collect();
            assert_eq!(ak, ek, "keys differ at {path}");
            for (k, v) in e {
                assert_same_shape(&a[k], v, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            for (i, (x, y)) in a.iter().zip(e.iter()).enumerate() {
                assert_same_shape(x, y, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        (a, e) => panic!("type differs at {path}: {a} vs {e}"),
    }
}

/// Collapses runs of identical structural messages (progress ticks) so sequences recorded at a
/// different speed compare equal: each message becomes `type[:node states]`.
pub fn skeleton(msgs: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in msgs {
        let t = m["type"].as_str().unwrap_or("?");
        let key = match t {
            "progress_state" => {
                let nodes = m["data"]["nodes"].as_object().unwrap();
                let states: Vec<String> = nodes
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v["state"].as_str().unwrap()))
                    .collect();
                format!("progress_state[{}]", states.join(","))
            }
            "status" => format!(
                "status(q={})",
                m["data"]["status"]["exec_info"]["queue_remaining"]
            ),
            "executing" | "executed" => format!("{t}({})", m["data"]["node"]),
            other => other.to_string(),
        };
        // progress ticks: "progress_state[..running]" + "progress" pairs repeat; keep one pair.
        let n = out.len();
        if key == "progress" && n >= 3 && out[n - 2] == "progress" && out[n - 1] == out[n - 3] {
            out.pop();
            continue;
        }
        out.push(key);
    }
    out
}
