//! Test harness: starts the real `comfyhost` binary (built by cargo for this test) with a fresh
//! data directory and the embedded ComfyUI simulator, and talks to it over HTTP and WebSocket.
#![allow(dead_code)]

pub mod axe;
pub mod browser;
pub mod fake_openai;
pub mod range_server;
pub mod remote;
pub mod wasm;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A free loopback port for the ComfyUI the host starts. Chosen at random below Linux's
/// ephemeral range (32768-60999), so ports other tests get from `bind(":0")` cannot take it
/// between this check and ComfyUI binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    for _ in 0..200 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(37)) % 12_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999")
}

/// The `comfyhost` binary under test, sharing one compiled-plugin cache with every other test
/// host (artifacts are keyed by the code's sha256, so sharing is safe): each component is
/// compiled once per test run instead of once per host start.
pub fn host_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_comfyhost"));
    cmd.env("COMFYHOST_PLUGIN_CACHE_DIR", shared_plugin_cache());
    cmd
}

/// `<target>/test-plugin-cache`, beside the test binary's own target directory.
fn shared_plugin_cache() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_comfyhost"));
    bin.ancestors()
        .nth(2)
        .map(|target| target.join("test-plugin-cache"))
        .unwrap_or_else(|| std::env::temp_dir().join("comfyhost-test-plugin-cache"))
}

pub struct Host {
    pub child: Child,
    pub base: String,
    pub comfy_port: u16,
    pub data_dir: tempfile::TempDir,
    pub output: Arc<Mutex<Vec<String>>>,
    /// The admin token it runs with (the `admin_*` helpers use it).
    pub admin_token: String,
}

pub struct HostBuilder {
    data_dir: Option<tempfile::TempDir>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    plugins: Vec<PathBuf>,
    wait_ready: bool,
    admin_token: Option<String>,
}

impl Host {
    pub fn builder() -> HostBuilder {
        HostBuilder {
            data_dir: None,
            args: Vec::new(),
            env: Vec::new(),
            plugins: Vec::new(),
            wait_ready: true,
            admin_token: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{}", self.base.replacen("http://", "ws://", 1), path)
    }

    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client")
    }

    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let r = Self::client()
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("request");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    pub async fn admin_post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        Self::client()
            .post(self.url(path))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Creates a workshop user through the admin API; returns its token (shown once).
    pub async fn create_user(&self, id: &str) -> String {
        let r = self
            .admin_post("/comfyhost/api/users", serde_json::json!({"id": id}))
            .await;
        assert_eq!(r.status().as_u16(), 201, "create user {id}");
        let v: serde_json::Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_string()
    }

    /// ComfyUI state as the host reports it.
    pub async fn comfy_state(&self) -> serde_json::Value {
        self.admin_get("/comfyhost/api/comfyui").await
    }

    /// Poll the host API until `pred` holds for the ComfyUI status or the timeout passes.
    pub async fn wait_comfy(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let s = self.comfy_state().await;
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; last status: {s:#}\nhost output:\n{}",
                self.output_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn output_text(&self) -> String {
        self.output.lock().map(|o| o.join("\n")).unwrap_or_default()
    }

    pub fn output_dir(&self) -> PathBuf {
        self.data_dir.path().join("comfyui").join("output")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // SIGTERM first so the host stops its ComfyUI (no orphans), then make sure.
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
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

impl HostBuilder {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Copy a plugin directory (plugin.toml + .wasm) into the host's drop-in directory.
    pub fn plugin_dir(mut self, dir: PathBuf) -> Self {
        self.plugins.push(dir);
        self
    }

    /// Start on an existing data directory (a restart of an earlier host).
    /// Another admin token than [`ADMIN_TOKEN`] (the `admin_*` helpers use it).
    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.to_string());
        self
    }

    pub fn data_dir(mut self, dir: tempfile::TempDir) -> Self {
        self.data_dir = Some(dir);
        self
    }

    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub async fn start(self) -> Host {
        let data_dir = match self.data_dir {
            Some(d) => d,
            None => tempfile::tempdir().expect("tempdir"),
        };
        let plugins_dir = data_dir.path().join("plugins");
        std::fs::create_dir_all(&plugins_dir).expect("plugins dir");
        for p in &self.plugins {
            let name = p.file_name().expect("plugin dir name");
            copy_dir(p, &plugins_dir.join(name));
        }
        let comfy_port = free_port();
        let mut cmd = host_command();
        cmd.arg("run")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--comfyui-port", &comfy_port.to_string()])
            .args([
                "--admin-token",
                self.admin_token.as_deref().unwrap_or(ADMIN_TOKEN),
            ])
            .args(&self.args)
            .env("RUST_LOG", "info,comfyhost=debug")
            .env_remove("COMFYHOST_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn comfyhost");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
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
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => panic!(
                "comfyhost did not report its address; output:\n{}",
                output.lock().map(|o| o.join("\n")).unwrap_or_default()
            ),
        };
        let host = Host {
            child,
            base,
            comfy_port,
            data_dir,
            output,
            admin_token: self
                .admin_token
                .clone()
                .unwrap_or_else(|| ADMIN_TOKEN.to_string()),
        };
        if self.wait_ready {
            host.wait_comfy("ComfyUI ready", Duration::from_secs(60), |s| {
                s["state"] == "ready"
            })
            .await;
        }
        host
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// The smallest workflow that runs without model files (from REAL_COMFYUI.md).
pub fn empty_image_workflow(prefix: &str) -> serde_json::Value {
    serde_json::json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}
    })
}

/// A txt2img workflow (checkpoint, prompts, KSampler, VAE decode, save). The simulator knows
/// the checkpoint when started with [`models_dir_with_checkpoint`].
pub fn sampler_workflow() -> serde_json::Value {
    serde_json::json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sim.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 4, "cfg": 7.0, "sampler_name": "euler",
              "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
              "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "itest", "images": ["8", 0]}}
    })
}

/// A models tree holding the simulator's checkpoint `sim.safetensors`.
pub fn models_dir_with_checkpoint() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("checkpoints")).expect("mkdir");
    std::fs::write(
        dir.path().join("checkpoints/sim.safetensors"),
        b"not really a model",
    )
    .expect("write");
    dir
}

/// Serves `app` on a free loopback port until the returned task is aborted or the test ends.
pub async fn serve_on_free_port(app: axum::Router) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, task)
}
