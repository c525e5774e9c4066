//! Opens the plugin runtime for `comfyhost run`: SQLite store, wasmtime engine (pooling with
//! on-demand fallback, artifact cache), registry over the drop-in directory, first discovery.

use std::sync::Arc;

use anyhow::Context;
use comfyhost_runtime::breaker::BreakerConfig;
use comfyhost_runtime::engine::{EngineConfig, PluginEngine};
use comfyhost_runtime::grants::DirRoots;
use comfyhost_runtime::limits::PluginLimits;
use comfyhost_runtime::registry::{EnvSecrets, PluginRegistry, RegistryConfig};
use comfyhost_store::Store;

use crate::config::RunArgs;

/// Pool slots: concurrent hook calls across all plugins.
const POOL_INSTANCES: u32 = 256;
/// Hard cap for one plugin's linear memory, whatever its manifest asks.
const MAX_PLUGIN_MEMORY: u64 = 1 << 30;

pub async fn open(args: &RunArgs, store: Store) -> anyhow::Result<PluginRegistry> {
    let engine = PluginEngine::new(EngineConfig {
        cache_dir: args.plugin_cache_dir(),
        pool_instances: POOL_INSTANCES,
        max_memory_bytes: MAX_PLUGIN_MEMORY,
    })
    .context("creating the wasm engine")?;
    let config = RegistryConfig {
        plugins_dir: args.plugins_dir(),
        dir_roots: DirRoots {
            output: Some(args.output_dir()),
            input: Some(args.input_dir()),
            models: args.comfyui_dir.as_ref().map(|d| d.join("models")),
            user: Some(args.user_dir()),
            temp: Some(args.temp_dir()),
            data: Some(args.data_dir.join("plugin-data")),
        },
        breaker: BreakerConfig::default(),
        host_info: vec![
            ("host_version".into(), env!("CARGO_PKG_VERSION").into()),
            ("comfyui_mode".into(), format!("{:?}", args.comfy_mode())),
        ],
        limits: PluginLimits {
            host_memory_bytes: args.plugin_memory_total_mb.saturating_mul(1 << 20),
            ..PluginLimits::default()
        },
    };
    let registry = PluginRegistry::new(config, Arc::new(engine), store, Arc::new(EnvSecrets))
        .context("opening the plugin registry")?;
    // Compiling components takes a while; keep it off the async workers.
    let scan = registry.clone();
    let report = tokio::task::spawn_blocking(move || scan.discover())
        .await
        .context("plugin discovery task")?
        .with_context(|| format!("scanning {}", args.plugins_dir().display()))?;
    for (id, error) in &report.broken {
        tracing::warn!(plugin = %id, %error, "plugin not loaded");
    }
    tracing::info!(loaded = ?report.loaded, "plugins discovered");
    Ok(registry)
}

/// Rescan the drop-in directory every `every` until `cancel` (hot reload of copied plugins).
pub fn spawn_rescan(
    registry: PluginRegistry,
    every: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    if every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let scan = registry.clone();
            match tokio::task::spawn_blocking(move || scan.discover()).await {
                Ok(Ok(report)) => {
                    if !report.loaded.is_empty() || !report.removed.is_empty() {
                        tracing::info!(loaded = ?report.loaded, removed = ?report.removed, "plugins reloaded");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "plugin directory scan failed"),
                Err(e) => tracing::warn!(error = %e, "plugin directory scan task failed"),
            }
        }
    });
}
