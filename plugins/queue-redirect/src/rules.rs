//! The routing rules, free of host calls so `cargo test` checks them natively.

use comfyhost_sdk::hooks::queue_router::{BackendKind, BackendStatus, RouteDecision};
use comfyhost_sdk::prelude::*;
use serde::Deserialize;

/// Plugin configuration (mirrors `config.schema.json`; the host applies its defaults).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default = "default_route")]
    pub default_route: String,
    #[serde(default = "default_allowed")]
    pub allowed_routes: Vec<String>,
    #[serde(default = "default_reject")]
    pub reject_message: String,
}

fn default_route() -> String {
    "local".into()
}
fn default_allowed() -> Vec<String> {
    ["local", "pool", "backend:*", "serverless:*", "reject"]
        .map(String::from)
        .to_vec()
}
fn default_reject() -> String {
    "This server cannot run your prompt right now: no allowed route is available.".into()
}

/// One rule: every condition given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub users: Option<Vec<String>>,
    #[serde(default)]
    pub admins: Option<bool>,
    #[serde(default)]
    pub min_nodes: Option<usize>,
    #[serde(default)]
    pub max_nodes: Option<usize>,
    #[serde(default)]
    pub node_types: Option<Vec<String>>,
    #[serde(default)]
    pub flag: Option<String>,
    #[serde(default)]
    pub equals: Option<String>,
    pub route: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// What the rules look at, taken from the submission once.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub user: Option<String>,
    pub is_admin: bool,
    pub nodes: usize,
    pub node_types: Vec<String>,
    pub flags: Vec<(String, String)>,
}

impl Facts {
    pub fn of(s: &Submission) -> Self {
        Self {
            user: s.user_id().map(str::to_string),
            is_admin: s.is_admin(),
            nodes: s.workflow.nodes.len(),
            node_types: s
                .workflow
                .nodes
                .iter()
                .map(|n| n.class_type.clone())
                .collect(),
            flags: s
                .flags
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect(),
        }
    }
}

impl Rule {
    fn label(&self, i: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("rule {}", i + 1))
    }

    /// Whether every condition holds.
    pub fn matches(&self, f: &Facts) -> bool {
        let user_ok = self
            .users
            .as_ref()
            .is_none_or(|us| f.user.as_ref().is_some_and(|u| us.contains(u)));
        let admin_ok = self.admins.is_none_or(|a| a == f.is_admin);
        let min_ok = self.min_nodes.is_none_or(|m| f.nodes >= m);
        let max_ok = self.max_nodes.is_none_or(|m| f.nodes <= m);
        let types_ok = self
            .node_types
            .as_ref()
            .is_none_or(|ts| f.node_types.iter().any(|t| ts.contains(t)));
        let flag_ok = self.flag.as_ref().is_none_or(|key| {
            f.flags
                .iter()
                .any(|(k, v)| k == key && self.equals.as_ref().is_none_or(|want| want == v))
        });
        user_ok && admin_ok && min_ok && max_ok && types_ok && flag_ok
    }
}

fn allowed(config: &Config, route: &str) -> bool {
    config.allowed_routes.iter().any(|a| {
        a == route
            || a.strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with(':') && route.starts_with(prefix))
    })
}

/// A route text resolved against live backends; `None` when it is not available now.
fn resolve(
    route: &str,
    message: Option<&str>,
    config: &Config,
    backends: &[BackendStatus],
) -> Option<RouteDecision> {
    let healthy = |kind: BackendKind, name: &str| {
        backends
            .iter()
            .any(|b| b.kind == kind && b.name == name && b.healthy)
    };
    match route {
        "local" => Some(RouteDecision::Local),
        "reject" => Some(RouteDecision::Reject(
            message.unwrap_or(&config.reject_message).to_string(),
        )),
        "pool" => backends
            .iter()
            .filter(|b| b.kind == BackendKind::Comfyui && b.healthy)
            .filter(|b| allowed(config, &format!("backend:{}", b.name)))
            .min_by_key(|b| b.queue_pending + b.queue_running)
            .map(|b| RouteDecision::Backend(b.name.clone())),
        r => {
            if let Some(name) = r.strip_prefix("backend:") {
                healthy(BackendKind::Comfyui, name).then(|| RouteDecision::Backend(name.into()))
            } else if let Some(name) = r.strip_prefix("serverless:") {
                healthy(BackendKind::Serverless, name)
                    .then(|| RouteDecision::Serverless(name.into()))
            } else {
                None
            }
        }
    }
}

/// The decision and a short reason for the log.
pub fn decide(config: &Config, f: &Facts, backends: &[BackendStatus]) -> (RouteDecision, String) {
    let mut skipped = Vec::new();
    for (i, rule) in config.rules.iter().enumerate() {
        if !rule.matches(f) {
            continue;
        }
        let label = rule.label(i);
        if !allowed(config, &rule.route) {
            skipped.push(format!("{label}: route {} not allowed", rule.route));
            continue;
        }
        match resolve(&rule.route, rule.message.as_deref(), config, backends) {
            Some(d) => return (d, format!("{label} matched")),
            None => skipped.push(format!("{label}: {} unavailable", rule.route)),
        }
    }
    if allowed(config, &config.default_route)
        && let Some(d) = resolve(&config.default_route, None, config, backends)
    {
        return (d, format!("default route; {}", skipped.join(", ")));
    }
    skipped.push(format!(
        "default {} unavailable or not allowed",
        config.default_route
    ));
    (
        RouteDecision::Reject(config.reject_message.clone()),
        format!("fail-closed: {}", skipped.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Config {
        comfyhost_sdk::config::parse(json).unwrap()
    }

    fn backend(name: &str, kind: BackendKind, healthy: bool, pending: u32) -> BackendStatus {
        BackendStatus {
            name: name.into(),
            kind,
            healthy,
            queue_pending: pending,
            queue_running: 0,
        }
    }

    fn pool() -> Vec<BackendStatus> {
        vec![
            backend("a", BackendKind::Comfyui, true, 3),
            backend("b", BackendKind::Comfyui, true, 1),
            backend("c", BackendKind::Comfyui, false, 0),
            backend("pod", BackendKind::Serverless, true, 0),
        ]
    }

    fn facts(user: Option<&str>, nodes: usize) -> Facts {
        Facts {
            user: user.map(String::from),
            nodes,
            node_types: vec!["KSampler".into(); nodes],
            ..Default::default()
        }
    }

    #[test]
    fn pool_picks_the_least_busy_healthy_backend() {
        let c = cfg(r#"{"rules": [{"route": "pool"}]}"#);
        let (d, _) = decide(&c, &facts(None, 3), &pool());
        assert_eq!(d, RouteDecision::Backend("b".into()));
    }

    #[test]
    fn rules_by_user_size_type_and_flag() {
        let c = cfg(r#"{"rules": [
            {"users": ["alice"], "route": "backend:a"},
            {"min_nodes": 50, "route": "serverless:pod"},
            {"node_types": ["UpscaleModelLoader"], "route": "pool"},
            {"flag": "route", "equals": "remote", "route": "pool"}
        ]}"#);
        assert_eq!(
            decide(&c, &facts(Some("alice"), 1), &pool()).0,
            RouteDecision::Backend("a".into())
        );
        assert_eq!(
            decide(&c, &facts(Some("bob"), 60), &pool()).0,
            RouteDecision::Serverless("pod".into())
        );
        let mut up = facts(None, 2);
        up.node_types.push("UpscaleModelLoader".into());
        assert_eq!(
            decide(&c, &up, &pool()).0,
            RouteDecision::Backend("b".into())
        );
        let mut opt = facts(None, 2);
        opt.flags.push(("route".into(), "remote".into()));
        assert_eq!(
            decide(&c, &opt, &pool()).0,
            RouteDecision::Backend("b".into())
        );
        opt.flags[0].1 = "local".into();
        assert_eq!(decide(&c, &opt, &pool()).0, RouteDecision::Local);
    }

    #[test]
    fn unhealthy_targets_fall_through_to_later_rules() {
        let c = cfg(r#"{"rules": [{"route": "backend:c"}, {"route": "serverless:pod"}]}"#);
        assert_eq!(
            decide(&c, &facts(None, 1), &pool()).0,
            RouteDecision::Serverless("pod".into())
        );
    }

    #[test]
    fn fail_closed_when_nothing_allowed_is_available() {
        let c = cfg(
            r#"{"rules": [{"route": "pool"}], "default_route": "pool", "allowed_routes": ["pool", "backend:*"]}"#,
        );
        let down = vec![backend("a", BackendKind::Comfyui, false, 0)];
        let (d, why) = decide(&c, &facts(None, 1), &down);
        assert!(matches!(d, RouteDecision::Reject(_)), "{d:?}");
        assert!(why.contains("fail-closed"), "{why}");
        // Local is not allowed here, even as a default.
        let c = cfg(r#"{"default_route": "local", "allowed_routes": ["pool"]}"#);
        assert!(matches!(
            decide(&c, &facts(None, 1), &pool()).0,
            RouteDecision::Reject(_)
        ));
    }

    #[test]
    fn reject_rule_uses_its_message_and_admin_condition() {
        let c = cfg(
            r#"{"rules": [{"admins": false, "min_nodes": 10, "route": "reject", "message": "Too big for the workshop"}]}"#,
        );
        let (d, _) = decide(&c, &facts(Some("s1"), 12), &pool());
        assert_eq!(d, RouteDecision::Reject("Too big for the workshop".into()));
        let mut admin = facts(Some("root"), 12);
        admin.is_admin = true;
        assert_eq!(decide(&c, &admin, &pool()).0, RouteDecision::Local);
    }

    #[test]
    fn pool_respects_allowed_backends() {
        let c = cfg(r#"{"rules": [{"route": "pool"}], "allowed_routes": ["pool", "backend:a"]}"#);
        assert_eq!(
            decide(&c, &facts(None, 1), &pool()).0,
            RouteDecision::Backend("a".into())
        );
    }
}
