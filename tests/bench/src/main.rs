//! `comfyhost-bench`: the client side of `scripts/bench.sh` for the rows wrk cannot measure.
//! Each subcommand runs against one target (ComfyUI directly, nginx or comfyhost) and prints
//! its figure as one line on stdout (details on stderr), so the script can interleave targets
//! and repetitions and build the table.
//!
//! ```text
//! comfyhost-bench prompt    --base URL [--n 300]                  # POST /prompt p50, ms
//! comfyhost-bench ws-fanout --base URL [--clients 32] [--steps 1500]  # frames/s received
//! comfyhost-bench ws-idle   --base URL --pids P[,P..] [--sockets 1000] # KB per idle socket
//! comfyhost-bench rss       --pids P[,P..]                         # resident MB
//! comfyhost-bench startup   --base URL -- CMD ARGS..               # ms to liveness, readiness
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        bail!(
            "usage: comfyhost-bench prompt|ws-fanout|ws-idle|rss|startup [--flag value].. (see the file's doc)"
        );
    }
    let command = args.remove(0);
    let (flags, rest) = parse_flags(args)?;
    let get = |k: &str| flags.get(k).cloned();
    let num = |k: &str, d: u64| -> anyhow::Result<u64> {
        get(k)
            .map(|v| v.parse().with_context(|| format!("--{k} {v}")))
            .unwrap_or(Ok(d))
    };
    let base = || get("base").context("--base URL is required");
    match command.as_str() {
        "prompt" => prompt_p50(&base()?, num("n", 300)? as usize).await,
        "ws-fanout" => ws_fanout(&base()?, num("clients", 32)? as usize, num("steps", 1500)?).await,
        "ws-idle" => {
            let pids = pids(&get("pids").context("--pids is required")?)?;
            ws_idle(&base()?, &pids, num("sockets", 1000)? as usize).await
        }
        "rss" => {
            let pids = pids(&get("pids").context("--pids is required")?)?;
            println!("{:.1}", rss_kb(&pids)? as f64 / 1024.0);
            Ok(())
        }
        "startup" => startup(&base()?, &rest).await,
        other => bail!("unknown subcommand {other}"),
    }
}

/// `--key value` pairs, then everything after `--`.
fn parse_flags(args: Vec<String>) -> anyhow::Result<(HashMap<String, String>, Vec<String>)> {
    let mut flags = HashMap::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--" {
            return Ok((flags, it.collect()));
        }
        let Some(key) = a.strip_prefix("--") else {
            bail!("unexpected argument {a}");
        };
        let value = it
            .next()
            .with_context(|| format!("--{key} needs a value"))?;
        flags.insert(key.to_string(), value);
    }
    Ok((flags, Vec::new()))
}

fn pids(list: &str) -> anyhow::Result<Vec<u32>> {
    list.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().with_context(|| format!("pid {s}")))
        .collect()
}

/// Sum of `VmRSS` of these processes, in KiB.
fn rss_kb(pids: &[u32]) -> anyhow::Result<u64> {
    let mut total = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .with_context(|| format!("no VmRSS for {pid}"))?;
        total += line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("VmRSS line {line}"))?;
    }
    Ok(total)
}

fn ws_url(base: &str, client_id: &str) -> String {
    let host = base
        .trim_end_matches('/')
        .trim_start_matches("http://")
        .to_string();
    format!("ws://{host}/ws?clientId={client_id}")
}

fn nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Sequential `POST /prompt` (keep-alive, a 2-node workflow): prints the p50 in ms.
async fn prompt_p50(base: &str, n: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let url = format!("{}/prompt", base.trim_end_matches('/'));
    let seed = nonce() % 1_000_000;
    let mut times = Vec::with_capacity(n);
    let warmup = (n / 10).max(5);
    for i in 0..(n + warmup) {
        let body = json!({
            "client_id": "bench-prompt",
            "prompt": {
                "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": (seed + i as u64) % 16_777_215}},
                "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
            }
        });
        let body = serde_json::to_vec(&body)?;
        let t = Instant::now();
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.bytes().await?;
        let dt = t.elapsed();
        if !status.is_success() {
            bail!(
                "POST /prompt answered {status}: {}",
                String::from_utf8_lossy(&text)
            );
        }
        if i >= warmup {
            times.push(dt);
        }
    }
    times.sort();
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    eprintln!("prompt: n={n} p50={:?} p99={:?}", p(0.5), p(0.99));
    println!("{:.3}", p(0.5).as_secs_f64() * 1000.0);
    Ok(())
}

/// `clients` sockets; one prompt without a `client_id` whose sampler runs `steps` steps, so
/// every progress message is broadcast to every socket. Prints frames received per second
/// (all sockets together) from the submission until every socket saw the prompt end.
async fn ws_fanout(base: &str, clients: usize, steps: u64) -> anyhow::Result<()> {
    let start_at: Arc<tokio::sync::Mutex<Option<Instant>>> = Arc::default();
    let frames = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(base, &format!("fan-{i}")))
            .await
            .context("WebSocket connect")?;
        let start_at = start_at.clone();
        let frames = frames.clone();
        let last = last.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = false;
            loop {
                // The prompt's end may not reach a socket that did not submit it: a second
                // without frames after the first one ends the socket's count.
                let next = if seen {
                    match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
                        Ok(n) => n,
                        Err(_) => break,
                    }
                } else {
                    ws.next().await
                };
                let Some(Ok(msg)) = next else { break };
                let Some(t0) = *start_at.lock().await else {
                    continue;
                };
                seen = true;
                frames.fetch_add(1, Ordering::Relaxed);
                last.fetch_max(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if let Message::Text(t) = &msg
                    && (t.contains("execution_success") || t.contains("execution_error"))
                {
                    break;
                }
            }
            let _ = ws.close(None).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    *start_at.lock().await = Some(Instant::now());
    let prompt = json!({"prompt": {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sim.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": format!("bench {}", nonce()), "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": nonce() % 1_000_000, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    }});
    let resp = reqwest::Client::new()
        .post(format!("{}/prompt", base.trim_end_matches('/')))
        .json(&prompt)
        .send()
        .await?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("POST /prompt answered {status}: {}", resp.text().await?);
    }
    let all = futures::future::join_all(tasks);
    if tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .is_err()
    {
        bail!("the sockets did not all see the prompt end within 120 s");
    }
    let secs = last.load(Ordering::Relaxed) as f64 / 1e9;
    let n = frames.load(Ordering::Relaxed);
    eprintln!("ws-fanout: {n} frames to {clients} sockets in {secs:.2} s");
    println!("{:.0}", n as f64 / secs);
    Ok(())
}

/// Opens `sockets` idle WebSockets (each sees its first frame) and prints the servers'
/// resident memory growth per socket, in KB.
async fn ws_idle(base: &str, pids: &[u32], sockets: usize) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kb(pids)?;
    let mut open = Vec::with_capacity(sockets);
    let tag = nonce() % 1_000_000;
    for chunk in (0..sockets).collect::<Vec<_>>().chunks(50) {
        let batch = chunk.iter().map(|i| {
            let url = ws_url(base, &format!("idle-{tag}-{i}"));
            async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
                // The first frame (ComfyUI's `status`) proves the session is relayed.
                let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                anyhow::Ok(ws)
            }
        });
        for ws in futures::future::join_all(batch).await {
            open.push(ws.context("opening an idle WebSocket")?);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kb(pids)?;
    let per = (after.saturating_sub(before)) as f64 * 1.024 / sockets as f64;
    eprintln!("ws-idle: {sockets} sockets, RSS {before} -> {after} KiB");
    println!("{per:.1}");
    for mut ws in open {
        let _ = ws.close(None).await;
    }
    Ok(())
}

/// Runs `cmd`, polls `{base}/comfyhost/api/health` then `/ready`: prints the milliseconds from
/// exec to the first `200` of each, then stops the process (SIGTERM).
async fn startup(base: &str, cmd: &[String]) -> anyhow::Result<()> {
    let Some((program, args)) = cmd.split_first() else {
        bail!("startup needs a command after --");
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()?;
    let health = format!("{}/comfyhost/api/health", base.trim_end_matches('/'));
    let ready = format!("{}/comfyhost/api/ready", base.trim_end_matches('/'));
    let t = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let poll = |url: String| {
        let client = client.clone();
        async move {
            loop {
                if t.elapsed() > Duration::from_secs(60) {
                    return None;
                }
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => return Some(t.elapsed()),
                    _ => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
        }
    };
    let live = poll(health).await;
    let ready = poll(ready).await;
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    let ms = |d: Option<Duration>| {
        d.map_or("nan".to_string(), |d| {
            format!("{:.0}", d.as_secs_f64() * 1000.0)
        })
    };
    eprintln!("startup: live {} ms, ready {} ms", ms(live), ms(ready));
    println!("{} {}", ms(live), ms(ready));
    Ok(())
}
