//! Where model downloads may come from: an allow-list of origins (scheme, host, port) the admin
//! configured (`--download-origins`, Hugging Face by default). It applies to every install,
//! so a preset-resolver plugin that proposes a URL elsewhere (a loopback port, an internal
//! service) cannot make the host fetch it.

use comfyhost_runtime::grants::HttpOrigin;

/// The host's allowed download origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOrigins(Vec<HttpOrigin>);

impl DownloadOrigins {
    /// Parses `scheme://host:port` entries (blank entries ignored).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(HttpOrigin::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// The origin of `url`, with its scheme's default port.
    pub fn origin_of(url: &url::Url) -> Option<HttpOrigin> {
        Some(HttpOrigin {
            scheme: url.scheme().to_ascii_lowercase(),
            host: match url.host()? {
                url::Host::Ipv6(a) => format!("[{a}]"),
                h => h.to_string().to_ascii_lowercase(),
            },
            port: url.port_or_known_default()?,
        })
    }

    /// True when `url`'s origin is exactly one of the allowed ones.
    pub fn allows(&self, url: &url::Url) -> bool {
        Self::origin_of(url).is_some_and(|o| self.0.contains(&o))
    }

    /// The allowed origins as `scheme://host:port`.
    pub fn list(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// The allowed origins, for messages.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_are_allowed() {
        let o = DownloadOrigins::parse(&["https://huggingface.co:443".into(), " ".into()]).unwrap();
        let ok = |u: &str| o.allows(&url::Url::parse(u).unwrap());
        assert!(ok(
            "https://huggingface.co/org/repo/resolve/main/x.safetensors"
        ));
        assert!(ok("https://HuggingFace.co:443/x"));
        assert!(!ok("http://huggingface.co/x"), "scheme");
        assert!(!ok("https://huggingface.co:8443/x"), "port");
        assert!(!ok("https://evil-huggingface.co/x"));
        assert!(!ok("http://127.0.0.1:8189/x"));
        assert!(!ok("https://huggingface.co.evil.com/x"));
        assert!(DownloadOrigins::parse(&["huggingface.co".into()]).is_err());
        let v6 = DownloadOrigins::parse(&["http://[::1]:8000".into()]).unwrap();
        assert!(v6.allows(&url::Url::parse("http://[::1]:8000/a").unwrap()));
    }
}
