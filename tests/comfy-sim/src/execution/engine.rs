//! Executes one prompt like ComfyUI's `PromptExecutor.execute`: cache lookup, topological
//! order, per-node messages, error/interrupt reporting, history result.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::execution::nodes::{self, NodeCtx, NodeDirs, NodeError, NodeOutput};
use crate::execution::progress::Progress;
use crate::execution::values::SimValue;
use crate::state::{QueueItem, Sim};

/// Output cache keyed by node input signature (ComfyUI's classic `CacheKeySetInputSignature`).
#[derive(Default)]
pub struct Cache {
    entries: HashMap<u64, NodeOutput>,
}

/// What a prompt run produced, for the history entry.
pub struct Outcome {
    /// `status` of the history entry.
    pub status: Value,
    /// `outputs`.
    pub outputs: Value,
    /// `meta`.
    pub meta: Value,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Run<'a> {
    sim: &'a Sim,
    client: Option<String>,
    messages: Vec<Value>,
}

impl Run<'_> {
    /// `PromptExecutor.add_message`.
    fn add_message(&mut self, event: &str, mut data: Map<String, Value>, broadcast: bool) {
        data.insert("timestamp".into(), json!(now_ms()));
        let data = Value::Object(data);
        self.messages.push(json!([event, data]));
        if self.client.is_some() || broadcast {
            self.sim.hub.send(event, data, self.client.as_deref());
        }
    }

    /// Messages ComfyUI only sends when the prompt has a `client_id`.
    fn send_to_client(&self, event: &str, data: Value) {
        if let Some(c) = &self.client {
            self.sim.hub.send(event, data, Some(c));
        }
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Runs `item`, sending WebSocket messages on the way.
pub async fn execute(sim: &Sim, cache: &mut Cache, item: &QueueItem) -> Outcome {
    sim.clear_interrupt();
    let client = item.client_id();
    sim.set_exec(|e| e.client_id = client.clone());
    let prompt_id = item.prompt_id.as_str();
    let prompt = item.prompt.as_object().cloned().unwrap_or_default();
    let mut run = Run {
        sim,
        client: client.clone(),
        messages: Vec::new(),
    };
    run.add_message(
        "execution_start",
        obj(json!({"prompt_id": prompt_id})),
        false,
    );

    let signatures = signatures(sim, &prompt);
    let cached: Vec<String> = prompt
        .keys()
        .filter(|id| {
            signatures
                .get(*id)
                .is_some_and(|s| cache.entries.contains_key(s))
        })
        .cloned()
        .collect();
    let cached_set: HashSet<&str> = cached.iter().map(String::as_str).collect();
    run.add_message(
        "execution_cached",
        obj(json!({"nodes": cached, "prompt_id": prompt_id})),
        false,
    );

    let order = execution_order(&prompt, &item.outputs, &cached_set);
    let mut progress = Progress::new(sim, prompt_id, client.clone());
    let mut results: HashMap<String, NodeOutput> = HashMap::new();
    let mut executed: Vec<String> = Vec::new();
    let mut ui_outputs = Map::new();
    let mut meta = Map::new();
    let temp = sim.opts.temp_dir.join("temp");
    let dirs = NodeDirs {
        output: &sim.opts.output_dir,
        input: &sim.opts.input_dir,
        temp: &temp,
        node_delay: sim.opts.node_delay,
        previews: sim.opts.previews_enabled(),
        progress_text: sim.opts.progress_text,
    };
    let extra_pnginfo = item.extra_data.get("extra_pnginfo");
    let mut failure: Option<(String, String, NodeError, HashMap<String, SimValue>)> = None;

    for node_id in &order {
        let node = prompt.get(node_id).cloned().unwrap_or(Value::Null);
        let class_type = node["class_type"].as_str().unwrap_or_default().to_string();
        let sig = signatures.get(node_id).copied().unwrap_or_default();

        if cached_set.contains(node_id.as_str()) {
            let Some(entry) = cache.entries.get(&sig).cloned() else {
                continue;
            };
            if let Some(ui) = &entry.ui {
                run.send_to_client(
                    "executed",
                    json!({"node": node_id, "display_node": node_id, "output": ui, "prompt_id": prompt_id}),
                );
                progress.finish(node_id);
                ui_outputs.insert(node_id.clone(), ui.clone());
                meta.insert(node_id.clone(), node_meta(node_id));
            }
            results.insert(node_id.clone(), entry);
            continue;
        }

        maybe_crash(sim);
        progress.start(node_id);
        sim.set_exec(|e| e.last_node_id = Some(node_id.clone()));
        run.send_to_client(
            "executing",
            json!({"node": node_id, "display_node": node_id, "prompt_id": prompt_id}),
        );

        let inputs = resolve_inputs(&node, &results);
        if sim.is_interrupted() {
            failure = Some((node_id.clone(), class_type, NodeError::Interrupted, inputs));
            break;
        }
        let mut ctx = NodeCtx {
            node_id,
            class_type: &class_type,
            inputs: &inputs,
            prompt: &item.prompt,
            extra_pnginfo,
            progress: &mut progress,
        };
        match nodes::run(&mut ctx, &dirs).await {
            Ok(output) => {
                if let Some(ui) = &output.ui {
                    run.send_to_client(
                        "executed",
                        json!({"node": node_id, "display_node": node_id, "output": ui, "prompt_id": prompt_id}),
                    );
                    ui_outputs.insert(node_id.clone(), ui.clone());
                    meta.insert(node_id.clone(), node_meta(node_id));
                }
                progress.finish(node_id);
                executed.push(node_id.clone());
                cache.entries.insert(sig, output.clone());
                results.insert(node_id.clone(), output);
            }
            Err(e) => {
                failure = Some((node_id.clone(), class_type, e, inputs));
                break;
            }
        }
    }

    // Classic cache: keep only what this prompt used.
    let used: HashSet<u64> = signatures.values().copied().collect();
    cache.entries.retain(|k, _| used.contains(k));

    let (status_str, completed) = match failure {
        None => {
            run.add_message(
                "execution_success",
                obj(json!({"prompt_id": prompt_id})),
                false,
            );
            ("success", true)
        }
        Some((node_id, node_type, NodeError::Interrupted, _)) => {
            tracing::info!(prompt_id, "Processing interrupted");
            run.add_message(
                "execution_interrupted",
                obj(json!({"prompt_id": prompt_id, "node_id": node_id, "node_type": node_type, "executed": executed})),
                true,
            );
            ("error", false)
        }
        Some((node_id, node_type, NodeError::Failed(f), inputs)) => {
            tracing::error!(
                prompt_id,
                node_id,
                "!!! Exception during processing !!! {}",
                f.message
            );
            let mut current_inputs = Map::new();
            if let Some(node_inputs) = prompt.get(&node_id).and_then(|n| n["inputs"].as_object()) {
                for name in node_inputs.keys() {
                    let shown = match inputs.get(name) {
                        Some(SimValue::Json(v)) => v.clone(),
                        Some(other) => Value::String(other.python_str()),
                        None => Value::Null,
                    };
                    current_inputs.insert(name.clone(), json!([shown]));
                }
            }
            run.add_message(
                "execution_error",
                obj(json!({
                    "prompt_id": prompt_id, "node_id": node_id, "node_type": node_type, "executed": executed,
                    "exception_message": format!("{}\n", f.message), "exception_type": f.exception_type,
                    "traceback": f.traceback, "current_inputs": current_inputs,
                    "current_outputs": prompt.keys().collect::<Vec<_>>(),
                })),
                false,
            );
            ("error", false)
        }
    };
    sim.set_exec(|e| e.last_node_id = None);
    Outcome {
        status: json!({"status_str": status_str, "completed": completed, "messages": run.messages}),
        outputs: Value::Object(ui_outputs),
        meta: Value::Object(meta),
    }
}

fn node_meta(node_id: &str) -> Value {
    json!({"node_id": node_id, "display_node": node_id, "parent_node": null, "real_node_id": node_id})
}

/// `--sim-crash-after-prompts`: die like `kill -9` (no close frames, no cleanup).
fn maybe_crash(sim: &Sim) {
    let Some(limit) = sim.opts.crash_after_prompts else {
        return;
    };
    if !sim.allow_crash
        || sim
            .prompts_started
            .load(std::sync::atomic::Ordering::SeqCst)
            <= limit
    {
        return;
    }
    tracing::warn!("--sim-crash-after-prompts reached: killing the process");
    // SAFETY: plain libc calls with no pointers; sending SIGKILL to ourselves.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort();
}

fn resolve_inputs(
    node: &Value,
    results: &HashMap<String, NodeOutput>,
) -> HashMap<String, SimValue> {
    let mut out = HashMap::new();
    let Some(inputs) = node["inputs"].as_object() else {
        return out;
    };
    for (name, val) in inputs {
        let v = match val.as_array() {
            Some(link) if link.len() == 2 && link[0].is_string() => {
                let from = link[0].as_str().unwrap_or_default();
                let slot = link[1].as_u64().unwrap_or(0) as usize;
                results
                    .get(from)
                    .and_then(|o| o.values.get(slot))
                    .cloned()
                    .unwrap_or(SimValue::Json(Value::Null))
            }
            _ => SimValue::Json(val.clone()),
        };
        out.insert(name.clone(), v);
    }
    out
}

/// Depth-first post-order from the outputs; inputs of cached nodes are not visited.
fn execution_order(
    prompt: &Map<String, Value>,
    outputs: &[String],
    cached: &HashSet<&str>,
) -> Vec<String> {
    fn visit(
        id: &str,
        prompt: &Map<String, Value>,
        cached: &HashSet<&str>,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(id.to_string()) {
            return;
        }
        if !cached.contains(id)
            && let Some(inputs) = prompt.get(id).and_then(|n| n["inputs"].as_object())
        {
            for val in inputs.values() {
                if let Some(from) = val
                    .as_array()
                    .filter(|l| l.len() == 2)
                    .and_then(|l| l[0].as_str())
                    && prompt.contains_key(from)
                {
                    visit(from, prompt, cached, seen, order);
                }
            }
        }
        order.push(id.to_string());
    }
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for o in outputs {
        visit(o, prompt, cached, &mut seen, &mut order);
    }
    order
}

/// Input signature of every node: class, widget values, linked signatures (+ node id for
/// classes with a hidden `UNIQUE_ID`, + file state for `LoadImage`'s `IS_CHANGED`).
fn signatures(sim: &Sim, prompt: &Map<String, Value>) -> HashMap<String, u64> {
    fn sig(
        id: &str,
        sim: &Sim,
        prompt: &Map<String, Value>,
        memo: &mut HashMap<String, u64>,
        visiting: &mut HashSet<String>,
    ) -> u64 {
        if let Some(s) = memo.get(id) {
            return *s;
        }
        let mut h = DefaultHasher::new();
        let Some(node) = prompt.get(id) else {
            // Dangling link: never equal to anything cached.
            uuid::Uuid::new_v4().hash(&mut h);
            return h.finish();
        };
        if !visiting.insert(id.to_string()) {
            uuid::Uuid::new_v4().hash(&mut h);
            return h.finish();
        }
        let class_type = node["class_type"].as_str().unwrap_or_default();
        class_type.hash(&mut h);
        if sim
            .catalogue
            .class(class_type)
            .is_some_and(|c| c.wants_unique_id)
        {
            id.hash(&mut h);
        }
        if class_type == "LoadImage" {
            let name = node["inputs"]["image"].as_str().unwrap_or_default();
            let (name, _) = crate::execution::values::annotated_name(name);
            if let Some(meta) = crate::paths::safe_join(&sim.opts.input_dir, name)
                .and_then(|p| std::fs::metadata(p).ok())
            {
                meta.len().hash(&mut h);
                meta.modified().ok().hash(&mut h);
            }
        }
        if let Some(inputs) = node["inputs"].as_object() {
            let mut keys: Vec<&String> = inputs.keys().collect();
            keys.sort();
            for k in keys {
                k.hash(&mut h);
                match inputs[k].as_array() {
                    Some(link) if link.len() == 2 && link[0].is_string() => {
                        let child = sig(
                            link[0].as_str().unwrap_or_default(),
                            sim,
                            prompt,
                            memo,
                            visiting,
                        );
                        child.hash(&mut h);
                        link[1].to_string().hash(&mut h);
                    }
                    _ => crate::pyjson::to_string(&inputs[k]).hash(&mut h),
                }
            }
        }
        visiting.remove(id);
        let s = h.finish();
        memo.insert(id.to_string(), s);
        s
    }
    let mut memo = HashMap::new();
    let mut visiting = HashSet::new();
    for id in prompt.keys() {
        sig(id, sim, prompt, &mut memo, &mut visiting);
    }
    memo
}
