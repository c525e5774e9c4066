//! Live state of every configured backend: a background health check per backend (ComfyUI:
//! `GET /queue`; serverless: `GET /health`), and the orders a dispatcher tries them in.

use std::collections::HashMap;
use std::sync::Arc;

use comfyhost_runtime::types::{BackendKind, BackendStatus};
use parking_lot::RwLock;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::config::{BackendsConfig, ComfyBackend, ServerlessBackend};

/// What the last health check found, plus why it failed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendHealth {
    pub status: BackendStatus,
    pub url: String,
    pub last_error: Option<String>,
    /// When the backend last answered (ms since the epoch).
    pub last_ok_ms: Option<i64>,
    pub checked_ms: Option<i64>,
    /// What a remote ComfyUI says it is (`/system_stats` `system.comfyui_version`), once known.
    pub comfyui_version: Option<String>,
    /// The frontend version it asks for (`system.required_frontend_version`), once known.
    pub required_frontend_version: Option<String>,
}

/// The configured backends and their health. Cheap to clone.
#[derive(Clone)]
pub struct BackendPool {
    inner: Arc<Inner>,
}

struct Inner {
    config: BackendsConfig,
    health: RwLock<HashMap<String, BackendHealth>>,
    http: reqwest::Client,
}

impl BackendPool {
    pub fn new(config: BackendsConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timings.request_timeout())
            .build()?;
        let mut health = HashMap::new();
        let entries = config
            .comfyui
            .iter()
            .map(|b| (b.name.clone(), b.url.clone(), BackendKind::Comfyui))
            .chain(
                config
                    .serverless
                    .iter()
                    .map(|b| (b.name.clone(), b.url.clone(), BackendKind::Serverless)),
            );
        for (name, url, kind) in entries {
            health.insert(
                name.clone(),
                BackendHealth {
                    // Unknown until the first check: not healthy, so nothing is sent blind.
                    status: BackendStatus {
                        name,
                        kind,
                        healthy: false,
                        queue_pending: 0,
                        queue_running: 0,
                    },
                    url,
                    last_error: Some("not checked yet".into()),
                    last_ok_ms: None,
                    checked_ms: None,
                    comfyui_version: None,
                    required_frontend_version: None,
                },
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                health: RwLock::new(health),
                http,
            }),
        })
    }

    pub fn config(&self) -> &BackendsConfig {
        &self.inner.config
    }

    pub fn is_empty(&self) -> bool {
        self.inner.config.comfyui.is_empty() && self.inner.config.serverless.is_empty()
    }

    pub fn comfy(&self, name: &str) -> Option<&ComfyBackend> {
        self.inner.config.comfyui.iter().find(|b| b.name == name)
    }

    pub fn serverless(&self, name: &str) -> Option<&ServerlessBackend> {
        self.inner.config.serverless.iter().find(|b| b.name == name)
    }

    /// Statuses for routers, in configuration order.
    pub fn statuses(&self) -> Vec<BackendStatus> {
        let health = self.inner.health.read();
        self.names()
            .filter_map(|n| health.get(&n).map(|h| h.status.clone()))
            .collect()
    }

    /// Full health for the host API.
    pub fn health(&self) -> Vec<BackendHealth> {
        let health = self.inner.health.read();
        self.names()
            .filter_map(|n| health.get(&n).cloned())
            .collect()
    }

    fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.inner
            .config
            .comfyui
            .iter()
            .map(|b| b.name.clone())
            .chain(self.inner.config.serverless.iter().map(|b| b.name.clone()))
    }

    /// ComfyUI backends to try for a job a router sent to `preferred`: that one first, then
    /// the other healthy ones, least busy first (so a backend that went down since the last
    /// check costs one refused connection, not the job).
    pub fn comfy_candidates(&self, preferred: &str) -> Vec<ComfyBackend> {
        let health = self.inner.health.read();
        let load = |b: &ComfyBackend| {
            health
                .get(&b.name)
                .map(|h| {
                    (
                        !h.status.healthy,
                        h.status.queue_pending + h.status.queue_running,
                    )
                })
                .unwrap_or((true, u32::MAX))
        };
        let mut others: Vec<&ComfyBackend> = self
            .inner
            .config
            .comfyui
            .iter()
            .filter(|b| b.name != preferred)
            .filter(|b| health.get(&b.name).is_some_and(|h| h.status.healthy))
            .collect();
        others.sort_by_key(|b| load(b));
        self.comfy(preferred)
            .into_iter()
            .chain(others)
            .cloned()
            .collect()
    }

    /// Counts a job the host just sent, so the next router call sees it before the next
    /// health check does.
    pub fn note_dispatched(&self, name: &str) {
        if let Some(h) = self.inner.health.write().get_mut(name) {
            h.status.queue_pending = h.status.queue_pending.saturating_add(1);
        }
    }

    /// Records a failed contact outside the health loop (a refused submission).
    pub fn note_unreachable(&self, name: &str, error: &str) {
        if let Some(h) = self.inner.health.write().get_mut(name) {
            h.status.healthy = false;
            h.last_error = Some(error.to_string());
        }
    }

    /// Health-checks every backend every `health_every` until `cancel`.
    pub fn spawn_health_checks(&self, cancel: CancellationToken) {
        if self.is_empty() {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(pool.inner.config.timings.health_every());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => pool.check_all().await,
                }
            }
        });
    }

    /// One round of checks, all backends concurrently, each through its kind's
    /// [`crate::remote::backend::RemoteBackend::health`].
    pub async fn check_all(&self) {
        let names = self
            .inner
            .config
            .comfyui
            .iter()
            .map(|b| (b.name.clone(), BackendKind::Comfyui))
            .chain(
                self.inner
                    .config
                    .serverless
                    .iter()
                    .map(|b| (b.name.clone(), BackendKind::Serverless)),
            );
        let checks = names.map(|(name, kind)| async move {
            let r = crate::remote::backend::for_kind(kind)
                .health(self, &name)
                .await;
            (name, r)
        });
        let results = futures::future::join_all(checks).await;
        let now = crate::jobs::now_ms();
        let mut health = self.inner.health.write();
        for (name, result) in results {
            let Some(h) = health.get_mut(&name) else {
                continue;
            };
            h.checked_ms = Some(now);
            match result {
                Ok(load) => {
                    if !h.status.healthy {
                        tracing::info!(backend = %name, "backend healthy");
                    }
                    h.status.healthy = true;
                    h.status.queue_pending = load.pending;
                    h.status.queue_running = load.running;
                    h.last_error = None;
                    h.last_ok_ms = Some(now);
                    if load.comfyui_version.is_some() {
                        h.comfyui_version = load.comfyui_version;
                        h.required_frontend_version = load.required_frontend_version;
                    }
                }
                Err(e) => {
                    if h.status.healthy {
                        tracing::warn!(backend = %name, error = %e, "backend unhealthy");
                    }
                    h.status.healthy = false;
                    h.last_error = Some(e);
                }
            }
        }
    }

    /// `GET url` as JSON (health checks, version probes), with a bearer key when given.
    pub(crate) async fn get_json(&self, url: &str, bearer: Option<&str>) -> Result<Value, String> {
        let mut req = self.inner.http.get(url);
        if let Some(key) = bearer {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| format!("unreachable: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered {status}"));
        }
        resp.json().await.map_err(|e| format!("bad JSON: {e}"))
    }
}

/// The API key of a serverless backend, from the environment variable its config names.
pub fn api_key(b: &ServerlessBackend) -> Option<String> {
    b.api_key_env
        .as_deref()
        .and_then(|var| std::env::var(var).ok())
        .filter(|k| !k.is_empty())
}
