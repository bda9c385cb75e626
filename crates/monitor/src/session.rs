//! Exec sessions: a new process in the container, started by the monitor
//! (so no caller of the engine, a daemon with threads say, ever forks into
//! a container) with pipes or a pty of its own, its output relayed to the
//! one client that asked for it, its exit code reported to that client.
//!
//! The process is the monitor's child: the builtin runtime forks it from
//! here (the monitor is single-threaded), and an external runtime's
//! `exec --detach` leaves it to the monitor, the subreaper.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use rustix::pipe::{PipeFlags, pipe_with};

use crate::config::{Config, Handler};
use crate::error::{Context, Error, Result};
use crate::pio::Pio;
use crate::protocol::ExecRequest;

pub struct Session {
    /// The client that asked for it; None once it went away (or for a
    /// detached exec): output is then read and dropped.
    pub client: Option<u64>,
    pub pid: i32,
    /// None for a detached exec without a tty: nothing to read.
    pub io: Option<Pio>,
    pub status: Option<i32>,
    pub deadline: Option<Instant>,
    pub timed_out: bool,
    /// Set when the process exited: output is drained until then.
    pub drain_until: Option<Instant>,
    pub last_output: Instant,
}

fn devnull() -> Result<OwnedFd> {
    Ok(File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .ctx(|| "open /dev/null")?
        .into())
}

fn flags(req: &ExecRequest) -> berth_runtime::ExecFlags {
    berth_runtime::ExecFlags {
        args: req.args.clone(),
        cwd: req.cwd.clone().map(Into::into),
        env: req.env.clone(),
        tty: req.tty,
        user: req.user.clone(),
        additional_gids: req.additional_gids.clone(),
        caps: req.caps.clone(),
        no_new_privs: false,
        apparmor: None,
        process_label: None,
    }
}

/// The process's ends of its stdio and the monitor's, for a non-tty exec.
struct Pipes {
    child: [OwnedFd; 3],
    io: Option<Pio>,
}

fn pipes(req: &ExecRequest) -> Result<Pipes> {
    if req.detach {
        return Ok(Pipes {
            child: [devnull()?, devnull()?, devnull()?],
            io: None,
        });
    }
    let pipe = || pipe_with(PipeFlags::CLOEXEC).ctx(|| "create a stdio pipe");
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (child_in, stdin) = if req.stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (devnull()?, None)
    };
    Ok(Pipes {
        child: [child_in, out_w, err_w],
        io: Some(Pio::new(out_r, Some(err_r), stdin, false)),
    })
}

fn tty_io(req: &ExecRequest, master: OwnedFd) -> Result<Pio> {
    let stdin = if req.stdin && !req.detach {
        Some(master.try_clone().ctx(|| "duplicate the pty master")?)
    } else {
        None
    };
    let io = Pio::new(master, None, stdin, true);
    if req.rows > 0 && req.cols > 0 {
        io.resize(req.rows, req.cols);
    }
    Ok(io)
}

/// Starts the process; returns the session (without its client).
pub fn start(cfg: &Config, req: &ExecRequest) -> Result<Session> {
    if req.args.is_empty() {
        return Err(Error::Exec("a command is needed".into()));
    }
    let (pid, io) = match &cfg.runtime {
        Handler::Builtin {
            root,
            systemd_cgroup,
        } => builtin(cfg, req, root, *systemd_cgroup)?,
        Handler::External { .. } => external(cfg, req)?,
    };
    Ok(Session {
        client: None,
        pid,
        io,
        status: None,
        deadline: req
            .timeout_ms
            .map(|ms| Instant::now() + std::time::Duration::from_millis(ms)),
        timed_out: false,
        drain_until: None,
        last_output: Instant::now(),
    })
}

fn runtime_error(e: impl std::fmt::Display) -> Error {
    Error::Exec(e.to_string())
}

/// The process the flags make, with the pty's first size: set before it
/// runs, so that what it prints first already fits.
fn with_size(mut p: oci_spec::runtime::Process, req: &ExecRequest) -> oci_spec::runtime::Process {
    if req.tty && req.rows > 0 && req.cols > 0 {
        let size = oci_spec::runtime::BoxBuilder::default()
            .height(u64::from(req.rows))
            .width(u64::from(req.cols))
            .build()
            .expect("a size with both fields");
        p.set_console_size(Some(size));
    }
    p
}

fn builtin(
    cfg: &Config,
    req: &ExecRequest,
    root: &Path,
    systemd_cgroup: bool,
) -> Result<(i32, Option<Pio>)> {
    let rt = berth_runtime::Runtime::new(root, systemd_cgroup);
    let process = with_size(
        rt.exec_process(&cfg.id, &flags(req))
            .map_err(runtime_error)?,
        req,
    );
    let mut opts = berth_runtime::ExecOptions {
        process,
        console_socket: None,
        pid_file: None,
        preserve_fds: 0,
        want_pty: req.tty,
        ignore_paused: false,
        pidfd_socket: None,
        stdio: None,
    };
    if req.tty {
        let execed = rt.exec(&cfg.id, &opts).map_err(runtime_error)?;
        let master = execed
            .pty_master
            .ok_or_else(|| runtime_error("the runtime gave no pty"))?;
        return Ok((execed.pid, Some(tty_io(req, master)?)));
    }
    let p = pipes(req)?;
    opts.stdio = Some(p.child);
    let execed = rt.exec(&cfg.id, &opts).map_err(runtime_error)?;
    Ok((execed.pid, p.io))
}

/// A private directory for the files an external runtime's exec takes
/// (the process, its pid file, the console socket); gone when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let base = std::env::temp_dir();
        for n in 0..100 {
            let dir = base.join(format!("berth-exec-{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Scratch(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).ctx(|| format!("create {}", dir.display())),
            }
        }
        Err(Error::Io {
            what: format!("create an exec directory in {}", base.display()),
            source: std::io::ErrorKind::AlreadyExists.into(),
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn external(cfg: &Config, req: &ExecRequest) -> Result<(i32, Option<Pio>)> {
    let raw = std::fs::read(cfg.bundle.join("config.json"))
        .ctx(|| format!("read {}/config.json", cfg.bundle.display()))?;
    let spec: oci_spec::runtime::Spec =
        berth_runtime::config::parse(&raw, "config.json").map_err(runtime_error)?;
    let process = with_size(
        berth_runtime::exec_process_from(spec.process().as_ref(), &flags(req))
            .map_err(runtime_error)?,
        req,
    );
    let scratch = Scratch::new()?;
    let process_file = scratch.0.join("process.json");
    std::fs::write(
        &process_file,
        serde_json::to_vec(&process).expect("a process serializes"),
    )
    .ctx(|| format!("write {}", process_file.display()))?;
    let pid_file = scratch.0.join("pid");
    let (Some(mut cmd), Handler::External { path, .. }) = (cfg.runtime.command(), &cfg.runtime)
    else {
        unreachable!("an external runtime")
    };
    cmd.arg("exec")
        .arg("--process")
        .arg(&process_file)
        .arg("--detach")
        .arg("--pid-file")
        .arg(&pid_file);
    let (err_r, err_w) = pipe_with(PipeFlags::CLOEXEC).ctx(|| "create a pipe")?;
    let (console, io) = if req.tty {
        let console = crate::handler::ConsoleSocket::new()?;
        cmd.arg("--console-socket").arg(&console.path);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err_w));
        (Some(console), None)
    } else {
        let p = pipes(req)?;
        let [i, o, e] = p.child;
        // The runtime's own messages come on its stderr, which is the
        // process's: before the process runs only the runtime writes there.
        drop(err_w);
        cmd.stdin(Stdio::from(i))
            .stdout(Stdio::from(o))
            .stderr(Stdio::from(e));
        (None, p.io)
    };
    cmd.arg(&cfg.id);
    let status = cmd.status().ctx(|| format!("run {}", path.display()))?;
    drop(cmd);
    if !status.success() {
        let said = match &io {
            Some(pio) => pio.outputs[1]
                .as_ref()
                .map(crate::handler::drain)
                .unwrap_or_default(),
            None => crate::handler::drain(&err_r),
        };
        return Err(runtime_error(format!(
            "{} exec failed ({status}): {said}",
            path.display()
        )));
    }
    let pid = crate::handler::read_pid(&pid_file)?;
    let io = match console {
        Some(c) => Some(tty_io(req, c.receive(path)?)?),
        None => io,
    };
    Ok((pid, io))
}
