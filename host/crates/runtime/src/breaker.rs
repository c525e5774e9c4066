//! Crash-loop breaker. Only plugin *faults* count (a trap or panic, a deadline, the memory
//! cap, a malformed answer; see [`crate::CallErrorKind::is_fault`]); a plugin's own returned
//! error is a decision, not a fault. Three rules trip it, whichever comes first:
//! - `max_failures` faults within `window` (a plugin that fails every other call),
//! - `max_consecutive` faults in a row (a plugin that fails every call, however sparse),
//! - `max_fault_time` spent inside faulting calls within `fault_time_window` (a plugin that
//!   loops to its deadline on each call costs every user that long).
//!
//! A tripped plugin is not called again until an admin re-enables it ([`Breaker::reset`]).
//! A successful call ends a run of consecutive faults and clears the last error (the plugin
//! recovered), but does not clear the window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Breaker settings (host config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Faults within `window` that trip the breaker (at least 1).
    pub max_failures: u32,
    pub window: Duration,
    /// Faults in a row (no successful call between them) that trip the breaker (at least 1).
    pub max_consecutive: u32,
    /// Time spent in faulting calls within `fault_time_window` that trips the breaker.
    pub max_fault_time: Duration,
    pub fault_time_window: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(60),
            max_consecutive: 3,
            max_fault_time: Duration::from_secs(30),
            fault_time_window: Duration::from_secs(600),
        }
    }
}

/// Which rule tripped the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripReason {
    /// `max_failures` faults within the window.
    FaultsInWindow,
    /// `max_consecutive` faults in a row.
    ConsecutiveFaults,
    /// `max_fault_time` spent in faulting calls.
    TimeInFaults,
}

/// What the dashboard shows about a breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerState {
    pub tripped: bool,
    /// Which rule tripped it.
    pub reason: Option<TripReason>,
    /// Faults inside the current window.
    pub failures_in_window: u32,
    pub max_failures: u32,
    pub window_ms: u64,
    /// Faults since the last successful call.
    pub consecutive: u32,
    pub max_consecutive: u32,
    /// Time spent in faulting calls within `fault_time_window_ms`.
    pub fault_time_ms: u64,
    pub max_fault_time_ms: u64,
    pub fault_time_window_ms: u64,
    /// When it tripped, ms since the Unix epoch.
    pub tripped_at_ms: Option<u64>,
    /// The last fault, until a call succeeds again.
    pub last_error: Option<String>,
    /// When the last fault happened, ms since the Unix epoch.
    pub last_error_at_ms: Option<u64>,
}

/// One plugin's breaker. Time is passed in, so the rules are testable without sleeping.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    failures: VecDeque<Instant>,
    /// `(when, time spent)` of each fault inside `fault_time_window`.
    fault_time: VecDeque<(Instant, Duration)>,
    consecutive: u32,
    tripped_at_ms: Option<u64>,
    reason: Option<TripReason>,
    last_error: Option<(String, u64)>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config: BreakerConfig {
                max_failures: config.max_failures.max(1),
                max_consecutive: config.max_consecutive.max(1),
                ..config
            },
            failures: VecDeque::new(),
            fault_time: VecDeque::new(),
            consecutive: 0,
            tripped_at_ms: None,
            reason: None,
            last_error: None,
        }
    }

    /// Records a fault at `now` that took `spent`. Returns `true` when this fault trips the
    /// breaker.
    pub fn record_fault(
        &mut self,
        now: Instant,
        now_unix_ms: u64,
        spent: Duration,
        error: &str,
    ) -> bool {
        self.last_error = Some((error.to_owned(), now_unix_ms));
        self.expire(now);
        self.failures.push_back(now);
        self.fault_time.push_back((now, spent));
        self.consecutive = self.consecutive.saturating_add(1);
        if self.tripped_at_ms.is_some() {
            return false;
        }
        let reason = if self.failures.len() >= self.config.max_failures as usize {
            Some(TripReason::FaultsInWindow)
        } else if self.consecutive >= self.config.max_consecutive {
            Some(TripReason::ConsecutiveFaults)
        } else if self.time_in_faults() >= self.config.max_fault_time {
            Some(TripReason::TimeInFaults)
        } else {
            None
        };
        if reason.is_some() {
            self.reason = reason;
            self.tripped_at_ms = Some(now_unix_ms);
            return true;
        }
        false
    }

    /// Records a successful call: the run of consecutive faults ends and the last error is
    /// cleared (the plugin recovered).
    pub fn record_success(&mut self) {
        self.consecutive = 0;
        self.last_error = None;
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped_at_ms.is_some()
    }

    /// Clears faults and the tripped state (admin re-enable). The last error stays visible
    /// until the plugin succeeds again.
    pub fn reset(&mut self) {
        self.failures.clear();
        self.fault_time.clear();
        self.consecutive = 0;
        self.tripped_at_ms = None;
        self.reason = None;
    }

    /// State as of `now`.
    pub fn state(&mut self, now: Instant) -> BreakerState {
        self.expire(now);
        BreakerState {
            tripped: self.is_tripped(),
            reason: self.reason,
            failures_in_window: u32::try_from(self.failures.len()).unwrap_or(u32::MAX),
            max_failures: self.config.max_failures,
            window_ms: millis(self.config.window),
            consecutive: self.consecutive,
            max_consecutive: self.config.max_consecutive,
            fault_time_ms: millis(self.time_in_faults()),
            max_fault_time_ms: millis(self.config.max_fault_time),
            fault_time_window_ms: millis(self.config.fault_time_window),
            tripped_at_ms: self.tripped_at_ms,
            last_error: self.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at_ms: self.last_error.as_ref().map(|(_, t)| *t),
        }
    }

    fn time_in_faults(&self) -> Duration {
        self.fault_time.iter().map(|(_, d)| *d).sum()
    }

    fn expire(&mut self, now: Instant) {
        while let Some(first) = self.failures.front() {
            if now.saturating_duration_since(*first) >= self.config.window {
                self.failures.pop_front();
            } else {
                break;
            }
        }
        while let Some((first, _)) = self.fault_time.front() {
            if now.saturating_duration_since(*first) >= self.config.fault_time_window {
                self.fault_time.pop_front();
            } else {
                break;
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Only the window rule can trip (the others are out of reach).
    fn cfg(n: u32, secs: u64) -> BreakerConfig {
        BreakerConfig {
            max_failures: n,
            window: Duration::from_secs(secs),
            max_consecutive: u32::MAX,
            max_fault_time: Duration::MAX,
            fault_time_window: Duration::from_secs(600),
        }
    }

    #[test]
    fn trips_on_nth_failure_inside_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(3, 10));
        assert!(!b.record_fault(t0, 1, MS, "e1"));
        assert!(!b.record_fault(t0 + Duration::from_secs(1), 2, MS, "e2"));
        assert!(!b.is_tripped());
        assert!(b.record_fault(t0 + Duration::from_secs(2), 3, MS, "e3"));
        assert!(b.is_tripped());
        // further failures do not "trip again"
        assert!(!b.record_fault(t0 + Duration::from_secs(3), 4, MS, "e4"));
        let s = b.state(t0 + Duration::from_secs(3));
        assert!(s.tripped);
        assert_eq!(s.reason, Some(TripReason::FaultsInWindow));
        assert_eq!(s.tripped_at_ms, Some(3));
        assert_eq!(s.last_error.as_deref(), Some("e4"));
        assert_eq!(s.last_error_at_ms, Some(4));
        assert_eq!(s.failures_in_window, 4);
    }

    #[test]
    fn failures_outside_window_expire() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(3, 10));
        b.record_fault(t0, 0, MS, "a");
        b.record_fault(t0 + Duration::from_secs(5), 0, MS, "b");
        // the first failure is 10 s old now: only 2 in the window after this one
        assert!(!b.record_fault(t0 + Duration::from_secs(10), 0, MS, "c"));
        assert_eq!(b.state(t0 + Duration::from_secs(10)).failures_in_window, 2);
        assert_eq!(b.state(t0 + Duration::from_secs(30)).failures_in_window, 0);
        assert!(!b.is_tripped());
    }

    #[test]
    fn consecutive_faults_trip_however_sparse() {
        let mut c = cfg(5, 60);
        c.max_consecutive = 3;
        let t0 = Instant::now();
        let mut b = Breaker::new(c);
        // One fault every 10 minutes: the window never holds more than one.
        assert!(!b.record_fault(t0, 0, MS, "a"));
        assert!(!b.record_fault(t0 + Duration::from_secs(600), 0, MS, "b"));
        assert!(b.record_fault(t0 + Duration::from_secs(1200), 0, MS, "c"));
        assert_eq!(
            b.state(t0 + Duration::from_secs(1200)).reason,
            Some(TripReason::ConsecutiveFaults)
        );
    }

    #[test]
    fn a_success_ends_the_run_and_clears_the_last_error() {
        let mut c = cfg(100, 60);
        c.max_consecutive = 3;
        let t0 = Instant::now();
        let mut b = Breaker::new(c);
        b.record_fault(t0, 0, MS, "a");
        b.record_fault(t0, 0, MS, "b");
        b.record_success();
        let s = b.state(t0);
        assert_eq!((s.consecutive, s.last_error), (0, None));
        assert!(!b.record_fault(t0, 0, MS, "c"));
        assert!(!b.record_fault(t0, 0, MS, "d"));
        assert!(b.record_fault(t0, 0, MS, "e"));
    }

    #[test]
    fn time_spent_in_faults_trips_a_slow_looper_with_sparse_prompts() {
        // A plugin that runs to a 16 s deadline, with successes in between (so never three in
        // a row) and one fault every two minutes (never five in a minute).
        let mut c = cfg(5, 60);
        c.max_consecutive = 3;
        c.max_fault_time = Duration::from_secs(30);
        c.fault_time_window = Duration::from_secs(600);
        let t0 = Instant::now();
        let mut b = Breaker::new(c);
        let spent = Duration::from_secs(16);
        assert!(!b.record_fault(t0, 0, spent, "deadline"));
        b.record_success();
        assert!(b.record_fault(t0 + Duration::from_secs(120), 0, spent, "deadline"));
        let s = b.state(t0 + Duration::from_secs(120));
        assert_eq!(s.reason, Some(TripReason::TimeInFaults));
        assert_eq!(s.fault_time_ms, 32_000);
    }

    #[test]
    fn fault_time_expires_with_its_window() {
        let mut c = cfg(100, 60);
        c.max_fault_time = Duration::from_secs(30);
        c.fault_time_window = Duration::from_secs(600);
        let t0 = Instant::now();
        let mut b = Breaker::new(c);
        b.record_fault(t0, 0, Duration::from_secs(20), "x");
        b.record_success();
        assert!(!b.record_fault(
            t0 + Duration::from_secs(601),
            0,
            Duration::from_secs(20),
            "y"
        ));
    }

    #[test]
    fn reset_clears_trip_but_keeps_last_error() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(1, 10));
        assert!(b.record_fault(t0, 7, MS, "boom"));
        b.reset();
        let s = b.state(t0);
        assert!(!s.tripped);
        assert_eq!(
            (s.failures_in_window, s.consecutive, s.reason),
            (0, 0, None)
        );
        assert_eq!(s.last_error.as_deref(), Some("boom"));
        assert!(b.record_fault(t0, 8, MS, "again"));
    }

    #[test]
    fn zero_limits_are_clamped_to_one() {
        let mut b = Breaker::new(cfg(0, 1));
        assert!(b.record_fault(Instant::now(), 0, MS, "x"));
        let mut c = cfg(10, 1);
        c.max_consecutive = 0;
        let mut b = Breaker::new(c);
        assert!(b.record_fault(Instant::now(), 0, MS, "x"));
    }
}
