//! Files ComfyUI announced for a prompt on a page's socket (`executed`), whatever their folder:
//! `temp` previews (PreviewImage, the sampler's saved previews) as well as `output` files, from
//! the moment ComfyUI names them. The store records only `output` files, and only once the
//! output queue has looked at them; this in-memory map is what lets `/view` refuse another
//! user's previews, and their outputs in the moment before the store knows them.
//!
//! Bounded: the oldest entries go first past [`CAPACITY`] (previews are short-lived; outputs are
//! in the store by then).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use comfyhost_protocol::WsMessage;
use comfyhost_proxy::ws::WsTap;
use parking_lot::Mutex;

/// Files remembered at most (about 100 bytes each).
pub const CAPACITY: usize = 50_000;

/// `(type, subfolder, filename)` as a `/view` request names a file.
type FileKey = (String, String, String);

#[derive(Default)]
struct Inner {
    owners: HashMap<FileKey, String>,
    order: VecDeque<FileKey>,
}

/// The map of announced files to their prompt. Cheap to clone; it is also the proxy tap that
/// fills it.
#[derive(Clone, Default)]
pub struct AnnouncedFiles {
    inner: Arc<Mutex<Inner>>,
}

impl AnnouncedFiles {
    /// Remembers that `prompt_id` produced the file (a later announcement of the same file wins).
    pub fn record(&self, folder_type: &str, subfolder: &str, filename: &str, prompt_id: &str) {
        let key = (
            folder_type.to_owned(),
            subfolder.trim_matches('/').to_owned(),
            filename.to_owned(),
        );
        let mut inner = self.inner.lock();
        if inner
            .owners
            .insert(key.clone(), prompt_id.to_owned())
            .is_none()
        {
            inner.order.push_back(key);
            while inner.order.len() > CAPACITY {
                if let Some(old) = inner.order.pop_front() {
                    inner.owners.remove(&old);
                }
            }
        }
    }

    /// The prompt that produced the file, when ComfyUI announced it.
    pub fn prompt_of(&self, folder_type: &str, subfolder: &str, filename: &str) -> Option<String> {
        let key = (
            folder_type.to_owned(),
            subfolder.trim_matches('/').to_owned(),
            filename.to_owned(),
        );
        self.inner.lock().owners.get(&key).cloned()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl WsTap for AnnouncedFiles {
    fn on_message(&self, _client_id: &str, message: &WsMessage) {
        if let WsMessage::Executed(m) = message {
            for f in m.files() {
                self.record(&f.kind, &f.subfolder, &f.filename, &m.prompt_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn previews_and_outputs_are_remembered_by_prompt_and_old_ones_go_first() {
        let files = AnnouncedFiles::default();
        let msg: WsMessage = serde_json::from_value(json!({
            "type": "executed",
            "data": {"node": "9", "prompt_id": "p1", "output": {"images": [
                {"filename": "ComfyUI_temp_abcde_00001_.png", "subfolder": "", "type": "temp"},
                {"filename": "out_00001_.png", "subfolder": "run", "type": "output"}
            ]}}
        }))
        .unwrap();
        files.on_message("c1", &msg);
        assert_eq!(
            files
                .prompt_of("temp", "", "ComfyUI_temp_abcde_00001_.png")
                .as_deref(),
            Some("p1")
        );
        assert_eq!(
            files
                .prompt_of("output", "/run/", "out_00001_.png")
                .as_deref(),
            Some("p1")
        );
        assert_eq!(files.prompt_of("input", "", "out_00001_.png"), None);
        for i in 0..CAPACITY {
            files.record("temp", "", &format!("f{i}.png"), "p2");
        }
        assert_eq!(files.len(), CAPACITY);
        assert_eq!(
            files.prompt_of("temp", "", "ComfyUI_temp_abcde_00001_.png"),
            None,
            "the oldest went first"
        );
        assert_eq!(files.prompt_of("temp", "", "f0.png").as_deref(), Some("p2"));
    }
}
