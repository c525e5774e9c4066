//! The prompt worker: takes prompts off the queue one at a time and executes them.

pub mod engine;
pub mod nodes;
pub mod progress;
pub mod tensor_repr;
pub mod values;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::json;

use crate::state::Sim;

/// Runs forever, executing queued prompts in order (ComfyUI's `prompt_worker`).
pub async fn worker(sim: Arc<Sim>) {
    let mut cache = engine::Cache::default();
    loop {
        let notified = sim.queue_changed.notified();
        let Some(item) = sim.take_next() else {
            notified.await;
            continue;
        };
        sim.prompts_started.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let outcome = engine::execute(&sim, &mut cache, &item).await;
        sim.task_done(&item, outcome.outputs, outcome.status, outcome.meta);
        if let Some(client) = item.client_id() {
            sim.hub.send(
                "executing",
                json!({"node": null, "prompt_id": item.prompt_id}),
                Some(&client),
            );
        }
        sim.set_exec(|e| e.client_id = None);
        tracing::info!(prompt_id = %item.prompt_id, "Prompt executed in {:.2} seconds", started.elapsed().as_secs_f64());
    }
}
