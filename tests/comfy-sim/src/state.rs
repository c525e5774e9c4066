//! Shared server state: the prompt queue, history, execution status and the WebSocket hub
//! (ComfyUI's `PromptServer` + `PromptQueue`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::catalogue::Catalogue;
use crate::options::SimOptions;
use crate::ws::Hub;

/// ComfyUI keeps at most this many history entries.
pub const MAXIMUM_HISTORY_SIZE: usize = 10_000;

/// One queued prompt: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
#[derive(Debug, Clone)]
pub struct QueueItem {
    /// Priority as sent back to the client (int from the counter, float when client-given).
    pub number: Value,
    /// The prompt id.
    pub prompt_id: String,
    /// The validated (normalised) API-format graph.
    pub prompt: Value,
    /// `extra_data` (with `client_id`).
    pub extra_data: Map<String, Value>,
    /// Output node ids to execute.
    pub outputs: Vec<String>,
}

impl QueueItem {
    /// The 5-element list ComfyUI shows in `/queue` and history.
    pub fn to_json(&self) -> Value {
        json!([
            self.number,
            self.prompt_id,
            self.prompt,
            self.extra_data,
            self.outputs
        ])
    }

    /// The submitting client's id, when it is a string.
    pub fn client_id(&self) -> Option<String> {
        self.extra_data
            .get("client_id")
            .and_then(Value::as_str)
            .map(String::from)
    }

    fn sort_key(&self) -> f64 {
        self.number.as_f64().unwrap_or(0.0)
    }
}

/// The queue proper.
#[derive(Debug, Default)]
pub struct QueueState {
    /// Waiting prompts, in insertion order.
    pub pending: Vec<QueueItem>,
    /// The prompt being executed.
    pub running: Option<QueueItem>,
    /// `PromptServer.number`: increments on every `POST /prompt`, valid or not.
    pub counter: i64,
}

/// What the worker is doing (for `executing` replay on reconnect and `/interrupt`).
#[derive(Debug, Default, Clone)]
pub struct ExecInfo {
    /// `server.client_id` of the running prompt.
    pub client_id: Option<String>,
    /// `server.last_node_id`.
    pub last_node_id: Option<String>,
}

/// The simulator's shared state.
pub struct Sim {
    /// Options it was started with.
    pub opts: SimOptions,
    /// Node catalogue.
    pub catalogue: Catalogue,
    /// Connected WebSocket clients.
    pub hub: Hub,
    queue: Mutex<QueueState>,
    /// Woken when a prompt is queued.
    pub queue_changed: Notify,
    history: Mutex<Map<String, Value>>,
    exec: Mutex<ExecInfo>,
    interrupted: AtomicBool,
    /// Woken on `/interrupt` so sleeping nodes notice at once.
    pub interrupt_notify: Notify,
    /// Prompts the worker has started (for `--sim-crash-after-prompts`).
    pub prompts_started: AtomicU64,
    /// Whether `--sim-crash-after-prompts` may kill the process (only in CLI mode).
    pub allow_crash: bool,
    /// Registered users (`--multi-user`).
    pub users: crate::users::Users,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sim {
    /// New state for `opts`.
    pub fn new(opts: SimOptions, allow_crash: bool) -> Self {
        let catalogue = Catalogue::new(opts.models_dir.clone(), opts.input_dir.clone());
        let users = crate::users::Users::load(opts.multi_user, opts.user_dir.clone());
        Self {
            opts,
            catalogue,
            hub: Hub::default(),
            queue: Mutex::new(QueueState::default()),
            queue_changed: Notify::new(),
            history: Mutex::new(Map::new()),
            exec: Mutex::new(ExecInfo::default()),
            interrupted: AtomicBool::new(false),
            interrupt_notify: Notify::new(),
            prompts_started: AtomicU64::new(0),
            allow_crash,
            users,
        }
    }

    /// Next `number` from the server counter (`front` makes it negative).
    pub fn next_number(&self, front: bool) -> i64 {
        let mut q = lock(&self.queue);
        let n = q.counter;
        q.counter += 1;
        if front { -n } else { n }
    }

    /// `len(queue) + len(currently_running)`.
    pub fn queue_remaining(&self) -> usize {
        let q = lock(&self.queue);
        q.pending.len() + usize::from(q.running.is_some())
    }

    /// `{"exec_info": {"queue_remaining": N}}`.
    pub fn exec_info(&self) -> Value {
        json!({"exec_info": {"queue_remaining": self.queue_remaining()}})
    }

    /// Broadcasts a `status` message (ComfyUI `queue_updated`).
    pub fn queue_updated(&self) {
        self.hub
            .send("status", json!({"status": self.exec_info()}), None);
    }

    /// Queues a validated prompt.
    pub fn put(&self, item: QueueItem) {
        lock(&self.queue).pending.push(item);
        self.queue_updated();
        self.queue_changed.notify_one();
    }

    /// Pops the lowest-numbered pending prompt and marks it running.
    pub fn take_next(&self) -> Option<QueueItem> {
        let item = {
            let mut q = lock(&self.queue);
            let idx = q
                .pending
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| {
                    a.sort_key()
                        .partial_cmp(&b.sort_key())
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then_with(|| a.prompt_id.cmp(&b.prompt_id))
                })
                .map(|(i, _)| i)?;
            let item = q.pending.remove(idx);
            q.running = Some(item.clone());
            item
        };
        self.queue_updated();
        Some(item)
    }

    /// Stores the history entry of the running prompt and clears it from the queue.
    pub fn task_done(&self, item: &QueueItem, outputs: Value, status: Value, meta: Value) {
        lock(&self.queue).running = None;
        {
            let mut h = lock(&self.history);
            if h.len() > MAXIMUM_HISTORY_SIZE
                && let Some(first) = h.keys().next().cloned()
            {
                h.shift_remove(&first);
            }
            h.shift_remove(&item.prompt_id);
            h.insert(
                item.prompt_id.clone(),
                json!({"prompt": item.to_json(), "outputs": outputs, "status": status, "meta": meta}),
            );
        }
        self.queue_updated();
    }

    /// `/queue` body.
    pub fn queue_json(&self) -> Value {
        let q = lock(&self.queue);
        json!({
            "queue_running": q.running.iter().map(QueueItem::to_json).collect::<Vec<_>>(),
            "queue_pending": q.pending.iter().map(QueueItem::to_json).collect::<Vec<_>>(),
        })
    }

    /// Removes every pending prompt (`POST /queue {"clear": true}`).
    pub fn wipe_queue(&self) {
        lock(&self.queue).pending.clear();
        self.queue_updated();
    }

    /// Removes one pending prompt; like ComfyUI, removing the last one wipes (two `status` messages).
    pub fn delete_queue_item(&self, prompt_id: &str) -> bool {
        let wiped_last = {
            let mut q = lock(&self.queue);
            let Some(idx) = q.pending.iter().position(|i| i.prompt_id == prompt_id) else {
                return false;
            };
            let last = q.pending.len() == 1;
            q.pending.remove(idx);
            last
        };
        if wiped_last {
            self.queue_updated();
        }
        self.queue_updated();
        true
    }

    /// `(running, pending)` queue items (`get_current_queue_volatile`).
    pub fn queue_snapshot(&self) -> (Vec<QueueItem>, Vec<QueueItem>) {
        let q = lock(&self.queue);
        (q.running.iter().cloned().collect(), q.pending.clone())
    }

    /// A copy of the whole history (`get_history()`).
    pub fn history_snapshot(&self) -> Map<String, Value> {
        lock(&self.history).clone()
    }

    /// Interrupts `prompt_id` only if it is the one running (`interrupt_if_running`).
    pub fn interrupt_if_running(&self, prompt_id: &str) -> bool {
        let running = lock(&self.queue)
            .running
            .as_ref()
            .is_some_and(|i| i.prompt_id == prompt_id);
        if running {
            self.interrupt();
        }
        running
    }

    /// The running prompt's id.
    pub fn running_prompt_id(&self) -> Option<String> {
        lock(&self.queue)
            .running
            .as_ref()
            .map(|i| i.prompt_id.clone())
    }

    /// History, optionally one id, or a window (`max_items`, `offset`) like `get_history`.
    pub fn history(&self, prompt_id: Option<&str>, max_items: Option<usize>, offset: i64) -> Value {
        let h = lock(&self.history);
        if let Some(id) = prompt_id {
            return match h.get(id) {
                Some(e) => json!({ id: e }),
                None => json!({}),
            };
        }
        let mut offset = offset;
        if offset < 0
            && let Some(m) = max_items
        {
            offset = h.len() as i64 - m as i64;
        }
        let mut out = Map::new();
        for (i, (k, v)) in h.iter().enumerate() {
            if i as i64 >= offset {
                out.insert(k.clone(), v.clone());
                if max_items.is_some_and(|m| out.len() >= m) {
                    break;
                }
            }
        }
        Value::Object(out)
    }

    /// `POST /history {"clear": true}`.
    pub fn clear_history(&self) {
        lock(&self.history).clear();
    }

    /// `POST /history {"delete": [id]}`.
    pub fn delete_history(&self, prompt_id: &str) {
        lock(&self.history).shift_remove(prompt_id);
    }

    /// Sets the global interrupt flag (`nodes.interrupt_processing()`).
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.interrupt_notify.notify_waiters();
    }

    /// Clears the interrupt flag (start of every prompt).
    pub fn clear_interrupt(&self) {
        self.interrupted.store(false, Ordering::SeqCst);
    }

    /// Whether an interrupt is pending.
    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Current execution info.
    pub fn exec(&self) -> ExecInfo {
        lock(&self.exec).clone()
    }

    /// Updates execution info.
    pub fn set_exec(&self, f: impl FnOnce(&mut ExecInfo)) {
        f(&mut lock(&self.exec));
    }
}
