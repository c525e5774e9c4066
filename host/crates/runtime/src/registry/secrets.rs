//! Where secret values come from. The registry asks only for names the manifest declares and an
//! admin granted, when it (re)loads a plugin; values are never persisted by the runtime.

use std::collections::HashMap;

/// A source of secret values by name.
pub trait SecretSource: Send + Sync + 'static {
    /// The value of `name`, if the host has one.
    fn get(&self, name: &str) -> Option<String>;
}

/// Reads `COMFYHOST_SECRET_<NAME>` environment variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvSecrets;

impl EnvSecrets {
    /// Environment variable holding secret `name`.
    pub fn var_name(name: &str) -> String {
        format!("COMFYHOST_SECRET_{name}")
    }
}

impl SecretSource for EnvSecrets {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(Self::var_name(name)).ok()
    }
}

/// Secrets from a map (a secrets file the host parsed, or tests).
#[derive(Debug, Clone, Default)]
pub struct MapSecrets(pub HashMap<String, String>);

impl SecretSource for MapSecrets {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}
