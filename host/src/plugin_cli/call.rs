//! `comfyhost plugin call <dir-or-wasm>`: one hook call in the real sandbox (the host's engine,
//! memory cap, deadline and capability checks), with no server: the plugin's answer, its log,
//! the time and the memory it took.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use comfyhost_runtime::HookKind;
use comfyhost_runtime::capabilities::kv::MemoryKv;
use comfyhost_runtime::capabilities::log::MemoryLogSink;
use comfyhost_runtime::engine::{EngineConfig, PluginEngine};
use comfyhost_runtime::grants::{self, DirGrant, DirRoots, Grants};
use comfyhost_runtime::manifest::Manifest;
use comfyhost_runtime::registry::{EnvSecrets, SecretSource};
use comfyhost_runtime::sandbox::{CallEnv, CallUsage};
use comfyhost_runtime::types::{
    ExecutionEvent, JobContext, OutputFile, OutputKind, Submission, User,
};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct CallArgs {
    /// A plugin folder (`plugin.toml` beside the component, or a cargo crate with a built
    /// `target/wasm32-wasip2/{release,debug}/<crate>.wasm`), or a `.wasm` file.
    pub plugin: PathBuf,
    /// The manifest, when `plugin` is a `.wasm` file with no `plugin.toml` above it.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// API-format workflow (ComfyUI's "Export (API)") or a whole `POST /prompt` body; for
    /// queue-router, prompt-transform and preset-resolver.
    #[arg(long)]
    pub workflow: Option<PathBuf>,
    /// Plugin configuration (JSON), validated and completed with the schema's defaults as the
    /// host does. Default `{}`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Grant a declared capability: `all`, `http=<origin>`, `dir=<guest path>`, `secret=<NAME>`
    /// (values from `COMFYHOST_SECRET_<NAME>`, as in the host). Repeatable.
    #[arg(long = "grant", value_name = "GRANT")]
    pub grants: Vec<String>,
    /// Host folder for a directory placeholder: `output=<path>`, `input=`, `models=`, `user=`,
    /// `temp=`, `data=`. Repeatable.
    #[arg(long = "root", value_name = "NAME=PATH")]
    pub roots: Vec<String>,
    /// The submitting user (queue-router, prompt-transform); `--admin` makes them an admin.
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub admin: bool,
    /// output-sync: the output file to hand the plugin (its guest path is `/output/<name>`).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What one call printed.
struct Report {
    hook: HookKind,
    outcome: Result<Value, String>,
    calls: Vec<(String, Result<Value, String>)>,
}

pub async fn run(args: CallArgs) -> anyhow::Result<()> {
    let (dir, manifest, wasm_path) = locate(&args)?;
    let wasm =
        std::fs::read(&wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
    let hook = manifest.hook();
    let config = plugin_config(&args, &manifest, &dir)?;
    let grants = parse_grants(&args.grants, &manifest)?;
    let roots = parse_roots(&args.roots)?;
    let caps = grants::effective(&manifest, &grants, &roots);
    let pending = grants::pending(&manifest, &grants);
    let secrets: HashMap<String, String> = caps
        .secrets
        .iter()
        .filter_map(|n| EnvSecrets.get(n).map(|v| (n.clone(), v)))
        .collect();

    let cache = tempfile::tempdir().context("creating a compile cache")?;
    let engine = PluginEngine::new(EngineConfig {
        cache_dir: cache.path().to_path_buf(),
        pool_instances: 4,
        max_memory_bytes: 1 << 30,
    })?;
    let compiled = engine
        .compile(&manifest.id, hook, &wasm)
        .with_context(|| format!("compiling {}", wasm_path.display()))?;
    let log = Arc::new(MemoryLogSink::new());
    let usage = Arc::new(CallUsage::default());
    let budget = manifest.budget(hook);
    let env = CallEnv {
        plugin_id: manifest.id.as_str().into(),
        prompt_id: Some("cli-call".into()),
        budget,
        caps: Arc::new(caps),
        config_json: config.to_string().into(),
        secrets: Arc::new(secrets),
        kv: Arc::new(MemoryKv::new()),
        log: log.clone(),
        host_info: Arc::new(vec![
            ("host_version".into(), env!("CARGO_PKG_VERSION").into()),
            ("comfyui_mode".into(), "plugin-call".into()),
        ]),
        usage: Some(usage.clone()),
        budgets: comfyhost_runtime::sandbox::budget::SharedBudgets::standalone(),
    };

    let user = args.user.clone().map(|id| User {
        id,
        is_admin: args.admin,
    });
    let report = match hook {
        HookKind::QueueRouter => {
            let sub = submission(&args, user)?;
            let r = compiled.route(&env, &sub, &[]).await;
            one(hook, r)
        }
        HookKind::PromptTransform => {
            let sub = submission(&args, user)?;
            let r = compiled.transform(&env, &sub).await;
            one(hook, r)
        }
        HookKind::PresetResolver => {
            let wf = workflow(&args)?;
            let r = compiled.resolve(&env, &wf, &[]).await;
            one(hook, r)
        }
        HookKind::OutputSync => {
            let file = output_file(&args, user)?;
            let r = compiled.on_output(&env, &file).await;
            one(hook, r)
        }
        HookKind::StatusOverlay => {
            let mut calls = Vec::new();
            for (name, ev) in overlay_events() {
                let job = JobContext {
                    prompt_id: "cli-call".into(),
                    client_id: None,
                    user: user.clone(),
                    backend: "local".into(),
                    gpu: None,
                    nodes_total: 3,
                    nodes_done: u32::from(matches!(ev, ExecutionEvent::Succeeded)) * 3,
                    elapsed_ms: 1000,
                    since_last_event_ms: 100,
                };
                let r = compiled.on_event(&env, &job, &ev).await;
                calls.push((name.to_string(), to_value(r)));
            }
            let outcome = calls
                .iter()
                .find_map(|(_, r)| r.as_ref().err().cloned())
                .map_or(Ok(Value::Null), Err);
            Report {
                hook,
                outcome,
                calls,
            }
        }
    };

    let logs: Vec<Value> = log
        .records()
        .into_iter()
        .map(|r| json!({"level": format!("{:?}", r.level).to_lowercase(), "message": r.message}))
        .collect();
    let elapsed = usage.elapsed();
    let peak = usage.peak_memory_bytes();
    let pending: Vec<Value> = pending
        .iter()
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
        .collect();
    if args.json {
        let calls: Vec<Value> = report
            .calls
            .iter()
            .map(|(name, r)| match r {
                Ok(v) => json!({"event": name, "result": v}),
                Err(e) => json!({"event": name, "error": e}),
            })
            .collect();
        let mut out = json!({
            "plugin": manifest.id,
            "hook": report.hook.as_str(),
            "wasm": wasm_path.display().to_string(),
            "logs": logs,
            "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
            "peak_memory_bytes": peak,
            "memory_budget_bytes": budget.memory_bytes,
            "deadline_ms": u64::try_from(budget.deadline.as_millis()).unwrap_or(u64::MAX),
            "ungranted": pending,
        });
        match &report.outcome {
            Ok(v) => out["result"] = v.clone(),
            Err(e) => out["error"] = Value::String(e.clone()),
        }
        if !calls.is_empty() {
            out["calls"] = Value::Array(calls);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} {} ({}) from {}",
            manifest.id,
            manifest.version,
            report.hook,
            wasm_path.display()
        );
        for (name, r) in &report.calls {
            match r {
                Ok(v) => println!("  {name:<12} {v}"),
                Err(e) => println!("  {name:<12} error: {e}"),
            }
        }
        match &report.outcome {
            Ok(v) if report.calls.is_empty() => {
                println!("result:\n{}", serde_json::to_string_pretty(v)?);
            }
            Ok(_) => {}
            Err(e) => println!("call failed: {e}"),
        }
        println!("log ({} records):", logs.len());
        for l in &logs {
            println!(
                "  [{}] {}",
                l["level"].as_str().unwrap_or("?"),
                l["message"].as_str().unwrap_or("")
            );
        }
        println!(
            "time: {:.1} ms (deadline {} ms); memory: {:.1} MiB peak (budget {} MiB)",
            elapsed.as_secs_f64() * 1000.0,
            budget.deadline.as_millis(),
            peak as f64 / f64::from(1u32 << 20),
            budget.memory_bytes >> 20
        );
        if !pending.is_empty() {
            println!(
                "not granted (pass --grant): {}",
                serde_json::to_string(&pending)?
            );
        }
    }
    if report.outcome.is_err() {
        bail!("the plugin call failed");
    }
    Ok(())
}

fn one<T: serde::Serialize, E: std::fmt::Display>(hook: HookKind, r: Result<T, E>) -> Report {
    Report {
        hook,
        outcome: to_value(r),
        calls: Vec::new(),
    }
}

fn to_value<T: serde::Serialize, E: std::fmt::Display>(r: Result<T, E>) -> Result<Value, String> {
    match r {
        Ok(v) => serde_json::to_value(v).map_err(|e| format!("unprintable result: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The plugin folder, its manifest and the component to run.
fn locate(args: &CallArgs) -> anyhow::Result<(PathBuf, Manifest, PathBuf)> {
    let given = &args.plugin;
    let is_wasm = given.extension().is_some_and(|e| e == "wasm");
    let manifest_path = match (&args.manifest, is_wasm) {
        (Some(m), _) => m.clone(),
        (None, false) => given.join("plugin.toml"),
        (None, true) => given
            .ancestors()
            .skip(1)
            .map(|d| d.join("plugin.toml"))
            .find(|p| p.exists())
            .ok_or_else(|| {
                anyhow::anyhow!("no plugin.toml above {}: pass --manifest", given.display())
            })?,
    };
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = Manifest::from_toml_str(&text)
        .with_context(|| format!("manifest {}", manifest_path.display()))?;
    let dir = manifest_path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let wasm = if is_wasm {
        given.clone()
    } else {
        let name = manifest.wasm_file_name();
        let candidates = [
            given.join(&name),
            given.join("target/wasm32-wasip2/release").join(&name),
            given.join("target/wasm32-wasip2/debug").join(&name),
        ];
        candidates
            .iter()
            .filter_map(|p| Some((p, std::fs::metadata(p).ok()?.modified().ok()?)))
            .max_by_key(|(_, modified)| *modified)
            .map(|(p, _)| p.clone())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no {name} in {} or its target/wasm32-wasip2/{{release,debug}}: build it with `cargo build --release --target wasm32-wasip2`",
                    given.display()
                )
            })?
    };
    Ok((dir, manifest, wasm))
}

fn plugin_config(args: &CallArgs, manifest: &Manifest, dir: &Path) -> anyhow::Result<Value> {
    let given: Value = match &args.config {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{} is not JSON", p.display()))?,
        None => json!({}),
    };
    let applied = match manifest.load_config_schema(dir)? {
        Some(schema) => schema.apply(&given)?,
        None => comfyhost_runtime::manifest::apply_config_without_schema(&given)?,
    };
    Ok(applied)
}

fn parse_grants(given: &[String], manifest: &Manifest) -> anyhow::Result<Grants> {
    let mut g = Grants::default();
    let declared = &manifest.capabilities;
    for item in given {
        if item == "all" {
            g = Grants::all_of(manifest);
            continue;
        }
        let (kind, value) = item.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--grant {item}: expected all, http=, dir= or secret=")
        })?;
        match kind {
            "http" => g.http.push(value.to_string()),
            "secret" => g.secrets.push(value.to_string()),
            "dir" => {
                let d = declared
                    .dirs
                    .iter()
                    .find(|d| d.guest == value || d.path == value)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--grant dir={value}: the manifest declares no such directory"
                        )
                    })?;
                g.dirs.push(DirGrant {
                    path: d.path.clone(),
                    guest: d.guest.clone(),
                    access: d.access,
                });
            }
            other => bail!("--grant {other}=…: expected http, dir or secret"),
        }
    }
    Ok(g)
}

fn parse_roots(given: &[String]) -> anyhow::Result<DirRoots> {
    let mut roots = DirRoots::default();
    for item in given {
        let (name, path) = item
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--root {item}: expected NAME=PATH"))?;
        let path = Some(PathBuf::from(path));
        match name {
            "output" => roots.output = path,
            "input" => roots.input = path,
            "models" => roots.models = path,
            "user" => roots.user = path,
            "temp" => roots.temp = path,
            "data" => roots.data = path,
            other => bail!("--root {other}=…: one of output, input, models, user, temp, data"),
        }
    }
    Ok(roots)
}

fn workflow(args: &CallArgs) -> anyhow::Result<Value> {
    let path = args
        .workflow
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("this hook needs --workflow <API-format workflow.json>"))?;
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    // A whole `POST /prompt` body carries the workflow under `prompt`.
    let wf = match v.get("prompt") {
        Some(p) if p.is_object() => p.clone(),
        _ => v,
    };
    if wf.get("nodes").is_some_and(Value::is_array) {
        bail!(
            "{} is a UI-format workflow; export it with \"Export (API)\" in ComfyUI",
            path.display()
        );
    }
    anyhow::ensure!(
        wf.is_object(),
        "{} is not an API-format workflow",
        path.display()
    );
    Ok(wf)
}

fn submission(args: &CallArgs, user: Option<User>) -> anyhow::Result<Submission> {
    Ok(Submission {
        prompt_id: "cli-call".into(),
        client_id: None,
        user,
        workflow: workflow(args)?,
        flags: Vec::new(),
    })
}

fn output_file(args: &CallArgs, user: Option<User>) -> anyhow::Result<OutputFile> {
    let path = args
        .file
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("output-sync needs --file <an output file>"))?;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let filename = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow::anyhow!("{} has no file name", path.display()))?
        .to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let kind = match ext.as_str() {
        "png" | "jpg" | "jpeg" | "webp" | "gif" => OutputKind::Image,
        "mp4" | "webm" | "mov" | "mkv" => OutputKind::Video,
        "wav" | "mp3" | "flac" | "ogg" => OutputKind::Audio,
        _ => OutputKind::Other,
    };
    let modified_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok(OutputFile {
        guest_path: format!("/output/{filename}"),
        filename,
        subfolder: String::new(),
        kind,
        size: meta.len(),
        modified_ms,
        prompt_id: Some("cli-call".into()),
        user,
    })
}

/// A short job: queued, started, a node, done.
fn overlay_events() -> Vec<(&'static str, ExecutionEvent)> {
    vec![
        ("queued", ExecutionEvent::Queued { position: Some(1) }),
        ("started", ExecutionEvent::Started),
        ("executing", ExecutionEvent::Executing { node: "3".into() }),
        ("succeeded", ExecutionEvent::Succeeded),
    ]
}
