//! Image references as docker and podman read them:
//! `busybox` -> `docker.io/library/busybox:latest`, `host:port/repo:tag`,
//! `repo@sha256:...`, `repo:tag@sha256:...`.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]`, normalised (`index.docker.io` -> `docker.io`).
    pub registry: String,
    /// The repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// A parsed reference and whether it named its registry. Short names are
/// resolved through the unqualified-search registries.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub reference: Reference,
    pub qualified: bool,
}

impl Reference {
    /// Parses and normalises; a short name gets docker.io (and `library/`
    /// for a single path component).
    pub fn parse(s: &str) -> Result<Reference> {
        Ok(parse(s)?.reference)
    }

    /// The same name in another registry (for unqualified search).
    pub fn with_registry(&self, registry: &str) -> Reference {
        let mut r = self.clone();
        if self.registry == DOCKER_HUB
            && registry != DOCKER_HUB
            && let Some(rest) = r.repository.strip_prefix("library/")
        {
            r.repository = rest.to_string();
        }
        if registry == DOCKER_HUB && !r.repository.contains('/') {
            r.repository = format!("library/{}", r.repository);
        }
        r.registry = registry.to_string();
        r
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag` (or `@digest` when there is no tag).
    pub fn tagged_or_digested(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{}:{t}", self.name()),
            (None, Some(d)) => format!("{}@{d}", self.name()),
            (None, None) => format!("{}:latest", self.name()),
        }
    }

    /// What a registry is asked for: the digest when there is one.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub fn parse(s: &str) -> Result<Parsed> {
    let bad = |why: &str| Error::Reference {
        reference: s.to_string(),
        why: why.to_string(),
    };
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.len() > 4096 {
        return Err(bad("longer than 4096 bytes"));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (
            r,
            Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?),
        ),
        None => (s, None),
    };
    // A tag is after the last ':' that follows the last '/' (a ':' before
    // it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag
        && !valid_tag(t)
    {
        return Err(bad(
            "a tag is 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'",
        ));
    }
    let (registry, path, qualified) = match name.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), path.to_string(), true)
        }
        _ => (DOCKER_HUB.to_string(), name.to_string(), false),
    };
    if !valid_host(&registry) {
        return Err(bad("invalid registry host"));
    }
    let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    if path.is_empty() {
        return Err(bad("no repository name"));
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad("repository names must be lowercase"));
    }
    for comp in path.split('/') {
        if !valid_component(comp) {
            return Err(bad(&format!("invalid repository path component {comp:?}")));
        }
    }
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_string()),
    };
    Ok(Parsed {
        reference: Reference {
            registry,
            repository,
            tag,
            digest,
        },
        qualified,
    })
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || h.starts_with('[') => (host, Some(port)),
        _ => (h, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_lowercase() || b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok || i >= b.len() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app:1.0"), "docker.io/user/app:1.0");
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b:t"), "127.0.0.1:5000/a/b:t");
        assert_eq!(norm("quay.io/x/y:v1.2-rc"), "quay.io/x/y:v1.2-rc");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        let r = Reference::parse(&format!("host:5000/x:t@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.manifest_ref(), d);
        assert!(!parse("busybox").unwrap().qualified);
        assert!(parse("localhost:5000/busybox").unwrap().qualified);
    }

    #[test]
    fn rejects_bad_references() {
        for s in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "host:99999/x",
            "busybox@sha256:1234",
            "busybox@md5:abcd",
            "/x",
            "a/../b",
            "x:a b",
        ] {
            assert!(Reference::parse(s).is_err(), "{s} should be rejected");
        }
    }

    #[test]
    fn search_registries_drop_library() {
        let r = Reference::parse("busybox")
            .unwrap()
            .with_registry("quay.io");
        assert_eq!(r.to_string(), "quay.io/busybox:latest");
        let back = r.with_registry(DOCKER_HUB);
        assert_eq!(back.to_string(), "docker.io/library/busybox:latest");
    }
}
