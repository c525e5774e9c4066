//! Keeps the host light at rest (issue 24): glibc's malloc is limited to a few arenas (by
//! default it creates up to eight per core, one per thread that allocates, and keeps what
//! each one freed: the compile threads of a first start alone left tens of MB), and memory
//! freed after start-up and after bursts is handed back to the kernel periodically.
//!
//! Both are no-ops on other C libraries. `MALLOC_ARENA_MAX` in the environment still wins.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Arenas glibc may create. Two keep contention low on a multi-threaded runtime.
pub const ARENA_MAX: i32 = 2;
/// How often free heap memory is returned to the kernel.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Limits malloc arenas; call first thing in `main`, before any thread is started.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator parameters; called before other threads run.
        let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) };
    }
}

/// Returns free heap memory to the kernel now (blocking; a few ms at most).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Releases free memory now (after start-up) and every [`TRIM_EVERY`] until `cancel`.
pub fn spawn_trimmer(cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(TRIM_EVERY) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_and_trimming_are_safe_to_call_repeatedly() {
        tune_allocator();
        let v: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 * 1024]).collect();
        drop(v);
        release_free_memory();
        release_free_memory();
    }
}
