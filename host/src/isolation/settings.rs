//! The workshop settings an admin changes through `GET/PUT /comfyhost/api/workshop`:
//! whether anonymous visitors must sign in, and whether users are isolated from each other.
//! Stored in the store's `settings` table under [`SETTINGS_KEY`]; no migration needed.

use comfyhost_store::Store;
use serde::{Deserialize, Serialize};

/// Key of the settings row.
pub const SETTINGS_KEY: &str = "workshop";

/// What an admin set. `None` means "the default".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkshopSettings {
    /// Anonymous browsers are sent to the sign-in page and anonymous API use is refused.
    /// Default: on as soon as any workshop user exists.
    #[serde(default)]
    pub sign_in_required: Option<bool>,
    /// Each user sees and controls only their own prompts, history and outputs. Default: on.
    #[serde(default)]
    pub isolation: Option<bool>,
}

/// The settings in effect (defaults applied).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Effective {
    pub sign_in_required: bool,
    pub isolation: bool,
}

impl WorkshopSettings {
    /// The stored settings (defaults when none or unreadable).
    pub fn load(store: &Store) -> Self {
        match store.setting(SETTINGS_KEY) {
            Ok(Some(v)) => serde_json::from_value(v).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored workshop settings unreadable; using defaults");
                Self::default()
            }),
            Ok(None) => Self::default(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the workshop settings; using defaults");
                Self::default()
            }
        }
    }

    pub fn save(&self, store: &Store) -> Result<(), comfyhost_store::StoreError> {
        store.set_setting(
            SETTINGS_KEY,
            &serde_json::to_value(self).unwrap_or_default(),
        )
    }

    /// Defaults applied; `users_exist` decides the sign-in default.
    pub fn effective(&self, users_exist: bool) -> Effective {
        Effective {
            sign_in_required: self.sign_in_required.unwrap_or(users_exist),
            isolation: self.isolation.unwrap_or(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_whether_users_exist_and_stored_values_win() {
        let store = Store::open_in_memory().unwrap();
        let s = WorkshopSettings::load(&store);
        assert_eq!(
            s.effective(false),
            Effective {
                sign_in_required: false,
                isolation: true
            }
        );
        assert!(s.effective(true).sign_in_required);
        let set = WorkshopSettings {
            sign_in_required: Some(false),
            isolation: Some(false),
        };
        set.save(&store).unwrap();
        let back = WorkshopSettings::load(&store);
        assert_eq!(back, set);
        assert_eq!(
            back.effective(true),
            Effective {
                sign_in_required: false,
                isolation: false
            }
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<WorkshopSettings>(r#"{"isolaton": false}"#).is_err());
    }
}
