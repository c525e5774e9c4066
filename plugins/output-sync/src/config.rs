//! The plugin's configuration (mirrors `config.schema.json`) and its checks.

use serde::Deserialize;

use crate::template;

/// Whole configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub destinations: Vec<Destination>,
    /// Empty: every kind.
    #[serde(default)]
    pub include_kinds: Vec<String>,
    /// Empty: every extension. Compared case-insensitively, without the dot.
    #[serde(default)]
    pub include_extensions: Vec<String>,
    #[serde(default)]
    pub exclude_extensions: Vec<String>,
    /// A file younger than this (by mtime) is not complete yet.
    #[serde(default = "default_min_age_ms")]
    pub min_age_ms: u64,
    /// Files above this size are skipped.
    #[serde(default = "default_max_file_mb")]
    pub max_file_mb: u64,
    /// S3: files above this use multipart upload; smaller ones one `PUT` (body in memory).
    #[serde(default = "default_multipart_threshold_mb")]
    pub multipart_threshold_mb: u64,
    /// S3 multipart part size (grown when a file would need more than 10 000 parts).
    #[serde(default = "default_part_size_mb")]
    pub part_size_mb: u64,
    /// S3 multipart: one call uploads parts for about this long, then answers `in-progress`.
    #[serde(default = "default_multipart_call_budget_ms")]
    pub multipart_call_budget_ms: u64,
}

fn default_min_age_ms() -> u64 {
    2000
}
fn default_max_file_mb() -> u64 {
    4096
}
fn default_multipart_threshold_mb() -> u64 {
    16
}
fn default_part_size_mb() -> u64 {
    8
}
fn default_multipart_call_budget_ms() -> u64 {
    15_000
}

/// Largest `max_file_mb`: S3's 5 TiB object limit.
pub const MAX_FILE_MB: u64 = 5 * 1024 * 1024;
/// Largest `multipart_threshold_mb` (a single `PUT` holds the file in memory).
pub const MAX_THRESHOLD_MB: u64 = 256;
/// `part_size_mb` bounds: S3's 5 MiB minimum; 512 MiB keeps a part within plugin memory.
pub const PART_SIZE_MB: std::ops::RangeInclusive<u64> = 5..=512;
/// Largest `multipart_call_budget_ms`: leaves half the 30 s call deadline for the last part.
pub const MAX_CALL_BUDGET_MS: u64 = 25_000;

/// One destination.
#[derive(Debug, Clone, Deserialize)]
pub struct Destination {
    /// Stable id (part of the sync record key).
    pub name: String,
    #[serde(default = "default_template")]
    pub template: String,
    /// Allows a template without `{user}`.
    #[serde(default)]
    pub shared: bool,
    /// When set, only these user ids (`anonymous` for unauthenticated jobs) reach it.
    #[serde(default)]
    pub users: Option<Vec<String>>,
    /// Delete the copy here when its output is deleted at the source (the host's removal cap
    /// guards against mass deletion). Off by default: a destination is an archive.
    #[serde(default)]
    pub mirror_deletes: bool,
    #[serde(flatten)]
    pub target: Target,
}

fn default_template() -> String {
    "{user}/{date}/{filename}".to_owned()
}

/// Where a destination writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// A granted read-write directory (its guest path).
    Dir { path: String },
    /// An S3-compatible bucket.
    S3(S3Target),
}

/// S3 settings.
#[derive(Debug, Clone, Deserialize)]
pub struct S3Target {
    /// `http(s)://host[:port]`, no path.
    pub endpoint: String,
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub prefix: String,
    /// `endpoint/bucket/key` (true) or `bucket.endpoint/key` (false).
    #[serde(default = "default_true")]
    pub path_style: bool,
    #[serde(default = "default_access_secret")]
    pub access_key_secret: String,
    #[serde(default = "default_secret_secret")]
    pub secret_key_secret: String,
    #[serde(default)]
    pub session_token_secret: Option<String>,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_access_secret() -> String {
    "S3_ACCESS_KEY_ID".to_owned()
}
fn default_secret_secret() -> String {
    "S3_SECRET_ACCESS_KEY".to_owned()
}

impl Config {
    /// Checks what the schema cannot: names unique, templates valid and per-user unless
    /// `shared`, endpoints well-formed.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_sizes()?;
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.destinations {
            if d.name.is_empty()
                || d.name.len() > 32
                || !d
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(format!(
                    "destination name `{}` must be 1-32 of [a-z0-9_-]",
                    d.name
                ));
            }
            if !seen.insert(d.name.as_str()) {
                return Err(format!("destination name `{}` is used twice", d.name));
            }
            let vars = template::placeholders(&d.template)
                .map_err(|e| format!("destination `{}`: {e}", d.name))?;
            if !vars.iter().any(|v| v == "filename") {
                return Err(format!(
                    "destination `{}`: template must contain {{filename}}",
                    d.name
                ));
            }
            if !d.shared && !vars.iter().any(|v| v == "user") {
                return Err(format!(
                    "destination `{}`: template must contain {{user}} (or set shared = true)",
                    d.name
                ));
            }
            match &d.target {
                Target::Dir { path } if !path.starts_with('/') => {
                    return Err(format!(
                        "destination `{}`: path must be the absolute guest path of a granted directory",
                        d.name
                    ));
                }
                Target::S3(s3) => {
                    let rest = s3
                        .endpoint
                        .strip_prefix("https://")
                        .or_else(|| s3.endpoint.strip_prefix("http://"))
                        .ok_or_else(|| {
                            format!(
                                "destination `{}`: endpoint must be http(s)://host[:port]",
                                d.name
                            )
                        })?;
                    if rest.is_empty() || rest.trim_end_matches('/').contains('/') {
                        return Err(format!(
                            "destination `{}`: endpoint must be http(s)://host[:port] without a path",
                            d.name
                        ));
                    }
                    if s3.bucket.is_empty() {
                        return Err(format!("destination `{}`: bucket is empty", d.name));
                    }
                }
                Target::Dir { .. } => {}
            }
        }
        Ok(())
    }

    /// The size settings are within S3's and the sandbox's bounds.
    fn validate_sizes(&self) -> Result<(), String> {
        if !(1..=MAX_FILE_MB).contains(&self.max_file_mb) {
            return Err(format!("max_file_mb must be 1..={MAX_FILE_MB}"));
        }
        if !(1..=MAX_THRESHOLD_MB).contains(&self.multipart_threshold_mb) {
            return Err(format!(
                "multipart_threshold_mb must be 1..={MAX_THRESHOLD_MB}"
            ));
        }
        if !PART_SIZE_MB.contains(&self.part_size_mb) {
            return Err(format!(
                "part_size_mb must be {}..={}",
                PART_SIZE_MB.start(),
                PART_SIZE_MB.end()
            ));
        }
        if self.multipart_call_budget_ms > MAX_CALL_BUDGET_MS {
            return Err(format!(
                "multipart_call_budget_ms must be at most {MAX_CALL_BUDGET_MS}"
            ));
        }
        Ok(())
    }

    /// Multipart settings in bytes, for the S3 sink.
    pub fn multipart(&self) -> crate::s3::MultipartSettings {
        const MIB: u64 = 1 << 20;
        crate::s3::MultipartSettings {
            threshold: self.multipart_threshold_mb.saturating_mul(MIB),
            part_size: self.part_size_mb.saturating_mul(MIB),
            call_budget_ms: self.multipart_call_budget_ms,
            call_started_ms: 0,
        }
    }

    /// Whether a file of `kind` named `filename` is wanted at all.
    pub fn wants(&self, kind: &str, filename: &str) -> bool {
        let ext = filename
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let norm = |e: &String| e.trim_start_matches('.').to_ascii_lowercase();
        if !self.include_kinds.is_empty() && !self.include_kinds.iter().any(|k| k == kind) {
            return false;
        }
        if !self.include_extensions.is_empty()
            && !self.include_extensions.iter().any(|e| norm(e) == ext)
        {
            return false;
        }
        !self.exclude_extensions.iter().any(|e| norm(e) == ext)
    }
}

impl Destination {
    /// Whether files of `user` (`None`: anonymous) may reach this destination.
    pub fn accepts_user(&self, user: Option<&str>) -> bool {
        match &self.users {
            None => true,
            Some(list) => {
                let who = user.unwrap_or(template::ANONYMOUS);
                list.iter().any(|u| u == who)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Config {
        comfyhost_sdk::config::parse::<Config>(json).unwrap()
    }

    #[test]
    fn defaults_apply() {
        let c = parse(r#"{"destinations":[{"name":"nas","kind":"dir","path":"/sync"}]}"#);
        c.validate().unwrap();
        assert_eq!(c.min_age_ms, 2000);
        assert_eq!(
            (
                c.max_file_mb,
                c.multipart_threshold_mb,
                c.part_size_mb,
                c.multipart_call_budget_ms
            ),
            (4096, 16, 8, 15_000)
        );
        let m = c.multipart();
        assert_eq!(
            (m.threshold, m.part_size, m.call_budget_ms),
            (16 << 20, 8 << 20, 15_000)
        );
        assert_eq!(c.destinations[0].template, "{user}/{date}/{filename}");
        let c = parse(
            r#"{"destinations":[{"name":"s3","kind":"s3","endpoint":"http://127.0.0.1:9000","bucket":"b"}]}"#,
        );
        c.validate().unwrap();
        match &c.destinations[0].target {
            Target::S3(s) => {
                assert!(s.path_style);
                assert_eq!(s.region, "us-east-1");
                assert_eq!(s.access_key_secret, "S3_ACCESS_KEY_ID");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_configs_are_refused() {
        for (json, needle) in [
            (
                r#"{"destinations":[{"name":"a","kind":"dir","path":"/s","template":"{date}/{filename}"}]}"#,
                "{user}",
            ),
            (
                r#"{"destinations":[{"name":"a","kind":"dir","path":"/s","template":"{user}"}]}"#,
                "{filename}",
            ),
            (
                r#"{"destinations":[{"name":"a","kind":"dir","path":"/s"},{"name":"a","kind":"dir","path":"/t"}]}"#,
                "twice",
            ),
            (
                r#"{"destinations":[{"name":"a","kind":"dir","path":"rel"}]}"#,
                "absolute",
            ),
            (
                r#"{"destinations":[{"name":"a","kind":"s3","endpoint":"ftp://x","bucket":"b"}]}"#,
                "endpoint",
            ),
            (
                r#"{"destinations":[{"name":"a","kind":"s3","endpoint":"http://x:1/p","bucket":"b"}]}"#,
                "without a path",
            ),
            (
                r#"{"destinations":[{"name":"A B","kind":"dir","path":"/s"}]}"#,
                "[a-z0-9_-]",
            ),
            (r#"{"part_size_mb":4}"#, "part_size_mb"),
            (r#"{"part_size_mb":513}"#, "part_size_mb"),
            (r#"{"max_file_mb":0}"#, "max_file_mb"),
            (r#"{"max_file_mb":5242881}"#, "max_file_mb"),
            (
                r#"{"multipart_threshold_mb":257}"#,
                "multipart_threshold_mb",
            ),
            (
                r#"{"multipart_call_budget_ms":25001}"#,
                "multipart_call_budget_ms",
            ),
        ] {
            let err = parse(json).validate().unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
        // shared lifts the {user} requirement.
        parse(r#"{"destinations":[{"name":"a","kind":"dir","path":"/s","template":"{filename}","shared":true}]}"#)
            .validate()
            .unwrap();
    }

    #[test]
    fn filters_by_kind_and_extension() {
        let c = parse(r#"{"include_kinds":["image","video"],"exclude_extensions":[".WEBP"]}"#);
        assert!(c.wants("image", "a.png"));
        assert!(!c.wants("image", "a.webp"));
        assert!(!c.wants("audio", "a.flac"));
        let c = parse(r#"{"include_extensions":["png"]}"#);
        assert!(c.wants("image", "A.PNG"));
        assert!(!c.wants("image", "a.jpg"));
        assert!(!c.wants("other", "noext"));
        assert!(parse("{}").wants("other", "noext"));
    }

    #[test]
    fn user_allow_lists() {
        let c = parse(
            r#"{"destinations":[{"name":"a","kind":"dir","path":"/s","users":["alice","anonymous"]},{"name":"b","kind":"dir","path":"/t"}]}"#,
        );
        assert!(c.destinations[0].accepts_user(Some("alice")));
        assert!(!c.destinations[0].accepts_user(Some("bob")));
        assert!(c.destinations[0].accepts_user(None));
        assert!(c.destinations[1].accepts_user(Some("bob")));
    }
}
