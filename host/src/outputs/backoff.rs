//! Retry timing: exponential backoff with a cap, and a minimum gap between plugin calls.

use std::time::Duration;

use tokio::time::Instant;

/// Delay before attempt `attempt + 1` after `attempt` failures: `base * 2^(attempt-1)`, capped.
pub fn delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(30))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap)
}

/// At most `per_second` calls per second, spaced evenly.
#[derive(Debug)]
pub struct RateLimiter {
    gap: Duration,
    next: Option<Instant>,
}

impl RateLimiter {
    /// `per_second` of 0 means unlimited.
    pub fn new(per_second: u32) -> Self {
        let gap = if per_second == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(1) / per_second
        };
        Self { gap, next: None }
    }

    /// Waits for the next slot.
    pub async fn acquire(&mut self) {
        let now = Instant::now();
        if let Some(next) = self.next
            && next > now
        {
            tokio::time::sleep_until(next).await;
        }
        self.next = Some(Instant::now().max(now) + self.gap);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(30);
        let got: Vec<u64> = (0..9)
            .map(|a| delay(a, base, cap).as_millis() as u64)
            .collect();
        assert_eq!(got, [0, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(delay(u32::MAX, base, cap), cap);
    }

    #[tokio::test]
    async fn rate_limiter_spaces_calls() {
        let mut rl = RateLimiter::new(20);
        assert_eq!(rl.gap, Duration::from_millis(50));
        let start = Instant::now();
        for _ in 0..5 {
            rl.acquire().await;
        }
        // The first call is immediate, then 4 gaps of 50 ms at least (sleeps never end early).
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(RateLimiter::new(0).gap, Duration::ZERO);
    }
}
