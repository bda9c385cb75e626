//! The runtimes to measure and the daemons the benchmark starts for them.
//!
//! `--runtime containerd` is built in: the benchmark writes containerd's
//! configuration and starts it. Any other runtime is `NAME=SOCKET`, either
//! already running, or started by the benchmark with `--start
//! NAME=COMMAND` (a shell command; `exec` it, so the daemon is the
//! process started). SOCKET and COMMAND may name the benchmark's
//! directories and images through placeholders, which the command also
//! gets as environment variables:
//!
//! | placeholder | variable | what |
//! |---|---|---|
//! | `{dir}` | `BENCH_DIR` | an empty directory for the runtime's state, on tmpfs |
//! | `{cni_conf_dir}` | `CNI_CONF_DIR` | the CNI configuration every runtime gets |
//! | `{cni_bin_dir}` | `CNI_BIN_DIR` | the CNI plugins |
//! | `{registry}` | `BENCH_REGISTRY` | the local registry (plain HTTP), HOST:PORT |
//! | `{image}` | `BENCH_IMAGE` | the workload image |
//! | `{pause_image}` | `PAUSE_IMAGE` | the pause image |

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How a target's daemon comes to be.
#[derive(Debug, Clone)]
pub enum Start {
    /// containerd with the configuration the benchmark writes.
    Containerd,
    /// A shell command.
    Command(String),
    /// Already running; the benchmark only connects.
    External,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// The socket, placeholders not yet filled in.
    pub socket: String,
    pub start: Start,
}

/// Reads the `--runtime` and `--start` arguments.
pub fn targets(runtimes: &[String], starts: &[String]) -> Result<Vec<Target>> {
    let mut out: Vec<Target> = Vec::new();
    for r in runtimes {
        let (name, socket) = match r.split_once('=') {
            Some((n, s)) => (n.to_string(), Some(s.to_string())),
            None => (r.clone(), None),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("runtime name {name:?}: letters, digits, - and _ only");
        }
        if out.iter().any(|t| t.name == name) {
            bail!("runtime {name} given twice");
        }
        let command = starts.iter().find_map(|s| {
            let (n, c) = s.split_once('=')?;
            (n == name).then(|| c.to_string())
        });
        let (socket, start) = match (socket, command) {
            (None, None) if name == "containerd" => {
                ("{dir}/containerd.sock".to_string(), Start::Containerd)
            }
            (None, _) => bail!("runtime {name}: give its socket, as {name}=SOCKET"),
            (Some(s), Some(c)) => (s, Start::Command(c)),
            (Some(s), None) => (s, Start::External),
        };
        out.push(Target {
            name,
            socket,
            start,
        });
    }
    for s in starts {
        let n = s.split_once('=').map(|(n, _)| n).unwrap_or(s);
        if !out.iter().any(|t| t.name == n) {
            bail!("--start {n}: no --runtime {n}=SOCKET to go with it");
        }
    }
    Ok(out)
}

/// The values of the placeholders, for one target.
pub struct Vars(pub Vec<(&'static str, &'static str, String)>);

impl Vars {
    pub fn fill(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (ph, _, v) in &self.0 {
            s = s.replace(&format!("{{{ph}}}"), v);
        }
        s
    }
}

/// A daemon the benchmark started: in its own process group (a Ctrl-C at
/// the terminal reaches the benchmark only, which still needs the daemon
/// to remove its pods) and in its own cgroup (so are the shims or monitors
/// it forks, which is how they are found and, after a failure, killed).
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with its output to `log`, joining the cgroup whose
    /// cgroup.procs is `procs` before it runs.
    pub fn spawn(mut cmd: Command, procs: &Path, log: &Path) -> Result<Daemon> {
        let out = std::fs::File::create(log)?;
        let procs_c = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes())?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec, where
        // only async-signal-safe calls are allowed: open(2), write(2) and
        // close(2) are, and it allocates nothing (the path was made before
        // the fork). Writing "0" to cgroup.procs moves the writer.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs_c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, c"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("start {cmd:?}"))?;
        Ok(Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Whether it has exited already (it crashed or refused its config).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// The last lines of its log, for an error message.
    pub fn log_tail(&self, lines: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGKILL to the daemon alone (not its group, whose shims or monitors
    /// hold the containers); waits for it.
    pub fn kill_daemon_only(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) takes plain integers; the pid is our child's,
            // not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// SIGTERM to its process group, SIGKILL after `grace`; waits for it.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as i32;
        // SAFETY: kill(2) takes plain integers; a negative pid names the
        // process group the daemon leads.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < grace {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    /// A daemon never outlives the benchmark, whatever path it leaves by.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) takes plain integers.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// Starts a target's shell command.
pub fn spawn_command(
    name: &str,
    command: &str,
    vars: &Vars,
    procs: &Path,
    dir: &Path,
) -> Result<Daemon> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(vars.fill(command));
    for (_, var, v) in &vars.0 {
        cmd.env(var, v);
    }
    Daemon::spawn(cmd, procs, &dir.join(format!("{name}.log")))
}
