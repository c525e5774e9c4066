//! Probes the ComfyUI Python environment: torch build, arch list, attention packages, and
//! the flags `main.py --help` accepts. Cached per (interpreter, its mtime, main.py mtime)
//! plus the mtimes of the site-packages directories the probe reports, so installing a
//! package invalidates the cache.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::inventory::CudaVersion;

/// Marker that prefixes the probe's JSON line (imports may print to stdout).
const MARKER: &str = "COMFYHOST_PROBE ";

/// The Python snippet run with the configured interpreter. Prints one JSON object.
pub const PROBE_SCRIPT: &str = r#"
import importlib, json, os, sys, sysconfig
out = {"python": sys.version.split()[0], "errors": {}, "site_packages": []}
for key in ("purelib", "platlib"):
    p = sysconfig.get_paths().get(key)
    if p and p not in out["site_packages"]:
        out["site_packages"].append(p)
def err(e):
    return "%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
def version(mod, dist):
    v = getattr(mod, "__version__", None)
    if v:
        return str(v)
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:
        return "unknown"
torch = None
try:
    import torch
    out["torch_version"] = str(torch.__version__)
    out["torch_cuda"] = torch.version.cuda
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out["cuda_available"] = bool(torch.cuda.is_available())
        except Exception as e:
            out["cuda_available"] = False
            out["errors"]["cuda"] = err(e)
    # e.g. "CUDA initialization: The NVIDIA driver on your system is too old (found version 12020)..."
    msgs = [str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()]
    if msgs and "cuda" not in out["errors"]:
        out["errors"]["cuda"] = msgs[0]
    try:
        out["arch_list"] = list(torch.cuda.get_arch_list())
    except Exception as e:
        out["errors"]["arch_list"] = err(e)
except Exception as e:
    out["errors"]["torch"] = err(e)
mods = {}
for name, dist in (("sageattention", "sageattention"), ("flash_attn", "flash-attn"), ("xformers", "xformers"), ("triton", "triton")):
    try:
        mods[name] = importlib.import_module(name)
        out[name] = version(mods[name], dist)
    except Exception as e:
        out[name] = None
        out["errors"][name] = err(e)
try:
    ck = importlib.import_module("comfy_kitchen")
    out["comfy_kitchen_attention"] = bool(ck.int8_attention_is_available())
except Exception as e:
    out["comfy_kitchen_attention"] = None
    out["errors"]["comfy_kitchen"] = err(e)
if os.environ.get("COMFYHOST_SMOKE") == "1" and out.get("cuda_available"):
    smoke = {}
    if "sageattention" in mods:
        try:
            q = torch.randn(1, 2, 128, 64, device="cuda", dtype=torch.float16)
            mods["sageattention"].sageattn(q, q, q, tensor_layout="HND", is_causal=False)
            torch.cuda.synchronize()
            smoke["sageattention"] = None
        except Exception as e:
            smoke["sageattention"] = err(e)
    if "flash_attn" in mods:
        try:
            q = torch.randn(1, 128, 2, 64, device="cuda", dtype=torch.float16)
            mods["flash_attn"].flash_attn_func(q, q, q)
            torch.cuda.synchronize()
            smoke["flash_attn"] = None
        except Exception as e:
            smoke["flash_attn"] = err(e)
    out["smoke"] = smoke
print("COMFYHOST_PROBE " + json.dumps(out))
"#;

/// What the Python environment provides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvProbe {
    /// Python version.
    #[serde(default)]
    pub python: Option<String>,
    /// `torch.__version__`, e.g. `2.8.0+cu128`; `None` when torch does not import.
    #[serde(default)]
    pub torch_version: Option<String>,
    /// `torch.version.cuda` (`None` for CPU-only builds).
    #[serde(default)]
    pub torch_cuda: Option<String>,
    /// `torch.cuda.get_arch_list()`.
    #[serde(default)]
    pub arch_list: Vec<String>,
    /// `torch.cuda.is_available()`.
    #[serde(default)]
    pub cuda_available: bool,
    /// SageAttention version when importable.
    #[serde(default)]
    pub sageattention: Option<String>,
    /// flash-attn version when importable.
    #[serde(default)]
    pub flash_attn: Option<String>,
    /// xformers version when importable.
    #[serde(default)]
    pub xformers: Option<String>,
    /// triton version when importable.
    #[serde(default)]
    pub triton: Option<String>,
    /// `comfy_kitchen.int8_attention_is_available()` when comfy_kitchen is importable (what
    /// `--use-ck-attention` needs; ComfyUI exits at start without it).
    #[serde(default)]
    pub comfy_kitchen_attention: Option<bool>,
    /// One-call smoke tests on the GPU: package → `None` (passed) or the error. Absent when
    /// not run (no CUDA, or disabled).
    #[serde(default)]
    pub smoke: BTreeMap<String, Option<String>>,
    /// Import / call errors by package.
    #[serde(default)]
    pub errors: BTreeMap<String, String>,
    /// site-packages directories (for cache invalidation).
    #[serde(default)]
    pub site_packages: Vec<PathBuf>,
}

impl EnvProbe {
    /// `torch.version.cuda` parsed.
    pub fn torch_cuda_version(&self) -> Option<CudaVersion> {
        self.torch_cuda.as_deref().and_then(CudaVersion::parse)
    }

    /// Smoke test outcome for a package: `Some(Ok)` passed, `Some(Err)` failed, `None` not run.
    pub fn smoke_result(&self, package: &str) -> Option<Result<(), &str>> {
        self.smoke.get(package).map(|r| match r {
            None => Ok(()),
            Some(e) => Err(e.as_str()),
        })
    }
}

/// Why the environment could not be probed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeError {
    /// The interpreter could not be started.
    #[error("cannot run {interpreter}: {reason}")]
    Spawn {
        /// Interpreter path.
        interpreter: String,
        /// OS error.
        reason: String,
    },
    /// It ran past the timeout.
    #[error("{what} did not finish within {secs} s")]
    Timeout {
        /// What was running.
        what: String,
        /// Timeout in seconds.
        secs: u64,
    },
    /// It printed no probe line.
    #[error("probe printed no result (exit {status}); stderr: {stderr_tail}")]
    NoOutput {
        /// Exit status text.
        status: String,
        /// Last stderr lines.
        stderr_tail: String,
    },
    /// The probe line was not valid JSON.
    #[error("probe output is not valid JSON: {0}")]
    BadJson(String),
    /// `main.py --help` failed.
    #[error("`main.py --help` failed (exit {status}): {stderr_tail}")]
    Help {
        /// Exit status text.
        status: String,
        /// Last stderr lines.
        stderr_tail: String,
    },
}

/// Parses the probe's stdout: the last line starting with the marker.
pub fn parse_probe_output(stdout: &str) -> Option<Result<EnvProbe, ProbeError>> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.trim_end().strip_prefix(MARKER))?;
    Some(serde_json::from_str(line).map_err(|e| ProbeError::BadJson(e.to_string())))
}

/// Extracts every `--flag` from argparse `--help` output.
pub fn parse_help_flags(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let bytes = help.as_bytes();
    let mut i = 0;
    while let Some(pos) = help[i..].find("--") {
        let at = i + pos;
        let before_ok = at == 0
            || matches!(
                bytes[at - 1],
                b' ' | b'\t' | b'\n' | b'[' | b',' | b'(' | b'|' | b'`'
            );
        let mut end = at + 2;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'-' || bytes[end] == b'_')
        {
            end += 1;
        }
        if before_ok && end > at + 2 && bytes[at + 2].is_ascii_alphanumeric() {
            flags.insert(help[at..end].trim_end_matches('-').to_owned());
        }
        i = end.max(at + 2);
    }
    flags
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Inputs of a probe.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// Python interpreter of the ComfyUI venv.
    pub interpreter: PathBuf,
    /// ComfyUI checkout (holds `main.py`).
    pub comfyui_dir: PathBuf,
    /// Limit for each Python run.
    pub timeout: Duration,
    /// Run one tiny sage/flash call on the GPU.
    pub smoke_test: bool,
    /// `CUDA_VISIBLE_DEVICES` for the probe (same as ComfyUI will get).
    pub cuda_visible_devices: Option<String>,
    /// Optional JSON cache file surviving host restarts.
    pub cache_file: Option<PathBuf>,
}

/// Probe results (each part may fail independently).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// The environment probe.
    pub env: Result<EnvProbe, ProbeError>,
    /// Flags accepted by `main.py --help`.
    pub accepted_flags: Result<BTreeSet<String>, ProbeError>,
    /// Whether this came from the cache.
    #[serde(default)]
    pub cached: bool,
}

async fn run_python(
    t: &ProbeTarget,
    args: &[&str],
    smoke: bool,
    what: &str,
) -> Result<std::process::Output, ProbeError> {
    let mut cmd = Command::new(&t.interpreter);
    cmd.args(args)
        .current_dir(&t.comfyui_dir)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if smoke {
        cmd.env("COMFYHOST_SMOKE", "1");
    }
    if let Some(v) = &t.cuda_visible_devices {
        cmd.env("CUDA_VISIBLE_DEVICES", v);
    }
    match tokio::time::timeout(t.timeout, cmd.output()).await {
        Err(_) => Err(ProbeError::Timeout {
            what: what.to_owned(),
            secs: t.timeout.as_secs(),
        }),
        Ok(Err(e)) => Err(ProbeError::Spawn {
            interpreter: t.interpreter.display().to_string(),
            reason: e.to_string(),
        }),
        Ok(Ok(o)) => Ok(o),
    }
}

/// Runs the environment probe (no cache).
pub async fn probe_env(t: &ProbeTarget) -> Result<EnvProbe, ProbeError> {
    let out = run_python(t, &["-c", PROBE_SCRIPT], t.smoke_test, "environment probe").await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match parse_probe_output(&stdout) {
        Some(r) => r,
        None => Err(ProbeError::NoOutput {
            status: out.status.to_string(),
            stderr_tail: tail(&String::from_utf8_lossy(&out.stderr), 3),
        }),
    }
}

/// Runs `main.py --help` and returns the accepted flags (no cache).
pub async fn probe_flags(t: &ProbeTarget) -> Result<BTreeSet<String>, ProbeError> {
    let out = run_python(t, &["main.py", "--help"], false, "main.py --help").await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let flags = parse_help_flags(&stdout);
    if !out.status.success() || !flags.contains("--help") {
        return Err(ProbeError::Help {
            status: out.status.to_string(),
            stderr_tail: tail(&String::from_utf8_lossy(&out.stderr), 3),
        });
    }
    Ok(flags)
}

/// Cache key: what invalidates a probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProbeKey {
    /// Interpreter path as configured.
    pub interpreter: PathBuf,
    /// Interpreter mtime (symlink and target), seconds.
    pub interpreter_mtime: (u64, u64),
    /// ComfyUI checkout.
    pub comfyui_dir: PathBuf,
    /// `main.py` mtime, seconds.
    pub main_py_mtime: u64,
    /// Whether the smoke test was requested.
    pub smoke_test: bool,
}

fn mtime_secs(m: std::io::Result<std::fs::Metadata>) -> u64 {
    m.and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn mtime_nanos(p: &Path) -> Option<u128> {
    let t: SystemTime = std::fs::metadata(p).and_then(|m| m.modified()).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_nanos())
}

impl ProbeKey {
    /// Computes the key from the file system.
    pub fn for_target(t: &ProbeTarget) -> Self {
        Self {
            interpreter: t.interpreter.clone(),
            interpreter_mtime: (
                mtime_secs(std::fs::symlink_metadata(&t.interpreter)),
                mtime_secs(std::fs::metadata(&t.interpreter)),
            ),
            comfyui_dir: t.comfyui_dir.clone(),
            main_py_mtime: mtime_secs(std::fs::metadata(t.comfyui_dir.join("main.py"))),
            smoke_test: t.smoke_test,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    key: ProbeKey,
    /// site-packages dir → mtime (ns) at probe time.
    site_mtimes: Vec<(PathBuf, Option<u128>)>,
    outcome: ProbeOutcome,
}

impl CacheEntry {
    fn fresh(&self, key: &ProbeKey) -> bool {
        &self.key == key && self.site_mtimes.iter().all(|(p, m)| mtime_nanos(p) == *m)
    }
}

fn memory() -> &'static Mutex<HashMap<PathBuf, CacheEntry>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, CacheEntry>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Forgets in-memory probe results (the JSON file cache, if any, stays).
pub fn clear_memory_cache() {
    if let Ok(mut m) = memory().lock() {
        m.clear();
    }
}

/// Probes the environment and flags, reusing a cached result while nothing changed.
/// Failed probes are not cached (they are retried next start).
pub async fn probe_cached(t: &ProbeTarget) -> ProbeOutcome {
    let key = ProbeKey::for_target(t);
    let hit = memory()
        .lock()
        .ok()
        .and_then(|m| m.get(&t.interpreter).filter(|e| e.fresh(&key)).cloned())
        .or_else(|| {
            let path = t.cache_file.as_ref()?;
            let text = std::fs::read_to_string(path).ok()?;
            let e: CacheEntry = serde_json::from_str(&text).ok()?;
            e.fresh(&key).then_some(e)
        });
    if let Some(e) = hit {
        let mut o = e.outcome;
        o.cached = true;
        return o;
    }
    let (env, accepted_flags) = tokio::join!(probe_env(t), probe_flags(t));
    let outcome = ProbeOutcome {
        env,
        accepted_flags,
        cached: false,
    };
    if let (Ok(env), Ok(_)) = (&outcome.env, &outcome.accepted_flags) {
        let entry = CacheEntry {
            key,
            site_mtimes: env
                .site_packages
                .iter()
                .map(|p| (p.clone(), mtime_nanos(p)))
                .collect(),
            outcome: outcome.clone(),
        };
        if let Some(path) = &t.cache_file {
            match serde_json::to_string_pretty(&entry) {
                Ok(s) => {
                    if let Err(e) = std::fs::write(path, s) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write GPU probe cache");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialise GPU probe cache"),
            }
        }
        if let Ok(mut m) = memory().lock() {
            m.insert(t.interpreter.clone(), entry);
        }
    }
    outcome
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn help_flags_from_argparse_output() {
        let help = "usage: main.py [-h] [--listen [IP]] [--port PORT]\n               [--use-split-cross-attention | --use-sage-attention]\n\noptions:\n  -h, --help            show this help message and exit\n  --disable-xformers    Disable xformers.\n  --fast [FAST ...]     Enable some untested... e.g. --fast fp16_accumulation\n  --cache-lru CACHE_LRU  a--b not-a-flag\n";
        let f = parse_help_flags(help);
        for want in [
            "--help",
            "--listen",
            "--port",
            "--use-split-cross-attention",
            "--use-sage-attention",
            "--disable-xformers",
            "--fast",
            "--cache-lru",
        ] {
            assert!(f.contains(want), "{want} missing from {f:?}");
        }
        assert!(!f.iter().any(|x| x == "--b"), "{f:?}");
    }

    #[test]
    fn probe_output_uses_last_marker_line() {
        let out = "warning: something\nCOMFYHOST_PROBE {\"torch_version\":\"2.8.0+cu128\",\"torch_cuda\":\"12.8\",\"arch_list\":[\"sm_120\"],\"cuda_available\":true,\"sageattention\":\"2.2.0\",\"flash_attn\":null,\"xformers\":null,\"triton\":\"3.4.0\",\"errors\":{}}\n";
        let p = parse_probe_output(out).unwrap().unwrap();
        assert_eq!(p.torch_cuda_version(), Some(CudaVersion::new(12, 8)));
        assert_eq!(p.sageattention.as_deref(), Some("2.2.0"));
        assert!(parse_probe_output("nothing").is_none());
        assert!(matches!(
            parse_probe_output("COMFYHOST_PROBE {bad"),
            Some(Err(ProbeError::BadJson(_)))
        ));
    }
}
