//! Launching the child in its own process group and signalling that group.

use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::spec::LaunchSpec;

/// Spawns `argv` (from [`crate::command_line`]) for `spec`:
/// own process group (so signals reach ComfyUI's helpers too), stdin closed, stdout/stderr piped,
/// killed when the handle is dropped, and `PR_SET_PDEATHSIG(SIGKILL)` so a SIGKILLed host does not
/// leave ComfyUI running. (Linux delivers that signal when the *thread* that spawned the child
/// exits; the supervisor spawns from its actor task on a runtime worker thread, which lives as
/// long as the runtime.)
pub fn spawn_child(spec: &LaunchSpec, argv: &[String]) -> std::io::Result<Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&spec.comfyui_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if !spec.env.contains_key("PYTHONUNBUFFERED") {
        cmd.env("PYTHONUNBUFFERED", "1");
    }
    cmd.envs(&spec.env);
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // async-signal-safe calls prctl, getppid and raise, with valid arguments.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The host may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != parent as libc::pid_t {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `signal` to the process group led by `pgid`. "No such process" is not an error.
pub fn signal_group(pgid: u32, signal: Signal) -> nix::Result<()> {
    let Ok(raw) = i32::try_from(pgid) else {
        return Err(nix::errno::Errno::EINVAL);
    };
    if raw <= 1 {
        // Never signal "every process" or init by accident.
        return Err(nix::errno::Errno::EINVAL);
    }
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a live (non-zombie) process with this pid exists, per `/proc/<pid>/stat`.
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: "pid (comm) S ..."; comm may contain spaces and parentheses, so split at the last ')'.
    match stat.rsplit_once(')') {
        Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X') | None),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_dangerous_pgids() {
        assert!(signal_group(0, Signal::SIGTERM).is_err());
        assert!(signal_group(1, Signal::SIGTERM).is_err());
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }

    #[tokio::test]
    async fn child_gets_its_own_group_and_dies_by_group_signal() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LaunchSpec::comfyui("/bin/sh", dir.path(), 1);
        let argv = vec!["/bin/sh".into(), "-c".into(), "sleep 30".into()];
        let mut child = spawn_child(&spec, &argv).unwrap();
        let pid = child.id().unwrap();
        let pgid = nix::unistd::getpgid(Some(Pid::from_raw(pid as i32))).unwrap();
        assert_eq!(pgid.as_raw() as u32, pid, "child leads its own group");
        signal_group(pid, Signal::SIGTERM).unwrap();
        let status = child.wait().await.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(!process_alive(pid));
    }
}
