//! Runtime handlers: the builtin one calls berth's runtime library in this
//! process; an external one drives any runc-compatible binary by its
//! command line. Both keep their state under berth's run root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub enum Handler {
    Builtin {
        root: PathBuf,
    },
    External {
        name: String,
        path: PathBuf,
        root: PathBuf,
        /// Global flags, before every command.
        options: Vec<String>,
    },
}

/// What the runtime says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtStatus {
    Created,
    Running,
    Paused,
    Stopped,
    /// The runtime has no such container (never created, or deleted, or
    /// its state went with a reboot).
    Missing,
}

impl Handler {
    /// `name`: "berth" (or empty) for the builtin one, "runc"/"crun" looked
    /// up in PATH, or a path to a runtime binary.
    pub fn resolve(name: &str, run_root: &Path) -> Result<Handler> {
        if name.is_empty() || name == "berth" {
            return Ok(Handler::Builtin {
                root: run_root.join("runtime"),
            });
        }
        let path = if name.contains('/') {
            PathBuf::from(name)
        } else {
            berth_base::paths::find_program(name).ok_or_else(|| {
                Error::invalid(format!("--runtime {name}"), "no such runtime in PATH")
            })?
        };
        if !path.is_file() {
            return Err(Error::invalid(
                format!("--runtime {name}"),
                format!("{} is not a file", path.display()),
            ));
        }
        let short = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runtime".into());
        Ok(Handler::External {
            root: run_root.join(format!("runtime-{short}")),
            name: name.to_string(),
            path,
            options: Vec::new(),
        })
    }

    /// The handler with global `flags` (podman's --runtime-flag form,
    /// `name=value` or `--name=value`); the builtin one takes none.
    pub fn with_flags(self, flags: &[String]) -> Result<Handler> {
        match self {
            Handler::Builtin { .. } if flags.is_empty() => Ok(self),
            Handler::Builtin { .. } => Err(Error::invalid(
                "--runtime-flag",
                "the builtin runtime takes no flags",
            )),
            Handler::External {
                name,
                path,
                root,
                mut options,
            } => {
                options.extend(flags.iter().map(|f| {
                    if f.starts_with('-') {
                        f.clone()
                    } else {
                        format!("--{f}")
                    }
                }));
                Ok(Handler::External {
                    name,
                    path,
                    root,
                    options,
                })
            }
        }
    }

    /// The binary's file name ("runsc"), for rules of a runtime's own.
    pub fn binary_name(&self) -> Option<String> {
        match self {
            Handler::Builtin { .. } => None,
            Handler::External { path, .. } => {
                path.file_name().map(|n| n.to_string_lossy().into_owned())
            }
        }
    }

    pub fn root(&self) -> &Path {
        match self {
            Handler::Builtin { root } | Handler::External { root, .. } => root,
        }
    }

    /// The same handler as the monitor's config names it.
    pub fn for_monitor(&self) -> berth_monitor::Handler {
        match self {
            Handler::Builtin { root } => berth_monitor::Handler::Builtin {
                root: root.clone(),
                systemd_cgroup: false,
            },
            Handler::External {
                path,
                root,
                options,
                ..
            } => berth_monitor::Handler::External {
                path: path.clone(),
                root: root.clone(),
                systemd_cgroup: false,
                options: options.clone(),
            },
        }
    }

    fn builtin(root: &Path) -> berth_runtime::Runtime {
        berth_runtime::Runtime::new(root, false)
    }

    fn external(&self, args: &[&str]) -> Result<String> {
        self.external_with_input(args, &[])
    }

    /// Runs the external runtime with `input` on its stdin.
    fn external_with_input(&self, args: &[&str], input: &[u8]) -> Result<String> {
        let Handler::External {
            name,
            path,
            root,
            options,
        } = self
        else {
            unreachable!("external only")
        };
        let failed = |e: std::io::Error| Error::ExternalRuntime {
            runtime: name.clone(),
            why: format!("cannot run {}: {e}", path.display()),
        };
        let mut child = Command::new(path)
            .arg("--root")
            .arg(root)
            .args(options)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(failed)?;
        // Small enough for the pipe: written whole before the output is
        // read.
        let mut stdin = child.stdin.take().expect("piped");
        let wrote = stdin.write_all(input);
        drop(stdin);
        let out = child.wait_with_output().map_err(failed)?;
        wrote.map_err(failed)?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(Error::ExternalRuntime {
                runtime: name.clone(),
                why: format!("{} failed: {}", args.join(" "), err.trim()),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn start(&self, id: &str) -> Result<()> {
        match self {
            Handler::Builtin { root } => Ok(Self::builtin(root).start(id)?),
            Handler::External { .. } => self.external(&["start", id]).map(drop),
        }
    }

    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        match self {
            Handler::Builtin { root } => Ok(Self::builtin(root).kill(id, signal, all)?),
            Handler::External { .. } => {
                let sig = signal.to_string();
                let mut args = vec!["kill"];
                if all {
                    args.push("--all");
                }
                args.extend([id, sig.as_str()]);
                self.external(&args).map(drop)
            }
        }
    }

    /// Forgets the container (killing what is left of it); missing is fine.
    pub fn delete(&self, id: &str) -> Result<()> {
        match self {
            Handler::Builtin { root } => match Self::builtin(root).delete(id, true) {
                Err(berth_runtime::Error::NotExist(_)) => Ok(()),
                r => Ok(r?),
            },
            Handler::External { .. } => {
                if self.status(id)? == RtStatus::Missing {
                    return Ok(());
                }
                self.external(&["delete", "--force", id]).map(drop)
            }
        }
    }

    pub fn status(&self, id: &str) -> Result<RtStatus> {
        Ok(self.state(id)?.0)
    }

    /// What the runtime says of the container, and its init's pid (0 when
    /// it has none).
    pub fn state(&self, id: &str) -> Result<(RtStatus, i32)> {
        let (raw, pid) = match self {
            Handler::Builtin { root } => match Self::builtin(root).state(id) {
                Ok(s) => (s.status, s.pid),
                Err(berth_runtime::Error::NotExist(_)) => return Ok((RtStatus::Missing, 0)),
                Err(e) => return Err(e.into()),
            },
            Handler::External { .. } => match self.external(&["state", id]) {
                Ok(out) => {
                    let v = serde_json::from_str::<serde_json::Value>(&out).unwrap_or_default();
                    (
                        v["status"].as_str().unwrap_or_default().to_string(),
                        v["pid"].as_i64().unwrap_or(0) as i32,
                    )
                }
                // runc says "does not exist"; treat any failure of state as
                // missing only when the state dir is gone.
                Err(e) => {
                    if self.root().join(id).exists() {
                        return Err(e);
                    }
                    return Ok((RtStatus::Missing, 0));
                }
            },
        };
        let status = match raw.as_str() {
            "created" | "creating" => RtStatus::Created,
            "running" => RtStatus::Running,
            "paused" => RtStatus::Paused,
            _ => RtStatus::Stopped,
        };
        Ok((status, pid))
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        match self {
            Handler::Builtin { root } => Ok(Self::builtin(root).pause(id)?),
            Handler::External { .. } => self.external(&["pause", id]).map(drop),
        }
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        match self {
            Handler::Builtin { root } => Ok(Self::builtin(root).resume(id)?),
            Handler::External { .. } => self.external(&["resume", id]).map(drop),
        }
    }

    /// New cgroup limits for a running container.
    pub fn update(&self, id: &str, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
        match self {
            Handler::Builtin { root } => Ok(Self::builtin(root).update(id, r)?),
            Handler::External { .. } => {
                let json = serde_json::to_vec(r).expect("resources serialize");
                self.external_with_input(&["update", "--resources", "-", id], &json)
                    .map(drop)
            }
        }
    }

    /// Resource usage from the container's cgroup, in runc's `events
    /// --stats` shape.
    pub fn stats(&self, id: &str) -> Result<serde_json::Value> {
        match self {
            Handler::Builtin { root } => {
                let st = Self::builtin(root).stats(id)?;
                Ok(serde_json::to_value(st).expect("stats serialize"))
            }
            Handler::External { .. } => {
                let out = self.external(&["events", "--stats", id])?;
                let v: serde_json::Value =
                    serde_json::from_str(&out).map_err(|e| Error::ExternalRuntime {
                        runtime: id.into(),
                        why: format!("events output: {e}"),
                    })?;
                Ok(v["data"].clone())
            }
        }
    }

    /// Host pids of the container's processes.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        match self {
            Handler::Builtin { root } => Ok(Self::builtin(root).pids(id)?),
            Handler::External { .. } => {
                let out = self.external(&["ps", "--format", "json", id])?;
                serde_json::from_str(&out).map_err(|e| Error::ExternalRuntime {
                    runtime: id.into(),
                    why: format!("ps output: {e}"),
                })
            }
        }
    }
}
