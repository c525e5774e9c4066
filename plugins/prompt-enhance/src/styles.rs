//! Static style templates: `{prompt}` is replaced by the user's text.

use std::collections::BTreeMap;

/// Built-in styles.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "detailed",
        "{prompt}, highly detailed, intricate details, sharp focus, high resolution, professional quality",
    ),
    (
        "cinematic",
        "cinematic film still of {prompt}, dramatic lighting, shallow depth of field, anamorphic lens, film grain, color graded",
    ),
    (
        "artistic",
        "{prompt}, fine art painting, expressive brushstrokes, rich vibrant colors, masterful composition",
    ),
    (
        "minimal",
        "minimalist {prompt}, clean composition, simple background, negative space, soft muted palette",
    ),
];

/// The template of `style`: custom ones first (they may override a built-in), then built-ins.
pub fn template<'a>(custom: &'a BTreeMap<String, String>, style: &str) -> Option<&'a str> {
    custom
        .get(style)
        .map(String::as_str)
        .or_else(|| BUILTIN.iter().find(|(n, _)| *n == style).map(|(_, t)| *t))
}

/// Apply a template. Already-styled text (it contains the template's fixed text around
/// `{prompt}`) is returned unchanged so a re-submitted workflow is not styled twice.
pub fn apply(template: &str, prompt: &str) -> String {
    let prompt = prompt.trim();
    let (before, after) = template.split_once("{prompt}").unwrap_or((template, ""));
    let (before, after) = (before.trim(), after.trim());
    let has = |part: &str| {
        part.is_empty()
            || prompt.contains(part.trim_matches(|c: char| c == ',' || c.is_whitespace()))
    };
    if !(before.is_empty() && after.is_empty()) && has(before) && has(after) {
        return prompt.to_owned();
    }
    template.replace("{prompt}", prompt)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn builtins_wrap_the_prompt() {
        let custom = BTreeMap::new();
        let t = template(&custom, "cinematic").unwrap();
        let out = apply(t, "  a red fox in snow ");
        assert!(
            out.starts_with("cinematic film still of a red fox in snow,"),
            "{out}"
        );
        assert!(template(&custom, "baroque").is_none());
    }

    #[test]
    fn custom_styles_override_and_extend() {
        let mut custom = BTreeMap::new();
        custom.insert(
            "anime".to_string(),
            "anime key visual, {prompt}, cel shading".to_string(),
        );
        custom.insert("minimal".to_string(), "{prompt}, flat".to_string());
        assert_eq!(
            apply(template(&custom, "anime").unwrap(), "a cat"),
            "anime key visual, a cat, cel shading"
        );
        assert_eq!(
            apply(template(&custom, "minimal").unwrap(), "a cat"),
            "a cat, flat"
        );
    }

    #[test]
    fn styling_twice_is_a_no_op() {
        let custom = BTreeMap::new();
        for (name, _) in BUILTIN {
            let t = template(&custom, name).unwrap();
            let once = apply(t, "a lighthouse");
            assert_eq!(apply(t, &once), once, "{name}");
        }
    }
}
