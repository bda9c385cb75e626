//! containers-registries.conf (v2 TOML): unqualified-search registries,
//! per-prefix registries with their location, `insecure` (plain HTTP or
//! unverified TLS), `blocked`, and mirrors. Without a file the defaults are
//! docker's: short names go to docker.io, everything is secure.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Context, Error, Result};
use crate::reference::{DOCKER_HUB, Reference};

pub const DEFAULT_PATH: &str = "/etc/containers/registries.conf";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistriesConf {
    #[serde(default)]
    pub unqualified_search_registries: Vec<String>,
    #[serde(default, rename = "registry")]
    pub registries: Vec<RegistryEntry>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<Mirror>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Mirror {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
}

/// One place to try for a reference: a host and the repository path there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub repository: String,
    pub insecure: bool,
    pub mirror: bool,
}

impl RegistriesConf {
    /// Reads `path`; a missing file at the default path means defaults.
    pub fn load(path: Option<&Path>) -> Result<RegistriesConf> {
        let (path, must_exist) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(RegistriesConf::default());
            }
            Err(e) => return Err(e).ctx(|| format!("read {}", path.display())),
        };
        Self::parse(&text).map_err(|e| Error::invalid(path.display().to_string(), e))
    }

    pub fn parse(text: &str) -> Result<RegistriesConf, String> {
        let mut conf: RegistriesConf = toml::from_str(text).map_err(|e| e.to_string())?;
        for r in &mut conf.registries {
            if r.prefix.is_empty() && r.location.is_empty() {
                return Err("a [[registry]] needs a prefix or a location".into());
            }
            if r.prefix.is_empty() {
                r.prefix = r.location.clone();
            }
            if r.location.is_empty() {
                r.location = r.prefix.clone();
            }
            if r.prefix.starts_with("*.") {
                // Wildcard subdomains match any host ending in the rest.
            } else if r.prefix.contains("://") || r.location.contains("://") {
                return Err(format!(
                    "registry {:?}: prefix and location take no scheme",
                    r.prefix
                ));
            }
        }
        Ok(conf)
    }

    /// Registries a short name is tried in, in order.
    pub fn search_registries(&self) -> Vec<String> {
        if self.unqualified_search_registries.is_empty() {
            vec![DOCKER_HUB.to_string()]
        } else {
            self.unqualified_search_registries.clone()
        }
    }

    /// The entry whose prefix matches the most of `name` (`host/repo`).
    fn entry_for(&self, name: &str) -> Option<&RegistryEntry> {
        self.registries
            .iter()
            .filter(|r| prefix_matches(&r.prefix, name))
            .max_by_key(|r| r.prefix.len())
    }

    /// Where to pull `r` from: mirrors first, then the registry itself.
    /// A blocked registry is an error naming it.
    pub fn endpoints(&self, r: &Reference) -> Result<Vec<Endpoint>> {
        let name = r.name();
        let Some(entry) = self.entry_for(&name) else {
            return Ok(vec![Endpoint {
                host: r.registry.clone(),
                repository: r.repository.clone(),
                insecure: false,
                mirror: false,
            }]);
        };
        if entry.blocked {
            return Err(Error::registry(
                &r.registry,
                format!(
                    "{name} is blocked by registries.conf (prefix {:?})",
                    entry.prefix
                ),
            ));
        }
        let rewrite = |location: &str| -> Endpoint {
            // The part of the name after the prefix goes after the location.
            let rest = if entry.prefix.starts_with("*.") {
                name[r.registry.len()..].to_string()
            } else {
                name[entry.prefix.len()..].to_string()
            };
            let full = format!("{location}{rest}");
            let (host, repo) = full.split_once('/').unwrap_or((&full, ""));
            Endpoint {
                host: host.to_string(),
                repository: repo.to_string(),
                insecure: false,
                mirror: false,
            }
        };
        let mut out = Vec::new();
        for m in &entry.mirrors {
            let mut e = rewrite(&m.location);
            e.insecure = m.insecure;
            e.mirror = true;
            out.push(e);
        }
        let location = if entry.prefix.starts_with("*.") {
            r.registry.clone()
        } else {
            entry.location.clone()
        };
        let mut e = rewrite(&location);
        e.insecure = entry.insecure;
        out.push(e);
        Ok(out)
    }

    /// Whether a host (for push, login) is marked insecure or blocked.
    pub fn host_policy(&self, host: &str) -> (bool, bool) {
        match self.entry_for(host) {
            Some(e) if e.location == host || prefix_matches(&e.prefix, host) => {
                (e.insecure, e.blocked)
            }
            _ => (false, false),
        }
    }
}

/// A prefix matches at a path boundary: `host/a` matches `host/a/b` and
/// `host/a`, not `host/ab`. `*.example.com` matches any subdomain's names.
fn prefix_matches(prefix: &str, name: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = name.split('/').next().unwrap_or("");
        return host.ends_with(&format!(".{domain}"));
    }
    name == prefix
        || (name.starts_with(prefix)
            && (prefix.ends_with('/') || name.as_bytes().get(prefix.len()) == Some(&b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["registry.example", "docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "127.0.0.1:5000/hub"
insecure = true

[[registry]]
location = "insecure.example:8080"
insecure = true

[[registry]]
prefix = "evil.example"
blocked = true

[[registry]]
prefix = "example.com/team"
location = "internal.example/mirror/team"
"#;

    #[test]
    fn mirrors_come_first() {
        let c = RegistriesConf::parse(CONF).unwrap();
        let r = Reference::parse("busybox").unwrap();
        let e = c.endpoints(&r).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].host, "127.0.0.1:5000");
        assert_eq!(e[0].repository, "hub/library/busybox");
        assert!(e[0].insecure && e[0].mirror);
        assert_eq!(e[1].host, "docker.io");
        assert_eq!(e[1].repository, "library/busybox");
        assert!(!e[1].insecure);
    }

    #[test]
    fn prefixes_rewrite_and_block() {
        let c = RegistriesConf::parse(CONF).unwrap();
        let r = Reference::parse("example.com/team/app:1").unwrap();
        let e = c.endpoints(&r).unwrap();
        assert_eq!(e[0].host, "internal.example");
        assert_eq!(e[0].repository, "mirror/team/app");
        let r = Reference::parse("example.com/teamx/app").unwrap();
        assert_eq!(c.endpoints(&r).unwrap()[0].host, "example.com");
        let err = c
            .endpoints(&Reference::parse("evil.example/x").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("blocked"), "{err}");
        let r = Reference::parse("insecure.example:8080/x").unwrap();
        assert!(c.endpoints(&r).unwrap()[0].insecure);
        assert_eq!(c.search_registries(), ["registry.example", "docker.io"]);
        assert_eq!(RegistriesConf::default().search_registries(), ["docker.io"]);
    }

    #[test]
    fn bad_files_are_named_errors() {
        assert!(RegistriesConf::parse("unqualified-search-registries = 3").is_err());
        assert!(RegistriesConf::parse("[[registry]]\ninsecure = true").is_err());
        assert!(RegistriesConf::parse("[[registry]]\nlocation = \"https://x\"").is_err());
    }
}
