//! podman's configuration files where the user names them: the file
//! `CONTAINERS_CONF` points at (containers.conf: the defaults of `run` and
//! `create`, the runtime and the runtimes table) and the one
//! `CONTAINERS_STORAGE_CONF` points at (storage.conf: where the store
//! lives). The system-wide files are not read: their defaults are
//! podman's choices (crun, ping closed to all but root), not the user's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const CONTAINERS_CONF: &str = "CONTAINERS_CONF";
pub const STORAGE_CONF: &str = "CONTAINERS_STORAGE_CONF";

/// What berth takes of a containers.conf.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ContainersConf {
    pub containers: Containers,
    pub engine: EngineConf,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Containers {
    /// `TYPE=SOFT:HARD`, as --ulimit takes them.
    pub default_ulimits: Vec<String>,
    pub dns_servers: Vec<String>,
    pub dns_searches: Vec<String>,
    pub dns_options: Vec<String>,
    /// `KEY=VALUE`, before the image's and the flags'.
    pub env: Vec<String>,
    /// `key=value`, under --sysctl.
    pub default_sysctls: Vec<String>,
    pub pids_limit: Option<i64>,
    pub shm_size: Option<String>,
    pub init: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EngineConf {
    /// The default runtime's name.
    pub runtime: Option<String>,
    /// Name -> paths to look for it at, the first that exists wins.
    pub runtimes: BTreeMap<String, Vec<PathBuf>>,
}

impl ContainersConf {
    /// The file `CONTAINERS_CONF` names, or the defaults when unset.
    pub fn from_env() -> Result<ContainersConf> {
        match std::env::var_os(CONTAINERS_CONF) {
            Some(p) if !p.is_empty() => Self::load(Path::new(&p)),
            _ => Ok(ContainersConf::default()),
        }
    }

    pub fn load(path: &Path) -> Result<ContainersConf> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Os {
            what: format!("{CONTAINERS_CONF}: read {}", path.display()),
            source: e,
        })?;
        toml::from_str(&text).map_err(|e| {
            Error::invalid(
                format!("{CONTAINERS_CONF} {}", path.display()),
                e.to_string(),
            )
        })
    }

    /// `--runtime NAME` through the runtimes table: the first of its paths
    /// that exists; a name the table does not have stays as it is.
    pub fn runtime_path(&self, name: &str) -> Result<String> {
        match self.engine.runtimes.get(name) {
            None => Ok(name.to_string()),
            Some(paths) => paths
                .iter()
                .find(|p| p.is_file())
                .map(|p| p.display().to_string())
                .ok_or_else(|| {
                    Error::invalid(
                        format!("runtime {name}"),
                        format!(
                            "none of the paths {CONTAINERS_CONF}'s [engine.runtimes] gives exists: {}",
                            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                }),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StorageFile {
    storage: Storage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Storage {
    graphroot: Option<PathBuf>,
    runroot: Option<PathBuf>,
}

/// The store root and run root a storage.conf named by
/// `CONTAINERS_STORAGE_CONF` gives: its graphroot and runroot, each with
/// `berth` below it (berth's layout is its own and must not mix with
/// podman's in one directory). None for what it does not say.
pub fn storage_roots() -> Result<(Option<PathBuf>, Option<PathBuf>)> {
    let Some(p) = std::env::var_os(STORAGE_CONF).filter(|p| !p.is_empty()) else {
        return Ok((None, None));
    };
    let path = PathBuf::from(p);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Os {
        what: format!("{STORAGE_CONF}: read {}", path.display()),
        source: e,
    })?;
    let f: StorageFile = toml::from_str(&text)
        .map_err(|e| Error::invalid(format!("{STORAGE_CONF} {}", path.display()), e.to_string()))?;
    let sub = |p: Option<PathBuf>| p.map(|p| p.join("berth"));
    Ok((sub(f.storage.graphroot), sub(f.storage.runroot)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_conf_gives_defaults_and_runtimes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("containers.conf");
        let runc = d.path().join("my-runc");
        std::fs::write(&runc, "").unwrap();
        std::fs::write(
            &p,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:2048\"]\ndns_servers = [\"10.0.0.1\"]\nenv = [\"A=1\"]\npids_limit = 100\nunknown_key = 1\n[engine]\nruntime = \"fast\"\n[engine.runtimes]\nfast = [\"/nonexistent\", \"{}\"]\n[network]\nnetwork_backend = \"cni\"\n",
                runc.display()
            ),
        )
        .unwrap();
        let c = ContainersConf::load(&p).unwrap();
        assert_eq!(c.containers.default_ulimits, ["nofile=1024:2048"]);
        assert_eq!(c.containers.pids_limit, Some(100));
        assert_eq!(c.engine.runtime.as_deref(), Some("fast"));
        assert_eq!(c.runtime_path("fast").unwrap(), runc.display().to_string());
        assert_eq!(c.runtime_path("runc").unwrap(), "runc");
        std::fs::write(&p, "[engine.runtimes]\nslow = [\"/nonexistent\"]\n").unwrap();
        let err = ContainersConf::load(&p)
            .unwrap()
            .runtime_path("slow")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent"), "{err}");
        std::fs::write(&p, "[containers\n").unwrap();
        let err = ContainersConf::load(&p).unwrap_err().to_string();
        assert!(err.contains("CONTAINERS_CONF"), "{err}");
    }
}
