//! Output files as the plugins see them: relative path, guest path under the `/output` mount,
//! kind from the extension.

use std::path::{Component, Path};

use comfyhost_runtime::types::{OutputFile, OutputKind, User};
use comfyhost_store::OutputRow;

/// Where output-sync plugins must mount `{output}` (read-only); every `OutputFile.guest_path`
/// starts with it.
pub const OUTPUT_GUEST_DIR: &str = "/output";

/// `subfolder/filename` as a `/`-separated path relative to the output directory, or `None`
/// when it could leave the directory (`..`, absolute parts).
pub fn rel_path(subfolder: &str, filename: &str) -> Option<String> {
    let joined = if subfolder.is_empty() {
        filename.to_owned()
    } else {
        format!("{}/{filename}", subfolder.trim_end_matches(['/', '\\']))
    };
    let joined = joined.replace('\\', "/");
    let ok = !joined.is_empty()
        && Path::new(&joined)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    ok.then_some(joined)
}

/// Kind from the extension.
pub fn kind_of(filename: &str) -> OutputKind {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "webp" | "gif" | "bmp" | "tif" | "tiff" | "avif" | "exr" => {
            OutputKind::Image
        }
        "mp4" | "webm" | "mov" | "mkv" | "avi" | "m4v" => OutputKind::Video,
        "wav" | "mp3" | "flac" | "ogg" | "m4a" | "opus" | "aac" => OutputKind::Audio,
        _ => OutputKind::Other,
    }
}

/// The record handed to the output-sync chain for a queued row (size and mtime as the host
/// saw them when it stat'ed the file just now).
pub fn output_file(row: &OutputRow, size: u64, modified_ms: u64) -> OutputFile {
    let (subfolder, filename) = match row.rel_path.rsplit_once('/') {
        Some((dir, name)) => (dir.to_owned(), name.to_owned()),
        None => (String::new(), row.rel_path.clone()),
    };
    OutputFile {
        guest_path: format!("{OUTPUT_GUEST_DIR}/{}", row.rel_path),
        kind: kind_of(&filename),
        filename,
        subfolder,
        size,
        modified_ms,
        prompt_id: row.prompt_id.clone(),
        user: row.user_id.as_ref().map(|id| User {
            id: id.clone(),
            is_admin: false,
        }),
    }
}

/// Size and mtime (ms) of a regular file; `None` when it is missing or not a file.
pub fn stat(path: &Path) -> std::io::Result<Option<(u64, i64)>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            Ok(Some((m.len(), mtime)))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use comfyhost_store::OutputState;

    #[test]
    fn rel_paths_stay_inside() {
        assert_eq!(rel_path("", "a.png").as_deref(), Some("a.png"));
        assert_eq!(rel_path("vid/x/", "a.mp4").as_deref(), Some("vid/x/a.mp4"));
        assert_eq!(rel_path("..", "a.png"), None);
        assert_eq!(rel_path("a/../..", "a.png"), None);
        assert_eq!(rel_path("/etc", "passwd"), None);
        assert_eq!(rel_path("", ""), None);
        assert_eq!(rel_path("a\\b", "c.png").as_deref(), Some("a/b/c.png"));
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of("a.PNG"), OutputKind::Image);
        assert_eq!(kind_of("a.webm"), OutputKind::Video);
        assert_eq!(kind_of("a.flac"), OutputKind::Audio);
        assert_eq!(kind_of("a.safetensors"), OutputKind::Other);
        assert_eq!(kind_of("noext"), OutputKind::Other);
    }

    #[test]
    fn output_file_carries_guest_path_and_owner() {
        let row = OutputRow {
            rel_path: "vid/clip.mp4".into(),
            prompt_id: Some("p1".into()),
            user_id: Some("alice".into()),
            size: 1,
            modified_ms: 2,
            state: OutputState::Pending,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            enqueued_ms: 0,
            done_ms: None,
        };
        let f = output_file(&row, 10, 20);
        assert_eq!(f.guest_path, "/output/vid/clip.mp4");
        assert_eq!(
            (f.subfolder.as_str(), f.filename.as_str()),
            ("vid", "clip.mp4")
        );
        assert_eq!(f.kind, OutputKind::Video);
        assert_eq!((f.size, f.modified_ms), (10, 20));
        assert_eq!(f.user.map(|u| u.id).as_deref(), Some("alice"));
    }
}
