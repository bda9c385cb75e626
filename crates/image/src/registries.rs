//! containers-registries.conf (v2 TOML): unqualified-search registries,
//! per-prefix registries with their location, `insecure` (plain HTTP or
//! unverified TLS), `blocked`, and mirrors. Without a file the defaults are
//! docker's: short names go to docker.io, everything is secure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Context, Error, Result};
use crate::reference::{self, DOCKER_HUB, Reference};

pub const DEFAULT_PATH: &str = "/etc/containers/registries.conf";

/// The drop-in directory's name, beside the main file.
pub const DROP_IN_DIR: &str = "registries.conf.d";

/// The environment variables podman reads for the file's path, strongest
/// first (`--registries-conf` beats both).
pub const ENV_VARS: [&str; 2] = ["CONTAINERS_REGISTRIES_CONF", "REGISTRIES_CONFIG_PATH"];

/// registries.conf merged from the main file and its drop-ins.
#[derive(Debug, Default, Clone)]
pub struct RegistriesConf {
    /// `None` when no file set it: then short names go to docker.io, as
    /// docker's do. `Some([])` refuses short names that are not aliases.
    pub unqualified_search_registries: Option<Vec<String>>,
    pub registries: Vec<RegistryEntry>,
    /// Short name (no tag) -> fully-qualified repository, checked on load.
    pub aliases: BTreeMap<String, Reference>,
    pub short_name_mode: ShortNameMode,
    /// The file that set the search list (or the main file), for messages.
    pub origin: PathBuf,
}

/// containers-registries.conf's `short-name-mode`. berth never prompts, so
/// permissive and disabled both try the search registries in order;
/// enforcing refuses a short name that more than one registry could serve.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ShortNameMode {
    Enforcing,
    /// podman's default when the files do not say.
    #[default]
    Permissive,
    Disabled,
}

/// One file as written: every field optional, so a drop-in overrides only
/// what it names. Keys berth has no use for (v1 tables,
/// credential-helpers) are ignored, as podman ignores keys it does not know.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfFile {
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default, rename = "registry")]
    registries: Vec<RegistryEntry>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    short_name_mode: Option<String>,
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

/// Which registries.conf to read, as podman chooses: the flag, else
/// `CONTAINERS_REGISTRIES_CONF`, else `REGISTRIES_CONFIG_PATH`, else the
/// default. True when the file was named (and so must exist).
pub fn config_path(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> (PathBuf, bool) {
    if let Some(p) = flag {
        return (p.to_path_buf(), true);
    }
    if let Some(p) = ENV_VARS
        .iter()
        .find_map(|v| env(v).filter(|p| !p.is_empty()))
    {
        return (PathBuf::from(p), true);
    }
    // An ordinary user's own file comes first, as rootless podman reads it.
    if berth_base::rootless::host_user().is_some() {
        let home = env("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(p) = home.map(|c| c.join("containers/registries.conf"))
            && p.is_file()
        {
            return (p, false);
        }
    }
    (PathBuf::from(DEFAULT_PATH), false)
}

impl RegistriesConf {
    /// Reads the main file (`path`, or the environment's, or the default;
    /// a missing default file means defaults), then each `*.conf` in the
    /// `registries.conf.d` directory beside it in lexical order, later
    /// files overriding earlier ones as containers-registries.conf.d(5)
    /// says.
    pub fn load(path: Option<&Path>) -> Result<RegistriesConf> {
        let (path, must_exist) = config_path(path, |v| std::env::var_os(v));
        let mut conf = RegistriesConf {
            origin: path.clone(),
            ..RegistriesConf::default()
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => conf.merge(parse_file(&text, &path)?, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {}
            Err(e) => return Err(e).ctx(|| format!("read {}", path.display())),
        }
        for file in drop_ins(&path)? {
            let text = std::fs::read_to_string(&file).ctx(|| format!("read {}", file.display()))?;
            conf.merge(parse_file(&text, &file)?, &file);
        }
        Ok(conf)
    }

    /// One file's text, as if it were the only one (tests, and callers
    /// with a configuration of their own).
    pub fn parse(text: &str) -> Result<RegistriesConf, String> {
        let path = Path::new("registries.conf");
        let file = parse_file(text, path).map_err(|e| match e {
            Error::Invalid { why, .. } => why,
            other => other.to_string(),
        })?;
        let mut conf = RegistriesConf::default();
        conf.merge(file, path);
        Ok(conf)
    }

    /// Applies a later file: fields it sets replace, a `[[registry]]` with
    /// the same prefix replaces the earlier one, aliases replace by key.
    fn merge(&mut self, file: FileConf, path: &Path) {
        if let Some(s) = file.search {
            self.unqualified_search_registries = Some(s);
            self.origin = path.to_path_buf();
        }
        for r in file.registries {
            match self.registries.iter_mut().find(|e| e.prefix == r.prefix) {
                Some(e) => *e = r,
                None => self.registries.push(r),
            }
        }
        self.aliases.extend(file.aliases);
        if let Some(m) = file.mode {
            self.short_name_mode = m;
        }
    }

    /// Registries a short name is tried in, in order.
    pub fn search_registries(&self) -> Vec<String> {
        match &self.unqualified_search_registries {
            Some(s) => s.clone(),
            None => vec![DOCKER_HUB.to_string()],
        }
    }

    /// The alias for a short name (`short` as parsed: docker.io, maybe
    /// with `library/`), carrying the short name's tag or digest.
    pub fn alias(&self, short: &Reference) -> Option<Reference> {
        let key = short.with_registry("").repository;
        let target = self.aliases.get(&key)?;
        let mut r = target.clone();
        r.tag = short.tag.clone();
        r.digest = short.digest.clone();
        Some(r)
    }

    /// Where a short name may already be in the store: its alias, each
    /// search registry, then localhost (where import, load and commit name
    /// images). Never an error: the store is asked, not a registry.
    pub fn local_candidates(&self, short: &Reference) -> Vec<Reference> {
        let mut v: Vec<Reference> = self.alias(short).into_iter().collect();
        v.extend(
            self.search_registries()
                .iter()
                .map(|r| short.with_registry(r)),
        );
        v.push(short.with_registry("localhost"));
        v
    }

    /// Where to pull a short name `shown` (as typed) from, as podman
    /// resolves it: an alias alone; else the search registries, refused
    /// when there are none, or, under `enforcing`, when there are several
    /// (podman would prompt on a terminal; berth never prompts).
    pub fn remote_candidates(
        &self,
        short: &Reference,
        shown: &str,
        terminal: bool,
    ) -> Result<Vec<Reference>> {
        if let Some(a) = self.alias(short) {
            return Ok(vec![a]);
        }
        let search = self.search_registries();
        if search.is_empty() {
            return Err(Error::ShortName(format!(
                "short-name {shown:?} did not resolve to an alias and no unqualified-search registries are defined in {:?}",
                self.origin.display().to_string()
            )));
        }
        if search.len() > 1 && self.short_name_mode == ShortNameMode::Enforcing {
            return Err(Error::ShortName(if terminal {
                format!(
                    "short-name {shown:?} could come from any of {search:?} and short-name-mode is enforcing: berth does not prompt; give a fully-qualified name or add an [aliases] entry"
                )
            } else {
                "short-name resolution enforced but cannot prompt without a TTY".to_string()
            }));
        }
        Ok(search.iter().map(|r| short.with_registry(r)).collect())
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

/// One file, checked: entries completed, aliases parsed, the mode known.
struct FileConf {
    search: Option<Vec<String>>,
    registries: Vec<RegistryEntry>,
    aliases: BTreeMap<String, Reference>,
    mode: Option<ShortNameMode>,
}

/// Parses one file; every error names the file, and the line where TOML
/// knows it.
fn parse_file(text: &str, path: &Path) -> Result<FileConf> {
    let bad = |why: String| Error::invalid(path.display().to_string(), why);
    let raw: ConfFile = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!("line {}: ", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        bad(format!("{at}{}", e.message().trim_end()))
    })?;
    let mut registries = raw.registries;
    for r in &mut registries {
        if r.prefix.is_empty() && r.location.is_empty() {
            return Err(bad("a [[registry]] needs a prefix or a location".into()));
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
            return Err(bad(format!(
                "registry {:?}: prefix and location take no scheme",
                r.prefix
            )));
        }
    }
    let mut aliases = BTreeMap::new();
    for (short, target) in raw.aliases {
        let r = parse_alias(&short, &target)
            .map_err(|why| bad(format!("[aliases] {short:?} = {target:?}: {why}")))?;
        aliases.insert(short, r);
    }
    let mode = match raw.short_name_mode.as_deref() {
        None => None,
        Some("enforcing") => Some(ShortNameMode::Enforcing),
        Some("permissive") => Some(ShortNameMode::Permissive),
        Some("disabled") => Some(ShortNameMode::Disabled),
        Some(m) => {
            return Err(bad(format!(
                "short-name-mode {m:?}: expected enforcing, permissive or disabled"
            )));
        }
    };
    Ok(FileConf {
        search: raw.unqualified_search_registries,
        registries,
        aliases,
        mode,
    })
}

/// An alias maps a short name without tag or digest to a repository with
/// its registry and without tag or digest: the user's tag goes on it.
fn parse_alias(short: &str, target: &str) -> Result<Reference, String> {
    // Reference parsing fills in `latest`; whether a tag was written is
    // read from the text: a ':' after the last '/', or an '@'.
    let pinned = |s: &str| s.contains('@') || s[s.rfind('/').map_or(0, |i| i + 1)..].contains(':');
    let key = reference::parse(short).map_err(|e| e.to_string())?;
    if key.qualified || pinned(short) {
        return Err("the key must be a short name without tag or digest".into());
    }
    let value = reference::parse(target).map_err(|e| e.to_string())?;
    if !value.qualified {
        return Err("the value must name its registry".into());
    }
    if pinned(target) {
        return Err("the value must not carry a tag or digest".into());
    }
    Ok(value.reference)
}

/// The `*.conf` files of the drop-in directory beside `main`, in lexical
/// order; none when there is no such directory.
fn drop_ins(main: &Path) -> Result<Vec<PathBuf>> {
    let dir = main.parent().unwrap_or(Path::new("/")).join(DROP_IN_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(|| format!("read {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.ctx(|| format!("read {}", dir.display()))?.path();
        // Sub-directories and other names are ignored, as the man page says.
        if path.extension().is_some_and(|e| e == "conf") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
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

    #[test]
    fn drop_ins_override_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        std::fs::write(
            &main,
            "unqualified-search-registries = [\"a.example\"]\n[aliases]\n\"app\" = \"a.example/team/app\"\n",
        )
        .unwrap();
        let d = dir.path().join(DROP_IN_DIR);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("20-b.conf"),
            "unqualified-search-registries = [\"c.example\"]\n",
        )
        .unwrap();
        std::fs::write(
            d.join("10-a.conf"),
            "unqualified-search-registries = [\"b.example\"]\nshort-name-mode = \"enforcing\"\n[aliases]\n\"app\" = \"b.example/app\"\n",
        )
        .unwrap();
        std::fs::write(d.join("ignored.txt"), "not toml [").unwrap();
        let c = RegistriesConf::load(Some(&main)).unwrap();
        assert_eq!(c.search_registries(), ["c.example"]);
        assert_eq!(c.origin, d.join("20-b.conf"));
        assert_eq!(c.short_name_mode, ShortNameMode::Enforcing);
        let short = Reference::parse("app:2").unwrap();
        assert_eq!(c.alias(&short).unwrap().to_string(), "b.example/app:2");
        assert_eq!(
            c.remote_candidates(&short, "app:2", false).unwrap(),
            [c.alias(&short).unwrap()]
        );
    }

    #[test]
    fn short_names_refused_as_podman_does() {
        let c = RegistriesConf::parse("unqualified-search-registries = []").unwrap();
        let r = Reference::parse("x").unwrap();
        let err = c.remote_candidates(&r, "x", false).unwrap_err().to_string();
        assert_eq!(
            err,
            "short-name \"x\" did not resolve to an alias and no unqualified-search registries are defined in \"registries.conf\""
        );
        // The store is still asked, under localhost.
        assert_eq!(c.local_candidates(&r).len(), 1);
        let c = RegistriesConf::parse(
            "unqualified-search-registries = [\"a.example\", \"b.example\"]\nshort-name-mode = \"enforcing\"",
        )
        .unwrap();
        let err = c.remote_candidates(&r, "x", false).unwrap_err().to_string();
        assert_eq!(
            err,
            "short-name resolution enforced but cannot prompt without a TTY"
        );
    }

    #[test]
    fn env_names_the_file_and_the_flag_wins() {
        let env = |v: &str| {
            (v == "REGISTRIES_CONFIG_PATH" || v == "CONTAINERS_REGISTRIES_CONF")
                .then(|| std::ffi::OsString::from(format!("/{v}")))
        };
        assert_eq!(
            config_path(None, env),
            (PathBuf::from("/CONTAINERS_REGISTRIES_CONF"), true)
        );
        assert_eq!(
            config_path(Some(Path::new("/flag")), env),
            (PathBuf::from("/flag"), true)
        );
        assert_eq!(
            config_path(None, |_| None),
            (PathBuf::from(DEFAULT_PATH), false)
        );
    }

    #[test]
    fn bad_aliases_and_lines_are_named() {
        let err = RegistriesConf::parse("[aliases]\n\"app\" = \"app2\"\n").unwrap_err();
        assert!(
            err.contains("\"app2\"") && err.contains("registry"),
            "{err}"
        );
        let err =
            RegistriesConf::parse("short-name-mode = \"enforcing\"\nbroken = [\n").unwrap_err();
        assert!(
            err.starts_with("line 2: ") || err.starts_with("line 3: "),
            "{err}"
        );
    }
}
