//! Shared state handed to every HTTP handler.

use std::sync::{Arc, RwLock};

use comfyhost_gpu::GpuReport;
use comfyhost_runtime::registry::PluginRegistry;
use comfyhost_supervisor::Supervisor;

use crate::auth::AdminAuth;
use crate::jobs::JobTracker;
use crate::remote::RemoteRunner;
use crate::users::Identity;

/// Everything the host API needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub supervisor: Arc<Supervisor>,
    pub plugins: PluginRegistry,
    pub jobs: JobTracker,
    pub auth: AdminAuth,
    /// Workshop users and the admin, by token.
    pub identity: Identity,
    /// Remote backends and the jobs running on them.
    pub remote: RemoteRunner,
    /// GPU inventory and attention decision made at start (`None` in attach mode or with
    /// `--no-gpu-detect`).
    pub gpu: Arc<RwLock<Option<GpuReport>>>,
}
