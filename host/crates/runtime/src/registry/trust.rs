//! The trust policy applied to plugin versions: the admin's policy (from the store), the check
//! of an upload or a drop-in directory against it, and who signed a loaded version.
//! Refusals are [`RuntimeError::Trust`] with the reason, and an activity entry.

use std::path::Path;

use serde_json::json;

use super::PluginRegistry;
use crate::RuntimeError;
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::signing::{self, SignatureFiles, SignedFile, Signer, TrustPolicy, TrustedKey};

/// A version's files as the policy sees them.
pub(super) struct VersionFiles<'a> {
    pub manifest: &'a Manifest,
    pub manifest_bytes: &'a [u8],
    /// Hex sha256 of the component.
    pub wasm_sha256: String,
    /// `(file name, bytes)` of the config schema, when the manifest names one.
    pub schema: Option<(String, Vec<u8>)>,
    pub signature: Option<SignatureFiles>,
}

impl VersionFiles<'_> {
    fn message(&self) -> String {
        let wasm_name = self.manifest.wasm_file_name();
        let mut files = vec![
            SignedFile::from_bytes(MANIFEST_FILE, self.manifest_bytes),
            SignedFile {
                name: &wasm_name,
                sha256_hex: self.wasm_sha256.clone(),
            },
        ];
        if let Some((name, bytes)) = &self.schema {
            files.push(SignedFile::from_bytes(name, bytes));
        }
        signing::message(&self.manifest.id, &files)
    }
}

/// The canonical message of the version in `dir` (for signing tools).
pub fn message_of_dir(dir: &Path) -> Result<(Manifest, String), RuntimeError> {
    let manifest = Manifest::load(dir)?;
    let manifest_bytes = std::fs::read(dir.join(MANIFEST_FILE))?;
    let wasm = std::fs::read(dir.join(manifest.wasm_file_name()))?;
    let schema = schema_of_dir(dir, &manifest)?;
    let files = VersionFiles {
        manifest: &manifest,
        manifest_bytes: &manifest_bytes,
        wasm_sha256: super::sha256_hex(&wasm),
        schema,
        signature: None,
    };
    let message = files.message();
    Ok((manifest, message))
}

fn schema_of_dir(
    dir: &Path,
    manifest: &Manifest,
) -> Result<Option<(String, Vec<u8>)>, RuntimeError> {
    match &manifest.config.schema {
        Some(name) => Ok(Some((name.clone(), std::fs::read(dir.join(name))?))),
        None => Ok(None),
    }
}

impl PluginRegistry {
    /// The admin's trust policy (the default, `any` without keys, when none is stored).
    pub fn trust_policy(&self) -> Result<TrustPolicy, RuntimeError> {
        let store = &self.inner.store;
        let mode = match store.trust_mode().map_err(super::store_err)? {
            Some(m) => m.parse().map_err(RuntimeError::Config)?,
            None => Default::default(),
        };
        let keys = store
            .trust_keys()
            .map_err(super::store_err)?
            .into_iter()
            .map(|k| TrustedKey {
                key_id: k.key_id,
                name: k.name,
                public_key: k.public_key,
            })
            .collect();
        Ok(TrustPolicy { mode, keys })
    }

    /// Checks a version against the policy; a refusal is recorded (`actor`, activity
    /// `plugin.trust_refused`) when `record` is set.
    pub(super) fn trust_check(
        &self,
        files: &VersionFiles<'_>,
        actor: &str,
        record: bool,
    ) -> Result<Signer, RuntimeError> {
        let policy = self.trust_policy()?;
        signing::check(&policy, &files.message(), files.signature.as_ref()).map_err(|e| {
            let id = &files.manifest.id;
            let reason = format!("refused by the trust policy (mode {}): {e}", policy.mode);
            if record {
                tracing::warn!(plugin = %id, %reason, "plugin refused");
                self.activity_as(
                    actor,
                    "plugin.trust_refused",
                    id,
                    json!({ "version": files.manifest.version.to_string(), "reason": reason }),
                );
            }
            RuntimeError::Trust(reason)
        })
    }

    /// Checks the version in a drop-in directory (component hash already known).
    pub(super) fn trust_check_dir(
        &self,
        dir: &Path,
        manifest: &Manifest,
        wasm_sha256: &str,
        record: bool,
    ) -> Result<Signer, RuntimeError> {
        let manifest_bytes = std::fs::read(dir.join(MANIFEST_FILE))?;
        let signature = signing::read_files(dir)
            .map_err(|e| RuntimeError::Trust(format!("refused by the trust policy: {e}")))?;
        let files = VersionFiles {
            manifest,
            manifest_bytes: &manifest_bytes,
            wasm_sha256: wasm_sha256.to_owned(),
            schema: schema_of_dir(dir, manifest)?,
            signature,
        };
        self.trust_check(&files, "drop-in", record)
    }

    /// Who signed the version in `dir` (unsigned when there is no valid signature). Used for
    /// what the plugin list shows; the policy was applied when the version came in.
    pub(super) fn signer_of_dir(&self, dir: &Path, manifest: &Manifest, sha256: &str) -> Signer {
        let Ok(Some(signature)) = signing::read_files(dir) else {
            return Signer::default();
        };
        let Ok(manifest_bytes) = std::fs::read(dir.join(MANIFEST_FILE)) else {
            return Signer::default();
        };
        let Ok(schema) = schema_of_dir(dir, manifest) else {
            return Signer::default();
        };
        let files = VersionFiles {
            manifest,
            manifest_bytes: &manifest_bytes,
            wasm_sha256: sha256.to_owned(),
            schema,
            signature: Some(signature),
        };
        let policy = TrustPolicy {
            mode: signing::TrustMode::Any,
            keys: self.trust_policy().map(|p| p.keys).unwrap_or_default(),
        };
        signing::check(&policy, &files.message(), files.signature.as_ref()).unwrap_or_default()
    }
}

impl PluginRegistry {
    /// `signer` with the name the admin gives its key today.
    pub(super) fn named_signer(&self, signer: &Signer) -> Signer {
        let mut out = signer.clone();
        if let Some(id) = &signer.key_id {
            out.key_name = self
                .inner
                .store
                .trust_keys()
                .ok()
                .and_then(|keys| keys.into_iter().find(|k| &k.key_id == id))
                .map(|k| k.name);
        }
        out
    }
}

impl PluginRegistry {
    /// The signer approved for `id` (see [`comfyhost_store::Store::approved_signer`]).
    pub(super) fn approved_signer(&self, id: &str) -> Result<Option<Option<String>>, RuntimeError> {
        self.inner
            .store
            .approved_signer(id)
            .map_err(super::store_err)
    }

    pub(super) fn approve_signer(
        &self,
        id: &str,
        key_id: Option<&str>,
    ) -> Result<(), RuntimeError> {
        self.inner
            .store
            .set_approved_signer(id, key_id)
            .map_err(super::store_err)
    }

    /// A pending approval when `signer` is not the key approved for `id` (a version signed by
    /// a key was approved, and this one is unsigned or signed by another key).
    pub(super) fn signer_change(
        &self,
        id: &str,
        signer: &Signer,
    ) -> Result<Option<crate::grants::RequestedCapability>, RuntimeError> {
        Ok(match self.approved_signer(id)?.flatten() {
            Some(approved) if signer.key_id.as_deref() != Some(approved.as_str()) => {
                Some(crate::grants::RequestedCapability::Signer {
                    key_id: signer.key_id.clone(),
                    approved_key_id: approved,
                })
            }
            _ => None,
        })
    }
}
