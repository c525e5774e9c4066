//! If the host is SIGKILLed (no chance to clean up), PR_SET_PDEATHSIG still takes ComfyUI down.

use std::time::Duration;

use crate::support::*;

const PIDFILE_ENV: &str = "SUPERVISOR_TEST_HELPER_PIDFILE";

/// Not a test on its own: the host process for `sigkilled_host_leaves_no_comfyui_behind`, run
/// by it as a subprocess of this test binary.
#[test]
#[ignore = "helper process, started by sigkilled_host_leaves_no_comfyui_behind"]
fn host_process_helper() {
    let Ok(pidfile) = std::env::var(PIDFILE_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let fx = Fixture::new();
        let sup = spawn(fx.config(&[]));
        let mut rx = sup.subscribe();
        let op = sup.start().await;
        assert!(op_outcome(&mut rx, op).await.0);
        let pid = sup.status().pid.unwrap();
        std::fs::write(&pidfile, pid.to_string()).unwrap();
        // Wait to be killed.
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

#[tokio::test]
async fn sigkilled_host_leaves_no_comfyui_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("comfyui.pid");
    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "host_death::host_process_helper",
            "--nocapture",
        ])
        .env(PIDFILE_ENV, &pidfile)
        .spawn()
        .unwrap();
    let comfyui = read_pid(&pidfile);
    assert!(comfyhost_supervisor::process_alive(comfyui));
    host.kill().unwrap(); // SIGKILL: no Drop, no shutdown
    host.wait().unwrap();
    assert_gone(comfyui).await;
}
