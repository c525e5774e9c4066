//! prompt-enhance inside the REAL `comfyhost` binary: the positive prompt (decided by the
//! sampler link) is rewritten in the chosen style and the negative never is; with an LLM
//! configured, the answer of a protocol-faithful fake OpenAI endpoint is used, and a call that
//! times out, fails with 500 or goes to an origin that is not granted falls back to the static style without failing
//! the submission.

use std::time::{Duration, Instant};

use crate::support::fake_openai::{FakeOpenAi, Mode};
use crate::support::wasm::{plugin_dir, workspace_root};
use crate::support::{ADMIN_TOKEN, Host, models_dir_with_checkpoint, sampler_workflow};
use serde_json::{Value, json};

const STATIC_CINEMATIC: &str = "cinematic film still of a cat, dramatic lighting";

/// The shipped manifest with the LLM origin replaced by the fake's.
fn manifest(origin: &str) -> String {
    std::fs::read_to_string(workspace_root().join("plugins/prompt-enhance/plugin.toml"))
        .expect("manifest")
        .replace("http://127.0.0.1:11434", origin)
}

async fn start(origin: &str, models: &tempfile::TempDir) -> Host {
    let (_tmp, dir) = plugin_dir("comfyhost-plugin-prompt-enhance", &manifest(origin));
    std::fs::copy(
        workspace_root().join("plugins/prompt-enhance/config.schema.json"),
        dir.join("config.schema.json"),
    )
    .expect("schema");
    Host::builder()
        .plugin_dir(dir)
        .arg("--comfyui-arg=--sim-models-dir")
        .arg(format!("--comfyui-arg={}", models.path().display()))
        .start()
        .await
}

async fn put(host: &Host, path: &str, body: Value) {
    let r = Host::client()
        .put(host.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200, "{path}: {:?}", r.text().await);
}

/// Submit the txt2img workflow with `flags`, wait for ComfyUI's history entry and return the
/// texts of the positive (6) and negative (7) encoders as ComfyUI received them.
async fn submit(host: &Host, flags: Value) -> (String, String) {
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(
            &json!({"prompt": sampler_workflow(), "client_id": "itest-enhance",
                      "extra_data": {"comfyhost": flags}}),
        )
        .send()
        .await
        .expect("submit");
    let status = r.status();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{body:#}");
    let id = body["prompt_id"].as_str().expect("prompt_id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h: Value = Host::client()
            .get(host.url(&format!("/history/{id}")))
            .send()
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        if let Some(entry) = h.get(&id) {
            let wf = &entry["prompt"][2];
            return (
                wf["6"]["inputs"]["text"].as_str().expect("6").to_owned(),
                wf["7"]["inputs"]["text"].as_str().expect("7").to_owned(),
            );
        }
        assert!(Instant::now() < deadline, "no history for {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn logs(host: &Host) -> String {
    host.admin_get("/comfyhost/api/plugins/prompt-enhance/logs")
        .await
        .to_string()
}

#[tokio::test]
async fn static_styles_rewrite_only_the_positive_prompt_and_only_when_asked() {
    let models = models_dir_with_checkpoint();
    let host = start("http://127.0.0.1:9", &models).await;
    // Not granted yet: approve the declared capabilities (no LLM configured anyway).
    put(
        &host,
        "/comfyhost/api/plugins/prompt-enhance/grants",
        json!({"http": ["http://127.0.0.1:9"], "secrets": ["OPENAI_API_KEY"]}),
    )
    .await;

    // No opt-in: unchanged.
    let (pos, neg) = submit(&host, json!({})).await;
    assert_eq!((pos.as_str(), neg.as_str()), ("a cat", ""));

    let (pos, neg) = submit(&host, json!({"enhance": "cinematic"})).await;
    assert!(pos.starts_with(STATIC_CINEMATIC), "{pos}");
    assert_eq!(neg, "", "the negative prompt must never be touched");

    // Custom template from config; default style for everyone; per-submission opt-out.
    put(&host, "/comfyhost/api/plugins/prompt-enhance/config",
        json!({"styles": {"poster": "vintage travel poster of {prompt}, bold flat colors"}, "default_style": "poster"})).await;
    let (pos, _) = submit(&host, json!({})).await;
    assert_eq!(pos, "vintage travel poster of a cat, bold flat colors");
    let (pos, _) = submit(&host, json!({"enhance": "off"})).await;
    assert_eq!(pos, "a cat");

    let l = logs(&host).await;
    assert!(
        l.contains(
            "node 6 (CLIPTextEncode.text, positive of 3): style `cinematic` via static template"
        ),
        "{l}"
    );
}

#[tokio::test]
async fn with_no_grants_at_all_a_static_style_applies() {
    let models = models_dir_with_checkpoint();
    let host = start("http://127.0.0.1:11434", &models).await;
    // Its LLM origin and key are optional: the plugin runs without any grant.
    let info = host
        .admin_get("/comfyhost/api/plugins/prompt-enhance")
        .await;
    assert_eq!(info["state"]["state"], "enabled", "{info:#}");
    assert_eq!(info["pending"], json!([]), "{info:#}");
    let about = info["about"].as_array().expect("about");
    assert_eq!(about.len(), 2, "{info:#}");
    assert!(
        about
            .iter()
            .all(|a| a["optional"] == true && a["reason"].as_str().is_some_and(|r| !r.is_empty())),
        "{info:#}"
    );

    let (pos, neg) = submit(&host, json!({"enhance": "cinematic"})).await;
    assert!(pos.starts_with(STATIC_CINEMATIC), "{pos}");
    assert_eq!(neg, "");
    assert!(
        !host.output_text().contains("granted secret has no value"),
        "no warning about a secret nobody granted"
    );
}

#[tokio::test]
async fn llm_answer_is_used_and_timeout_500_or_denial_fall_back_to_the_static_style() {
    let llm = FakeOpenAi::start(Mode::Answer(
        "a tabby cat on a rainy neon street, cinematic lighting".into(),
    ))
    .await;
    let models = models_dir_with_checkpoint();
    let host = start(&llm.origin, &models).await;
    put(
        &host,
        "/comfyhost/api/plugins/prompt-enhance/grants",
        json!({"http": [llm.origin], "secrets": ["OPENAI_API_KEY"]}),
    )
    .await;
    put(
        &host,
        "/comfyhost/api/plugins/prompt-enhance/config",
        json!({"llm": {"url": llm.url(), "model": "gpt-4o-mini", "timeout_ms": 700}}),
    )
    .await;

    let (pos, neg) = submit(&host, json!({"enhance": "cinematic"})).await;
    assert_eq!(
        pos,
        "a tabby cat on a rainy neon street, cinematic lighting"
    );
    assert_eq!(neg, "");
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 1, "only the positive prompt goes to the LLM");
    assert_eq!(reqs[0]["model"], "gpt-4o-mini");
    assert_eq!(reqs[0]["messages"][1]["content"], "a cat");
    assert!(logs(&host).await.contains("via LLM gpt-4o-mini"));

    // Slower than timeout_ms (and than nothing else: the hook deadline is 4 s): static style.
    llm.set_mode(Mode::Delay(Duration::from_secs(3), "too late".into()));
    let started = Instant::now();
    let (pos, _) = submit(&host, json!({"enhance": "cinematic"})).await;
    assert!(pos.starts_with(STATIC_CINEMATIC), "{pos}");
    eprintln!(
        "submission with a timed-out LLM call took {:?}",
        started.elapsed()
    );
    assert!(
        logs(&host)
            .await
            .contains("static template (LLM gpt-4o-mini failed")
    );

    // 500: static style.
    llm.set_mode(Mode::ServerError);
    let (pos, _) = submit(&host, json!({"enhance": "detailed"})).await;
    assert!(pos.starts_with("a cat, highly detailed"), "{pos}");

    // An origin that is not granted (`localhost` instead of `127.0.0.1`, same server): the host
    // denies the call and the plugin still answers with the static style.
    llm.set_mode(Mode::Answer("should not be used".into()));
    let ungranted = llm.url().replace("127.0.0.1", "localhost");
    put(
        &host,
        "/comfyhost/api/plugins/prompt-enhance/config",
        json!({"llm": {"url": ungranted, "model": "gpt-4o-mini", "timeout_ms": 700}}),
    )
    .await;
    let before = llm.requests().len();
    let (pos, _) = submit(&host, json!({"enhance": "minimal"})).await;
    assert!(pos.starts_with("minimalist a cat"), "{pos}");
    assert_eq!(
        llm.requests().len(),
        before,
        "a denied origin must not be reached"
    );
}
