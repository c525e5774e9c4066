//! The host's one entry point for plugins: discovery, install, grants, enablement, config,
//! hot reload and rollback, ordered hook chains, per-plugin logs, stats and breakers.
//!
//! # On-disk layout (the one convention)
//!
//! ```text
//! <plugins_dir>/
//!   <any-name>/plugin.toml        one directory per plugin: manifest,
//!   <any-name>/<wasm>             the component (manifest `wasm`, default `<id with - as _>.wasm`),
//!   <any-name>/<schema>.json      and the config schema file when the manifest names one.
//!   .previous/<id>/...            the version before the last install (for rollback)
//!   .staging/                     scratch space of `install`
//! ```
//! Directories whose name starts with `.` are not plugins. `install` writes `<plugins_dir>/<id>/`
//! (or the directory the plugin was discovered in). A directory that fails to load (bad
//! manifest, missing wasm, compile error, duplicate id) is listed with state `broken` and its
//! error; discovery goes on.
//!
//! # Enforcement
//!
//! A capability works only if the manifest declares it AND an admin granted it
//! ([`crate::grants::effective`]). A plugin with any declared-but-ungranted capability is in
//! state `needs_approval` and is not called until [`PluginRegistry::grant`] covers it; this is
//! how an update that asks for more stays off until re-approved.
//!
//! # Hot reload
//!
//! Each plugin lives in a slot holding an `ArcSwap<LoadedPlugin>`. A call clones the `Arc` at
//! its start, so in-flight calls finish on the version they started with while new calls see
//! the new one. Config and grant changes swap in a rebuilt `LoadedPlugin` the same way.
//!
//! # Chains
//!
//! Plugins of one hook run in `priority` order (lower first), then by id:
//! - queue-router: the first route other than `pass` wins; none means `local`.
//! - prompt-transform: each rewritten workflow feeds the next plugin.
//! - status-overlay: every `Some` update is collected in chain order (the host shows the last).
//! - preset-resolver: the first plugin that answers.
//! - output-sync: every plugin runs; each outcome is reported.
//!
//! A call that faults (trap, deadline, memory cap, malformed answer; see
//! [`CallErrorKind::is_fault`]) counts toward the plugin's breaker; a plugin's own returned
//! error does not (it is the plugin's decision about this input). Either way, with `fail-open`
//! the plugin is skipped (logged, also in the plugin's log); with `fail-closed` the chain
//! stops with a [`ChainError`] naming plugin and reason.
//!
//! A fail-closed plugin that is not running (breaker tripped, disabled, an update waiting for
//! approval, config invalid for this version) keeps its hook closed: the chain fails at once
//! with [`CallErrorKind::Unavailable`] (and a record in that plugin's log) until an admin
//! re-enables or approves it, or removes it. It is never silently skipped.
//!
//! Observer hooks (status-overlay, output-sync) cannot abort anything: their failures are
//! logged and reported, never turned into an error of the operation.

mod code;
mod dropin_snapshot;
mod info;
mod logs;
mod query;
mod scan;
mod secrets;
mod shadow;
mod stats;
mod trust;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use comfyhost_store::{NewActivity, Store};
use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::Instrument;

pub use code::{HookInput, HookOutput, PluginCode, PluginCompiler};
pub use info::{PluginInfo, PluginState};
pub use logs::{LOG_RING_CAPACITY, LogRing};
pub use secrets::{EnvSecrets, MapSecrets, SecretSource};
pub use shadow::{SHADOW_DIR, ShadowCall, ShadowInfo};
pub use stats::{CallStats, LATENCY_WINDOW, StatsSnapshot};
pub use trust::message_of_dir;

use crate::breaker::{Breaker, BreakerConfig};
use crate::capabilities::kv::KvStore;
use crate::capabilities::log::{PluginLogLevel, PluginLogRecord, PluginLogSink};
use crate::grants::{self, CodeApproval, DirRoots, EffectiveCaps, Grants, HttpOrigin};
use crate::limits::PluginLimits;
use crate::manifest::{ConfigSchema, FailurePolicy, HookKind, MANIFEST_FILE, Manifest};
use crate::sandbox::CallEnv;
use crate::sandbox::budget::{HostMemory, ResourcePool, SharedBudgets};
use crate::signing::{SignatureFiles, Signer};
use crate::types::{
    BackendStatus, ExecutionEvent, InstalledFolder, JobContext, OutputFile, OverlayUpdate,
    RemovalOutcome, Resolution, Route, Submission, SyncOutcome, TransformResult,
};
use crate::{CallError, CallErrorKind, RuntimeError};
use dropin_snapshot::DropInSnapshots;
use scan::{Candidate, ScanMemory};

const PREVIOUS_DIR: &str = ".previous";
const STAGING_DIR: &str = ".staging";

/// Registry settings (host config).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Managed plugins directory (see the module doc for its layout).
    pub plugins_dir: PathBuf,
    /// Where directory placeholders point.
    pub dir_roots: DirRoots,
    pub breaker: BreakerConfig,
    /// Facts for the `host-info` import.
    pub host_info: Vec<(String, String)>,
    /// Component size, compile time, WASI resources and total memory of plugin calls.
    pub limits: PluginLimits,
}

/// The outcome of a queue-router chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub route: Route,
    /// The plugin whose route won; `None` when every plugin passed (route is `Local`).
    pub decided_by: Option<String>,
}

/// One rewrite applied by a prompt-transform plugin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedTransform {
    pub plugin_id: String,
    pub notes: Vec<String>,
}

/// A fail-closed plugin failed, so the operation fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0} (fail-closed)")]
pub struct ChainError(pub CallError);

/// Result of [`PluginRegistry::discover`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryReport {
    /// Plugins (re)loaded by this scan.
    pub loaded: Vec<String>,
    /// Plugins whose files did not change.
    pub unchanged: Vec<String>,
    /// `(id or directory name, error)`.
    pub broken: Vec<(String, String)>,
    /// Plugins whose directory vanished.
    pub removed: Vec<String>,
}

/// One loaded version of a plugin with everything a call needs. Immutable: any change builds a
/// new one and swaps it in.
pub struct LoadedPlugin {
    pub manifest: Manifest,
    /// The plugin's directory.
    pub dir: PathBuf,
    code: Arc<dyn PluginCode>,
    schema: Option<Arc<ConfigSchema>>,
    /// Validated config (defaults applied), or why the stored config does not fit.
    config: Result<Value, String>,
    grants: Grants,
    /// Whether `grants` were approved for this component.
    approval: CodeApproval,
    pending: Vec<grants::RequestedCapability>,
    env: CallEnv,
    /// The slot's log ring (`env.log` points at it too).
    logs: Arc<LogRing>,
    /// Who signed this version (from the signature files in `dir`).
    signer: Signer,
}

impl LoadedPlugin {
    /// Hex sha256 of the component.
    pub fn sha256(&self) -> &str {
        self.code.sha256()
    }
}

/// Files of one plugin version before they are compiled.
struct Sources {
    manifest: Manifest,
    wasm: Vec<u8>,
    schema: Option<ConfigSchema>,
}

struct Health {
    breaker: Breaker,
    stats: CallStats,
}

struct Slot {
    id: String,
    current: ArcSwap<LoadedPlugin>,
    previous: Mutex<Option<Arc<LoadedPlugin>>>,
    enabled: AtomicBool,
    health: Mutex<Health>,
    logs: Arc<LogRing>,
}

struct Inner {
    cfg: RegistryConfig,
    compiler: Arc<dyn PluginCompiler>,
    store: Store,
    kv: Arc<dyn KvStore>,
    secrets: Arc<dyn SecretSource>,
    slots: parking_lot::RwLock<BTreeMap<String, Arc<Slot>>>,
    /// Keyed by plugin id, or by directory name when the manifest could not be read.
    broken: parking_lot::RwLock<BTreeMap<String, (PathBuf, String)>>,
    /// Serializes admin operations (install, grant, rollback, the swap step of discover, ...).
    admin: Mutex<()>,
    /// Serializes drop-in scans (a scan compiles without holding `admin`).
    scan: Mutex<()>,
    scan_memory: ScanMemory,
    /// Per-plugin WASI resource pools, kept across reloads.
    resource_pools: Mutex<HashMap<String, Arc<ResourcePool>>>,
    host_memory: Arc<HostMemory>,
    observer: std::sync::OnceLock<Arc<dyn CallObserver>>,
    /// Plugins installed in shadow, by id (see [`shadow`]).
    shadows: parking_lot::RwLock<BTreeMap<String, Arc<LoadedPlugin>>>,
}

/// Told about every hook call as it returns (the host's metrics). Must be cheap.
pub trait CallObserver: Send + Sync {
    fn observe(&self, plugin: &str, hook: HookKind, elapsed: std::time::Duration, ok: bool);
}

/// Installed plugins and their chains. Cheap to clone.
#[derive(Clone)]
pub struct PluginRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("plugins_dir", &self.inner.cfg.plugins_dir)
            .field(
                "plugins",
                &self.inner.slots.read().keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn store_err(e: comfyhost_store::StoreError) -> RuntimeError {
    RuntimeError::Store(e.to_string())
}

impl PluginRegistry {
    /// An empty registry over `cfg.plugins_dir` (created if missing). Call
    /// [`PluginRegistry::discover`] to load what is there.
    pub fn new(
        cfg: RegistryConfig,
        compiler: Arc<dyn PluginCompiler>,
        store: Store,
        secrets: Arc<dyn SecretSource>,
    ) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(&cfg.plugins_dir)?;
        let kv: Arc<dyn KvStore> = Arc::new(store.clone());
        let host_memory = HostMemory::new(cfg.limits.host_memory_bytes);
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                compiler,
                store,
                kv,
                secrets,
                slots: parking_lot::RwLock::new(BTreeMap::new()),
                broken: parking_lot::RwLock::new(BTreeMap::new()),
                admin: Mutex::new(()),
                scan: Mutex::new(()),
                scan_memory: ScanMemory::default(),
                resource_pools: Mutex::new(HashMap::new()),
                host_memory,
                observer: std::sync::OnceLock::new(),
                shadows: parking_lot::RwLock::new(BTreeMap::new()),
            }),
        })
    }

    /// Sets the observer told about every hook call (once; later calls are ignored).
    pub fn set_call_observer(&self, observer: Arc<dyn CallObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    // ----- discovery -------------------------------------------------------------------------

    /// Scans the plugins directory: loads new plugins, reloads changed ones (hot reload), drops
    /// plugins whose directory vanished, and records broken ones. Never fails because of one
    /// plugin; fails only when the directory itself cannot be read.
    ///
    /// An unchanged directory costs a few `stat` calls (component hashes are remembered by
    /// file identity), a component that failed to compile is not compiled again until its
    /// bytes change, and compiles run without the admin lock under the host's size and time
    /// limits. Two directories declaring the same id never swap: the one already loaded (or
    /// whose code an admin approved) keeps the id, the other is refused and reported.
    pub fn discover(&self) -> Result<DiscoveryReport, RuntimeError> {
        let _scan = self.inner.scan.lock();
        let mut report = DiscoveryReport::default();
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.inner.cfg.plugins_dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        let mut broken = BTreeMap::new();
        let mut by_id: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        let max_bytes = self.inner.cfg.limits.max_component_bytes;
        for dir in dirs {
            match self.inner.scan_memory.candidate(&dir, max_bytes) {
                Ok(c) => by_id.entry(c.manifest.id.clone()).or_default().push(c),
                Err(e) => {
                    let dir_name = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    self.warn_broken_once(&dir_name, &e.to_string());
                    report.broken.push((dir_name.clone(), e.to_string()));
                    broken.insert(dir_name, (dir, e.to_string()));
                }
            }
        }
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        let mut duplicates = HashSet::new();
        let snapshots = DropInSnapshots::new(&self.inner.cfg.plugins_dir);
        for (id, group) in by_id {
            let Some(mut cand) =
                self.pick_one(&id, group, &mut report, &mut broken, &mut duplicates)
            else {
                continue;
            };
            seen.insert(id.clone(), cand.dir.clone());
            let sha = cand.sha256.clone();
            let before = self.slot(&id).map(|slot| slot.current.load_full());
            if let Some(cur) = &before
                && cur.sha256() == sha
                && cur.manifest == cand.manifest
                && cur.dir == cand.dir
            {
                // The copy for a later in-place replacement follows what runs (an upload or a
                // rollback writes the directory without a scan seeing it change).
                if snapshots.sha256(&id).as_deref() != Some(sha.as_str())
                    && let Err(e) = snapshots.keep(&id, &cand.dir, &cand.manifest, &sha)
                {
                    tracing::warn!(plugin = %id, error = %e, "cannot keep a copy of the drop-in; no rollback after an in-place replacement");
                }
                report.unchanged.push(id);
                continue;
            }
            // The trust policy applies to every new or changed drop-in (recorded once per reason).
            let known_refusal = self.inner.broken.read().get(&id).map(|(_, e)| e.clone());
            if let Err(e) = self.trust_check_dir(&cand.dir, &cand.manifest, &sha, false) {
                let msg = e.to_string();
                if known_refusal.as_deref() != Some(msg.as_str()) {
                    let _ = self.trust_check_dir(&cand.dir, &cand.manifest, &sha, true);
                }
                report.broken.push((id.clone(), msg.clone()));
                broken.insert(id, (cand.dir, msg));
                continue;
            }
            let hook = cand.manifest.hook();
            let (cand_dir, cand_manifest) = (cand.dir.clone(), cand.manifest.clone());
            // The code this version replaces: the one loaded now, or (changed while the host
            // was down) the one the copy holds.
            let replaced_sha = match &before {
                Some(cur) => Some(cur.sha256().to_owned()),
                None => snapshots.sha256(&id).filter(|s| *s != sha),
            };
            let remembered = self.inner.scan_memory.failure(&sha, hook);
            let warn_again = remembered.is_none();
            let loaded = match remembered {
                Some(err) => Err(RuntimeError::Compile(format!(
                    "{err} (remembered for this component's sha256; not compiled again until it changes)"
                ))),
                None => self.inner.scan_memory.bytes(&mut cand).and_then(|wasm| {
                    let sources = Sources {
                        manifest: cand.manifest,
                        wasm,
                        schema: cand.schema,
                    };
                    let code = self.compile(&sources);
                    if let Err(e) = &code {
                        self.inner.scan_memory.remember_failure(&sha, hook, e);
                    }
                    // Swap under the admin lock, and only if no admin operation replaced the
                    // plugin while this scan compiled (the next scan looks again).
                    let _admin = self.inner.admin.lock();
                    let now = self.slot(&id).map(|slot| slot.current.load_full());
                    let same = match (&before, &now) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        (None, None) => true,
                        _ => false,
                    };
                    if !same {
                        return Ok(None);
                    }
                    let loaded = self.build(cand.dir.clone(), sources, code?)?;
                    let replaced = before
                        .as_ref()
                        .map(|cur| (cur.manifest.version.to_string(), cur.sha256().to_owned()));
                    self.record_drop_in(&loaded, replaced);
                    // Replaced in place: the copy of the old files becomes the rollback
                    // target (loaded from `.previous/<id>` at the end of this scan).
                    if let Some(old) = &replaced_sha {
                        let previous = self.inner.cfg.plugins_dir.join(PREVIOUS_DIR).join(&id);
                        if let Err(e) = snapshots.move_to_previous(&id, old, &previous) {
                            tracing::warn!(plugin = %id, error = %e, "cannot keep the replaced drop-in for rollback");
                        }
                    }
                    self.put(loaded, false);
                    if let Err(e) = snapshots.keep(&id, &cand_dir, &cand_manifest, &sha) {
                        tracing::warn!(plugin = %id, error = %e, "cannot keep a copy of the drop-in; no rollback after an in-place replacement");
                    }
                    Ok(Some(()))
                }),
            };
            match loaded {
                Ok(Some(())) => report.loaded.push(id),
                Ok(None) => report.unchanged.push(id),
                Err(e) => {
                    if warn_again {
                        tracing::warn!(plugin = %id, error = %e, "plugin failed to load");
                    } else {
                        tracing::debug!(plugin = %id, error = %e, "plugin still broken");
                    }
                    report.broken.push((id.clone(), e.to_string()));
                    broken.insert(id, (cand.dir, e.to_string()));
                }
            }
        }
        self.inner
            .scan_memory
            .retain_duplicate_warnings(&duplicates);
        let _admin = self.inner.admin.lock();
        // Slots whose directory vanished (and is not just broken now) leave the registry.
        let gone: Vec<String> = self
            .inner
            .slots
            .read()
            .keys()
            .filter(|id| !seen.contains_key(*id) && !broken.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.inner.slots.write().remove(&id);
            tracing::info!(plugin = %id, "plugin directory removed; unloaded");
            self.activity_as("drop-in", "plugin.dropin_removed", &id, Value::Null);
            report.removed.push(id);
        }
        // A plugin broken by this scan but still loaded keeps serving its last good version.
        *self.inner.broken.write() = broken;
        self.load_shadows();
        // Previous versions kept on disk become rollback targets.
        for id in report.loaded.clone() {
            let prev_dir = self.inner.cfg.plugins_dir.join(PREVIOUS_DIR).join(&id);
            if let (Some(slot), true) = (self.slot(&id), prev_dir.join(MANIFEST_FILE).exists()) {
                match read_sources(&prev_dir).and_then(|s| self.load_version(&prev_dir, s)) {
                    Ok(prev) => *slot.previous.lock() = Some(Arc::new(prev)),
                    Err(e) => {
                        tracing::warn!(plugin = %id, error = %e, "previous version unusable; no rollback")
                    }
                }
            }
        }
        Ok(report)
    }

    /// Of several directories declaring `id`, the one that keeps it: the directory the plugin
    /// is loaded from now, else the one whose component an admin approved, else the one named
    /// like the id; with none of these, none (an ambiguous id runs nowhere until an admin
    /// removes the extra directory). Every other
    /// directory is refused as a duplicate, with a warning and an activity entry once.
    fn pick_one(
        &self,
        id: &str,
        mut group: Vec<Candidate>,
        report: &mut DiscoveryReport,
        broken: &mut BTreeMap<String, (PathBuf, String)>,
        duplicates: &mut HashSet<PathBuf>,
    ) -> Option<Candidate> {
        if group.len() == 1 {
            return group.pop();
        }
        let loaded_dir = self.slot(id).map(|s| s.current.load().dir.clone());
        let approved = self.stored_grants(id).ok().and_then(|g| g.code_sha256);
        let keep = group
            .iter()
            .position(|c| loaded_dir.as_ref() == Some(&c.dir))
            .or_else(|| {
                group
                    .iter()
                    .position(|c| approved.as_deref() == Some(c.sha256.as_str()))
            })
            // The directory `install` would use for this id.
            .or_else(|| group.iter().position(|c| c.dir_name == id));
        let kept = keep.map(|i| group.remove(i));
        let kept_dir = kept.as_ref().map(|c| c.dir.display().to_string());
        for c in group {
            let msg = match &kept_dir {
                Some(k) => format!(
                    "duplicate plugin id {id}: the plugin is loaded from {k}; this directory is refused, never swapped in"
                ),
                None => format!(
                    "duplicate plugin id {id}: several directories declare it and none holds the approved code; all are refused until only one is left"
                ),
            };
            duplicates.insert(c.dir.clone());
            if self.inner.scan_memory.first_duplicate_warning(&c.dir) {
                tracing::warn!(plugin = %id, dir = %c.dir.display(), sha256 = %c.sha256, "{msg}");
                self.activity_as(
                    "system",
                    "plugin.duplicate_refused",
                    id,
                    serde_json::json!({
                        "dir": c.dir.display().to_string(),
                        "sha256": c.sha256,
                        "kept": kept_dir,
                    }),
                );
            }
            report.broken.push((c.dir_name.clone(), msg.clone()));
            broken.insert(c.dir_name, (c.dir, msg));
        }
        kept
    }

    /// Logs a broken directory once per distinct error, not on every rescan.
    fn warn_broken_once(&self, key: &str, error: &str) {
        let known = self
            .inner
            .broken
            .read()
            .get(key)
            .is_some_and(|(_, e)| e == error);
        if known {
            tracing::debug!(plugin = %key, error, "plugin directory still broken");
        } else {
            tracing::warn!(plugin = %key, error, "plugin directory is broken; not loaded");
        }
    }

    /// Activity for a version found in the drop-in directory: a new plugin, a replaced one
    /// (files changed while the host ran), or one whose version differs from the last one
    /// recorded (changed while the host was down). A restart with the same files records
    /// nothing.
    fn record_drop_in(&self, loaded: &LoadedPlugin, replaced: Option<(String, String)>) {
        let id = &loaded.manifest.id;
        let version = loaded.manifest.version.to_string();
        let row = self.inner.store.plugin(id).ok().flatten();
        let recorded = row.as_ref().and_then(|r| r.installed_version.clone());
        let (action, from) = match (&replaced, &recorded) {
            (Some((from, _)), _) => ("plugin.dropin_replaced", Some(from.clone())),
            (None, Some(v)) if *v == version => return,
            (None, Some(v)) => ("plugin.dropin_replaced", Some(v.clone())),
            (None, None) => ("plugin.dropin_installed", None),
        };
        if let Err(e) = self
            .inner
            .store
            .set_plugin_versions(id, Some(&version), from.as_deref())
        {
            tracing::error!(plugin = %id, error = %e, "cannot record the drop-in version");
        }
        self.activity_as(
            "drop-in",
            action,
            id,
            serde_json::json!({
                "version": version,
                "sha256": loaded.sha256(),
                "dir": loaded.dir,
                "previous": from,
                "previous_sha256": replaced.map(|(_, sha)| sha),
            }),
        );
    }

    // ----- install / rollback ----------------------------------------------------------------

    /// Installs a plugin (or a new version of one): validates the manifest, compiles the
    /// component, writes it into the plugins directory keeping the previous version for
    /// rollback, and swaps it in. `schema` is the content of the file the manifest names in
    /// `config.schema`. A version that declares capabilities not yet granted is installed in
    /// state `needs_approval`.
    pub fn install(
        &self,
        manifest_toml: &str,
        wasm: &[u8],
        schema: Option<&str>,
    ) -> Result<PluginInfo, RuntimeError> {
        self.install_signed(manifest_toml, wasm, schema, None)
    }

    /// [`PluginRegistry::install`] with the version's signature files (`plugin.minisig` and
    /// `plugin.pub`), checked against the trust policy before anything else happens. A version
    /// signed by another key than the installed one is installed waiting for an admin's
    /// approval of its code (state `needs_approval`), like one asking for new capabilities.
    pub fn install_signed(
        &self,
        manifest_toml: &str,
        wasm: &[u8],
        schema: Option<&str>,
        signature: Option<SignatureFiles>,
    ) -> Result<PluginInfo, RuntimeError> {
        let _admin = self.inner.admin.lock();
        let manifest = Manifest::from_toml_str(manifest_toml)?;
        let id = manifest.id.clone();
        let schema_file = match (&manifest.config.schema, schema) {
            (Some(file), Some(text)) => Some((file.clone(), text)),
            (Some(file), None) => {
                return Err(RuntimeError::Manifest(format!(
                    "config.schema names {file:?} but no schema was supplied"
                )));
            }
            (None, Some(_)) => {
                return Err(RuntimeError::Manifest(
                    "a schema was supplied but the manifest has no config.schema".into(),
                ));
            }
            (None, None) => None,
        };
        let parsed_schema = match &schema_file {
            Some((_, text)) => Some(ConfigSchema::from_json_str(text)?),
            None => None,
        };
        let signer = self.trust_check(
            &trust::VersionFiles {
                manifest: &manifest,
                manifest_bytes: manifest_toml.as_bytes(),
                wasm_sha256: sha256_hex(wasm),
                schema: schema_file
                    .as_ref()
                    .map(|(n, t)| (n.clone(), t.as_bytes().to_vec())),
                signature: signature.clone(),
            },
            "admin",
            true,
        )?;
        let existing = self.slot(&id);
        // Another signer than the one approved for this plugin: the version waits for an admin.
        let signer_changed = self
            .approved_signer(&id)?
            .flatten()
            .filter(|was| signer.key_id.as_deref() != Some(was.as_str()));
        if let Some(slot) = &existing {
            let cur = slot.current.load();
            if manifest.version < cur.manifest.version {
                return Err(RuntimeError::Manifest(format!(
                    "version {} is older than the installed {}; use rollback to go back",
                    manifest.version, cur.manifest.version
                )));
            }
            if manifest.version == cur.manifest.version && sha256_hex(wasm) == cur.sha256() {
                drop(cur);
                return self.info_of(slot);
            }
        }
        let sources = Sources {
            manifest,
            wasm: wasm.to_vec(),
            schema: parsed_schema,
        };
        // Compile before touching the disk: a component that does not compile changes nothing.
        let target = existing
            .as_ref()
            .map(|s| s.current.load().dir.clone())
            .unwrap_or_else(|| self.inner.cfg.plugins_dir.join(&id));
        let compiled = self.compile(&sources)?;
        self.write_version(
            &target,
            manifest_toml,
            wasm,
            &sources.manifest,
            schema_file,
            signature.as_ref(),
        )?;
        match &signer_changed {
            // The admin uploaded this component: the grants now follow it (and its signer).
            None => {
                self.approve_code(&id, compiled.sha256())?;
                self.approve_signer(&id, signer.key_id.as_deref())?;
            }
            Some(was) => {
                tracing::warn!(plugin = %id, from = ?was, to = ?signer.key_id,
                    "signed by another key than the installed version; waiting for an admin");
                self.activity(
                    "plugin.signer_changed",
                    &id,
                    serde_json::json!({ "from": was, "to": signer.key_id, "sha256": compiled.sha256() }),
                );
            }
        }
        let loaded = self.build(target, sources, compiled)?;
        let version = loaded.manifest.version.to_string();
        let previous = self.put(loaded, true);
        self.inner.broken.write().remove(&id);
        self.inner
            .store
            .set_plugin_versions(&id, Some(&version), previous.as_deref())
            .map_err(store_err)?;
        self.activity(
            "plugin.install",
            &id,
            serde_json::json!({ "version": version, "previous": previous }),
        );
        let slot = self
            .slot(&id)
            .ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        let info = self.info_of(&slot)?;
        if info.state == PluginState::NeedsApproval {
            tracing::warn!(plugin = %id, pending = ?info.pending, "installed; waiting for admin approval of capabilities");
        }
        Ok(info)
    }

    /// Swaps the previous version back in (memory and disk). The version rolled back from
    /// becomes the new rollback target.
    pub fn rollback(&self, id: &str) -> Result<PluginInfo, RuntimeError> {
        let _admin = self.inner.admin.lock();
        let slot = self.require(id)?;
        let prev = slot
            .previous
            .lock()
            .clone()
            .ok_or_else(|| RuntimeError::NotFound(format!("no previous version of {id}")))?;
        let cur = slot.current.load_full();
        // Disk: swap the plugin directory and .previous/<id>.
        let prev_dir = self.inner.cfg.plugins_dir.join(PREVIOUS_DIR).join(id);
        let tmp = self
            .inner
            .cfg
            .plugins_dir
            .join(STAGING_DIR)
            .join(format!("{id}.rollback"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(self.inner.cfg.plugins_dir.join(STAGING_DIR))?;
        std::fs::rename(&cur.dir, &tmp)?;
        std::fs::rename(&prev_dir, &cur.dir)?;
        std::fs::rename(&tmp, &prev_dir)?;
        // The admin chose the previous component: the grants now follow it.
        self.approve_code(id, prev.sha256())?;
        self.approve_signer(id, prev.signer.key_id.as_deref())?;
        // Memory: rebuild the old version with today's grants and config, at the live path.
        let restored = self.rebuild(&prev, cur.dir.clone(), &slot)?;
        let demoted = self.rebuild(&cur, prev_dir, &slot)?;
        let (from, to) = (
            cur.manifest.version.to_string(),
            restored.manifest.version.to_string(),
        );
        slot.current.store(Arc::new(restored));
        *slot.previous.lock() = Some(Arc::new(demoted));
        self.inner
            .store
            .set_plugin_versions(id, Some(&to), Some(&from))
            .map_err(store_err)?;
        tracing::info!(plugin = %id, from = %from, to = %to, "rolled back");
        self.activity(
            "plugin.rollback",
            id,
            serde_json::json!({ "from": from, "to": to }),
        );
        self.info_of(&slot)
    }

    // ----- admin -----------------------------------------------------------------------------

    /// Replaces what an admin approved for `id`, persists it and applies it to new calls.
    /// Invalid origins are rejected. The grants are bound to the component the plugin runs
    /// now; when `grants.code_sha256` names a component, it must be that one (the admin
    /// approved what the dashboard showed, not something swapped in since).
    pub fn grant(&self, id: &str, mut grants: Grants) -> Result<PluginInfo, RuntimeError> {
        let _admin = self.inner.admin.lock();
        let slot = self.require(id)?;
        let running = slot.current.load().sha256().to_owned();
        match &grants.code_sha256 {
            Some(sha) if !sha.eq_ignore_ascii_case(&running) => {
                return Err(RuntimeError::Config(format!(
                    "these grants are for component sha256 {sha}, but plugin {id} now has component {running}; review it again"
                )));
            }
            _ => grants.code_sha256 = Some(running),
        }
        for (i, o) in grants.http.iter().enumerate() {
            HttpOrigin::parse(o)
                .map_err(|e| RuntimeError::Config(format!("grants.http[{i}]: {e}")))?;
        }
        let json =
            serde_json::to_string(&grants).map_err(|e| RuntimeError::Store(e.to_string()))?;
        self.inner
            .store
            .set_plugin_grants(id, Some(&json))
            .map_err(store_err)?;
        // ... and to the signer of that component.
        let signer = slot.current.load().signer.key_id.clone();
        self.approve_signer(id, signer.as_deref())?;
        self.refresh(&slot)?;
        self.activity(
            "plugin.grant",
            id,
            serde_json::to_value(&grants).unwrap_or(Value::Null),
        );
        self.info_of(&slot)
    }

    /// Turns the plugin on and resets its breaker (the admin's re-enable after a trip).
    pub fn enable(&self, id: &str) -> Result<PluginInfo, RuntimeError> {
        let slot = self.require(id)?;
        self.inner
            .store
            .set_plugin_enabled(id, true)
            .map_err(store_err)?;
        slot.enabled.store(true, Ordering::SeqCst);
        slot.health.lock().breaker.reset();
        self.activity("plugin.enable", id, Value::Null);
        self.info_of(&slot)
    }

    /// Turns the plugin off.
    pub fn disable(&self, id: &str) -> Result<PluginInfo, RuntimeError> {
        let slot = self.require(id)?;
        self.inner
            .store
            .set_plugin_enabled(id, false)
            .map_err(store_err)?;
        slot.enabled.store(false, Ordering::SeqCst);
        self.activity("plugin.disable", id, Value::Null);
        self.info_of(&slot)
    }

    /// Validates `config` against the plugin's schema (defaults applied), persists it and
    /// applies it to new calls. Returns the stored config.
    pub fn set_config(&self, id: &str, config: &Value) -> Result<Value, RuntimeError> {
        let _admin = self.inner.admin.lock();
        let slot = self.require(id)?;
        let before = slot.current.load().config.clone().unwrap_or(Value::Null);
        let validated = validate_config(slot.current.load().schema.as_deref(), config)?;
        let text = validated.to_string();
        self.inner
            .store
            .set_plugin_config(id, Some(&text))
            .map_err(store_err)?;
        self.refresh(&slot)?;
        self.activity("plugin.config", id, config_diff(&before, &validated));
        Ok(validated)
    }

    // ----- queries ---------------------------------------------------------------------------

    /// Every plugin, loaded or broken, ordered by id.
    pub fn list(&self) -> Vec<PluginInfo> {
        let slots: Vec<Arc<Slot>> = self.inner.slots.read().values().cloned().collect();
        let mut out: Vec<PluginInfo> = slots
            .iter()
            .filter_map(|s| match self.info_of(s) {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::warn!(plugin = %s.id, error = %e, "cannot describe plugin");
                    None
                }
            })
            .collect();
        for (key, (dir, err)) in self.inner.broken.read().iter() {
            match out.iter_mut().find(|i| &i.id == key) {
                // A loaded plugin whose directory is broken now: show the error, keep serving.
                Some(info) => info.last_error = Some(err.clone()),
                None => out.push(PluginInfo::broken(key.clone(), dir.clone(), err.clone())),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// One plugin.
    pub fn get(&self, id: &str) -> Result<PluginInfo, RuntimeError> {
        self.list()
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))
    }

    /// The plugin's recent log records, oldest first.
    pub fn logs(&self, id: &str) -> Result<Vec<PluginLogRecord>, RuntimeError> {
        Ok(self.require(id)?.logs.records())
    }

    // ----- chains ----------------------------------------------------------------------------

    /// queue-router chain: the first route other than `Pass` wins; `Local` when none does.
    pub async fn route(
        &self,
        submission: &Submission,
        backends: &[BackendStatus],
    ) -> Result<RouteDecision, ChainError> {
        self.closed(HookKind::QueueRouter, Some(&submission.prompt_id))?;
        for (slot, loaded) in self.chain(HookKind::QueueRouter) {
            let input = HookInput::Route {
                submission,
                backends,
            };
            match self
                .invoke(&slot, &loaded, Some(&submission.prompt_id), input)
                .await
            {
                Ok(HookOutput::Route(Route::Pass)) => {}
                Ok(HookOutput::Route(route)) => {
                    return Ok(RouteDecision {
                        route,
                        decided_by: Some(slot.id.clone()),
                    });
                }
                Ok(other) => self.failed(&slot, &loaded, mismatch(other))?,
                Err(kind) => self.failed(&slot, &loaded, kind)?,
            }
        }
        Ok(RouteDecision {
            route: Route::Local,
            decided_by: None,
        })
    }

    /// prompt-transform chain: each rewritten workflow feeds the next plugin. Returns the final
    /// workflow and what each plugin that rewrote it noted.
    pub async fn transform(
        &self,
        submission: &Submission,
    ) -> Result<(Value, Vec<AppliedTransform>), ChainError> {
        let mut current = submission.clone();
        let mut applied = Vec::new();
        self.closed(HookKind::PromptTransform, Some(&submission.prompt_id))?;
        for (slot, loaded) in self.chain(HookKind::PromptTransform) {
            let input = HookInput::Transform {
                submission: &current,
            };
            match self
                .invoke(&slot, &loaded, Some(&submission.prompt_id), input)
                .await
            {
                Ok(HookOutput::Transform(TransformResult::Unchanged)) => {}
                Ok(HookOutput::Transform(TransformResult::Rewritten { workflow, notes })) => {
                    current.workflow = workflow;
                    applied.push(AppliedTransform {
                        plugin_id: slot.id.clone(),
                        notes,
                    });
                }
                Ok(other) => self.failed(&slot, &loaded, mismatch(other))?,
                Err(kind) => self.failed(&slot, &loaded, kind)?,
            }
        }
        Ok((current.workflow, applied))
    }

    /// status-overlay chain: every update, in chain order.
    pub async fn on_event(
        &self,
        job: &JobContext,
        event: &ExecutionEvent,
    ) -> Vec<(String, OverlayUpdate)> {
        let mut out = Vec::new();
        for (slot, loaded) in self.chain(HookKind::StatusOverlay) {
            let input = HookInput::Event { job, event };
            match self
                .invoke(&slot, &loaded, Some(&job.prompt_id), input)
                .await
            {
                Ok(HookOutput::Event(Some(update))) => out.push((slot.id.clone(), update)),
                Ok(HookOutput::Event(None)) => {}
                Ok(other) => self.observer_failed(&slot, mismatch(other)),
                Err(kind) => self.observer_failed(&slot, kind),
            }
        }
        out
    }

    /// preset-resolver chain: the first plugin that answers, with its id; `None` when no
    /// plugin is enabled or every one failed open.
    pub async fn resolve(
        &self,
        workflow: &Value,
        installed: &[InstalledFolder],
    ) -> Result<Option<(String, Resolution)>, ChainError> {
        self.closed(HookKind::PresetResolver, None)?;
        for (slot, loaded) in self.chain(HookKind::PresetResolver) {
            let input = HookInput::Resolve {
                workflow,
                installed,
            };
            match self.invoke(&slot, &loaded, None, input).await {
                Ok(HookOutput::Resolve(r)) => return Ok(Some((slot.id.clone(), r))),
                Ok(other) => self.failed(&slot, &loaded, mismatch(other))?,
                Err(kind) => self.failed(&slot, &loaded, kind)?,
            }
        }
        Ok(None)
    }

    /// output-sync chain: every plugin runs; each outcome (or failure) is reported in chain
    /// order.
    pub async fn on_output(
        &self,
        file: &OutputFile,
    ) -> Vec<(String, Result<SyncOutcome, CallErrorKind>)> {
        self.output_chain(file, HookInput::Output { file }, false, |o| match o {
            HookOutput::Output(o) => Ok(o),
            other => Err(other),
        })
        .await
    }

    /// output-mirror chain: every enabled output-sync plugin that exports `output-mirror`
    /// runs; each outcome (or failure) is reported in chain order. Plugins without it are not
    /// called (they never promised to clean up).
    pub async fn on_removed(
        &self,
        file: &OutputFile,
    ) -> Vec<(String, Result<RemovalOutcome, CallErrorKind>)> {
        self.output_chain(file, HookInput::Removed { file }, true, |o| match o {
            HookOutput::Removed(o) => Ok(o),
            other => Err(other),
        })
        .await
    }

    /// One call per output-sync plugin (only those exporting `output-mirror` when
    /// `mirror_only`), failures reported to each plugin's breaker as an observer's; `pick`
    /// takes the expected answer out of the hook output (anything else is a mismatch).
    async fn output_chain<T>(
        &self,
        file: &OutputFile,
        input: HookInput<'_>,
        mirror_only: bool,
        pick: fn(HookOutput) -> Result<T, HookOutput>,
    ) -> Vec<(String, Result<T, CallErrorKind>)> {
        let mut out = Vec::new();
        for (slot, loaded) in self.chain(HookKind::OutputSync) {
            if mirror_only && !loaded.code.mirrors_removals() {
                continue;
            }
            let r = match self
                .invoke(&slot, &loaded, file.prompt_id.as_deref(), input)
                .await
            {
                Ok(o) => pick(o).map_err(mismatch),
                Err(kind) => Err(kind),
            };
            if let Err(kind) = &r {
                self.observer_failed(&slot, kind.clone());
            }
            out.push((slot.id.clone(), r));
        }
        out
    }

    // ----- internals: calls ------------------------------------------------------------------

    /// Enabled plugins of `hook`, in chain order, each with the version current right now.
    fn chain(&self, hook: HookKind) -> Vec<(Arc<Slot>, Arc<LoadedPlugin>)> {
        let mut chain: Vec<(Arc<Slot>, Arc<LoadedPlugin>)> = self
            .inner
            .slots
            .read()
            .values()
            .map(|s| (s.clone(), s.current.load_full()))
            .filter(|(s, l)| l.code.hook() == hook && state_of(s, l) == PluginState::Enabled)
            .collect();
        chain.sort_by(|(a, la), (b, lb)| {
            (la.manifest.priority, &a.id).cmp(&(lb.manifest.priority, &b.id))
        });
        chain
    }

    /// One call: tracing span, stats, breaker.
    async fn invoke(
        &self,
        slot: &Arc<Slot>,
        loaded: &Arc<LoadedPlugin>,
        prompt_id: Option<&str>,
        input: HookInput<'_>,
    ) -> Result<HookOutput, CallErrorKind> {
        let mut env = loaded.env.clone();
        env.prompt_id = prompt_id.map(str::to_owned);
        let hook = input.hook();
        let span = tracing::info_span!("plugin_call", plugin = %slot.id, hook = %hook,
            version = %loaded.manifest.version, prompt_id = prompt_id.unwrap_or("-"));
        let started = Instant::now();
        let result = loaded.code.call(&env, input).instrument(span.clone()).await;
        let elapsed = started.elapsed();
        if let Some(o) = self.inner.observer.get() {
            o.observe(&slot.id, hook, elapsed, result.is_ok());
        }
        let tripped = {
            let mut health = slot.health.lock();
            health.stats.record(elapsed, result.is_ok());
            match &result {
                Ok(_) => {
                    health.breaker.record_success();
                    false
                }
                Err(kind) if kind.is_fault() => health.breaker.record_fault(
                    Instant::now(),
                    crate::capabilities::log::now_ms(),
                    elapsed,
                    &kind.to_string(),
                ),
                Err(_) => false,
            }
        };
        if let Err(kind) = &result {
            let (level, what) = if kind.is_fault() {
                (PluginLogLevel::Error, "failed")
            } else {
                (PluginLogLevel::Warn, "refused")
            };
            host_log(slot, prompt_id, level, format!("{hook} {what}: {kind}"));
        }
        if tripped {
            let _enter = span.enter();
            tracing::warn!(plugin = %slot.id, "crash-loop breaker tripped; plugin disabled until an admin re-enables it");
            slot.enabled.store(false, Ordering::SeqCst);
            if let Err(e) = self.inner.store.set_plugin_enabled(&slot.id, false) {
                tracing::error!(plugin = %slot.id, error = %e, "cannot persist breaker trip");
            }
            let state = slot.health.lock().breaker.state(Instant::now());
            self.activity_as(
                "system",
                "plugin.breaker_tripped",
                &slot.id,
                serde_json::to_value(state).unwrap_or(Value::Null),
            );
        }
        result
    }

    /// Applies the failure policy of a decision hook.
    fn failed(
        &self,
        slot: &Slot,
        loaded: &LoadedPlugin,
        kind: CallErrorKind,
    ) -> Result<(), ChainError> {
        let hook = loaded.code.hook();
        match loaded.env.budget.failure {
            FailurePolicy::FailOpen => {
                tracing::warn!(plugin = %slot.id, hook = %hook, error = %kind, "plugin failed (fail-open); skipped");
                Ok(())
            }
            FailurePolicy::FailClosed => {
                tracing::warn!(plugin = %slot.id, hook = %hook, error = %kind, "plugin failed (fail-closed)");
                Err(ChainError(CallError {
                    plugin_id: slot.id.clone(),
                    hook: hook.to_string(),
                    kind,
                }))
            }
        }
    }

    /// Fails the chain of `hook` when a fail-closed plugin of it is not running: its policy
    /// must keep applying. The user gets the reason; the admin sees it in the plugin's log and
    /// state (and the trip itself in the activity).
    fn closed(&self, hook: HookKind, prompt_id: Option<&str>) -> Result<(), ChainError> {
        let slots: Vec<Arc<Slot>> = self.inner.slots.read().values().cloned().collect();
        for slot in slots {
            let loaded = slot.current.load_full();
            if loaded.code.hook() != hook || loaded.env.budget.failure != FailurePolicy::FailClosed
            {
                continue;
            }
            let why = match state_of(&slot, &loaded) {
                PluginState::Enabled => continue,
                PluginState::Tripped => {
                    "its crash-loop breaker tripped after repeated faults; an admin must re-enable it"
                        .to_owned()
                }
                PluginState::Disabled => "an admin disabled it".to_owned(),
                PluginState::NeedsApproval => {
                    "it waits for an admin to approve its capabilities".to_owned()
                }
                PluginState::Broken(e) => format!("it cannot run: {e}"),
            };
            let detail = format!(
                "plugin {} is not running ({why}); its {hook} hook is fail-closed, so prompts are refused until it runs again or is removed",
                slot.id
            );
            tracing::warn!(plugin = %slot.id, hook = %hook, prompt_id = prompt_id.unwrap_or("-"),
                "fail-closed plugin not running; refused");
            host_log(
                &slot,
                prompt_id,
                PluginLogLevel::Warn,
                format!("refused: {detail}"),
            );
            return Err(ChainError(CallError {
                plugin_id: slot.id.clone(),
                hook: hook.to_string(),
                kind: CallErrorKind::Unavailable(detail),
            }));
        }
        Ok(())
    }

    fn observer_failed(&self, slot: &Slot, kind: CallErrorKind) {
        tracing::warn!(plugin = %slot.id, error = %kind, "observer plugin failed; skipped");
    }

    // ----- internals: loading ----------------------------------------------------------------

    fn slot(&self, id: &str) -> Option<Arc<Slot>> {
        self.inner.slots.read().get(id).cloned()
    }

    fn require(&self, id: &str) -> Result<Arc<Slot>, RuntimeError> {
        self.slot(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))
    }

    fn compile(&self, sources: &Sources) -> Result<Arc<dyn PluginCode>, RuntimeError> {
        let m = &sources.manifest;
        let limits = &self.inner.cfg.limits;
        if sources.wasm.len() as u64 > limits.max_component_bytes {
            return Err(RuntimeError::Compile(format!(
                "component is {} bytes, more than the host's limit of {} bytes",
                sources.wasm.len(),
                limits.max_component_bytes
            )));
        }
        let code = scan::compile_with_limit(
            self.inner.compiler.clone(),
            &m.id,
            m.hook(),
            sources.wasm.clone(),
            limits.compile_timeout,
        )?;
        if code.hook() != m.hook() {
            return Err(RuntimeError::WorldMismatch(
                m.id.clone(),
                m.hook().to_string(),
            ));
        }
        Ok(code)
    }

    fn load_version(&self, dir: &Path, sources: Sources) -> Result<LoadedPlugin, RuntimeError> {
        let code = self.compile(&sources)?;
        self.build(dir.to_path_buf(), sources, code)
    }

    /// Assembles a loaded version with the persisted grants and config.
    fn build(
        &self,
        dir: PathBuf,
        sources: Sources,
        code: Arc<dyn PluginCode>,
    ) -> Result<LoadedPlugin, RuntimeError> {
        let logs = self
            .slot(&sources.manifest.id)
            .map(|s| s.logs.clone())
            .unwrap_or_default();
        self.assemble(
            dir,
            sources.manifest,
            code,
            sources.schema.map(Arc::new),
            logs,
        )
    }

    fn assemble(
        &self,
        dir: PathBuf,
        manifest: Manifest,
        code: Arc<dyn PluginCode>,
        schema: Option<Arc<ConfigSchema>>,
        logs: Arc<LogRing>,
    ) -> Result<LoadedPlugin, RuntimeError> {
        let row = self.inner.store.plugin(&manifest.id).map_err(store_err)?;
        let grants: Grants = match row.as_ref().and_then(|r| r.grants_json.as_deref()) {
            Some(json) => serde_json::from_str(json).map_err(|e| {
                RuntimeError::Store(format!(
                    "stored grants of {} are unreadable: {e}",
                    manifest.id
                ))
            })?,
            None => Grants::default(),
        };
        let stored_config: Value = match row.as_ref().and_then(|r| r.config_json.as_deref()) {
            Some(json) => serde_json::from_str(json).unwrap_or(Value::Null),
            None => Value::Null,
        };
        let config = validate_config(schema.as_deref(), &stored_config).map_err(|e| e.to_string());
        let approval = grants::code_approval(&grants, code.sha256());
        let (pending, caps) = match &approval {
            // Another component under an approved id: nothing it was granted applies, and it
            // does not run until an admin approves this code.
            CodeApproval::Changed { approved_sha256 } => {
                let mut pending = vec![grants::RequestedCapability::Code {
                    sha256: code.sha256().to_owned(),
                    approved_sha256: Some(approved_sha256.clone()),
                }];
                pending.extend(grants::pending(&manifest, &grants));
                (pending, EffectiveCaps::default())
            }
            CodeApproval::Approved | CodeApproval::Unbound => (
                grants::pending(&manifest, &grants),
                grants::effective(&manifest, &grants, &self.inner.cfg.dir_roots),
            ),
        };
        let signer = self.signer_of_dir(&dir, &manifest, code.sha256());
        let (mut pending, caps) = (pending, caps);
        let caps = match self.signer_change(&manifest.id, &signer)? {
            Some(p) => {
                pending.insert(0, p);
                EffectiveCaps::default()
            }
            None => caps,
        };
        let mut secret_values = HashMap::new();
        for name in &caps.secrets {
            match self.inner.secrets.get(name) {
                Some(v) => {
                    secret_values.insert(name.clone(), v);
                }
                None if manifest.capabilities.is_optional(name) => {
                    tracing::info!(plugin = %manifest.id, secret = %name,
                        "optional secret has no value on this host; the plugin runs without it")
                }
                None => tracing::warn!(plugin = %manifest.id, secret = %name,
                    "granted secret has no value on this host"),
            }
        }
        let config_json: Arc<str> = match &config {
            Ok(v) => v.to_string().into(),
            Err(_) => "{}".into(),
        };
        let hook = manifest.hook();
        let env = CallEnv {
            plugin_id: manifest.id.as_str().into(),
            prompt_id: None,
            budget: manifest.budget(hook),
            caps: Arc::new(caps),
            config_json,
            secrets: Arc::new(secret_values),
            kv: self.inner.kv.clone(),
            log: logs.clone(),
            host_info: Arc::new(self.inner.cfg.host_info.clone()),
            usage: None,
            budgets: self.budgets_of(&manifest.id),
        };
        Ok(LoadedPlugin {
            manifest,
            dir,
            code,
            schema,
            config,
            grants,
            approval,
            pending,
            env,
            logs,
            signer,
        })
    }

    fn budgets_of(&self, id: &str) -> SharedBudgets {
        let limits = self.inner.cfg.limits;
        let resources = self
            .inner
            .resource_pools
            .lock()
            .entry(id.to_owned())
            .or_insert_with(|| ResourcePool::new(limits.resources_per_plugin))
            .clone();
        SharedBudgets {
            limits,
            resources,
            host_memory: self.inner.host_memory.clone(),
        }
    }

    /// The grants stored for `id` (empty when none).
    fn stored_grants(&self, id: &str) -> Result<Grants, RuntimeError> {
        let row = self.inner.store.plugin(id).map_err(store_err)?;
        match row.and_then(|r| r.grants_json) {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                RuntimeError::Store(format!("stored grants of {id} are unreadable: {e}"))
            }),
            None => Ok(Grants::default()),
        }
    }

    /// Binds the stored grants of `id` to the component with hash `sha256` (an admin action:
    /// install, rollback).
    fn approve_code(&self, id: &str, sha256: &str) -> Result<(), RuntimeError> {
        let mut g = self.stored_grants(id)?;
        g.code_sha256 = Some(sha256.to_owned());
        let json = serde_json::to_string(&g).map_err(|e| RuntimeError::Store(e.to_string()))?;
        self.inner
            .store
            .set_plugin_grants(id, Some(&json))
            .map_err(store_err)
    }

    /// A version whose grants were never bound to a component and that asks for nothing
    /// pending gets them bound to its component now (first load, or grants stored before
    /// binding existed): from then on another component under this id waits for approval.
    fn bind_unbound(&self, mut loaded: LoadedPlugin) -> LoadedPlugin {
        if loaded.pending.is_empty()
            && let Ok(None) = self.approved_signer(&loaded.manifest.id)
            && let Err(e) =
                self.approve_signer(&loaded.manifest.id, loaded.signer.key_id.as_deref())
        {
            tracing::warn!(plugin = %loaded.manifest.id, error = %e, "cannot record the signer");
        }
        if loaded.approval != CodeApproval::Unbound || !loaded.pending.is_empty() {
            return loaded;
        }
        let id = loaded.manifest.id.clone();
        match self.approve_code(&id, loaded.code.sha256()) {
            Ok(()) => {
                loaded.grants.code_sha256 = Some(loaded.code.sha256().to_owned());
                loaded.approval = CodeApproval::Approved;
            }
            Err(e) => {
                tracing::warn!(plugin = %id, error = %e, "cannot bind grants to the component")
            }
        }
        loaded
    }

    /// The same code and schema, with today's grants, config and secrets.
    fn rebuild(
        &self,
        from: &LoadedPlugin,
        dir: PathBuf,
        slot: &Slot,
    ) -> Result<LoadedPlugin, RuntimeError> {
        self.assemble(
            dir,
            from.manifest.clone(),
            from.code.clone(),
            from.schema.clone(),
            slot.logs.clone(),
        )
    }

    fn refresh(&self, slot: &Slot) -> Result<(), RuntimeError> {
        let cur = slot.current.load_full();
        let next = self.rebuild(&cur, cur.dir.clone(), slot)?;
        slot.current.store(Arc::new(next));
        Ok(())
    }

    /// Puts a version into its slot (creating the slot). With `keep_previous`, the replaced
    /// version becomes the rollback target. Returns the replaced version's version string.
    fn put(&self, loaded: LoadedPlugin, keep_previous: bool) -> Option<String> {
        let loaded = self.bind_unbound(loaded);
        let id = loaded.manifest.id.clone();
        if let CodeApproval::Changed { approved_sha256 } = &loaded.approval {
            tracing::warn!(plugin = %id, sha256 = %loaded.code.sha256(), approved = %approved_sha256,
                "component differs from the approved one; waiting for an admin");
            self.activity_as(
                "system",
                "plugin.code_changed",
                &id,
                serde_json::json!({ "sha256": loaded.code.sha256(), "approved_sha256": approved_sha256, "dir": loaded.dir.display().to_string() }),
            );
        }
        let loaded = Arc::new(loaded);
        if let Some(slot) = self.slot(&id) {
            let old = slot.current.swap(loaded);
            tracing::info!(plugin = %id, from = %old.manifest.version,
                to = %slot.current.load().manifest.version, "plugin reloaded");
            let v = old.manifest.version.to_string();
            if keep_previous {
                *slot.previous.lock() = Some(old);
            }
            return Some(v);
        }
        let enabled = self
            .inner
            .store
            .plugin(&id)
            .ok()
            .flatten()
            .map(|r| r.enabled)
            .unwrap_or(true);
        let slot = Arc::new(Slot {
            id: id.clone(),
            logs: loaded.logs.clone(),
            current: ArcSwap::new(loaded),
            previous: Mutex::new(None),
            enabled: AtomicBool::new(enabled),
            health: Mutex::new(Health {
                breaker: Breaker::new(self.inner.cfg.breaker),
                stats: CallStats::default(),
            }),
        });
        tracing::info!(plugin = %id, "plugin loaded");
        self.inner.slots.write().insert(id, slot);
        None
    }

    /// Writes a version's files to `target`, moving what was there to `.previous/<id>`.
    fn write_version(
        &self,
        target: &Path,
        manifest_toml: &str,
        wasm: &[u8],
        manifest: &Manifest,
        schema_file: Option<(String, &str)>,
        signature: Option<&SignatureFiles>,
    ) -> Result<(), RuntimeError> {
        let root = &self.inner.cfg.plugins_dir;
        let staging = root.join(STAGING_DIR).join(&manifest.id);
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        std::fs::write(staging.join(MANIFEST_FILE), manifest_toml)?;
        std::fs::write(staging.join(manifest.wasm_file_name()), wasm)?;
        if let Some((name, text)) = schema_file {
            std::fs::write(staging.join(name), text)?;
        }
        if let Some(sig) = signature {
            std::fs::write(staging.join(crate::signing::SIGNATURE_FILE), &sig.signature)?;
            if !sig.public_key.is_empty() {
                std::fs::write(
                    staging.join(crate::signing::PUBLIC_KEY_FILE),
                    &sig.public_key,
                )?;
            }
        }
        if target.exists() {
            let prev = root.join(PREVIOUS_DIR).join(&manifest.id);
            if prev.exists() {
                std::fs::remove_dir_all(&prev)?;
            }
            std::fs::create_dir_all(root.join(PREVIOUS_DIR))?;
            std::fs::rename(target, &prev)?;
        }
        std::fs::rename(&staging, target)?;
        Ok(())
    }

    // ----- internals: reporting --------------------------------------------------------------

    fn info_of(&self, slot: &Slot) -> Result<PluginInfo, RuntimeError> {
        let cur = slot.current.load_full();
        let (breaker, stats) = {
            let mut h = slot.health.lock();
            (h.breaker.state(Instant::now()), h.stats.snapshot())
        };
        let m = &cur.manifest;
        // One lock for both (a guard in the struct literal would live to its end).
        let (previous_version, previous_sha256) =
            slot.previous.lock().as_ref().map_or((None, None), |p| {
                (
                    Some(p.manifest.version.to_string()),
                    Some(p.sha256().to_owned()),
                )
            });
        Ok(PluginInfo {
            id: slot.id.clone(),
            name: m.name.clone(),
            version: m.version.to_string(),
            sha256: cur.sha256().to_owned(),
            hooks: m.hooks.clone(),
            mirrors_removals: cur.code.mirrors_removals(),
            priority: m.priority,
            enabled: slot.enabled.load(Ordering::SeqCst),
            state: state_of(slot, &cur),
            requested: grants::requested(m),
            about: grants::about(m),
            granted: cur.grants.clone(),
            pending: cur.pending.clone(),
            effective: (*cur.env.caps).clone(),
            last_error: breaker.last_error.clone(),
            breaker: Some(breaker),
            stats,
            previous_version,
            previous_sha256,
            config: cur.config.as_ref().ok().cloned(),
            config_schema: cur.schema.as_ref().map(|s| s.schema().clone()),
            dir: cur.dir.clone(),
            signer: self.named_signer(&cur.signer),
        })
    }

    fn activity(&self, action: &str, target: &str, detail: Value) {
        self.activity_as("admin", action, target, detail);
    }

    fn activity_as(&self, actor: &str, action: &str, target: &str, detail: Value) {
        let entry = NewActivity {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail,
        };
        if let Err(e) = self.inner.store.record_activity(&entry) {
            tracing::error!(action, target, error = %e, "cannot record activity");
        }
    }
}

/// A record the host writes into a plugin's own log (refusals and failures of its calls), so
/// the admin sees them in the plugin's log pane next to what the plugin logged itself.
fn host_log(slot: &Slot, prompt_id: Option<&str>, level: PluginLogLevel, message: String) {
    slot.logs.record(PluginLogRecord {
        ts_ms: crate::capabilities::log::now_ms(),
        plugin_id: slot.id.clone(),
        prompt_id: prompt_id.map(str::to_owned),
        level,
        message: format!("[host] {message}"),
    });
}

fn state_of(slot: &Slot, loaded: &LoadedPlugin) -> PluginState {
    if let Err(e) = &loaded.config {
        return PluginState::Broken(format!("stored config is invalid for this version: {e}"));
    }
    if !loaded.pending.is_empty() {
        return PluginState::NeedsApproval;
    }
    if slot.health.lock().breaker.is_tripped() {
        return PluginState::Tripped;
    }
    if !slot.enabled.load(Ordering::SeqCst) {
        return PluginState::Disabled;
    }
    PluginState::Enabled
}

/// Top-level keys whose value changed, as `{key: {"from": .., "to": ..}}`; values of keys
/// that look like secrets are masked.
fn config_diff(before: &Value, after: &Value) -> Value {
    let empty = serde_json::Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changed = serde_json::Map::new();
    for k in keys {
        let (from, to) = (b.get(k), a.get(k));
        if from == to {
            continue;
        }
        let shown = |v: Option<&Value>| match v {
            None => Value::Null,
            Some(_) if looks_secret(k) => Value::String("(hidden)".into()),
            Some(v) => v.clone(),
        };
        changed.insert(
            k.clone(),
            serde_json::json!({ "from": shown(from), "to": shown(to) }),
        );
    }
    serde_json::json!({ "changed": changed })
}

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "api_key",
        "apikey",
        "credential",
    ]
    .iter()
    .any(|w| k.contains(w))
}

fn mismatch(output: HookOutput) -> CallErrorKind {
    CallErrorKind::InvalidOutput(format!("answer of the wrong hook: {output:?}"))
}

fn validate_config(schema: Option<&ConfigSchema>, config: &Value) -> Result<Value, RuntimeError> {
    match schema {
        Some(s) => s.apply(config),
        None => crate::manifest::apply_config_without_schema(config),
    }
}

/// Reads a plugin directory: manifest, component bytes, schema.
fn read_sources(dir: &Path) -> Result<Sources, RuntimeError> {
    let manifest = Manifest::load(dir)?;
    let wasm_path = dir.join(manifest.wasm_file_name());
    let wasm = std::fs::read(&wasm_path).map_err(|e| {
        RuntimeError::Manifest(format!(
            "cannot read component {}: {e}",
            wasm_path.display()
        ))
    })?;
    let schema = manifest.load_config_schema(dir)?;
    Ok(Sources {
        manifest,
        wasm,
        schema,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
