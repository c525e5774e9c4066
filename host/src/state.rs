//! Shared state handed to every HTTP handler.

use std::sync::{Arc, RwLock};

use comfyhost_gpu::GpuReport;
use comfyhost_runtime::registry::PluginRegistry;
use comfyhost_supervisor::Supervisor;

use crate::auth::AdminAuth;
use crate::jobs::JobTracker;
use crate::models::ModelsService;
use crate::outputs::OutputSync;

/// Everything the host API needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub supervisor: Arc<Supervisor>,
    pub plugins: PluginRegistry,
    pub jobs: JobTracker,
    pub auth: AdminAuth,
    /// GPU inventory and attention decision made at start (`None` in attach mode or with
    /// `--no-gpu-detect`).
    pub gpu: Arc<RwLock<Option<GpuReport>>>,
    /// Output sync queue and health.
    pub outputs: OutputSync,
    /// Model inventory, preset resolution and preset downloads.
    pub models: Arc<ModelsService>,
}
