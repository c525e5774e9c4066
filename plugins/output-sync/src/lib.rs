//! # output-sync: copy every finished output to a directory and/or S3-compatible storage
//!
//! A first-party comfyhost plugin for the `output-sync` hook. The host calls it once per output
//! file (images, video, audio, anything) when a job finishes, again for files its periodic full
//! pass finds unsynced, and again later whenever the plugin answers `retry-later`.
//!
//! ## What it does with a file
//!
//! 1. Filters: `include_kinds`, `include_extensions`, `exclude_extensions`, `max_file_mb`
//!    (`skipped`).
//! 2. Completeness: a file modified less than `min_age_ms` ago, or whose size differs from what
//!    the host saw, is still being written (`retry-later "incomplete: .."`).
//! 3. For each destination that accepts the file's user (`users`, default all), renders the
//!    destination path from `template` (default `{user}/{date}/{filename}`; `{user}` is
//!    `anonymous` for unauthenticated jobs; values are sanitised so no user can write outside
//!    their own segment), then syncs it **once**: a kv record keyed by destination + source
//!    path + size + mtime says "already there" (`skipped`); if the record is missing but an
//!    identical copy exists (a host killed between upload and record), it is recorded without a
//!    second upload; otherwise the file is copied (`synced`).
//! 4. Nothing is ever deleted at the source.
//!
//! ## Mirror deletion (opt-in per destination: `"mirror_deletes": true`)
//!
//! The plugin also exports `output-mirror` (world `output-sync-mirror-plugin`). When the host
//! finds a synced output deleted at the source it calls `on-removed` with the file as it was
//! synced; for every destination with `mirror_deletes` the plugin looks up its record of that
//! exact file and deletes the copy, but only if the destination still holds that copy (same
//! size, same ETag): a file someone replaced there is left alone. Then the record is dropped.
//! Destinations without the flag keep everything. The host holds a mass disappearance (more
//! files than its removal cap in one pass, which is what an unmounted volume looks like) until
//! an admin releases it.
//!
//! ## Failures
//!
//! Transient ones (unreachable endpoint, timeouts, 5xx, `SlowDown`/429) answer
//! `retry-later "network: .."` / `"throttled: .."`, so an outage grows the host's backlog instead
//! of tripping the crash-loop breaker. Auth and quota problems answer
//! `plugin-error::upstream("auth: ..")` / `("quota: ..")`; bad settings `plugin-error::config`.
//! The host classifies both into its health report (`GET /comfyhost/api/outputs`).
//!
//! ## Destinations
//!
//! ```json
//! {"destinations": [
//!   {"name": "nas", "kind": "dir", "path": "/sync"},
//!   {"name": "bucket", "kind": "s3", "endpoint": "https://s3.eu-west-1.amazonaws.com:443",
//!    "bucket": "renders", "region": "eu-west-1", "prefix": "workshop", "path_style": false,
//!    "template": "{user}/{date}/{filename}"}
//! ]}
//! ```
//!
//! - `dir`: `path` is the *guest* path of a read-write directory declared in `plugin.toml`
//!   (`[[capabilities.dirs]]`, e.g. `path = "/mnt/nas/renders"`, `guest = "/sync"`) and granted.
//! - `s3`: SigV4-signed `HEAD` + `PUT`, or a multipart upload for large files (signer in
//!   [`sigv4`], checked against AWS's published vectors and botocore) to `endpoint`, which
//!   must be listed under `[capabilities] http` with its port and granted; nothing else is
//!   reachable. Credentials come from secrets named by
//!   `access_key_secret` / `secret_key_secret` (default `S3_ACCESS_KEY_ID`,
//!   `S3_SECRET_ACCESS_KEY`, optional `session_token_secret`), declared and granted;
//!   comfyhost reads them from `COMFYHOST_SECRET_<NAME>`.
//!
//! ## Large files: S3 multipart upload
//!
//! Files above `multipart_threshold_mb` (default 16) go up in parts of `part_size_mb`
//! (default 8; S3's minimum is 5, and the part size grows for files that would need more than
//! S3's 10 000 parts) read one at a time from the file ([`multipart`]). One call uploads parts
//! for about `multipart_call_budget_ms` (default 15 000, well inside the 30 s call deadline),
//! records its progress in kv (upload id, part size, finished parts and their ETags, keyed like
//! the sync record) and answers `retry-later "in-progress: <dest>: part k/N of <file>"`; the
//! host calls again at once without counting a failure, and shows the file as `uploading` in
//! its health report. A restarted host resumes from the record; an upload the server no longer
//! knows (`NoSuchUpload`) starts over; a permanent failure (quota, refused) aborts it so its
//! parts stop costing storage.
//!
//! ## Limits
//!
//! - Files above `max_file_mb` (default 4096, at most 5 242 880 = S3's 5 TiB object limit)
//!   are skipped with a warning.
//! - Plugin memory holds one S3 body: a whole file up to `multipart_threshold_mb`, one part
//!   above it. Keep `memory_mb` in `plugin.toml` above twice the larger of the two (parts grow
//!   past `part_size_mb` only for files above `part_size_mb` x 10 000, 78 GiB at 8 MiB).
//!   Directory copies stream.
//! - One call sends at least one part, so a part must upload within the call deadline: about
//!   8 MiB / 30 s = 0.3 MB/s at the defaults.
//! - An upload abandoned for good (its file deleted mid-upload) leaves its parts at the
//!   destination: give the bucket a lifecycle rule for incomplete multipart uploads.
//! - One kv key per synced file and destination: size the host's kv quota
//!   (`KvLimits::max_keys`, 10 000 by default) for the number of outputs you keep.

pub mod config;
pub mod dir;
pub mod error;
pub mod ledger;
pub mod multipart;
pub mod s3;
pub mod sigv4;
pub mod sync;
pub mod template;
pub mod xml;

use comfyhost_sdk::hooks::output_mirror::RemovalOutcome;
use comfyhost_sdk::hooks::output_sync::{OutputFile, OutputKind, SyncOutcome};
use comfyhost_sdk::prelude::*;
use comfyhost_sdk::secrets::optional_secret;

use crate::config::{Config, Destination, Target};
use crate::error::SyncError;
use crate::ledger::Ledger;
use crate::sync::{Done, Sink, Source, Undone};

/// Lower-case name of a kind, as templates and filters use it.
pub fn kind_name(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::Image => "image",
        OutputKind::Video => "video",
        OutputKind::Audio => "audio",
        OutputKind::Other => "other",
    }
}

/// `content-type` from the file extension.
pub fn content_type(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "json" => "application/json",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

/// Builds the sink of a destination (secrets are read here).
pub type SinkFactory = dyn for<'d> Fn(&'d Destination) -> Result<Box<dyn Sink + 'd>, SyncError>;

/// The file as a sink reads it and as destination templates name it.
fn source_and_vars(file: &OutputFile) -> (Source<'_>, template::Vars<'_>) {
    let source = Source {
        guest_path: &file.guest_path,
        size: file.size,
        modified_ms: file.modified_ms,
        content_type: content_type(&file.filename),
    };
    let vars = template::Vars {
        user: file.user.as_ref().map(|u| u.id.as_str()),
        modified_ms: file.modified_ms,
        prompt_id: file.prompt_id.as_deref(),
        subfolder: &file.subfolder,
        filename: &file.filename,
        kind: kind_name(file.kind),
    };
    (source, vars)
}

/// The whole decision for one file: filters, completeness, then every destination.
pub fn handle(
    cfg: &Config,
    file: &OutputFile,
    now_ms: u64,
    ledger: &mut dyn Ledger,
    sinks: &SinkFactory,
) -> Result<SyncOutcome, PluginError> {
    if cfg.destinations.is_empty() {
        return Ok(SyncOutcome::Skipped("no destinations configured".into()));
    }
    let kind = kind_name(file.kind);
    if !cfg.wants(kind, &file.filename) {
        return Ok(SyncOutcome::Skipped(format!(
            "filtered out ({kind}, {})",
            file.filename
        )));
    }
    let cap = cfg.max_file_mb.saturating_mul(1 << 20);
    if file.size > cap {
        warn!(
            "{} is {} bytes, above max_file_mb = {}; not synced",
            file.guest_path, file.size, cfg.max_file_mb
        );
        return Ok(SyncOutcome::Skipped(format!(
            "larger than max_file_mb ({} bytes)",
            file.size
        )));
    }
    let age = now_ms.saturating_sub(file.modified_ms);
    if age < cfg.min_age_ms {
        return Ok(SyncOutcome::RetryLater(format!(
            "incomplete: modified {age} ms ago (min_age_ms {})",
            cfg.min_age_ms
        )));
    }
    match std::fs::metadata(&file.guest_path) {
        Ok(m) if m.len() != file.size => {
            return Ok(SyncOutcome::RetryLater(format!(
                "incomplete: size is {} now, {} when announced",
                m.len(),
                file.size
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SyncOutcome::Skipped(format!(
                "source {} is gone (is {{output}} granted at /output?)",
                file.guest_path
            )));
        }
        Err(e) => {
            return Err(PluginError::internal(format!(
                "cannot stat {}: {e}",
                file.guest_path
            )));
        }
    }

    let user = file.user.as_ref().map(|u| u.id.as_str());
    let (source, vars) = source_and_vars(file);
    let mut synced = Vec::new();
    let mut skipped = Vec::new();
    let mut retry = Vec::new();
    let mut failed: Option<(SyncError, String)> = None;
    for dest in cfg.destinations.iter().filter(|d| d.accepts_user(user)) {
        let rel = template::render(&dest.template, &vars)
            .map_err(|e| PluginError::config(format!("destination `{}`: {e}", dest.name)))?;
        let result = sinks(dest).and_then(|sink| {
            sync::sync_file(&dest.name, &rel, &source, sink.as_ref(), ledger, now_ms)
        });
        match result {
            Ok(Done::Copied(loc)) => {
                info!("synced {} to {loc}", file.guest_path);
                synced.push(format!("{}: {loc}", dest.name));
            }
            Ok(Done::FoundExisting(loc)) => synced.push(format!("{}: {loc} (found)", dest.name)),
            Ok(Done::AlreadySynced(loc)) => skipped.push(format!("{}: {loc}", dest.name)),
            Err(e) if e.is_transient() => retry.push(e.describe(&dest.name)),
            Err(e) => {
                warn!("{}: {}", file.guest_path, e.describe(&dest.name));
                if failed.is_none() {
                    failed = Some((e, dest.name.clone()));
                }
            }
        }
    }
    if let Some((e, dest)) = failed {
        return e.into_result(&dest);
    }
    if !retry.is_empty() {
        // A destination's trouble decides how the host classifies the answer, not another's
        // upload progress: `in-progress:` entries go last.
        retry.sort_by_key(|m| m.starts_with("in-progress:"));
        return Ok(SyncOutcome::RetryLater(retry.join("; ")));
    }
    if !synced.is_empty() {
        return Ok(SyncOutcome::Synced(synced.join("; ")));
    }
    if skipped.is_empty() {
        return Ok(SyncOutcome::Skipped(
            "no destination accepts this user".into(),
        ));
    }
    Ok(SyncOutcome::Skipped(format!(
        "already synced: {}",
        skipped.join("; ")
    )))
}

/// Mirror deletion of one output deleted at the source, at every destination that asks for it.
pub fn handle_removed(
    cfg: &Config,
    file: &OutputFile,
    ledger: &mut dyn Ledger,
    sinks: &SinkFactory,
) -> Result<RemovalOutcome, PluginError> {
    let user = file.user.as_ref().map(|u| u.id.as_str());
    let mirrored: Vec<&Destination> = cfg
        .destinations
        .iter()
        .filter(|d| d.mirror_deletes && d.accepts_user(user))
        .collect();
    if mirrored.is_empty() {
        return Ok(RemovalOutcome::Kept(
            "no destination has mirror_deletes on".into(),
        ));
    }
    let (source, vars) = source_and_vars(file);
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    let mut retry = Vec::new();
    let mut failed: Option<(SyncError, String)> = None;
    for dest in mirrored {
        let rel = template::render(&dest.template, &vars)
            .map_err(|e| PluginError::config(format!("destination `{}`: {e}", dest.name)))?;
        let result = sinks(dest)
            .and_then(|sink| sync::unsync_file(&dest.name, &rel, &source, sink.as_ref(), ledger));
        match result {
            Ok(Undone::Removed(loc)) => {
                info!(
                    "{} was deleted at the source; deleted {loc}",
                    file.guest_path
                );
                removed.push(format!("{}: {loc}", dest.name));
            }
            Ok(Undone::NeverSynced) => kept.push(format!("{}: never synced", dest.name)),
            Ok(Undone::AlreadyGone(loc)) => kept.push(format!("{}: {loc} already gone", dest.name)),
            Ok(Undone::Replaced(loc)) => {
                warn!(
                    "{loc} is not the copy of {} any more; left alone",
                    file.guest_path
                );
                kept.push(format!("{}: {loc} replaced, left alone", dest.name));
            }
            Err(e) if e.is_transient() => retry.push(e.describe(&dest.name)),
            Err(e) => {
                warn!("{}: {}", file.guest_path, e.describe(&dest.name));
                if failed.is_none() {
                    failed = Some((e, dest.name.clone()));
                }
            }
        }
    }
    if let Some((e, dest)) = failed {
        return Err(e.into_error(&dest));
    }
    if !retry.is_empty() {
        return Ok(RemovalOutcome::RetryLater(retry.join("; ")));
    }
    if !removed.is_empty() {
        return Ok(RemovalOutcome::Removed(removed.join("; ")));
    }
    Ok(RemovalOutcome::Kept(kept.join("; ")))
}

/// The real sinks: directories as mounted, S3 with secrets from the host (default multipart
/// settings).
pub fn real_sink(dest: &Destination) -> Result<Box<dyn Sink + '_>, SyncError> {
    real_sink_with(dest, crate::s3::MultipartSettings::default())
}

/// [`real_sink`] with the configuration's multipart settings.
pub fn real_sink_with(
    dest: &Destination,
    multipart: crate::s3::MultipartSettings,
) -> Result<Box<dyn Sink + '_>, SyncError> {
    match &dest.target {
        Target::Dir { path } => Ok(Box::new(dir::DirSink { root: path })),
        Target::S3(t) => {
            let need = |name: &str| {
                optional_secret(name).ok_or_else(|| {
                    SyncError::Auth(format!(
                        "secret `{name}` is not available: declare it under [capabilities] secrets and have an admin grant it"
                    ))
                })
            };
            let creds = sigv4::Credentials {
                access_key: need(&t.access_key_secret)?,
                secret_key: need(&t.secret_key_secret)?,
            };
            let session_token = match &t.session_token_secret {
                Some(name) => Some(need(name)?),
                None => None,
            };
            Ok(Box::new(s3::S3Sink {
                target: t,
                creds,
                session_token,
                now_ms: comfyhost_sdk::system::now_ms,
                dest: &dest.name,
                multipart,
            }))
        }
    }
}

/// Gives a closure the higher-ranked signature of [`SinkFactory`].
fn sink_factory<F>(f: F) -> F
where
    F: for<'d> Fn(&'d Destination) -> Result<Box<dyn Sink + 'd>, SyncError>,
{
    f
}

struct OutputSyncPlugin;

impl OutputSync for OutputSyncPlugin {
    fn on_output(file: OutputFile) -> Result<SyncOutcome, PluginError> {
        let cfg: Config = config()?;
        cfg.validate().map_err(PluginError::config)?;
        let now = comfyhost_sdk::system::now_ms();
        // Every destination's multipart upload shares the call's time budget.
        let multipart = s3::MultipartSettings {
            call_started_ms: now,
            ..cfg.multipart()
        };
        let sinks = sink_factory(move |d| real_sink_with(d, multipart));
        handle(&cfg, &file, now, &mut ledger::KvLedger, &sinks)
    }
}

impl OutputMirror for OutputSyncPlugin {
    fn on_removed(file: OutputFile) -> Result<RemovalOutcome, PluginError> {
        let cfg: Config = config()?;
        cfg.validate().map_err(PluginError::config)?;
        handle_removed(&cfg, &file, &mut ledger::KvLedger, &real_sink)
    }
}

comfyhost_sdk::export_output_sync_mirror!(OutputSyncPlugin);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ledger::Record;
    use comfyhost_sdk::types::User;
    use std::collections::HashMap;

    #[derive(Default)]
    struct MapLedger(HashMap<String, Record>);
    impl Ledger for MapLedger {
        fn get(&self, key: &str) -> Result<Option<Record>, String> {
            Ok(self.0.get(key).cloned())
        }
        fn put(&mut self, key: &str, record: &Record) -> Result<(), String> {
            self.0.insert(key.into(), record.clone());
            Ok(())
        }
        fn delete(&mut self, key: &str) -> Result<(), String> {
            self.0.remove(key);
            Ok(())
        }
    }

    struct Env {
        _src: tempfile::TempDir,
        _dst: tempfile::TempDir,
        file_path: String,
        dst: std::path::PathBuf,
        cfg: Config,
    }

    fn env(extra: &str) -> Env {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let file_path = src.path().join("ComfyUI_00001_.png");
        std::fs::write(&file_path, b"png-bytes").unwrap();
        let cfg = comfyhost_sdk::config::parse::<Config>(&format!(
            r#"{{"destinations":[{{"name":"nas","kind":"dir","path":"{}"}}]{extra}}}"#,
            dst.path().display()
        ))
        .unwrap();
        cfg.validate().unwrap();
        Env {
            file_path: file_path.to_str().unwrap().into(),
            dst: dst.path().to_owned(),
            _src: src,
            _dst: dst,
            cfg,
        }
    }

    fn file(path: &str, user: Option<&str>) -> OutputFile {
        OutputFile {
            guest_path: path.into(),
            filename: "ComfyUI_00001_.png".into(),
            subfolder: String::new(),
            kind: OutputKind::Image,
            size: 9,
            modified_ms: 1_763_856_000_000,
            prompt_id: Some("p1".into()),
            user: user.map(|id| User {
                id: id.into(),
                is_admin: false,
            }),
        }
    }

    const LATER: u64 = 1_763_856_000_000 + 60_000;

    fn run(e: &Env, f: &OutputFile, now: u64, ledger: &mut MapLedger) -> SyncOutcome {
        handle(&e.cfg, f, now, ledger, &real_sink).unwrap()
    }

    #[test]
    fn syncs_once_per_user_layout() {
        let e = env("");
        let mut ledger = MapLedger::default();
        let out = run(&e, &file(&e.file_path, Some("alice")), LATER, &mut ledger);
        assert!(
            matches!(&out, SyncOutcome::Synced(m) if m.contains("alice/2025-11-23/ComfyUI_00001_.png")),
            "{out:?}"
        );
        assert_eq!(
            std::fs::read(e.dst.join("alice/2025-11-23/ComfyUI_00001_.png")).unwrap(),
            b"png-bytes"
        );
        let again = run(&e, &file(&e.file_path, Some("alice")), LATER, &mut ledger);
        assert!(
            matches!(&again, SyncOutcome::Skipped(m) if m.starts_with("already synced")),
            "{again:?}"
        );
        // Anonymous jobs go under `anonymous/`, never another user's directory.
        let mut other = MapLedger::default();
        run(&e, &file(&e.file_path, None), LATER, &mut other);
        assert!(
            e.dst
                .join("anonymous/2025-11-23/ComfyUI_00001_.png")
                .exists()
        );
    }

    #[test]
    fn users_never_reach_each_others_destination() {
        let e = env("");
        let dst2 = tempfile::tempdir().unwrap();
        let cfg = comfyhost_sdk::config::parse::<Config>(&format!(
            r#"{{"destinations":[
                {{"name":"alice","kind":"dir","path":"{}","users":["alice"]}},
                {{"name":"bob","kind":"dir","path":"{}","users":["bob"]}}]}}"#,
            e.dst.display(),
            dst2.path().display()
        ))
        .unwrap();
        let mut ledger = MapLedger::default();
        handle(
            &cfg,
            &file(&e.file_path, Some("bob")),
            LATER,
            &mut ledger,
            &real_sink,
        )
        .unwrap();
        assert!(
            dst2.path()
                .join("bob/2025-11-23/ComfyUI_00001_.png")
                .exists()
        );
        assert_eq!(
            std::fs::read_dir(&e.dst).unwrap().count(),
            0,
            "alice's destination got bob's file"
        );
        let out = handle(
            &cfg,
            &file(&e.file_path, Some("mallory")),
            LATER,
            &mut ledger,
            &real_sink,
        )
        .unwrap();
        assert_eq!(
            out,
            SyncOutcome::Skipped("no destination accepts this user".into())
        );
    }

    #[test]
    fn young_or_growing_files_are_retried_later() {
        let e = env(r#","min_age_ms":5000"#);
        let mut ledger = MapLedger::default();
        let f = file(&e.file_path, None);
        let out = run(&e, &f, f.modified_ms + 1000, &mut ledger);
        assert!(
            matches!(&out, SyncOutcome::RetryLater(m) if m.starts_with("incomplete")),
            "{out:?}"
        );
        let growing = OutputFile {
            size: 4,
            ..f.clone()
        };
        let out = run(&e, &growing, LATER, &mut ledger);
        assert!(
            matches!(&out, SyncOutcome::RetryLater(m) if m.contains("size")),
            "{out:?}"
        );
        assert!(ledger.0.is_empty());
    }

    #[test]
    fn filters_and_vanished_sources_skip() {
        let e = env(r#","exclude_extensions":["png"]"#);
        let mut ledger = MapLedger::default();
        let out = run(&e, &file(&e.file_path, None), LATER, &mut ledger);
        assert!(
            matches!(&out, SyncOutcome::Skipped(m) if m.starts_with("filtered")),
            "{out:?}"
        );
        let e = env("");
        let out = run(&e, &file("/nonexistent/x.png", None), LATER, &mut ledger);
        assert!(
            matches!(&out, SyncOutcome::Skipped(m) if m.contains("gone")),
            "{out:?}"
        );
    }

    #[test]
    fn unreachable_s3_is_retry_later_and_missing_secret_is_auth() {
        let e = env("");
        let cfg = comfyhost_sdk::config::parse::<Config>(
            r#"{"destinations":[{"name":"b","kind":"s3","endpoint":"http://127.0.0.1:9","bucket":"x"}]}"#,
        )
        .unwrap();
        let mut ledger = MapLedger::default();
        // Natively there are no secrets: an auth error naming the secret.
        let err = handle(
            &cfg,
            &file(&e.file_path, None),
            LATER,
            &mut ledger,
            &real_sink,
        )
        .unwrap_err();
        assert!(
            matches!(&err, PluginError::Upstream(m) if m.starts_with("auth:") && m.contains("S3_ACCESS_KEY_ID")),
            "{err:?}"
        );
    }

    /// A sink answering a fixed error from `put`.
    struct Failing(SyncError);
    impl Sink for Failing {
        fn locate(&self, rel: &str) -> String {
            format!("mem://{rel}")
        }
        fn stat(&self, _rel: &str) -> Result<Option<(u64, String)>, SyncError> {
            Ok(None)
        }
        fn put(&self, _rel: &str, _source: &Source<'_>) -> Result<String, SyncError> {
            Err(self.0.clone())
        }
        fn remove(&self, _rel: &str) -> Result<(), SyncError> {
            Err(self.0.clone())
        }
    }

    #[test]
    fn another_destinations_trouble_outranks_upload_progress() {
        let e = env("");
        let cfg = comfyhost_sdk::config::parse::<Config>(
            r#"{"destinations":[
                {"name":"big","kind":"dir","path":"/a"},
                {"name":"down","kind":"dir","path":"/b"}]}"#,
        )
        .unwrap();
        let sinks = sink_factory(|d| -> Result<Box<dyn Sink + '_>, SyncError> {
            Ok(Box::new(Failing(if d.name == "big" {
                SyncError::InProgress("part 1/9 of x".into())
            } else {
                SyncError::Network("refused".into())
            })))
        });
        let mut ledger = MapLedger::default();
        let out = handle(&cfg, &file(&e.file_path, None), LATER, &mut ledger, &sinks).unwrap();
        assert_eq!(
            out,
            SyncOutcome::RetryLater(
                "network: down: refused; in-progress: big: part 1/9 of x".into()
            )
        );
        assert!(ledger.0.is_empty(), "nothing recorded before completion");
    }

    #[test]
    fn mirror_deletion_removes_only_recorded_copies_where_asked() {
        let e = env("");
        let archive = tempfile::tempdir().unwrap();
        let cfg = comfyhost_sdk::config::parse::<Config>(&format!(
            r#"{{"destinations":[
                {{"name":"nas","kind":"dir","path":"{}","mirror_deletes":true}},
                {{"name":"archive","kind":"dir","path":"{}"}}]}}"#,
            e.dst.display(),
            archive.path().display()
        ))
        .unwrap();
        cfg.validate().unwrap();
        let mut ledger = MapLedger::default();
        let f = file(&e.file_path, Some("alice"));
        handle(&cfg, &f, LATER, &mut ledger, &real_sink).unwrap();
        let copy = e.dst.join("alice/2025-11-23/ComfyUI_00001_.png");
        let kept = archive.path().join("alice/2025-11-23/ComfyUI_00001_.png");
        assert!(copy.exists() && kept.exists());
        assert_eq!(ledger.0.len(), 2);

        std::fs::remove_file(&e.file_path).unwrap();
        let out = handle_removed(&cfg, &f, &mut ledger, &real_sink).unwrap();
        assert!(
            matches!(&out, RemovalOutcome::Removed(m) if m.starts_with("nas:")),
            "{out:?}"
        );
        assert!(!copy.exists(), "mirror copy still there");
        assert!(!e.dst.join("alice").exists(), "empty folders left behind");
        assert!(
            kept.exists(),
            "a destination without mirror_deletes lost its copy"
        );
        assert_eq!(ledger.0.len(), 1, "the nas record must be dropped");
        // Asked again (host restarted mid-way): nothing left to do.
        let again = handle_removed(&cfg, &f, &mut ledger, &real_sink).unwrap();
        assert!(
            matches!(&again, RemovalOutcome::Kept(m) if m.contains("never synced")),
            "{again:?}"
        );
    }

    #[test]
    fn mirror_deletion_leaves_a_replaced_copy_alone() {
        let e = env("");
        let cfg = comfyhost_sdk::config::parse::<Config>(&format!(
            r#"{{"destinations":[{{"name":"nas","kind":"dir","path":"{}","mirror_deletes":true}}]}}"#,
            e.dst.display()
        ))
        .unwrap();
        let mut ledger = MapLedger::default();
        let f = file(&e.file_path, Some("bob"));
        handle(&cfg, &f, LATER, &mut ledger, &real_sink).unwrap();
        let copy = e.dst.join("bob/2025-11-23/ComfyUI_00001_.png");
        std::fs::write(&copy, b"someone else's bigger file").unwrap();
        let out = handle_removed(&cfg, &f, &mut ledger, &real_sink).unwrap();
        assert!(
            matches!(&out, RemovalOutcome::Kept(m) if m.contains("replaced")),
            "{out:?}"
        );
        assert!(copy.exists());
        // Without mirror_deletes nothing is even looked up.
        let off = handle_removed(&e.cfg, &f, &mut ledger, &real_sink).unwrap();
        assert_eq!(
            off,
            RemovalOutcome::Kept("no destination has mirror_deletes on".into())
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a.PNG"), "image/png");
        assert_eq!(content_type("v.mp4"), "video/mp4");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
