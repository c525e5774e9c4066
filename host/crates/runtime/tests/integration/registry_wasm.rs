//! The registry over the real engine and real components (`tests/hostile-plugins`), with the
//! SQLite store as key-value backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyhost_runtime::breaker::BreakerConfig;
use comfyhost_runtime::engine::{EngineConfig, PluginEngine};
use comfyhost_runtime::grants::DirRoots;
use comfyhost_runtime::registry::{MapSecrets, PluginRegistry, PluginState, RegistryConfig};
use comfyhost_runtime::types::{BackendKind, BackendStatus, Route};
use comfyhost_runtime::{CallErrorKind, RuntimeError};
use comfyhost_store::Store;

const MIB: u64 = 1024 * 1024;

fn registry(dir: &std::path::Path, store: Store) -> PluginRegistry {
    let engine = PluginEngine::new(EngineConfig {
        cache_dir: dir.join("cache"),
        pool_instances: 16,
        max_memory_bytes: 128 * MIB,
    })
    .unwrap();
    PluginRegistry::new(
        RegistryConfig {
            plugins_dir: dir.join("plugins"),
            dir_roots: DirRoots::default(),
            breaker: BreakerConfig::default(),
            host_info: vec![],
            limits: Default::default(),
        },
        Arc::new(engine),
        store,
        Arc::new(MapSecrets::default()),
    )
    .unwrap()
}

fn manifest(id: &str, version: &str, extra: &str) -> String {
    format!(
        "id = \"{id}\"\nversion = \"{version}\"\nname = \"{id}\"\nwit = \"0.1.0\"\nhooks = [\"queue-router\"]\n{extra}"
    )
}

fn backends() -> Vec<BackendStatus> {
    vec![BackendStatus {
        name: "gpu-a".into(),
        kind: BackendKind::Comfyui,
        healthy: true,
        queue_pending: 0,
        queue_running: 0,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_behaved_plugin_routes_with_config_and_sqlite_kv() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db.sqlite")).unwrap();
    let reg = registry(dir.path(), store.clone());
    let info = reg
        .install(
            &manifest("wb", "0.1.0", ""),
            &crate::common::wasm("well-behaved"),
            None,
        )
        .unwrap();
    assert_eq!(info.state, PluginState::Enabled);
    reg.set_config("wb", &serde_json::json!({ "backend": "gpu-a" }))
        .unwrap();
    let sub = crate::common::submission("prompt-1");
    for _ in 0..3 {
        let d = reg.route(&sub, &backends()).await.unwrap();
        assert_eq!(d.route, Route::Backend("gpu-a".into()));
        assert_eq!(d.decided_by.as_deref(), Some("wb"));
    }
    // the plugin's call counter went through the SQLite key-value store
    let calls = store.kv_get("wb", "calls").unwrap().unwrap();
    assert_eq!(u64::from_le_bytes(calls.try_into().unwrap()), 3);
    let logs = reg.logs("wb").unwrap();
    assert!(
        logs.iter().any(|r| r.message.contains("call #3")),
        "{logs:?}"
    );
    assert_eq!(reg.get("wb").unwrap().stats.calls, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_lets_in_flight_call_finish_on_old_component() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Store::open_in_memory().unwrap());
    // v1 blocks in a host call until its 800 ms deadline ends it
    let v1 = manifest("hr", "0.1.0", "[budget]\ndeadline_ms = 800\n");
    reg.install(&v1, &crate::common::wasm("host-blocker"), None)
        .unwrap();
    let r = reg.clone();
    let in_flight = tokio::spawn(async move {
        r.route(&crate::common::submission("old"), &backends())
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let v2 = manifest("hr", "0.2.0", "");
    reg.install(&v2, &crate::common::wasm("well-behaved"), None)
        .unwrap();
    reg.set_config("hr", &serde_json::json!({ "backend": "gpu-a" }))
        .unwrap();
    let started = Instant::now();
    let d = reg
        .route(&crate::common::submission("new"), &backends())
        .await
        .unwrap();
    assert_eq!(d.route, Route::Backend("gpu-a".into()));
    assert!(started.elapsed() < Duration::from_millis(600));
    // the old call ran to its end on v1: the blocker's timeout, fail-closed by default
    let err = in_flight.await.unwrap().unwrap_err();
    assert!(
        matches!(err.0.kind, CallErrorKind::BlockedTimeout(_)),
        "{err}"
    );
    // rollback brings the blocker back
    assert_eq!(reg.rollback("hr").unwrap().version, "0.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_reports_components_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Store::open_in_memory().unwrap());
    let plugins = dir.path().join("plugins");
    let put = |name: &str, toml: String, wasm: &[u8]| {
        std::fs::create_dir_all(plugins.join(name)).unwrap();
        std::fs::write(plugins.join(name).join("plugin.toml"), toml).unwrap();
        std::fs::write(
            plugins
                .join(name)
                .join(format!("{}.wasm", name.replace('-', "_"))),
            wasm,
        )
        .unwrap();
    };
    put(
        "good",
        manifest("good", "0.1.0", ""),
        &crate::common::wasm("well-behaved"),
    );
    put("junk", manifest("junk", "0.1.0", ""), b"\0asm not really");
    // a queue-router component declared as a status overlay
    put(
        "wrong-world",
        manifest("wrong-world", "0.1.0", "").replace("queue-router", "status-overlay"),
        &crate::common::wasm("well-behaved"),
    );
    let report = reg.discover().unwrap();
    assert_eq!(report.loaded, ["good"]);
    assert_eq!(report.broken.len(), 2, "{:?}", report.broken);
    for id in ["junk", "wrong-world"] {
        let info = reg.get(id).unwrap();
        assert!(
            matches!(info.state, PluginState::Broken(_)),
            "{id}: {:?}",
            info.state
        );
    }
    let err = reg
        .install(&manifest("junk2", "0.1.0", ""), b"junk", None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::Compile(_) | RuntimeError::WorldMismatch(..)
        ),
        "{err}"
    );
}

fn output_file(name: &str) -> comfyhost_runtime::types::OutputFile {
    comfyhost_runtime::types::OutputFile {
        guest_path: format!("/output/{name}"),
        filename: name.into(),
        subfolder: String::new(),
        kind: comfyhost_runtime::types::OutputKind::Image,
        size: 3,
        modified_ms: 1,
        prompt_id: Some("p1".into()),
        user: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_output_sync_plugins_still_load_and_only_mirrors_get_deletions() {
    use comfyhost_runtime::types::SyncOutcome;
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Store::open_in_memory().unwrap());
    let sync_manifest = |id: &str, priority: i32| {
        format!(
            "id = \"{id}\"\nversion = \"0.1.0\"\nname = \"{id}\"\nwit = \"0.1.0\"\nhooks = [\"output-sync\"]\npriority = {priority}\n"
        )
    };
    let plain = reg
        .install(
            &sync_manifest("plain", 1),
            &crate::common::wasm("plain-sync"),
            None,
        )
        .unwrap();
    assert_eq!(plain.state, PluginState::Enabled);
    assert!(!plain.mirrors_removals);
    assert!(!reg.has_enabled_mirror());
    // With only a plain plugin, nobody is asked to delete anything.
    assert!(reg.on_removed(&output_file("a.png")).await.is_empty());

    let mirror = reg
        .install(
            &sync_manifest("mirror", 2),
            &crate::common::wasm("mirror-panicker"),
            None,
        )
        .unwrap();
    assert!(mirror.mirrors_removals);
    assert!(reg.has_enabled_mirror());
    // Both worlds sync.
    let synced = reg.on_output(&output_file("a.png")).await;
    assert_eq!(
        synced,
        vec![
            (
                "plain".to_owned(),
                Ok(SyncOutcome::Synced("plain: /output/a.png".into()))
            ),
            (
                "mirror".to_owned(),
                Ok(SyncOutcome::Synced("mirror: /output/a.png".into()))
            ),
        ]
    );
    // Only the mirror is asked to take a deletion back; its panic is its own failure.
    let removed = reg.on_removed(&output_file("a.png")).await;
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].0, "mirror");
    assert!(
        matches!(&removed[0].1, Err(CallErrorKind::Trap(_))),
        "{removed:?}"
    );
    assert_eq!(reg.get("mirror").unwrap().stats.failures, 1);
    // ...and the registry goes on serving both.
    assert_eq!(reg.on_output(&output_file("b.png")).await.len(), 2);
}
