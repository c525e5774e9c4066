//! Browser end-to-end for the Users and Room pages (issue 18, finding 9 and part B) in headless
//! Chromium against the real `comfyhost` binary: creating a user refreshes the list and clears
//! the field, each new token has a copy button, bulk creation fills a sheet of names and tokens
//! (CSV download, print), and the Room page saves limits and lists quarantined workflows.

use std::time::Duration;

use crate::support::browser::{self, Browser};
use crate::support::{ADMIN_TOKEN, Host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_users_page_creates_one_and_many_with_a_token_sheet() {
    let Some(pre) = browser::prereqs() else {
        return;
    };
    let host = Host::builder().start().await;
    let mut b = Browser::launch(&pre.chromium).await;
    b.sign_in_dashboard(&host.url("/comfyhost/"), ADMIN_TOKEN)
        .await;
    b.wait_for(
        "signed in",
        "!!document.getElementById('logout')",
        Duration::from_secs(20),
    )
    .await;
    b.navigate(&host.url("/comfyhost/#users")).await;
    b.wait_for(
        "the users page",
        "!!document.getElementById('users-table') && !!document.getElementById('bulk-form')",
        Duration::from_secs(20),
    )
    .await;

    // One user: the list refreshes, the field clears, the token has a copy button.
    b.eval("document.getElementById('new-user').value = 'teacher-aid'; document.getElementById('new-user-form').requestSubmit(); true").await;
    b.wait_for(
        "the new user in the list",
        "!!document.querySelector('#users-table tr[data-user=\"teacher-aid\"]')",
        Duration::from_secs(10),
    )
    .await;
    let field = b.eval("document.getElementById('new-user').value").await;
    assert_eq!(field, "", "the name field clears");
    b.wait_for(
        "a copy button for the new token",
        "!!document.querySelector('#token-table tr[data-user=\"teacher-aid\"] button.copy')",
        Duration::from_secs(10),
    )
    .await;
    b.click("#token-table tr[data-user=\"teacher-aid\"] button.copy")
        .await;
    b.wait_for(
        "the token copied (or selected for Ctrl+C)",
        "!!document.querySelector('#token-table tr[data-user=\"teacher-aid\"] code.token')?.dataset.copied",
        Duration::from_secs(10),
    )
    .await;

    // Many users: a count with a prefix.
    b.eval("document.getElementById('bulk-count').value = '3'; document.getElementById('bulk-prefix').value = 'kid-'; document.getElementById('bulk-form').requestSubmit(); true").await;
    b.wait_for(
        "three more users in the list",
        "['kid-01','kid-02','kid-03'].every((u) => !!document.querySelector(`#users-table tr[data-user=\"${u}\"]`))",
        Duration::from_secs(10),
    )
    .await;
    let rows = b
        .eval("document.querySelectorAll('#token-table tbody tr').length")
        .await;
    assert_eq!(rows, 4, "the sheet lists every token created on this visit");
    let csv = b
        .eval("decodeURIComponent(document.getElementById('download-csv').href.split(',').slice(1).join(','))")
        .await;
    let csv = csv.as_str().unwrap_or("").to_string();
    assert!(csv.starts_with("user,token"), "{csv}");
    assert!(csv.contains("\"kid-02\""), "{csv}");
    let token = b
        .eval(
            "document.querySelector('#token-table tr[data-user=\"kid-02\"] code.token').innerText",
        )
        .await;
    let token = token.as_str().expect("token").to_string();
    assert!(csv.contains(&token));
    // The token shown works.
    let r = Host::client()
        .post(host.url("/comfyhost/api/session"))
        .json(&serde_json::json!({"token": token}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        b.eval("!!document.getElementById('print-sheet') && !!document.getElementById('sign-out-everywhere')")
            .await
            .as_bool()
            .unwrap_or(false)
    );
    b.screenshot("dashboard-users-sheet.png").await;

    // Room: limits saved from the form.
    b.navigate(&host.url("/comfyhost/#room")).await;
    b.wait_for(
        "the room page",
        "!!document.getElementById('limits-form') && !!document.getElementById('quarantine-table')",
        Duration::from_secs(20),
    )
    .await;
    b.eval("document.getElementById('limit-max_per_minute').value = '7'; document.getElementById('limits-form').requestSubmit(); true").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let l = host.admin_get("/comfyhost/api/limits").await;
        if l["limits"]["max_per_minute"] == 7 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.screenshot("dashboard-room.png").await;
    assert_eq!(b.uncaught(), 0, "no uncaught errors on the page");
}
