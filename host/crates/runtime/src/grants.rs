//! Admin grants and effective capabilities: a capability works only if the manifest declares it
//! AND an admin granted it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::manifest::{DirAccess, DirRequest, Manifest};

/// An outbound HTTP origin, matched exactly on scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpOrigin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// A directory the plugin may open, resolved to a host path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedDir {
    pub host_path: PathBuf,
    pub guest: String,
    pub access: DirAccess,
}

/// What a call may use: the intersection of declared and granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveCaps {
    pub http: Vec<HttpOrigin>,
    pub dirs: Vec<GrantedDir>,
    /// Names of secrets the plugin may read.
    pub secrets: Vec<String>,
}

impl HttpOrigin {
    /// Parses `scheme://host:port`: scheme `http` or `https`, explicit port, nothing after the
    /// port (no path, query, fragment or credentials). Hosts are lowercased; IPv6 literals go in
    /// brackets (`http://[::1]:8188`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} is not scheme://host:port"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "{text:?}: scheme must be http or https, not {scheme:?}"
            ));
        }
        if rest.contains(['/', '?', '#']) {
            return Err(format!(
                "{text:?}: only scheme://host:port is allowed, without a path, query or fragment"
            ));
        }
        if rest.contains('@') {
            return Err(format!(
                "{text:?}: credentials are not allowed in an origin"
            ));
        }
        let (host, port) = if let Some(after_bracket) = rest.strip_prefix('[') {
            let (v6, tail) = after_bracket
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: unterminated IPv6 literal"))?;
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{text:?}: {v6:?} is not an IPv6 address"))?;
            let port = tail
                .strip_prefix(':')
                .ok_or_else(|| format!("{text:?}: port required (e.g. {scheme}://[{v6}]:443)"))?;
            (format!("[{}]", v6.to_ascii_lowercase()), port)
        } else {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
                let default = if scheme == "https" { 443 } else { 80 };
                format!("{text:?}: port required (e.g. {scheme}://{rest}:{default})")
            })?;
            if host.is_empty()
                || !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(format!("{text:?}: {host:?} is not a valid host name"));
            }
            (host.to_ascii_lowercase(), port)
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{text:?}: port {port:?} is not a number in 1..=65535"))?;
        Ok(Self { scheme, host, port })
    }
}

impl std::fmt::Display for HttpOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl PartialOrd for HttpOrigin {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HttpOrigin {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.scheme, &self.host, self.port).cmp(&(&other.scheme, &other.host, other.port))
    }
}

/// Host directories a manifest may name with a placeholder instead of an absolute path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    Output,
    Input,
    Models,
    User,
    Temp,
    Data,
}

impl Placeholder {
    pub const ALL: [Placeholder; 6] = [
        Placeholder::Output,
        Placeholder::Input,
        Placeholder::Models,
        Placeholder::User,
        Placeholder::Temp,
        Placeholder::Data,
    ];

    /// `{output}`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Placeholder::Output => "{output}",
            Placeholder::Input => "{input}",
            Placeholder::Models => "{models}",
            Placeholder::User => "{user}",
            Placeholder::Temp => "{temp}",
            Placeholder::Data => "{data}",
        }
    }

    /// The placeholder `text` is exactly, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// Where the placeholders point on this host (ComfyUI's folders and comfyhost's own data dir).
/// A placeholder whose root is `None` resolves to nothing, and the directory is not granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirRoots {
    pub output: Option<PathBuf>,
    pub input: Option<PathBuf>,
    pub models: Option<PathBuf>,
    pub user: Option<PathBuf>,
    pub temp: Option<PathBuf>,
    /// Per-plugin data lives in `<data>/<plugin id>`.
    pub data: Option<PathBuf>,
}

impl DirRoots {
    /// Host path of a manifest `path` (placeholder or absolute) for `plugin_id`.
    pub fn resolve(&self, plugin_id: &str, path: &str) -> Option<PathBuf> {
        match Placeholder::parse(path) {
            None => Some(PathBuf::from(path)),
            Some(Placeholder::Output) => self.output.clone(),
            Some(Placeholder::Input) => self.input.clone(),
            Some(Placeholder::Models) => self.models.clone(),
            Some(Placeholder::User) => self.user.clone(),
            Some(Placeholder::Temp) => self.temp.clone(),
            Some(Placeholder::Data) => self.data.as_ref().map(|d| d.join(plugin_id)),
        }
    }
}

/// One directory an admin approved: the manifest's `path` (as written, placeholder or
/// absolute) mounted at `guest`, with at most `access`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirGrant {
    pub path: String,
    pub guest: String,
    pub access: DirAccess,
}

/// What an admin approved for one plugin. Stored as JSON in the plugin's row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Origins as `scheme://host:port`.
    #[serde(default)]
    pub http: Vec<String>,
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Hex sha256 of the component these grants were approved for. Grants follow the code, not
    /// the id: a different component under the same id waits for approval (see
    /// [`code_approval`]). When an admin sends grants without it, the host binds them to the
    /// component the plugin runs now; when the admin sends it, it must match that component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_sha256: Option<String>,
}

impl Grants {
    /// Grants exactly what `manifest` declares ("approve all").
    pub fn all_of(manifest: &Manifest) -> Self {
        let caps = &manifest.capabilities;
        Self {
            http: caps.http.clone(),
            dirs: caps
                .dirs
                .iter()
                .map(|d| DirGrant {
                    path: d.path.clone(),
                    guest: d.guest.clone(),
                    access: d.access,
                })
                .collect(),
            secrets: caps.secrets.clone(),
            code_sha256: None,
        }
    }

    fn http_origins(&self) -> Vec<HttpOrigin> {
        self.http
            .iter()
            .filter_map(|o| HttpOrigin::parse(o).ok())
            .collect()
    }

    fn dir_grant(&self, req: &DirRequest) -> Option<&DirGrant> {
        self.dirs
            .iter()
            .find(|g| g.path == req.path && g.guest == req.guest)
    }
}

/// A capability the manifest declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RequestedCapability {
    Http {
        origin: String,
    },
    Dir {
        path: String,
        guest: String,
        access: DirAccess,
    },
    Secret {
        name: String,
    },
    /// The component itself: its code differs from the one the grants were approved for (an
    /// update dropped into the plugins directory, or another component reusing the id).
    Code {
        sha256: String,
        approved_sha256: Option<String>,
    },
    /// The version is signed by another key than the one approved for this plugin (`None`:
    /// unsigned); it does not run until an admin approves it.
    Signer {
        key_id: Option<String>,
        approved_key_id: String,
    },
}

impl std::fmt::Display for RequestedCapability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestedCapability::Http { origin } => write!(f, "http {origin}"),
            RequestedCapability::Dir {
                path,
                guest,
                access,
            } => write!(f, "dir {path} -> {guest} ({access:?})"),
            RequestedCapability::Secret { name } => write!(f, "secret {name}"),
            RequestedCapability::Code { sha256, .. } => write!(f, "run component sha256 {sha256}"),
            RequestedCapability::Signer { key_id, .. } => match key_id {
                Some(k) => write!(f, "signed by key {k}"),
                None => write!(f, "unsigned"),
            },
        }
    }
}

/// Every capability the manifest declares.
pub fn requested(manifest: &Manifest) -> Vec<RequestedCapability> {
    let caps = &manifest.capabilities;
    let http = caps.http.iter().map(|o| RequestedCapability::Http {
        origin: HttpOrigin::parse(o).map_or_else(|_| o.clone(), |p| p.to_string()),
    });
    let dirs = caps.dirs.iter().map(|d| RequestedCapability::Dir {
        path: d.path.clone(),
        guest: d.guest.clone(),
        access: d.access,
    });
    let secrets = caps
        .secrets
        .iter()
        .map(|s| RequestedCapability::Secret { name: s.clone() });
    http.chain(dirs).chain(secrets).collect()
}

/// What the admin sees about one declared capability before approving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityAbout {
    /// Display form of the capability (as in [`RequestedCapability`]'s `Display`).
    pub capability: String,
    /// The plugin runs without it (degraded).
    pub optional: bool,
    /// What it is for, from the manifest.
    pub reason: Option<String>,
}

/// `optional` and `reason` of every declared capability, in `requested` order.
pub fn about(manifest: &Manifest) -> Vec<CapabilityAbout> {
    let caps = &manifest.capabilities;
    caps.keys()
        .zip(requested(manifest))
        .map(|(key, c)| CapabilityAbout {
            capability: c.to_string(),
            optional: caps.is_optional(key),
            reason: caps.reasons.get(key).cloned(),
        })
        .collect()
}

/// Declared but not granted, leaving out optional capabilities: what an admin still has to
/// approve before the plugin may run. A
/// directory counts as granted when a grant for the same path and guest path exists, even with
/// narrower access (the admin chose read-only deliberately).
pub fn pending(manifest: &Manifest, grants: &Grants) -> Vec<RequestedCapability> {
    let granted_http = grants.http_origins();
    let caps = &manifest.capabilities;
    let mut out = Vec::new();
    for origin in caps.http.iter().filter(|o| !caps.is_optional(o)) {
        match HttpOrigin::parse(origin) {
            Ok(o) if granted_http.contains(&o) => {}
            Ok(o) => out.push(RequestedCapability::Http {
                origin: o.to_string(),
            }),
            Err(_) => out.push(RequestedCapability::Http {
                origin: origin.clone(),
            }),
        }
    }
    for d in caps.dirs.iter().filter(|d| !caps.is_optional(&d.guest)) {
        if grants.dir_grant(d).is_none() {
            out.push(RequestedCapability::Dir {
                path: d.path.clone(),
                guest: d.guest.clone(),
                access: d.access,
            });
        }
    }
    for s in caps.secrets.iter().filter(|s| !caps.is_optional(s)) {
        if !grants.secrets.contains(s) {
            out.push(RequestedCapability::Secret { name: s.clone() });
        }
    }
    out
}

/// Whether the stored grants cover the component with hash `sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeApproval {
    /// Approved for exactly this component.
    Approved,
    /// Grants exist but were never bound to a component (first load of a plugin, or grants
    /// stored before binding existed): the host binds them to this component when nothing
    /// else is pending.
    Unbound,
    /// Approved for another component: this one waits for an admin.
    Changed { approved_sha256: String },
}

/// Compares the component's hash with the one the grants were approved for.
pub fn code_approval(grants: &Grants, sha256: &str) -> CodeApproval {
    match &grants.code_sha256 {
        None => CodeApproval::Unbound,
        Some(a) if a.eq_ignore_ascii_case(sha256) => CodeApproval::Approved,
        Some(a) => CodeApproval::Changed {
            approved_sha256: a.clone(),
        },
    }
}

/// Declared ∧ granted, with placeholders resolved through `roots`. Grants for things the
/// manifest does not declare give nothing; a directory's access is the narrower of declared and
/// granted; a placeholder without a configured root is left out (and logged).
pub fn effective(manifest: &Manifest, grants: &Grants, roots: &DirRoots) -> EffectiveCaps {
    let granted_http = grants.http_origins();
    let caps = &manifest.capabilities;
    let mut http: Vec<HttpOrigin> = caps
        .http
        .iter()
        .filter_map(|o| HttpOrigin::parse(o).ok())
        .filter(|o| granted_http.contains(o))
        .collect();
    http.sort();
    http.dedup();
    let dirs = caps
        .dirs
        .iter()
        .filter_map(|d| {
            let grant = grants.dir_grant(d)?;
            let access = if d.access == DirAccess::Rw && grant.access == DirAccess::Rw {
                DirAccess::Rw
            } else {
                DirAccess::Ro
            };
            let Some(host_path) = roots.resolve(&manifest.id, &d.path) else {
                tracing::warn!(plugin = %manifest.id, path = %d.path,
                    "granted directory placeholder has no configured root; not mounted");
                return None;
            };
            Some(GrantedDir {
                host_path,
                guest: d.guest.clone(),
                access,
            })
        })
        .collect();
    let secrets = caps
        .secrets
        .iter()
        .filter(|s| grants.secrets.contains(s))
        .cloned()
        .collect();
    EffectiveCaps {
        http,
        dirs,
        secrets,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn manifest(caps: &str) -> Manifest {
        Manifest::from_toml_str(&format!(
            "id = \"p\"\nversion = \"0.1.0\"\nname = \"P\"\nwit = \"0.1.0\"\nhooks = [\"queue-router\"]\n{caps}"
        ))
        .unwrap()
    }

    const CAPS: &str = r#"
[capabilities]
http = ["https://api.runpod.ai:443", "http://127.0.0.1:8189"]
secrets = ["RUNPOD_API_KEY", "OTHER"]
[[capabilities.dirs]]
path = "{output}"
guest = "/output"
access = "rw"
[[capabilities.dirs]]
path = "{data}"
guest = "/data"
access = "rw"
"#;

    #[test]
    fn optional_capabilities_are_never_pending_and_carry_their_reason() {
        let m = manifest(
            r#"
[capabilities]
http = ["http://127.0.0.1:11434", "https://must.example:443"]
secrets = ["OPENAI_API_KEY"]
optional = ["http://127.0.0.1:11434", "OPENAI_API_KEY"]
[capabilities.reasons]
"http://127.0.0.1:11434" = "the LLM"
"#,
        );
        let p = pending(&m, &Grants::default());
        assert_eq!(
            p,
            [RequestedCapability::Http {
                origin: "https://must.example:443".into()
            }]
        );
        let a = about(&m);
        assert_eq!(a.len(), 3);
        assert_eq!(
            (a[0].optional, a[0].reason.as_deref()),
            (true, Some("the LLM"))
        );
        assert_eq!((a[1].optional, a[1].reason.as_deref()), (false, None));
        assert_eq!(a[2].capability, "secret OPENAI_API_KEY");
        assert!(a[2].optional);
        // Granted optional capabilities work like any other.
        let g = Grants {
            http: vec!["http://127.0.0.1:11434".into()],
            ..Default::default()
        };
        assert_eq!(effective(&m, &g, &roots()).http.len(), 1);
    }

    #[test]
    fn optional_and_reasons_must_name_declared_capabilities() {
        for caps in [
            "[capabilities]\nhttp = [\"https://a.example:443\"]\noptional = [\"https://b.example:443\"]\n",
            "[capabilities]\nsecrets = [\"KEY\"]\n[capabilities.reasons]\nOTHER = \"x\"\n",
            "[capabilities]\nsecrets = [\"KEY\"]\n[capabilities.reasons]\nKEY = \" \"\n",
        ] {
            let text = format!(
                "id = \"p\"\nversion = \"0.1.0\"\nname = \"P\"\nwit = \"0.1.0\"\nhooks = [\"queue-router\"]\n{caps}"
            );
            let err = Manifest::from_toml_str(&text).unwrap_err().to_string();
            assert!(err.contains("capabilities."), "{err}");
        }
    }

    fn roots() -> DirRoots {
        DirRoots {
            output: Some("/srv/comfy/output".into()),
            data: Some("/var/lib/comfyhost/plugins".into()),
            ..Default::default()
        }
    }

    #[test]
    fn origin_parsing() {
        let o = HttpOrigin::parse("HTTPS://API.Example.com:443").unwrap();
        assert_eq!(o.to_string(), "https://api.example.com:443");
        assert_eq!(
            HttpOrigin::parse("http://[::1]:8188").unwrap().host,
            "[::1]"
        );
        for (bad, why) in [
            ("api.example.com:443", "scheme://host:port"),
            ("ftp://x:21", "scheme must be http or https"),
            ("https://x", "port required"),
            ("https://x:443/path", "without a path"),
            ("https://x:443?q", "without a path"),
            ("https://u:p@x:443", "credentials"),
            ("https://x:0", "1..=65535"),
            ("https://x:99999", "1..=65535"),
            ("https://:443", "not a valid host"),
            ("http://[::1]", "port required"),
            ("http://[zz]:1", "not an IPv6"),
        ] {
            let err = HttpOrigin::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn nothing_granted_means_everything_pending_and_nothing_effective() {
        let m = manifest(CAPS);
        let g = Grants::default();
        assert_eq!(pending(&m, &g).len(), 6);
        assert_eq!(effective(&m, &g, &roots()), EffectiveCaps::default());
    }

    #[test]
    fn effective_is_intersection_with_resolved_placeholders() {
        let m = manifest(CAPS);
        let g = Grants {
            // one declared origin (spelled differently), one never declared
            http: vec![
                "HTTPS://api.runpod.ai:443".into(),
                "https://evil.example:443".into(),
            ],
            dirs: vec![
                DirGrant {
                    path: "{output}".into(),
                    guest: "/output".into(),
                    access: DirAccess::Ro,
                },
                DirGrant {
                    path: "/etc".into(),
                    guest: "/etc".into(),
                    access: DirAccess::Rw,
                },
            ],
            secrets: vec!["RUNPOD_API_KEY".into(), "NOT_DECLARED".into()],
            code_sha256: None,
        };
        let eff = effective(&m, &g, &roots());
        assert_eq!(
            eff.http,
            [HttpOrigin::parse("https://api.runpod.ai:443").unwrap()]
        );
        assert_eq!(
            eff.dirs,
            [GrantedDir {
                host_path: "/srv/comfy/output".into(),
                guest: "/output".into(),
                access: DirAccess::Ro, // narrower of rw declared and ro granted
            }]
        );
        assert_eq!(eff.secrets, ["RUNPOD_API_KEY"]);
        let p = pending(&m, &g);
        assert_eq!(
            p,
            [
                RequestedCapability::Http {
                    origin: "http://127.0.0.1:8189".into()
                },
                RequestedCapability::Dir {
                    path: "{data}".into(),
                    guest: "/data".into(),
                    access: DirAccess::Rw
                },
                RequestedCapability::Secret {
                    name: "OTHER".into()
                },
            ]
        );
    }

    #[test]
    fn all_of_grants_everything_and_data_dir_is_per_plugin() {
        let m = manifest(CAPS);
        let g = Grants::all_of(&m);
        assert!(pending(&m, &g).is_empty());
        let eff = effective(&m, &g, &roots());
        assert_eq!(eff.http.len(), 2);
        assert_eq!(eff.secrets.len(), 2);
        assert_eq!(
            eff.dirs[1].host_path,
            PathBuf::from("/var/lib/comfyhost/plugins/p")
        );
        // unresolvable placeholder: left out, not mounted somewhere surprising
        let eff = effective(&m, &g, &DirRoots::default());
        assert!(eff.dirs.is_empty());
    }

    #[test]
    fn update_asking_for_more_is_pending_until_granted() {
        let v1 = manifest("[capabilities]\nhttp = [\"https://a.example:443\"]\n");
        let grants = Grants::all_of(&v1);
        assert!(pending(&v1, &grants).is_empty());
        let v2 = manifest(
            "[capabilities]\nhttp = [\"https://a.example:443\", \"https://b.example:443\"]\n",
        );
        assert_eq!(
            pending(&v2, &grants),
            [RequestedCapability::Http {
                origin: "https://b.example:443".into()
            }]
        );
        // a version that asks for less needs nothing new
        let v3 = manifest("");
        assert!(pending(&v3, &grants).is_empty());
        assert!(effective(&v3, &grants, &roots()).http.is_empty());
    }
}
