//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol with a small
//! client of our own, for browser end-to-end tests against the real ComfyUI frontend
//! (`comfyui-frontend-package` from PyPI). Tests skip with a message when either is missing,
//! unless `COMFYHOST_REQUIRE_BROWSER=1` (CI), where that is a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a browser test needs, or why it cannot run.
pub struct Prereqs {
    pub chromium: PathBuf,
    pub frontend: PathBuf,
}

fn require() -> bool {
    std::env::var("COMFYHOST_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

/// Like [`prereqs`], with the current frontend (1.58.x) from `COMFYHOST_FRONTEND_CURRENT_DIR`
/// (its `static` directory; `scripts/test.sh` installs it next to 1.27.10). `None` to skip.
pub fn prereqs_current_frontend() -> Option<Prereqs> {
    let dir = std::env::var_os("COMFYHOST_FRONTEND_CURRENT_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("index.html").exists());
    let Some(frontend) = dir else {
        let why = "browser test skipped: COMFYHOST_FRONTEND_CURRENT_DIR (the static directory of comfyui-frontend-package 1.58.x) is not set";
        assert!(!require(), "{why} but COMFYHOST_REQUIRE_BROWSER=1");
        eprintln!("{why}");
        return None;
    };
    prereqs().map(|p| Prereqs { frontend, ..p })
}

/// Finds Chromium and the frontend's static files; `None` (after printing why) to skip.
pub fn prereqs() -> Option<Prereqs> {
    let chromium = std::env::var_os("COMFYHOST_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        });
    let frontend = std::env::var_os("COMFYHOST_FRONTEND_DIR").map(PathBuf::from).or_else(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import comfyui_frontend_package, os; print(os.path.join(os.path.dirname(comfyui_frontend_package.__file__), 'static'))",
            ])
            .output()
            .ok()?;
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        p.join("index.html").exists().then_some(p)
    });
    match (chromium, frontend) {
        (Some(chromium), Some(frontend)) => Some(Prereqs { chromium, frontend }),
        (c, f) => {
            let why = format!(
                "browser test skipped: chromium {} , comfyui-frontend-package {} (install: apt-get install chromium; pip install comfyui-frontend-package)",
                if c.is_some() { "found" } else { "MISSING" },
                if f.is_some() { "found" } else { "MISSING" }
            );
            assert!(!require(), "{why} but COMFYHOST_REQUIRE_BROWSER=1");
            eprintln!("{why}");
            None
        }
    }
}

/// Where screenshots are kept: `$COMFYHOST_ARTIFACTS_DIR` or `target/test-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("COMFYHOST_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::wasm::workspace_root().join("target/test-artifacts"));
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// A headless Chromium with one page.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    page: Ws,
    next_id: u64,
    /// Console errors and uncaught exceptions seen so far.
    pub errors: Vec<String>,
    /// Errors the browser itself logged (failed requests, refused sockets), as a person sees
    /// them in the console next to `errors`.
    pub log_errors: Vec<String>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    pub async fn launch(chromium: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile");
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1400,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chromium");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium DevTools address");
        let port = browser_ws
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .expect("port")
            .to_string();
        // The page target of about:blank.
        let deadline = Instant::now() + Duration::from_secs(10);
        let page_ws = loop {
            let list: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
                .await
                .expect("json/list")
                .json()
                .await
                .expect("json");
            if let Some(url) = list
                .as_array()
                .and_then(|l| l.iter().find(|t| t["type"] == "page"))
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                break url.to_string();
            }
            assert!(Instant::now() < deadline, "no page target: {list}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (page, _) = tokio_tungstenite::connect_async(page_ws)
            .await
            .expect("page ws");
        let mut b = Self {
            child,
            _profile: profile,
            page,
            next_id: 1,
            errors: Vec::new(),
            log_errors: Vec::new(),
        };
        b.call("Page.enable", json!({})).await;
        b.call("Runtime.enable", json!({})).await;
        b.call("Network.enable", json!({})).await;
        b.call("Log.enable", json!({})).await;
        b
    }

    /// One DevTools command; events that arrive meanwhile are scanned for errors.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.page
            .send(Message::Text(
                json!({"id": id, "method": method, "params": params})
                    .to_string()
                    .into(),
            ))
            .await
            .expect("send");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.page.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("page socket open")
                .expect("frame");
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("json");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
            match v["method"].as_str() {
                Some("Runtime.exceptionThrown") => {
                    self.errors
                        .push(v["params"]["exceptionDetails"].to_string());
                }
                Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
                    self.errors.push(v["params"]["args"].to_string());
                }
                Some("Log.entryAdded") if v["params"]["entry"]["level"] == "error" => {
                    self.log_errors.push(v["params"]["entry"].to_string());
                }
                _ => {}
            }
        }
    }

    /// Evaluates an expression (awaiting promises) and returns its JSON value.
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("evaluating {expr}: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy; returns its last value.
    pub async fn wait_for(&mut self, what: &str, expr: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(expr).await;
            let truthy =
                !matches!(v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({expr}); errors: {:?}",
                self.errors
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Clicks the first element matching `selector` once it exists (pages re-render after
    /// each change, so an element may be briefly absent).
    pub async fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).expect("selector");
        let expr = format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return false; e.click(); return true; }})()"
        );
        self.wait_for(
            &format!("{selector} to click"),
            &expr,
            Duration::from_secs(20),
        )
        .await;
    }

    /// Uncaught exceptions among [`Browser::errors`].
    pub fn uncaught(&self) -> usize {
        self.errors
            .iter()
            .filter(|e| e.contains("\"exceptionId\""))
            .count()
    }

    /// Opens the dashboard page `url` and signs in with `token` through its form.
    pub async fn sign_in_dashboard(&mut self, url: &str, token: &str) {
        self.navigate(url).await;
        self.wait_for(
            "the sign-in form",
            "!!document.getElementById('login')",
            Duration::from_secs(20),
        )
        .await;
        self.eval(&format!(
            "document.getElementById('token').value = '{token}'; document.getElementById('login').requestSubmit(); true"
        ))
        .await;
    }

    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    pub async fn set_cookie(&mut self, url: &str, name: &str, value: &str) {
        self.call(
            "Network.setCookie",
            json!({"name": name, "value": value, "url": url}),
        )
        .await;
    }

    /// Saves a PNG screenshot of the page; returns its path.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("data"))
            .expect("base64");
        let path = artifacts_dir().join(name);
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }
}
