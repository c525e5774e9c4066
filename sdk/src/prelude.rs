//! `use comfyhost_sdk::prelude::*;` brings in what most plugins use.

pub use crate::config::config;
pub use crate::hooks::{
    OutputMirror, OutputSync, PresetResolver, PromptTransform, QueueRouter, StatusOverlay,
};
pub use crate::secrets::secret;
pub use crate::submission::SubmissionExt;
pub use crate::types::{
    InputValue, Node, NodeInput, NodeLink, OptionEntry, PluginError, Submission, User, Workflow,
};
pub use crate::workflow::{NodeExt, WorkflowExt};
pub use crate::{debug, error, info, trace, warn};

#[cfg(test)]
mod tests {
    // The prelude must not break common author code: its `error!` macro next to thiserror's
    // `#[error]` helper attribute, and the hook traits next to the author's own types.
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum AuthorError {
        #[error("bad thing: {0}")]
        Bad(String),
    }

    #[test]
    fn prelude_coexists_with_thiserror() {
        let e = AuthorError::Bad("x".into());
        error!("{e}");
        assert_eq!(e.to_string(), "bad thing: x");
        let _ = PluginError::config("unused");
    }
}
