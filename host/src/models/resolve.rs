//! Workflow (API or UI format, optionally with ComfyUI's rejection) -> what it needs, what is
//! missing, which presets install it, and a one-line summary for the dashboard.

use comfyhost_runtime::registry::PluginRegistry;
use comfyhost_runtime::types::{InstalledFolder, ModelRef, PresetPlan};
use serde::Serialize;
use serde_json::Value;

use super::rejection::rejected_models;
use super::ui_format::{self, ModelHint, WorkflowFormat, WorkflowShapeError};

/// A preset with its download size.
#[derive(Debug, Clone, Serialize)]
pub struct PresetOffer {
    #[serde(flatten)]
    pub plan: PresetPlan,
    /// Sum of the files' sizes (what the install downloads).
    pub total_bytes: u64,
}

/// A missing model the UI workflow itself says where to download (`models[]`), when no preset
/// provides it. Install it as a preset with `size: 0` (taken from the server).
#[derive(Debug, Clone, Serialize)]
pub struct DeclaredDownload {
    #[serde(rename = "ref")]
    pub model: ModelRef,
    pub hint: ModelHint,
}

/// The answer of `POST /comfyhost/api/models/resolve`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelResolution {
    pub format: WorkflowFormat,
    /// Id of the preset-resolver plugin that answered.
    pub resolver: String,
    pub required: Vec<ModelRef>,
    pub missing: Vec<ModelRef>,
    pub presets: Vec<PresetOffer>,
    /// Missing and provided by no preset (and not declared by the workflow).
    pub unmapped: Vec<ModelRef>,
    pub declared: Vec<DeclaredDownload>,
    /// Models ComfyUI rejected (`value_not_in_list`), when an error body was given.
    pub rejected: Vec<ModelRef>,
    /// "This workflow needs X, Y; install preset Z (4.8 GB)".
    pub summary: String,
}

/// Why resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Shape(#[from] WorkflowShapeError),
    #[error(
        "no preset-resolver plugin answered: none is enabled, or each failed (see GET /comfyhost/api/plugins/<id>/logs)"
    )]
    NoResolver,
    #[error("preset-resolver failed: {0}")]
    Plugin(String),
}

fn norm(s: &str) -> String {
    s.replace('\\', "/")
}

fn same(a: &ModelRef, b: &ModelRef) -> bool {
    a.folder == b.folder && norm(&a.name) == norm(&b.name)
}

/// Human size: `4.8 GB`, `335 MB`, `12 KB`, `512 B` (decimal units, like download pages).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, f64); 4] = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)];
    for (unit, scale) in UNITS {
        let v = n as f64 / scale;
        if v >= 1.0 {
            return if v >= 100.0 {
                format!("{v:.0} {unit}")
            } else {
                format!("{v:.1} {unit}")
            };
        }
    }
    format!("{n} B")
}

/// Run the resolver chain on `workflow` against `installed`; `comfyui_error` is ComfyUI's 400
/// body for this workflow, whose rejected models count as missing whatever the listing says.
pub async fn resolve(
    plugins: &PluginRegistry,
    mut installed: Vec<InstalledFolder>,
    workflow: &Value,
    comfyui_error: Option<&Value>,
) -> Result<ModelResolution, ResolveError> {
    let format = ui_format::detect(workflow)?;
    let (api, hints) = match format {
        WorkflowFormat::Api => (workflow.clone(), Vec::new()),
        WorkflowFormat::Ui => ui_format::to_api(workflow)?,
    };
    let rejected = comfyui_error
        .map(|body| rejected_models(&api, body))
        .unwrap_or_default();
    for r in &rejected {
        if let Some(f) = installed.iter_mut().find(|f| f.folder == r.folder) {
            f.files.retain(|n| norm(n) != norm(&r.name));
        }
    }
    let (resolver, mut res) = plugins
        .resolve(&api, &installed)
        .await
        .map_err(|e| ResolveError::Plugin(e.to_string()))?
        .ok_or(ResolveError::NoResolver)?;
    // A rejection the plugin's loader table does not know still counts as missing.
    for r in &rejected {
        if !res.missing.iter().any(|m| same(m, r)) {
            res.missing.push(r.clone());
            res.unmapped.push(r.clone());
        }
    }
    let mut declared = Vec::new();
    res.unmapped.retain(|m| {
        let hint = hints
            .iter()
            .find(|h| h.directory == m.folder && norm(&h.name) == norm(&m.name));
        match hint {
            Some(h) => {
                declared.push(DeclaredDownload {
                    model: m.clone(),
                    hint: h.clone(),
                });
                false
            }
            None => true,
        }
    });
    let presets: Vec<PresetOffer> = res
        .presets
        .into_iter()
        .map(|plan| PresetOffer {
            total_bytes: plan.files.iter().map(|f| f.size).sum(),
            plan,
        })
        .collect();
    let summary = summary(
        &res.required,
        &res.missing,
        &presets,
        &declared,
        &res.unmapped,
    );
    Ok(ModelResolution {
        format,
        resolver,
        required: res.required,
        missing: res.missing,
        presets,
        unmapped: res.unmapped,
        declared,
        rejected,
        summary,
    })
}

fn names(refs: &[ModelRef]) -> String {
    let mut v: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
    v.dedup();
    v.join(", ")
}

fn summary(
    required: &[ModelRef],
    missing: &[ModelRef],
    presets: &[PresetOffer],
    declared: &[DeclaredDownload],
    unmapped: &[ModelRef],
) -> String {
    if required.is_empty() {
        return "This workflow needs no model files.".into();
    }
    if missing.is_empty() {
        return format!(
            "This workflow needs {}; all are installed.",
            names(required)
        );
    }
    let mut parts = vec![format!("This workflow needs {}", names(missing))];
    for p in presets {
        parts.push(format!(
            "install preset {} ({})",
            p.plan.name,
            human_bytes(p.total_bytes)
        ));
    }
    if !declared.is_empty() {
        let d: Vec<&str> = declared.iter().map(|d| d.model.name.as_str()).collect();
        parts.push(format!(
            "download {} from the URLs the workflow declares",
            d.join(", ")
        ));
    }
    if !unmapped.is_empty() {
        parts.push(format!("no preset provides {}", names(unmapped)));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_download_pages() {
        assert_eq!(human_bytes(4_800_000_000), "4.8 GB");
        assert_eq!(human_bytes(334_641_164), "335 MB");
        assert_eq!(human_bytes(512), "512 B");
    }
}
