//! Crash-loop breaker: `max_failures` failed calls within `window` trip it; a tripped plugin is
//! not called again until an admin re-enables it ([`Breaker::reset`]). Successful calls do not
//! clear the window: a plugin that fails every other call still trips.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Breaker settings (host config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures within `window` that trip the breaker (at least 1).
    pub max_failures: u32,
    pub window: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// What the dashboard shows about a breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerState {
    pub tripped: bool,
    /// Failures inside the current window.
    pub failures_in_window: u32,
    pub max_failures: u32,
    pub window_ms: u64,
    /// When it tripped, ms since the Unix epoch.
    pub tripped_at_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// One plugin's breaker. Time is passed in, so the window logic is testable without sleeping.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    failures: VecDeque<Instant>,
    tripped_at_ms: Option<u64>,
    last_error: Option<String>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config: BreakerConfig {
                max_failures: config.max_failures.max(1),
                ..config
            },
            failures: VecDeque::new(),
            tripped_at_ms: None,
            last_error: None,
        }
    }

    /// Records a failure at `now`. Returns `true` when this failure trips the breaker.
    pub fn record_failure(&mut self, now: Instant, now_unix_ms: u64, error: &str) -> bool {
        self.last_error = Some(error.to_owned());
        self.expire(now);
        self.failures.push_back(now);
        if self.tripped_at_ms.is_none() && self.failures.len() >= self.config.max_failures as usize
        {
            self.tripped_at_ms = Some(now_unix_ms);
            return true;
        }
        false
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped_at_ms.is_some()
    }

    /// Clears failures and the tripped state (admin re-enable). The last error stays visible.
    pub fn reset(&mut self) {
        self.failures.clear();
        self.tripped_at_ms = None;
    }

    /// State as of `now`.
    pub fn state(&mut self, now: Instant) -> BreakerState {
        self.expire(now);
        BreakerState {
            tripped: self.is_tripped(),
            failures_in_window: u32::try_from(self.failures.len()).unwrap_or(u32::MAX),
            max_failures: self.config.max_failures,
            window_ms: u64::try_from(self.config.window.as_millis()).unwrap_or(u64::MAX),
            tripped_at_ms: self.tripped_at_ms,
            last_error: self.last_error.clone(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(first) = self.failures.front() {
            if now.saturating_duration_since(*first) >= self.config.window {
                self.failures.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(n: u32, secs: u64) -> BreakerConfig {
        BreakerConfig {
            max_failures: n,
            window: Duration::from_secs(secs),
        }
    }

    #[test]
    fn trips_on_nth_failure_inside_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(3, 10));
        assert!(!b.record_failure(t0, 1, "e1"));
        assert!(!b.record_failure(t0 + Duration::from_secs(1), 2, "e2"));
        assert!(!b.is_tripped());
        assert!(b.record_failure(t0 + Duration::from_secs(2), 3, "e3"));
        assert!(b.is_tripped());
        // further failures do not "trip again"
        assert!(!b.record_failure(t0 + Duration::from_secs(3), 4, "e4"));
        let s = b.state(t0 + Duration::from_secs(3));
        assert!(s.tripped);
        assert_eq!(s.tripped_at_ms, Some(3));
        assert_eq!(s.last_error.as_deref(), Some("e4"));
        assert_eq!(s.failures_in_window, 4);
    }

    #[test]
    fn failures_outside_window_expire() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(3, 10));
        b.record_failure(t0, 0, "a");
        b.record_failure(t0 + Duration::from_secs(5), 0, "b");
        // the first failure is 10 s old now: only 2 in the window after this one
        assert!(!b.record_failure(t0 + Duration::from_secs(10), 0, "c"));
        assert_eq!(b.state(t0 + Duration::from_secs(10)).failures_in_window, 2);
        assert_eq!(b.state(t0 + Duration::from_secs(30)).failures_in_window, 0);
        assert!(!b.is_tripped());
    }

    #[test]
    fn reset_clears_trip_but_keeps_last_error() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(1, 10));
        assert!(b.record_failure(t0, 7, "boom"));
        b.reset();
        let s = b.state(t0);
        assert!(!s.tripped);
        assert_eq!(s.failures_in_window, 0);
        assert_eq!(s.last_error.as_deref(), Some("boom"));
        assert!(b.record_failure(t0, 8, "again"));
    }

    #[test]
    fn zero_max_failures_is_clamped_to_one() {
        let mut b = Breaker::new(cfg(0, 1));
        assert!(b.record_failure(Instant::now(), 0, "x"));
    }
}
