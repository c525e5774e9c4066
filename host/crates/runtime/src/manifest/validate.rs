//! The rules of `plugin.toml`. Each check returns a message naming the field and the rule.

use std::collections::BTreeSet;

use super::{BudgetOverride, Manifest};
use crate::grants::{HttpOrigin, Placeholder};

/// Version of the `comfyhost:plugin` WIT package this host implements. A manifest's `wit` must
/// be semver-compatible with it and not newer.
pub const HOST_WIT_VERSION: semver::Version = semver::Version::new(0, 1, 0);
/// Upper bound of `deadline_ms`.
pub const MAX_DEADLINE_MS: u64 = 60_000;
/// Upper bound of `memory_mb`.
pub const MAX_MEMORY_MB: u64 = 1024;

pub(super) fn manifest(m: &Manifest) -> Result<(), String> {
    id(&m.id)?;
    if m.name.trim().is_empty() {
        return Err("name: must not be empty".into());
    }
    wit(&m.wit)?;
    hooks(m)?;
    if let Some(w) = &m.wasm {
        relative_file("wasm", w)?;
        if !w.ends_with(".wasm") {
            return Err(format!("wasm: {w:?} must end in .wasm"));
        }
    }
    capabilities(m)?;
    budget("budget", &m.budget.defaults)?;
    for (hook, o) in &m.budget.hooks {
        if !m.hooks.contains(hook) {
            return Err(format!(
                "budget.hooks.{hook}: the plugin does not implement {hook} (hooks = {:?})",
                m.hooks.iter().map(|h| h.as_str()).collect::<Vec<_>>()
            ));
        }
        budget(&format!("budget.hooks.{hook}"), o)?;
    }
    match (&m.config.schema, &m.config.schema_inline) {
        (Some(_), Some(_)) => {
            return Err("config: set either `schema` (a file) or `schema_inline`, not both".into());
        }
        (Some(file), None) => relative_file("config.schema", file)?,
        _ => {}
    }
    Ok(())
}

/// `[a-z0-9-]`, 1..=64 characters, not starting or ending with `-`.
pub(crate) fn id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("id: {id:?} must be 1 to 64 characters long"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "id: {id:?} contains {c:?}; only lowercase letters, digits and '-' are allowed"
        ));
    }
    if id.starts_with('-') || id.ends_with('-') {
        return Err(format!("id: {id:?} must not start or end with '-'"));
    }
    Ok(())
}

fn wit(v: &semver::Version) -> Result<(), String> {
    let host = HOST_WIT_VERSION;
    let compatible = if host.major == 0 {
        v.major == 0 && v.minor == host.minor
    } else {
        v.major == host.major
    };
    if !compatible || *v > host || !v.pre.is_empty() {
        return Err(format!(
            "wit: the plugin targets comfyhost:plugin@{v}, this host implements @{host}; \
             rebuild the plugin against a compatible SDK"
        ));
    }
    Ok(())
}

fn hooks(m: &Manifest) -> Result<(), String> {
    match m.hooks.as_slice() {
        [] => Err("hooks: must name the hook this plugin implements".into()),
        [_] => Ok(()),
        more => Err(format!(
            "hooks: a component implements exactly one hook world, found {} ({})",
            more.len(),
            more.iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn capabilities(m: &Manifest) -> Result<(), String> {
    let caps = &m.capabilities;
    let mut seen = BTreeSet::new();
    for (i, origin) in caps.http.iter().enumerate() {
        let parsed =
            HttpOrigin::parse(origin).map_err(|e| format!("capabilities.http[{i}]: {e}"))?;
        if !seen.insert(parsed) {
            return Err(format!(
                "capabilities.http[{i}]: {origin:?} is listed twice"
            ));
        }
    }
    let mut guests = BTreeSet::new();
    for (i, dir) in caps.dirs.iter().enumerate() {
        let field = format!("capabilities.dirs[{i}]");
        if Placeholder::parse(&dir.path).is_none() {
            if dir.path.starts_with('{') {
                return Err(format!(
                    "{field}.path: unknown placeholder {:?}; use one of {}",
                    dir.path,
                    Placeholder::ALL
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            absolute_clean(&format!("{field}.path"), &dir.path)?;
        }
        absolute_clean(&format!("{field}.guest"), &dir.guest)?;
        if dir.guest == "/" {
            return Err(format!("{field}.guest: must not be the guest root \"/\""));
        }
        if !guests.insert(dir.guest.trim_end_matches('/')) {
            return Err(format!("{field}.guest: {:?} is used twice", dir.guest));
        }
    }
    let mut names = BTreeSet::new();
    for (i, name) in caps.secrets.iter().enumerate() {
        secret_name(name).map_err(|e| format!("capabilities.secrets[{i}]: {e}"))?;
        if !names.insert(name) {
            return Err(format!(
                "capabilities.secrets[{i}]: {name:?} is listed twice"
            ));
        }
    }
    let declared: BTreeSet<&str> = caps.keys().collect();
    for (i, key) in caps.optional.iter().enumerate() {
        if !declared.contains(key.as_str()) {
            return Err(format!(
                "capabilities.optional[{i}]: {key:?} is not a declared http origin, dir guest path or secret"
            ));
        }
    }
    for (key, reason) in &caps.reasons {
        if !declared.contains(key.as_str()) {
            return Err(format!(
                "capabilities.reasons.{key}: not a declared http origin, dir guest path or secret"
            ));
        }
        if reason.trim().is_empty() || reason.len() > 500 {
            return Err(format!(
                "capabilities.reasons.{key}: must be 1..=500 characters"
            ));
        }
    }
    Ok(())
}

/// `[A-Z0-9_]`, 1..=64: the suffix of the `COMFYHOST_SECRET_<NAME>` environment variable.
pub(crate) fn secret_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "{name:?} must be 1 to 64 characters of A-Z, 0-9 and '_'"
        ));
    }
    Ok(())
}

fn absolute_clean(field: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{field}: {path:?} must be an absolute path"));
    }
    if path.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("{field}: {path:?} must not contain '.' or '..'"));
    }
    if path.contains('\0') {
        return Err(format!("{field}: must not contain NUL"));
    }
    Ok(())
}

fn relative_file(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
        || name == "."
        || name == ".."
    {
        return Err(format!(
            "{field}: {name:?} must be a plain file name next to plugin.toml"
        ));
    }
    Ok(())
}

fn budget(field: &str, o: &BudgetOverride) -> Result<(), String> {
    if let Some(ms) = o.deadline_ms
        && !(1..=MAX_DEADLINE_MS).contains(&ms)
    {
        return Err(format!(
            "{field}.deadline_ms: {ms} is out of range 1..={MAX_DEADLINE_MS}"
        ));
    }
    if let Some(mb) = o.memory_mb
        && !(1..=MAX_MEMORY_MB).contains(&mb)
    {
        return Err(format!(
            "{field}.memory_mb: {mb} is out of range 1..={MAX_MEMORY_MB}"
        ));
    }
    Ok(())
}
