//! `comfyhost run`: assembles the store, plugin runtime, GPU decision, supervisor, proxy and
//! host API, serves them, and shuts everything down in order (no orphaned ComfyUI).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use axum::Router;
use comfyhost_proxy::{ProxyConfig, ProxyState, UpstreamSnapshot};
use comfyhost_supervisor::{Supervisor, SupervisorState};
use tokio_util::sync::CancellationToken;

use crate::auth::{AdminAuth, TokenOrigin};
use crate::backends::{BackendPool, BackendsConfig};
use crate::config::RunArgs;
use crate::fair_queue::FairQueue;
use crate::intercept::PluginInterceptor;
use crate::jobs::JobTracker;
use crate::overlay::OverlayDriver;
use crate::remote::{RemoteRunner, RemoteSetup};
use crate::state::AppState;
use crate::users::Identity;
use crate::{api, comfy_launch, gpu_cli, plugins_setup};

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;

    // Bound and answering liveness before the slow parts (plugins, GPU probe).
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let slot: crate::serve_early::Slot = Arc::default();
    let cancel = CancellationToken::new();
    let shutdown = cancel.clone();
    let early =
        crate::serve_early::router(&args.normalized_prefix().unwrap_or_default(), slot.clone());
    crate::listener::raise_open_file_limit();
    let header_timeout = std::time::Duration::from_secs(args.header_read_timeout.max(1));
    let server = tokio::spawn(async move {
        crate::listener::serve(listener, early, header_timeout, async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = shutdown.cancelled() => {}
            }
        })
        .await
    });

    let (auth, origin) = AdminAuth::load_or_create(args.admin_token.as_deref(), &args.data_dir)?;
    if let TokenOrigin::Generated(token) = origin {
        let prefix = args.normalized_prefix().unwrap_or_default();
        eprintln!(
            "\n  comfyhost admin token (shown once; only its hash is kept):\n\n      {token}\n\n  \
             Sign in to the dashboard with it at http://{}{prefix}/comfyhost/\n  \
             (ComfyUI itself is at http://{}{prefix}/), or use it as\n  \
             `Authorization: Bearer <token>` for the host API.\n",
            browser_addr(addr),
            browser_addr(addr),
        );
    }

    let db = args
        .database
        .clone()
        .unwrap_or_else(|| args.data_dir.join("comfyhost.db"));
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the database directory {}", parent.display()))?;
    }
    let store = comfyhost_store::Store::open(&db)
        .with_context(|| format!("opening the store {}", db.display()))?
        .with_kv_limits(comfyhost_store::KvLimits {
            max_bytes: args.plugin_kv_quota_mb.saturating_mul(1 << 20),
            ..comfyhost_store::KvLimits::default()
        });
    let plugins = plugins_setup::open(&args, store.clone()).await?;
    plugins.set_call_observer(Arc::new(crate::metrics::PluginCallMetrics));

    let gpu_override = crate::api::gpu::stored_override(&store);
    let gpu = gpu_cli::startup_report(&args, &gpu_override).await;
    let (flags, refusal) = match &gpu {
        Some(r) => (r.decision.flags.clone(), r.decision.refusal.clone()),
        None => (Vec::new(), None),
    };
    if let Some(r) = &gpu {
        tracing::info!(choice = ?r.decision.choice, flags = ?r.decision.flags, "attention decision");
    }

    let mut sup_config = comfy_launch::supervisor_config(&args, &flags)?;
    crate::isolation::comfy_users::configure_launch(
        &mut sup_config,
        &args,
        &store,
        gpu.as_ref().and_then(|r| r.accepted_flags.as_ref()),
    );
    let supervisor = Arc::new(
        Supervisor::spawn(sup_config, cancel.child_token())
            .context("starting the ComfyUI supervisor")?,
    );
    match &refusal {
        Some(why) => tracing::error!(
            reason = %why,
            "ComfyUI is not started: the GPU/torch environment cannot run it (see `comfyhost gpu`)"
        ),
        None => {
            supervisor.start().await;
        }
    }
    let gpu = Arc::new(RwLock::new(gpu));
    crate::gpu_confirm::spawn(&supervisor, gpu.clone(), cancel.child_token());

    let backends = match &args.backends {
        Some(path) => BackendsConfig::load(path)?,
        None => BackendsConfig::default(),
    };
    let pool = BackendPool::new(backends).context("setting up backends")?;
    pool.spawn_health_checks(cancel.child_token());

    let fair = FairQueue::new();
    let output_dir = args.attach.is_none().then(|| args.output_dir());
    let outputs = crate::outputs::OutputSync::new(
        store.clone(),
        plugins.clone(),
        output_dir.clone(),
        crate::outputs::OutputsConfig::from_env(),
    );
    let jobs = JobTracker::new(
        store.clone(),
        supervisor.base_url().to_string(),
        output_dir,
        fair.clone(),
    )
    .context("loading unfinished jobs")?;
    match auth.end_sessions_if_rotated(&store) {
        Ok(true) => tracing::warn!("the admin token changed: every session of the old one ended"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "cannot check whether the admin token changed"),
    }
    let identity = Identity::new(auth.clone(), store.clone());
    let gpu_name = gpu.read().ok().and_then(|g| {
        g.as_ref()
            .and_then(|r| r.inventory.gpus.first().map(|g| g.name.clone()))
    });
    let overlay = OverlayDriver::new(plugins.clone(), gpu_name);
    jobs.set_overlay(overlay.clone());
    let models = Arc::new(
        crate::models::ModelsService::new(&args, plugins.clone())
            .context("opening the model download state")?,
    );
    let machine = crate::machine::MachineMonitor::new(
        crate::machine::MachineConfig {
            sample_interval: args.system_sample_interval(),
            low_disk_threshold_bytes: args.low_disk_threshold_mib.saturating_mul(1 << 20),
            comfyui_memory_limit_bytes: args
                .comfyui_memory_limit_mib
                .map(|m| m.saturating_mul(1 << 20)),
            gpus: gpu
                .read()
                .ok()
                .is_some_and(|g| g.as_ref().is_some_and(|r| !r.inventory.gpus.is_empty())),
            growth_min_span: std::time::Duration::from_secs(600),
        },
        crate::machine::watched_dirs(&args, models.roots()),
        store.clone(),
        supervisor.clone(),
    );
    let interceptor = PluginInterceptor::new(
        plugins.clone(),
        jobs.clone(),
        identity.clone(),
        fair.clone(),
        overlay.clone(),
        models.clone(),
    );
    // One set of workshop rules (and client id claims) for the prompt path and the routes; it
    // also hears which files ComfyUI announces for each prompt.
    let isolation = crate::isolation::Isolation::new(identity.clone(), store.clone());
    let executed = crate::outputs::executed_tap::ExecutedTap::spawn(
        outputs.clone(),
        jobs.clone(),
        cancel.child_token(),
    );
    let proxy = build_proxy(
        &args,
        &supervisor,
        interceptor.clone(),
        vec![
            Arc::new(overlay.clone()),
            Arc::new(executed),
            Arc::new(crate::jobs_start_tap::JobStartTap(jobs.clone())),
            Arc::new(isolation.announced_files()),
        ],
    )?;
    overlay.set_proxy(proxy.clone());
    machine.set_proxy(proxy.clone());
    machine.spawn(cancel.child_token());
    jobs.spawn(&supervisor, proxy.clone(), cancel.child_token());
    outputs.spawn(&jobs, cancel.child_token());
    let remote = RemoteRunner::new(RemoteSetup {
        pool,
        store: store.clone(),
        jobs: jobs.clone(),
        fair,
        proxy: proxy.clone(),
        cache_dir: args.data_dir.join("remote-outputs"),
        input_dir: args.attach.is_none().then(|| args.input_dir()),
        overlay: overlay.clone(),
        cancel: cancel.child_token(),
    })
    .context("resuming remote jobs")?;
    interceptor.set_remote(remote.clone());
    interceptor.set_isolation(isolation.clone());
    let poison = crate::poison::PoisonGuard::new(store.clone());
    jobs.set_poison(poison.clone());
    interceptor.set_poison(poison);
    interceptor.set_limits(crate::user_limits::UserLimits::new(store.clone()));
    plugins_setup::spawn_rescan(
        plugins.clone(),
        std::time::Duration::from_secs(args.plugins_rescan_s),
        cancel.child_token(),
    );
    crate::retention::spawn_job_retention(store.clone(), cancel.child_token());
    crate::metrics::route::spawn_event_counters(
        &jobs,
        store.clone(),
        &supervisor,
        cancel.child_token(),
    );
    let metrics = crate::metrics::route::MetricsRoute::new(
        crate::metrics::live::LiveSources {
            store: store.clone(),
            proxy: proxy.clone(),
            outputs: outputs.clone(),
            machine: machine.clone(),
            supervisor: supervisor.clone(),
        },
        identity.clone(),
        args.metrics_token.as_deref(),
    );
    let state = AppState {
        supervisor: supervisor.clone(),
        plugins,
        jobs,
        auth,
        store: store.clone(),
        identity,
        remote: remote.clone(),
        gpu,
        outputs,
        models,
        machine,
    };
    let app = router(&args, state, proxy, remote, overlay, metrics, isolation);
    let _ = slot.set(crate::serve_early::Assembled {
        app,
        supervisor: supervisor.clone(),
    });
    // Start-up's garbage (plugin compilation, the GPU probe) goes back to the kernel.
    crate::memory::spawn_trimmer(cancel.child_token());
    // Tests and scripts read this line: from here on every route is served.
    println!(
        "comfyhost listening on http://{addr}{}",
        args.normalized_prefix().unwrap_or_default()
    );

    server
        .await
        .context("the HTTP server task")?
        .context("serving HTTP")?;

    if args.attach.is_some() {
        tracing::info!("shutting down (the attached ComfyUI is not ours and keeps running)");
    } else {
        tracing::info!("shutting down: stopping ComfyUI");
    }
    cancel.cancel();
    supervisor.shutdown().await;
    // Job records still queued for the store's writer are written before the process ends.
    store.flush_jobs();
    Ok(())
}

fn build_proxy(
    args: &RunArgs,
    supervisor: &Arc<Supervisor>,
    interceptor: Arc<PluginInterceptor>,
    taps: Vec<Arc<dyn comfyhost_proxy::WsTap>>,
) -> anyhow::Result<ProxyState> {
    let base = supervisor.base_url();
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("the proxy supports http:// upstreams only, not {base}"))?
        .trim_end_matches('/');
    anyhow::ensure!(
        !authority.contains('/'),
        "the proxy cannot forward to an upstream with a path ({base}); attach to ComfyUI's root URL"
    );
    let mut config =
        ProxyConfig::new(authority).with_context(|| format!("proxy upstream {base}"))?;
    if let Some(prefix) = args.normalized_prefix() {
        config = config.with_prefix(&prefix)?;
    }
    let sup = supervisor.clone();
    let mut builder = ProxyState::builder(config);
    for tap in taps {
        builder = builder.tap(tap);
    }
    let state = builder
        .upstream_state(move || {
            let status = sup.status();
            let mut snap = UpstreamSnapshot::new(format!("{:?}", status.state).to_lowercase());
            snap.restarting = matches!(
                status.state,
                SupervisorState::Starting | SupervisorState::Backoff
            );
            snap.details = status.reason.map(serde_json::Value::String);
            snap
        })
        .interceptor(interceptor)
        .build()?;
    Ok(state)
}

/// Host routes take precedence; everything else is ComfyUI's.
fn router(
    args: &RunArgs,
    state: AppState,
    proxy: ProxyState,
    remote: RemoteRunner,
    overlay: OverlayDriver,
    metrics: crate::metrics::route::MetricsRoute,
    isolation: crate::isolation::Isolation,
) -> Router {
    let prefix = args.normalized_prefix().unwrap_or_default();
    let api_path = format!("{prefix}/comfyhost/api");
    let jobs = state.jobs.clone();
    let proxy = comfyhost_proxy::router(proxy);
    let comfy_users = crate::isolation::comfy_users::ComfyUsers::new(
        proxy.clone(),
        prefix.clone(),
        isolation.clone(),
    );
    // ComfyUI's endpoints (answered in part by the host, or proxied) are counted and timed.
    let gate = crate::isolation::gate::Gate {
        isolation: isolation.clone(),
        prefix: prefix.clone(),
    };
    let comfy = crate::comfy_routes::router(
        &prefix,
        remote,
        overlay,
        jobs,
        proxy.clone(),
        isolation.clone(),
    )
    .merge(proxy)
    .layer(axum::middleware::from_fn_with_state(
        comfy_users,
        crate::isolation::comfy_users::comfy_user,
    ))
    .layer(axum::middleware::from_fn_with_state(
        gate.clone(),
        crate::isolation::gate::bind_client_id,
    ))
    .layer(axum::middleware::from_fn_with_state(
        gate,
        crate::isolation::gate::require_sign_in,
    ))
    .layer(axum::middleware::from_fn(
        crate::metrics::route::track_proxy,
    ));
    Router::new()
        .nest(&api_path, api::router(state))
        .merge(crate::dashboard::router(&prefix))
        .merge(crate::isolation::gate::router(&prefix))
        .merge(crate::metrics::route::router(&prefix, metrics))
        .merge(comfy)
}

/// The address to print for a browser: a wildcard listen address is reachable as localhost.
fn browser_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
