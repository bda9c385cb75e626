//! Image references as docker and podman read them:
//! `busybox` -> `docker.io/library/busybox:latest`, `host:port/repo:tag`,
//! `repo@sha256:...`, `repo:tag@sha256:...`.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const DOCKER_HUB: &str = "docker.io";

/// The longest `registry/repository`, as docker limits it. Checked on the
/// normalised name, so whatever parses prints as a reference that parses
/// again (a short name gains up to 18 bytes of `docker.io/library/`).
pub const MAX_NAME: usize = 255;

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

/// The registry a name starts with, and the rest, by docker's rule: the
/// part before the first '/' when it has a '.' or a ':' or is
/// `localhost` (`team/app` is a path on the default registry).
pub fn split_registry(name: &str) -> Option<(&str, &str)> {
    let (first, rest) = name.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some((first, rest))
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
    let (registry, path, qualified) = match split_registry(name) {
        Some((first, path)) => (first.to_string(), path.to_string(), true),
        None => (DOCKER_HUB.to_string(), name.to_string(), false),
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
    if registry.len() + 1 + repository.len() > MAX_NAME {
        return Err(bad(&format!(
            "the name {registry}/{repository} is longer than {MAX_NAME} bytes"
        )));
    }
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

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`: alternating runs of name bytes
/// and separators. Each turn of the loop consumes at least one byte or
/// returns, so any input ends (a byte that is neither kind, such as ' '
/// or ':', once made the scan spin forever).
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let name_byte = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let sep_byte = |x: u8| matches!(x, b'.' | b'_' | b'-');
    let mut i = 0;
    loop {
        let run = i;
        while i < b.len() && name_byte(b[i]) {
            i += 1;
        }
        if i == run {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep = i;
        while i < b.len() && sep_byte(b[i]) {
            i += 1;
        }
        if !valid_separator(&b[sep..i]) {
            return false;
        }
    }
}

/// `.`, `_`, `__` or any run of `-`; empty (a byte that is no separator)
/// is not one.
fn valid_separator(s: &[u8]) -> bool {
    matches!(s, b"." | b"_" | b"__") || (!s.is_empty() && s.iter().all(|&x| x == b'-'))
}

/// The fuzz target's property, here so unit tests and the fuzzer check the
/// same thing: parsing any bytes returns, and a parsed reference prints
/// as one that parses to the same value.
#[doc(hidden)]
pub fn check_round_trip(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = parse(s) else { return };
    let printed = p.reference.to_string();
    let again = parse(&printed)
        .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again.reference, p.reference, "{s:?} printed as {printed:?}");
    assert!(again.qualified, "{printed:?} names its registry");
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

    /// Bytes that are neither name bytes nor separators once made the
    /// component scan loop forever. Each case runs on a thread with a
    /// deadline, so a regression fails instead of hanging the suite.
    #[test]
    fn names_with_foreign_bytes_are_rejected_promptly() {
        let cases = [
            "a b",
            "a:b:c",
            "a b:tag",
            "x/a b",
            "a:b:c/d",
            "a\tb",
            "a!b",
            "a..b",
            "a._b",
            "a_-b",
            "a b@sha256:0",
            "host:5000/a b",
            "a\u{e9}b",
            "ab-",
            "a___b",
        ];
        let (tx, rx) = std::sync::mpsc::channel();
        for s in cases {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send((s, parse(s).map(|p| p.reference.to_string())));
            });
        }
        drop(tx);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = 0;
        while seen < cases.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let (s, res) = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("parse did not return within 10 s"));
            let err = res.expect_err(s).to_string();
            assert!(err.contains("invalid reference"), "{s}: {err}");
            seen += 1;
        }
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a0.b1-c2__d3"] {
            assert!(valid_component(ok), "{ok}");
        }
        for bad in [
            "", ".a", "a.", "a..b", "a___b", "a_.b", "a-_b", "A", "a b", "a:b",
        ] {
            assert!(!valid_component(bad), "{bad}");
        }
    }

    #[test]
    fn names_longer_than_docker_allows_are_rejected() {
        let max_short = MAX_NAME - "docker.io/library/".len();
        assert!(Reference::parse(&"a".repeat(max_short)).is_ok());
        let err = Reference::parse(&"a".repeat(max_short + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("longer than 255"), "{err}");
    }

    /// Every file of the fuzz corpus (fuzz/corpus/reference) through the
    /// parser with the fuzz target's checks, so the corpus is exercised
    /// without cargo-fuzz.
    #[test]
    fn the_fuzz_corpus_parses_and_round_trips() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/reference");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            check_round_trip(&data);
            n += 1;
        }
        assert!(n > 0, "no corpus in {}", dir.display());
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
