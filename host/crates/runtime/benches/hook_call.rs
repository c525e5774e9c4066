//! Per-call cost of a hook (fresh store + instantiate from the pool + call + drop), for a chain
//! of 1 and of 5 well-behaved queue-router plugins. Prints p50/p99 in microseconds.
//!
//! Run: `cargo bench -p comfyhost-runtime --bench hook_call`

#![allow(clippy::unwrap_used)]

#[path = "../tests/integration/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use comfyhost_runtime::HookKind;
use comfyhost_runtime::engine::{CompiledPlugin, EngineConfig, PluginEngine};
use comfyhost_runtime::grants::EffectiveCaps;
use comfyhost_runtime::types::{BackendKind, BackendStatus, Route};

const WARMUP: usize = 300;
const ITERATIONS: usize = 2000;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1e6
}

fn report(label: &str, mut samples: Vec<Duration>, plugins: usize) {
    samples.sort();
    let p50 = percentile(&samples, 0.50);
    let p99 = percentile(&samples, 0.99);
    println!(
        "{label:<28} n={:<5} p50={p50:>8.1} us  p99={p99:>8.1} us  p50/plugin={:>6.1} us",
        samples.len(),
        p50 / plugins as f64
    );
}

fn main() {
    let cache = tempfile::tempdir().expect("temp dir");
    let engine = PluginEngine::new(EngineConfig {
        cache_dir: cache.path().to_path_buf(),
        pool_instances: 64,
        max_memory_bytes: 64 << 20,
    })
    .expect("engine");
    let wasm = common::wasm("well-behaved");
    let chain: Vec<(CompiledPlugin, common::TestEnv)> = (0..5)
        .map(|i| {
            let id = format!("bench-{i}");
            let p = engine
                .compile(&id, HookKind::QueueRouter, &wasm)
                .expect("compile");
            let t = common::env(
                &id,
                EffectiveCaps::default(),
                r#"{"backend":"gpu-a"}"#,
                Duration::from_secs(1),
                32 << 20,
            );
            (p, t)
        })
        .collect();
    let sub = common::submission("bench");
    let backends = vec![BackendStatus {
        name: "gpu-a".into(),
        kind: BackendKind::Comfyui,
        healthy: true,
        queue_pending: 0,
        queue_running: 0,
    }];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "allocator={:?} wasm={} bytes; each call = new store + instantiate + route() + drop",
        engine.allocator(),
        wasm.len()
    );
    for len in [1usize, 5] {
        let samples = rt.block_on(async {
            let mut samples = Vec::with_capacity(ITERATIONS);
            for i in 0..WARMUP + ITERATIONS {
                let started = Instant::now();
                for (p, t) in &chain[..len] {
                    let r = p.route(&t.env, &sub, &backends).await;
                    assert_eq!(r, Ok(Route::Backend("gpu-a".into())));
                }
                if i >= WARMUP {
                    samples.push(started.elapsed());
                }
            }
            samples
        });
        report(&format!("chain of {len} (whole chain)"), samples, len);
    }
}
