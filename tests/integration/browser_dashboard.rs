//! Browser end-to-end for the admin dashboard in headless Chromium, against the real
//! `comfyhost` binary: sign in, toggle a plugin and see the effect on the proxied ComfyUI,
//! approve a capability, change a config and see it validated, restart ComfyUI and watch its
//! state change; a screenshot of every page in its empty state and after use is kept under
//! `target/test-artifacts/` (`dashboard-<page>-empty.png`, `dashboard-<page>-used.png`), and
//! axe-core checks every page for serious contrast violations (WCAG AA).

use std::time::Duration;

use crate::support::axe;
use crate::support::browser::{self, Browser};
use crate::support::wasm::{build_component, workspace_root};
use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use serde_json::{Value, json};

/// The template plugin (a node-limit router) twice: as itself, and under another id with a
/// manifest that asks for a network capability (so it waits for approval) and fails open.
fn plugins(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let wasm = build_component("comfyhost-template-queue-router");
    let src = workspace_root().join("sdk/templates/queue-router");
    let manifest = std::fs::read_to_string(src.join("plugin.toml")).expect("manifest");
    let mut dirs = Vec::new();
    for (id, extra) in [
        ("node-limit", ""),
        (
            "needs-net",
            "\n[capabilities]\nhttp = [\"http://127.0.0.1:9\"]\n",
        ),
    ] {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let m = manifest.replace("id = \"node-limit\"", &format!("id = \"{id}\""));
        let m = m.replace("[budget]", &format!("{extra}\n[budget]"));
        // While it waits for approval it must not close the router hook for everyone (a
        // fail-closed plugin that is not running refuses every prompt).
        let m = if extra.is_empty() {
            m
        } else {
            m.replace("failure = \"fail-closed\"", "failure = \"fail-open\"")
        };
        std::fs::write(dir.join("plugin.toml"), m).expect("manifest");
        std::fs::copy(
            src.join("config.schema.json"),
            dir.join("config.schema.json"),
        )
        .expect("schema");
        std::fs::copy(&wasm, dir.join("comfyhost_template_queue_router.wasm")).expect("wasm");
        dirs.push(dir);
    }
    dirs
}

async fn submit(host: &Host) -> u16 {
    Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": empty_image_workflow("dash"), "client_id": "dash"}))
        .send()
        .await
        .expect("submit")
        .status()
        .as_u16()
}

async fn submit_as_admin(host: &Host) -> u16 {
    Host::client()
        .post(host.url("/prompt"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"prompt": empty_image_workflow("dash"), "client_id": "dash"}))
        .send()
        .await
        .expect("submit")
        .status()
        .as_u16()
}

/// Every page the dashboard has, with what shows that it has rendered.
const PAGES: &[(&str, &str)] = &[
    (
        "plugins",
        "!!document.querySelector('#plugins-table tr[data-plugin=\"node-limit\"]')",
    ),
    ("install", "!!document.getElementById('install-form')"),
    (
        "comfyui",
        "document.getElementById('comfy-state')?.innerText === 'ready'",
    ),
    (
        "system",
        "document.querySelectorAll('#volumes tbody tr').length >= 1",
    ),
    ("gpu", "!!document.getElementById('gpu-summary')"),
    ("jobs", "!!document.querySelector('#jobs-table tbody tr')"),
    (
        "backends",
        "document.querySelector('main h2')?.innerText === 'Remote backends'",
    ),
    (
        "models",
        "!!document.getElementById('resolve-form') && !!document.getElementById('downloads')",
    ),
    ("outputs", "!!document.getElementById('outputs-state')"),
    ("users", "!!document.getElementById('users-table')"),
    (
        "activity",
        "!!document.querySelector('#activity-table tbody tr')",
    ),
];

/// Visits every page: a screenshot named by page and `phase`, and axe-core's serious
/// violations (when axe-core is there) collected as `(page, phase, violation)`.
async fn tour(
    b: &mut Browser,
    host: &Host,
    phase: &str,
    axe_js: Option<&str>,
    found: &mut Vec<(String, String, Value)>,
) {
    for (page, ready) in PAGES {
        open(b, host, page, ready).await;
        b.screenshot(&format!("dashboard-{page}-{phase}.png")).await;
        if let Some(js) = axe_js {
            for v in axe::serious_violations(b, js).await {
                found.push((page.to_string(), phase.to_string(), v));
            }
        }
    }
}

async fn open(b: &mut Browser, host: &Host, page: &str, ready: &str) {
    b.navigate(&host.url(&format!("/comfyhost/#{page}"))).await;
    b.wait_for(page, ready, Duration::from_secs(20)).await;
}

/// Sets `max_nodes` in the plugin's config form and submits it. Retried until the form is
/// there: the page may still be re-rendering from the navigation that showed it.
async fn submit_max_nodes(b: &mut Browser, value: &str) {
    let expr = format!(
        "(() => {{ const i = document.getElementById('cfg-max_nodes'); \
         const f = document.getElementById('config-form'); if (!i || !f) return false; \
         i.value = '{value}'; f.requestSubmit(); return true; }})()"
    );
    b.wait_for("the config form", &expr, Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_runs_the_workshop_from_the_dashboard() {
    let Some(pre) = browser::prereqs() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let mut builder = Host::builder()
        .arg("--comfyui-arg=--sim-node-delay-ms")
        .arg("--comfyui-arg=50");
    for d in plugins(tmp.path()) {
        builder = builder.plugin_dir(d);
    }
    let host = builder.start().await;
    let mut b = Browser::launch(&pre.chromium).await;

    // Sign in.
    b.navigate(&host.url("/comfyhost/")).await;
    b.wait_for(
        "the sign-in form",
        "!!document.getElementById('login')",
        Duration::from_secs(20),
    )
    .await;
    b.screenshot("dashboard-login.png").await;
    b.eval("document.getElementById('token').value = 'wrong-token'; document.getElementById('login').requestSubmit(); true").await;
    b.wait_for(
        "a refusal",
        "document.getElementById('login-error')?.innerText.includes('unknown token')",
        Duration::from_secs(10),
    )
    .await;
    b.eval(&format!("document.getElementById('token').value = '{ADMIN_TOKEN}'; document.getElementById('login').requestSubmit(); true")).await;
    b.wait_for(
        "the plugins table",
        "!!document.querySelector('#plugins-table tr[data-plugin=\"node-limit\"]')",
        Duration::from_secs(20),
    )
    .await;
    b.screenshot("dashboard-plugins.png").await;

    // Every page before any use: screenshots, axe, and the empty states say what will appear.
    let axe_js = axe::source();
    let mut violations = Vec::new();
    tour(&mut b, &host, "empty", axe_js.as_deref(), &mut violations).await;
    open(
        &mut b,
        &host,
        "plugins",
        "document.getElementById('plugins-summary')?.innerText.startsWith('2 plugins: 1 running, 1 waiting for your approval')",
    )
    .await;
    open(
        &mut b,
        &host,
        "jobs",
        "document.querySelector('#jobs-table td.empty-state')?.innerText.includes('No jobs yet')",
    )
    .await;
    open(
        &mut b,
        &host,
        "outputs",
        "document.getElementById('outputs-state')?.innerText.includes('no output-sync plugin is installed')",
    )
    .await;
    // The GPU page in plain words first; the raw detection errors behind "Details".
    let report = host.admin_get("/comfyhost/api/gpu").await;
    if report["inventory"]["gpus"]
        .as_array()
        .is_some_and(Vec::is_empty)
    {
        open(
            &mut b,
            &host,
            "gpu",
            "!!document.getElementById('gpu-summary')",
        )
        .await;
        let seen = b
            .eval(
                "(() => { const s = document.getElementById('gpu-summary'); const d = s.querySelector('details'); \
                 return { summary: s.innerText, closed: !!d && !d.open, raw: d?.textContent ?? '', \
                          page: document.querySelector('main').innerText, \
                          confirmation: document.getElementById('confirmation')?.innerText ?? null }; })()",
            )
            .await;
        let summary = seen["summary"].as_str().unwrap_or_default();
        assert!(
            summary.starts_with("No NVIDIA GPU found: ComfyUI runs on the CPU (slow)."),
            "{seen:#}"
        );
        assert_eq!(seen["closed"], true, "{seen:#}");
        let page = seen["page"].as_str().unwrap_or_default();
        for raw in ["libnvidia-ml", "os error", "No such file"] {
            assert!(!page.contains(raw), "raw error {raw:?} shown: {page}");
        }
        assert!(!page.contains("reports quad attention"), "{page}");
        if let Some(c) = seen["confirmation"].as_str() {
            assert!(
                c.starts_with("Confirmed by ComfyUI's log: ComfyUI runs on the CPU")
                    || c.starts_with("Waiting"),
                "{c}"
            );
        }
        b.screenshot("dashboard-gpu-no-gpu.png").await;
    } else {
        eprintln!(
            "GPU detection is off or found a GPU here: the no-GPU texts are checked on machines without one"
        );
    }

    // Config: refused when invalid (the schema says minimum 1), then saved; the limit bites.
    open(
        &mut b,
        &host,
        "plugins/node-limit",
        "!!document.getElementById('cfg-max_nodes')",
    )
    .await;
    submit_max_nodes(&mut b, "0").await;
    let err = b
        .wait_for(
            "a validation error next to the field",
            "document.getElementById('cfg-err-max_nodes')?.innerText",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        err.as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("max_nodes")
            || err.as_str().unwrap_or("").contains("minimum"),
        "{err}"
    );
    b.screenshot("dashboard-config-invalid.png").await;
    assert_eq!(submit(&host).await, 200, "2 nodes pass the default limit");
    submit_max_nodes(&mut b, "1").await;
    b.wait_for(
        "the saved config",
        "document.getElementById('toast')?.innerText.includes('Configuration of node-limit saved')",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        submit(&host).await,
        400,
        "the new limit rejects a 2-node workflow"
    );
    assert_eq!(
        submit_as_admin(&host).await,
        400,
        "refused, and recorded with who sent it"
    );

    // Toggle off in the dashboard: the limit is fail-closed, so prompts are refused (never let
    // through unchecked) until it is back on.
    b.click("button.toggle[data-plugin=\"node-limit\"]").await;
    b.wait_for(
        "the disabled state",
        "document.querySelector('tr[data-plugin=\"node-limit\"]')?.innerText.includes('disabled')",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(submit(&host).await, 503);
    let info = host.admin_get("/comfyhost/api/plugins/node-limit").await;
    assert_eq!(info["enabled"], false);

    // Approve the capability the other plugin asks for.
    open(
        &mut b,
        &host,
        "plugins/needs-net",
        "!!document.querySelector('#capabilities button.approve')",
    )
    .await;
    assert_eq!(
        host.admin_get("/comfyhost/api/plugins/needs-net").await["state"]["state"],
        "needs_approval"
    );
    b.screenshot("dashboard-capability-pending.png").await;
    b.click("#capabilities button.approve").await;
    b.wait_for(
        "the granted capability",
        "!!document.querySelector('#capabilities button.revoke')",
        Duration::from_secs(10),
    )
    .await;
    let info: Value = host.admin_get("/comfyhost/api/plugins/needs-net").await;
    assert_eq!(info["granted"]["http"], json!(["http://127.0.0.1:9"]));
    assert_eq!(info["state"]["state"], "enabled");

    // Restart ComfyUI and watch the state change live.
    open(
        &mut b,
        &host,
        "comfyui",
        "document.getElementById('comfy-state')?.innerText === 'ready'",
    )
    .await;
    b.screenshot("dashboard-comfyui.png").await;
    b.click("#comfy-restart").await;
    // Confirmed in the page first, naming what it interrupts.
    let text = b
        .wait_for(
            "the restart confirmation",
            "document.getElementById('confirm-text')?.innerText",
            Duration::from_secs(10),
        )
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.contains("No job is running or queued") || text.contains("will be interrupted"),
        "{text}"
    );
    b.screenshot("dashboard-comfyui-restart-confirm.png").await;
    b.click("#confirm-yes").await;
    b.wait_for(
        "the restart's steps",
        "!!document.querySelector('#comfy-events li[data-state=\"starting\"]')",
        Duration::from_secs(20),
    )
    .await;
    b.wait_for(
        "ComfyUI ready again",
        "document.getElementById('comfy-state')?.innerText === 'ready'",
        Duration::from_secs(60),
    )
    .await;
    b.wait_for(
        "the log tail",
        "document.getElementById('comfy-logs')?.innerText.length > 0",
        Duration::from_secs(10),
    )
    .await;

    // Every page after use.
    tour(&mut b, &host, "used", axe_js.as_deref(), &mut violations).await;
    open(
        &mut b,
        &host,
        "activity",
        "document.querySelector('#activity-table')?.innerText.includes('comfyui.restart')",
    )
    .await;
    // Jobs: who sent a refused prompt, a readable error (no raw JSON), the waited and ran
    // times of one that ran, a link to its outputs.
    open(
        &mut b,
        &host,
        "jobs",
        "!!document.querySelector('#jobs-table tbody tr[data-job]')",
    )
    .await;
    let jobs = b
        .wait_for(
            "the jobs",
            "(() => { const rows = [...document.querySelectorAll('#jobs-table tbody tr[data-job]')]; \
             return rows.length >= 4 && rows.map(r => ({ status: r.dataset.status, user: r.cells[1].innerText, \
               route: r.cells[2].innerText, waited: r.querySelector('.waited').innerText, ran: r.querySelector('.ran').innerText, \
               error: r.querySelector('.job-error')?.innerText ?? '', outputs: !!r.querySelector('a.job-outputs') })); })()",
            Duration::from_secs(20),
        )
        .await;
    let rows = jobs.as_array().expect("rows");
    let refused: Vec<&Value> = rows.iter().filter(|r| r["status"] == "rejected").collect();
    assert!(
        refused
            .iter()
            .any(|r| r["user"] == "admin" && r["route"] == "refused by the host"),
        "{jobs:#}"
    );
    for r in &refused {
        let e = r["error"].as_str().unwrap_or_default();
        assert!(!e.is_empty() && !e.contains('{'), "readable error: {r}");
    }
    let ok = rows
        .iter()
        .find(|r| r["status"] == "succeeded")
        .expect("a succeeded job");
    assert_eq!(ok["outputs"], true, "{ok}");
    assert!(ok["waited"].as_str().unwrap_or("—").ends_with(" s"), "{ok}");
    assert!(ok["ran"].as_str().unwrap_or("—").ends_with(" s"), "{ok}");

    // The System page: tiles with charts, the volumes, the low-disk threshold; the ComfyUI
    // page shows its process's memory.
    open(
        &mut b,
        &host,
        "system",
        "!!document.getElementById('sys-comfyui') && !!document.querySelector('#sys-memory polyline') \
         && document.querySelectorAll('#volumes tbody tr').length >= 1 \
         && document.getElementById('low-disk-state')?.innerText === 'disk ok'",
    )
    .await;
    b.screenshot("dashboard-system.png").await;
    open(
        &mut b,
        &host,
        "comfyui",
        "document.getElementById('comfy-memory')?.innerText.startsWith('memory ')",
    )
    .await;
    // The low-disk banner, on every page, once the threshold is above the free space.
    let r = Host::client()
        .put(host.url("/comfyhost/api/system/low-disk"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"threshold_bytes": u64::MAX / 2}))
        .send()
        .await
        .expect("set threshold");
    assert_eq!(r.status(), 200);
    open(
        &mut b,
        &host,
        "system",
        "!document.getElementById('banner').hidden \
         && document.getElementById('banner').innerText.includes('Low disk space') \
         && document.getElementById('low-disk-state')?.innerText === 'low disk'",
    )
    .await;
    b.screenshot("dashboard-low-disk.png").await;
    let r = Host::client()
        .put(host.url("/comfyhost/api/system/low-disk"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"threshold_bytes": 0}))
        .send()
        .await
        .expect("reset threshold");
    assert_eq!(r.status(), 200);
    let ours: Vec<&String> = b.errors.iter().filter(|e| !e.contains("favicon")).collect();
    assert!(ours.is_empty(), "page errors: {ours:?}");
    // WCAG AA: no serious or critical violation on any page, before or after use.
    for (page, phase, v) in &violations {
        eprintln!("axe: {page} ({phase}): {v}");
    }
    let contrast: Vec<_> = violations
        .iter()
        .filter(|(_, _, v)| v["id"] == "color-contrast")
        .collect();
    assert!(contrast.is_empty(), "contrast violations: {contrast:#?}");
    // The pages of app.js (Users has its own owner) have none of any kind either.
    let ours: Vec<_> = violations.iter().filter(|(p, _, _)| p != "users").collect();
    assert!(ours.is_empty(), "accessibility violations: {ours:#?}");
}

/// prompt-enhance as shipped (optional LLM capabilities, a nullable `llm` object, styles).
fn prompt_enhance(root: &std::path::Path) -> std::path::PathBuf {
    let wasm = build_component("comfyhost-plugin-prompt-enhance");
    let src = workspace_root().join("plugins/prompt-enhance");
    let dir = root.join("prompt-enhance");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in ["plugin.toml", "config.schema.json"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy");
    }
    std::fs::copy(&wasm, dir.join(wasm.file_name().expect("name"))).expect("wasm");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_enhance_form_saves_as_shown_and_refuses_a_misspelled_style() {
    let Some(pre) = browser::prereqs() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let host = Host::builder()
        .plugin_dir(prompt_enhance(tmp.path()))
        .start()
        .await;
    let mut b = Browser::launch(&pre.chromium).await;
    b.sign_in_dashboard(&host.url("/comfyhost/"), ADMIN_TOKEN)
        .await;
    b.wait_for(
        "the plugins table",
        "!!document.querySelector('#plugins-table tr[data-plugin=\"prompt-enhance\"]')",
        Duration::from_secs(20),
    )
    .await;
    open(
        &mut b,
        &host,
        "plugins/prompt-enhance",
        "!!document.getElementById('cfg-llm') && !!document.getElementById('cfg-default_style')",
    )
    .await;
    // What each optional capability is for is shown before approval.
    b.wait_for(
        "the capabilities with their reasons",
        "(() => { const t = document.querySelector('#capabilities')?.innerText ?? ''; \
         return t.includes('optional') && t.includes('static style'); })()",
        Duration::from_secs(10),
    )
    .await;
    // The nullable `llm` is shown empty (not `{}`), the style is a choice of known styles.
    let shown = b
        .wait_for(
            "the form",
            "(() => { const l = document.getElementById('cfg-llm'), d = document.getElementById('cfg-default_style'); \
             return l && d && [l.value, [...d.options].map(o => o.text).join(',')]; })()",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(shown[0], "", "{shown}");
    assert!(
        shown[1].as_str().unwrap_or("").contains("cinematic"),
        "{shown}"
    );
    b.screenshot("dashboard-prompt-enhance-form.png").await;

    // Saved unchanged: accepted, and shown the same way again.
    b.eval("document.getElementById('config-form').requestSubmit(); true")
        .await;
    b.wait_for(
        "the saved config",
        "document.getElementById('toast')?.innerText.includes('Configuration of prompt-enhance saved')",
        Duration::from_secs(10),
    )
    .await;
    let cfg = host
        .admin_get("/comfyhost/api/plugins/prompt-enhance")
        .await["config"]
        .clone();
    assert_eq!(cfg["llm"], Value::Null, "{cfg:#}");
    b.wait_for(
        "the form again, llm still empty",
        "document.getElementById('cfg-llm')?.value === ''",
        Duration::from_secs(10),
    )
    .await;

    // A misspelled style is refused at save, the message next to its field.
    let expr = "(() => { const i = document.getElementById('cfg-user_styles'); \
         const f = document.getElementById('config-form'); if (!i || !f) return false; \
         i.value = '{\"alice\": \"cinematik\"}'; f.requestSubmit(); return true; })()";
    b.wait_for("the config form", expr, Duration::from_secs(10))
        .await;
    let err = b
        .wait_for(
            "the error next to the field",
            "document.getElementById('cfg-err-user_styles')?.innerText",
            Duration::from_secs(10),
        )
        .await;
    assert!(err.as_str().unwrap_or("").contains("cinematik"), "{err}");
    b.screenshot("dashboard-prompt-enhance-misspelled.png")
        .await;
    let cfg = host
        .admin_get("/comfyhost/api/plugins/prompt-enhance")
        .await["config"]
        .clone();
    assert_eq!(cfg["user_styles"], json!({}), "nothing saved: {cfg:#}");
    let ours: Vec<&String> = b.errors.iter().filter(|e| !e.contains("favicon")).collect();
    assert!(ours.is_empty(), "page errors: {ours:?}");
}

/// The Outputs page says why output sync does not run, in the plugin table's terms: waiting
/// for approval while the table says so, then enabled but with no destination configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outputs_page_says_why_sync_does_not_run() {
    let Some(pre) = browser::prereqs() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = crate::support::wasm::first_party_plugin("output-sync", tmp.path());
    let host = Host::builder().plugin_dir(dir).start().await;
    let mut b = Browser::launch(&pre.chromium).await;
    b.sign_in_dashboard(&host.url("/comfyhost/"), ADMIN_TOKEN)
        .await;
    b.wait_for(
        "the plugins table",
        "document.querySelector('#plugins-table tr[data-plugin=\"output-sync\"]')?.innerText.includes('needs_approval')",
        Duration::from_secs(20),
    )
    .await;
    open(
        &mut b,
        &host,
        "outputs",
        "document.getElementById('outputs-state')?.innerText.includes('output-sync is enabled in the table but waits for you to approve')",
    )
    .await;
    b.screenshot("dashboard-outputs-needs-approval.png").await;

    // Everything it asks for granted, no destination yet.
    let info = host.admin_get("/comfyhost/api/plugins/output-sync").await;
    let mut grants = json!({"http": [], "dirs": [], "secrets": [], "code_sha256": info["sha256"]});
    for cap in info["requested"].as_array().cloned().unwrap_or_default() {
        let (list, item) = match cap["kind"].as_str() {
            Some("http") => ("http", cap["origin"].clone()),
            Some("secret") => ("secrets", cap["name"].clone()),
            Some("dir") => (
                "dirs",
                json!({"path": cap["path"], "guest": cap["guest"], "access": cap["access"]}),
            ),
            other => panic!("unknown capability {other:?}"),
        };
        grants[list].as_array_mut().expect("list").push(item);
    }
    let r = Host::client()
        .put(host.url("/comfyhost/api/plugins/output-sync/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&grants)
        .send()
        .await
        .expect("grants");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    open(
        &mut b,
        &host,
        "plugins",
        "!!document.getElementById('plugins-table')",
    )
    .await;
    open(
        &mut b,
        &host,
        "outputs",
        "document.getElementById('outputs-state')?.innerText.includes('has no destination configured')",
    )
    .await;
    b.screenshot("dashboard-outputs-no-destination.png").await;
    let ours: Vec<&String> = b.errors.iter().filter(|e| !e.contains("favicon")).collect();
    assert!(ours.is_empty(), "page errors: {ours:?}");
}
