//! Browser end-to-end for the trust policy and shadow mode pages (issue 21) in headless
//! Chromium: trust a key and switch to `trusted` on the dashboard, see a signed plugin's signer
//! in the plugin list, compare a shadow router with the active one, promote it. Screenshots
//! go where the dashboard test keeps its own (`target/test-artifacts/`).

use std::time::Duration;

use crate::plugin_trust::{keygen, router_dir, sign, upload};
use crate::shadow_mode::{REJECT_ALL_SCHEMA, decided, submit};
use crate::support::browser::{self, Browser};
use crate::support::{ADMIN_TOKEN, Host};

async fn open(b: &mut Browser, host: &Host, page: &str, ready: &str) {
    b.navigate(&host.url(&format!("/comfyhost/#{page}"))).await;
    b.wait_for(page, ready, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_trust_policy_and_shadow_comparison() {
    let Some(pre) = browser::prereqs() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (pk, key, key_id) = keygen(tmp.path(), "workshop");
    let host = Host::builder().start().await;
    let mut b = Browser::launch(&pre.chromium).await;

    b.sign_in_dashboard(&host.url("/comfyhost/"), ADMIN_TOKEN)
        .await;
    b.wait_for(
        "the plugins page",
        "!!document.getElementById('plugins-table')",
        Duration::from_secs(20),
    )
    .await;

    // Trust a key, then require trusted signatures.
    open(
        &mut b,
        &host,
        "trust",
        "!!document.getElementById('trust-add')",
    )
    .await;
    let pk_js = serde_json::to_string(&pk).unwrap();
    b.eval(&format!(
        "document.getElementById('key-name').value = 'Workshop team'; \
         document.getElementById('key-public').value = {pk_js}; \
         document.getElementById('trust-add').requestSubmit(); true"
    ))
    .await;
    b.wait_for(
        "the trusted key",
        &format!("!!document.querySelector('#trust-keys tr[data-key=\"{key_id}\"]')"),
        Duration::from_secs(10),
    )
    .await;
    b.wait_for(
        "the trusted mode radio",
        "(() => { const r = document.querySelector('#trust-mode input[value=\"trusted\"]'); if (!r) return false; r.click(); return true; })()",
        Duration::from_secs(10),
    )
    .await;
    b.wait_for(
        "mode trusted",
        "!!document.querySelector('#trust-mode input[value=\"trusted\"]:checked')",
        Duration::from_secs(10),
    )
    .await;
    b.screenshot("dashboard-trust.png").await;
    assert_eq!(
        host.admin_get("/comfyhost/api/trust").await["mode"],
        "trusted"
    );

    // A signed active router (lets prompts through) and a signed shadow that rejects them all.
    let active = router_dir(&tmp.path().join("a"), "node-limit", "0.1.0", None);
    sign(&active, &key);
    let r = upload(&host, "/comfyhost/api/plugins", &active).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let shadow = router_dir(
        &tmp.path().join("s"),
        "node-limit",
        "0.2.0",
        Some(REJECT_ALL_SCHEMA),
    );
    sign(&shadow, &key);
    let r = upload(&host, "/comfyhost/api/shadow", &shadow).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    open(
        &mut b,
        &host,
        "plugins",
        "document.querySelector('#plugins-table tr[data-plugin=\"node-limit\"] td.signer')?.innerText.includes('Workshop team')",
    )
    .await;
    b.screenshot("dashboard-plugins-signed.png").await;

    for _ in 0..3 {
        assert_eq!(submit(&host).await.0, 200);
    }
    decided(&host, "node-limit", 3).await;
    open(
        &mut b,
        &host,
        "shadow",
        "document.querySelector('.shadow-plugin[data-shadow=\"node-limit\"] .agreement')?.innerText === '0 %'",
    )
    .await;
    let rows = b
        .eval("document.querySelectorAll('.shadow-decisions tr.disagree').length")
        .await;
    assert_eq!(rows, 3, "three decisions that differ");
    let text = b
        .eval("document.querySelector('.shadow-decisions tbody tr').innerText")
        .await;
    let text = text.as_str().unwrap_or_default().to_string();
    assert!(text.contains("local") && text.contains("reject"), "{text}");
    b.screenshot("dashboard-shadow.png").await;

    // Promote: the shadow becomes the active version.
    b.click(".shadow-plugin[data-shadow=\"node-limit\"] button.promote")
        .await;
    b.wait_for(
        "no shadow left",
        "!!document.getElementById('no-shadows')",
        Duration::from_secs(20),
    )
    .await;
    let info = host.admin_get("/comfyhost/api/plugins/node-limit").await;
    assert_eq!(info["version"], "0.2.0", "{info:#}");
    assert_eq!(submit(&host).await.0, 400, "the promoted router rejects");
    assert_eq!(b.uncaught(), 0, "no uncaught errors in the page");
}
