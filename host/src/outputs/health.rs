//! Health by progress, per output-sync plugin: last success, counts, last error with its type.

use std::collections::BTreeMap;

use comfyhost_runtime::CallErrorKind;
use comfyhost_runtime::types::{RemovalOutcome, SyncOutcome};
use serde::Serialize;

/// Type of a failure, from the plugin's classified message or the runtime's error kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// Credentials missing or refused.
    Auth,
    /// Destination full or over quota.
    Quota,
    /// Endpoint unreachable, timeouts, server errors.
    Network,
    /// The destination asked to slow down.
    Throttled,
    /// The file is still being written.
    Incomplete,
    /// Plugin configuration or grants.
    Config,
    /// Deadline, memory cap, trap, anything else.
    Plugin,
    /// Not a failure: a large upload advanced and wants another call at once.
    InProgress,
}

impl ErrorType {
    /// True for trouble at the destination (affects every file): the queue holds back.
    pub fn is_outage(self) -> bool {
        !matches!(self, ErrorType::Incomplete | ErrorType::InProgress)
    }
}

/// Reads the `class:` prefix the output-sync plugin puts on messages.
pub fn classify_message(msg: &str) -> Option<ErrorType> {
    let m = msg.trim_start();
    let m = m
        .strip_prefix("upstream: ")
        .or_else(|| m.strip_prefix("config: "))
        .unwrap_or(m);
    let class = m.split(':').next().unwrap_or("").trim();
    Some(match class {
        "auth" => ErrorType::Auth,
        "quota" => ErrorType::Quota,
        "network" => ErrorType::Network,
        "throttled" => ErrorType::Throttled,
        "incomplete" => ErrorType::Incomplete,
        "config" => ErrorType::Config,
        "in-progress" => ErrorType::InProgress,
        _ => return None,
    })
}

/// Type of a failed call.
pub fn classify_error(kind: &CallErrorKind) -> ErrorType {
    match kind {
        CallErrorKind::Plugin(m) => classify_message(m).unwrap_or(if m.starts_with("config:") {
            ErrorType::Config
        } else {
            ErrorType::Plugin
        }),
        CallErrorKind::BlockedTimeout(_) => ErrorType::Network,
        _ => ErrorType::Plugin,
    }
}

/// Type of a `retry-later` answer (a plugin that does not classify is treated as an outage).
pub fn classify_retry(msg: &str) -> ErrorType {
    classify_message(msg).unwrap_or(ErrorType::Network)
}

/// The last failure of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub message: String,
    pub at_ms: i64,
    /// The file it happened on.
    pub file: String,
}

/// One plugin's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PluginHealth {
    pub plugin_id: String,
    pub synced: u64,
    pub skipped: u64,
    /// Deleted files whose destination copies this plugin took back.
    pub removed: u64,
    /// Deleted files it deliberately left at the destinations (never synced there, mirror
    /// deletion off).
    pub kept: u64,
    pub retries: u64,
    pub failures: u64,
    pub last_success_ms: Option<i64>,
    /// Where the last synced file went (the plugin's `synced` text).
    pub last_synced_to: Option<String>,
    pub last_error: Option<LastError>,
    /// Whether the plugin has `{output}` granted at `/output`; without it every file reads as
    /// missing in the sandbox.
    pub output_mounted: bool,
    /// A large upload under way (the plugin's last `in-progress` answer), until that file ends.
    pub uploading: Option<Uploading>,
}

/// A multipart upload under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uploading {
    pub file: String,
    /// The plugin's text, e.g. `in-progress: bucket: part 3/8 of /output/clip.mp4`.
    pub progress: String,
    pub at_ms: i64,
}

/// Every plugin's progress, by id.
#[derive(Debug, Default)]
pub struct HealthBook {
    plugins: BTreeMap<String, PluginHealth>,
}

impl HealthBook {
    fn entry(&mut self, id: &str) -> &mut PluginHealth {
        self.plugins
            .entry(id.to_owned())
            .or_insert_with(|| PluginHealth {
                plugin_id: id.to_owned(),
                ..Default::default()
            })
    }

    /// Records one plugin's answer for `file`; returns the failure type, if it failed.
    pub fn record(
        &mut self,
        plugin_id: &str,
        file: &str,
        result: &Result<SyncOutcome, CallErrorKind>,
        now_ms: i64,
    ) -> Option<ErrorType> {
        let h = self.entry(plugin_id);
        if h.uploading.as_ref().is_some_and(|u| u.file == file) {
            h.uploading = None;
        }
        let fail = |h: &mut PluginHealth, kind: ErrorType, message: String| {
            h.last_error = Some(LastError {
                kind,
                message,
                at_ms: now_ms,
                file: file.to_owned(),
            });
            Some(kind)
        };
        match result {
            Ok(SyncOutcome::Synced(to)) => {
                h.synced += 1;
                h.last_success_ms = Some(now_ms);
                h.last_synced_to = Some(to.clone());
                None
            }
            Ok(SyncOutcome::Skipped(_)) => {
                h.skipped += 1;
                h.last_success_ms = Some(now_ms);
                None
            }
            Ok(SyncOutcome::RetryLater(why)) => {
                let kind = classify_retry(why);
                if kind == ErrorType::InProgress {
                    // Progress, not a retry: no counter, no error, shown as uploading.
                    h.uploading = Some(Uploading {
                        file: file.to_owned(),
                        progress: why.clone(),
                        at_ms: now_ms,
                    });
                    return Some(kind);
                }
                h.retries += 1;
                if kind == ErrorType::Incomplete {
                    // Not an error of the destination; keep the last real one visible.
                    return Some(kind);
                }
                fail(h, kind, why.clone())
            }
            Err(e) => {
                h.failures += 1;
                fail(h, classify_error(e), e.to_string())
            }
        }
    }

    /// Records one plugin's answer for a deleted `file`; returns the failure type, if it failed.
    pub fn record_removal(
        &mut self,
        plugin_id: &str,
        file: &str,
        result: &Result<RemovalOutcome, CallErrorKind>,
        now_ms: i64,
    ) -> Option<ErrorType> {
        match result {
            Ok(RemovalOutcome::Removed(_)) => {
                let h = self.entry(plugin_id);
                h.removed += 1;
                h.last_success_ms = Some(now_ms);
                None
            }
            Ok(RemovalOutcome::Kept(_)) => {
                let h = self.entry(plugin_id);
                h.kept += 1;
                h.last_success_ms = Some(now_ms);
                None
            }
            // Failures read and count exactly like the sync path's.
            Ok(RemovalOutcome::RetryLater(why)) => self.record(
                plugin_id,
                file,
                &Ok(SyncOutcome::RetryLater(why.clone())),
                now_ms,
            ),
            Err(e) => self.record(plugin_id, file, &Err(e.clone()), now_ms),
        }
    }

    /// Sets the mount flag of the plugins in the chain (and lists them even before any call).
    pub fn set_mounted(&mut self, plugin_id: &str, mounted: bool) {
        self.entry(plugin_id).output_mounted = mounted;
    }

    pub fn snapshot(&self) -> Vec<PluginHealth> {
        self.plugins.values().cloned().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_classify() {
        assert_eq!(
            classify_message("upstream: auth: s3: HTTP 403"),
            Some(ErrorType::Auth)
        );
        assert_eq!(
            classify_message("upstream: quota: s3: full"),
            Some(ErrorType::Quota)
        );
        assert_eq!(
            classify_message("network: s3: refused"),
            Some(ErrorType::Network)
        );
        assert_eq!(
            classify_message("incomplete: modified 5 ms ago"),
            Some(ErrorType::Incomplete)
        );
        assert_eq!(classify_message("something else"), None);
        assert_eq!(classify_retry("busy"), ErrorType::Network);
        assert_eq!(
            classify_error(&CallErrorKind::Plugin("upstream: auth: x".into())),
            ErrorType::Auth
        );
        assert_eq!(
            classify_error(&CallErrorKind::Plugin("config: bad".into())),
            ErrorType::Config
        );
        assert_eq!(
            classify_error(&CallErrorKind::Trap("boom".into())),
            ErrorType::Plugin
        );
    }

    #[test]
    fn book_tracks_progress_and_last_error() {
        let mut b = HealthBook::default();
        assert_eq!(
            b.record(
                "os",
                "a.png",
                &Ok(SyncOutcome::RetryLater("network: s3: down".into())),
                5
            ),
            Some(ErrorType::Network)
        );
        assert_eq!(
            b.record(
                "os",
                "a.png",
                &Ok(SyncOutcome::Synced("s3://b/a.png".into())),
                9
            ),
            None
        );
        b.record(
            "os",
            "b.png",
            &Ok(SyncOutcome::RetryLater("incomplete: young".into())),
            10,
        );
        let h = &b.snapshot()[0];
        assert_eq!((h.synced, h.retries, h.last_success_ms), (1, 2, Some(9)));
        let e = h.last_error.as_ref().unwrap();
        assert_eq!(
            (e.kind, e.at_ms, e.file.as_str()),
            (ErrorType::Network, 5, "a.png")
        );
        assert_eq!(h.last_synced_to.as_deref(), Some("s3://b/a.png"));
    }

    #[test]
    fn in_progress_is_shown_as_uploading_not_as_an_error() {
        assert_eq!(
            classify_message("in-progress: bucket: part 3/8 of /output/a.mp4"),
            Some(ErrorType::InProgress)
        );
        assert!(!ErrorType::InProgress.is_outage());
        let mut b = HealthBook::default();
        let step = |b: &mut HealthBook, k: u32, at: i64| {
            b.record(
                "os",
                "a.mp4",
                &Ok(SyncOutcome::RetryLater(format!(
                    "in-progress: bucket: part {k}/8 of /output/a.mp4"
                ))),
                at,
            )
        };
        assert_eq!(step(&mut b, 1, 5), Some(ErrorType::InProgress));
        step(&mut b, 2, 6);
        let h = &b.snapshot()[0];
        assert_eq!((h.retries, h.failures, &h.last_error), (0, 0, &None));
        let up = h.uploading.as_ref().unwrap();
        assert_eq!((up.file.as_str(), up.at_ms), ("a.mp4", 6));
        assert!(up.progress.contains("part 2/8"), "{up:?}");
        // Another file's answer leaves it; the file's own end clears it.
        b.record("os", "b.png", &Ok(SyncOutcome::Synced("x".into())), 7);
        assert!(b.snapshot()[0].uploading.is_some());
        b.record("os", "a.mp4", &Ok(SyncOutcome::Synced("y".into())), 8);
        let h = &b.snapshot()[0];
        assert_eq!((h.uploading.clone(), h.synced), (None, 2));
    }
}
