//! Registry credentials: podman's auth.json (written by `berth login`) and
//! docker's ~/.docker/config.json (read only). Both map a registry (or a
//! `registry/repository` prefix) to base64("user:password"). Credential
//! helpers are not run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    auth: String,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// The auth.json podman uses for this user: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`, else root's
/// `/run/containers/0/auth.json`, an ordinary user's
/// `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config`), which
/// containers' tools read too (/run/containers is root's).
pub fn default_auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return p.into();
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&d).join("containers/auth.json");
    }
    let uid = berth_base::rootless::host_user().unwrap_or(0);
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    if let (true, Some(c)) = (uid != 0, config) {
        return c.join("containers/auth.json");
    }
    PathBuf::from(format!("/run/containers/{uid}/auth.json"))
}

fn docker_config() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(Path::new(&d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker/config.json"))
}

/// Where credentials are looked up, in order.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    pub auth_file: PathBuf,
    pub docker_config: Option<PathBuf>,
}

impl Default for CredentialStore {
    fn default() -> Self {
        CredentialStore {
            auth_file: default_auth_file(),
            docker_config: docker_config(),
        }
    }
}

impl CredentialStore {
    pub fn with_auth_file(auth_file: Option<PathBuf>) -> CredentialStore {
        let mut s = CredentialStore::default();
        if let Some(f) = auth_file {
            s.auth_file = f;
        }
        s
    }

    /// Credentials for `host` and `repository`: the most specific key wins
    /// (`host/a/b`, then `host/a`, then `host`), auth.json before docker's.
    pub fn lookup(&self, host: &str, repository: &str) -> Result<Option<Credentials>> {
        let files = std::iter::once(Some(&self.auth_file))
            .chain(std::iter::once(self.docker_config.as_ref()));
        for file in files.flatten() {
            let Some(auths) = read(file)? else { continue };
            let mut key = format!("{host}/{repository}");
            loop {
                if let Some(c) = entry(&auths, &key, file)? {
                    return Ok(Some(c));
                }
                match key.rfind('/') {
                    Some(i) => key.truncate(i),
                    None => break,
                }
            }
            if host == "docker.io" {
                for k in [
                    "https://index.docker.io/v1/",
                    "index.docker.io",
                    "registry-1.docker.io",
                ] {
                    if let Some(c) = entry(&auths, k, file)? {
                        return Ok(Some(c));
                    }
                }
            }
            for (k, _) in auths.auths.iter() {
                // docker writes keys as URLs: https://host/v1/
                let bare = k
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or("");
                if bare == host
                    && k.contains("://")
                    && let Some(c) = entry(&auths, k, file)?
                {
                    return Ok(Some(c));
                }
            }
        }
        Ok(None)
    }

    /// Stores credentials for `key` (a host or `host/repo`) in auth.json,
    /// replacing the file atomically with mode 0600.
    pub fn store(&self, key: &str, creds: &Credentials) -> Result<()> {
        let mut file = read(&self.auth_file)?.unwrap_or_default();
        let token = STANDARD.encode(format!("{}:{}", creds.username, creds.password));
        file.auths.insert(
            key.to_string(),
            AuthEntry {
                auth: token,
                other: BTreeMap::new(),
            },
        );
        write(&self.auth_file, &file)
    }

    /// Removes `key` from auth.json; false if it was not there.
    pub fn remove(&self, key: &str) -> Result<bool> {
        let Some(mut file) = read(&self.auth_file)? else {
            return Ok(false);
        };
        let had = file.auths.remove(key).is_some();
        if had {
            write(&self.auth_file, &file)?;
        }
        Ok(had)
    }
}

fn read(path: &Path) -> Result<Option<AuthFile>> {
    match std::fs::read(path) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Some(AuthFile::default())),
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::invalid(path.display().to_string(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("read {}", path.display())),
    }
}

fn entry(file: &AuthFile, key: &str, path: &Path) -> Result<Option<Credentials>> {
    let Some(e) = file.auths.get(key) else {
        return Ok(None);
    };
    if e.auth.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| Error::invalid(format!("{}: auths.{key}.auth", path.display()), why);
    let raw = STANDARD
        .decode(e.auth.trim())
        .map_err(|_| bad("not base64"))?;
    let s = String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
    let (u, p) = s.split_once(':').ok_or_else(|| bad("not user:password"))?;
    Ok(Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    }))
}

fn write(path: &Path, file: &AuthFile) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .ctx(|| format!("create {}", tmp.display()))?;
    let body = serde_json::to_vec_pretty(file).expect("auth file serialises");
    f.write_all(&body)
        .and_then(|_| f.sync_all())
        .ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_lookup_remove() {
        let d = tempfile::tempdir().unwrap();
        let docker = d.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}}}"#,
        )
        .unwrap();
        let s = CredentialStore {
            auth_file: d.path().join("auth.json"),
            docker_config: Some(docker),
        };
        let hub = s.lookup("docker.io", "library/busybox").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        assert!(s.lookup("example.com", "x").unwrap().is_none());
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        s.store("example.com", &c).unwrap();
        let mut c2 = c.clone();
        c2.username = "team".into();
        s.store("example.com/team", &c2).unwrap();
        assert_eq!(s.lookup("example.com", "x/y").unwrap().unwrap(), c);
        assert_eq!(s.lookup("example.com", "team/app").unwrap().unwrap(), c2);
        assert!(s.remove("example.com").unwrap());
        assert!(!s.remove("example.com").unwrap());
        assert!(s.lookup("example.com", "x").unwrap().is_none());
    }
}
