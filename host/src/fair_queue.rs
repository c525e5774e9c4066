//! Per-user fairness in the local ComfyUI queue. ComfyUI runs its queue in order of each
//! prompt's `number` (and accepts a client-chosen one), so the host assigns numbers by
//! start-time fair queuing in rounds: a user's next prompt goes into round
//! `max(V, that user's last round) + 1`, where V is the round of the latest prompt to finish.
//! A user who queues 50 prompts gets rounds 1, 2, 3, ...; another who arrives later gets round
//! V + 1 and runs after at most one of them. Nobody is starved, and a user alone on the machine
//! sees plain FIFO order.
//!
//! Numbers are integers, as ComfyUI's own are: `round * ROUND_STRIDE + k`, where `k` counts the
//! prompts given that round so far (arrival order inside a round, unique numbers). A round that
//! is full (more lanes than [`ROUND_STRIDE`] at once) spills into the next one.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Numbers per round: the most prompts (one per lane) a round holds.
pub const ROUND_STRIDE: i64 = 1000;

/// Assigns queue numbers. Cheap to clone.
#[derive(Clone, Default)]
pub struct FairQueue {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Virtual time: the round of the latest finished prompt.
    virtual_round: i64,
    /// Last round given to each lane.
    last: HashMap<String, i64>,
    /// Numbers of unfinished prompts.
    pending: HashMap<String, i64>,
    /// Prompts given each round not yet behind virtual time.
    used: HashMap<i64, i64>,
    /// Lane of each unfinished prompt (for per-user limits).
    lanes: HashMap<String, String>,
}

impl FairQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// A number for `prompt_id` submitted in `lane` (a user id, or `client:<id>` for anonymous
    /// browsers).
    pub fn assign(&self, lane: &str, prompt_id: &str) -> i64 {
        let mut s = self.inner.lock();
        let mut round = s
            .last
            .get(lane)
            .copied()
            .unwrap_or(i64::MIN)
            .max(s.virtual_round)
            .saturating_add(1);
        while s.used.get(&round).copied().unwrap_or(0) >= ROUND_STRIDE {
            round = round.saturating_add(1);
        }
        let k = s.used.entry(round).or_insert(0);
        let number = round.saturating_mul(ROUND_STRIDE).saturating_add(*k);
        *k += 1;
        s.last.insert(lane.to_string(), round);
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
    pub fn restore(&self, prompt_id: &str, number: i64) {
        let mut s = self.inner.lock();
        s.pending.insert(prompt_id.to_string(), number);
        *s.used.entry(number.div_euclid(ROUND_STRIDE)).or_insert(0) += 1;
    }

    /// The prompt ended (any outcome): virtual time moves to its round.
    pub fn done(&self, prompt_id: &str) {
        let mut s = self.inner.lock();
        s.lanes.remove(prompt_id);
        if let Some(n) = s.pending.remove(prompt_id) {
            let round = n.div_euclid(ROUND_STRIDE);
            if round > s.virtual_round {
                s.virtual_round = round;
            }
        }
    }

    /// Lanes and rounds at or below virtual time have no claim left; forget them so the maps
    /// do not grow with every browser ever seen.
    pub fn compact(&self) {
        let mut s = self.inner.lock();
        let v = s.virtual_round;
        s.last.retain(|_, r| *r > v);
        s.used.retain(|r, _| *r > v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(q: &FairQueue, subs: &[(&str, &str)]) -> Vec<String> {
        let mut v: Vec<(i64, String)> = subs
            .iter()
            .map(|(lane, id)| (q.assign(lane, id), id.to_string()))
            .collect();
        v.sort_by_key(|a| a.0);
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
        assert_eq!(b / ROUND_STRIDE, a / ROUND_STRIDE);
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

    /// Issue 19, finding 5: ComfyUI's numbers are integers; the host's must be too, unique
    /// and in the fair order.
    #[test]
    fn numbers_are_unique_integers_in_fair_order() {
        let q = FairQueue::new();
        let a1 = q.assign("a", "a1");
        let a2 = q.assign("a", "a2");
        let b1 = q.assign("b", "b1");
        assert!(a1 < b1 && b1 < a2, "{a1} {b1} {a2}");
        let json = serde_json::json!({"number": a1}).to_string();
        assert!(!json.contains('.'), "{json}");
        let mut all = vec![a1, a2, b1];
        for i in 0..2500 {
            all.push(q.assign(&format!("u{i}"), &format!("p{i}")));
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            n,
            "numbers must stay unique when a round is full"
        );
    }
}
