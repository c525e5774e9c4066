//! What `list`/`get` report about a plugin.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::breaker::BreakerState;
use crate::grants::{CapabilityAbout, EffectiveCaps, Grants, RequestedCapability};
use crate::manifest::HookKind;
use crate::signing::Signer;

use super::stats::StatsSnapshot;

/// Whether a plugin runs, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "error")]
pub enum PluginState {
    /// Runs in its hook's chain.
    Enabled,
    /// An admin disabled it.
    Disabled,
    /// It declares capabilities no admin granted yet (new install or an update asking for more).
    NeedsApproval,
    /// The crash-loop breaker tripped; an admin must re-enable it.
    Tripped,
    /// It cannot run: bad manifest, compile error, or stored config invalid for this version.
    Broken(String),
}

/// One plugin as the dashboard sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub id: String,
    pub name: String,
    /// Empty for a plugin whose manifest could not be read.
    pub version: String,
    pub sha256: String,
    pub hooks: Vec<HookKind>,
    /// An output-sync plugin that also exports `output-mirror` (deletes destination copies of
    /// outputs removed at the source).
    pub mirrors_removals: bool,
    pub priority: i32,
    /// The admin's enabled flag (a plugin may be enabled yet not run, see `state`).
    pub enabled: bool,
    pub state: PluginState,
    pub requested: Vec<RequestedCapability>,
    /// Per requested capability (same order): optional or not, and what it is for.
    pub about: Vec<CapabilityAbout>,
    pub granted: Grants,
    pub pending: Vec<RequestedCapability>,
    pub effective: EffectiveCaps,
    pub breaker: Option<BreakerState>,
    pub stats: StatsSnapshot,
    pub last_error: Option<String>,
    pub previous_version: Option<String>,
    /// The rollback target's component (tells a same-version replacement apart).
    #[serde(default)]
    pub previous_sha256: Option<String>,
    pub config: Option<serde_json::Value>,
    pub config_schema: Option<serde_json::Value>,
    pub dir: PathBuf,
    /// Who signed this version (key id `None`: unsigned).
    #[serde(default)]
    pub signer: Signer,
}

impl PluginInfo {
    pub(super) fn broken(id: String, dir: PathBuf, error: String) -> Self {
        Self {
            id,
            name: String::new(),
            version: String::new(),
            sha256: String::new(),
            hooks: Vec::new(),
            mirrors_removals: false,
            priority: 0,
            enabled: false,
            state: PluginState::Broken(error.clone()),
            requested: Vec::new(),
            about: Vec::new(),
            granted: Grants::default(),
            pending: Vec::new(),
            effective: EffectiveCaps::default(),
            breaker: None,
            stats: StatsSnapshot::default(),
            last_error: Some(error),
            previous_version: None,
            previous_sha256: None,
            config: None,
            config_schema: None,
            dir,
            signer: Signer::default(),
        }
    }
}
