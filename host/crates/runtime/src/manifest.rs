//! `plugin.toml`: what a plugin is, which hooks it implements, what it asks for.
//!
//! ```toml
//! id = "queue-redirect"            # [a-z0-9-], 1..=64
//! version = "0.1.0"                # semver
//! name = "Queue redirect"
//! description = "Routes prompts to remote GPUs"
//! wit = "0.1.0"                    # comfyhost:plugin version the component targets
//! hooks = ["queue-router"]         # exactly the worlds the component implements (one today)
//! priority = 100                   # order in a chain; lower runs first
//! wasm = "queue_redirect.wasm"     # optional; default: <id with - replaced by _>.wasm next to the manifest
//!
//! [capabilities]
//! http = ["https://api.runpod.ai:443", "http://127.0.0.1:8189"]   # scheme://host:port, exact
//! secrets = ["RUNPOD_API_KEY"]
//! [[capabilities.dirs]]
//! path = "{output}"                # absolute, or {output} {input} {models} {user} {temp} {data}
//! guest = "/output"                # where the plugin sees it
//! access = "ro"                    # ro | rw
//! optional = ["https://api.runpod.ai:443"]  # may stay ungranted: the plugin runs without it
//! [capabilities.reasons]           # shown to the admin before approving; keyed like `optional`
//! "https://api.runpod.ai:443" = "Submits prompts to your RunPod endpoints"
//! RUNPOD_API_KEY = "Authenticates to RunPod"
//!
//! [budget]                         # defaults for every hook of this plugin
//! deadline_ms = 250
//! memory_mb = 32
//! failure = "fail-open"            # fail-open | fail-closed
//! [budget.hooks.queue-router]      # per-hook override
//! deadline_ms = 2000
//! failure = "fail-closed"
//!
//! [config]
//! schema = "config.schema.json"    # file next to the manifest, or inline with `schema_inline`
//! ```
//!
//! [`Manifest::from_toml_str`] parses and validates in one step; every rejection names the
//! field and the rule (`capabilities.http[0]: port required ...`). Unknown top-level keys are
//! rejected so a typo (`capabilites`) never silently drops a section.

mod config_schema;
mod validate;

pub use config_schema::{ConfigSchema, apply_without_schema as apply_config_without_schema};
pub use validate::{HOST_WIT_VERSION, MAX_DEADLINE_MS, MAX_MEMORY_MB};

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// The hook kinds, one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    QueueRouter,
    PromptTransform,
    StatusOverlay,
    PresetResolver,
    OutputSync,
}

impl HookKind {
    pub const ALL: [HookKind; 5] = [
        HookKind::QueueRouter,
        HookKind::PromptTransform,
        HookKind::StatusOverlay,
        HookKind::PresetResolver,
        HookKind::OutputSync,
    ];

    /// The WIT interface name (`queue-router`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::QueueRouter => "queue-router",
            HookKind::PromptTransform => "prompt-transform",
            HookKind::StatusOverlay => "status-overlay",
            HookKind::PresetResolver => "preset-resolver",
            HookKind::OutputSync => "output-sync",
        }
    }

    /// Default failure policy: routing and rewriting fail closed (a broken router must not
    /// silently send work elsewhere), observers fail open.
    pub fn default_failure_policy(self) -> FailurePolicy {
        match self {
            HookKind::QueueRouter | HookKind::PromptTransform => FailurePolicy::FailClosed,
            _ => FailurePolicy::FailOpen,
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// On failure the host behaves as if the plugin were absent.
    FailOpen,
    /// On failure the operation (e.g. the submission) fails with the plugin's error.
    FailClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirAccess {
    Ro,
    Rw,
}

/// A directory the plugin asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirRequest {
    /// Absolute host path or a placeholder (`{output}`, `{input}`, `{models}`, `{user}`, `{temp}`, `{data}`).
    pub path: String,
    /// Absolute path inside the guest.
    pub guest: String,
    pub access: DirAccess,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Outbound origins, `scheme://host:port`, matched exactly.
    #[serde(default)]
    pub http: Vec<String>,
    #[serde(default)]
    pub dirs: Vec<DirRequest>,
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Declared capabilities the plugin can run without (it degrades, e.g. static styles
    /// instead of an LLM): an http origin as written above, a secret name, or a dir's guest
    /// path. Pending optional capabilities do not hold the plugin in `needs_approval`.
    #[serde(default)]
    pub optional: Vec<String>,
    /// What each capability is for, shown to the admin before approval; keyed like `optional`.
    #[serde(default)]
    pub reasons: std::collections::BTreeMap<String, String>,
}

impl Capabilities {
    /// Keys of every declared capability (http origin as written, dir guest path, secret name).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.http
            .iter()
            .map(String::as_str)
            .chain(self.dirs.iter().map(|d| d.guest.as_str()))
            .chain(self.secrets.iter().map(String::as_str))
    }

    /// Whether the capability with this key is optional.
    pub fn is_optional(&self, key: &str) -> bool {
        self.optional.iter().any(|k| k == key)
    }
}

/// Resolved budget for one hook call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub deadline: Duration,
    pub memory_bytes: u64,
    pub failure: FailurePolicy,
}

/// The parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    pub version: semver::Version,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub wit: semver::Version,
    pub hooks: Vec<HookKind>,
    #[serde(default = "default_priority")]
    pub priority: i32,
    #[serde(default)]
    pub wasm: Option<String>,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub budget: BudgetSection,
    #[serde(default)]
    pub config: ConfigSection,
}

fn default_priority() -> i32 {
    100
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetOverride {
    pub deadline_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub failure: Option<FailurePolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSection {
    #[serde(flatten)]
    pub defaults: BudgetOverride,
    #[serde(default)]
    pub hooks: std::collections::BTreeMap<HookKind, BudgetOverride>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSection {
    /// Path of a JSON Schema file, relative to the manifest.
    pub schema: Option<String>,
    /// Or the schema inline (TOML table, converted to JSON).
    pub schema_inline: Option<serde_json::Value>,
}

/// File name of a plugin's manifest inside its directory.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// Default deadline of a hook call.
pub const DEFAULT_DEADLINE_MS: u64 = 250;
/// Default memory cap of a hook call.
pub const DEFAULT_MEMORY_MB: u64 = 32;

impl Manifest {
    /// Parses and validates a manifest.
    pub fn from_toml_str(text: &str) -> Result<Self, RuntimeError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| RuntimeError::Manifest(e.message().to_owned()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Reads and validates `<dir>/plugin.toml`.
    pub fn load(dir: &Path) -> Result<Self, RuntimeError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| RuntimeError::Manifest(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml_str(&text)
    }

    /// Checks every rule of the format; see the module doc.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        validate::manifest(self).map_err(RuntimeError::Manifest)
    }

    /// The hook this component implements (one world per component).
    pub fn hook(&self) -> HookKind {
        // `validate` guarantees exactly one hook; the fallback only serves unvalidated values.
        self.hooks.first().copied().unwrap_or(HookKind::QueueRouter)
    }

    /// File name of the component: the `wasm` field, or `<id with - replaced by _>.wasm`.
    pub fn wasm_file_name(&self) -> String {
        match &self.wasm {
            Some(name) => name.clone(),
            None => format!("{}.wasm", self.id.replace('-', "_")),
        }
    }

    /// Budget of one call of `hook`: the per-hook override, else the plugin-wide value, else
    /// the host default (250 ms, 32 MiB, and the hook's default failure policy).
    pub fn budget(&self, hook: HookKind) -> Budget {
        let per_hook = self.budget.hooks.get(&hook);
        let defaults = &self.budget.defaults;
        let deadline_ms = per_hook
            .and_then(|o| o.deadline_ms)
            .or(defaults.deadline_ms)
            .unwrap_or(DEFAULT_DEADLINE_MS);
        let memory_mb = per_hook
            .and_then(|o| o.memory_mb)
            .or(defaults.memory_mb)
            .unwrap_or(DEFAULT_MEMORY_MB);
        let failure = per_hook
            .and_then(|o| o.failure)
            .or(defaults.failure)
            .unwrap_or_else(|| hook.default_failure_policy());
        Budget {
            deadline: Duration::from_millis(deadline_ms),
            memory_bytes: memory_mb * 1024 * 1024,
            failure,
        }
    }

    /// The config schema: the inline one, or the file named by `config.schema` read from `dir`
    /// (the manifest's directory). `None` when the plugin declares no schema.
    pub fn load_config_schema(&self, dir: &Path) -> Result<Option<ConfigSchema>, RuntimeError> {
        if let Some(inline) = &self.config.schema_inline {
            return ConfigSchema::new(inline.clone()).map(Some);
        }
        let Some(file) = &self.config.schema else {
            return Ok(None);
        };
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            RuntimeError::Manifest(format!(
                "config.schema: cannot read {}: {e}",
                path.display()
            ))
        })?;
        ConfigSchema::from_json_str(&text).map(Some)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "queue-redirect"
version = "1.2.3"
name = "Queue redirect"
wit = "0.1.0"
hooks = ["queue-router"]
priority = 10

[capabilities]
http = ["https://api.runpod.ai:443"]
secrets = ["RUNPOD_API_KEY"]
[[capabilities.dirs]]
path = "{output}"
guest = "/output"
access = "ro"
[[capabilities.dirs]]
path = "/mnt/shared"
guest = "/shared"
access = "rw"

[budget]
deadline_ms = 500
failure = "fail-open"
[budget.hooks.queue-router]
deadline_ms = 2000
memory_mb = 64

[config]
schema_inline = { type = "object", properties = { endpoint = { type = "string", default = "x" } } }
"#;

    fn bad(edit: impl FnOnce(&str) -> String, expect: &str) {
        let text = edit(GOOD);
        let err = Manifest::from_toml_str(&text).unwrap_err().to_string();
        assert!(
            err.contains(expect),
            "expected {expect:?} in error, got {err:?}"
        );
    }

    #[test]
    fn good_manifest_parses() {
        let m = Manifest::from_toml_str(GOOD).unwrap();
        assert_eq!(m.id, "queue-redirect");
        assert_eq!(m.hook(), HookKind::QueueRouter);
        assert_eq!(m.priority, 10);
        assert_eq!(m.wasm_file_name(), "queue_redirect.wasm");
        assert_eq!(m.capabilities.dirs.len(), 2);
        let schema = m
            .load_config_schema(Path::new("/nonexistent"))
            .unwrap()
            .unwrap();
        assert_eq!(
            schema.apply(&serde_json::Value::Null).unwrap(),
            serde_json::json!({"endpoint": "x"})
        );
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = Manifest::from_toml_str(
            "id = \"a\"\nversion = \"0.1.0\"\nname = \"A\"\nwit = \"0.1.0\"\nhooks = [\"status-overlay\"]\nwasm = \"x.wasm\"\n",
        )
        .unwrap();
        assert_eq!(m.priority, 100);
        assert_eq!(m.wasm_file_name(), "x.wasm");
        let b = m.budget(HookKind::StatusOverlay);
        assert_eq!(b.deadline, Duration::from_millis(250));
        assert_eq!(b.memory_bytes, 32 * 1024 * 1024);
        assert_eq!(b.failure, FailurePolicy::FailOpen);
        assert_eq!(
            m.budget(HookKind::QueueRouter).failure,
            FailurePolicy::FailClosed
        );
        assert!(m.load_config_schema(Path::new("/")).unwrap().is_none());
    }

    #[test]
    fn budget_resolution_prefers_hook_then_plugin_then_default() {
        let m = Manifest::from_toml_str(GOOD).unwrap();
        let b = m.budget(HookKind::QueueRouter);
        assert_eq!(b.deadline, Duration::from_millis(2000));
        assert_eq!(b.memory_bytes, 64 * 1024 * 1024);
        // failure not overridden per hook: plugin-wide fail-open beats the hook default
        assert_eq!(b.failure, FailurePolicy::FailOpen);
    }

    #[test]
    fn bad_ids() {
        bad(|s| s.replace("queue-redirect", "Queue"), "only lowercase");
        bad(|s| s.replace("queue-redirect", "a_b"), "contains '_'");
        bad(|s| s.replace("\"queue-redirect\"", "\"\""), "1 to 64");
        bad(|s| s.replace("queue-redirect", &"a".repeat(65)), "1 to 64");
        bad(|s| s.replace("queue-redirect", "-x"), "start or end");
    }

    #[test]
    fn bad_versions() {
        bad(|s| s.replace("1.2.3", "1.2"), "version");
        bad(
            |s| s.replace("wit = \"0.1.0\"", "wit = \"0.2.0\""),
            "this host implements @0.1.0",
        );
        bad(
            |s| s.replace("wit = \"0.1.0\"", "wit = \"0.1.1\""),
            "this host implements",
        );
        bad(
            |s| s.replace("wit = \"0.1.0\"", "wit = \"1.0.0\""),
            "compatible SDK",
        );
    }

    #[test]
    fn bad_hooks() {
        bad(
            |s| s.replace("hooks = [\"queue-router\"]", "hooks = []"),
            "must name the hook",
        );
        bad(
            |s| {
                s.replace(
                    "hooks = [\"queue-router\"]",
                    "hooks = [\"queue-router\", \"output-sync\"]",
                )
            },
            "exactly one hook world",
        );
        bad(
            |s| s.replace("hooks = [\"queue-router\"]", "hooks = [\"teleport\"]"),
            "unknown variant",
        );
        bad(
            |s| s.replace("[budget.hooks.queue-router]", "[budget.hooks.output-sync]"),
            "does not implement output-sync",
        );
    }

    #[test]
    fn bad_capabilities() {
        bad(
            |s| s.replace("https://api.runpod.ai:443", "https://api.runpod.ai"),
            "capabilities.http[0]: \"https://api.runpod.ai\": port required",
        );
        bad(
            |s| s.replace("https://api.runpod.ai:443", "https://api.runpod.ai:443/v2"),
            "without a path",
        );
        bad(
            |s| s.replace("https://api.runpod.ai:443", "ws://x:1"),
            "http or https",
        );
        bad(
            |s| s.replace("\"{output}\"", "\"{outputs}\""),
            "unknown placeholder",
        );
        bad(
            |s| s.replace("\"/mnt/shared\"", "\"mnt/shared\""),
            "dirs[1].path: \"mnt/shared\" must be an absolute path",
        );
        bad(|s| s.replace("\"/mnt/shared\"", "\"/mnt/../etc\""), "'..'");
        bad(
            |s| s.replace("guest = \"/shared\"", "guest = \"shared\""),
            "dirs[1].guest",
        );
        bad(
            |s| s.replace("guest = \"/shared\"", "guest = \"/output\""),
            "used twice",
        );
        bad(
            |s| s.replace("access = \"rw\"", "access = \"write\""),
            "unknown variant",
        );
        bad(|s| s.replace("RUNPOD_API_KEY", "runpod-key"), "A-Z, 0-9");
        bad(
            |s| s.replace("[capabilities]", "[capabilities]\nnet = []"),
            "unknown field",
        );
    }

    #[test]
    fn bad_budgets() {
        bad(
            |s| s.replace("deadline_ms = 500", "deadline_ms = 0"),
            "budget.deadline_ms: 0 is out of range 1..=60000",
        );
        bad(
            |s| s.replace("deadline_ms = 2000", "deadline_ms = 60001"),
            "budget.hooks.queue-router.deadline_ms",
        );
        bad(
            |s| s.replace("memory_mb = 64", "memory_mb = 2048"),
            "memory_mb: 2048 is out of range 1..=1024",
        );
        bad(
            |s| s.replace("failure = \"fail-open\"", "failure = \"ignore\""),
            "unknown variant",
        );
    }

    #[test]
    fn bad_misc() {
        bad(
            |s| s.replace("name = \"Queue redirect\"", "name = \" \""),
            "name: must not be empty",
        );
        bad(
            |s| format!("capabilites = {{}}\n{s}"),
            "unknown field `capabilites`",
        );
        bad(
            |s| s.replace("priority = 10", "priority = 10\nwasm = \"../x.wasm\""),
            "plain file name",
        );
        bad(
            |s| s.replace("priority = 10", "priority = 10\nwasm = \"x.so\""),
            "must end in .wasm",
        );
        bad(
            |s| s.replace("[config]", "[config]\nschema = \"s.json\""),
            "not both",
        );
        bad(|_| "id = ".into(), "invalid");
    }

    #[test]
    fn schema_file_is_read_next_to_manifest() {
        let dir = std::env::temp_dir().join(format!("comfyhost-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = GOOD.replace(
            "schema_inline = { type = \"object\", properties = { endpoint = { type = \"string\", default = \"x\" } } }",
            "schema = \"config.schema.json\"",
        );
        std::fs::write(dir.join(MANIFEST_FILE), &text).unwrap();
        let m = Manifest::load(&dir).unwrap();
        let err = m.load_config_schema(&dir).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
        std::fs::write(
            dir.join("config.schema.json"),
            r#"{"type":"object","required":["k"]}"#,
        )
        .unwrap();
        let schema = m.load_config_schema(&dir).unwrap().unwrap();
        assert!(schema.apply(&serde_json::json!({})).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        let err = Manifest::load(&dir).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
