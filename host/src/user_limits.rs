//! Fair limits per user, on top of the fair queue's ordering: how many prompts one user may
//! have queued at once, how many they may submit per minute, and how many nodes one prompt may
//! have. Admin-configurable (`/comfyhost/api/limits`, stored in the settings table under
//! `user_limits`); 0 means no limit. The defaults do not bother one person working alone.
//! Admins are never limited. A refusal is `429` (`400` for too many nodes) in ComfyUI's error
//! shape, naming the limit and when to retry (`extra_info.retry_after_s` and `Retry-After`).
//! Users are the fair queue's lanes: a signed-in user's id, else the browser's client id.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyhost_protocol::ComfyErrorBody;
use comfyhost_store::Store;
use http::StatusCode;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Settings key.
pub const SETTING: &str = "user_limits";
const MINUTE: Duration = Duration::from_secs(60);

/// The limits (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Prompts one user may have queued or running at once.
    pub max_queued: u32,
    /// Prompts one user may submit per minute.
    pub max_per_minute: u32,
    /// Nodes in one prompt.
    pub max_nodes: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_queued: 100,
            max_per_minute: 60,
            max_nodes: 2000,
        }
    }
}

/// A refusal: HTTP status and ComfyUI-shaped body.
#[derive(Debug, Clone)]
pub struct LimitRefusal {
    pub status: StatusCode,
    pub body: Box<ComfyErrorBody>,
}

/// Checks submissions against the limits. Cheap to clone.
#[derive(Clone)]
pub struct UserLimits {
    store: Store,
    recent: Arc<Mutex<HashMap<String, VecDeque<Instant>>>>,
}

impl UserLimits {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            recent: Default::default(),
        }
    }

    /// The limits in force.
    pub fn settings(&self) -> LimitSettings {
        self.store
            .setting(SETTING)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// Admits a prompt of `nodes` nodes from `lane`, which has `queued` unfinished prompts, or
    /// says which limit it hits. An admitted prompt counts toward the per-minute limit.
    pub fn admit(&self, lane: &str, nodes: usize, queued: usize) -> Result<(), Box<LimitRefusal>> {
        self.admit_at(&self.settings(), lane, nodes, queued, Instant::now())
    }

    fn admit_at(
        &self,
        l: &LimitSettings,
        lane: &str,
        nodes: usize,
        queued: usize,
        now: Instant,
    ) -> Result<(), Box<LimitRefusal>> {
        if l.max_nodes > 0 && nodes > l.max_nodes as usize {
            return Err(Box::new(refusal(
                StatusCode::BAD_REQUEST,
                "max_nodes",
                format!(
                    "This workflow has {nodes} nodes; this host allows at most {} per prompt",
                    l.max_nodes
                ),
                "Split the workflow, or ask an admin to raise the node limit.".into(),
                None,
            )));
        }
        if l.max_queued > 0 && queued >= l.max_queued as usize {
            return Err(Box::new(refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "max_queued",
                format!(
                    "You already have {queued} prompts queued or running; the limit is {} per user",
                    l.max_queued
                ),
                "Wait for some to finish, then queue again.".into(),
                Some(10),
            )));
        }
        let mut recent = self.recent.lock();
        if recent.len() > 10_000 {
            recent.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < MINUTE));
        }
        let times = recent.entry(lane.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            times.pop_front();
        }
        if l.max_per_minute > 0 && times.len() >= l.max_per_minute as usize {
            let oldest = times.front().copied().unwrap_or(now);
            let retry = MINUTE
                .saturating_sub(now.duration_since(oldest))
                .as_secs()
                .max(1);
            return Err(Box::new(refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "max_per_minute",
                format!(
                    "You submitted {} prompts in the last minute; the limit is {} per user",
                    times.len(),
                    l.max_per_minute
                ),
                format!("Try again in {retry} s."),
                Some(retry),
            )));
        }
        times.push_back(now);
        Ok(())
    }
}

fn refusal(
    status: StatusCode,
    limit: &str,
    message: String,
    details: String,
    retry_after_s: Option<u64>,
) -> LimitRefusal {
    let mut body =
        ComfyErrorBody::new("comfyhost_limit", message, details).with_extra("limit", json!(limit));
    if let Some(s) = retry_after_s {
        body = body.with_extra("retry_after_s", json!(s));
    }
    LimitRefusal {
        status,
        body: Box::new(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> UserLimits {
        UserLimits::new(Store::open_in_memory().unwrap())
    }

    #[test]
    fn each_limit_names_itself_and_when_to_retry() {
        let u = limits();
        let l = LimitSettings {
            max_queued: 3,
            max_per_minute: 2,
            max_nodes: 10,
        };
        let t0 = Instant::now();
        let e = u.admit_at(&l, "a", 11, 0, t0).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body.error.extra_info["limit"], "max_nodes");
        let e = u.admit_at(&l, "a", 1, 3, t0).unwrap_err();
        assert_eq!(e.body.error.extra_info["limit"], "max_queued");
        u.admit_at(&l, "a", 1, 0, t0).unwrap();
        u.admit_at(&l, "a", 1, 1, t0 + Duration::from_secs(20))
            .unwrap();
        let e = u
            .admit_at(&l, "a", 1, 2, t0 + Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.body.error.extra_info["limit"], "max_per_minute");
        assert_eq!(e.body.error.extra_info["retry_after_s"], 30);
        // Another user is not affected; the first one is again a minute later.
        u.admit_at(&l, "b", 1, 0, t0 + Duration::from_secs(30))
            .unwrap();
        u.admit_at(&l, "a", 1, 0, t0 + Duration::from_secs(61))
            .unwrap();
        // 0 means no limit.
        let none = LimitSettings {
            max_queued: 0,
            max_per_minute: 0,
            max_nodes: 0,
        };
        for _ in 0..100 {
            u.admit_at(&none, "c", 100_000, 100_000, t0).unwrap();
        }
    }

    #[test]
    fn stored_settings_are_read_and_defaults_otherwise() {
        let u = limits();
        assert_eq!(u.settings(), LimitSettings::default());
        u.store
            .set_setting(
                SETTING,
                &json!({"max_queued": 5, "max_per_minute": 0, "max_nodes": 7}),
            )
            .unwrap();
        assert_eq!(u.settings().max_nodes, 7);
    }
}
