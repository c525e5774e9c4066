//! The wasmtime engine: pooling allocator (on-demand fallback), one epoch ticker thread, one
//! linker with every host import, and compile-on-install with an artifact cache keyed by the
//! engine's compatibility hash.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::RuntimeError;
use crate::hooks::WorldPre;
use crate::hooks::bindings::host_api;
use crate::manifest::HookKind;
use crate::sandbox::PluginState;

/// How often the epoch ticker advances the engine epoch (deadline granularity).
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory of compiled artifacts (`<cache_dir>/<compat-hash>/<sha256>.cwasm`).
    pub cache_dir: PathBuf,
    /// Concurrent plugin instances the pool holds (each hook call uses one while it runs).
    pub pool_instances: u32,
    /// Hard cap of one linear memory, for every plugin (budgets are enforced below it per call).
    pub max_memory_bytes: u64,
}

/// Which instance allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorKind {
    /// Pre-reserved slots: fast instantiation.
    Pooling,
    /// Fallback when the pool's virtual memory could not be reserved.
    OnDemand,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<PluginState>,
    allocator: AllocatorKind,
    compat_hash: String,
    cache_dir: PathBuf,
}

/// The shared plugin engine. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

/// A plugin compiled for one hook, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct CompiledPlugin {
    /// Hex sha256 of the source `.wasm`.
    pub sha256: String,
    /// The hook (world) it was checked against.
    pub hook: HookKind,
    pub(crate) pre: WorldPre,
    artifact: Arc<PathBuf>,
    from_cache: bool,
}

impl CompiledPlugin {
    /// Path of the compiled artifact in the cache.
    pub fn artifact_path(&self) -> &Path {
        &self.artifact
    }

    /// True when this compile reused an artifact already in the cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
}

fn base_config() -> Config {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true);
    cfg.consume_fuel(false);
    cfg.wasm_component_model(true);
    cfg
}

fn pooling_config(cfg: &EngineConfig) -> PoolingAllocationConfig {
    let n = cfg.pool_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        // A Rust wasip2 component instantiates a few core modules (main + shims).
        .total_core_instances(n.saturating_mul(4))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .total_gc_heaps(n)
        .max_memory_size(usize::try_from(cfg.max_memory_bytes).unwrap_or(usize::MAX));
    pool
}

/// Engine with the pooling allocator, or `None` (with the reason) when the pool cannot be set
/// up on this host (virtual memory limits, small address space).
fn pooled_engine(cfg: &EngineConfig) -> Result<Engine, String> {
    let mut c = base_config();
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(cfg)));
    Engine::new(&c).map_err(|e| format!("{e:#}"))
}

fn on_demand_engine() -> Result<Engine, RuntimeError> {
    let mut c = base_config();
    c.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    Engine::new(&c).map_err(|e| RuntimeError::Config(format!("wasmtime engine: {e:#}")))
}

/// `Hasher` feeding sha256, so the compatibility hash is stable across processes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn compat_hash(engine: &Engine) -> String {
    let mut h = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(&h.0.finalize()[..12])
}

fn build_linker(engine: &Engine) -> Result<Linker<PluginState>, RuntimeError> {
    let err = |e: wasmtime::Error| RuntimeError::Config(format!("linker: {e:#}"));
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
    crate::capabilities::fs::refuse_escaping_symlinks(&mut linker).map_err(err)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(err)?;
    host_api::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
        .map_err(err)?;
    Ok(linker)
}

fn spawn_epoch_ticker(engine: &Engine) -> Result<(), RuntimeError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(|_| ())
        .map_err(RuntimeError::Io)
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("artifact path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact"),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

impl PluginEngine {
    /// Creates the engine (pooling, falling back to on-demand allocation when the pool cannot
    /// reserve its memory) and starts the epoch ticker thread.
    pub fn new(cfg: EngineConfig) -> Result<Self, RuntimeError> {
        let (engine, allocator) = match pooled_engine(&cfg) {
            Ok(e) => (e, AllocatorKind::Pooling),
            Err(reason) => {
                tracing::warn!(
                    pool_instances = cfg.pool_instances,
                    max_memory_bytes = cfg.max_memory_bytes,
                    "pooling allocator unavailable ({reason}); using on-demand allocation"
                );
                (on_demand_engine()?, AllocatorKind::OnDemand)
            }
        };
        Self::from_engine(engine, allocator, cfg.cache_dir)
    }

    fn from_engine(
        engine: Engine,
        allocator: AllocatorKind,
        cache_dir: PathBuf,
    ) -> Result<Self, RuntimeError> {
        let linker = build_linker(&engine)?;
        spawn_epoch_ticker(&engine)?;
        let compat_hash = compat_hash(&engine);
        tracing::info!(?allocator, compat_hash, "plugin engine ready");
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                allocator,
                compat_hash,
                cache_dir,
            }),
        })
    }

    /// The allocator in use.
    pub fn allocator(&self) -> AllocatorKind {
        self.inner.allocator
    }

    /// Stable hash of the engine's version and settings; names the artifact cache directory.
    pub fn compatibility_hash(&self) -> String {
        self.inner.compat_hash.clone()
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compiles `wasm` (the SOURCE component the admin installed, never an author-supplied
    /// artifact) for `hook`. The artifact is cached at
    /// `<cache_dir>/<compat-hash>/<sha256>.cwasm`, written atomically and reused when present.
    /// Fails with [`RuntimeError::WorldMismatch`] when the component does not export the
    /// hook's interface.
    pub fn compile(
        &self,
        plugin_id: &str,
        hook: HookKind,
        wasm: &[u8],
    ) -> Result<CompiledPlugin, RuntimeError> {
        let sha256 = hex::encode(Sha256::digest(wasm));
        let path = self
            .inner
            .cache_dir
            .join(&self.inner.compat_hash)
            .join(format!("{sha256}.cwasm"));
        let (component, from_cache) = self.load_or_compile(plugin_id, wasm, &path)?;
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            RuntimeError::Compile(format!(
                "plugin {plugin_id} imports something the host does not provide: {e:#}"
            ))
        })?;
        let pre = WorldPre::new(hook, pre).map_err(|e| {
            tracing::warn!(plugin = plugin_id, %hook, "world mismatch: {e:#}");
            RuntimeError::WorldMismatch(plugin_id.to_owned(), hook.to_string())
        })?;
        Ok(CompiledPlugin {
            sha256,
            hook,
            pre,
            artifact: Arc::new(path),
            from_cache,
        })
    }

    fn load_or_compile(
        &self,
        plugin_id: &str,
        wasm: &[u8],
        path: &Path,
    ) -> Result<(Component, bool), RuntimeError> {
        let engine = &self.inner.engine;
        // Read the artifact into memory instead of mmapping it: a cache file truncated or
        // rewritten in place by someone else must not SIGBUS the host later.
        if let Ok(bytes) = std::fs::read(path) {
            // SAFETY: the cache directory holds only artifacts this host wrote with
            // `precompile_component` under a directory named by this engine's compatibility
            // hash; file names are the sha256 of the source, so an artifact never belongs to
            // other bytes. Corrupt or stale files are rejected by wasmtime's header checks and
            // recompiled below.
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => tracing::warn!(
                    plugin = plugin_id,
                    path = %path.display(),
                    "cached artifact unusable, recompiling: {e:#}"
                ),
            }
        }
        if wasmparser_is_core_module(wasm) {
            return Err(RuntimeError::Compile(format!(
                "plugin {plugin_id}: a core wasm module, not a component (build for wasm32-wasip2)"
            )));
        }
        let artifact = engine
            .precompile_component(wasm)
            .map_err(|e| RuntimeError::Compile(format!("plugin {plugin_id}: {e:#}")))?;
        write_atomically(path, &artifact)?;
        // SAFETY: `artifact` was produced just now by this engine's `precompile_component`.
        let component = unsafe { Component::deserialize(engine, &artifact) }
            .map_err(|e| RuntimeError::Compile(format!("plugin {plugin_id}: {e:#}")))?;
        tracing::info!(plugin = plugin_id, path = %path.display(), bytes = artifact.len(), "compiled plugin");
        Ok((component, false))
    }
}

/// Core modules start with version 1 in the preamble; components use a different layer field.
fn wasmparser_is_core_module(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[4..8] == [1, 0, 0, 0]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, pool_instances: u32) -> EngineConfig {
        EngineConfig {
            cache_dir: dir.to_path_buf(),
            pool_instances,
            max_memory_bytes: 64 << 20,
        }
    }

    #[test]
    fn pooled_engine_and_stable_hash() {
        let dir = tempfile::tempdir().unwrap();
        let a = PluginEngine::new(cfg(dir.path(), 8)).unwrap();
        let b = PluginEngine::new(cfg(dir.path(), 8)).unwrap();
        assert_eq!(a.allocator(), AllocatorKind::Pooling);
        assert_eq!(a.compatibility_hash(), b.compatibility_hash());
        assert_eq!(a.compatibility_hash().len(), 24);
    }

    #[test]
    fn unreservable_pool_falls_back_to_on_demand() {
        // 2^20 instances x 2 memories x (4 GiB reservation + guard) = 8 PiB, far beyond the
        // 128 TiB user address space of x86-64/aarch64 Linux, so reserving the pool fails.
        let dir = tempfile::tempdir().unwrap();
        let e = PluginEngine::new(cfg(dir.path(), 1 << 20)).unwrap();
        assert_eq!(e.allocator(), AllocatorKind::OnDemand);
    }

    #[test]
    fn core_modules_and_garbage_are_compile_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = PluginEngine::new(cfg(dir.path(), 4)).unwrap();
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(
            e.compile("p", HookKind::QueueRouter, core),
            Err(RuntimeError::Compile(m)) if m.contains("not a component")
        ));
        assert!(matches!(
            e.compile("p", HookKind::QueueRouter, b"not wasm at all"),
            Err(RuntimeError::Compile(_))
        ));
    }

    #[test]
    fn atomic_write_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x/y.cwasm");
        write_atomically(&p, b"abc").unwrap();
        write_atomically(&p, b"def").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"def");
        assert_eq!(std::fs::read_dir(dir.path().join("x")).unwrap().count(), 1);
    }
}
