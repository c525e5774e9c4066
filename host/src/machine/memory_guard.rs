//! The optional memory guard: restart ComfyUI between jobs when its memory passes a limit.

use std::time::{Duration, Instant};

/// Decides when a restart is due. The caller checks that ComfyUI's queue is empty first.
#[derive(Debug)]
pub struct MemoryGuard {
    limit_bytes: u64,
    /// Least time between two guard restarts (a ComfyUI that starts above the limit would
    /// otherwise restart forever).
    cooldown: Duration,
    last_restart: Option<Instant>,
    pub restarts: u64,
}

impl MemoryGuard {
    pub fn new(limit_bytes: u64, cooldown: Duration) -> Self {
        Self {
            limit_bytes,
            cooldown,
            last_restart: None,
            restarts: 0,
        }
    }

    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// Over the limit, ready, and not restarted by the guard within the cooldown.
    pub fn over_limit(&self, rss_bytes: Option<u64>, ready: bool, now: Instant) -> bool {
        ready
            && rss_bytes.is_some_and(|r| r > self.limit_bytes)
            && self
                .last_restart
                .is_none_or(|t| now.duration_since(t) >= self.cooldown)
    }

    pub fn restarted(&mut self, now: Instant) {
        self.last_restart = Some(now);
        self.restarts += 1;
    }
}

/// Whether ComfyUI's `/queue` answer shows nothing running and nothing pending.
pub fn queue_is_empty(queue: &serde_json::Value) -> bool {
    let empty = |k: &str| {
        queue
            .get(k)
            .and_then(|v| v.as_array())
            .is_some_and(Vec::is_empty)
    };
    empty("queue_running") && empty("queue_pending")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn restarts_only_over_the_limit_when_ready_and_after_the_cooldown() {
        let mut g = MemoryGuard::new(1000, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(!g.over_limit(Some(900), true, t0));
        assert!(!g.over_limit(None, true, t0));
        assert!(!g.over_limit(Some(2000), false, t0), "not while starting");
        assert!(g.over_limit(Some(2000), true, t0));
        g.restarted(t0);
        assert!(!g.over_limit(Some(2000), true, t0 + Duration::from_secs(30)));
        assert!(g.over_limit(Some(2000), true, t0 + Duration::from_secs(61)));
        assert_eq!(g.restarts, 1);
    }

    #[test]
    fn only_an_empty_queue_is_idle() {
        use serde_json::json;
        assert!(queue_is_empty(
            &json!({"queue_running": [], "queue_pending": []})
        ));
        assert!(!queue_is_empty(
            &json!({"queue_running": [[0, "p", {}, {}, []]], "queue_pending": []})
        ));
        assert!(!queue_is_empty(
            &json!({"queue_running": [], "queue_pending": [[1]]})
        ));
        assert!(
            !queue_is_empty(&json!({"error": "x"})),
            "an unknown answer is not idle"
        );
    }
}
