//! Constructors for the WIT `plugin-error`, the error every hook returns.

use crate::types::PluginError;

impl PluginError {
    /// The input (workflow, event, file) is not something this plugin can handle.
    pub fn invalid_input(msg: impl Into<String>) -> Self {
        PluginError::InvalidInput(msg.into())
    }

    /// The plugin's configuration is unusable.
    pub fn config(msg: impl Into<String>) -> Self {
        PluginError::Config(msg.into())
    }

    /// An upstream service the plugin called failed.
    pub fn upstream(msg: impl Into<String>) -> Self {
        PluginError::Upstream(msg.into())
    }

    /// Any other failure inside the plugin.
    pub fn internal(msg: impl Into<String>) -> Self {
        PluginError::Internal(msg.into())
    }

    /// The message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            PluginError::InvalidInput(m)
            | PluginError::Config(m)
            | PluginError::Upstream(m)
            | PluginError::Internal(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_pick_the_kind() {
        assert_eq!(
            PluginError::config("bad"),
            PluginError::Config("bad".into())
        );
        assert_eq!(PluginError::upstream(String::from("x")).message(), "x");
        assert!(matches!(
            PluginError::invalid_input("y"),
            PluginError::InvalidInput(_)
        ));
        assert!(matches!(
            PluginError::internal("z"),
            PluginError::Internal(_)
        ));
    }
}
