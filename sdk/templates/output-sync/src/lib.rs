//! Template comfyhost plugin: an output sync that keeps a catalogue of finished outputs in its
//! key-value store (one JSON record per file: who made it, for which prompt, size, time). Start
//! here for a plugin that copies outputs somewhere: replace `catalogue` with the copy.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

use comfyhost_sdk::hooks::output_sync::{OutputFile, SyncOutcome};
use comfyhost_sdk::kv;
use comfyhost_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// What the catalogue keeps per file.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub user: Option<String>,
    pub prompt_id: Option<String>,
    pub size: u64,
    pub modified_ms: u64,
}

/// The catalogue key of a file: `out/<subfolder>/<filename>`.
pub fn key(file: &OutputFile) -> String {
    if file.subfolder.is_empty() {
        format!("out/{}", file.filename)
    } else {
        format!("out/{}/{}", file.subfolder, file.filename)
    }
}

/// Records `file`; a file already catalogued with the same size and time is skipped.
pub fn catalogue(file: &OutputFile) -> Result<SyncOutcome, PluginError> {
    let key = key(file);
    let entry = Entry {
        user: file.user.as_ref().map(|u| u.id.clone()),
        prompt_id: file.prompt_id.clone(),
        size: file.size,
        modified_ms: file.modified_ms,
    };
    if kv::get::<Entry>(&key)?.as_ref() == Some(&entry) {
        return Ok(SyncOutcome::Skipped(format!("{key} already catalogued")));
    }
    kv::set(&key, &entry)?;
    Ok(SyncOutcome::Synced(key))
}

struct OutputCatalogue;

impl OutputSync for OutputCatalogue {
    fn on_output(file: OutputFile) -> Result<SyncOutcome, PluginError> {
        catalogue(&file)
    }
}

comfyhost_sdk::export_output_sync!(OutputCatalogue);

#[cfg(test)]
mod tests {
    use super::*;
    use comfyhost_sdk::hooks::output_sync::OutputKind;
    use comfyhost_sdk::testing::FakeHost;

    fn file() -> OutputFile {
        OutputFile {
            guest_path: "/output/alice/ComfyUI_00001_.png".into(),
            filename: "ComfyUI_00001_.png".into(),
            subfolder: "alice".into(),
            kind: OutputKind::Image,
            size: 1234,
            modified_ms: 1_700_000_000_000,
            prompt_id: Some("p1".into()),
            user: Some(User {
                id: "alice".into(),
                is_admin: false,
            }),
        }
    }

    #[test]
    fn catalogues_once() {
        let host = FakeHost::new().install();
        assert!(matches!(
            OutputCatalogue::on_output(file()).unwrap(),
            SyncOutcome::Synced(k) if k == "out/alice/ComfyUI_00001_.png"
        ));
        assert!(matches!(
            OutputCatalogue::on_output(file()).unwrap(),
            SyncOutcome::Skipped(_)
        ));
        assert_eq!(host.kv_keys(), vec!["out/alice/ComfyUI_00001_.png"]);
    }

    #[test]
    fn a_full_store_is_an_error_the_host_sees() {
        let _host = FakeHost::new().kv_quota(0).install();
        assert!(OutputCatalogue::on_output(file()).is_err());
    }
}
