//! monitor.json: what the engine asks of one monitor (docs/engine.md).
//! The engine writes it with these same types, so the two cannot drift.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A monitor.json larger than this is not one the engine wrote.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: Handler,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin: bool,
    pub log_path: PathBuf,
    /// Bytes after which the log is rotated; 0 never rotates.
    #[serde(default = "default_log_max_size")]
    pub log_max_size: u64,
    /// Rotated files kept (`.1` is the newest); 0 drops the old log.
    #[serde(default = "default_log_max_files")]
    pub log_max_files: u32,
    pub exit_file: PathBuf,
    pub attach_socket: PathBuf,
    pub pid_file: PathBuf,
    #[serde(default)]
    pub exit_command: Option<Vec<String>>,
    /// Where the container's `die` (and `oom`) events are appended (the
    /// engine's event log directory).
    #[serde(default)]
    pub events_dir: Option<PathBuf>,
    /// The container's name and image, for its events.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    /// More attributes of its events (who manages the container, its pod).
    #[serde(default)]
    pub event_attributes: std::collections::BTreeMap<String, String>,
    /// The healthcheck the monitor runs, if any.
    #[serde(default)]
    pub health: Option<crate::health::HealthConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Handler {
    /// The runtime library, in the monitor's own process.
    Builtin {
        root: PathBuf,
        #[serde(default)]
        systemd_cgroup: bool,
    },
    /// A runc-compatible binary.
    External {
        path: PathBuf,
        root: PathBuf,
        #[serde(default)]
        systemd_cgroup: bool,
        /// Global flags before the command (runsc's `--platform=ptrace`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
    },
}

impl Handler {
    /// The external runtime's command line up to its subcommand: the
    /// binary, its state root, its global flags. None for the builtin.
    pub fn command(&self) -> Option<std::process::Command> {
        let Handler::External {
            path,
            root,
            systemd_cgroup,
            options,
        } = self
        else {
            return None;
        };
        let mut cmd = std::process::Command::new(path);
        cmd.arg("--root").arg(root);
        if *systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(options);
        Some(cmd)
    }
}

fn default_log_max_size() -> u64 {
    10 << 20
}

fn default_log_max_files() -> u32 {
    1
}

/// Rotated files beyond this would be a typo, not a policy.
const MAX_LOG_FILES: u32 = 1000;

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let bad = |msg: String| Error::Config {
            path: path.to_path_buf(),
            msg,
        };
        let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
        let mut raw = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        if raw.len() as u64 > MAX_CONFIG_BYTES {
            return Err(bad(format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let cfg: Config =
            serde_json::from_slice(&raw).map_err(|e| bad(format!("not valid: {e}")))?;
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// Writes the config where the monitor will read it (for the engine).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate().map_err(|msg| Error::Config {
            path: path.to_path_buf(),
            msg,
        })?;
        let raw = serde_json::to_vec_pretty(self).expect("a Config always serializes");
        crate::fsutil::atomic_write(path, &raw, 0o600)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        berth_runtime::id::validate(&self.id).map_err(|e| format!("id: {e}"))?;
        let (root, runtime_path) = match &self.runtime {
            Handler::Builtin { root, .. } => (root, None),
            Handler::External { path, root, .. } => (root, Some(path)),
        };
        let mut paths = vec![
            ("bundle", &self.bundle),
            ("runtime.root", root),
            ("log_path", &self.log_path),
            ("exit_file", &self.exit_file),
            ("attach_socket", &self.attach_socket),
            ("pid_file", &self.pid_file),
        ];
        if let Some(p) = runtime_path {
            paths.push(("runtime.path", p));
        }
        for (field, p) in paths {
            if !p.is_absolute() {
                return Err(format!("{field} must be an absolute path, not {p:?}"));
            }
            if p.file_name().is_none() {
                return Err(format!("{field} must name a file, not {p:?}"));
            }
        }
        if self.log_max_files > MAX_LOG_FILES {
            return Err(format!(
                "log_max_files {} is more than {MAX_LOG_FILES}",
                self.log_max_files
            ));
        }
        if let Some(argv) = &self.exit_command
            && argv.first().is_none_or(|a| a.is_empty())
        {
            return Err("exit_command needs a program as its first element".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "id": "c0ffee",
            "bundle": "/b",
            "runtime": {"kind": "builtin", "root": "/run/x"},
            "log_path": "/u/ctr.log",
            "exit_file": "/u/exit.json",
            "attach_socket": "/u/attach",
            "pid_file": "/u/pid",
            "exit_command": ["/bin/true"]
        })
    }

    fn load(v: &serde_json::Value) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("monitor.json");
        std::fs::write(&p, v.to_string()).unwrap();
        Config::load(&p)
    }

    #[test]
    fn reads_the_documented_shape_with_defaults() {
        let c = load(&sample()).unwrap();
        assert_eq!(c.log_max_size, 10 << 20);
        assert_eq!(c.log_max_files, 1);
        assert!(!c.tty && !c.stdin);
        assert_eq!(
            c.runtime,
            Handler::Builtin {
                root: "/run/x".into(),
                systemd_cgroup: false
            }
        );
        let mut v = sample();
        v["runtime"] =
            serde_json::json!({"kind": "external", "path": "/usr/bin/runc", "root": "/run/r"});
        assert!(matches!(
            load(&v).unwrap().runtime,
            Handler::External { .. }
        ));
    }

    #[test]
    fn names_what_is_wrong() {
        let cases: &[(&str, serde_json::Value, &str)] = &[
            (
                "unknown field",
                serde_json::json!("yes"),
                "unknown field `colour`",
            ),
            (
                "relative bundle",
                serde_json::json!("b"),
                "bundle must be an absolute path",
            ),
            (
                "unknown kind",
                serde_json::json!({"kind": "kata", "root": "/r"}),
                "unknown variant `kata`",
            ),
            ("bad id", serde_json::json!("../x"), "id:"),
            ("empty exit_command", serde_json::json!([]), "exit_command"),
        ];
        for (what, value, want) in cases {
            let mut v = sample();
            match *what {
                "unknown field" => v["colour"] = value.clone(),
                "relative bundle" => v["bundle"] = value.clone(),
                "unknown kind" => v["runtime"] = value.clone(),
                "bad id" => v["id"] = value.clone(),
                _ => v["exit_command"] = value.clone(),
            }
            let err = load(&v).unwrap_err().to_string();
            assert!(err.contains(want), "{what}: {err}");
            assert!(err.contains("monitor.json"), "{what}: {err}");
        }
    }

    #[test]
    fn garbled_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("monitor.json");
        let err = Config::load(&p).unwrap_err().to_string();
        assert!(err.contains("cannot open"), "{err}");
        std::fs::write(&p, b"{\"id\": ").unwrap();
        let err = Config::load(&p).unwrap_err().to_string();
        assert!(err.contains("not valid"), "{err}");
    }

    #[test]
    fn save_round_trips() {
        let c = load(&sample()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        c.save(&p).unwrap();
        assert_eq!(Config::load(&p).unwrap(), c);
    }
}
