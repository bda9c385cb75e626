//! Networks an ordinary user can have: a user-mode TCP/IP stack joined to
//! a namespace by a helper process on the host's side, which also
//! forwards the published ports from the host. pasta (Debian's passt) is
//! the default, as in podman 5; slirp4netns, podman 4's, the other. A
//! user cannot make veths into the host's namespace: these need no
//! privilege there.
//!
//! The helper runs detached and is named by pid and start time, so the
//! one that is stopped is the one that was started, after any crash.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_base::process::ProcessId;

use crate::ports::{PortMapping, Protocol};

/// How long a helper may take to have the namespace configured.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The interface the namespace gets.
pub const INTERFACE: &str = "eth0";

/// The idle tap a publishing-only pasta leaves in a namespace it does not
/// configure.
const PUBLISH_TAP: &str = "pst0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helper {
    Pasta,
    Slirp4netns,
}

#[derive(Debug, thiserror::Error)]
pub enum UserNetError {
    #[error("{helper} is not installed: install Debian's {package} package")]
    Missing {
        helper: &'static str,
        package: &'static str,
    },
    #[error("{helper}: {why}")]
    Failed { helper: &'static str, why: String },
}

impl Helper {
    pub fn name(self) -> &'static str {
        match self {
            Helper::Pasta => "pasta",
            Helper::Slirp4netns => "slirp4netns",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Helper::Pasta => "passt",
            Helper::Slirp4netns => "slirp4netns",
        }
    }

    fn fail(self, why: impl std::fmt::Display) -> UserNetError {
        UserNetError::Failed {
            helper: self.name(),
            why: why.to_string(),
        }
    }

    /// Where the helper's stderr goes in `work`: read back when it fails.
    fn log_path(self, work: &Path) -> PathBuf {
        work.join(format!("{}.log", self.name()))
    }

    fn log_file(self, work: &Path) -> Result<std::fs::File, UserNetError> {
        let log = self.log_path(work);
        std::fs::File::create(&log).map_err(|e| self.fail(format!("create {}: {e}", log.display())))
    }

    fn binary(self) -> Result<PathBuf, UserNetError> {
        berth_base::paths::find_program(self.name()).ok_or(UserNetError::Missing {
            helper: self.name(),
            package: self.package(),
        })
    }

    /// Starts connecting the namespace pinned at `netns` and forwarding
    /// `ports`; `work` is a private directory for the helper's pid file,
    /// log and socket. The helper configures the namespace while the
    /// caller goes on (pasta takes some 20 ms); `Starting::ready` waits
    /// for it.
    pub fn start(
        self,
        netns: &Path,
        ports: &[PortMapping],
        work: &Path,
    ) -> Result<Starting, UserNetError> {
        std::fs::create_dir_all(work)
            .map_err(|e| self.fail(format!("create {}: {e}", work.display())))?;
        let bin = self.binary()?;
        match self {
            Helper::Pasta => start_pasta(&bin, pasta_args(netns, ports, true), work),
            Helper::Slirp4netns => start_slirp(&bin, netns, work),
        }
        .map(|(child, ready)| Starting {
            helper: self,
            child: Some(child),
            ready,
            ports: ports.to_vec(),
            work: work.to_path_buf(),
        })
    }
}

/// Publishes `ports` of a namespace another network configured (a user's
/// bridge network): a pasta that configures nothing and takes each
/// connection to a published host port to the same port on the
/// namespace's loopback (pasta's splice path), so the container's server
/// sees it as local. It leaves an idle tap, `pst0`, in the namespace.
pub fn publish(netns: &Path, ports: &[PortMapping], work: &Path) -> Result<Starting, UserNetError> {
    let h = Helper::Pasta;
    std::fs::create_dir_all(work).map_err(|e| h.fail(format!("create {}: {e}", work.display())))?;
    let bin = h.binary()?;
    let (child, ready) = start_pasta(&bin, pasta_args(netns, ports, false), work)?;
    Ok(Starting {
        helper: h,
        child: Some(child),
        ready,
        ports: ports.to_vec(),
        work: work.to_path_buf(),
    })
}

/// A helper configuring a namespace.
pub struct Starting {
    helper: Helper,
    child: Option<std::process::Child>,
    /// slirp4netns's ready pipe; pasta's first process exits instead.
    ready: Option<OwnedFd>,
    ports: Vec<PortMapping>,
    work: PathBuf,
}

impl Starting {
    /// Waits until the namespace is configured and the ports are
    /// published; returns the helper, running detached.
    pub fn ready(mut self) -> Result<ProcessId, UserNetError> {
        let child = self.child.take().expect("not yet waited for");
        match self.helper {
            Helper::Pasta => pasta_ready(child, &self.work),
            Helper::Slirp4netns => slirp_ready(
                child,
                self.ready.take().expect("slirp4netns has a pipe"),
                &self.ports,
                &self.work,
            ),
        }
    }
}

impl Drop for Starting {
    /// A helper never waited for (the start failed after it) goes.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the process group made for it.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

/// pasta's spec of one mapping: `[ADDR/]HOST:CONTAINER`.
fn pasta_spec(p: &PortMapping) -> String {
    match p.host_ip {
        Some(ip) => format!("{ip}/{}:{}", p.host_port, p.container_port),
        None => format!("{}:{}", p.host_port, p.container_port),
    }
}

/// pasta's arguments but its pid file: no port is forwarded but those
/// published (its default would follow the namespace's listening
/// sockets), in neither direction; the namespace configured (`eth0` with
/// the host's addresses and routes) or, to publish only, left as it is.
fn pasta_args(netns: &Path, ports: &[PortMapping], configure: bool) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if configure {
        args.extend([
            "--config-net".into(),
            "--ns-ifname".into(),
            INTERFACE.into(),
        ]);
    } else {
        args.extend(["--ns-ifname".into(), PUBLISH_TAP.into()]);
    }
    args.extend([
        "--netns".into(),
        netns.display().to_string(),
        "--quiet".into(),
        "-T".into(),
        "none".into(),
        "-U".into(),
        "none".into(),
    ]);
    for (flag, proto) in [("-t", Protocol::Tcp), ("-u", Protocol::Udp)] {
        let specs: Vec<String> = ports
            .iter()
            .filter(|p| p.protocol == proto)
            .map(pasta_spec)
            .collect();
        if specs.is_empty() {
            args.extend([flag.into(), "none".into()]);
        }
        for s in specs {
            args.extend([flag.into(), s]);
        }
    }
    args
}

/// pasta configures the namespace, writes its pid file and goes to the
/// background: its first process exiting is the sign it is ready.
fn start_pasta(
    bin: &Path,
    args: Vec<String>,
    work: &Path,
) -> Result<(std::process::Child, Option<OwnedFd>), UserNetError> {
    let h = Helper::Pasta;
    let pid_file = work.join("pasta.pid");
    let _ = std::fs::remove_file(&pid_file);
    let log_file = h.log_file(work)?;
    let child = Command::new(bin)
        .args(args)
        .arg("--pid")
        .arg(&pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(|e| h.fail(format!("start {}: {e}", bin.display())))?;
    Ok((child, None))
}

fn pasta_ready(mut child: std::process::Child, work: &Path) -> Result<ProcessId, UserNetError> {
    let h = Helper::Pasta;
    let (pid_file, log) = (work.join("pasta.pid"), h.log_path(work));
    let status = berth_base::process::wait_until(&mut child, Instant::now() + READY_TIMEOUT)
        .ok_or_else(|| h.fail("did not configure the namespace in time"))?;
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        return Err(h.fail(format!("{status}: {}", said.trim())));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| h.fail(format!("no pid in {}", pid_file.display())))?;
    ProcessId::of(pid).ok_or_else(|| h.fail(format!("exited after it started: {}", said.trim())))
}

/// slirp4netns stays in the foreground: it is started in a process group
/// of its own and says it is ready on a pipe; published ports go through
/// its API socket.
fn start_slirp(
    bin: &Path,
    netns: &Path,
    work: &Path,
) -> Result<(std::process::Child, Option<OwnedFd>), UserNetError> {
    let h = Helper::Slirp4netns;
    let api = work.join("slirp4netns.sock");
    let _ = std::fs::remove_file(&api);
    let log_file = h.log_file(work)?;
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| h.fail(format!("pipe: {e}")))?;
    const READY_FD: i32 = 3;
    let wfd = ready_w.as_raw_fd();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        "--netns-type=path",
        &format!("--ready-fd={READY_FD}"),
        &format!("--api-socket={}", api.display()),
    ])
    .arg(netns)
    .arg(INTERFACE)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(log_file)
    .process_group(0);
    // SAFETY: runs in the forked child before exec; dup2 is
    // async-signal-safe and the fds are open in the child. dup2 clears
    // close-on-exec on the copy only, so no other child of a threaded
    // caller inherits the pipe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(wfd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| h.fail(format!("start {}: {e}", bin.display())))?;
    drop(ready_w);
    Ok((child, Some(ready_r)))
}

fn slirp_ready(
    mut child: std::process::Child,
    ready_r: OwnedFd,
    ports: &[PortMapping],
    work: &Path,
) -> Result<ProcessId, UserNetError> {
    let h = Helper::Slirp4netns;
    let (api, log) = (work.join("slirp4netns.sock"), h.log_path(work));
    let id = ProcessId::of(child.id() as i32).ok_or_else(|| h.fail("exited at once"))?;
    let mut stop = |why: String| {
        id.signal(libc::SIGKILL);
        let _ = child.wait();
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        h.fail(format!("{why} {}", said.trim()).trim().to_string())
    };
    if !wait_readable(&ready_r, READY_TIMEOUT) {
        return Err(stop("did not configure the namespace in time".into()));
    }
    let mut byte = [0u8; 1];
    if !matches!(std::fs::File::from(ready_r).read(&mut byte), Ok(1)) {
        return Err(stop("exited before the namespace was configured:".into()));
    }
    for p in ports {
        if let Err(e) = slirp_forward(&api, p) {
            return Err(stop(format!("publish {}: {e}", p.host_port)));
        }
    }
    // Not waited for: it outlives this process, reparented; stopped by
    // `stop` through its pid and start time.
    std::mem::forget(child);
    Ok(id)
}

/// One `add_hostfwd` through the API socket.
fn slirp_forward(api: &Path, p: &PortMapping) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let proto = match p.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let req = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": proto,
            "host_addr": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
            "host_port": p.host_port,
            "guest_port": p.container_port,
        }
    });
    let mut s = UnixStream::connect(api).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(READY_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(req.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&reply).map_err(|e| format!("{e}: {reply}"))?;
    match v.get("error") {
        Some(e) => Err(e
            .get("desc")
            .and_then(|d| d.as_str())
            .unwrap_or(&reply)
            .to_string()),
        None => Ok(()),
    }
}

/// Stops a helper `start` returned, if it still runs.
pub fn stop(helper: &ProcessId) {
    helper.signal(libc::SIGTERM);
}

fn wait_readable(fd: &OwnedFd, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let ts = rustix::time::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos() as i64,
    };
    matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasta_forwards_only_the_published_ports() {
        let p = |ip: Option<&str>, h, c, protocol| PortMapping {
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: h,
            container_port: c,
            protocol,
        };
        let args = pasta_args(
            Path::new("/run/ns"),
            &[
                p(None, 8080, 80, Protocol::Tcp),
                p(Some("127.0.0.1"), 9090, 90, Protocol::Tcp),
            ],
            true,
        );
        let s = args.join(" ");
        assert!(s.contains("-t 8080:80 -t 127.0.0.1/9090:90 -u none"), "{s}");
        assert!(
            s.contains("-T none -U none") && s.contains("--netns /run/ns"),
            "{s}"
        );
        assert!(s.starts_with("--config-net --ns-ifname eth0"), "{s}");
        let publish = pasta_args(Path::new("/n"), &[], false).join(" ");
        assert!(publish.ends_with("-t none -u none"), "{publish}");
        assert!(
            !publish.contains("--config-net") && publish.contains("pst0"),
            "{publish}"
        );
    }
}
