//! Models a workflow needs: installed-model inventory (ComfyUI's model folders and
//! `extra_model_paths.yaml`), UI-format extraction, ComfyUI `value_not_in_list` rejections, the
//! preset-resolver plugin chain, and preset installs ([`downloads`]).

pub mod downloads;
pub mod extra_paths;
pub mod inventory;
pub mod loaders;
pub mod rejection;
pub mod resolve;
pub mod ui_format;

use std::path::PathBuf;

use comfyhost_runtime::registry::PluginRegistry;
use comfyhost_runtime::types::InstalledFolder;
use serde_json::Value;

use crate::config::{ComfyMode, RunArgs};
use downloads::{DownloadManager, DownloadOrigins};
use inventory::ModelRoots;
pub use resolve::{ModelResolution, ResolveError};

/// Environment variable holding the Hugging Face token sent with huggingface.co downloads.
pub const HF_TOKEN_ENV: &str = "COMFYHOST_HF_TOKEN";

/// The models service shared by the API (and, later, the `/prompt` path).
pub struct ModelsService {
    roots: ModelRoots,
    plugins: PluginRegistry,
    downloads: DownloadManager,
}

/// ComfyUI's `models/` directory for this configuration: `<comfyui>/models` (managed), the
/// simulator's `--sim-models-dir` or `<data>/comfyui/models`, `<dir>/models` when
/// `--base-directory <dir>` is passed through; `None` in attach mode.
pub fn models_root(args: &RunArgs) -> Option<PathBuf> {
    let extra = args.comfyui_extra_args();
    let passed: Vec<&str> = extra.iter().map(String::as_str).collect();
    let value_of = |flag: &str| {
        passed
            .windows(2)
            .find(|w| w[0] == flag)
            .map(|w| PathBuf::from(w[1]))
            .or_else(|| {
                passed
                    .iter()
                    .find_map(|a| a.strip_prefix(&format!("{flag}=")).map(PathBuf::from))
            })
    };
    match args.comfy_mode() {
        ComfyMode::Attach { .. } => None,
        ComfyMode::Managed { comfyui_dir, .. } => Some(
            value_of("--base-directory")
                .map(|b| b.join("models"))
                .unwrap_or_else(|| comfyui_dir.join("models")),
        ),
        ComfyMode::Simulator => Some(
            value_of("--sim-models-dir")
                .unwrap_or_else(|| args.data_dir.join("comfyui").join("models")),
        ),
    }
}

impl ModelsService {
    /// Build the service: model roots from the configuration, the download manager with its
    /// state in `<data>/downloads` (resuming unfinished installs), the HF token from
    /// [`HF_TOKEN_ENV`]. Must run inside the tokio runtime.
    pub fn new(args: &RunArgs, plugins: PluginRegistry) -> anyhow::Result<Self> {
        let mut extra = Vec::new();
        if let Some(path) = &args.extra_model_paths {
            match extra_paths::load(path) {
                Ok(e) => extra = e,
                Err(e) => {
                    tracing::warn!(error = %e, "extra_model_paths ignored for the model inventory")
                }
            }
        }
        let roots = ModelRoots {
            root: models_root(args),
            extra,
        };
        let hf_token = std::env::var(HF_TOKEN_ENV).ok();
        let downloads =
            DownloadManager::open(args.data_dir.join("downloads"), roots.clone(), hf_token)?;
        downloads.allow_only(
            DownloadOrigins::parse(&args.download_origins)
                .map_err(|e| anyhow::anyhow!("--download-origins: {e}"))?,
        );
        Ok(ModelsService {
            roots,
            plugins,
            downloads,
        })
    }

    /// Installed models by folder (blocking directory walk on a blocking thread).
    pub async fn installed(&self) -> Vec<InstalledFolder> {
        let roots = self.roots.clone();
        tokio::task::spawn_blocking(move || roots.list())
            .await
            .unwrap_or_default()
    }

    /// What `workflow` (API or UI format) needs and which presets install what is missing.
    /// `comfyui_error` is ComfyUI's 400 `/prompt` body for this workflow, if any: its
    /// `value_not_in_list` model values count as missing.
    pub async fn resolve(
        &self,
        workflow: &Value,
        comfyui_error: Option<&Value>,
    ) -> Result<ModelResolution, ResolveError> {
        let installed = self.installed().await;
        resolve::resolve(&self.plugins, installed, workflow, comfyui_error).await
    }

    /// The install manager.
    pub fn downloads(&self) -> &DownloadManager {
        &self.downloads
    }

    /// Where models live.
    pub fn roots(&self) -> &ModelRoots {
        &self.roots
    }
}
