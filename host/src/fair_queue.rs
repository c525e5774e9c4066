//! Per-user fairness in the local ComfyUI queue. ComfyUI runs its queue in order of each
//! prompt's `number` (and accepts a client-chosen one), so the host assigns numbers by
//! start-time fair queuing: a user's next prompt gets `max(V, that user's last number) + 1`,
//! where V is the number of the latest prompt to finish. A user who queues 50 prompts gets
//! 1, 2, 3, ...; another who arrives later gets V + 1 and runs after at most one of them.
//! Nobody is starved, and a user alone on the machine sees plain FIFO order.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Assigns queue numbers. Cheap to clone.
#[derive(Clone, Default)]
pub struct FairQueue {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Virtual time: the number of the latest finished prompt.
    virtual_now: f64,
    /// Last number given to each lane.
    last: HashMap<String, f64>,
    /// Numbers of unfinished prompts.
    pending: HashMap<String, f64>,
    /// Lane of each unfinished prompt (for per-user limits).
    lanes: HashMap<String, String>,
    /// Tie-breaker so two lanes never share a number.
    seq: u64,
}

impl FairQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// A number for `prompt_id` submitted in `lane` (a user id, or `client:<id>` for anonymous
    /// browsers).
    pub fn assign(&self, lane: &str, prompt_id: &str) -> f64 {
        let mut s = self.inner.lock();
        s.seq += 1;
        let start = s
            .last
            .get(lane)
            .copied()
            .unwrap_or(f64::MIN)
            .max(s.virtual_now);
        // Integer steps per lane plus a small arrival-order fraction, so equal starts keep
        // submission order and numbers stay unique.
        let number = start.floor() + 1.0 + (s.seq % 1_000_000) as f64 / 1_000_000.0;
        s.last.insert(lane.to_string(), number);
        s.pending.insert(prompt_id.to_string(), number);
        s.lanes.insert(prompt_id.to_string(), lane.to_string());
        number
    }

    /// Unfinished prompts submitted in `lane`.
    pub fn pending_in(&self, lane: &str) -> usize {
        self.inner
            .lock()
            .lanes
            .values()
            .filter(|l| *l == lane)
            .count()
    }

    /// Re-registers a prompt found unfinished at start.
    pub fn restore(&self, prompt_id: &str, number: f64) {
        self.inner
            .lock()
            .pending
            .insert(prompt_id.to_string(), number);
    }

    /// The prompt ended (any outcome): virtual time moves to its number.
    pub fn done(&self, prompt_id: &str) {
        let mut s = self.inner.lock();
        s.lanes.remove(prompt_id);
        if let Some(n) = s.pending.remove(prompt_id)
            && n > s.virtual_now
        {
            s.virtual_now = n;
        }
    }

    /// Lanes with a number at or below virtual time have no claim left; forget them so the map
    /// does not grow with every browser ever seen.
    pub fn compact(&self) {
        let mut s = self.inner.lock();
        let v = s.virtual_now;
        s.last.retain(|_, n| *n > v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(q: &FairQueue, subs: &[(&str, &str)]) -> Vec<String> {
        let mut v: Vec<(f64, String)> = subs
            .iter()
            .map(|(lane, id)| (q.assign(lane, id), id.to_string()))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v.into_iter().map(|(_, id)| id).collect()
    }

    #[test]
    fn a_late_user_is_interleaved_not_queued_behind_a_flood() {
        let q = FairQueue::new();
        let got = order(
            &q,
            &[
                ("a", "a1"),
                ("a", "a2"),
                ("a", "a3"),
                ("a", "a4"),
                ("b", "b1"),
                ("b", "b2"),
            ],
        );
        assert_eq!(got, ["a1", "b1", "a2", "b2", "a3", "a4"]);
    }

    #[test]
    fn one_user_alone_is_fifo_and_virtual_time_advances() {
        let q = FairQueue::new();
        let n1 = q.assign("a", "1");
        let n2 = q.assign("a", "2");
        assert!(n1 < n2);
        q.done("1");
        q.done("2");
        // After a's work finished, a newcomer and a start level.
        let b = q.assign("b", "3");
        let a = q.assign("a", "4");
        assert!(b > n2 && a > n2);
        assert!((b.floor() - a.floor()).abs() < f64::EPSILON);
        q.compact();
    }

    #[test]
    fn twenty_users_each_get_a_slot_in_every_round() {
        let q = FairQueue::new();
        let mut subs = Vec::new();
        let ids: Vec<(String, String)> = (0..20)
            .flat_map(|u| (0..5).map(move |k| (format!("u{u}"), format!("u{u}-{k}"))))
            .collect();
        for (lane, id) in &ids {
            subs.push((lane.as_str(), id.as_str()));
        }
        let got = order(&q, &subs);
        // The first 20 to run are one prompt of each user.
        let mut first: Vec<&str> = got[..20]
            .iter()
            .map(|id| id.split('-').next().unwrap())
            .collect();
        first.sort();
        first.dedup();
        assert_eq!(first.len(), 20);
    }
}
