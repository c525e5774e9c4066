//! The per-call sandbox: a fresh `Store` for every hook call with the call's limits, a WASI
//! context holding only granted preopens (no env, no args, no inherited stdio or network), the
//! wasi:http allow-list, and deadline enforcement (epoch interruption for running wasm plus a
//! tokio timeout for a guest parked in a host call). A store is never reused: it is dropped
//! after every call, failed or not.

pub mod budget;
mod limiter;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::WasiCtxBuilder;

pub use limiter::{CallLimiter, MAX_TABLE_ELEMENTS};
pub use state::{MAX_LOG_RECORDS_PER_CALL, PluginState};

use crate::capabilities::fs;
use crate::capabilities::http::AllowListHooks;
use crate::capabilities::kv::KvStore;
use crate::capabilities::log::{GuestOutput, PluginLogLevel, PluginLogSink};
use crate::error::CallErrorKind;
use crate::grants::EffectiveCaps;
use crate::manifest::Budget;
use budget::ResourceLease;

/// Everything one hook call may see. Cheap to clone (shared parts are `Arc`s).
#[derive(Clone)]
pub struct CallEnv {
    /// Plugin id: log tag and key-value namespace.
    pub plugin_id: Arc<str>,
    /// Prompt the call is about, when there is one (log tag).
    pub prompt_id: Option<String>,
    /// Deadline, memory cap and failure policy of this hook.
    pub budget: Budget,
    /// Effective capabilities (declared ∧ granted).
    pub caps: Arc<EffectiveCaps>,
    /// Validated plugin configuration, JSON text.
    pub config_json: Arc<str>,
    /// Secret values, already filtered to granted names.
    pub secrets: Arc<HashMap<String, String>>,
    /// Key-value backend (scoped by `plugin_id` on every access).
    pub kv: Arc<dyn KvStore>,
    /// Where the plugin's log records go.
    pub log: Arc<dyn PluginLogSink>,
    /// Facts returned by the `host-info` import.
    pub host_info: Arc<Vec<(String, String)>>,
    /// Where a call reports what it used, for tools that show it (`comfyhost plugin call`).
    pub usage: Option<Arc<CallUsage>>,
    /// Host limits and the budgets shared with the plugin's other calls and other plugins.
    pub budgets: budget::SharedBudgets,
}

/// What a call used: its largest linear memory, its wall time.
#[derive(Debug, Default)]
pub struct CallUsage {
    peak_memory_bytes: std::sync::atomic::AtomicU64,
    elapsed_us: std::sync::atomic::AtomicU64,
}

impl CallUsage {
    /// The largest linear memory the guest had, in bytes.
    pub fn peak_memory_bytes(&self) -> u64 {
        self.peak_memory_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Time from store creation to the end of the call (instantiate included).
    pub fn elapsed(&self) -> Duration {
        Duration::from_micros(self.elapsed_us.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn record(&self, peak_memory_bytes: u64, elapsed: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.peak_memory_bytes.fetch_max(peak_memory_bytes, Relaxed);
        self.elapsed_us.store(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }
}

/// Extra time the tokio timeout allows beyond the deadline, so a running guest is stopped by
/// the epoch interrupt (classified as `Deadline`) and only a guest parked in a host call is
/// cut off by the timeout (`BlockedTimeout`).
pub fn timeout_slack(deadline: Duration) -> Duration {
    Duration::from_millis(50).max(deadline / 10)
}

/// The call's share of its plugin's WASI resource slots. When the plugin's other calls hold
/// them all, the call waits for some to come back, at most its own deadline: concurrent calls of
/// a plugin queue rather than fail.
pub async fn lease_resources(env: &CallEnv) -> Result<ResourceLease, CallErrorKind> {
    let want = env.budgets.resources_per_call(env.budget.memory_bytes);
    env.budgets
        .resources
        .lease_within(want, env.budget.deadline)
        .await
        .ok_or_else(|| {
            CallErrorKind::Instantiate(format!(
                "the plugin's other calls held its {} WASI resources (open files, streams, HTTP fields) for longer than its deadline",
                env.budgets.resources.total()
            ))
        })
}

/// Builds the store for one call.
pub fn new_store(
    engine: &Engine,
    env: &CallEnv,
    lease: ResourceLease,
) -> Result<Store<PluginState>, CallErrorKind> {
    let stdout = GuestOutput::new(
        env.log.clone(),
        env.plugin_id.clone(),
        env.prompt_id.clone(),
        PluginLogLevel::Info,
    );
    let stderr = GuestOutput::new(
        env.log.clone(),
        env.plugin_id.clone(),
        env.prompt_id.clone(),
        PluginLogLevel::Warn,
    );
    let mut builder = WasiCtxBuilder::new();
    // Defaults already give no env, no args, empty stdin and denied sockets; only stdout/stderr
    // are redirected into the plugin log.
    builder.stdout(stdout.clone()).stderr(stderr.clone());
    fs::preopen_granted(&mut builder, &env.caps).map_err(CallErrorKind::Instantiate)?;
    let hooks = AllowListHooks::new(
        env.caps.http.clone().into(),
        env.log.clone(),
        env.plugin_id.clone(),
        env.prompt_id.clone(),
    );
    let state = PluginState::new(builder.build(), hooks, env.clone(), stdout, stderr, lease);
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let deadline = Instant::now() + env.budget.deadline;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut cx| {
        let now = Instant::now();
        cx.data_mut().last_epoch_check = Some(now);
        Ok(if now >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
    Ok(store)
}

/// Where a guest failure happened.
#[derive(Debug)]
pub enum Stage {
    /// While instantiating (start functions, memory/table setup, pool slots).
    Instantiate(wasmtime::Error),
    /// While running the export.
    Call(wasmtime::Error),
}

/// Outcome of a guarded call, before classification.
#[derive(Debug)]
pub enum Guarded<R> {
    /// The future finished (successfully or with a guest failure).
    Done(Result<R, Stage>),
    /// The tokio timeout fired: the guest was parked in a host call past its deadline.
    TimedOut,
}

/// Runs `fut` (instantiate + call) under the call's tokio timeout. Dropping `fut` on timeout
/// drops whatever host call the guest was parked in.
pub async fn guarded<R>(env: &CallEnv, fut: impl Future<Output = Result<R, Stage>>) -> Guarded<R> {
    let deadline = env.budget.deadline;
    match tokio::time::timeout(deadline + timeout_slack(deadline), fut).await {
        Ok(r) => Guarded::Done(r),
        Err(_elapsed) => Guarded::TimedOut,
    }
}

/// Classifies a guarded outcome using the store's limiter flag, flushes the guest's partial
/// output lines and logs failures. The store must be dropped afterwards, never reused.
pub fn finish<R>(
    store: &Store<PluginState>,
    env: &CallEnv,
    started: Instant,
    outcome: Guarded<R>,
) -> Result<R, CallErrorKind> {
    store.data().flush_output();
    if let Some(usage) = &env.usage {
        usage.record(store.data().peak_memory_bytes(), started.elapsed());
    }
    let result = match outcome {
        Guarded::TimedOut => Err(timed_out_kind(store.data(), env.budget.deadline)),
        Guarded::Done(Ok(v)) => Ok(v),
        Guarded::Done(Err(stage)) => Err(classify(stage, store.data().memory_limit_hit(), env)),
    };
    if let Err(kind) = &result {
        tracing::warn!(
            plugin = &*env.plugin_id,
            prompt_id = env.prompt_id.as_deref().unwrap_or("-"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugin call failed: {kind}"
        );
    }
    result
}

/// A guest still executing wasm when the timeout fired (the epoch callback ran within the last
/// slack period; a starved ticker or worker can delay the interrupt past the slack) overran
/// its deadline while running; otherwise it was parked in a host call.
fn timed_out_kind(state: &PluginState, deadline: Duration) -> CallErrorKind {
    let running = state
        .last_epoch_check
        .is_some_and(|t| t.elapsed() < timeout_slack(deadline));
    if running {
        CallErrorKind::Deadline(deadline)
    } else {
        CallErrorKind::BlockedTimeout(deadline)
    }
}

/// Maps a wasmtime error to the call error kind.
pub fn classify(stage: Stage, memory_limit_hit: bool, env: &CallEnv) -> CallErrorKind {
    let (err, instantiating) = match stage {
        Stage::Instantiate(e) => (e, true),
        Stage::Call(e) => (e, false),
    };
    if memory_limit_hit {
        return CallErrorKind::MemoryLimit {
            limit_bytes: env.budget.memory_bytes,
        };
    }
    if let Some(Trap::Interrupt) = err.downcast_ref::<Trap>() {
        return CallErrorKind::Deadline(env.budget.deadline);
    }
    if instantiating && err.downcast_ref::<Trap>().is_none() {
        return CallErrorKind::Instantiate(first_line(&format!("{err:#}")));
    }
    CallErrorKind::Trap(describe_trap(&err))
}

/// The trap message plus the innermost wasm frames, e.g.
/// `wasm trap: wasm \`unreachable\` instruction executed (at __rust_start_panic <- rust_panic <- ...)`.
pub fn describe_trap(err: &wasmtime::Error) -> String {
    let mut msg = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => first_line(&err.root_cause().to_string()),
    };
    if let Some(bt) = err.downcast_ref::<WasmBacktrace>() {
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .take(6)
            .map(|f| {
                f.func_name()
                    .map(crate::readable::frame_name)
                    .unwrap_or_else(|| format!("func[{}]", f.func_index()))
            })
            .collect();
        if !frames.is_empty() {
            msg.push_str(" (at ");
            msg.push_str(&frames.join(" <- "));
            msg.push(')');
        }
    }
    msg
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    let mut line = line.to_owned();
    if line.len() > 1000 {
        let mut cut = 1000;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slack_is_small_but_nonzero() {
        assert_eq!(
            timeout_slack(Duration::from_millis(50)),
            Duration::from_millis(50)
        );
        assert_eq!(
            timeout_slack(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
    }
}
