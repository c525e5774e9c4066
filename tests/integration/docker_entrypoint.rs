//! The container entrypoint (`docker/entrypoint.sh`) run outside Docker: volume layout on
//! first start, the exact host command line, later starts that keep data and admin changes,
//! clear errors for an unwritable volume or a missing ComfyUI, and a real first start of the
//! host (simulator mode) that serves its health endpoint and stops cleanly on SIGTERM.

// A test crate: unwrap is the assertion. (allow-unwrap-in-tests covers only #[test] fns.)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

const ENTRYPOINT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/entrypoint.sh");
const HEALTHCHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/healthcheck.sh");
const BIN: &str = env!("CARGO_BIN_EXE_comfyhost");
const TOKEN: &str = "entrypoint-test-admin-token-0123456789";

/// A fake image: ComfyUI checkout, its Python, baked plugins, a TMPDIR, and the volume path.
struct Image {
    root: tempfile::TempDir,
}

impl Image {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let comfy = root.path().join("opt/ComfyUI");
        std::fs::create_dir_all(&comfy).unwrap();
        std::fs::write(comfy.join("main.py"), "# not really ComfyUI\n").unwrap();
        let venv = root.path().join("opt/venv/bin");
        std::fs::create_dir_all(&venv).unwrap();
        std::fs::write(venv.join("python"), "#!/bin/sh\nexit 0\n").unwrap();
        set_mode(&venv.join("python"), 0o755);
        std::fs::create_dir_all(root.path().join("tmp")).unwrap();
        let img = Image { root };
        img.bake_plugin("alpha", b"alpha v1");
        img.bake_plugin("beta", b"beta v1");
        // Not a plugin (no plugin.toml): ignored.
        std::fs::create_dir_all(img.baked().join("README-dir")).unwrap();
        img
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }
    fn workspace(&self) -> PathBuf {
        self.path("workspace")
    }
    fn baked(&self) -> PathBuf {
        self.path("opt/comfyhost/plugins")
    }

    fn bake_plugin(&self, name: &str, wasm: &[u8]) {
        let dir = self.baked().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("plugin.toml"),
            format!("id = \"{name}\"\nversion = \"0.1.0\"\n"),
        )
        .unwrap();
        std::fs::write(dir.join(format!("{name}.wasm")), wasm).unwrap();
        std::fs::write(dir.join("config.schema.json"), "{}").unwrap();
    }

    /// `bash docker/entrypoint.sh` with this image's paths and a clean COMFYHOST_* environment.
    fn entrypoint(&self) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(ENTRYPOINT);
        for (k, _) in std::env::vars() {
            if k.starts_with("COMFYHOST_")
                || [
                    "WORKSPACE",
                    "COMFYUI_DIR",
                    "COMFYUI_PYTHON",
                    "PORT",
                    "LISTEN_HOST",
                    "INSTANCE",
                    "MODELS_DIR",
                ]
                .contains(&k.as_str())
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("WORKSPACE", self.workspace())
            .env("COMFYUI_DIR", self.path("opt/ComfyUI"))
            .env("COMFYUI_PYTHON", self.path("opt/venv/bin/python"))
            .env("COMFYHOST_BIN", BIN)
            .env("COMFYHOST_BAKED_PLUGINS", self.baked())
            .env("TMPDIR", self.path("tmp"));
        cmd
    }

    fn dry_run(&self, extra: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = self.entrypoint();
        cmd.env("COMFYHOST_ENTRYPOINT_DRY_RUN", "1").args(args);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "entrypoint failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn first_start_creates_the_layout_and_the_exact_command_line() {
    let img = Image::new();
    let ws = img.workspace();
    let out = img.dry_run(
        &[("PORT", "9999"), ("COMFYHOST_ADMIN_TOKEN", TOKEN)],
        &["--prefix", "/comfy"],
    );
    let w = ws.display();
    let expected = format!(
        "{BIN} run --listen 0.0.0.0:9999 --data-dir {w}/comfyhost --plugins-dir {w}/comfyhost/plugins \
         --comfyui-dir {comfy} --python {py} --output-dir {w}/output --input-dir {w}/input \
         --user-dir {w}/user --temp-dir {tmp}/comfyhost-temp \
         --extra-model-paths {w}/comfyhost/extra_model_paths.yaml --prefix /comfy",
        comfy = img.path("opt/ComfyUI").display(),
        py = img.path("opt/venv/bin/python").display(),
        tmp = img.path("tmp").display(),
    );
    assert_eq!(text(&out.stdout).trim_end(), expected);
    let stderr = text(&out.stderr);
    assert!(
        !text(&out.stdout).contains(TOKEN),
        "token on the command line"
    );
    assert!(stderr.contains("first start"), "{stderr}");
    assert!(
        stderr.contains("admin token: from COMFYHOST_ADMIN_TOKEN"),
        "{stderr}"
    );

    for d in [
        "comfyhost",
        "comfyhost/plugins",
        "output",
        "input",
        "user",
        "models/checkpoints",
        "models/loras",
        "models/vae",
        "models/text_encoders",
        "models/diffusion_models",
        "models/upscale_models",
    ] {
        assert!(ws.join(d).is_dir(), "{d} missing");
    }
    assert!(img.path("tmp/comfyhost-temp").is_dir());
    let yaml = std::fs::read_to_string(ws.join("comfyhost/extra_model_paths.yaml")).unwrap();
    assert!(
        yaml.contains(&format!("  base_path: '{w}/models'\n")),
        "{yaml}"
    );
    assert!(yaml.contains("  is_default: true\n"), "{yaml}");
    assert!(yaml.contains("  checkpoints: checkpoints\n"), "{yaml}");
    // Baked plugins are staged complete; a directory without plugin.toml is not a plugin.
    for name in ["alpha", "beta"] {
        let dir = ws.join("comfyhost/plugins").join(name);
        for f in ["plugin.toml", "config.schema.json", &format!("{name}.wasm")] {
            assert!(dir.join(f).is_file(), "{name}/{f} not staged");
        }
        assert!(
            ws.join(format!("comfyhost/baked-plugins/{name}.sha256"))
                .is_file()
        );
    }
    assert!(!ws.join("comfyhost/plugins/README-dir").exists());
    // No leftovers from the atomic swap, no write probe.
    let names: Vec<String> = std::fs::read_dir(ws.join("comfyhost/plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(std::fs::read_dir(&ws).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .contains("write-test")
    }));
}

#[test]
fn later_starts_keep_data_and_admin_changes() {
    let img = Image::new();
    let ws = img.workspace();
    img.dry_run(&[], &[]);
    let plugins = ws.join("comfyhost/plugins");

    // What users and admins did between starts.
    std::fs::write(ws.join("output/ComfyUI_00001_.png"), b"png").unwrap();
    std::fs::write(ws.join("models/checkpoints/sd.safetensors"), b"model").unwrap();
    std::fs::write(ws.join("comfyhost/comfyhost.db"), b"db").unwrap();
    let yaml = ws.join("comfyhost/extra_model_paths.yaml");
    std::fs::write(&yaml, "mine:\n  base_path: /elsewhere\n").unwrap();
    std::fs::write(plugins.join("alpha/config.schema.json"), "{\"edited\":1}").unwrap();
    std::fs::remove_dir_all(plugins.join("beta")).unwrap();
    std::fs::create_dir_all(plugins.join("own")).unwrap();
    std::fs::write(plugins.join("own/plugin.toml"), "id = \"own\"\n").unwrap();

    // A new image: new builds of alpha and beta, and a new plugin gamma.
    img.bake_plugin("alpha", b"alpha v2");
    img.bake_plugin("beta", b"beta v2");
    img.bake_plugin("gamma", b"gamma v1");
    img.bake_plugin("own", b"image's own");
    let out = img.dry_run(&[], &[]);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("first start"), "{stderr}");

    assert_eq!(
        std::fs::read(ws.join("output/ComfyUI_00001_.png")).unwrap(),
        b"png"
    );
    assert_eq!(
        std::fs::read(ws.join("models/checkpoints/sd.safetensors")).unwrap(),
        b"model"
    );
    assert_eq!(
        std::fs::read(ws.join("comfyhost/comfyhost.db")).unwrap(),
        b"db"
    );
    assert_eq!(
        std::fs::read_to_string(&yaml).unwrap(),
        "mine:\n  base_path: /elsewhere\n"
    );
    // Admin-modified: kept as is (old wasm, edited schema).
    assert_eq!(
        std::fs::read(plugins.join("alpha/alpha.wasm")).unwrap(),
        b"alpha v1"
    );
    assert!(
        stderr.contains("plugin alpha: keeping the admin-modified copy"),
        "{stderr}"
    );
    // Deleted by the admin: stays deleted.
    assert!(!plugins.join("beta").exists());
    assert!(
        stderr.contains("plugin beta: removed from the volume"),
        "{stderr}"
    );
    // The admin's own plugin of the same name: untouched.
    assert!(!plugins.join("own/own.wasm").exists());
    assert!(
        stderr.contains("plugin own: keeping the volume's own copy"),
        "{stderr}"
    );
    // New in the image: staged.
    assert_eq!(
        std::fs::read(plugins.join("gamma/gamma.wasm")).unwrap(),
        b"gamma v1"
    );

    // An unmodified staged plugin follows the image.
    img.bake_plugin("gamma", b"gamma v2");
    img.dry_run(&[], &[]);
    assert_eq!(
        std::fs::read(plugins.join("gamma/gamma.wasm")).unwrap(),
        b"gamma v2"
    );
    // Restoring a deleted one: delete its record.
    std::fs::remove_file(ws.join("comfyhost/baked-plugins/beta.sha256")).unwrap();
    img.dry_run(&[], &[]);
    assert_eq!(
        std::fs::read(plugins.join("beta/beta.wasm")).unwrap(),
        b"beta v2"
    );
}

#[test]
fn instances_share_models_and_plugins_but_not_state_or_outputs() {
    let img = Image::new();
    let ws = img.workspace();
    let out = img.dry_run(
        &[("INSTANCE", "gpu1"), ("COMFYHOST_LISTEN", "0.0.0.0:8190")],
        &[],
    );
    let line = text(&out.stdout);
    let w = ws.display();
    for part in [
        "--listen 0.0.0.0:8190 ".to_string(),
        format!("--data-dir {w}/comfyhost/instances/gpu1 "),
        format!("--plugins-dir {w}/comfyhost/plugins "),
        format!("--output-dir {w}/output/gpu1 "),
        format!("--input-dir {w}/input/gpu1 "),
        format!("--user-dir {w}/user/gpu1 "),
        format!(
            "--temp-dir {}/comfyhost-temp-gpu1 ",
            img.path("tmp").display()
        ),
        format!("--extra-model-paths {w}/comfyhost/extra_model_paths.yaml"),
    ] {
        assert!(line.contains(&part), "{part:?} not in {line}");
    }
    let bad = img
        .entrypoint()
        .env("INSTANCE", "../x")
        .env("COMFYHOST_ENTRYPOINT_DRY_RUN", "1")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("INSTANCE='../x'"));
}

#[test]
fn unwritable_workspace_is_a_clear_error() {
    let img = Image::new();
    // Below a regular file nothing can be created, whoever runs the test (root included).
    std::fs::write(img.path("file"), b"").unwrap();
    let out = img
        .entrypoint()
        .env("WORKSPACE", img.path("file/workspace"))
        .env("COMFYHOST_ENTRYPOINT_DRY_RUN", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(73), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: cannot create the workspace") && stderr.contains("file/workspace"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    // A read-only directory (permission bits do not bind root, so only checked otherwise).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let ro = img.path("ro");
        std::fs::create_dir_all(&ro).unwrap();
        set_mode(&ro, 0o555);
        let out = img
            .entrypoint()
            .env("WORKSPACE", &ro)
            .env("COMFYHOST_ENTRYPOINT_DRY_RUN", "1")
            .output()
            .unwrap();
        set_mode(&ro, 0o755);
        assert_eq!(out.status.code(), Some(73));
        assert!(
            text(&out.stderr).contains("is not writable by uid"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn missing_comfyui_is_a_clear_error_unless_simulating() {
    let img = Image::new();
    let out = img
        .entrypoint()
        .env("COMFYUI_DIR", img.path("nowhere"))
        .env("COMFYHOST_ENTRYPOINT_DRY_RUN", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ComfyUI is missing") && stderr.contains("COMFYHOST_SIMULATE=1"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let out = img.dry_run(
        &[
            ("COMFYUI_DIR", img.path("nowhere").to_str().unwrap()),
            ("COMFYHOST_SIMULATE", "1"),
        ],
        &[],
    );
    let line = text(&out.stdout);
    assert!(!line.contains("--comfyui-dir"), "{line}");
    assert!(!line.contains("--python"), "{line}");

    let out = img.dry_run(&[("COMFYHOST_ATTACH", "http://127.0.0.1:8189")], &[]);
    assert!(!text(&out.stdout).contains("--comfyui-dir"));
}

#[test]
fn other_commands_bypass_the_volume_setup() {
    let img = Image::new();
    let out = img
        .entrypoint()
        .args(["sh", "-c", "echo passthrough"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "passthrough\n");
    let out = img.entrypoint().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("comfyhost "));
    // `gpu` probes the image's ComfyUI environment, not the system python3.
    let fake = img.path("fake-comfyhost");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"$COMFYHOST_PYTHON|$COMFYHOST_COMFYUI_DIR|$*\"\n",
    )
    .unwrap();
    set_mode(&fake, 0o755);
    let out = img
        .entrypoint()
        .env("COMFYHOST_BIN", &fake)
        .args(["gpu", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}|{}|gpu --json\n",
            img.path("opt/venv/bin/python").display(),
            img.path("opt/ComfyUI").display()
        )
    );
    assert!(!img.workspace().exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_in_simulator_mode_serves_health_and_stops_on_sigterm() {
    let img = Image::new();
    let port = free_port();
    let comfy_port = free_port();
    let mut child = img
        .entrypoint()
        .env("COMFYHOST_SIMULATE", "1")
        .env("COMFYUI_DIR", img.path("absent"))
        .env("LISTEN_HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("COMFYHOST_COMFYUI_PORT", comfy_port.to_string())
        .env("COMFYHOST_ADMIN_TOKEN", TOKEN)
        .env("COMFYHOST_NO_GPU_DETECT", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                logs.lock().unwrap().push(line);
            }
        });
    }
    let dump = |logs: &std::sync::Mutex<Vec<String>>| logs.lock().unwrap().join("\n");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    let health = loop {
        if let Ok(r) = client
            .get(format!("{base}/comfyhost/api/health"))
            .send()
            .await
            && r.status().is_success()
        {
            break r.json::<serde_json::Value>().await.unwrap();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "entrypoint exited early:\n{}",
            dump(&logs)
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no health answer:\n{}",
            dump(&logs)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["status"], "ok", "{health}");
    // The image's HEALTHCHECK script finds the same address from the same variables.
    let healthcheck = |port: u16| {
        Command::new("bash")
            .arg(HEALTHCHECK)
            .env_remove("COMFYHOST_LISTEN")
            .env_remove("COMFYHOST_PREFIX")
            .env("LISTEN_HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .output()
            .unwrap()
    };
    let ok = healthcheck(port);
    assert!(ok.status.success(), "healthcheck: {ok:?}");

    // The simulator became ready, and the host keeps its state on the volume.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s: serde_json::Value = client
            .get(format!("{base}/comfyhost/api/comfyui"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["state"] == "ready" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ComfyUI not ready: {s}\n{}",
            dump(&logs)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ws = img.workspace();
    assert!(ws.join("comfyhost/comfyhost.db").is_file());
    // A configured token is used as given, never written to the volume.
    assert!(!ws.join("comfyhost/admin-token.sha256").exists());
    assert!(ws.join("comfyhost/plugins/alpha/plugin.toml").is_file());

    // `exec`: the entrypoint's pid is the host's, so SIGTERM reaches the host directly.
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("host did not stop on SIGTERM:\n{}", dump(&logs));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit {status}:\n{}", dump(&logs));
    assert!(!healthcheck(port).status.success(), "healthy after stop");
    // The simulator (ComfyUI) went down with it: its port is free again.
    assert!(std::net::TcpListener::bind(("127.0.0.1", comfy_port)).is_ok());
}
