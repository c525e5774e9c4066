//! The output-sync plugin inside the real `comfyhost` binary, with the ComfyUI simulator
//! producing outputs: a directory target, a real S3-compatible server (moto, from PyPI), a host
//! SIGKILLed mid-sync that resumes without duplicate uploads, and an endpoint outage that grows
//! the backlog in `GET /comfyhost/api/outputs` and drains when the endpoint is back.
//!
//! moto: `python3 -m pip install --user 'moto[server]'`. Without it the S3 tests print why and
//! pass, unless `COMFYHOST_REQUIRE_MOTO=1` (CI sets it), where they fail.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::wasm::{build_component, workspace_root};
use crate::support::{ADMIN_TOKEN, empty_image_workflow, free_port};
use serde_json::{Value, json};

const BUCKET: &str = "renders";

// ----- moto ------------------------------------------------------------------------------------

/// A moto S3 server on a loopback port.
struct Moto {
    child: Option<Child>,
    port: u16,
}

fn moto_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("COMFYHOST_REQUIRE_MOTO").as_deref() == Ok("1") {
            panic!(
                "moto is required (COMFYHOST_REQUIRE_MOTO=1) but `python3 -c 'import moto.server'` fails; \
                 install it with: python3 -m pip install --user 'moto[server]'"
            );
        }
        eprintln!(
            "SKIPPED: moto is not installed (python3 -m pip install --user 'moto[server]'); \
             set COMFYHOST_REQUIRE_MOTO=1 to make this a failure"
        );
    }
    ok
}

impl Moto {
    async fn start(port: u16) -> Moto {
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto");
        let m = Moto {
            child: Some(child),
            port,
        };
        let start = Instant::now();
        while reqwest::get(m.url("/")).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        m
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates the bucket with versioning on, so every PUT of a key leaves a version behind.
    async fn create_bucket(&self) {
        let c = reqwest::Client::new();
        let r = c
            .put(self.url(&format!("/{BUCKET}")))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        let r = c
            .put(self.url(&format!("/{BUCKET}?versioning")))
            .body(r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#)
            .send()
            .await
            .expect("versioning");
        assert!(r.status().is_success(), "versioning: {}", r.status());
    }

    /// Number of stored versions (= PUTs) per key.
    async fn versions(&self) -> BTreeMap<String, usize> {
        let Ok(r) = reqwest::get(self.url(&format!("/{BUCKET}?versions"))).await else {
            return BTreeMap::new();
        };
        let body = r.text().await.unwrap_or_default();
        let mut out = BTreeMap::new();
        for part in body.split("<Version>").skip(1) {
            if let Some(key) = tag(part, "Key") {
                *out.entry(key).or_default() += 1;
            }
        }
        out
    }

    /// Keys whose current version is a delete marker (deleted in a versioned bucket).
    async fn deleted_keys(&self) -> Vec<String> {
        let Ok(r) = reqwest::get(self.url(&format!("/{BUCKET}?versions"))).await else {
            return Vec::new();
        };
        let body = r.text().await.unwrap_or_default();
        body.split("<DeleteMarker>")
            .skip(1)
            .filter(|part| tag(part, "IsLatest").as_deref() == Some("true"))
            .filter_map(|part| tag(part, "Key"))
            .collect()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].to_string())
}

// ----- host ------------------------------------------------------------------------------------

/// A comfyhost process over a data directory the test keeps (so it can be restarted).
struct RunningHost {
    child: Child,
    base: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl RunningHost {
    async fn start(data_dir: &Path, env: &[(String, String)]) -> RunningHost {
        Self::start_with(data_dir, env, &[]).await
    }

    /// Like [`RunningHost::start`], with extra `comfyhost run` arguments.
    async fn start_with(data_dir: &Path, env: &[(String, String)], args: &[&str]) -> RunningHost {
        let mut cmd = crate::support::host_command();
        cmd.arg("run")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--comfyui-port", &free_port().to_string()])
            .args(["--admin-token", ADMIN_TOKEN])
            .args(["--plugins-rescan", "0"])
            .env("RUST_LOG", "info,comfyhost=debug")
            .env_remove("COMFYHOST_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn comfyhost");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let streams: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for stream in streams {
            let output = output.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(addr) = line.split("comfyhost listening on ").nth(1) {
                        let _ = tx.send(addr.trim().to_string());
                    }
                    if let Ok(mut o) = output.lock() {
                        o.push(line);
                    }
                }
            });
        }
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "comfyhost did not start:\n{}",
                    output.lock().unwrap().join("\n")
                )
            });
        let host = RunningHost {
            child,
            base,
            output,
        };
        let start = Instant::now();
        loop {
            let s = host.get("/comfyhost/api/comfyui").await;
            if s["state"] == "ready" {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "ComfyUI not ready: {s}\n{}",
                host.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        host
    }

    fn log(&self) -> String {
        self.output.lock().map(|o| o.join("\n")).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Value {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    async fn put(&self, path: &str, body: Value) {
        let r = reqwest::Client::new()
            .put(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status();
        assert!(
            status.is_success(),
            "PUT {path}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    async fn submit(&self, prefix: &str) {
        self.submit_as(prefix, None).await;
    }

    /// Submits as the user whose token is given (anonymous otherwise).
    async fn submit_as(&self, prefix: &str, token: Option<&str>) {
        // One client id per user: a client id belongs to the user who first used it.
        let client_id = format!("itest-outputs-{}", token.map_or("anon", |t| &t[..8]));
        let mut req = reqwest::Client::new()
            .post(format!("{}/prompt", self.base))
            .json(&json!({"prompt": empty_image_workflow(prefix), "client_id": client_id}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("submit");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }

    /// Creates a workshop user; returns their token.
    async fn create_user(&self, id: &str) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/comfyhost/api/users", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"id": id}))
            .send()
            .await
            .expect("create user");
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_string()
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn output_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("comfyui").join("output")
}

/// Drops the plugin into `<data>/plugins/output-sync` with a manifest naming `origin` and
/// mounting `dest_dir` at `/sync`.
fn install_plugin(data_dir: &Path, origin: Option<&str>, dest_dir: Option<&Path>) {
    let wasm = build_component("output-sync");
    let dir = data_dir.join("plugins").join("output-sync");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&wasm, dir.join("output_sync.wasm")).unwrap();
    std::fs::copy(
        workspace_root().join("plugins/output-sync/config.schema.json"),
        dir.join("config.schema.json"),
    )
    .unwrap();
    let mut manifest = String::from(
        "id = \"output-sync\"\nversion = \"0.1.0\"\nname = \"Output sync\"\nwit = \"0.1.0\"\n\
         hooks = [\"output-sync\"]\nwasm = \"output_sync.wasm\"\n\n[capabilities]\n",
    );
    if let Some(o) = origin {
        manifest.push_str(&format!(
            "http = [\"{o}\"]\nsecrets = [\"S3_ACCESS_KEY_ID\", \"S3_SECRET_ACCESS_KEY\"]\n"
        ));
    }
    manifest.push_str(
        "[[capabilities.dirs]]\npath = \"{output}\"\nguest = \"/output\"\naccess = \"ro\"\n",
    );
    if let Some(d) = dest_dir {
        manifest.push_str(&format!(
            "[[capabilities.dirs]]\npath = \"{}\"\nguest = \"/sync\"\naccess = \"rw\"\n",
            d.display()
        ));
    }
    manifest.push_str("\n[budget]\ndeadline_ms = 20000\nmemory_mb = 64\n\n[config]\nschema = \"config.schema.json\"\n");
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
}

/// Grants everything the manifest asks and sets the config.
async fn approve(host: &RunningHost, config: Value) {
    let info = host.get("/comfyhost/api/plugins/output-sync").await;
    let requested = &info["requested"];
    let mut grants = json!({"http": [], "dirs": [], "secrets": []});
    for cap in requested.as_array().cloned().unwrap_or_default() {
        match cap["kind"].as_str() {
            Some("http") => grants["http"]
                .as_array_mut()
                .unwrap()
                .push(cap["origin"].clone()),
            Some("dir") => grants["dirs"]
                .as_array_mut()
                .unwrap()
                .push(json!({"path": cap["path"], "guest": cap["guest"], "access": cap["access"]})),
            Some("secret") => grants["secrets"]
                .as_array_mut()
                .unwrap()
                .push(cap["name"].clone()),
            other => panic!("unknown capability {other:?} in {info:#}"),
        }
    }
    host.put("/comfyhost/api/plugins/output-sync/grants", grants)
        .await;
    host.put("/comfyhost/api/plugins/output-sync/config", config)
        .await;
    let info = host.get("/comfyhost/api/plugins/output-sync").await;
    assert_eq!(info["state"]["state"], "enabled", "{info:#}");
}

fn host_env(rate: u32) -> Vec<(String, String)> {
    [
        ("COMFYHOST_SECRET_S3_ACCESS_KEY_ID", "testing".to_string()),
        (
            "COMFYHOST_SECRET_S3_SECRET_ACCESS_KEY",
            "testing".to_string(),
        ),
        ("COMFYHOST_OUTPUTS_BACKOFF_BASE_MS", "200".to_string()),
        ("COMFYHOST_OUTPUTS_BACKOFF_MAX_MS", "1000".to_string()),
        ("COMFYHOST_OUTPUTS_FULL_PASS_S", "2".to_string()),
        ("COMFYHOST_OUTPUTS_FULL_PASS_MIN_AGE_S", "0".to_string()),
        ("COMFYHOST_OUTPUTS_RATE_PER_S", rate.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn s3_config(moto: &Moto) -> Value {
    json!({
        "min_age_ms": 0,
        "destinations": [{
            "name": "bucket", "kind": "s3", "endpoint": moto.origin(), "bucket": BUCKET,
            "prefix": "comfy", "path_style": true
        }]
    })
}

/// Regular files under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn outputs_arrive_in_a_directory_target_once_per_user_layout() {
    let data = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    install_plugin(data.path(), None, Some(dest.path()));
    // Full passes only pick up files older than 30 s here, so every file's owner comes from
    // its job's end (the submitter), as it does with the default of 60 s.
    let mut env = host_env(0);
    for (k, v) in &mut env {
        if k == "COMFYHOST_OUTPUTS_FULL_PASS_MIN_AGE_S" {
            *v = "30".into();
        }
    }
    let host = RunningHost::start(data.path(), &env).await;
    approve(
        &host,
        json!({"min_age_ms": 0, "destinations": [{"name": "nas", "kind": "dir", "path": "/sync"}]}),
    )
    .await;
    // Two workshop users; each one's outputs land under their own id, never the other's.
    let alice = host.create_user("alice").await;
    let bob = host.create_user("bob").await;
    host.submit_as("dir0", Some(&alice)).await;
    host.submit_as("dir1", Some(&alice)).await;
    host.submit_as("dir2", Some(&bob)).await;
    let synced = wait_for(
        "3 files in the directory target",
        Duration::from_secs(60),
        async || {
            let f = files_under(dest.path());
            (f.len() == 3).then_some(f)
        },
    )
    .await;
    let sources = files_under(&output_dir(data.path()));
    assert_eq!(sources.len(), 3, "{sources:?}");
    for rel in &synced {
        // <user>/<date>/<file>, the user from the submitter's token.
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 3, "{rel}");
        let owner = if parts[2].starts_with("dir2") {
            "bob"
        } else {
            "alice"
        };
        assert_eq!(parts[0], owner, "{rel} is in the wrong user's folder");
        assert_eq!(
            std::fs::read(dest.path().join(rel)).unwrap(),
            std::fs::read(output_dir(data.path()).join(parts[2])).unwrap(),
            "{rel} differs from its source"
        );
    }
    // The sources are untouched, health shows progress, and later full passes add nothing.
    let h = wait_for("backlog empty", Duration::from_secs(30), async || {
        let h = host.get("/comfyhost/api/outputs").await;
        (h["backlog"]["pending"] == 0 && h["backlog"]["done"] == 3).then_some(h)
    })
    .await;
    assert_eq!(files_under(&output_dir(data.path())), sources);
    let p = &h["plugins"][0];
    assert_eq!(p["plugin_id"], "output-sync");
    assert_eq!(p["output_mounted"], true, "{h:#}");
    assert!(p["last_success_ms"].as_i64().is_some(), "{h:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(files_under(dest.path()), synced);
    // Admin-only.
    let r = reqwest::get(format!("{}/comfyhost/api/outputs", host.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn outputs_arrive_in_s3_and_a_killed_host_resumes_without_duplicates() {
    if !moto_available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    moto.create_bucket().await;
    let data = tempfile::tempdir().unwrap();
    install_plugin(data.path(), Some(&moto.origin()), None);
    // 2 calls/s: six files take ~3 s, so the kill lands mid-sync.
    let mut host = RunningHost::start(data.path(), &host_env(2)).await;
    approve(&host, s3_config(&moto)).await;
    for i in 0..6 {
        host.submit(&format!("s3kill{i}")).await;
    }
    wait_for("first object in S3", Duration::from_secs(60), async || {
        (!moto.versions().await.is_empty()).then_some(())
    })
    .await;
    host.kill();
    let before = moto.versions().await.len();
    let sources = wait_for("6 outputs on disk", Duration::from_secs(30), async || {
        let f = files_under(&output_dir(data.path()));
        (f.len() >= 6).then_some(f)
    })
    .await;
    eprintln!("killed with {before}/6 objects uploaded");

    let host = RunningHost::start(data.path(), &host_env(2)).await;
    let versions = wait_for("all outputs in S3", Duration::from_secs(60), async || {
        let v = moto.versions().await;
        (v.len() == sources.len()).then_some(v)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // a full pass later: still once each
    let versions_after = moto.versions().await;
    assert_eq!(versions, versions_after);
    for (key, n) in &versions_after {
        assert_eq!(*n, 1, "{key} uploaded {n} times");
        assert!(key.starts_with("comfy/anonymous/"), "{key}");
    }
    let names: Vec<String> = versions_after
        .keys()
        .map(|k| k.rsplit('/').next().unwrap().to_string())
        .collect();
    let mut expected = sources.clone();
    expected.sort();
    let mut got = names.clone();
    got.sort();
    assert_eq!(got, expected);
    let h = host.get("/comfyhost/api/outputs").await;
    assert_eq!(h["backlog"]["pending"], 0, "{h:#}\n{}", host.log());
}

#[tokio::test]
async fn s3_outage_grows_the_backlog_then_it_drains() {
    if !moto_available() {
        return;
    }
    let port = free_port();
    let mut moto = Moto::start(port).await;
    moto.create_bucket().await;
    let data = tempfile::tempdir().unwrap();
    install_plugin(data.path(), Some(&moto.origin()), None);
    let host = RunningHost::start(data.path(), &host_env(0)).await;
    approve(&host, s3_config(&moto)).await;
    moto.stop();
    for i in 0..4 {
        host.submit(&format!("outage{i}")).await;
    }
    let h = wait_for(
        "backlog of 4 with a network error",
        Duration::from_secs(60),
        async || {
            let h = host.get("/comfyhost/api/outputs").await;
            let err = &h["plugins"][0]["last_error"]["type"];
            (h["backlog"]["pending"] == 4 && err == "network").then_some(h)
        },
    )
    .await;
    assert!(h["consecutive_failures"].as_u64().unwrap() >= 1, "{h:#}");
    let info = host.get("/comfyhost/api/plugins/output-sync").await;
    assert_eq!(
        info["state"]["state"], "enabled",
        "an outage must not trip the breaker: {info:#}"
    );

    let moto = Moto::start(port).await;
    moto.create_bucket().await;
    let back = Instant::now();
    wait_for("backlog drained", Duration::from_secs(60), async || {
        let h = host.get("/comfyhost/api/outputs").await;
        (h["backlog"]["pending"] == 0).then_some(())
    })
    .await;
    eprintln!(
        "backlog of 4 drained {:?} after the endpoint came back",
        back.elapsed()
    );
    let v = moto.versions().await;
    assert_eq!(v.len(), 4, "{v:?}");
    assert!(v.values().all(|n| *n == 1), "{v:?}");
}

/// Files produced while the host was down are found by the startup full pass; prints the rate.
#[tokio::test]
async fn full_pass_syncs_files_made_while_down_and_measures_rate() {
    if !moto_available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    moto.create_bucket().await;
    let data = tempfile::tempdir().unwrap();
    install_plugin(data.path(), Some(&moto.origin()), None);
    // First run only to grant and configure; then stop it.
    {
        let host = RunningHost::start(data.path(), &host_env(0)).await;
        approve(&host, s3_config(&moto)).await;
    }
    const N: usize = 40;
    let out = output_dir(data.path());
    std::fs::create_dir_all(out.join("batch")).unwrap();
    for i in 0..N {
        std::fs::write(
            out.join(format!("batch/f{i:03}.png")),
            vec![i as u8; 64 * 1024],
        )
        .unwrap();
    }
    let host = RunningHost::start(data.path(), &host_env(0)).await;
    let start = Instant::now();
    wait_for("all files in S3", Duration::from_secs(120), async || {
        (moto.versions().await.len() == N).then_some(())
    })
    .await;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "synced {N} x 64 KiB to moto in {secs:.2}s ({:.1} files/s)",
        N as f64 / secs
    );
    let v = moto.versions().await;
    assert!(v.keys().all(|k| k.starts_with("comfy/anonymous/")), "{v:?}");
    assert!(v.values().all(|n| *n == 1));
    let h = host.get("/comfyhost/api/outputs").await;
    // Only a full pass can have found files made while the host was down, so the S3 copies above
    // show that it queued them; the report is of the latest pass, which on a loaded machine can
    // be a later one that found everything already done (queued 0), so it is checked for what
    // every pass sees: all the files.
    assert_eq!(
        h["last_full_pass"]["files"].as_u64().map(|q| q >= N as u64),
        Some(true),
        "{h:#}"
    );
}

// ----- mirror deletion ---------------------------------------------------------------------------

/// POST as admin (or with no token); returns status and body.
async fn post_as(host: &RunningHost, path: &str, admin: bool) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{}{path}", host.base));
    if admin {
        req = req.bearer_auth(ADMIN_TOKEN);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn deleted_outputs_are_taken_back_where_mirrored_and_mass_deletions_wait_for_an_admin() {
    let data = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    install_plugin(data.path(), None, Some(dest.path()));
    let mut env = host_env(0);
    env.push(("COMFYHOST_OUTPUTS_REMOVAL_CAP".into(), "2".into()));
    let host = RunningHost::start(data.path(), &env).await;
    // One mount, two destinations: a mirror and an archive that keeps everything.
    approve(
        &host,
        json!({"min_age_ms": 0, "destinations": [
            {"name": "mirror", "kind": "dir", "path": "/sync", "template": "mirror/{user}/{filename}",
             "mirror_deletes": true},
            {"name": "archive", "kind": "dir", "path": "/sync", "template": "archive/{user}/{filename}"}
        ]}),
    )
    .await;
    for i in 0..4 {
        host.submit(&format!("mirror{i}")).await;
    }
    let sources = wait_for(
        "4 outputs synced twice",
        Duration::from_secs(60),
        async || {
            let h = host.get("/comfyhost/api/outputs").await;
            let f = files_under(&output_dir(data.path()));
            (h["backlog"]["done"] == 4 && files_under(dest.path()).len() == 8).then_some(f)
        },
    )
    .await;
    assert_eq!(sources.len(), 4, "{sources:?}");
    let h = host.get("/comfyhost/api/outputs").await;
    assert_eq!(h["mirror_active"], true, "{h:#}");
    let mirror_of = |f: &str| dest.path().join("mirror/anonymous").join(f);
    let archive_of = |f: &str| dest.path().join("archive/anonymous").join(f);

    // One file deleted at the source: its mirror copy goes, its archive copy stays.
    std::fs::remove_file(output_dir(data.path()).join(&sources[0])).unwrap();
    wait_for(
        "the mirror copy deleted",
        Duration::from_secs(30),
        async || (!mirror_of(&sources[0]).exists()).then_some(()),
    )
    .await;
    assert!(archive_of(&sources[0]).exists());
    let h = wait_for(
        "the removal recorded",
        Duration::from_secs(10),
        async || {
            let h = host.get("/comfyhost/api/outputs").await;
            (h["backlog"]["removed"] == 1).then_some(h)
        },
    )
    .await;
    assert_eq!(h["plugins"][0]["removed"], 1, "{h:#}");
    assert!(h["removals_held"].is_null(), "{h:#}");

    // Three more at once, above the cap of 2: held, nothing deleted, until an admin says so.
    for f in &sources[1..] {
        std::fs::remove_file(output_dir(data.path()).join(f)).unwrap();
    }
    let h = wait_for("removals held", Duration::from_secs(30), async || {
        let h = host.get("/comfyhost/api/outputs").await;
        (h["removals_held"]["count"] == 3).then_some(h)
    })
    .await;
    assert_eq!(h["removals_held"]["cap"], 2, "{h:#}");
    assert_eq!(h["removals_held"]["sample"].as_array().unwrap().len(), 3);
    tokio::time::sleep(Duration::from_secs(3)).await; // at least one more full pass
    for f in &sources[1..] {
        assert!(mirror_of(f).exists(), "{f} deleted while held");
    }
    let (status, _) = post_as(&host, "/comfyhost/api/outputs/removals/release", false).await;
    assert_eq!(status, 401);
    let (status, body) = post_as(&host, "/comfyhost/api/outputs/removals/release", true).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["released"]["count"], 3, "{body:#}");
    wait_for(
        "held mirror copies deleted",
        Duration::from_secs(30),
        async || {
            sources[1..]
                .iter()
                .all(|f| !mirror_of(f).exists())
                .then_some(())
        },
    )
    .await;
    assert!(
        !dest.path().join("mirror").join("anonymous").exists(),
        "empty mirror folders left: {:?}",
        files_under(dest.path())
    );
    for f in &sources {
        assert!(archive_of(f).exists(), "archive lost {f}");
    }
    let (status, _) = post_as(&host, "/comfyhost/api/outputs/removals/release", true).await;
    assert_eq!(status, 409, "nothing is held any more");
    let activity = host.get("/comfyhost/api/activity").await;
    assert!(
        activity.to_string().contains("outputs.release_removals"),
        "{activity:#}"
    );
    let h = wait_for(
        "all removals recorded",
        Duration::from_secs(10),
        async || {
            let h = host.get("/comfyhost/api/outputs").await;
            (h["backlog"]["removed"] == 4).then_some(h)
        },
    )
    .await;
    assert_eq!(h["backlog"]["removing"], 0, "{h:#}");
}

#[tokio::test]
async fn a_deleted_output_is_deleted_from_s3_when_mirrored() {
    if !moto_available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    moto.create_bucket().await;
    let data = tempfile::tempdir().unwrap();
    install_plugin(data.path(), Some(&moto.origin()), None);
    let host = RunningHost::start(data.path(), &host_env(0)).await;
    let mut config = s3_config(&moto);
    config["destinations"][0]["mirror_deletes"] = json!(true);
    approve(&host, config).await;
    host.submit("s3mirror0").await;
    host.submit("s3mirror1").await;
    let keys = wait_for("2 objects in S3", Duration::from_secs(60), async || {
        let v = moto.versions().await;
        (v.len() == 2).then_some(v.into_keys().collect::<Vec<_>>())
    })
    .await;
    let gone_key = keys
        .iter()
        .find(|k| k.contains("s3mirror0"))
        .expect("key of s3mirror0")
        .clone();
    let kept_key = keys.iter().find(|k| **k != gone_key).unwrap().clone();
    let name = gone_key.rsplit('/').next().unwrap();
    std::fs::remove_file(output_dir(data.path()).join(name)).unwrap();
    let deleted = wait_for("the object deleted", Duration::from_secs(30), async || {
        let d = moto.deleted_keys().await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(
        deleted,
        std::slice::from_ref(&gone_key),
        "only {gone_key} may be deleted"
    );
    assert!(!deleted.contains(&kept_key));
    let h = wait_for(
        "the removal recorded",
        Duration::from_secs(10),
        async || {
            let h = host.get("/comfyhost/api/outputs").await;
            (h["backlog"]["removed"] == 1).then_some(h)
        },
    )
    .await;
    assert_eq!(h["plugins"][0]["removed"], 1, "{h:#}");
}

// ----- owners ------------------------------------------------------------------------------------

#[tokio::test]
async fn outputs_announced_before_the_host_dies_keep_their_owner() {
    let data = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    install_plugin(data.path(), None, Some(dest.path()));
    let env = host_env(0);
    // 1.5 s per node: the first save is announced seconds before the job could end.
    let mut host = RunningHost::start_with(
        data.path(),
        &env,
        &["--comfyui-arg=--sim-node-delay-ms", "--comfyui-arg=1500"],
    )
    .await;
    approve(
        &host,
        json!({"min_age_ms": 0, "destinations": [{"name": "nas", "kind": "dir", "path": "/sync"}]}),
    )
    .await;
    let alice = host.create_user("alice").await;
    // A browser socket for the client, as the ComfyUI page keeps open.
    let ws_url = format!(
        "{}/ws?clientId=itest-owner",
        host.base.replacen("http://", "ws://", 1)
    );
    let (_ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("ws");
    let workflow = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "owned"}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 9}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "later"}}
    });
    let r = reqwest::Client::new()
        .post(format!("{}/prompt", host.base))
        .bearer_auth(&alice)
        .json(&json!({"prompt": workflow, "client_id": "itest-owner"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // The first save is on record (with its owner) while the job still runs: one file on disk.
    wait_for(
        "the first output on record",
        Duration::from_secs(30),
        async || {
            let h = host.get("/comfyhost/api/outputs").await;
            let b = &h["backlog"];
            let rows = b["pending"].as_u64().unwrap_or(0) + b["done"].as_u64().unwrap_or(0);
            (rows >= 1).then_some(())
        },
    )
    .await;
    let on_disk = files_under(&output_dir(data.path()));
    assert_eq!(
        on_disk.len(),
        1,
        "recorded only at the job's end: {on_disk:?}"
    );
    // The host dies (and ComfyUI with it) before the job ends.
    host.kill();

    let host = RunningHost::start(data.path(), &env).await;
    let synced = wait_for("the output synced", Duration::from_secs(60), async || {
        let f = files_under(dest.path());
        (!f.is_empty()).then_some(f)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // a full pass later
    let after = files_under(dest.path());
    assert_eq!(after, synced);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(
        after[0].starts_with("alice/"),
        "the output lost its owner: {after:?}\n{}",
        host.log()
    );
}

// ----- multipart -------------------------------------------------------------------------------

/// A file of `mib` MiB of pseudo-random bytes (not compressible, no repeating parts).
fn random_bytes(mib: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut out = Vec::with_capacity(mib << 20);
    while out.len() < mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Puts `bytes` at `<output>/big/<name>` atomically (written beside, then renamed in), so the
/// host's full pass never sees a half-written file.
fn drop_output(data_dir: &Path, name: &str, bytes: &[u8]) {
    let staging = data_dir.join(format!("staging-{name}"));
    std::fs::write(&staging, bytes).unwrap();
    let dir = output_dir(data_dir).join("big");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(&staging, dir.join(name)).unwrap();
}

/// The S3 config with multipart settings.
fn multipart_config(moto: &Moto, part_size_mb: u64, call_budget_ms: u64) -> Value {
    let mut c = s3_config(moto);
    c["part_size_mb"] = json!(part_size_mb);
    c["multipart_call_budget_ms"] = json!(call_budget_ms);
    c
}

impl Moto {
    /// The object's bytes (moto does not check signatures by default).
    async fn object(&self, key: &str) -> Vec<u8> {
        let r = reqwest::get(self.url(&format!("/{BUCKET}/{key}")))
            .await
            .expect("GET object");
        assert!(r.status().is_success(), "GET {key}: {}", r.status());
        r.bytes().await.expect("object body").to_vec()
    }

    /// Upload ids of multipart uploads begun and neither completed nor aborted.
    async fn open_uploads(&self) -> Vec<String> {
        let body = reqwest::get(self.url(&format!("/{BUCKET}?uploads")))
            .await
            .expect("list uploads")
            .text()
            .await
            .unwrap_or_default();
        body.split("<Upload>")
            .skip(1)
            .filter_map(|u| tag(u, "UploadId"))
            .collect()
    }
}

/// Lines of the host log saying a multipart call ended with its upload still under way.
fn progress_calls(host: &RunningHost) -> usize {
    host.output
        .lock()
        .map(|o| {
            o.iter()
                .filter(|l| l.contains("output upload continues"))
                .count()
        })
        .unwrap_or(0)
}

/// Checks the object at `key` is `source` byte for byte, stored once, with no upload left open.
async fn assert_single_exact_copy(moto: &Moto, key: &str, source: &[u8]) {
    let versions = moto.versions().await;
    assert_eq!(versions.get(key), Some(&1), "{versions:?}");
    let got = moto.object(key).await;
    assert_eq!(got.len(), source.len(), "size of {key}");
    assert_eq!(sha256(&got), sha256(source), "content of {key}");
    assert_eq!(moto.open_uploads().await, Vec::<String>::new());
}

/// 40 MiB in 5 MiB parts with a 1 ms call budget: one part per call, eight calls.
#[tokio::test]
async fn large_output_goes_up_in_parts_over_several_calls() {
    if !moto_available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    moto.create_bucket().await;
    let data = tempfile::tempdir().unwrap();
    install_plugin(data.path(), Some(&moto.origin()), None);
    let host = RunningHost::start(data.path(), &host_env(0)).await;
    approve(&host, multipart_config(&moto, 5, 1)).await;
    let bytes = random_bytes(40);
    drop_output(data.path(), "clip.mp4", &bytes);
    let key = wait_for("the video in S3", Duration::from_secs(300), async || {
        let v = moto.versions().await;
        v.keys()
            .find(|k| k.starts_with("comfy/anonymous/") && k.ends_with("/clip.mp4"))
            .cloned()
    })
    .await;
    assert_single_exact_copy(&moto, &key, &bytes).await;
    // Seven calls answered "in progress" (parts 1-7), the eighth sent part 8 and completed.
    assert_eq!(progress_calls(&host), 7, "{}", host.log());
    let h = wait_for("backlog empty", Duration::from_secs(30), async || {
        let h = host.get("/comfyhost/api/outputs").await;
        (h["backlog"]["pending"] == 0).then_some(h)
    })
    .await;
    let p = &h["plugins"][0];
    assert_eq!(p["failures"], 0, "{h:#}");
    assert_eq!(p["retries"], 0, "progress is not a retry: {h:#}");
    assert!(p["last_error"].is_null(), "{h:#}");
    assert!(p["uploading"].is_null(), "{h:#}");
    assert_eq!(h["backlog"]["done"], 1, "{h:#}");
}

/// A plugin limited to 32 MiB of memory syncs a 48 MiB file (parts are read one at a time);
/// with the default call budget this also measures throughput.
#[tokio::test]
async fn streaming_keeps_plugin_memory_below_the_file_size() {
    if !moto_available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    moto.create_bucket().await;
    let data = tempfile::tempdir().unwrap();
    install_plugin(data.path(), Some(&moto.origin()), None);
    let manifest = data.path().join("plugins/output-sync/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("memory_mb = 64"), "{text}");
    std::fs::write(&manifest, text.replace("memory_mb = 64", "memory_mb = 32")).unwrap();
    let host = RunningHost::start(data.path(), &host_env(0)).await;
    approve(&host, multipart_config(&moto, 5, 15_000)).await;
    let bytes = random_bytes(48);
    let start = Instant::now();
    drop_output(data.path(), "long.webm", &bytes);
    let key = wait_for("the video in S3", Duration::from_secs(300), async || {
        let v = moto.versions().await;
        v.keys().find(|k| k.ends_with("/long.webm")).cloned()
    })
    .await;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "multipart: 48 MiB in 5 MiB parts to moto in {secs:.2}s ({:.1} MiB/s, debug plugin, \
         incl. the full pass that finds the file)",
        48.0 / secs
    );
    assert_single_exact_copy(&moto, &key, &bytes).await;
    let h = host.get("/comfyhost/api/outputs").await;
    assert_eq!(h["plugins"][0]["failures"], 0, "{h:#}\n{}", host.log());
}

/// SIGKILL while a multipart upload is half done: the restarted host resumes the same upload
/// (fewer calls than a fresh one) and completes it once, with the exact bytes.
#[tokio::test]
async fn killed_host_resumes_a_multipart_upload() {
    if !moto_available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    moto.create_bucket().await;
    let data = tempfile::tempdir().unwrap();
    install_plugin(data.path(), Some(&moto.origin()), None);
    let mut host = RunningHost::start(data.path(), &host_env(0)).await;
    approve(&host, multipart_config(&moto, 5, 1)).await;
    let bytes = random_bytes(40);
    drop_output(data.path(), "resume.mp4", &bytes);
    wait_for("two parts uploaded", Duration::from_secs(300), async || {
        (progress_calls(&host) >= 2).then_some(())
    })
    .await;
    host.kill();
    let before = progress_calls(&host);
    assert!(
        moto.versions().await.is_empty(),
        "completed before the kill; the test proves nothing"
    );
    assert_eq!(moto.open_uploads().await.len(), 1);
    eprintln!("killed after {before} of 7 in-progress calls");

    let host = RunningHost::start(data.path(), &host_env(0)).await;
    let key = wait_for("the video in S3", Duration::from_secs(300), async || {
        let v = moto.versions().await;
        v.keys().find(|k| k.ends_with("/resume.mp4")).cloned()
    })
    .await;
    assert_single_exact_copy(&moto, &key, &bytes).await;
    // A fresh upload needs 7 in-progress calls; resuming from `before` recorded parts needs
    // at most 7 - before + 1 (the part in flight at the kill may be sent again).
    let after = progress_calls(&host);
    assert!(
        after <= 7 - before + 1,
        "resumed with {after} calls after {before}\n{}",
        host.log()
    );
}
