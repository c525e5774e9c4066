//! Secret capability: a plugin reads only secrets its effective capabilities name.

use std::collections::HashMap;

use crate::grants::EffectiveCaps;

/// Value of secret `name` when it is granted to the plugin and configured on the host.
///
/// `values` is normally already filtered to granted names; the grant is checked again here so
/// a caller that passes the whole host secret map cannot leak other secrets.
pub fn lookup(
    caps: &EffectiveCaps,
    values: &HashMap<String, String>,
    name: &str,
) -> Option<String> {
    if !caps.secrets.iter().any(|granted| granted == name) {
        return None;
    }
    values.get(name).cloned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_names_are_visible() {
        let caps = EffectiveCaps {
            secrets: vec!["A".into()],
            ..Default::default()
        };
        let values = HashMap::from([("A".to_string(), "1".to_string()), ("B".into(), "2".into())]);
        assert_eq!(lookup(&caps, &values, "A").as_deref(), Some("1"));
        assert_eq!(lookup(&caps, &values, "B"), None);
        assert_eq!(lookup(&caps, &values, "C"), None);
    }
}
