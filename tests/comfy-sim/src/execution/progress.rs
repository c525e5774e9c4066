//! Per-prompt progress registry (`comfy_execution/progress.py`) that produces `progress_state`
//! and `progress` messages.

use serde_json::{Map, Value, json};

use crate::state::Sim;

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    max: Value,
    state: &'static str,
}

/// Node progress of one prompt, in the order nodes were first seen.
pub struct Progress<'a> {
    sim: &'a Sim,
    prompt_id: String,
    /// Target sid (`None` broadcasts, as ComfyUI does for prompts without `client_id`).
    client: Option<String>,
    nodes: Vec<(String, Entry)>,
}

impl<'a> Progress<'a> {
    /// A fresh registry for `prompt_id`.
    pub fn new(sim: &'a Sim, prompt_id: &str, client: Option<String>) -> Self {
        Self {
            sim,
            prompt_id: prompt_id.to_string(),
            client,
            nodes: Vec::new(),
        }
    }

    fn entry(&mut self, node: &str) -> &mut Entry {
        if let Some(i) = self.nodes.iter().position(|(n, _)| n == node) {
            return &mut self.nodes[i].1;
        }
        self.nodes.push((
            node.to_string(),
            Entry {
                value: json!(0),
                max: json!(1),
                state: "pending",
            },
        ));
        let last = self.nodes.len() - 1;
        &mut self.nodes[last].1
    }

    /// Node starts: `running`, 0.0 of 1.0.
    pub fn start(&mut self, node: &str) {
        let e = self.entry(node);
        e.value = json!(0.0);
        e.max = json!(1.0);
        e.state = "running";
        self.send_state();
    }

    /// A progress update (`ProgressBar.update_absolute`): `progress_state` then `progress`.
    pub fn update(&mut self, node: &str, value: Value, max: Value) {
        let e = self.entry(node);
        e.value = value.clone();
        e.max = max.clone();
        e.state = "running";
        self.send_state();
        self.sim.hub.send(
            "progress",
            json!({"value": value, "max": max, "prompt_id": self.prompt_id, "node": node}),
            self.client.as_deref(),
        );
    }

    /// Node finished: value becomes max.
    pub fn finish(&mut self, node: &str) {
        let e = self.entry(node);
        e.value = e.max.clone();
        e.state = "finished";
        self.send_state();
    }

    fn send_state(&self) {
        let mut nodes = Map::new();
        for (id, e) in &self.nodes {
            nodes.insert(
                id.clone(),
                json!({
                    "value": e.value, "max": e.max, "state": e.state, "node_id": id,
                    "prompt_id": self.prompt_id, "display_node_id": id, "parent_node_id": null, "real_node_id": id,
                }),
            );
        }
        self.sim.hub.send(
            "progress_state",
            json!({"prompt_id": self.prompt_id, "nodes": nodes}),
            self.client.as_deref(),
        );
    }

    /// Target sid of this prompt's messages.
    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// The prompt id.
    pub fn prompt_id(&self) -> &str {
        &self.prompt_id
    }

    /// The shared state.
    pub fn sim(&self) -> &'a Sim {
        self.sim
    }
}
