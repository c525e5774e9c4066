//! Helpers over the WIT `submission` record.

use crate::types::Submission;

/// Method helpers on [`Submission`].
pub trait SubmissionExt {
    /// A flag from `extra_data.comfyhost` (e.g. `route`).
    fn flag(&self, key: &str) -> Option<&str>;
    /// True when the authenticated submitter is a workshop admin.
    fn is_admin(&self) -> bool;
    /// The authenticated user id, when the host knows one.
    fn user_id(&self) -> Option<&str>;
}

impl SubmissionExt for Submission {
    fn flag(&self, key: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }
    fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.is_admin)
    }
    fn user_id(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{OptionEntry, User, Workflow};

    #[test]
    fn flags_and_user() {
        let s = Submission {
            prompt_id: "p1".into(),
            client_id: None,
            user: Some(User {
                id: "alice".into(),
                is_admin: false,
            }),
            workflow: Workflow { nodes: vec![] },
            flags: vec![OptionEntry {
                key: "route".into(),
                value: "serverless".into(),
            }],
        };
        assert_eq!(s.flag("route"), Some("serverless"));
        assert_eq!(s.flag("nope"), None);
        assert!(!s.is_admin());
        assert_eq!(s.user_id(), Some("alice"));
    }
}
