//! Prometheus metrics: `GET <prefix>/metrics` in the Prometheus text format (0.0.4), encoded by
//! `prometheus-client`. Names carry the `comfyhost_` prefix and their unit; counters end in
//! `_total`.
//!
//! Events are counted where they happen through the small functions here ([`job_ended`],
//! [`plugin_call`], [`proxy_request`], [`comfyui_spawned`]); everything that is a level (queue
//! depth, WebSocket clients, output-sync backlog, disk, processes, GPUs) is read from the
//! host's state at scrape time ([`live`]).

pub mod live;
pub mod route;

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `local`, a backend or endpoint name, `reject`.
    pub route: String,
    /// `succeeded`, `failed`, `interrupted`, `lost`, `rejected`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
    pub hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyLabels {
    pub method: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 4.0, 9))
}

/// The event metrics (levels are read at scrape time).
pub struct EventMetrics {
    pub jobs: Family<JobLabels, Counter>,
    pub plugin_calls: Family<PluginLabels, Counter>,
    pub plugin_failures: Family<PluginLabels, Counter>,
    pub plugin_duration: Family<PluginLabels, Histogram, fn() -> Histogram>,
    pub proxy_requests: Family<ProxyLabels, Counter>,
    pub proxy_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    pub comfyui_restarts: Counter,
    pub memory_guard_restarts: Counter,
}

impl Default for EventMetrics {
    fn default() -> Self {
        Self {
            jobs: Family::default(),
            plugin_calls: Family::default(),
            plugin_failures: Family::default(),
            plugin_duration: Family::new_with_constructor(latency_histogram),
            proxy_requests: Family::default(),
            proxy_duration: Family::new_with_constructor(latency_histogram),
            comfyui_restarts: Counter::default(),
            memory_guard_restarts: Counter::default(),
        }
    }
}

impl EventMetrics {
    /// Registers (clones sharing the same values) into `reg`.
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "jobs",
            "Jobs that ended, by route and outcome",
            self.jobs.clone(),
        );
        reg.register(
            "plugin_calls",
            "Plugin hook calls",
            self.plugin_calls.clone(),
        );
        reg.register(
            "plugin_failures",
            "Plugin hook calls that failed (trap, timeout, error)",
            self.plugin_failures.clone(),
        );
        reg.register(
            "plugin_call_duration_seconds",
            "Plugin hook call latency (instantiate + call)",
            self.plugin_duration.clone(),
        );
        reg.register(
            "proxy_requests",
            "Requests to ComfyUI's endpoints through the host",
            self.proxy_requests.clone(),
        );
        reg.register(
            "proxy_request_duration_seconds",
            "Time to the response head for requests to ComfyUI's endpoints",
            self.proxy_duration.clone(),
        );
        reg.register(
            "comfyui_restarts",
            "ComfyUI processes started after the first (crash restarts, admin restarts, memory guard)",
            self.comfyui_restarts.clone(),
        );
        reg.register(
            "memory_guard_restarts",
            "ComfyUI restarts by the memory guard",
            self.memory_guard_restarts.clone(),
        );
    }
}

static EVENTS: LazyLock<EventMetrics> = LazyLock::new(EventMetrics::default);
static SEEN_FIRST_SPAWN: AtomicBool = AtomicBool::new(false);

pub fn events() -> &'static EventMetrics {
    &EVENTS
}

/// A job ended.
pub fn job_ended(route: &str, outcome: &str) {
    EVENTS
        .jobs
        .get_or_create(&JobLabels {
            route: route.to_owned(),
            outcome: outcome.to_owned(),
        })
        .inc();
}

/// A plugin hook call returned.
pub fn plugin_call(plugin: &str, hook: &str, elapsed: Duration, ok: bool) {
    let labels = PluginLabels {
        plugin: plugin.to_owned(),
        hook: hook.to_owned(),
    };
    EVENTS.plugin_calls.get_or_create(&labels).inc();
    if !ok {
        EVENTS.plugin_failures.get_or_create(&labels).inc();
    }
    EVENTS
        .plugin_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
}

/// A request to one of ComfyUI's endpoints was answered.
pub fn proxy_request(method: &str, status: u16, elapsed: Duration) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    EVENTS
        .proxy_requests
        .get_or_create(&ProxyLabels {
            method: method.to_owned(),
            status: class.to_owned(),
        })
        .inc();
    EVENTS
        .proxy_duration
        .get_or_create(&MethodLabels {
            method: method.to_owned(),
        })
        .observe(elapsed.as_secs_f64());
}

/// A ComfyUI process was started; every start after the first is a restart.
pub fn comfyui_spawned() {
    if SEEN_FIRST_SPAWN.swap(true, Ordering::Relaxed) {
        EVENTS.comfyui_restarts.inc();
    }
}

/// The plugin runtime's per-call observer.
#[derive(Debug, Default)]
pub struct PluginCallMetrics;

impl comfyhost_runtime::registry::CallObserver for PluginCallMetrics {
    fn observe(
        &self,
        plugin: &str,
        hook: comfyhost_runtime::HookKind,
        elapsed: Duration,
        ok: bool,
    ) {
        plugin_call(plugin, hook.as_str(), elapsed, ok);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn event_metrics_encode_with_prefix_units_and_total() {
        let m = EventMetrics::default();
        m.jobs
            .get_or_create(&JobLabels {
                route: "local".into(),
                outcome: "succeeded".into(),
            })
            .inc();
        m.plugin_duration
            .get_or_create(&PluginLabels {
                plugin: "p".into(),
                hook: "queue-router".into(),
            })
            .observe(0.002);
        let mut reg = Registry::with_prefix("comfyhost");
        m.register(&mut reg);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains(r#"comfyhost_jobs_total{route="local",outcome="succeeded"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE comfyhost_plugin_call_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("comfyhost_comfyui_restarts_total 0"),
            "{text}"
        );
    }
}
