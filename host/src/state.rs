//! Shared state handed to every HTTP handler.

use std::sync::{Arc, RwLock};

use comfyhost_gpu::GpuReport;
use comfyhost_runtime::registry::PluginRegistry;
use comfyhost_supervisor::Supervisor;

use crate::auth::AdminAuth;
use crate::jobs::JobTracker;
use crate::models::ModelsService;
use crate::outputs::OutputSync;
use crate::remote::RemoteRunner;
use crate::users::Identity;

/// Everything the host API needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub supervisor: Arc<Supervisor>,
    pub plugins: PluginRegistry,
    pub jobs: JobTracker,
    pub auth: AdminAuth,
    pub store: comfyhost_store::Store,
    /// Workshop users and the admin, by token.
    pub identity: Identity,
    /// Remote backends and the jobs running on them.
    pub remote: RemoteRunner,
    /// GPU inventory and attention decision made at start (`None` in attach mode or with
    /// `--no-gpu-detect`).
    pub gpu: Arc<RwLock<Option<GpuReport>>>,
    /// Output sync queue and health.
    pub outputs: OutputSync,
    /// Model inventory, preset resolution and preset downloads.
    pub models: Arc<ModelsService>,
    /// Machine readings, the low-disk guard and the memory guard.
    pub machine: crate::machine::MachineMonitor,
}

impl AppState {
    /// Who made a request, for the activity log.
    pub fn actor(&self, headers: &axum::http::HeaderMap) -> String {
        self.identity
            .identify(headers)
            .map_or_else(|| "anonymous".to_string(), |u| u.id)
    }

    /// Records an admin-visible action in the activity log.
    pub fn activity(&self, actor: &str, action: &str, target: &str, detail: serde_json::Value) {
        let entry = comfyhost_store::NewActivity {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail,
        };
        if let Err(e) = self.store.record_activity(&entry) {
            tracing::error!(action, error = %e, "cannot record activity");
        }
    }
}
