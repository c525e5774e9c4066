//! An output-sync plugin of the plain `output-sync-plugin` world (no `output-mirror`), as every
//! output-sync plugin was built before mirror deletion existed: the host must keep loading it
//! and must never ask it to delete anything.

wit_bindgen::generate!({ path: "../../../wit", world: "output-sync-plugin" });

use comfyhost::plugin::types::{OutputFile, PluginError};
use exports::comfyhost::plugin::output_sync::{Guest, SyncOutcome};

struct Plugin;

impl Guest for Plugin {
    fn on_output(file: OutputFile) -> Result<SyncOutcome, PluginError> {
        Ok(SyncOutcome::Synced(format!("plain: {}", file.guest_path)))
    }
}

export!(Plugin);
