//! Raw (never decoded) path handling: mount prefix, `Location` rewriting, and route matching
//! for the interception points.

use std::borrow::Cow;

use http::uri::Authority;
use percent_encoding::percent_decode_str;

/// Where a request's raw path-and-query stands relative to the mount prefix.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PrefixMatch<'a> {
    /// Under the prefix: the raw path-and-query ComfyUI should see (always starts with `/`).
    Inside(Cow<'a, str>),
    /// Exactly the prefix with no trailing slash (`/comfy` or `/comfy?x`): the rest (`""` or
    /// `"?x"`). ComfyUI's frontend derives its API base from `location.pathname`, so a GET
    /// here is redirected to `/comfy/`.
    Bare(&'a str),
    /// Not under the prefix.
    Outside,
}

/// Strip `prefix` from the raw path-and-query `pq`, byte for byte.
pub(crate) fn strip_prefix<'a>(prefix: Option<&str>, pq: &'a str) -> PrefixMatch<'a> {
    let Some(prefix) = prefix else {
        return if pq.starts_with('/') {
            PrefixMatch::Inside(Cow::Borrowed(pq))
        } else {
            PrefixMatch::Inside(Cow::Owned(format!("/{pq}")))
        };
    };
    match pq.strip_prefix(prefix) {
        Some(rest) if rest.starts_with('/') => PrefixMatch::Inside(Cow::Borrowed(rest)),
        Some(rest) if rest.is_empty() || rest.starts_with('?') => PrefixMatch::Bare(rest),
        _ => PrefixMatch::Outside,
    }
}

/// Rewrite a `Location` header from ComfyUI so the browser stays on the host (and under the
/// prefix). Returns `None` when the value needs no change.
pub(crate) fn rewrite_location(
    location: &str,
    prefix: Option<&str>,
    upstream: &Authority,
) -> Option<String> {
    let prefix = prefix.unwrap_or("");
    // Absolute URL pointing at ComfyUI itself -> path on the host.
    for scheme in ["http://", "https://", "//"] {
        if let Some(after) = strip_prefix_ignore_case(location, scheme) {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            let (auth, rest) = after.split_at(end);
            if !auth.eq_ignore_ascii_case(upstream.as_str()) {
                return None;
            }
            return Some(match rest.chars().next() {
                Some('/') => format!("{prefix}{rest}"),
                _ => format!("{prefix}/{rest}"),
            });
        }
    }
    if location.starts_with('/') && !prefix.is_empty() {
        return Some(format!("{prefix}{location}"));
    }
    None
}

fn strip_prefix_ignore_case<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    let head = s.get(..p.len())?;
    head.eq_ignore_ascii_case(p).then(|| &s[p.len()..])
}

/// The path (without query) as ComfyUI's router could see it, for matching only: escapes
/// decoded, repeated slashes collapsed, trailing slash dropped. Deliberately broader than
/// aiohttp's matching, so an interception point cannot be bypassed with `%70rompt` or `//`.
pub(crate) fn route_key(pq: &str) -> String {
    let path = pq.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    let mut out = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

/// `POST /prompt` and its `/api` alias.
pub(crate) fn is_prompt_route(pq: &str) -> bool {
    matches!(route_key(pq).as_str(), "/prompt" | "/api/prompt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_prefix_keeps_raw_bytes() {
        let pq = "/api/userdata/workflows%2Fa.json?x=%20y";
        assert_eq!(
            strip_prefix(None, pq),
            PrefixMatch::Inside(Cow::Borrowed(pq))
        );
    }

    #[test]
    fn prefix_is_stripped_raw() {
        let p = Some("/comfy");
        assert_eq!(
            strip_prefix(p, "/comfy/api/userdata/a%2Fb.json?q=1"),
            PrefixMatch::Inside(Cow::Borrowed("/api/userdata/a%2Fb.json?q=1"))
        );
        assert_eq!(
            strip_prefix(p, "/comfy/"),
            PrefixMatch::Inside(Cow::Borrowed("/"))
        );
        assert_eq!(strip_prefix(p, "/comfy"), PrefixMatch::Bare(""));
        assert_eq!(strip_prefix(p, "/comfy?a=b"), PrefixMatch::Bare("?a=b"));
        assert_eq!(strip_prefix(p, "/comfyx/a"), PrefixMatch::Outside);
        assert_eq!(strip_prefix(p, "/other"), PrefixMatch::Outside);
        assert_eq!(strip_prefix(p, "/Comfy/a"), PrefixMatch::Outside);
    }

    #[test]
    fn location_rewrites() {
        let up: Authority = "127.0.0.1:8188".parse().unwrap();
        let p = Some("/comfy");
        assert_eq!(
            rewrite_location("/x?y", p, &up).as_deref(),
            Some("/comfy/x?y")
        );
        assert_eq!(rewrite_location("/x", None, &up), None);
        assert_eq!(
            rewrite_location("http://127.0.0.1:8188/a/b", p, &up).as_deref(),
            Some("/comfy/a/b")
        );
        assert_eq!(
            rewrite_location("HTTP://127.0.0.1:8188", None, &up).as_deref(),
            Some("/")
        );
        assert_eq!(
            rewrite_location("http://127.0.0.1:8188?q", p, &up).as_deref(),
            Some("/comfy/?q")
        );
        assert_eq!(
            rewrite_location("//127.0.0.1:8188/z", None, &up).as_deref(),
            Some("/z")
        );
        assert_eq!(rewrite_location("https://example.com/a", p, &up), None);
        assert_eq!(rewrite_location("http://127.0.0.1:81889/a", p, &up), None);
        assert_eq!(rewrite_location("relative/x", p, &up), None);
    }

    #[test]
    fn prompt_route_matching_cannot_be_dodged() {
        for yes in [
            "/prompt",
            "/api/prompt",
            "/api/prompt?x=1",
            "/%70rompt",
            "//api//prompt",
            "/prompt/",
        ] {
            assert!(is_prompt_route(yes), "{yes}");
        }
        for no in [
            "/prompts",
            "/api/prompt/x",
            "/history",
            "/api/api/prompt",
            "/",
        ] {
            assert!(!is_prompt_route(no), "{no}");
        }
    }
}
