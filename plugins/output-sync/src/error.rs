//! Failure classes of one copy/upload, and how each reaches the host.
//!
//! Transient trouble (endpoint unreachable, timeouts, 5xx, throttling) becomes
//! `RetryLater("network: ..")` / `RetryLater("throttled: ..")`, not an error: a failed call
//! counts toward the plugin's crash-loop breaker, and an outage must grow a backlog, not
//! disable the plugin. Problems only an admin can fix are typed errors with a class prefix
//! (`auth:`, `quota:`, `rejected:`) or `PluginError::Config`.

use comfyhost_sdk::hooks::output_sync::SyncOutcome;
use comfyhost_sdk::http::HttpError;
use comfyhost_sdk::types::PluginError;

/// Why a destination did not take a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncError {
    /// Unreachable, timed out, server error: try again later.
    Network(String),
    /// The destination asked us to slow down.
    Throttled(String),
    /// Credentials missing, wrong or not allowed.
    Auth(String),
    /// Destination full or over its quota.
    Quota(String),
    /// The destination refused this request for another reason (4xx).
    Rejected(String),
    /// The configuration or grants are wrong (bucket missing, directory not mounted).
    Config(String),
    /// Not a failure: a multipart upload advanced and needs another call (`part k/N of ..`).
    InProgress(String),
}

impl SyncError {
    /// The class name used in messages and host health (`network`, `auth`, ...).
    pub fn class(&self) -> &'static str {
        match self {
            SyncError::Network(_) => "network",
            SyncError::Throttled(_) => "throttled",
            SyncError::Auth(_) => "auth",
            SyncError::Quota(_) => "quota",
            SyncError::Rejected(_) => "rejected",
            SyncError::Config(_) => "config",
            SyncError::InProgress(_) => "in-progress",
        }
    }

    fn message(&self) -> &str {
        match self {
            SyncError::Network(m)
            | SyncError::Throttled(m)
            | SyncError::Auth(m)
            | SyncError::Quota(m)
            | SyncError::Rejected(m)
            | SyncError::Config(m)
            | SyncError::InProgress(m) => m,
        }
    }

    /// `class: message`, prefixed with the destination name.
    pub fn describe(&self, dest: &str) -> String {
        format!("{}: {dest}: {}", self.class(), self.message())
    }

    /// True when the host should simply ask again later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SyncError::Network(_) | SyncError::Throttled(_) | SyncError::InProgress(_)
        )
    }

    /// What the hook returns for this failure.
    pub fn into_result(self, dest: &str) -> Result<SyncOutcome, PluginError> {
        if self.is_transient() {
            return Ok(SyncOutcome::RetryLater(self.describe(dest)));
        }
        Err(self.into_error(dest))
    }

    /// The plugin error of a failure that waiting will not fix (config, auth, quota, refusal);
    /// a transient one reads as upstream too, but callers answer those with `retry-later`.
    pub fn into_error(self, dest: &str) -> PluginError {
        let text = self.describe(dest);
        match self {
            SyncError::Config(_) => PluginError::Config(text),
            _ => PluginError::Upstream(text),
        }
    }
}

impl From<HttpError> for SyncError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Timeout { .. } | HttpError::Connection { .. } | HttpError::Protocol(_) => {
                SyncError::Network(e.to_string())
            }
            HttpError::Denied { .. }
            | HttpError::InvalidUrl { .. }
            | HttpError::InvalidHeader { .. }
            | HttpError::Unavailable => SyncError::Config(e.to_string()),
            HttpError::Status {
                status,
                ref body_snippet,
            } => classify_status(status, body_snippet),
            HttpError::BodyTooLarge { .. } | HttpError::Body(_) => {
                SyncError::Rejected(e.to_string())
            }
        }
    }
}

/// Classifies an S3 error response by status and the `<Code>` of its XML body.
pub fn classify_status(status: u16, body: &str) -> SyncError {
    let code = xml_tag(body, "Code").unwrap_or_default();
    let text = if code.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {code}")
    };
    match (status, code.as_str()) {
        (_, "SlowDown" | "Throttling" | "RequestLimitExceeded" | "TooManyRequests") | (429, _) => {
            SyncError::Throttled(text)
        }
        (_, "QuotaExceeded" | "EntityTooLarge" | "InsufficientStorage" | "XMinioStorageFull")
        | (507 | 413, _) => SyncError::Quota(text),
        (_, "NoSuchBucket") => SyncError::Config(text),
        (401 | 403, _) => SyncError::Auth(text),
        (500..=599, _) => SyncError::Network(text),
        _ => SyncError::Rejected(text),
    }
}

/// Text of the first `<tag>..</tag>` in `xml`.
pub fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(xml[start..end].trim().to_owned())
}

/// Maps a destination-directory I/O error.
pub fn classify_io(e: &std::io::Error, what: &str) -> SyncError {
    use std::io::ErrorKind;
    let text = format!("{what}: {e}");
    match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => SyncError::Auth(text),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            SyncError::Quota(text)
        }
        _ => SyncError::Network(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_statuses_classify() {
        let xml = |c: &str| {
            format!("<?xml version=\"1.0\"?><Error><Code>{c}</Code><Message>m</Message></Error>")
        };
        assert_eq!(
            classify_status(403, &xml("SignatureDoesNotMatch")).class(),
            "auth"
        );
        assert_eq!(
            classify_status(403, &xml("InvalidAccessKeyId")).class(),
            "auth"
        );
        assert_eq!(classify_status(403, &xml("QuotaExceeded")).class(), "quota");
        assert_eq!(classify_status(507, "").class(), "quota");
        assert_eq!(classify_status(503, &xml("SlowDown")).class(), "throttled");
        assert_eq!(classify_status(429, "").class(), "throttled");
        assert_eq!(
            classify_status(500, &xml("InternalError")).class(),
            "network"
        );
        assert_eq!(classify_status(404, &xml("NoSuchBucket")).class(), "config");
        assert_eq!(
            classify_status(400, &xml("InvalidRequest")).class(),
            "rejected"
        );
        assert_eq!(
            classify_status(403, &xml("AccessDenied")).describe("s3"),
            "auth: s3: HTTP 403 AccessDenied"
        );
    }

    #[test]
    fn transient_failures_retry_and_others_are_typed_errors() {
        let r = SyncError::Network("refused".into()).into_result("s3");
        assert_eq!(
            r,
            Ok(SyncOutcome::RetryLater("network: s3: refused".into()))
        );
        let r = SyncError::Auth("x".into()).into_result("s3");
        assert_eq!(r, Err(PluginError::Upstream("auth: s3: x".into())));
        let r = SyncError::Quota("x".into()).into_result("s3");
        assert!(matches!(r, Err(PluginError::Upstream(m)) if m.starts_with("quota:")));
        assert!(matches!(
            SyncError::Config("x".into()).into_result("s3"),
            Err(PluginError::Config(_))
        ));
        // Progress of a multipart upload is a retry the host recognises by its prefix.
        assert_eq!(
            SyncError::InProgress("part 2/5 of /output/a.mp4".into()).into_result("s3"),
            Ok(SyncOutcome::RetryLater(
                "in-progress: s3: part 2/5 of /output/a.mp4".into()
            ))
        );
    }

    #[test]
    fn http_errors_classify() {
        let e = SyncError::from(HttpError::Connection {
            origin: "http://127.0.0.1:1".into(),
            detail: "refused".into(),
        });
        assert!(e.is_transient());
        let e = SyncError::from(HttpError::Denied {
            origin: "http://x:1".into(),
        });
        assert_eq!(e.class(), "config");
    }

    #[test]
    fn io_errors_classify() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(classify_io(&e, "write").class(), "auth");
        let e = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(classify_io(&e, "write").class(), "quota");
        let e = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(classify_io(&e, "write").class(), "network");
    }
}
