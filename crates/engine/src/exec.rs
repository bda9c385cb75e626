//! `exec`: a new process in a running container, started by the
//! container's monitor (an exec session), never by forking the caller:
//! the CLI and a daemon's threads alike only talk to the monitor's socket.

use std::time::Duration;

use berth_monitor::client::{Client, Finished};

use crate::engine::{Engine, not_running};
use crate::error::{Error, Result};
use crate::model::Status;

#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// USER[:GROUP], names resolved in the container's /etc files.
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    /// The caller feeds stdin (-i); without it the process reads
    /// /dev/null.
    pub interactive: bool,
    /// Run in the background: no stdio of the caller's reaches it.
    pub detach: bool,
    /// Every capability this host can grant.
    pub privileged: bool,
    /// Killed after this long (CRI ExecSync's timeout).
    pub timeout: Option<Duration>,
    /// The terminal's size at the start.
    pub size: Option<(u16, u16)>,
}

/// A started exec session: its process and the connection to its stdio.
pub struct ExecSession {
    /// The session's ID (64 hex digits, as podman's), which `exec -d`
    /// prints and the `exec_start` event carries as `execID` (docker's
    /// attribute), so the session can be told apart from others.
    pub id: String,
    pub pid: i32,
    /// None for a detached exec.
    pub client: Option<Client>,
}

impl Engine {
    /// Starts the process in the container.
    pub fn exec_start(&self, key: &str, r: &ExecRequest) -> Result<ExecSession> {
        let c = self.container(key)?;
        if c.state.status != Status::Running {
            return Err(not_running(&c, "exec in it"));
        }
        if r.args.is_empty() {
            return Err(Error::invalid("exec", "a command is needed"));
        }
        berth_image::spec::check_env(&r.env)?;
        let user = match &r.user {
            Some(u) => {
                let rootfs = self.bundle_dir(&c.id).join("rootfs");
                let found = berth_image::spec::resolve_user(&rootfs, u)?;
                Some(format!("{}:{}", found.uid, found.gid))
            }
            None => None,
        };
        let caps = if r.privileged {
            crate::spec::all_caps_here()
        } else {
            Vec::new()
        };
        let (rows, cols) = r.size.unwrap_or((0, 0));
        let mut env = r.env.clone();
        // A terminal says what it is, as for `run -t` (docker's xterm),
        // unless the caller does.
        if r.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        let req = berth_monitor::protocol::ExecRequest {
            args: r.args.clone(),
            env,
            cwd: r.workdir.clone(),
            user,
            additional_gids: Vec::new(),
            caps,
            tty: r.tty,
            stdin: r.interactive && !r.detach,
            detach: r.detach,
            timeout_ms: r
                .timeout
                .map(|t| t.as_millis().min(u64::MAX as u128) as u64),
            rows,
            cols,
        };
        let (client, pid) = Client::exec(&self.attach_socket(&c.id), req)
            .map_err(|e| Error::Monitor(format!("exec in {}: {e}", c.name)))?;
        let id = crate::ids::new_id();
        self.emit(
            self.container_event(&c, "exec_start")
                .attr("execID", id.as_str())
                .attr("execCommand", r.args.join(" "))
                .attr("pid", pid.to_string()),
        );
        Ok(ExecSession {
            id,
            pid,
            client: (!r.detach).then_some(client),
        })
    }

    /// Runs the process to its end and returns its output (CRI ExecSync):
    /// no stdin; with a timeout, killed when it runs past it.
    pub fn exec_sync(&self, key: &str, r: &ExecRequest) -> Result<Finished> {
        let r = ExecRequest {
            interactive: false,
            detach: false,
            ..r.clone()
        };
        let mut s = self.exec_start(key, &r)?;
        let client = s.client.as_mut().expect("not detached");
        client
            .collect()
            .map_err(|e| Error::Monitor(format!("exec: {e}")))
    }
}
