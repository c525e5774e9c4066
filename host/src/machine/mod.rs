//! The machine in view: a light sampler (`sysinfo`, NVML) of the machine, the host process,
//! the supervised ComfyUI tree and the volumes the host uses; the last hour of readings; the
//! low-disk guard and the optional memory guard. Served as `GET /comfyhost/api/system`, drawn
//! by the dashboard's System page, and exported as Prometheus gauges (`crate::metrics`).

pub mod disk_guard;
pub mod history;
pub mod memory_guard;
pub mod sampler;
pub mod volumes;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use comfyhost_proxy::{HostEvent, ProxyState};
use comfyhost_supervisor::{Supervisor, SupervisorState};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use disk_guard::{DiskGuard, LowDisk, Transition};
use history::{GrowthReport, History, Point};
use memory_guard::MemoryGuard;
use sampler::{Sample, Sampler};
use volumes::{VolumeUsage, Watched};

/// How often the guards look at the disk when the sampler is off.
const GUARD_INTERVAL: Duration = Duration::from_secs(10);
/// How often users who are still connected are reminded of a low disk.
const NOTICE_EVERY: Duration = Duration::from_secs(60);
/// The overlay entry of the low-disk notice.
pub const LOW_DISK_NOTICE_ID: &str = "comfyhost-low-disk";

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// `None`: the sampler is off (the disk guard still runs, with `statvfs` only).
    pub sample_interval: Option<Duration>,
    pub low_disk_threshold_bytes: u64,
    pub comfyui_memory_limit_bytes: Option<u64>,
    /// Whether GPU detection found NVIDIA GPUs (NVML is sampled only then).
    pub gpus: bool,
    /// What "keeps growing" needs at least.
    pub growth_min_span: Duration,
}

/// `GET /comfyhost/api/system`.
#[derive(Debug, Clone, Serialize)]
pub struct SystemView {
    pub sampling: SamplingView,
    pub current: Option<Sample>,
    pub history: Vec<Point>,
    pub low_disk: LowDiskView,
    /// Set while ComfyUI's memory keeps growing (see [`history::steady_growth`]).
    pub comfyui_memory_growth: Option<GrowthReport>,
    pub memory_guard: Option<MemoryGuardView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SamplingView {
    pub enabled: bool,
    pub interval_ms: Option<u64>,
    /// Directories whose volumes are watched, with their roles.
    pub watched: Vec<WatchedView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchedView {
    pub role: String,
    pub path: std::path::PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct LowDiskView {
    pub threshold_bytes: u64,
    /// The output volume (the data directory's in attach mode).
    pub output_volume: Option<VolumeUsage>,
    /// Set while the output volume is below the threshold.
    pub low: Option<LowDisk>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryGuardView {
    pub limit_bytes: u64,
    pub restarts: u64,
}

/// The sampler task and what it found. Cheap to clone.
#[derive(Clone)]
pub struct MachineMonitor {
    inner: Arc<Inner>,
}

struct Inner {
    config: MachineConfig,
    watched: Vec<Watched>,
    /// Role whose volume the low-disk guard watches.
    guard_role: &'static str,
    latest: Mutex<Option<Sample>>,
    output_volume: Mutex<Option<VolumeUsage>>,
    history: Mutex<History>,
    guard: DiskGuard,
    memory_guard: Option<Mutex<MemoryGuard>>,
    store: comfyhost_store::Store,
    supervisor: Arc<Supervisor>,
    proxy: OnceLock<ProxyState>,
    http: reqwest::Client,
}

impl MachineMonitor {
    /// `watched`: the directories the host writes to or reads models from; the low-disk guard
    /// watches the one with role `output` (else `data`).
    pub fn new(
        config: MachineConfig,
        watched: Vec<Watched>,
        store: comfyhost_store::Store,
        supervisor: Arc<Supervisor>,
    ) -> Self {
        let guard_role = if watched.iter().any(|w| w.role == "output") {
            "output"
        } else {
            "data"
        };
        let memory_guard = config.comfyui_memory_limit_bytes.map(|limit| {
            let every = config.sample_interval.unwrap_or(GUARD_INTERVAL);
            Mutex::new(MemoryGuard::new(
                limit,
                (every * 10).max(Duration::from_secs(5)),
            ))
        });
        Self {
            inner: Arc::new(Inner {
                guard: DiskGuard::new(config.low_disk_threshold_bytes),
                config,
                watched,
                guard_role,
                latest: Mutex::new(None),
                output_volume: Mutex::new(None),
                history: Mutex::new(History::default()),
                memory_guard,
                store,
                supervisor,
                proxy: OnceLock::new(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
            }),
        }
    }

    /// Where low-disk notices go (set once the proxy exists).
    pub fn set_proxy(&self, proxy: ProxyState) {
        let _ = self.inner.proxy.set(proxy);
    }

    /// The latest reading.
    pub fn latest(&self) -> Option<Sample> {
        self.inner.latest.lock().clone()
    }

    /// Set while the output volume is low.
    pub fn low_disk(&self) -> Option<LowDisk> {
        self.inner.guard.low()
    }

    pub fn view(&self) -> SystemView {
        let history = self.inner.history.lock();
        let min_span = self.inner.config.growth_min_span;
        SystemView {
            sampling: SamplingView {
                enabled: self.inner.config.sample_interval.is_some(),
                interval_ms: self
                    .inner
                    .config
                    .sample_interval
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                watched: self
                    .inner
                    .watched
                    .iter()
                    .map(|w| WatchedView {
                        role: w.role.clone(),
                        path: w.path.clone(),
                    })
                    .collect(),
            },
            current: self.latest(),
            comfyui_memory_growth: history::steady_growth(&history.comfyui_rss(), min_span),
            history: history.points(),
            low_disk: LowDiskView {
                threshold_bytes: self.inner.guard.threshold_bytes(),
                output_volume: self.inner.output_volume.lock().clone(),
                low: self.inner.guard.low(),
            },
            memory_guard: self.inner.memory_guard.as_ref().map(|g| {
                let g = g.lock();
                MemoryGuardView {
                    limit_bytes: g.limit_bytes(),
                    restarts: g.restarts,
                }
            }),
        }
    }

    /// Changes the low-disk threshold and applies it at once.
    pub async fn set_low_disk_threshold(&self, bytes: u64, actor: &str) {
        let old = self.inner.guard.threshold_bytes();
        self.inner.guard.set_threshold(bytes);
        self.activity(
            actor,
            "system.low_disk_threshold",
            &json!({"from_bytes": old, "to_bytes": bytes}),
        );
        self.check_disk().await;
    }

    /// Starts the sampling loop.
    pub fn spawn(&self, cancel: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move { me.run(cancel).await });
    }

    async fn run(self, cancel: CancellationToken) {
        let every = self.inner.config.sample_interval;
        let mut sampler = match every {
            Some(_) => {
                let gpus = self.inner.config.gpus;
                match tokio::task::spawn_blocking(move || Sampler::new(gpus)).await {
                    Ok(Ok(s)) => Some(s),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "system sampler unavailable; disk guard only");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "system sampler crashed at start");
                        None
                    }
                }
            }
            None => None,
        };
        let mut tick = tokio::time::interval(every.unwrap_or(GUARD_INTERVAL));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_notice = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some(s) = sampler.take() {
                sampler = self.sample_once(s).await;
            } else {
                self.check_disk().await;
            }
            if self.inner.guard.low().is_some() && last_notice.elapsed() >= NOTICE_EVERY {
                last_notice = Instant::now();
                self.notify_users(true);
            }
            self.memory_guard().await;
        }
    }

    async fn sample_once(&self, mut s: Sampler) -> Option<Sampler> {
        let pid = self.inner.supervisor.status().pid;
        let watched = self.inner.watched.clone();
        let started = Instant::now();
        let (s, sample) = match tokio::task::spawn_blocking(move || {
            let sample = s.sample(pid, &watched);
            (s, sample)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "system sample crashed; sampler stopped");
                return None;
            }
        };
        tracing::trace!(elapsed_us = started.elapsed().as_micros(), "system sample");
        let output = sample
            .volumes
            .iter()
            .find(|v| v.roles.iter().any(|r| r == self.inner.guard_role))
            .cloned();
        self.inner
            .history
            .lock()
            .push(Point::of(&sample, output.as_ref().map(|v| v.free_bytes)));
        *self.inner.latest.lock() = Some(sample);
        self.apply_output_volume(output);
        Some(s)
    }

    /// The guard alone: `statvfs` of the output directory.
    async fn check_disk(&self) {
        let watched: Vec<Watched> = self
            .inner
            .watched
            .iter()
            .filter(|w| w.role == self.inner.guard_role)
            .cloned()
            .collect();
        let output = tokio::task::spawn_blocking(move || {
            let w = watched.first()?;
            let real = volumes::resolve(&w.path)?;
            let (total, free) = volumes::statvfs_space(&real)?;
            Some(VolumeUsage {
                mount_point: real,
                roles: vec![w.role.clone()],
                paths: vec![w.path.clone()],
                total_bytes: total,
                free_bytes: free,
            })
        })
        .await
        .ok()
        .flatten();
        self.apply_output_volume(output);
    }

    fn apply_output_volume(&self, output: Option<VolumeUsage>) {
        let transition = self
            .inner
            .guard
            .evaluate(output.as_ref(), crate::jobs::now_ms());
        *self.inner.output_volume.lock() = output;
        match transition {
            Transition::BecameLow(low) => {
                tracing::warn!(
                    free_bytes = low.free_bytes,
                    threshold_bytes = low.threshold_bytes,
                    mount = %low.mount_point.display(),
                    "low disk space on the output volume"
                );
                self.activity("system", "system.low_disk", &json!(low));
                self.notify_users(true);
            }
            Transition::Recovered {
                free_bytes,
                threshold_bytes,
            } => {
                tracing::info!(
                    free_bytes,
                    threshold_bytes,
                    "disk space is back above the threshold"
                );
                self.activity(
                    "system",
                    "system.disk_ok",
                    &json!({"free_bytes": free_bytes, "threshold_bytes": threshold_bytes}),
                );
                self.notify_users(false);
            }
            Transition::Unchanged => {}
        }
    }

    /// The status overlay's notice to every connected page.
    fn notify_users(&self, low: bool) {
        let Some(proxy) = self.inner.proxy.get() else {
            return;
        };
        let (severity, text) = if low {
            (
                "warning",
                "The server is running out of disk space: new images may fail to save. Please tell the workshop admin.",
            )
        } else {
            ("info", "Disk space is available again.")
        };
        let data = json!({
            "prompt_id": LOW_DISK_NOTICE_ID,
            "plugin": "comfyhost",
            "severity": severity,
            "user_text": text,
            "admin_detail": [],
            "fraction": null,
            "terminal": !low,
            "is_admin": false,
        });
        if let Ok(ev) = HostEvent::new("comfyhost.overlay", data) {
            proxy.ws().broadcast(&ev);
        }
    }

    async fn memory_guard(&self) {
        let Some(guard) = &self.inner.memory_guard else {
            return;
        };
        let status = self.inner.supervisor.status();
        let rss = self
            .inner
            .latest
            .lock()
            .as_ref()
            .and_then(|s| s.comfyui.as_ref())
            .filter(|c| Some(c.pid) == status.pid)
            .map(|c| c.rss_bytes);
        let ready = status.state == SupervisorState::Ready;
        if !guard.lock().over_limit(rss, ready, Instant::now()) {
            return;
        }
        // Never in the middle of a job: only when ComfyUI's own queue is empty.
        let url = format!(
            "{}/queue",
            self.inner.supervisor.base_url().trim_end_matches('/')
        );
        let idle = match self.inner.http.get(&url).send().await {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|q| memory_guard::queue_is_empty(&q)),
            Err(_) => false,
        };
        if !idle {
            tracing::debug!("memory guard: ComfyUI is over its limit but busy; waiting");
            return;
        }
        let limit = {
            let mut g = guard.lock();
            g.restarted(Instant::now());
            g.limit_bytes()
        };
        tracing::warn!(rss_bytes = ?rss, limit_bytes = limit, "memory guard: restarting ComfyUI between jobs");
        self.activity(
            "system",
            "comfyui.memory_guard_restart",
            &json!({"rss_bytes": rss, "limit_bytes": limit}),
        );
        self.inner.supervisor.restart().await;
    }

    fn activity(&self, actor: &str, action: &str, detail: &serde_json::Value) {
        let entry = comfyhost_store::NewActivity {
            actor: actor.into(),
            action: action.into(),
            target: "system".into(),
            detail: detail.clone(),
        };
        if let Err(e) = self.inner.store.record_activity(&entry) {
            tracing::error!(action, error = %e, "cannot record activity");
        }
    }
}

/// The directories the host writes to or reads models from.
pub fn watched_dirs(
    args: &crate::config::RunArgs,
    models: &crate::models::inventory::ModelRoots,
) -> Vec<Watched> {
    let mut out = vec![Watched {
        role: "data".into(),
        path: args.data_dir.clone(),
    }];
    if args.attach.is_none() {
        for (role, path) in [
            ("output", args.output_dir()),
            ("input", args.input_dir()),
            ("temp", args.temp_dir()),
        ] {
            out.push(Watched {
                role: role.into(),
                path,
            });
        }
    }
    if let Some(root) = &models.root {
        out.push(Watched {
            role: "models".into(),
            path: root.clone(),
        });
    }
    for (folder, path) in &models.extra {
        out.push(Watched {
            role: format!("models:{folder}"),
            path: path.clone(),
        });
    }
    out
}
