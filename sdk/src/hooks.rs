//! The five hook interfaces. Each plugin implements one trait and exports it with the matching
//! macro, e.g. `impl QueueRouter for MyRouter { .. }` + `comfyhost_sdk::export_queue_router!(MyRouter);`.
//! An output-sync plugin may also implement [`OutputMirror`] (`export_output_sync_mirror!`) to
//! take back destination copies of outputs deleted at the source.

pub use output_mirror::Guest as OutputMirror;
pub use output_sync::Guest as OutputSync;
pub use preset_resolver::Guest as PresetResolver;
pub use prompt_transform::Guest as PromptTransform;
pub use queue_router::Guest as QueueRouter;
pub use status_overlay::Guest as StatusOverlay;

/// `queue-router`: decide where a submitted prompt runs ([`QueueRouter`], `export_queue_router!`).
pub mod queue_router {
    pub use crate::bindings::queue_router::exports::comfyhost::plugin::queue_router::*;
}

/// `prompt-transform`: rewrite a workflow before it is queued ([`PromptTransform`], `export_prompt_transform!`).
pub mod prompt_transform {
    pub use crate::bindings::prompt_transform::exports::comfyhost::plugin::prompt_transform::*;
}

/// `status-overlay`: turn execution events into overlay updates ([`StatusOverlay`], `export_status_overlay!`).
pub mod status_overlay {
    pub use crate::bindings::status_overlay::exports::comfyhost::plugin::status_overlay::*;
}

/// `preset-resolver`: find required and missing models and the presets providing them
/// ([`PresetResolver`], `export_preset_resolver!`).
pub mod preset_resolver {
    pub use crate::bindings::preset_resolver::exports::comfyhost::plugin::preset_resolver::*;
}

/// `output-sync`: react to a finished output file ([`OutputSync`], `export_output_sync!`).
pub mod output_sync {
    pub use crate::bindings::output_sync::exports::comfyhost::plugin::output_sync::*;
    pub use crate::bindings::shared::comfyhost::plugin::types::{OutputFile, OutputKind};
}

/// `output-mirror`: an output was deleted at the source; delete the copies this plugin made
/// ([`OutputMirror`], exported next to [`OutputSync`] with `export_output_sync_mirror!`).
pub mod output_mirror {
    pub use crate::bindings::output_mirror::exports::comfyhost::plugin::output_mirror::*;
    pub use crate::bindings::shared::comfyhost::plugin::types::{OutputFile, OutputKind};
}
