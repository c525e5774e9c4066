//! Registry logic with a native [`PluginCode`]: the "component" bytes are a one-line script
//! (`route backend a`, `fail`, `slow 300 route backend old`, ...) so chain, reload, breaker and
//! approval logic are tested without compiling wasm. The wasm path is covered by
//! `tests/registry_wasm.rs`.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;

use super::*;
use crate::capabilities::log::{PluginLogLevel, PluginLogRecord};
use crate::grants::RequestedCapability;
use crate::types::{Severity, User};

struct Scripted {
    sha: String,
    hook: HookKind,
    script: String,
}

impl PluginCode for Scripted {
    fn sha256(&self) -> &str {
        &self.sha
    }
    fn hook(&self) -> HookKind {
        self.hook
    }
    fn call<'a>(
        &'a self,
        env: &'a CallEnv,
        input: HookInput<'a>,
    ) -> BoxFuture<'a, Result<HookOutput, CallErrorKind>> {
        Box::pin(async move {
            let mut words: Vec<&str> = self.script.split_whitespace().collect();
            if words.first() == Some(&"slow") {
                let ms: u64 = words[1].parse().unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                words.drain(..2);
            }
            env.log.record(PluginLogRecord {
                ts_ms: 0,
                plugin_id: env.plugin_id.to_string(),
                prompt_id: env.prompt_id.clone(),
                level: PluginLogLevel::Info,
                message: self.script.clone(),
            });
            match (words.as_slice(), input) {
                (["fail", ..], _) => Err(CallErrorKind::Trap("scripted failure".into())),
                (["refuse", ..], _) => Err(CallErrorKind::Plugin("invalid input: scripted".into())),
                (["route", "pass"], _) => Ok(HookOutput::Route(Route::Pass)),
                (["route", "local"], _) => Ok(HookOutput::Route(Route::Local)),
                (["route", "backend", b], _) => Ok(HookOutput::Route(Route::Backend((*b).into()))),
                (["route", "config"], _) => Ok(HookOutput::Route(Route::Backend(
                    env.config_json.to_string(),
                ))),
                (["route", "secrets"], _) => {
                    let mut names: Vec<String> = env
                        .secrets
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    names.sort();
                    Ok(HookOutput::Route(Route::Backend(names.join(","))))
                }
                (["transform", "unchanged"], _) => {
                    Ok(HookOutput::Transform(TransformResult::Unchanged))
                }
                (["transform", "append", tag], HookInput::Transform { submission }) => {
                    let mut wf = submission.workflow.clone();
                    let trail = wf["trail"].as_str().unwrap_or("").to_owned();
                    wf["trail"] = json!(format!("{trail}{tag}"));
                    Ok(HookOutput::Transform(TransformResult::Rewritten {
                        workflow: wf,
                        notes: vec![format!("appended {tag}")],
                    }))
                }
                (["event", "none"], _) => Ok(HookOutput::Event(None)),
                (["event", text], _) => Ok(HookOutput::Event(Some(OverlayUpdate {
                    severity: Severity::Info,
                    user_text: (*text).into(),
                    admin_detail: vec![],
                    fraction: None,
                    terminal: false,
                }))),
                (["resolve", tag], _) => Ok(HookOutput::Resolve(Resolution {
                    required: vec![],
                    missing: vec![],
                    presets: vec![],
                    unmapped: vec![crate::types::ModelRef {
                        folder: (*tag).into(),
                        name: String::new(),
                        node_id: String::new(),
                        class_type: String::new(),
                        input_name: String::new(),
                    }],
                })),
                (["sync", tag], _) => Ok(HookOutput::Output(SyncOutcome::Synced((*tag).into()))),
                (other, _) => Err(CallErrorKind::Trap(format!("bad script {other:?}"))),
            }
        })
    }
}

struct ScriptCompiler;

/// How often each script was compiled (scripts are unique per test).
static COMPILES: parking_lot::Mutex<BTreeMap<String, usize>> =
    parking_lot::Mutex::new(BTreeMap::new());
/// Gates opened by tests; a `block-compile <gate> ...` script compiles once its gate is open.
static GATES: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());

fn compiles(script: &str) -> usize {
    COMPILES.lock().get(script).copied().unwrap_or(0)
}

impl PluginCompiler for ScriptCompiler {
    fn compile(
        &self,
        _id: &str,
        hook: HookKind,
        wasm: &[u8],
    ) -> Result<Arc<dyn PluginCode>, RuntimeError> {
        let script = std::str::from_utf8(wasm)
            .map_err(|e| RuntimeError::Compile(e.to_string()))?
            .to_owned();
        *COMPILES.lock().entry(script.clone()).or_default() += 1;
        if let Some(rest) = script.strip_prefix("block-compile ") {
            // Waits until the test opens the gate named by the rest of the script.
            let gate = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            while !GATES.lock().contains(&gate) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if script.starts_with("garbage") {
            return Err(RuntimeError::Compile("not a component".into()));
        }
        Ok(Arc::new(Scripted {
            sha: sha256_hex(wasm),
            hook,
            script,
        }))
    }
}

struct Fixture {
    reg: PluginRegistry,
    store: Store,
    dir: tempfile::TempDir,
}

fn fixture_with(breaker: BreakerConfig, store: Store, dir: tempfile::TempDir) -> Fixture {
    fixture_with_limits(breaker, store, dir, PluginLimits::default())
}

fn fixture_with_limits(
    breaker: BreakerConfig,
    store: Store,
    dir: tempfile::TempDir,
    limits: PluginLimits,
) -> Fixture {
    let cfg = RegistryConfig {
        plugins_dir: dir.path().join("plugins"),
        dir_roots: DirRoots {
            output: Some("/srv/output".into()),
            ..Default::default()
        },
        breaker,
        host_info: vec![("host-version".into(), "test".into())],
        limits,
    };
    let secrets = MapSecrets(
        [("API_KEY", "k1"), ("OTHER_KEY", "k2")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect(),
    );
    let reg = PluginRegistry::new(
        cfg,
        Arc::new(ScriptCompiler),
        store.clone(),
        Arc::new(secrets),
    )
    .unwrap();
    Fixture { reg, store, dir }
}

fn fixture() -> Fixture {
    fixture_with(
        BreakerConfig::default(),
        Store::open_in_memory().unwrap(),
        tempfile::tempdir().unwrap(),
    )
}

fn manifest(id: &str, version: &str, hook: &str, priority: i32, extra: &str) -> String {
    format!(
        "id = \"{id}\"\nversion = \"{version}\"\nname = \"{id}\"\nwit = \"0.1.0\"\nhooks = [\"{hook}\"]\npriority = {priority}\n{extra}"
    )
}

fn install(f: &Fixture, id: &str, prio: i32, hook: &str, script: &str) -> PluginInfo {
    f.reg
        .install(
            &manifest(id, "0.1.0", hook, prio, ""),
            script.as_bytes(),
            None,
        )
        .unwrap()
}

fn sub() -> Submission {
    Submission {
        prompt_id: "p-1".into(),
        client_id: None,
        user: Some(User {
            id: "u".into(),
            is_admin: false,
        }),
        workflow: json!({ "trail": "" }),
        flags: vec![],
    }
}

fn job() -> JobContext {
    JobContext {
        prompt_id: "p-1".into(),
        client_id: None,
        user: None,
        backend: "local".into(),
        gpu: None,
        nodes_total: 1,
        nodes_done: 0,
        elapsed_ms: 0,
        since_last_event_ms: 0,
    }
}

fn output_file() -> OutputFile {
    OutputFile {
        guest_path: "/output/a.png".into(),
        filename: "a.png".into(),
        subfolder: String::new(),
        kind: crate::types::OutputKind::Image,
        size: 1,
        modified_ms: 0,
        prompt_id: Some("p-1".into()),
        user: None,
    }
}

#[tokio::test]
async fn route_chain_runs_in_priority_then_id_order_first_non_pass_wins() {
    let f = fixture();
    // These two may be switched off without closing the hook (fail-open).
    for (id, prio, script) in [
        ("zz-last", 200, "route backend last"),
        ("b-second", 10, "route backend b"),
    ] {
        let m = manifest(
            id,
            "0.1.0",
            "queue-router",
            prio,
            "[budget]\nfailure = \"fail-open\"\n",
        );
        f.reg.install(&m, script.as_bytes(), None).unwrap();
    }
    install(&f, "a-second", 10, "queue-router", "route pass");
    install(&f, "first", 1, "queue-router", "route pass");
    let d = f.reg.route(&sub(), &[]).await.unwrap();
    assert_eq!(d.route, Route::Backend("b".into()));
    assert_eq!(d.decided_by.as_deref(), Some("b-second"));
    // every plugin passing means local, decided by nobody
    f.reg.disable("b-second").unwrap();
    f.reg.disable("zz-last").unwrap();
    let d = f.reg.route(&sub(), &[]).await.unwrap();
    assert_eq!(
        d,
        RouteDecision {
            route: Route::Local,
            decided_by: None
        }
    );
    // stats: "first" ran twice, "zz-last" never
    assert_eq!(f.reg.get("first").unwrap().stats.calls, 2);
    assert_eq!(f.reg.get("zz-last").unwrap().stats.calls, 0);
}

#[tokio::test]
async fn fail_closed_router_stops_chain_with_plugin_named() {
    let f = fixture();
    install(&f, "broken-router", 1, "queue-router", "fail");
    install(&f, "next", 2, "queue-router", "route backend x");
    let err = f.reg.route(&sub(), &[]).await.unwrap_err();
    assert_eq!(err.0.plugin_id, "broken-router");
    assert!(err.to_string().contains("broken-router"), "{err}");
    assert!(err.to_string().contains("scripted failure"), "{err}");
    assert_eq!(f.reg.get("next").unwrap().stats.calls, 0);
}

#[tokio::test]
async fn fail_open_plugin_is_skipped() {
    let f = fixture();
    f.reg
        .install(
            &manifest(
                "flaky",
                "0.1.0",
                "queue-router",
                1,
                "[budget]\nfailure = \"fail-open\"\n",
            ),
            b"fail",
            None,
        )
        .unwrap();
    install(&f, "next", 2, "queue-router", "route backend x");
    let d = f.reg.route(&sub(), &[]).await.unwrap();
    assert_eq!(d.decided_by.as_deref(), Some("next"));
    let info = f.reg.get("flaky").unwrap();
    assert_eq!(info.stats.failures, 1);
    assert!(info.last_error.unwrap().contains("scripted failure"));
}

#[tokio::test]
async fn transform_chain_feeds_each_rewrite_to_the_next() {
    let f = fixture();
    install(&f, "t2", 2, "prompt-transform", "transform append B");
    install(&f, "t1", 1, "prompt-transform", "transform append A");
    install(&f, "t3", 3, "prompt-transform", "transform unchanged");
    let (wf, applied) = f.reg.transform(&sub()).await.unwrap();
    assert_eq!(wf["trail"], "AB");
    assert_eq!(
        applied,
        [
            AppliedTransform {
                plugin_id: "t1".into(),
                notes: vec!["appended A".into()]
            },
            AppliedTransform {
                plugin_id: "t2".into(),
                notes: vec!["appended B".into()]
            },
        ]
    );
}

#[tokio::test]
async fn observers_collect_all_and_skip_failures() {
    let f = fixture();
    install(&f, "o1", 1, "status-overlay", "event first");
    install(&f, "o2", 2, "status-overlay", "fail");
    install(&f, "o3", 3, "status-overlay", "event none");
    install(&f, "o4", 4, "status-overlay", "event last");
    let ups = f.reg.on_event(&job(), &ExecutionEvent::Started).await;
    let texts: Vec<_> = ups
        .iter()
        .map(|(id, u)| (id.as_str(), u.user_text.as_str()))
        .collect();
    assert_eq!(texts, [("o1", "first"), ("o4", "last")]);

    install(&f, "s1", 1, "output-sync", "sync one");
    install(&f, "s2", 2, "output-sync", "fail");
    install(&f, "s3", 3, "output-sync", "sync three");
    let outs = f.reg.on_output(&output_file()).await;
    assert_eq!(outs.len(), 3);
    assert_eq!(
        outs[0],
        ("s1".into(), Ok(SyncOutcome::Synced("one".into())))
    );
    assert!(outs[1].1.is_err());
    assert_eq!(outs[2].1, Ok(SyncOutcome::Synced("three".into())));
}

#[tokio::test]
async fn resolver_first_answer_wins_and_fail_open_falls_through() {
    let f = fixture();
    assert_eq!(f.reg.resolve(&json!({}), &[]).await.unwrap(), None);
    install(&f, "r0", 0, "preset-resolver", "fail"); // resolvers fail open by default
    install(&f, "r1", 1, "preset-resolver", "resolve one");
    install(&f, "r2", 2, "preset-resolver", "resolve two");
    let (id, res) = f.reg.resolve(&json!({}), &[]).await.unwrap().unwrap();
    assert_eq!(id, "r1");
    assert_eq!(res.unmapped[0].folder, "one");
}

#[tokio::test]
async fn update_asking_for_more_needs_approval_until_granted() {
    let f = fixture();
    let v1 = manifest(
        "router",
        "0.1.0",
        "queue-router",
        1,
        "[capabilities]\nhttp = [\"https://a.example:443\"]\n",
    );
    let info = f.reg.install(&v1, b"route backend v1", None).unwrap();
    assert_eq!(info.state, PluginState::NeedsApproval);
    // A fail-closed router waiting for approval keeps the hook closed.
    let e = f.reg.route(&sub(), &[]).await.unwrap_err();
    assert!(
        matches!(&e.0.kind, CallErrorKind::Unavailable(d) if d.contains("approve")),
        "{e:?}"
    );
    let info = f
        .reg
        .grant(
            "router",
            Grants::all_of(&Manifest::from_toml_str(&v1).unwrap()),
        )
        .unwrap();
    assert_eq!(info.state, PluginState::Enabled);
    assert_eq!(info.effective.http.len(), 1);
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("v1".into())
    );

    let v2 = manifest(
        "router",
        "0.2.0",
        "queue-router",
        1,
        "[capabilities]\nhttp = [\"https://a.example:443\", \"https://b.example:443\"]\nsecrets = [\"API_KEY\"]\n",
    );
    let info = f.reg.install(&v2, b"route backend v2", None).unwrap();
    assert_eq!(info.state, PluginState::NeedsApproval);
    assert_eq!(info.pending.len(), 2, "{:?}", info.pending);
    assert_eq!(info.previous_version.as_deref(), Some("0.1.0"));
    // an upgrade waiting for approval is not skipped: the fail-closed hook stays closed
    let e = f.reg.route(&sub(), &[]).await.unwrap_err();
    assert!(
        matches!(&e.0.kind, CallErrorKind::Unavailable(d) if d.contains("approve")),
        "{e:?}"
    );
    let info = f
        .reg
        .grant(
            "router",
            Grants::all_of(&Manifest::from_toml_str(&v2).unwrap()),
        )
        .unwrap();
    assert_eq!(info.state, PluginState::Enabled);
    assert!(info.pending.is_empty());
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("v2".into())
    );
    // persisted
    let row = f.store.plugin("router").unwrap().unwrap();
    assert!(row.grants_json.unwrap().contains("b.example"));
    assert_eq!(row.installed_version.as_deref(), Some("0.2.0"));
    assert_eq!(row.previous_version.as_deref(), Some("0.1.0"));
    // a bad origin in a grant is refused
    let err = f
        .reg
        .grant(
            "router",
            Grants {
                http: vec!["https://x".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("port required"), "{err}");
}

#[tokio::test]
async fn only_granted_secrets_reach_the_call() {
    let f = fixture();
    let m = manifest(
        "s",
        "0.1.0",
        "queue-router",
        1,
        "[capabilities]\nsecrets = [\"API_KEY\", \"OTHER_KEY\"]\n",
    );
    f.reg.install(&m, b"route secrets", None).unwrap();
    f.reg
        .grant(
            "s",
            Grants {
                secrets: vec!["API_KEY".into(), "OTHER_KEY".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("API_KEY=k1,OTHER_KEY=k2".into())
    );
    // narrowing the grant leaves a declared secret pending: the plugin stops until re-approved
    let info = f
        .reg
        .grant(
            "s",
            Grants {
                secrets: vec!["API_KEY".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(info.state, PluginState::NeedsApproval);
    assert_eq!(info.effective.secrets, ["API_KEY"]);
}

#[tokio::test]
async fn breaker_trips_disables_and_admin_reenables() {
    let f = fixture_with(
        BreakerConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            ..BreakerConfig::default()
        },
        Store::open_in_memory().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    f.reg
        .install(
            &manifest(
                "crashy",
                "0.1.0",
                "queue-router",
                1,
                "[budget]\nfailure = \"fail-open\"\n",
            ),
            b"fail",
            None,
        )
        .unwrap();
    for _ in 0..5 {
        f.reg.route(&sub(), &[]).await.unwrap();
    }
    let info = f.reg.get("crashy").unwrap();
    assert_eq!(info.state, PluginState::Tripped);
    assert_eq!(info.stats.calls, 3, "not called after tripping");
    let b = info.breaker.unwrap();
    assert!(b.tripped && b.tripped_at_ms.is_some());
    assert!(b.last_error.unwrap().contains("scripted failure"));
    assert!(
        !f.store.plugin("crashy").unwrap().unwrap().enabled,
        "trip is persisted"
    );
    let acts = f.store.recent_activity(10).unwrap();
    assert!(
        acts.iter()
            .any(|a| a.action == "plugin.breaker_tripped" && a.target == "crashy")
    );
    let info = f.reg.enable("crashy").unwrap();
    assert_eq!(info.state, PluginState::Enabled);
    assert_eq!(info.breaker.unwrap().failures_in_window, 0);
    f.reg.route(&sub(), &[]).await.unwrap();
    assert_eq!(f.reg.get("crashy").unwrap().stats.calls, 4);
}

#[tokio::test]
async fn hot_reload_in_flight_call_finishes_on_old_version() {
    let f = fixture();
    let m1 = manifest("hr", "0.1.0", "queue-router", 1, "");
    f.reg
        .install(&m1, b"slow 300 route backend old", None)
        .unwrap();
    let reg = f.reg.clone();
    let in_flight = tokio::spawn(async move { reg.route(&sub(), &[]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let m2 = manifest("hr", "0.2.0", "queue-router", 1, "");
    f.reg.install(&m2, b"route backend new", None).unwrap();
    let started = Instant::now();
    let new = f.reg.route(&sub(), &[]).await.unwrap();
    assert_eq!(new.route, Route::Backend("new".into()));
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "new call must not wait for the old"
    );
    let old = in_flight.await.unwrap().unwrap();
    assert_eq!(old.route, Route::Backend("old".into()));
    assert_eq!(f.reg.get("hr").unwrap().version, "0.2.0");
}

#[tokio::test]
async fn rollback_restores_previous_version_in_memory_and_on_disk() {
    let f = fixture();
    f.reg
        .install(
            &manifest("rb", "0.1.0", "queue-router", 1, ""),
            b"route backend one",
            None,
        )
        .unwrap();
    let err = f.reg.rollback("rb").unwrap_err();
    assert!(err.to_string().contains("no previous version"), "{err}");
    f.reg
        .install(
            &manifest("rb", "0.2.0", "queue-router", 1, ""),
            b"route backend two",
            None,
        )
        .unwrap();
    let info = f.reg.rollback("rb").unwrap();
    assert_eq!(info.version, "0.1.0");
    assert_eq!(info.previous_version.as_deref(), Some("0.2.0"));
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("one".into())
    );
    let live = std::fs::read(info.dir.join("rb.wasm")).unwrap();
    assert_eq!(live, b"route backend one");
    // a fresh registry over the same disk and store sees the rolled-back state
    let f2 = fixture_with(BreakerConfig::default(), f.store.clone(), f.dir);
    let report = f2.reg.discover().unwrap();
    assert_eq!(report.loaded, ["rb"]);
    assert_eq!(f2.reg.get("rb").unwrap().version, "0.1.0");
    assert_eq!(
        f2.reg.get("rb").unwrap().previous_version.as_deref(),
        Some("0.2.0")
    );
    // and can roll forward again
    assert_eq!(f2.reg.rollback("rb").unwrap().version, "0.2.0");
}

#[tokio::test]
async fn same_version_replacement_keeps_the_previous_code_for_rollback() {
    let f = fixture();
    let m = manifest("sv", "0.1.0", "queue-router", 1, "");
    let one = f.reg.install(&m, b"route backend one", None).unwrap();
    // The same files again change nothing and offer nothing to roll back to.
    let same = f.reg.install(&m, b"route backend one", None).unwrap();
    assert_eq!(same.previous_version, None);
    // Same version, other code: the replaced component stays the rollback target.
    let info = f.reg.install(&m, b"route backend two", None).unwrap();
    assert_eq!(info.previous_version.as_deref(), Some("0.1.0"));
    assert_eq!(info.previous_sha256.as_deref(), Some(one.sha256.as_str()));
    assert_ne!(info.previous_sha256, Some(info.sha256.clone()));
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("two".into())
    );
    let back = f.reg.rollback("sv").unwrap();
    assert_eq!(back.version, "0.1.0");
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("one".into())
    );
}

#[tokio::test]
async fn install_refuses_older_version_and_bad_input() {
    let f = fixture();
    f.reg
        .install(
            &manifest("v", "0.2.0", "queue-router", 1, ""),
            b"route local",
            None,
        )
        .unwrap();
    let err = f
        .reg
        .install(
            &manifest("v", "0.1.0", "queue-router", 1, ""),
            b"route local",
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("older than the installed"),
        "{err}"
    );
    let err = f
        .reg
        .install(
            &manifest("w", "0.1.0", "queue-router", 1, ""),
            b"garbage",
            None,
        )
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Compile(_)), "{err}");
    assert!(
        !f.dir.path().join("plugins/w").exists(),
        "nothing written on compile failure"
    );
    let err = f.reg.install("id = 1", b"route local", None).unwrap_err();
    assert!(matches!(err, RuntimeError::Manifest(_)), "{err}");
    let err = f
        .reg
        .install(
            &manifest(
                "x",
                "0.1.0",
                "queue-router",
                1,
                "[config]\nschema = \"s.json\"\n",
            ),
            b"route local",
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("no schema was supplied"), "{err}");
}

#[tokio::test]
async fn config_is_validated_defaulted_persisted_and_reaches_calls() {
    let f = fixture();
    let m = manifest(
        "cfg",
        "0.1.0",
        "queue-router",
        1,
        "[config]\nschema = \"config.schema.json\"\n",
    );
    let schema = r#"{"type":"object","properties":{"backend":{"type":"string","default":"gpu-a"},"n":{"type":"integer","minimum":1}},"additionalProperties":false}"#;
    let info = f.reg.install(&m, b"route config", Some(schema)).unwrap();
    assert_eq!(info.config, Some(json!({ "backend": "gpu-a" })));
    assert!(f.dir.path().join("plugins/cfg/config.schema.json").exists());
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend(r#"{"backend":"gpu-a"}"#.into())
    );
    let err = f
        .reg
        .set_config("cfg", &json!({ "n": 0, "zzz": 1 }))
        .unwrap_err();
    let RuntimeError::Config(msg) = &err else {
        panic!("{err}")
    };
    assert!(msg.contains("/n") && msg.contains("zzz"), "{msg}");
    let v = f.reg.set_config("cfg", &json!({ "n": 2 })).unwrap();
    assert_eq!(v, json!({ "n": 2, "backend": "gpu-a" }));
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend(r#"{"n":2,"backend":"gpu-a"}"#.into())
    );
    let stored = f.store.plugin("cfg").unwrap().unwrap().config_json.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&stored).unwrap(), v);
}

#[tokio::test]
async fn discovery_reports_broken_plugins_and_loads_the_rest() {
    let f = fixture();
    let root = f.dir.path().join("plugins");
    let write = |dir: &str, toml: &str, wasm: Option<(&str, &[u8])>| {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("plugin.toml"), toml).unwrap();
        if let Some((name, bytes)) = wasm {
            std::fs::write(d.join(name), bytes).unwrap();
        }
    };
    write(
        "good",
        &manifest("good", "0.1.0", "queue-router", 1, ""),
        Some(("good.wasm", b"route backend g")),
    );
    write("bad-manifest", "id = \"Bad\"\n", None);
    write(
        "no-wasm",
        &manifest("no-wasm", "0.1.0", "queue-router", 1, ""),
        None,
    );
    write(
        "wont-compile",
        &manifest("wont-compile", "0.1.0", "queue-router", 1, ""),
        Some(("wont_compile.wasm", b"garbage")),
    );
    write(
        "zz-dup",
        &manifest("good", "0.1.0", "queue-router", 1, ""),
        Some(("good.wasm", b"route local")),
    );
    std::fs::create_dir_all(root.join(".previous/ignored")).unwrap();
    let report = f.reg.discover().unwrap();
    assert_eq!(report.loaded, ["good"]);
    let broken: BTreeMap<_, _> = report.broken.into_iter().collect();
    assert_eq!(broken.len(), 4, "{broken:?}");
    assert!(
        broken["bad-manifest"].contains("invalid manifest"),
        "{broken:?}"
    );
    assert!(
        broken["no-wasm"].contains("cannot read component"),
        "{broken:?}"
    );
    assert!(
        broken["wont-compile"].contains("compile failed"),
        "{broken:?}"
    );
    assert!(
        broken["zz-dup"].contains("duplicate plugin id good"),
        "{broken:?}"
    );
    let list = f.reg.list();
    assert_eq!(list.len(), 5);
    assert!(matches!(
        f.reg.get("bad-manifest").unwrap().state,
        PluginState::Broken(_)
    ));
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("g".into())
    );
    // a second scan with nothing changed reloads nothing; removing a directory unloads it
    assert_eq!(f.reg.discover().unwrap().unchanged, ["good"]);
    std::fs::remove_dir_all(root.join("good")).unwrap();
    std::fs::remove_dir_all(root.join("zz-dup")).unwrap();
    assert_eq!(f.reg.discover().unwrap().removed, ["good"]);
    assert!(f.reg.get("good").is_err());
}

#[tokio::test]
async fn logs_are_kept_per_plugin_across_reloads_and_enabled_flag_persists() {
    let f = fixture();
    install(&f, "lg", 1, "queue-router", "route pass");
    f.reg.route(&sub(), &[]).await.unwrap();
    f.reg
        .install(
            &manifest("lg", "0.2.0", "queue-router", 1, ""),
            b"route local",
            None,
        )
        .unwrap();
    f.reg.route(&sub(), &[]).await.unwrap();
    let logs = f.reg.logs("lg").unwrap();
    let msgs: Vec<_> = logs.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(msgs, ["route pass", "route local"]);
    assert_eq!(logs[0].prompt_id.as_deref(), Some("p-1"));
    f.reg.disable("lg").unwrap();
    let f2 = fixture_with(BreakerConfig::default(), f.store.clone(), f.dir);
    f2.reg.discover().unwrap();
    let info = f2.reg.get("lg").unwrap();
    assert_eq!(info.state, PluginState::Disabled);
    assert!(!info.enabled);
}

fn write_plugin(root: &Path, dir: &str, id: &str, extra: &str, wasm: &[u8]) {
    let d = root.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("plugin.toml"),
        manifest(id, "0.1.0", "queue-router", 1, extra),
    )
    .unwrap();
    std::fs::write(d.join(format!("{}.wasm", id.replace('-', "_"))), wasm).unwrap();
}

const HTTP_AND_SECRET: &str =
    "[capabilities]\nhttp = [\"https://api.example.com:443\"]\nsecrets = [\"API_KEY\"]\n";

fn activity_actions(f: &Fixture, action: &str) -> usize {
    f.store
        .recent_activity(1000)
        .unwrap()
        .iter()
        .filter(|a| a.action == action)
        .count()
}

#[tokio::test]
async fn a_different_component_under_an_approved_id_waits_for_approval() {
    let f = fixture();
    let root = f.dir.path().join("plugins");
    write_plugin(&root, "victim", "victim", HTTP_AND_SECRET, b"route secrets");
    f.reg.discover().unwrap();
    let approved = f
        .reg
        .grant(
            "victim",
            Grants {
                http: vec!["https://api.example.com:443".into()],
                secrets: vec!["API_KEY".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(approved.state, PluginState::Enabled);
    assert_eq!(
        approved.granted.code_sha256.as_deref(),
        Some(approved.sha256.as_str())
    );
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("API_KEY=k1".into())
    );

    // Same id, same declared capabilities, different code: not run, nothing granted applies.
    write_plugin(
        &root,
        "victim",
        "victim",
        HTTP_AND_SECRET,
        b"route backend stolen",
    );
    assert_eq!(f.reg.discover().unwrap().loaded, ["victim"]);
    let info = f.reg.get("victim").unwrap();
    assert_eq!(info.state, PluginState::NeedsApproval, "{info:?}");
    assert!(
        matches!(&info.pending[0], RequestedCapability::Code { approved_sha256: Some(a), .. } if *a == approved.sha256),
        "{:?}",
        info.pending
    );
    assert_eq!(info.effective, EffectiveCaps::default());
    // The unapproved code never runs; the fail-closed router keeps its hook closed meanwhile.
    assert_waits_for_approval(&f, "victim").await;
    assert_eq!(activity_actions(&f, "plugin.code_changed"), 1);

    // Grants for the old code are refused; approving what runs now re-enables it.
    let stale = Grants {
        code_sha256: Some(approved.sha256.clone()),
        ..approved.granted.clone()
    };
    let err = f.reg.grant("victim", stale).unwrap_err();
    assert!(err.to_string().contains("review it again"), "{err}");
    let info = f
        .reg
        .grant(
            "victim",
            Grants {
                code_sha256: None,
                ..approved.granted.clone()
            },
        )
        .unwrap();
    assert_eq!(info.state, PluginState::Enabled);
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("stolen".into())
    );
}

#[tokio::test]
async fn a_plugin_without_capabilities_is_bound_to_its_first_code_too() {
    let f = fixture();
    let root = f.dir.path().join("plugins");
    write_plugin(&root, "quiet", "quiet", "", b"route backend mine");
    f.reg.discover().unwrap();
    assert_eq!(f.reg.get("quiet").unwrap().state, PluginState::Enabled);
    write_plugin(&root, "quiet", "quiet", "", b"route backend theirs");
    f.reg.discover().unwrap();
    assert_eq!(
        f.reg.get("quiet").unwrap().state,
        PluginState::NeedsApproval
    );
    assert_waits_for_approval(&f, "quiet").await;
}

/// Routing is refused without calling `id`: its new code waits for an admin.
async fn assert_waits_for_approval(f: &Fixture, id: &str) {
    let calls = f.reg.get(id).unwrap().stats.calls;
    let e = f.reg.route(&sub(), &[]).await.unwrap_err();
    assert!(
        matches!(&e.0.kind, CallErrorKind::Unavailable(d) if d.contains("approve")),
        "{e:?}"
    );
    assert_eq!(f.reg.get(id).unwrap().stats.calls, calls);
}

#[tokio::test]
async fn a_second_directory_reusing_an_id_is_refused_never_swapped_in() {
    let f = fixture();
    let root = f.dir.path().join("plugins");
    write_plugin(&root, "victim", "victim", HTTP_AND_SECRET, b"route secrets");
    f.reg.discover().unwrap();
    let before = f
        .reg
        .grant(
            "victim",
            Grants::all_of(
                &Manifest::from_toml_str(&manifest(
                    "victim",
                    "0.1.0",
                    "queue-router",
                    1,
                    HTTP_AND_SECRET,
                ))
                .unwrap(),
            ),
        )
        .unwrap();
    // A squatter sorts first and declares the same id and capabilities.
    write_plugin(
        &root,
        "aaa-squatter",
        "victim",
        HTTP_AND_SECRET,
        b"route backend squatted",
    );
    for _ in 0..3 {
        let report = f.reg.discover().unwrap();
        assert_eq!(report.unchanged, ["victim"], "{report:?}");
        let broken: BTreeMap<_, _> = report.broken.into_iter().collect();
        assert!(
            broken["aaa-squatter"].contains("duplicate plugin id victim"),
            "{broken:?}"
        );
    }
    let info = f.reg.get("victim").unwrap();
    assert_eq!(info.sha256, before.sha256);
    assert_eq!(info.dir, root.join("victim"));
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("API_KEY=k1".into())
    );
    // Warned once, not every scan.
    assert_eq!(activity_actions(&f, "plugin.duplicate_refused"), 1);

    // After a restart the approved code keeps the id even though the squatter sorts first.
    let f2 = fixture_with(BreakerConfig::default(), f.store.clone(), f.dir);
    let report = f2.reg.discover().unwrap();
    assert_eq!(report.loaded, ["victim"]);
    let info = f2.reg.get("victim").unwrap();
    assert_eq!(info.sha256, before.sha256);
    assert_eq!(info.state, PluginState::Enabled);
}

#[tokio::test]
async fn a_broken_component_is_compiled_once_per_hash() {
    let f = fixture();
    let root = f.dir.path().join("plugins");
    let script = "garbage remembered-by-hash";
    write_plugin(&root, "broken", "broken", "", script.as_bytes());
    for _ in 0..4 {
        let report = f.reg.discover().unwrap();
        assert!(report.broken[0].1.contains("not a component"), "{report:?}");
    }
    assert_eq!(compiles(script), 1);
    // New bytes are compiled again.
    let script2 = "garbage remembered-by-hash v2";
    write_plugin(&root, "broken", "broken", "", script2.as_bytes());
    f.reg.discover().unwrap();
    assert_eq!(compiles(script2), 1);
}

#[tokio::test]
async fn an_unchanged_component_is_not_read_again() {
    let f = fixture();
    let root = f.dir.path().join("plugins");
    write_plugin(&root, "big", "big", "", b"route backend aaaa");
    f.reg.discover().unwrap();
    // Same size, same inode, same mtime: the scan trusts the remembered hash and does not
    // read the bytes (it would see "bbbb" if it did).
    let wasm = root.join("big/big.wasm");
    let mtime = std::fs::metadata(&wasm).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&wasm).unwrap();
    std::io::Write::write_all(&mut &file, b"route backend bbbb").unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    assert_eq!(f.reg.discover().unwrap().unchanged, ["big"]);
    // A new mtime makes it look again.
    let file = std::fs::OpenOptions::new().write(true).open(&wasm).unwrap();
    file.set_modified(mtime + Duration::from_secs(5)).unwrap();
    drop(file);
    assert_eq!(f.reg.discover().unwrap().loaded, ["big"]);
}

#[tokio::test]
async fn compiles_are_bounded_in_size_and_time_and_do_not_hold_the_admin_lock() {
    let limits = PluginLimits {
        compile_timeout: Duration::from_millis(300),
        max_component_bytes: 64,
        ..PluginLimits::default()
    };
    let f = fixture_with_limits(
        BreakerConfig::default(),
        Store::open_in_memory().unwrap(),
        tempfile::tempdir().unwrap(),
        limits,
    );
    let root = f.dir.path().join("plugins");
    install(&f, "other", 1, "queue-router", "route pass");
    write_plugin(&root, "huge", "huge", "", &[b'x'; 65]);
    // A compile that never ends on its own (gate never opened in time).
    let script = "block-compile never-opened";
    write_plugin(&root, "bomb", "bomb", "", script.as_bytes());
    let reg = f.reg.clone();
    let scan = std::thread::spawn(move || reg.discover().unwrap());
    // While the scan is stuck in the compile, admin operations go through.
    while compiles(script) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    f.reg.set_config("other", &json!({})).unwrap();
    f.reg.disable("other").unwrap();
    let report = scan.join().unwrap();
    let broken: BTreeMap<_, _> = report.broken.into_iter().collect();
    assert!(broken["huge"].contains("limit of 64 bytes"), "{broken:?}");
    assert!(broken["bomb"].contains("compile time limit"), "{broken:?}");
    // The time-out is remembered: the next scan does not start another compile.
    f.reg.discover().unwrap();
    assert_eq!(compiles(script), 1);
    GATES.lock().push("never-opened".into());
}

#[tokio::test]
async fn a_plugins_own_error_is_a_refusal_that_never_trips_the_breaker() {
    let f = fixture();
    f.reg
        .install(
            &manifest("judge", "0.1.0", "queue-router", 1, ""),
            b"refuse",
            None,
        )
        .unwrap();
    for _ in 0..10 {
        let e = f.reg.route(&sub(), &[]).await.unwrap_err();
        assert!(matches!(e.0.kind, CallErrorKind::Plugin(_)), "{e:?}");
    }
    let info = f.reg.get("judge").unwrap();
    assert_eq!(info.state, PluginState::Enabled, "{info:?}");
    let b = info.breaker.unwrap();
    assert_eq!(
        (b.failures_in_window, b.consecutive, b.last_error),
        (0, 0, None)
    );
    // The refusals are in the plugin's own log, for the admin.
    let logs = f.reg.logs("judge").unwrap();
    assert!(
        logs.iter()
            .any(|r| r.message.starts_with("[host]") && r.message.contains("refused")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn a_fail_closed_plugin_that_is_not_running_keeps_its_hook_closed() {
    let f = fixture();
    f.reg
        .install(
            &manifest(
                "gate",
                "0.1.0",
                "queue-router",
                1,
                "[budget]\nfailure = \"fail-closed\"\n",
            ),
            b"fail",
            None,
        )
        .unwrap();
    install(&f, "next", 2, "queue-router", "route backend x");
    for _ in 0..3 {
        let e = f.reg.route(&sub(), &[]).await.unwrap_err();
        assert!(matches!(e.0.kind, CallErrorKind::Trap(_)), "{e:?}");
    }
    let info = f.reg.get("gate").unwrap();
    assert_eq!(info.state, PluginState::Tripped, "three faults in a row");
    assert_eq!(
        info.breaker.as_ref().unwrap().reason,
        Some(crate::breaker::TripReason::ConsecutiveFaults)
    );
    assert!(f.reg.has_chain(HookKind::QueueRouter));
    // Tripped: never skipped, the chain is refused without calling anything.
    let e = f.reg.route(&sub(), &[]).await.unwrap_err();
    assert!(
        matches!(&e.0.kind, CallErrorKind::Unavailable(d) if d.contains("breaker")),
        "{e:?}"
    );
    assert_eq!(f.reg.get("gate").unwrap().stats.calls, 3);
    assert_eq!(f.reg.get("next").unwrap().stats.calls, 0);
    // Disabled by the admin: still closed.
    f.reg.enable("gate").unwrap();
    f.reg.disable("gate").unwrap();
    let e = f.reg.route(&sub(), &[]).await.unwrap_err();
    assert!(
        matches!(&e.0.kind, CallErrorKind::Unavailable(d) if d.contains("disabled")),
        "{e:?}"
    );
    // A fail-open plugin that is switched off is simply skipped.
    let f = fixture();
    f.reg
        .install(
            &manifest(
                "loose",
                "0.1.0",
                "queue-router",
                1,
                "[budget]\nfailure = \"fail-open\"\n",
            ),
            b"fail",
            None,
        )
        .unwrap();
    install(&f, "next", 2, "queue-router", "route backend x");
    f.reg.disable("loose").unwrap();
    let d = f.reg.route(&sub(), &[]).await.unwrap();
    assert_eq!(d.decided_by.as_deref(), Some("next"));
}

// ----- trust policy and shadow mode (issue 21) ------------------------------------------------

/// Writes a drop-in `<plugins>/<id>/` with `script` as its component, signed with `sk` when
/// given (the files `comfyhost plugin sign` writes).
fn signed_drop_in(f: &Fixture, id: &str, script: &str, sk: Option<&str>) -> PathBuf {
    let dir = f.dir.path().join("plugins").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let m = manifest(id, "0.1.0", "queue-router", 0, "");
    std::fs::write(dir.join(MANIFEST_FILE), &m).unwrap();
    let wasm_name = Manifest::from_toml_str(&m).unwrap().wasm_file_name();
    std::fs::write(dir.join(wasm_name), script).unwrap();
    if let Some(sk) = sk {
        let (_, message) = message_of_dir(&dir).unwrap();
        let files = crate::signing::sign(sk, &message, "test").unwrap();
        std::fs::write(dir.join(crate::signing::SIGNATURE_FILE), files.signature).unwrap();
        std::fs::write(dir.join(crate::signing::PUBLIC_KEY_FILE), files.public_key).unwrap();
    }
    dir
}

fn trust(f: &Fixture, mode: &str, pk: &str) {
    let (line, key_id) = crate::signing::parse_public_key(pk).unwrap();
    f.store.put_trust_key(&key_id, "Team", &line).unwrap();
    f.store.set_trust_mode(mode).unwrap();
}

#[tokio::test]
async fn a_drop_in_changed_after_signing_is_refused_and_the_signed_version_keeps_serving() {
    let f = fixture();
    let (pk, sk, key_id) = crate::signing::generate_keypair("t").unwrap();
    trust(&f, "trusted", &pk);
    let dir = signed_drop_in(&f, "r", "route backend a", Some(&sk));
    f.reg.discover().unwrap();
    let info = f.reg.get("r").unwrap();
    assert_eq!(info.state, PluginState::Enabled);
    assert_eq!(info.signer.key_id.as_deref(), Some(key_id.as_str()));
    assert_eq!(info.signer.key_name.as_deref(), Some("Team"));

    // One byte of the component changes; the signature stays.
    std::fs::write(dir.join("r.wasm"), "route backend b").unwrap();
    let report = f.reg.discover().unwrap();
    let (_, err) = report.broken.iter().find(|(id, _)| id == "r").unwrap();
    assert!(err.contains("does not match"), "{err}");
    let d = f.reg.route(&sub(), &[]).await.unwrap();
    assert_eq!(
        d.route,
        Route::Backend("a".into()),
        "the signed version still runs"
    );
    let refusals = f
        .store
        .recent_activity(50)
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "plugin.trust_refused")
        .count();
    f.reg.discover().unwrap();
    let again = f
        .store
        .recent_activity(50)
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "plugin.trust_refused")
        .count();
    assert_eq!((refusals, again), (1, 1), "recorded once per reason");
}

#[tokio::test]
async fn a_new_signer_waits_for_approval_even_with_the_same_component() {
    let f = fixture();
    let (_, sk_a, _) = crate::signing::generate_keypair("a").unwrap();
    let (_, sk_b, id_b) = crate::signing::generate_keypair("b").unwrap();
    f.store.set_trust_mode("signed").unwrap();
    let m1 = manifest("r", "0.1.0", "queue-router", 0, "");
    let m2 = manifest("r", "0.2.0", "queue-router", 0, "");
    let sig = |m: &str, sk: &str| {
        let msg = crate::signing::message(
            "r",
            &[
                crate::signing::SignedFile::from_bytes(MANIFEST_FILE, m.as_bytes()),
                crate::signing::SignedFile::from_bytes("r.wasm", b"route backend a"),
            ],
        );
        Some(crate::signing::sign(sk, &msg, "t").unwrap())
    };
    let info = f
        .reg
        .install_signed(&m1, b"route backend a", None, sig(&m1, &sk_a))
        .unwrap();
    assert_eq!(info.state, PluginState::Enabled);
    let info = f
        .reg
        .install_signed(&m2, b"route backend a", None, sig(&m2, &sk_b))
        .unwrap();
    assert_eq!(info.state, PluginState::NeedsApproval);
    assert!(matches!(
        &info.pending[0],
        RequestedCapability::Signer { key_id: Some(k), .. } if *k == id_b
    ));
    // Unsigned is refused under `signed`.
    let err = f.reg.install(&m2, b"route backend a", None).unwrap_err();
    assert!(err.to_string().contains("unsigned"), "{err}");
    // The admin approves: it runs, and the new key is the approved one from now on.
    let info = f.reg.grant("r", Grants::default()).unwrap();
    assert_eq!(info.state, PluginState::Enabled);
    assert_eq!(f.store.approved_signer("r").unwrap(), Some(Some(id_b)));
}

#[tokio::test]
async fn shadow_answers_are_reported_and_never_reach_the_chain_or_its_breaker() {
    let f = fixture();
    install(&f, "r", 0, "queue-router", "route backend a");
    let shadow = f
        .reg
        .install_shadow(
            &manifest("r", "0.2.0", "queue-router", 0, ""),
            b"fail",
            None,
            None,
        )
        .unwrap();
    assert_eq!(shadow.active_version.as_deref(), Some("0.1.0"));
    for _ in 0..10 {
        let d = f.reg.route(&sub(), &[]).await.unwrap();
        assert_eq!(d.route, Route::Backend("a".into()));
        let calls = f.reg.shadow_route(&sub(), &[]).await;
        assert_eq!(calls.len(), 1);
        assert!(matches!(calls[0].answer, Err(CallErrorKind::Trap(_))));
    }
    let info = f.reg.get("r").unwrap();
    assert_eq!(
        info.state,
        PluginState::Enabled,
        "no breaker trips from shadow faults"
    );
    assert_eq!(info.stats.calls, 10);
    // Not an output-sync/overlay hook: refused in shadow.
    let err = f
        .reg
        .install_shadow(
            &manifest("o", "0.1.0", "status-overlay", 0, ""),
            b"event none",
            None,
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("shadow mode is for"), "{err}");
    // Promote: the shadow's component is the active one now.
    f.reg
        .install_shadow(
            &manifest("r", "0.3.0", "queue-router", 0, ""),
            b"route backend z",
            None,
            None,
        )
        .unwrap();
    let info = f.reg.promote_shadow("r").unwrap();
    assert_eq!(info.version, "0.3.0");
    assert!(f.reg.shadows().is_empty());
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("z".into())
    );
}

#[tokio::test]
async fn a_drop_in_replaced_in_place_with_the_same_version_can_be_rolled_back() {
    let f = fixture();
    let root = f.dir.path().join("plugins");
    write_plugin(&root, "dr", "dr", "", b"route backend a");
    assert_eq!(f.reg.discover().unwrap().loaded, ["dr"]);
    let first = f.reg.get("dr").unwrap();
    assert_eq!(first.previous_version, None);
    // The admin copies other code of the same version over the directory.
    write_plugin(&root, "dr", "dr", "", b"route backend bbb");
    assert_eq!(f.reg.discover().unwrap().loaded, ["dr"]);
    // Other code waits for the admin (grants follow the code); approving it lets it run.
    let waiting = f.reg.get("dr").unwrap();
    f.reg
        .grant(
            "dr",
            Grants {
                code_sha256: None,
                ..waiting.granted.clone()
            },
        )
        .unwrap();
    let info = f.reg.get("dr").unwrap();
    assert_eq!(info.version, first.version);
    assert_eq!(info.previous_version.as_deref(), Some("0.1.0"));
    assert_eq!(info.previous_sha256.as_deref(), Some(first.sha256.as_str()));
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("bbb".into())
    );
    let back = f.reg.rollback("dr").unwrap();
    assert_eq!(back.sha256, first.sha256);
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("a".into())
    );
    // The rolled-back files are what the drop-in directory holds now: a rescan keeps them.
    assert!(f.reg.discover().unwrap().loaded.is_empty());
    assert_eq!(
        f.reg.route(&sub(), &[]).await.unwrap().route,
        Route::Backend("a".into())
    );
}
