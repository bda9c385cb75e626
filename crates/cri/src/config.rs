//! berthd's configuration: /etc/berth/berthd.toml, every key optional
//! (docs/berthd.toml.example lists them with their defaults). Flags given
//! to berthd override the file.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_PATH: &str = "/etc/berth/berthd.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The CRI socket kubelet and crictl connect to.
    pub listen: PathBuf,
    /// berth's persistent state (shared with the `berth` CLI).
    pub root: PathBuf,
    /// berth's volatile state (shared with the `berth` CLI).
    pub run_root: PathBuf,
    /// Serve Prometheus metrics over HTTP here.
    pub metrics: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// A tracing filter: error, warn, info, debug, trace.
    pub log_level: String,
    /// kubelet's --cgroup-driver: how the cgroup parents it sends are
    /// spelled (paths, or systemd slice names).
    pub cgroup_driver: CgroupDriver,
    /// The handler a pod without a RuntimeClass runs with.
    pub default_runtime: String,
    /// RuntimeClass handlers by name: `[runtimes.crun] path = "/usr/bin/crun"`.
    pub runtimes: BTreeMap<String, Runtime>,
    /// The berth network pods are attached to.
    pub network: String,
    /// The seccomp profile of a container whose request names none:
    /// "unconfined" (what CRI's API says an unset profile means) or
    /// "runtime/default".
    pub seccomp_default: String,
    /// Host paths containers may mount (after symlinks are resolved);
    /// empty: any.
    pub allowed_host_paths: Vec<PathBuf>,
    /// registries.conf for pulls: short names, mirrors, insecure
    /// registries (unset: /etc/containers/registries.conf, if present).
    pub registries_conf: Option<PathBuf>,
    /// Where CDI device specs (JSON or YAML) are read from; a later
    /// directory's device replaces an earlier one's of the same name.
    pub cdi_spec_dirs: Vec<PathBuf>,
    pub streaming: Streaming,
}

/// A runtime handler (RuntimeClass).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// "berth" for the builtin runtime, or a runc-compatible binary: a
    /// name looked up in PATH or an absolute path.
    pub path: String,
    /// Global flags the binary gets before every command
    /// (`options = ["--platform=ptrace"]` for runsc).
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Streaming {
    /// Where the exec/attach/port-forward server listens (kubelet's
    /// apiserver proxies to it).
    pub address: IpAddr,
    /// 0: any free port.
    pub port: u16,
    /// How long a URL handed out by Exec, Attach or PortForward stays
    /// usable.
    pub token_ttl_secs: u64,
    /// A streaming session without traffic for this long is closed.
    pub idle_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: PathBuf::from("/run/berth/berthd.sock"),
            root: PathBuf::from("/var/lib/berth"),
            run_root: PathBuf::from("/run/berth"),
            metrics: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            default_runtime: "berth".into(),
            runtimes: BTreeMap::new(),
            network: "berth".into(),
            seccomp_default: "unconfined".into(),
            allowed_host_paths: Vec::new(),
            registries_conf: None,
            cdi_spec_dirs: berth_engine::cdi::DEFAULT_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
            streaming: Streaming::default(),
        }
    }
}

impl Default for Streaming {
    fn default() -> Self {
        Streaming {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            token_ttl_secs: 60,
            idle_timeout_secs: 4 * 3600,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

impl Config {
    /// The file at `path`; a missing file at the default path is the
    /// defaults (a missing file named explicitly is an error).
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let c: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            why: e.to_string(),
        })?;
        c.validate().map_err(|why| ConfigError::Invalid {
            path: path.into(),
            why,
        })?;
        Ok(c)
    }

    /// What the file cannot say: checked after flags are applied too.
    pub fn validate(&self) -> Result<(), String> {
        for (what, p) in [
            ("listen", &self.listen),
            ("root", &self.root),
            ("run_root", &self.run_root),
        ] {
            if !p.is_absolute() {
                return Err(format!("{what} must be an absolute path, not {p:?}"));
            }
        }
        if !matches!(
            self.seccomp_default.as_str(),
            "unconfined" | "runtime/default"
        ) {
            return Err(format!(
                "seccomp_default {:?}: expected \"unconfined\" or \"runtime/default\"",
                self.seccomp_default
            ));
        }
        if self.runtime(&self.default_runtime).is_none() {
            return Err(format!(
                "default_runtime {:?} is not berth nor a [runtimes] entry",
                self.default_runtime
            ));
        }
        for (name, r) in &self.runtimes {
            if name.is_empty() || name.contains(['/', ' ']) {
                return Err(format!(
                    "runtime handler name {name:?}: no slashes or spaces"
                ));
            }
            if r.path.is_empty() {
                return Err(format!("runtimes.{name}.path is empty"));
            }
        }
        for p in &self.allowed_host_paths {
            if !p.is_absolute() {
                return Err(format!("allowed_host_paths: {p:?} is not absolute"));
            }
        }
        if self.streaming.token_ttl_secs == 0 {
            return Err("streaming.token_ttl_secs must be above zero".into());
        }
        Ok(())
    }

    /// The runtime a handler name stands for: the engine's runtime
    /// string. "" is the default handler; "berth" is always there.
    pub fn runtime(&self, handler: &str) -> Option<String> {
        let name = if handler.is_empty() {
            self.default_runtime.as_str()
        } else {
            handler
        };
        match self.runtimes.get(name) {
            Some(r) => Some(r.path.clone()),
            None if name == "berth" => Some("berth".into()),
            None => None,
        }
    }

    /// The global flags of the runtime a handler names.
    pub fn runtime_flags(&self, handler: &str) -> Vec<String> {
        let name = if handler.is_empty() {
            self.default_runtime.as_str()
        } else {
            handler
        };
        self.runtimes
            .get(name)
            .map(|r| r.options.clone())
            .unwrap_or_default()
    }

    /// Every handler name kubelet may use, the default first.
    pub fn handler_names(&self) -> Vec<String> {
        let mut v = vec![self.default_runtime.clone()];
        for n in std::iter::once("berth").chain(self.runtimes.keys().map(String::as_str)) {
            if !v.iter().any(|x| x == n) {
                v.push(n.to_string());
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_matches_the_defaults() {
        let text = include_str!("../../../docs/berthd.toml.example");
        // Every key of the example is commented out: it documents the
        // defaults.
        let uncommented: String = text
            .lines()
            .filter_map(|l| {
                let x = l.strip_prefix("# ")?;
                let key = x.split(" = ").next()?;
                let setting =
                    x.contains(" = ") && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                (x.starts_with('[') || setting).then(|| format!("{x}\n"))
            })
            .collect();
        let c: Config = toml::from_str(&uncommented).expect("example parses");
        let d = Config::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.root, d.root);
        assert_eq!(c.seccomp_default, d.seccomp_default);
        assert_eq!(c.streaming.token_ttl_secs, d.streaming.token_ttl_secs);
        assert!(c.runtimes.contains_key("runc"));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_values_are_named() {
        let e = toml::from_str::<Config>("listen = 3").unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e = toml::from_str::<Config>("lissen = \"/x\"").unwrap_err();
        assert!(e.to_string().contains("lissen"), "{e}");
        let c = Config {
            default_runtime: "kata".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("kata"));
        let c = Config {
            listen: "rel.sock".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("listen"));
    }

    #[test]
    fn handlers_resolve_by_name() {
        let mut c = Config::default();
        c.runtimes.insert(
            "crun".into(),
            Runtime {
                path: "/usr/bin/crun".into(),
                options: vec!["--log-level=debug".into()],
            },
        );
        assert_eq!(c.runtime("").as_deref(), Some("berth"));
        assert_eq!(c.runtime("crun").as_deref(), Some("/usr/bin/crun"));
        assert_eq!(c.runtime_flags("crun"), ["--log-level=debug"]);
        assert!(c.runtime_flags("").is_empty());
        assert_eq!(c.runtime("runsc"), None);
        assert_eq!(c.handler_names(), ["berth", "crun"]);
    }
}
