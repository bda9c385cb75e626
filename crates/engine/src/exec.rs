//! `berth exec`: a new process in a running container, in the foreground
//! (its stdio, or a terminal, proxied by this process) or detached.

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use berth_runtime::{ExecFlags, ExecOptions};

use crate::engine::{Engine, not_running};
use crate::error::{Context, Error, Result};
use crate::handler::Handler;
use crate::model::Status;

pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// USER[:GROUP], names resolved in the container's /etc files.
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    /// Hand the caller's stdin to the process (-i); without it the
    /// process reads /dev/null.
    pub interactive: bool,
    /// Run in the background: no stdio of the caller's reaches it.
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
                let stdio = exec_stdio(r).ctx(|| "open /dev/null for the exec's stdio")?;
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
                        stdio,
                    },
                )?;
                match relay {
                    None => Ok(0),
                    Some(relay) => Ok(berth_runtime::foreground::wait(
                        &relay,
                        execed.pid,
                        execed.pty_master,
                        r.interactive,
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
                if !r.interactive || r.detach {
                    cmd.stdin(Stdio::null());
                }
                if r.detach {
                    cmd.stdout(Stdio::null()).stderr(Stdio::null());
                }
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

/// The exec'd process's stdin, stdout and stderr where they are not simply
/// the caller's: /dev/null for stdin without -i, and for all three when
/// detached (the process outlives this command and must not read or write
/// the user's terminal afterwards). None: the caller's own.
fn exec_stdio(r: &ExecRequest) -> std::io::Result<Option<[OwnedFd; 3]>> {
    if r.interactive && !r.detach {
        return Ok(None);
    }
    let null = || -> std::io::Result<OwnedFd> {
        Ok(std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?
            .into())
    };
    let inherit = |fd: i32| -> std::io::Result<OwnedFd> {
        // SAFETY: 1 and 2 are open in a CLI process; the dup is ours.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        b.try_clone_to_owned()
    };
    if r.detach {
        return Ok(Some([null()?, null()?, null()?]));
    }
    Ok(Some([null()?, inherit(1)?, inherit(2)?]))
}
