//! Destination path templates: `{user}/{date}/{filename}` and friends.
//!
//! Every substituted value is sanitised so it can never climb out of its place: separators
//! inside a value are replaced (`../bob` becomes the single segment `.._bob`), and values that
//! are only dots become `_`. This is what keeps user A's files out of user B's prefix.

/// User name used for jobs without an authenticated user.
pub const ANONYMOUS: &str = "anonymous";

/// Values a template may use.
#[derive(Debug, Clone)]
pub struct Vars<'a> {
    /// Authenticated user id, or `None` (rendered as [`ANONYMOUS`]).
    pub user: Option<&'a str>,
    /// Modification time of the file, ms since the epoch (gives `{date}`).
    pub modified_ms: u64,
    pub prompt_id: Option<&'a str>,
    /// ComfyUI subfolder (may be empty or contain `/`).
    pub subfolder: &'a str,
    pub filename: &'a str,
    /// `image`, `video`, `audio`, `other`.
    pub kind: &'a str,
}

/// Why a template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    Unclosed,
    Unknown(String),
    Empty,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::Unclosed => write!(f, "template has an unclosed `{{`"),
            TemplateError::Unknown(v) => write!(
                f,
                "template uses unknown placeholder {{{v}}} (known: user, date, prompt_id, subfolder, filename, kind)"
            ),
            TemplateError::Empty => write!(f, "template renders to an empty path"),
        }
    }
}

/// Placeholders a template uses (for validation, e.g. "must contain {user}").
pub fn placeholders(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(TemplateError::Unclosed)?;
        let name = &after[..close];
        if !matches!(
            name,
            "user" | "date" | "prompt_id" | "subfolder" | "filename" | "kind"
        ) {
            return Err(TemplateError::Unknown(name.to_owned()));
        }
        out.push(name.to_owned());
        rest = &after[close + 1..];
    }
    Ok(out)
}

/// Renders `template` into a relative `/`-separated path with no empty, `.` or `..` segments.
pub fn render(template: &str, vars: &Vars<'_>) -> Result<String, TemplateError> {
    placeholders(template)?;
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(TemplateError::Unclosed)?;
        let value = match &after[..close] {
            "user" => segment(vars.user.unwrap_or(ANONYMOUS)),
            "date" => utc_date(vars.modified_ms),
            "prompt_id" => segment(vars.prompt_id.unwrap_or("unknown")),
            "subfolder" => vars
                .subfolder
                .split(['/', '\\'])
                .filter(|s| !s.is_empty())
                .map(segment)
                .collect::<Vec<_>>()
                .join("/"),
            "filename" => segment(vars.filename),
            "kind" => segment(vars.kind),
            other => return Err(TemplateError::Unknown(other.to_owned())),
        };
        out.push_str(&value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    let parts: Vec<&str> = out
        .split('/')
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .collect();
    if parts.is_empty() {
        return Err(TemplateError::Empty);
    }
    Ok(parts.join("/"))
}

/// One path segment: keeps `[A-Za-z0-9._@+=-]`, replaces everything else (separators, spaces,
/// control characters) with `_`; `.`/`..`/empty become `_`.
pub fn segment(value: &str) -> String {
    let s: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+' | '=') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "_".to_owned()
    } else {
        s
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time in ms.
pub fn utc_date(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / 86_400_000) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYYMMDDTHHMMSSZ` (UTC) of a Unix time in ms: the SigV4 `x-amz-date`.
pub fn amz_date(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars<'a>(user: Option<&'a str>, subfolder: &'a str, filename: &'a str) -> Vars<'a> {
        Vars {
            user,
            modified_ms: 1_763_856_000_000, // 2025-11-23T00:00:00Z
            prompt_id: Some("p-1"),
            subfolder,
            filename,
            kind: "image",
        }
    }

    #[test]
    fn default_layout_per_user_and_day() {
        let t = "{user}/{date}/{filename}";
        assert_eq!(
            render(t, &vars(Some("alice"), "", "ComfyUI_00001_.png")).unwrap(),
            "alice/2025-11-23/ComfyUI_00001_.png"
        );
        assert_eq!(
            render(t, &vars(None, "", "a.png")).unwrap(),
            "anonymous/2025-11-23/a.png"
        );
    }

    #[test]
    fn hostile_values_cannot_escape_their_segment() {
        let t = "{user}/{subfolder}/{filename}";
        let r = render(t, &vars(Some("../bob"), "../../etc", "../x.png")).unwrap();
        assert_eq!(r, ".._bob/_/_/etc/.._x.png");
        assert!(!r.split('/').any(|s| s == ".."));
        let r = render(t, &vars(Some(".."), "a/./b", "f.png")).unwrap();
        assert_eq!(r, "_/a/_/b/f.png");
        // Two different users never share a first segment.
        let a = render(t, &vars(Some("a/b"), "", "f")).unwrap();
        let b = render(t, &vars(Some("a"), "b", "f")).unwrap();
        assert_ne!(a.split('/').next(), b.split('/').next());
    }

    #[test]
    fn subfolders_prompt_and_kind() {
        let r = render(
            "{kind}/{prompt_id}/{subfolder}/{filename}",
            &vars(None, "vid/x", "v.mp4"),
        )
        .unwrap();
        assert_eq!(r, "image/p-1/vid/x/v.mp4");
        // Empty subfolder leaves no empty segment.
        assert_eq!(
            render("{subfolder}/{filename}", &vars(None, "", "f")).unwrap(),
            "f"
        );
    }

    #[test]
    fn bad_templates_are_errors() {
        assert_eq!(
            render("{user", &vars(None, "", "f")),
            Err(TemplateError::Unclosed)
        );
        assert!(matches!(
            render("{home}/{filename}", &vars(None, "", "f")),
            Err(TemplateError::Unknown(v)) if v == "home"
        ));
        assert_eq!(
            render("//", &vars(None, "", "f")),
            Err(TemplateError::Empty)
        );
        assert_eq!(
            placeholders("{user}/{date}/{filename}").unwrap(),
            ["user", "date", "filename"]
        );
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(amz_date(1_440_938_160_000), "20150830T123600Z");
        assert_eq!(amz_date(1_369_353_600_000), "20130524T000000Z");
    }
}
