//! `berth exec`: a new process in a running container, in the foreground
//! (its stdio, or a terminal, proxied by this process) or detached.

use std::process::Command;

use berth_runtime::{ExecFlags, ExecOptions};

use crate::engine::{Engine, not_running};
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::model::Status;

pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// USER[:GROUP], names resolved in the container's /etc files.
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub detach: bool,
    pub privileged: bool,
}

impl Engine {
    /// Runs the process; returns its exit code (0 when detached).
    pub fn exec(&self, key: &str, r: &ExecRequest) -> Result<i32> {
        let c = self.container(key)?;
        if c.state.status != Status::Running {
            return Err(not_running(&c, "exec in it"));
        }
        if r.args.is_empty() {
            return Err(Error::invalid("exec", "a command is needed"));
        }
        let user = match &r.user {
            Some(u) => {
                let rootfs = self.bundle_dir(&c.id).join("rootfs");
                let found = berth_image::spec::resolve_user(&rootfs, u)?;
                Some(format!("{}:{}", found.uid, found.gid))
            }
            None => None,
        };
        match self.handler(&c)? {
            Handler::Builtin { root } => {
                let rt = berth_runtime::Runtime::new(root, false);
                let caps = if r.privileged {
                    crate::spec::ALL_CAPS
                        .iter()
                        .map(|s| s.to_string())
                        .collect()
                } else {
                    Vec::new()
                };
                let process = rt.exec_process(
                    &c.id,
                    &ExecFlags {
                        args: r.args.clone(),
                        cwd: r.workdir.clone().map(Into::into),
                        env: r.env.clone(),
                        tty: r.tty,
                        user,
                        additional_gids: Vec::new(),
                        caps,
                        no_new_privs: false,
                        apparmor: None,
                        process_label: None,
                    },
                )?;
                let relay = if r.detach {
                    None
                } else {
                    Some(berth_runtime::foreground::SignalRelay::new()?)
                };
                let execed = rt.exec(
                    &c.id,
                    &ExecOptions {
                        process,
                        console_socket: None,
                        pid_file: None,
                        preserve_fds: 0,
                        want_pty: r.tty && !r.detach,
                        ignore_paused: false,
                        pidfd_socket: None,
                    },
                )?;
                match relay {
                    None => Ok(0),
                    Some(relay) => Ok(berth_runtime::foreground::wait(
                        &relay,
                        execed.pid,
                        execed.pty_master,
                    )?),
                }
            }
            Handler::External { name, path, root } => {
                let mut cmd = Command::new(&path);
                cmd.arg("--root").arg(&root).arg("exec");
                if r.tty {
                    cmd.arg("-t");
                }
                if r.detach {
                    if r.tty {
                        return Err(Error::invalid(
                            "exec -d -t",
                            format!("not with the external runtime {name}"),
                        ));
                    }
                    cmd.arg("-d");
                }
                if let Some(u) = &user {
                    cmd.args(["--user", u]);
                }
                if let Some(w) = &r.workdir {
                    cmd.args(["--cwd", w]);
                }
                for e in &r.env {
                    cmd.args(["--env", e]);
                }
                cmd.arg(&c.id).args(&r.args);
                let st = cmd.status().map_err(|e| Error::ExternalRuntime {
                    runtime: name.clone(),
                    why: format!("cannot run {}: {e}", path.display()),
                })?;
                Ok(st.code().unwrap_or(
                    128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(0),
                ))
            }
        }
    }
}
