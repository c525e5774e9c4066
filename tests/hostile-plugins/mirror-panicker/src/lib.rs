//! An output-sync plugin of the `output-sync-mirror-plugin` world that syncs fine and panics
//! (a wasm trap) whenever it is asked to take back a deleted output: the host must record the
//! failure against this plugin and carry on.

wit_bindgen::generate!({ path: "../../../wit", world: "output-sync-mirror-plugin" });

use comfyhost::plugin::types::{OutputFile, PluginError};
use exports::comfyhost::plugin::output_mirror::{Guest as Mirror, RemovalOutcome};
use exports::comfyhost::plugin::output_sync::{Guest as Sync, SyncOutcome};

struct Plugin;

impl Sync for Plugin {
    fn on_output(file: OutputFile) -> Result<SyncOutcome, PluginError> {
        Ok(SyncOutcome::Synced(format!("mirror: {}", file.guest_path)))
    }
}

impl Mirror for Plugin {
    fn on_removed(file: OutputFile) -> Result<RemovalOutcome, PluginError> {
        panic!("refusing to forget {}", file.guest_path)
    }
}

export!(Plugin);
