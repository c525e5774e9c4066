//! Levels read from the host's state at scrape time, and the whole exposition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use comfyhost_proxy::ProxyState;
use comfyhost_supervisor::{Supervisor, SupervisorState};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::machine::MachineMonitor;
use crate::machine::sampler::ProcessStats;
use crate::outputs::OutputSync;

type Labels = Vec<(String, String)>;
type FGauge = Gauge<f64, AtomicU64>;

/// Where the levels come from.
#[derive(Clone)]
pub struct LiveSources {
    pub store: comfyhost_store::Store,
    pub proxy: ProxyState,
    pub outputs: OutputSync,
    pub machine: MachineMonitor,
    pub supervisor: Arc<Supervisor>,
}

/// Jobs the host follows that have not ended (`queued`, `running`), looked up among this
/// many most recent jobs.
const QUEUE_SCAN: u32 = 2000;

/// A gauge family filled as it is registered.
struct Gauges {
    family: Family<Labels, FGauge>,
}

impl Gauges {
    fn new() -> Self {
        Self {
            family: Family::default(),
        }
    }

    fn set(&self, labels: &[(&str, &str)], v: f64) -> &Self {
        let l: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.family.get_or_create(&l).set(v);
        self
    }

    fn register(self, reg: &mut Registry, name: &str, help: &str) {
        reg.register(name, help, self.family);
    }
}

fn one(reg: &mut Registry, name: &str, help: &str, v: f64) {
    let g = Gauges::new();
    g.set(&[], v);
    g.register(reg, name, help);
}

/// The full exposition: event counters plus current levels.
pub fn render(src: &LiveSources) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("comfyhost");
    super::events().register(&mut reg);

    // Queue depth per user, from the job records.
    let depth = Gauges::new();
    let mut per_user: BTreeMap<String, u64> = BTreeMap::new();
    match src.store.recent_jobs(None, QUEUE_SCAN) {
        Ok(jobs) => {
            for j in jobs
                .iter()
                .filter(|j| matches!(j.status.as_str(), "queued" | "running"))
            {
                *per_user
                    .entry(j.user_id.clone().unwrap_or_else(|| "anonymous".into()))
                    .or_default() += 1;
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read jobs"),
    }
    for (user, n) in &per_user {
        depth.set(&[("user", user)], *n as f64);
    }
    depth.register(&mut reg, "queue_depth", "Jobs queued or running, per user");

    one(
        &mut reg,
        "websocket_clients",
        "Browser WebSocket connections relayed now",
        src.proxy.ws().clients().len() as f64,
    );

    let status = src.supervisor.status();
    one(
        &mut reg,
        "comfyui_up",
        "1 when ComfyUI is ready (or attached and reachable)",
        f64::from(u8::from(matches!(
            status.state,
            SupervisorState::Ready | SupervisorState::Attached
        ))),
    );

    match src.outputs.health() {
        Ok(h) => {
            one(
                &mut reg,
                "output_sync_backlog_files",
                "Output files waiting to be synced",
                h.backlog.pending as f64,
            );
            one(
                &mut reg,
                "output_sync_retrying_files",
                "Waiting output files that failed at least once",
                h.backlog.retrying as f64,
            );
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read output sync health"),
    }

    machine(&mut reg, &src.machine);

    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &reg)?;
    Ok(text)
}

fn machine(reg: &mut Registry, m: &MachineMonitor) {
    let view = m.view();
    one(
        reg,
        "low_disk_threshold_bytes",
        "Free space the low-disk guard keeps on the output volume",
        view.low_disk.threshold_bytes as f64,
    );
    one(
        reg,
        "low_disk",
        "1 while the output volume is below the low-disk threshold",
        f64::from(u8::from(view.low_disk.low.is_some())),
    );
    let free = Gauges::new();
    let total = Gauges::new();
    let volumes = match &view.current {
        Some(s) => s.volumes.clone(),
        None => view.low_disk.output_volume.into_iter().collect(),
    };
    // One series per role (`output`, `models`, ...), so a query can pick the volume it means.
    for v in &volumes {
        let mount = v.mount_point.display().to_string();
        for role in &v.roles {
            let l = [("mount", mount.as_str()), ("role", role.as_str())];
            free.set(&l, v.free_bytes as f64);
            total.set(&l, v.total_bytes as f64);
        }
    }
    free.register(
        reg,
        "disk_free_bytes",
        "Free space of the volumes the host uses, per role (data, output, input, temp, models)",
    );
    total.register(
        reg,
        "disk_total_bytes",
        "Size of the volumes the host uses, per role",
    );

    let Some(s) = view.current else {
        return;
    };
    one(
        reg,
        "machine_cpu_usage_ratio",
        "Busy share of all CPUs",
        f64::from(s.machine.cpu_percent) / 100.0,
    );
    one(
        reg,
        "machine_memory_total_bytes",
        "Machine memory",
        s.machine.memory_total_bytes as f64,
    );
    one(
        reg,
        "machine_memory_available_bytes",
        "Machine memory available",
        s.machine.memory_available_bytes as f64,
    );
    let load = Gauges::new();
    for (period, v) in ["1m", "5m", "15m"].iter().zip(s.machine.load_average) {
        load.set(&[("period", period)], v);
    }
    load.register(reg, "machine_load_average", "Load average");

    let rss = Gauges::new();
    let cpu = Gauges::new();
    let threads = Gauges::new();
    let uptime = Gauges::new();
    let add = |name: &str, p: &ProcessStats| {
        let l = [("process", name)];
        rss.set(&l, p.rss_bytes as f64);
        cpu.set(&l, f64::from(p.cpu_percent) / 100.0);
        threads.set(&l, p.threads as f64);
        uptime.set(&l, p.uptime_s as f64);
    };
    if let Some(h) = &s.host {
        add("host", h);
    }
    if let Some(c) = &s.comfyui {
        add("comfyui", c);
    }
    rss.register(
        reg,
        "process_resident_memory_bytes",
        "Resident memory of the host and of ComfyUI's process tree",
    );
    cpu.register(
        reg,
        "process_cpu_usage_ratio",
        "CPU use as a share of one CPU (host, ComfyUI's process tree)",
    );
    threads.register(
        reg,
        "process_threads",
        "Threads (host, ComfyUI's process tree)",
    );
    uptime.register(
        reg,
        "process_uptime_seconds",
        "Since the (root) process started",
    );

    let util = Gauges::new();
    let used = Gauges::new();
    let gtotal = Gauges::new();
    let temp = Gauges::new();
    for g in &s.gpus {
        let index = g.index.to_string();
        let l = [("gpu", index.as_str()), ("name", g.name.as_str())];
        if let Some(v) = g.utilization_percent {
            util.set(&l, f64::from(v) / 100.0);
        }
        if let Some(v) = g.memory_used_bytes {
            used.set(&l, v as f64);
        }
        if let Some(v) = g.memory_total_bytes {
            gtotal.set(&l, v as f64);
        }
        if let Some(v) = g.temperature_celsius {
            temp.set(&l, f64::from(v));
        }
    }
    util.register(reg, "gpu_utilization_ratio", "GPU busy share (NVML)");
    used.register(reg, "gpu_memory_used_bytes", "GPU memory in use (NVML)");
    gtotal.register(reg, "gpu_memory_total_bytes", "GPU memory (NVML)");
    temp.register(reg, "gpu_temperature_celsius", "GPU die temperature (NVML)");
}
