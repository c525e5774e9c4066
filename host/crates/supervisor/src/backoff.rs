//! Restart policy: exponential backoff and crash-loop detection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Timings;

/// What to do after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashVerdict {
    /// Restart after this delay.
    RestartAfter(Duration),
    /// Too many crashes in the window: give up.
    CrashLoop {
        /// Crashes counted in the window.
        crashes: usize,
    },
}

/// Tracks crashes since the last explicit start.
#[derive(Debug, Default)]
pub struct CrashTracker {
    recent: VecDeque<Instant>,
    consecutive: u32,
}

impl CrashTracker {
    /// Forgets everything (explicit start/restart).
    pub fn reset(&mut self) {
        self.recent.clear();
        self.consecutive = 0;
    }

    /// Records a crash at `now`. `ready_for` is how long the child had been ready (None if it
    /// never became ready); a long enough stable run resets the backoff exponent.
    pub fn record(
        &mut self,
        now: Instant,
        ready_for: Option<Duration>,
        timings: &Timings,
    ) -> CrashVerdict {
        if ready_for.is_some_and(|d| d >= timings.stable_after) {
            self.consecutive = 0;
        }
        // Only crashes before ComfyUI became ready (a broken installation, bad flags) count
        // toward the crash loop. A ComfyUI that was up and then died was most likely killed by
        // what it was asked to do (a user's workflow, memory): it is restarted with backoff for
        // everyone else, never given up on (the host quarantines the workflow that did it).
        if ready_for.is_none() {
            self.recent.push_back(now);
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > timings.crash_loop_window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= timings.crash_loop_max.max(1) as usize {
            return CrashVerdict::CrashLoop {
                crashes: self.recent.len(),
            };
        }
        let delay = backoff_delay(self.consecutive, timings);
        self.consecutive = self.consecutive.saturating_add(1);
        CrashVerdict::RestartAfter(delay)
    }
}

/// `initial * 2^n`, capped at `max`.
pub fn backoff_delay(n: u32, timings: &Timings) -> Duration {
    let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
    timings
        .backoff_initial
        .checked_mul(factor)
        .unwrap_or(timings.backoff_max)
        .min(timings.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_cap() {
        let t = Timings::default();
        let secs: Vec<u64> = (0..9).map(|n| backoff_delay(n, &t).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_delay(u32::MAX, &t), Duration::from_secs(60));
    }

    #[test]
    fn crash_loop_after_max_in_window_and_stable_run_resets() {
        let t = Timings::default();
        let mut tracker = CrashTracker::default();
        let t0 = Instant::now();
        let v: Vec<_> = (0..5)
            .map(|i| tracker.record(t0 + Duration::from_secs(i), None, &t))
            .collect();
        assert_eq!(v[0], CrashVerdict::RestartAfter(Duration::from_secs(1)));
        assert_eq!(v[3], CrashVerdict::RestartAfter(Duration::from_secs(8)));
        assert_eq!(v[4], CrashVerdict::CrashLoop { crashes: 5 });

        // Crashes of a ComfyUI that had been ready never form a loop, however close together
        // (one user's crashing workflows must not lock the room out); the delay still grows.
        tracker.reset();
        let v: Vec<_> = (0..10)
            .map(|i| {
                tracker.record(
                    t0 + Duration::from_secs(i),
                    Some(Duration::from_secs(1)),
                    &t,
                )
            })
            .collect();
        assert!(
            v.iter().all(|v| matches!(v, CrashVerdict::RestartAfter(_))),
            "{v:?}"
        );
        assert_eq!(v[9], CrashVerdict::RestartAfter(Duration::from_secs(60)));

        // Crashes spread beyond the window never form a loop; a stable run resets the delay.
        tracker.reset();
        let mut now = t0;
        for _ in 0..10 {
            now += Duration::from_secs(400);
            let v = tracker.record(now, Some(Duration::from_secs(120)), &t);
            assert_eq!(v, CrashVerdict::RestartAfter(Duration::from_secs(1)));
        }
    }
}
