//! Which prompt a `/view` file belongs to, so another user's outputs and previews are not
//! served: a remote job's files carry their prompt id in the subfolder
//! (`comfyhost-remote/<prompt_id>/...`), and the local ComfyUI's outputs are recorded with
//! their prompt id when a job announces or finishes them (`output_files`). Files tied to no
//! job (input uploads, templates, files written before the host knew them) belong to no one
//! here and stay as ComfyUI serves them.

use comfyhost_store::Store;

/// The prompt that produced the file a `/view` request names, when the host knows it.
pub fn prompt_of(
    store: &Store,
    filename: &str,
    subfolder: &str,
    folder_type: &str,
) -> Option<String> {
    if crate::remote::outputs::OutputCache::is_remote_subfolder(subfolder) {
        let rest = subfolder.trim_start_matches('/');
        let id = rest.split('/').nth(1).filter(|id| !id.is_empty())?;
        return Some(id.to_string());
    }
    if folder_type != "output" {
        return None;
    }
    let rel = crate::outputs::file::rel_path(subfolder, filename)?;
    match store.output_get(&rel) {
        Ok(Some(row)) => row.prompt_id,
        Ok(None) => None,
        Err(e) => {
            tracing::error!(file = %rel, error = %e, "output owner lookup failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comfyhost_store::NewOutput;

    #[test]
    fn remote_and_recorded_local_files_name_their_prompt() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(
            prompt_of(&store, "a.png", "comfyhost-remote/p1/sub", "output").as_deref(),
            Some("p1")
        );
        store
            .output_enqueue(
                &NewOutput {
                    rel_path: "x/b.png".into(),
                    prompt_id: Some("p2".into()),
                    user_id: Some("alice".into()),
                    size: 1,
                    modified_ms: 0,
                },
                0,
            )
            .unwrap();
        assert_eq!(
            prompt_of(&store, "b.png", "x", "output").as_deref(),
            Some("p2")
        );
        assert_eq!(prompt_of(&store, "b.png", "x", "input"), None);
        assert_eq!(prompt_of(&store, "c.png", "", "output"), None);
    }
}
