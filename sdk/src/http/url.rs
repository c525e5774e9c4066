//! Splitting an `http(s)` URL into what `wasi:http` wants: scheme, authority, path-with-query.

use super::HttpError;

/// Where a request goes, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// True for `https`.
    pub https: bool,
    /// `host[:port]` exactly as written (IPv6 in brackets).
    pub authority: String,
    /// Path and query, starting with `/` (fragment dropped).
    pub path_with_query: String,
}

impl Target {
    /// Parse `http://host[:port][/path][?query][#fragment]` or the `https` form.
    pub fn parse(url: &str) -> Result<Target, HttpError> {
        let bad = |reason: &str| HttpError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("missing scheme (http:// or https://)"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("only http and https are supported")),
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not allowed; send them in a header",
            ));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("whitespace in host"));
        }
        if let Some(port) = port_of(authority)
            && port.parse::<u16>().is_err()
        {
            return Err(bad("port is not a number in 1..=65535"));
        }
        let path_with_query = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Target {
            https,
            authority: authority.to_owned(),
            path_with_query,
        })
    }

    /// `scheme://host:port` with the default port filled in, the form manifests list.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let authority = self.authority.to_ascii_lowercase();
        if port_of(&authority).is_some() {
            format!("{scheme}://{authority}")
        } else {
            let port = if self.https { 443 } else { 80 };
            format!("{scheme}://{authority}:{port}")
        }
    }
}

/// The port text of an authority, if it has one.
fn port_of(authority: &str) -> Option<&str> {
    let after_host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(_, rest)| rest),
        None => authority,
    };
    after_host.rsplit_once(':').map(|(_, port)| port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> Target {
        Target::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn splits_scheme_authority_path() {
        let t = ok("https://api.runpod.ai/v2/abc/run?wait=1#frag");
        assert!(t.https);
        assert_eq!(t.authority, "api.runpod.ai");
        assert_eq!(t.path_with_query, "/v2/abc/run?wait=1");
        assert_eq!(t.origin(), "https://api.runpod.ai:443");

        let t = ok("http://127.0.0.1:8189");
        assert!(!t.https);
        assert_eq!(t.path_with_query, "/");
        assert_eq!(t.origin(), "http://127.0.0.1:8189");

        assert_eq!(ok("HTTP://h?x=1").path_with_query, "/?x=1");
        assert_eq!(
            ok("https://API.RunPod.ai/").origin(),
            "https://api.runpod.ai:443"
        );
        assert_eq!(ok("http://[::1]:8188/prompt").origin(), "http://[::1]:8188");
        assert_eq!(ok("http://[::1]/").origin(), "http://[::1]:80");
    }

    #[test]
    fn rejects_what_wasi_http_cannot_send() {
        for url in [
            "api.runpod.ai/v2",
            "ftp://files.example/x",
            "https:///path",
            "https://user:pw@host/",
            "http://host:99999/",
            "http://host:abc/",
            "http://ho st/",
        ] {
            assert!(
                matches!(Target::parse(url), Err(HttpError::InvalidUrl { .. })),
                "{url} should be rejected"
            );
        }
    }
}
