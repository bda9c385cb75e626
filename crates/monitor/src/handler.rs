//! Creating the container through its runtime handler, with the stdio
//! the monitor will hold: pipes (stdin only when asked for) or a pty.
//! The container is created, not started: the engine starts it.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::pipe::{PipeFlags, pipe_with};

use crate::config::{Config, Handler};
use crate::error::{Context, Error, Result};

/// The monitor's ends of the container's stdio.
pub struct Io {
    /// The stdout pipe's read end, or the pty master.
    pub stdout: OwnedFd,
    /// None for a tty: everything comes through the master.
    pub stderr: Option<OwnedFd>,
    /// The stdin pipe's write end or a duplicate of the master; None when
    /// the container's stdin is not open to attach clients.
    pub stdin: Option<OwnedFd>,
    pub tty: bool,
}

pub struct Launched {
    pub pid: i32,
    pub io: Io,
}

/// The runtime's own messages worth keeping for an error line.
const MAX_RUNTIME_OUTPUT: usize = 4096;

pub fn create(cfg: &Config) -> Result<Launched> {
    let fail = |msg: String| Error::Create {
        id: cfg.id.clone(),
        msg,
    };
    match &cfg.runtime {
        Handler::Builtin {
            root,
            systemd_cgroup,
        } => builtin(cfg, root, *systemd_cgroup).map_err(|e| match e {
            Error::Create { .. } => e,
            other => fail(other.to_string()),
        }),
        Handler::External { .. } => external(cfg).map_err(|e| match e {
            Error::Create { .. } => e,
            other => fail(other.to_string()),
        }),
    }
}

/// Pipes for a non-tty container: (container's ends, monitor's ends).
struct Pipes {
    child_in: Option<OwnedFd>,
    child_out: OwnedFd,
    child_err: OwnedFd,
    io: Io,
}

fn pipes(cfg: &Config) -> Result<Pipes> {
    let pipe = || pipe_with(PipeFlags::CLOEXEC).ctx(|| "create a stdio pipe");
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (child_in, stdin) = if cfg.stdin {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    Ok(Pipes {
        child_in,
        child_out: out_w,
        child_err: err_w,
        io: Io {
            stdout: out_r,
            stderr: Some(err_r),
            stdin,
            tty: false,
        },
    })
}

fn devnull() -> Result<OwnedFd> {
    Ok(File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .ctx(|| "open /dev/null")?
        .into())
}

fn builtin(cfg: &Config, root: &Path, systemd_cgroup: bool) -> Result<Launched> {
    let rt = berth_runtime::Runtime::new(root, systemd_cgroup);
    let mut opts = berth_runtime::CreateOptions {
        bundle: cfg.bundle.clone(),
        pid_file: Some(cfg.pid_file.clone()),
        ..Default::default()
    };
    if cfg.tty {
        opts.want_pty = true;
        let created = rt
            .create(&cfg.id, &opts)
            .map_err(|e| create_error(cfg, e.to_string()))?;
        let master = created.pty_master.ok_or_else(|| {
            create_error(
                cfg,
                "monitor.json asks for a tty but the bundle's process.terminal is not true".into(),
            )
        })?;
        return Ok(Launched {
            pid: created.pid,
            io: tty_io(cfg, master)?,
        });
    }
    let p = pipes(cfg)?;
    let null = devnull()?;
    // The runtime gives the container the caller's 0-2: lend it the pipes
    // for the call, then put /dev/null back.
    let stdin = p.child_in.as_ref().unwrap_or(&null);
    let lend = [stdin, &p.child_out, &p.child_err];
    for (target, fd) in lend.iter().enumerate() {
        dup_onto(fd, target as i32)?;
    }
    let created = rt.create(&cfg.id, &opts);
    for target in 0..3 {
        dup_onto(&null, target)?;
    }
    let created = created.map_err(|e| create_error(cfg, e.to_string()))?;
    Ok(Launched {
        pid: created.pid,
        io: p.io,
    })
}

fn dup_onto(fd: &OwnedFd, target: i32) -> Result<()> {
    loop {
        // SAFETY: fd is open (borrowed for the call); the target is one of
        // this process's own stdio fds.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).ctx(|| format!("dup a stdio pipe onto fd {target}"));
        }
    }
}

fn tty_io(cfg: &Config, master: OwnedFd) -> Result<Io> {
    let stdin = if cfg.stdin {
        Some(master.try_clone().ctx(|| "duplicate the pty master")?)
    } else {
        None
    };
    Ok(Io {
        stdout: master,
        stderr: None,
        stdin,
        tty: true,
    })
}

fn create_error(cfg: &Config, msg: String) -> Error {
    Error::Create {
        id: cfg.id.clone(),
        msg,
    }
}

fn external(cfg: &Config) -> Result<Launched> {
    let (Some(mut cmd), Handler::External { path, .. }) = (cfg.runtime.command(), &cfg.runtime)
    else {
        unreachable!("an external runtime")
    };
    cmd.arg("create")
        .arg("--bundle")
        .arg(&cfg.bundle)
        .arg("--pid-file")
        .arg(&cfg.pid_file);
    // The runtime's own messages come on its stderr; with pipes that is the
    // container's stderr, which nothing of the container writes before
    // start, so what is there after a failed create is the runtime's.
    let (console, pipes, runtime_err) = if cfg.tty {
        let console = ConsoleSocket::new()?;
        cmd.arg("--console-socket").arg(&console.path);
        let (err_r, err_w) = pipe_with(PipeFlags::CLOEXEC).ctx(|| "create a pipe")?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err_w));
        (Some(console), None, err_r)
    } else {
        let p = pipes(cfg)?;
        let err_r =
            p.io.stderr
                .as_ref()
                .expect("pipes have stderr")
                .try_clone()
                .ctx(|| "duplicate the stderr pipe")?;
        match &p.child_in {
            Some(fd) => cmd.stdin(Stdio::from(fd.try_clone().ctx(|| "duplicate stdin")?)),
            None => cmd.stdin(Stdio::null()),
        };
        cmd.stdout(Stdio::from(
            p.child_out.try_clone().ctx(|| "duplicate stdout")?,
        ))
        .stderr(Stdio::from(
            p.child_err.try_clone().ctx(|| "duplicate stderr")?,
        ));
        (None, Some(p), err_r)
    };
    cmd.arg(&cfg.id);
    let status = cmd.status().ctx(|| format!("run {}", path.display()))?;
    // The command held copies; from now on only the container has them.
    drop(cmd);
    if !status.success() {
        let said = drain(&runtime_err);
        let said = if said.is_empty() {
            "no message".to_string()
        } else {
            said
        };
        return Err(create_error(
            cfg,
            format!("{} create failed ({status}): {said}", path.display()),
        ));
    }
    let pid = read_pid(&cfg.pid_file)?;
    let io = match (console, pipes) {
        (Some(console), _) => tty_io(cfg, console.receive(path)?)?,
        (None, Some(p)) => p.io,
        (None, None) => unreachable!("a container has a tty or pipes"),
    };
    Ok(Launched { pid, io })
}

/// Whatever the runtime wrote, as one line.
pub(crate) fn drain(fd: &OwnedFd) -> String {
    let _ = rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK);
    let mut buf = vec![0u8; MAX_RUNTIME_OUTPUT];
    let mut n = 0;
    let Ok(dup) = fd.try_clone() else {
        return String::new();
    };
    let mut f = File::from(dup);
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn read_pid(path: &Path) -> Result<i32> {
    let raw =
        std::fs::read_to_string(path).ctx(|| format!("read the pid file {}", path.display()))?;
    raw.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::Io {
            what: format!("the pid file {} holds {raw:?}, not a pid", path.display()),
            source: std::io::ErrorKind::InvalidData.into(),
        })
}

/// Where a runc-compatible runtime sends the pty master. Its own private
/// directory keeps the path short (the runtime connects by path) and out
/// of others' reach; both go when this drops.
pub(crate) struct ConsoleSocket {
    dir: PathBuf,
    pub(crate) path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub(crate) fn new() -> Result<ConsoleSocket> {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        for n in 0..100 {
            let dir = base.join(format!("berth-monitor-{pid}-{n}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).ctx(|| format!("create {}", dir.display())),
            }
            let path = dir.join("console.sock");
            let listener = match UnixListener::bind(&path) {
                Ok(l) => l,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e).ctx(|| format!("bind {}", path.display()));
                }
            };
            return Ok(ConsoleSocket {
                dir,
                path,
                listener,
            });
        }
        Err(Error::Io {
            what: format!("create a console socket directory in {}", base.display()),
            source: std::io::ErrorKind::AlreadyExists.into(),
        })
    }

    /// The runtime has exited: its connection, if it made one, waits in
    /// the backlog.
    pub(crate) fn receive(self, runtime: &Path) -> Result<OwnedFd> {
        self.listener
            .set_nonblocking(true)
            .ctx(|| "make the console socket non-blocking")?;
        let (conn, _) = self.listener.accept().ctx(|| {
            format!(
                "{} sent no pty master to the console socket",
                runtime.display()
            )
        })?;
        conn.set_nonblocking(false)
            .ctx(|| "make the console connection blocking")?;
        berth_runtime::recv_fd(conn.as_fd()).map_err(|e| Error::Io {
            what: format!("receive the pty master from {}", runtime.display()),
            source: std::io::Error::other(e.to_string()),
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
