//! In-memory call statistics of one plugin: totals and latency percentiles over the most
//! recent calls.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Calls kept for the latency percentiles.
pub const LATENCY_WINDOW: usize = 1000;

/// Counters and a latency window.
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    calls: u64,
    failures: u64,
    recent: VecDeque<Duration>,
}

/// What the dashboard shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub failures: u64,
    /// Calls in the percentile window.
    pub window: u32,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

impl CallStats {
    pub fn record(&mut self, latency: Duration, ok: bool) {
        self.calls += 1;
        if !ok {
            self.failures += 1;
        }
        if self.recent.len() == LATENCY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(latency);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let pct = |p: usize| -> Option<u64> {
            if sorted.is_empty() {
                return None;
            }
            // nearest-rank percentile
            let rank = (p * sorted.len()).div_ceil(100).max(1);
            sorted
                .get(rank - 1)
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        };
        StatsSnapshot {
            calls: self.calls,
            failures: self.failures,
            window: u32::try_from(sorted.len()).unwrap_or(u32::MAX),
            p50_us: pct(50),
            p99_us: pct(99),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_recent_window() {
        let mut s = CallStats::default();
        assert_eq!(s.snapshot().p50_us, None);
        for i in 1..=100u64 {
            s.record(Duration::from_micros(i), i % 10 != 0);
        }
        let snap = s.snapshot();
        assert_eq!((snap.calls, snap.failures), (100, 10));
        assert_eq!(snap.p50_us, Some(50));
        assert_eq!(snap.p99_us, Some(99));
        // old calls leave the window
        for _ in 0..LATENCY_WINDOW {
            s.record(Duration::from_micros(7), true);
        }
        let snap = s.snapshot();
        assert_eq!(snap.window as usize, LATENCY_WINDOW);
        assert_eq!((snap.p50_us, snap.p99_us), (Some(7), Some(7)));
        assert_eq!(snap.calls, 100 + LATENCY_WINDOW as u64);
    }
}
