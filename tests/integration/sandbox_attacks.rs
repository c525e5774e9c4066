//! Hostile plugins that go around the wasm sandbox through the host (issue 17), each run in
//! the real `comfyhost` binary: id squatting, kv flooding, file-descriptor hoarding and
//! escaping symlinks, host memory outside the plugin's cap, log and store flooding, a broken
//! drop-in component, and a preset resolver proposing a loopback download. Each test asserts
//! containment and prints `POST /prompt` and `GET /system_stats` p50/p99 during the attack
//! against a quiet baseline of the same run (printed figures, not timed assertions).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::wasm::build_component;
use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use serde_json::{Value, json};

// ----- normal traffic and its latency ----------------------------------------------------------

/// Latencies of normal requests sent one after another.
#[derive(Default)]
struct Latency {
    prompt: Vec<Duration>,
    stats: Vec<Duration>,
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// `rounds` normal prompts and `/system_stats` requests; every one must be answered properly.
async fn normal_traffic(host: &Host, rounds: usize) -> Latency {
    let client = Host::client();
    let mut lat = Latency::default();
    for i in 0..rounds {
        let started = Instant::now();
        let r = client
            .post(host.url("/prompt"))
            .json(&json!({"prompt": empty_image_workflow("normal"), "client_id": format!("normal-{i}")}))
            .send()
            .await
            .expect("normal prompt");
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        // Queued, or refused at once because a fail-closed attacker in the router chain tripped
        // its breaker: its hook then stays closed (the plugin policy); what this measures is
        // that the answer comes fast, whatever the attacker does to host resources.
        let closed = status == 503 && body.contains("comfyhost_plugin_unavailable");
        assert!(
            status == 200 || closed,
            "a normal prompt was not answered properly during the attack: {status} {body}"
        );
        lat.prompt.push(started.elapsed());
        let started = Instant::now();
        let r = client
            .get(host.url("/system_stats"))
            .send()
            .await
            .expect("system_stats");
        assert_eq!(r.status(), 200);
        lat.stats.push(started.elapsed());
    }
    lat
}

fn report(class: &str, quiet: &Latency, attack: &Latency) {
    println!(
        "[{class}] POST /prompt p50 {} p99 {} (quiet p50 {} p99 {}); GET /system_stats p50 {} p99 {} (quiet p50 {} p99 {})",
        ms(pct(&attack.prompt, 0.5)),
        ms(pct(&attack.prompt, 0.99)),
        ms(pct(&quiet.prompt, 0.5)),
        ms(pct(&quiet.prompt, 0.99)),
        ms(pct(&attack.stats, 0.5)),
        ms(pct(&attack.stats, 0.99)),
        ms(pct(&quiet.stats, 0.5)),
        ms(pct(&quiet.stats, 0.99)),
    );
}

const ROUNDS: usize = 30;

/// Runs `attack` repeatedly on `workers` tasks while normal traffic is measured; returns the
/// latencies during the attack and what each attack call answered.
async fn under_attack<F, Fut>(
    host: &Host,
    workers: usize,
    attack: F,
) -> (Latency, Vec<(u16, Value)>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (u16, Value)> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let attack = Arc::new(attack);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (stop, attack) = (stop.clone(), attack.clone());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) || n == 0 {
                answers.push(attack(w * 1000 + n).await);
                n += 1;
                tokio::task::yield_now().await;
            }
            answers
        }));
    }
    // Let the attack get going before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lat = normal_traffic(host, ROUNDS).await;
    stop.store(true, Ordering::SeqCst);
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.expect("attack task"));
    }
    (lat, answers)
}

/// An "attack" that only waits: the hostile part is already on disk (rescans do the rest).
async fn idle() -> (u16, Value) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    (200, Value::Null)
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
        + " "
        + &v["error"]["details"].to_string()
}

// ----- set-up helpers ----------------------------------------------------------------------------

/// A drop-in directory `<root>/<dir>/` with `manifest` and the component of `package`.
fn drop_in(root: &Path, dir: &str, package: &str, manifest: &str) -> PathBuf {
    let wasm = build_component(package);
    let d = root.join(dir);
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join("plugin.toml"), manifest).expect("manifest");
    std::fs::copy(&wasm, d.join(wasm.file_name().expect("name"))).expect("copy wasm");
    d
}

async fn admin_put(host: &Host, path: &str, body: Value) -> reqwest::Response {
    Host::client()
        .put(host.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn wait_for(host: &Host, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = host.admin_get("/comfyhost/api/plugins").await;
        if pred(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn plugin<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|p| p["id"] == id)
}

fn host_pid(host: &Host) -> u32 {
    host.child.id()
}

/// Open file descriptors of the host process.
fn open_fds(host: &Host) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", host_pid(host)))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A `/proc/<pid>/status` field in kB.
fn proc_kb(host: &Host, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", host_pid(host)))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ----- 1. id squatting -------------------------------------------------------------------------

fn victim_manifest(wasm: &str) -> String {
    format!(
        r#"
id = "victim"
version = "0.1.0"
name = "Approved router"
wit = "0.1.0"
hooks = ["queue-router"]
wasm = "{wasm}"

[capabilities]
http = ["https://api.example.com:443"]
secrets = ["API_KEY"]

[budget]
deadline_ms = 2000
memory_mb = 32
failure = "fail-open"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn id_squatting_never_runs_under_the_approved_grants() {
    let tmp = tempfile::tempdir().expect("tmp");
    let victim = drop_in(
        tmp.path(),
        "victim",
        "hostile-well-behaved",
        &victim_manifest("hostile_well_behaved.wasm"),
    );
    let host = Host::builder()
        .plugin_dir(victim)
        .arg("--plugins-rescan")
        .arg("1")
        .env("COMFYHOST_SECRET_API_KEY", "s3cret-value")
        .start()
        .await;
    let r = admin_put(
        &host,
        "/comfyhost/api/plugins/victim/config",
        json!({"backend": "none"}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = admin_put(
        &host,
        "/comfyhost/api/plugins/victim/grants",
        json!({"http": ["https://api.example.com:443"], "secrets": ["API_KEY"]}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let approved = host.admin_get("/comfyhost/api/plugins/victim").await;
    assert_eq!(approved["state"]["state"], "enabled", "{approved:#}");
    let approved_sha = approved["sha256"].as_str().expect("sha").to_owned();
    assert_eq!(approved["granted"]["code_sha256"], approved_sha.as_str());
    let quiet = normal_traffic(&host, ROUNDS).await;

    // A second folder that sorts first reuses the id and the declared capabilities.
    let plugins = host.data_dir.path().join("plugins");
    drop_in(
        &plugins,
        "aaa-squatter",
        "hostile-id-squatter",
        &victim_manifest("hostile_id_squatter.wasm"),
    );
    wait_for(&host, "the duplicate to be refused", |l| {
        plugin(l, "aaa-squatter").is_some_and(|p| {
            p["last_error"]
                .to_string()
                .contains("duplicate plugin id victim")
        })
    })
    .await;
    let (during, _) = under_attack(&host, 1, |_| idle()).await;
    report("id squatting: duplicate folder", &quiet, &during);
    let now = host.admin_get("/comfyhost/api/plugins/victim").await;
    assert_eq!(
        now["sha256"],
        approved_sha.as_str(),
        "never swapped in: {now:#}"
    );
    assert_eq!(now["dir"], plugins.join("victim").display().to_string());
    let activity = host.admin_get("/comfyhost/api/activity").await;
    let refused = activity
        .as_array()
        .expect("activity")
        .iter()
        .filter(|a| a["action"] == "plugin.duplicate_refused")
        .count();
    assert_eq!(refused, 1, "one warning, not one per scan: {activity:#}");

    // The same attack in place: the approved folder now holds other code.
    std::fs::remove_dir_all(plugins.join("aaa-squatter")).expect("rm");
    drop_in(
        &plugins,
        "victim",
        "hostile-id-squatter",
        &victim_manifest("hostile_id_squatter.wasm"),
    );
    let list = wait_for(&host, "the changed code to wait for approval", |l| {
        plugin(l, "victim").is_some_and(|p| p["state"]["state"] == "needs_approval")
    })
    .await;
    let p = plugin(&list, "victim").expect("victim");
    assert_ne!(p["sha256"], approved_sha.as_str());
    assert!(
        p["pending"].to_string().contains("\"kind\":\"code\""),
        "{p:#}"
    );
    assert_eq!(p["effective"]["secrets"], json!([]), "{p:#}");
    let (during, _) = under_attack(&host, 1, |_| idle()).await;
    report("id squatting: code swapped in place", &quiet, &during);
    assert!(
        !host.output_text().contains("s3cret-value"),
        "the secret never reached the squatter"
    );
}

// ----- 2. kv flood ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_flood_stays_within_its_quota_and_off_the_async_workers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = drop_in(
        tmp.path(),
        "kv-flood",
        "hostile-kv-flood",
        r#"
id = "kv-flood"
version = "0.1.0"
name = "kv flood"
wit = "0.1.0"
hooks = ["queue-router"]
wasm = "hostile_kv_flood.wasm"

[budget]
deadline_ms = 8000
memory_mb = 64
failure = "fail-open"
"#,
    );
    let host = Host::builder()
        .plugin_dir(dir)
        .arg("--plugin-kv-quota-mb")
        .arg("8")
        .start()
        .await;
    let quiet = normal_traffic(&host, ROUNDS).await;
    let base = host.base.clone();
    let (during, answers) = under_attack(&host, 2, move |n| {
        let base = base.clone();
        async move {
            let r = Host::client()
                .post(format!("{base}/prompt"))
                .json(&json!({"prompt": empty_image_workflow("kv"), "client_id": format!("attack-{n}")}))
                .send()
                .await
                .expect("attack");
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
    })
    .await;
    report(
        "kv flood (2 concurrent writers of 1 MiB values)",
        &quiet,
        &during,
    );
    let mut stored_total = 0u64;
    for (status, body) in &answers {
        assert_eq!(*status, 400, "{body}");
        let m = message(body);
        let stored: u64 = m
            .split("stored=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("report in {m}"));
        stored_total += stored;
        assert!(m.contains("QuotaExceeded"), "{m}");
    }
    // 8 MiB quota, 1 MiB values: at most 7 distinct keys across every attack call.
    assert!(
        stored_total <= 8,
        "quota held: {stored_total} values stored"
    );
    println!(
        "[kv flood] {} attack calls, {stored_total} values stored in total",
        answers.len()
    );
}

// ----- 3. file descriptors and symlinks ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fd_hoarding_is_capped_and_escaping_symlinks_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = drop_in(
        tmp.path(),
        "fd-hoarder",
        "hostile-fd-hoarder",
        r#"
id = "fd-hoarder"
version = "0.1.0"
name = "fd hoarder"
wit = "0.1.0"
hooks = ["queue-router"]
wasm = "hostile_fd_hoarder.wasm"

[[capabilities.dirs]]
path = "{input}"
guest = "/in"
access = "ro"

[[capabilities.dirs]]
path = "{data}"
guest = "/data"
access = "rw"

[budget]
deadline_ms = 5000
memory_mb = 64
failure = "fail-closed"
"#,
    );
    let host = Host::builder().plugin_dir(dir).start().await;
    let input = host.data_dir.path().join("comfyui").join("input");
    std::fs::create_dir_all(&input).expect("input");
    std::fs::write(input.join("probe.txt"), b"probe").expect("probe");
    let data = host.data_dir.path().join("plugin-data").join("fd-hoarder");
    std::fs::create_dir_all(&data).expect("data");
    let r = admin_put(
        &host,
        "/comfyhost/api/plugins/fd-hoarder/grants",
        json!({"dirs": [{"path": "{input}", "guest": "/in", "access": "ro"},
                        {"path": "{data}", "guest": "/data", "access": "rw"}]}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Symlinks out of the grant are refused; one inside it works.
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": empty_image_workflow("ln"), "client_id": "attack-links"}))
        .send()
        .await
        .expect("links");
    assert_eq!(r.status(), 400);
    let m = message(&r.json().await.expect("json"));
    assert!(m.contains("abs=err"), "absolute symlink refused: {m}");
    assert!(m.contains("up=err"), "`..` symlink refused: {m}");
    assert!(
        m.contains("inside=ok"),
        "a symlink inside the grant works: {m}"
    );
    for entry in std::fs::read_dir(&data).expect("data dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("inside-"),
            "escaping link left on disk: {name}"
        );
    }

    let quiet = normal_traffic(&host, ROUNDS).await;
    let fds_before = open_fds(&host);
    let base = host.base.clone();
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (peak2, pid) = (peak.clone(), host_pid(&host));
    let sampler = tokio::spawn(async move {
        loop {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count())
                .unwrap_or(0);
            peak2.fetch_max(fds, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let (during, answers) = under_attack(&host, 4, move |n| {
        let base = base.clone();
        async move {
            let r = Host::client()
                .post(format!("{base}/prompt"))
                .json(&json!({"prompt": empty_image_workflow("fd"), "client_id": format!("attack-fds-{n}")}))
                .send()
                .await
                .expect("attack");
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
    })
    .await;
    sampler.abort();
    report(
        "fd hoarding (4 concurrent calls opening files in a loop)",
        &quiet,
        &during,
    );
    let mut cut_off = Vec::new();
    for (status, body) in &answers {
        let m = message(body);
        match status {
            // The call died when its resource table was full (or its plugin's other calls held
            // the plugin's resources); fail-closed refuses that prompt.
            503 => cut_off.push(m),
            // The plugin stopped on its own with a report: never more than the per-call cap.
            400 => {
                let opened: u64 = m
                    .split("opened=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("report in {m}"));
                assert!(opened <= 256, "per-call cap: {m}");
            }
            // The breaker took the plugin out of the chain after repeated failures.
            200 => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        !cut_off.is_empty(),
        "the hoarding calls were cut off: {answers:?}"
    );
    let peak = peak.load(Ordering::SeqCst);
    println!(
        "[fd hoarding] {} attack calls, {} cut off (first: {}); host fds {fds_before} quiet, peak {peak} during",
        answers.len(),
        cut_off.len(),
        cut_off[0]
    );
    assert!(peak < fds_before + 1024 + 64, "per-plugin cap: {peak} fds");
}

// ----- 4. host memory ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_memory_outside_the_cap_and_across_calls_is_bounded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = drop_in(
        tmp.path(),
        "host-memory",
        "hostile-host-memory",
        r#"
id = "host-memory"
version = "0.1.0"
name = "host memory"
wit = "0.1.0"
hooks = ["queue-router"]
wasm = "hostile_host_memory.wasm"

[budget]
deadline_ms = 8000
memory_mb = 200
failure = "fail-closed"
"#,
    );
    let host = Host::builder()
        .plugin_dir(dir)
        .arg("--plugin-memory-total-mb")
        .arg("256")
        .start()
        .await;
    let quiet = normal_traffic(&host, ROUNDS).await;
    let rss_quiet = proc_kb(&host, "VmRSS:");

    // Header maps held on the host side.
    let base = host.base.clone();
    let (during, answers) = under_attack(&host, 2, move |n| {
        let base = base.clone();
        async move {
            let r = Host::client()
                .post(format!("{base}/prompt"))
                .json(&json!({"prompt": empty_image_workflow("f"), "client_id": format!("attack-fields-{n}")}))
                .send()
                .await
                .expect("attack");
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
    })
    .await;
    report("host memory: wasi:http fields", &quiet, &during);
    for (status, body) in &answers {
        let m = message(body);
        // Either the plugin reports how many maps it got, or the call trapped when the
        // resource table was full; never thousands of 60 KiB maps.
        if *status == 400 {
            let n: u64 = m
                .split("fields=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            assert!(n <= 256, "{m}");
        } else {
            // 503: the call trapped when its resource table was full; 200: the breaker has
            // taken the plugin out of the chain after repeated failures.
            assert!(*status == 503 || *status == 200, "{body}");
        }
    }
    let rss_fields = proc_kb(&host, "VmHWM:");
    // Back in the chain for the next attack.
    let r = host
        .admin_post("/comfyhost/api/plugins/host-memory/enable", json!({}))
        .await;
    assert_eq!(r.status(), 200);

    // Three calls of 150 MiB each against a host total of 256 MiB.
    let base = host.base.clone();
    let (during, answers) = under_attack(&host, 3, move |n| {
        let base = base.clone();
        async move {
            let r = Host::client()
                .post(format!("{base}/prompt"))
                .json(&json!({"prompt": empty_image_workflow("m"), "client_id": format!("attack-mem-150-{n}")}))
                .send()
                .await
                .expect("attack");
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
    })
    .await;
    report(
        "host memory: 3 concurrent calls of 150 MiB (host total 256 MiB)",
        &quiet,
        &during,
    );
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == 503 && message(b).contains("memory"))
        .count();
    assert!(
        refused >= 1,
        "the host-wide total refused some calls: {answers:?}"
    );
    println!(
        "[host memory] RSS quiet {} MiB, peak after fields attack {} MiB, peak after memory attack {} MiB; {refused} of {} memory calls refused",
        rss_quiet / 1024,
        rss_fields / 1024,
        proc_kb(&host, "VmHWM:") / 1024,
        answers.len()
    );
}

// ----- 5. logs and the store -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_forgery_and_store_flooding_are_contained() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = drop_in(
        tmp.path(),
        "log-forger",
        "hostile-log-forger",
        r#"
id = "log-forger"
version = "0.1.0"
name = "log forger"
wit = "0.1.0"
hooks = ["prompt-transform"]
wasm = "hostile_log_forger.wasm"

[budget]
deadline_ms = 10000
memory_mb = 512
failure = "fail-open"
"#,
    );
    let host = Host::builder().plugin_dir(dir).start().await;
    let quiet = normal_traffic(&host, ROUNDS).await;
    let before = host.output_text().len();
    let base = host.base.clone();
    let (during, answers) = under_attack(&host, 1, move |n| {
        let base = base.clone();
        async move {
            let r = Host::client()
                .post(format!("{base}/prompt"))
                .json(&json!({"prompt": empty_image_workflow("log"), "client_id": format!("attack-{n}")}))
                .send()
                .await
                .expect("attack");
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
    })
    .await;
    report("log and store flooding", &quiet, &during);
    let out = host.output_text();
    let attack_log = out.len() - before;
    let calls = answers.len().max(1);
    assert!(
        !out.lines().any(|l| l.starts_with("2026-01-01T00:00:00")),
        "a plugin forged a host log line"
    );
    assert!(
        attack_log / calls < 512 * 1024,
        "{} bytes of host log per attack prompt",
        attack_log / calls
    );
    let db = comfyhost_store::Store::open(host.data_dir.path().join("comfyhost.db")).expect("db");
    let mut checked = 0;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        let id = body["prompt_id"].as_str().expect("prompt id");
        if let Some(job) = db.job(id).expect("job") {
            let wf = job.workflow_json.unwrap_or_default();
            assert!(
                wf.len() < 4096 && wf.contains("not kept"),
                "{} bytes kept",
                wf.len()
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "the attack prompts were recorded");
    println!(
        "[log and store flooding] {calls} attack prompts, {} KiB of host log per prompt, rewritten workflows not kept",
        attack_log / calls / 1024
    );
}

// ----- 6. drop-in directory ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_drop_in_is_compiled_once_and_a_huge_one_never_read() {
    let host = Host::builder()
        .arg("--plugins-rescan")
        .arg("1")
        .start()
        .await;
    let quiet = normal_traffic(&host, ROUNDS).await;
    let plugins = host.data_dir.path().join("plugins");
    let manifest = |id: &str| {
        format!(
            "id = \"{id}\"\nversion = \"0.1.0\"\nname = \"{id}\"\nwit = \"0.1.0\"\nhooks = [\"queue-router\"]\nwasm = \"c.wasm\"\n"
        )
    };
    // Not a component: the compiler rejects it.
    std::fs::create_dir_all(plugins.join("broken")).expect("mkdir");
    std::fs::write(plugins.join("broken/plugin.toml"), manifest("broken")).expect("w");
    let mut garbage = b"\0asm\x0d\0\x01\0".to_vec();
    garbage.extend(std::iter::repeat_n(0xffu8, 1 << 20));
    std::fs::write(plugins.join("broken/c.wasm"), &garbage).expect("w");
    // Larger than the host's component limit (64 MiB): refused from its size alone.
    std::fs::create_dir_all(plugins.join("huge")).expect("mkdir");
    std::fs::write(plugins.join("huge/plugin.toml"), manifest("huge")).expect("w");
    let f = std::fs::File::create(plugins.join("huge/c.wasm")).expect("create");
    f.set_len(200 << 20).expect("sparse 200 MiB");
    wait_for(&host, "both to be reported broken", |l| {
        plugin(l, "broken").is_some() && plugin(l, "huge").is_some()
    })
    .await;
    // Several scans while traffic is measured.
    let (during, _) = under_attack(&host, 1, |_| idle()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    report(
        "broken and huge drop-in components (1 s rescans)",
        &quiet,
        &during,
    );
    let list = host.admin_get("/comfyhost/api/plugins").await;
    let huge = plugin(&list, "huge").expect("huge");
    assert!(huge["last_error"].to_string().contains("limit"), "{huge:#}");
    let out = host.output_text();
    let failed = out
        .lines()
        .filter(|l| l.contains("plugin failed to load") && l.contains("broken"))
        .count();
    assert_eq!(failed, 1, "compiled once, not every scan:\n{out}");
}

// ----- 7. host-made requests ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_preset_download_to_an_origin_not_allowed_is_refused() {
    let server = crate::support::range_server::RangeServer::start().await;
    let url = server.add(
        "innocent.safetensors",
        b"hello".to_vec(),
        crate::support::range_server::Behaviour::Normal,
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = drop_in(
        tmp.path(),
        "preset-loopback",
        "hostile-preset-loopback",
        r#"
id = "preset-loopback"
version = "0.1.0"
name = "preset loopback"
wit = "0.1.0"
hooks = ["preset-resolver"]
wasm = "hostile_preset_loopback.wasm"

[budget]
deadline_ms = 2000
memory_mb = 32
failure = "fail-open"
"#,
    );
    let host = Host::builder().plugin_dir(dir).start().await;
    let r = admin_put(
        &host,
        "/comfyhost/api/plugins/preset-loopback/config",
        json!({"url": url}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let quiet = normal_traffic(&host, ROUNDS).await;
    let base = host.base.clone();
    let (during, answers) = under_attack(&host, 1, move |_| {
        let base = base.clone();
        async move {
            let r = Host::client()
                .post(format!("{base}/comfyhost/api/models/resolve"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"workflow": empty_image_workflow("x")}))
                .send()
                .await
                .expect("resolve");
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
    })
    .await;
    report(
        "preset resolver proposing a loopback download",
        &quiet,
        &during,
    );
    let (status, resolution) = &answers[0];
    assert_eq!(*status, 200, "{resolution}");
    // The dashboard gets every file in full and the allowed origins.
    let file = &resolution["presets"][0]["files"][0];
    assert_eq!(file["url"], url.as_str(), "{resolution:#}");
    assert_eq!(
        resolution["download_origins"],
        json!(["https://huggingface.co:443"])
    );
    let r = host
        .admin_post(
            "/comfyhost/api/models/install",
            json!({"preset_id": "innocent", "files": resolution["presets"][0]["files"]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(
        message(&body).contains("not an origin allowed for downloads"),
        "{body:#}"
    );
    assert!(
        server.requests().is_empty(),
        "the host never fetched the URL"
    );
    assert_eq!(
        host.admin_get("/comfyhost/api/models/downloads").await,
        json!([])
    );
}
