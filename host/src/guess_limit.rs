//! Rate limits on wrong tokens (sign-in and `Authorization: Bearer` on the admin API), keyed by
//! the client address *and* the first characters of the presented token. A class behind one
//! NAT shares an address: keying by address alone let one student's typos (or an attacker
//! next door) lock everyone out, the right token included. Here a correct token is always
//! checked first and always gets in; wrong guesses at one token from one address are answered
//! `429` once they pass the limit; guesses at other tokens, or from other addresses, are not
//! affected. (Tokens the host issues carry 192 random bits, so the limit is about noise and
//! alerting, not the only line of defence.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Wrong tokens allowed per (address, token prefix) per window.
pub const FAILURES_ALLOWED: usize = 10;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Characters of the presented token that key the limit.
const PREFIX_CHARS: usize = 6;
/// Keys kept before old ones are dropped (bounds memory under a flood of distinct guesses).
const MAX_KEYS: usize = 100_000;

/// Failed attempts by (address, token prefix). Cheap to clone.
#[derive(Clone, Default)]
pub struct GuessLimiter {
    failures: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
}

fn key(client: &str, token: &str) -> String {
    let prefix: String = token.chars().take(PREFIX_CHARS).collect();
    format!("{client}|{prefix}")
}

impl GuessLimiter {
    /// Seconds to wait when wrong guesses at this token from this address are over the limit.
    pub fn limited(&self, client: &str, token: &str) -> Option<u64> {
        let now = Instant::now();
        let mut map = self.failures.lock();
        let list = map.get_mut(&key(client, token))?;
        list.retain(|t| now.duration_since(*t) < WINDOW);
        if list.len() < FAILURES_ALLOWED {
            return None;
        }
        let oldest = list.first().copied().unwrap_or(now);
        Some(
            WINDOW
                .saturating_sub(now.duration_since(oldest))
                .as_secs()
                .max(1),
        )
    }

    /// A wrong token was presented. Returns `true` when this failure reached the limit (once
    /// per window, for an activity entry).
    pub fn failed(&self, client: &str, token: &str) -> bool {
        let now = Instant::now();
        let mut map = self.failures.lock();
        if map.len() >= MAX_KEYS {
            map.retain(|_, l| l.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let list = map.entry(key(client, token)).or_default();
        list.retain(|t| now.duration_since(*t) < WINDOW);
        list.push(now);
        list.len() == FAILURES_ALLOWED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_per_address_and_token_prefix() {
        let g = GuessLimiter::default();
        for i in 0..FAILURES_ALLOWED {
            assert!(g.limited("1.2.3.4", "abcdefWRONG").is_none());
            assert_eq!(
                g.failed("1.2.3.4", &format!("abcdef{i}")),
                i + 1 == FAILURES_ALLOWED
            );
        }
        assert!(g.limited("1.2.3.4", "abcdefANOTHER").is_some());
        assert!(g.limited("1.2.3.4", "zzzzzz").is_none(), "another token");
        assert!(g.limited("5.6.7.8", "abcdef").is_none(), "another address");
    }
}
