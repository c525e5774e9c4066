//! The plugin's configuration, typed.
//!
//! The host validates the admin's JSON against the manifest's `config.schema.json` and applies the
//! schema's defaults before the plugin sees it, so deserializing into a struct that mirrors the
//! schema only fails when the two disagree.

use serde::de::DeserializeOwned;

use crate::types::PluginError;

/// Deserialize the plugin's configuration into `T`.
///
/// Errors are [`PluginError::Config`], so `?` in a hook turns them into the hook's error.
pub fn config<T: DeserializeOwned>() -> Result<T, PluginError> {
    match crate::hostcall::config() {
        Some(json) => parse(&json),
        None => Err(PluginError::Config(crate::hostcall::NOT_IN_SANDBOX.into())),
    }
}

/// Deserialize configuration JSON into `T`; what [`config`] does with the host's text. Use it in
/// native tests to feed the same JSON an admin would write. Empty text counts as `{}`.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, PluginError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| {
        PluginError::Config(format!(
            "plugin configuration does not match the plugin's config type: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Cfg {
        max_nodes: u32,
        #[serde(default)]
        note: Option<String>,
    }

    #[test]
    fn parses_into_the_authors_type() {
        let c: Cfg = parse(r#"{"max_nodes": 50}"#).unwrap();
        assert_eq!(
            c,
            Cfg {
                max_nodes: 50,
                note: None
            }
        );
    }

    #[test]
    fn mismatch_is_a_config_error_naming_the_field() {
        let err = parse::<Cfg>(r#"{"max_nodes": "many"}"#).unwrap_err();
        assert!(
            matches!(&err, PluginError::Config(m) if m.contains("max_nodes") || m.contains("invalid type")),
            "{err:?}"
        );
        let err = parse::<Cfg>("{").unwrap_err();
        assert!(matches!(err, PluginError::Config(_)));
    }

    #[test]
    fn empty_text_is_an_empty_object() {
        #[derive(Deserialize, Debug, Default, PartialEq)]
        #[serde(default)]
        struct Defaults {
            limit: u32,
        }
        assert_eq!(parse::<Defaults>("").unwrap(), Defaults::default());
        assert!(
            parse::<Cfg>("  ").is_err(),
            "required fields still required"
        );
    }

    #[test]
    fn native_build_reports_missing_host() {
        let err = config::<Cfg>().unwrap_err();
        assert!(matches!(err, PluginError::Config(m) if m.contains("native build")));
    }
}
