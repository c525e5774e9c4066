//! Secrets the manifest declares under `[capabilities] secrets` and an admin granted.

use crate::types::PluginError;

/// The value of secret `name`, or [`PluginError::Config`] naming what is missing: the manifest
/// must list it and an admin must grant it.
pub fn secret(name: &str) -> Result<String, PluginError> {
    match crate::hostcall::secret(name) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(PluginError::Config(format!(
            "secret `{name}` is not available: declare it in plugin.toml [capabilities] secrets and have an admin grant it"
        ))),
        Err(why) => Err(PluginError::Config(format!("secret `{name}`: {why}"))),
    }
}

/// The value of secret `name`, or `None` when it is not granted (or in a native build).
pub fn optional_secret(name: &str) -> Option<String> {
    crate::hostcall::secret(name).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_build_has_no_secrets() {
        assert!(matches!(secret("API_KEY"), Err(PluginError::Config(m)) if m.contains("API_KEY")));
        assert_eq!(optional_secret("API_KEY"), None);
    }
}
