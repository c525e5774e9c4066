//! Shadow plugins: a queue-router or prompt-transform plugin (or a new version of an installed
//! one) installed beside the active chain. It is called on live submissions after the active
//! chain answered, its answer is only reported (see the host's `shadow` module, which records
//! it), and it never changes, delays or fails a prompt.
//!
//! On disk a shadow lives in `<plugins_dir>/.shadow/<id>/` (same files as an installed
//! version, signature included); discovery never loads it as an active plugin. A shadow is
//! checked against the trust policy like any install, runs with the same engine and limits
//! (deadline, memory, fuel) as the active plugins and with NO capabilities granted (it is
//! judged on its answers only). It has no breaker and no stats of its own: its faults are
//! recorded beside its decisions. "Promote" installs its files through the normal install
//! (trust check, capability approval, rollback target); "discard" deletes it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument;

use super::{
    LoadedPlugin, LogRing, PluginInfo, PluginRegistry, Sources, read_sources, sha256_hex,
    trust::VersionFiles,
};
use crate::RuntimeError;
use crate::manifest::{ConfigSchema, HookKind, MANIFEST_FILE, Manifest};
use crate::signing::{self, SignatureFiles, Signer};
use crate::types::{BackendStatus, Route, Submission, TransformResult};
use crate::{CallErrorKind, registry::HookInput, registry::HookOutput};

/// Directory of shadow plugins under the plugins directory.
pub const SHADOW_DIR: &str = ".shadow";

/// A shadow plugin as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowInfo {
    pub id: String,
    pub name: String,
    pub version: String,
    pub hook: HookKind,
    pub sha256: String,
    pub signer: Signer,
    /// The version of the active plugin with the same id, if one is installed.
    pub active_version: Option<String>,
}

/// What one shadow plugin answered on one submission.
#[derive(Debug, Clone)]
pub struct ShadowCall<T> {
    pub plugin_id: String,
    pub version: String,
    pub answer: Result<T, CallErrorKind>,
    pub elapsed: Duration,
}

impl PluginRegistry {
    /// The store the registry persists to (the host records shadow decisions in it).
    pub fn store(&self) -> &comfyhost_store::Store {
        &self.inner.store
    }

    /// Whether a shadow plugin of `hook` is installed.
    pub fn has_shadow(&self, hook: HookKind) -> bool {
        self.inner
            .shadows
            .read()
            .values()
            .any(|l| l.code.hook() == hook)
    }

    /// Installed shadow plugins, by id.
    pub fn shadows(&self) -> Vec<ShadowInfo> {
        self.inner
            .shadows
            .read()
            .values()
            .map(|l| ShadowInfo {
                id: l.manifest.id.clone(),
                name: l.manifest.name.clone(),
                version: l.manifest.version.to_string(),
                hook: l.code.hook(),
                sha256: l.sha256().to_owned(),
                signer: self.named_signer(&l.signer),
                active_version: self
                    .slot(&l.manifest.id)
                    .map(|s| s.current.load().manifest.version.to_string()),
            })
            .collect()
    }

    /// Installs a version in shadow (replacing an earlier shadow of the same id). Checked
    /// against the trust policy like any install; only queue-router and prompt-transform
    /// plugins can run in shadow.
    pub fn install_shadow(
        &self,
        manifest_toml: &str,
        wasm: &[u8],
        schema: Option<&str>,
        signature: Option<SignatureFiles>,
    ) -> Result<ShadowInfo, RuntimeError> {
        let _admin = self.inner.admin.lock();
        let manifest = Manifest::from_toml_str(manifest_toml)?;
        let hook = manifest.hook();
        if !matches!(hook, HookKind::QueueRouter | HookKind::PromptTransform) {
            return Err(RuntimeError::Manifest(format!(
                "shadow mode is for queue-router and prompt-transform plugins; {} is a {hook} plugin",
                manifest.id
            )));
        }
        let id = manifest.id.clone();
        let schema_file = match (&manifest.config.schema, schema) {
            (Some(file), Some(text)) => Some((file.clone(), text)),
            (Some(file), None) => {
                return Err(RuntimeError::Manifest(format!(
                    "config.schema names {file:?} but no schema was supplied"
                )));
            }
            _ => None,
        };
        let parsed_schema = match &schema_file {
            Some((_, text)) => Some(ConfigSchema::from_json_str(text)?),
            None => None,
        };
        self.trust_check(
            &VersionFiles {
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
        let sources = Sources {
            manifest,
            wasm: wasm.to_vec(),
            schema: parsed_schema,
        };
        let code = self.compile(&sources)?;
        let dir = self.shadow_dir(&id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(MANIFEST_FILE), manifest_toml)?;
        std::fs::write(dir.join(sources.manifest.wasm_file_name()), wasm)?;
        if let Some((name, text)) = &schema_file {
            std::fs::write(dir.join(name), text)?;
        }
        if let Some(sig) = &signature {
            std::fs::write(dir.join(signing::SIGNATURE_FILE), &sig.signature)?;
            if !sig.public_key.is_empty() {
                std::fs::write(dir.join(signing::PUBLIC_KEY_FILE), &sig.public_key)?;
            }
        }
        let loaded = self.shadow_version(dir, sources, code)?;
        let version = loaded.manifest.version.to_string();
        self.inner
            .shadows
            .write()
            .insert(id.clone(), Arc::new(loaded));
        tracing::info!(plugin = %id, %version, "installed in shadow");
        self.activity(
            "plugin.shadow_installed",
            &id,
            json!({ "version": version }),
        );
        self.shadows()
            .into_iter()
            .find(|s| s.id == id)
            .ok_or(RuntimeError::NotFound(id))
    }

    /// Makes the shadow the active version through the normal install (trust policy,
    /// capability approval, the replaced version kept for rollback), then removes the shadow.
    pub fn promote_shadow(&self, id: &str) -> Result<PluginInfo, RuntimeError> {
        let dir = self.require_shadow(id)?;
        let manifest_toml = std::fs::read_to_string(dir.join(MANIFEST_FILE))?;
        let manifest = Manifest::from_toml_str(&manifest_toml)?;
        let wasm = std::fs::read(dir.join(manifest.wasm_file_name()))?;
        let schema = match &manifest.config.schema {
            Some(name) => Some(std::fs::read_to_string(dir.join(name))?),
            None => None,
        };
        let signature =
            signing::read_files(&dir).map_err(|e| RuntimeError::Trust(e.to_string()))?;
        let info = self.install_signed(&manifest_toml, &wasm, schema.as_deref(), signature)?;
        self.remove_shadow(id, &dir)?;
        self.activity(
            "plugin.shadow_promoted",
            id,
            json!({ "version": info.version }),
        );
        Ok(info)
    }

    /// Deletes the shadow.
    pub fn discard_shadow(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.require_shadow(id)?;
        self.remove_shadow(id, &dir)?;
        self.activity("plugin.shadow_discarded", id, serde_json::Value::Null);
        Ok(())
    }

    /// Every queue-router shadow's answer on `submission` (the one the active routers saw).
    pub async fn shadow_route(
        &self,
        submission: &Submission,
        backends: &[BackendStatus],
    ) -> Vec<ShadowCall<Route>> {
        let mut out = Vec::new();
        for loaded in self.shadow_chain(HookKind::QueueRouter) {
            let input = HookInput::Route {
                submission,
                backends,
            };
            let (answer, elapsed) = shadow_invoke(&loaded, &submission.prompt_id, input).await;
            let answer = answer.and_then(|o| match o {
                HookOutput::Route(r) => Ok(r),
                other => Err(super::mismatch(other)),
            });
            out.push(ShadowCall {
                plugin_id: loaded.manifest.id.clone(),
                version: loaded.manifest.version.to_string(),
                answer,
                elapsed,
            });
        }
        out
    }

    /// Every prompt-transform shadow's answer on `submission` (as the active chain got it,
    /// before any rewrite).
    pub async fn shadow_transform(
        &self,
        submission: &Submission,
    ) -> Vec<ShadowCall<TransformResult>> {
        let mut out = Vec::new();
        for loaded in self.shadow_chain(HookKind::PromptTransform) {
            let input = HookInput::Transform { submission };
            let (answer, elapsed) = shadow_invoke(&loaded, &submission.prompt_id, input).await;
            let answer = answer.and_then(|o| match o {
                HookOutput::Transform(t) => Ok(t),
                other => Err(super::mismatch(other)),
            });
            out.push(ShadowCall {
                plugin_id: loaded.manifest.id.clone(),
                version: loaded.manifest.version.to_string(),
                answer,
                elapsed,
            });
        }
        out
    }

    /// Loads shadows found on disk that are not loaded yet (at start-up). A shadow that does
    /// not load is skipped with a warning.
    pub(super) fn load_shadows(&self) {
        let root = self.inner.cfg.plugins_dir.join(SHADOW_DIR);
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        for dir in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if self.inner.shadows.read().contains_key(&name) {
                continue;
            }
            let loaded = read_sources(&dir).and_then(|sources| {
                let code = self.compile(&sources)?;
                self.shadow_version(dir.clone(), sources, code)
            });
            match loaded {
                Ok(l) => {
                    self.inner
                        .shadows
                        .write()
                        .insert(l.manifest.id.clone(), Arc::new(l));
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "shadow plugin not loaded")
                }
            }
        }
    }

    fn shadow_version(
        &self,
        dir: PathBuf,
        sources: Sources,
        code: Arc<dyn super::PluginCode>,
    ) -> Result<LoadedPlugin, RuntimeError> {
        let mut loaded = self.assemble(
            dir,
            sources.manifest,
            code,
            sources.schema.map(Arc::new),
            Arc::new(LogRing::default()),
        )?;
        // No capabilities in shadow, whatever the active version was granted.
        loaded.env.caps = Arc::default();
        Ok(loaded)
    }

    fn shadow_chain(&self, hook: HookKind) -> Vec<Arc<LoadedPlugin>> {
        self.inner
            .shadows
            .read()
            .values()
            .filter(|l| l.code.hook() == hook && l.config.is_ok())
            .cloned()
            .collect()
    }

    fn shadow_dir(&self, id: &str) -> PathBuf {
        self.inner.cfg.plugins_dir.join(SHADOW_DIR).join(id)
    }

    fn require_shadow(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        if !self.inner.shadows.read().contains_key(id) {
            return Err(RuntimeError::NotFound(format!("no shadow plugin {id}")));
        }
        Ok(self.shadow_dir(id))
    }

    fn remove_shadow(&self, id: &str, dir: &std::path::Path) -> Result<(), RuntimeError> {
        self.inner.shadows.write().remove(id);
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(())
    }
}

async fn shadow_invoke(
    loaded: &LoadedPlugin,
    prompt_id: &str,
    input: HookInput<'_>,
) -> (Result<HookOutput, CallErrorKind>, Duration) {
    let mut env = loaded.env.clone();
    env.prompt_id = Some(prompt_id.to_owned());
    let span = tracing::info_span!("shadow_call", plugin = %loaded.manifest.id,
        version = %loaded.manifest.version, prompt_id = %prompt_id);
    let started = Instant::now();
    let answer = loaded.code.call(&env, input).instrument(span).await;
    (answer, started.elapsed())
}
