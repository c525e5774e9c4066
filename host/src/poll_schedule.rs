//! When the job tracker looks a job up in ComfyUI's history again: each job has its own
//! exponential backoff (a job that is not there yet is asked about less and less often, up to
//! [`MAX_BACKOFF_MS`]), and each poll takes the jobs that have waited longest first, so a set of
//! jobs that never settle cannot starve the others out of the poll batch.

/// First wait after a miss.
pub const BASE_BACKOFF_MS: i64 = 1_000;
/// Longest wait between two looks at one job.
pub const MAX_BACKOFF_MS: i64 = 8_000;

/// One job's next look-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSchedule {
    next_ms: i64,
    misses: u32,
}

impl PollSchedule {
    /// Due at once.
    pub fn now(now_ms: i64) -> Self {
        Self {
            next_ms: now_ms,
            misses: 0,
        }
    }

    pub fn is_due(&self, now_ms: i64) -> bool {
        self.next_ms <= now_ms
    }

    /// Looked up and not settled (or the look-up failed): wait twice as long as last time.
    pub fn missed(&mut self, now_ms: i64) {
        let wait = BASE_BACKOFF_MS
            .saturating_mul(1_i64 << self.misses.min(20))
            .min(MAX_BACKOFF_MS);
        self.misses = self.misses.saturating_add(1);
        self.next_ms = now_ms.saturating_add(wait);
    }

    /// Something changed (it started running, it left the queue): look soon again.
    pub fn reset(&mut self, now_ms: i64) {
        *self = Self::now(now_ms);
    }
}

/// Up to `n` due keys, longest waiting first (ties by key, so the choice is stable).
pub fn pick_due<'a, K: Ord + Clone + 'a>(
    items: impl IntoIterator<Item = (&'a K, &'a PollSchedule)>,
    now_ms: i64,
    n: usize,
) -> Vec<K> {
    let mut due: Vec<(i64, &K)> = items
        .into_iter()
        .filter(|(_, s)| s.is_due(now_ms))
        .map(|(k, s)| (s.next_ms, k))
        .collect();
    due.sort();
    due.into_iter().take(n).map(|(_, k)| k.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut s = PollSchedule::now(0);
        let mut waits = Vec::new();
        let mut t = 0;
        for _ in 0..6 {
            s.missed(t);
            waits.push(s.next_ms - t);
            t = s.next_ms;
        }
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        s.reset(t);
        assert!(s.is_due(t));
    }

    /// Finding 4 of issue 18: 476 ids that never settle kept one later job out of a 64-wide
    /// batch forever. Here it is looked at within the first few polls.
    #[test]
    fn ids_that_never_settle_do_not_starve_a_later_job() {
        let mut jobs: HashMap<String, PollSchedule> = (0..476)
            .map(|i| (format!("stuck-{i:03}"), PollSchedule::now(0)))
            .collect();
        let mut now = 0;
        // The stuck ones have been polled and missed for a while already.
        for s in jobs.values_mut() {
            s.missed(now);
        }
        now = 500;
        jobs.insert("zz-good".into(), PollSchedule::now(now));
        let mut seen_at = None;
        for round in 0..20 {
            let batch = pick_due(jobs.iter(), now, 64);
            assert!(batch.len() <= 64);
            if batch.iter().any(|k| k == "zz-good") {
                seen_at = Some(round);
                break;
            }
            for k in &batch {
                if let Some(s) = jobs.get_mut(k) {
                    s.missed(now);
                }
            }
            now += 1_000;
        }
        assert!(seen_at.is_some(), "the later job was never polled");
        // And every stuck id still gets its turn within a bounded time.
        let mut polled = std::collections::HashSet::new();
        for _ in 0..40 {
            for k in pick_due(jobs.iter(), now, 64) {
                if let Some(s) = jobs.get_mut(&k) {
                    s.missed(now);
                }
                polled.insert(k);
            }
            now += 1_000;
        }
        assert_eq!(polled.len(), jobs.len());
    }
}
