//! The engine's side of starting a monitor: spawn `berth-monitor <config>`
//! with the ready pipe on fd 3, read its one line, and leave it running.

use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

/// Create (with hooks, a slow runtime, a big image) may take a while; a
/// monitor silent for longer than this is stuck.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// A ready line is short; more than this is not one.
const MAX_LINE: usize = 64 * 1024;

/// What a started monitor (or pod infra process) reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The pid it reported: the container's init for a monitor.
    pub pid: i32,
    /// The process itself, by pid and start time.
    pub process: berth_base::process::ProcessId,
}

/// Spawns the monitor and waits for its ready line. Returns the
/// container's pid and the monitor, or the monitor's error message.
pub fn start_monitor(monitor_binary: &Path, config_path: &Path) -> Result<Started> {
    start_monitor_holding(monitor_binary, config_path, &[])
}

/// `start_monitor`, handing the monitor `hold` (the sockets that reserve
/// a container's published ports) to keep open for its life and pass to
/// no process it starts.
pub fn start_monitor_holding(
    monitor_binary: &Path,
    config_path: &Path,
    hold: &[BorrowedFd<'_>],
) -> Result<Started> {
    // Above the fds the child's setup uses (0-2, the ready pipe on 3),
    // so that dup2 onto 3 never closes one of them.
    let high: Vec<OwnedFd> = hold
        .iter()
        .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 10))
        .collect::<std::result::Result<_, _>>()
        .ctx(|| "duplicate the fds the monitor holds")?;
    let raw: Vec<i32> = high.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut cmd = Command::new(monitor_binary);
    cmd.arg(config_path);
    // SAFETY: only fcntl, which is async-signal-safe, between fork and
    // exec; `raw` is moved into the closure.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &raw {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // `high` stays open in this process until the monitor has them.
    let started = start_detached(cmd);
    drop(high);
    started
}

/// Runs `cmd` detached with the ready pipe on fd 3 and waits (at most
/// READY_TIMEOUT) for its one line: `ok <pid> [<own pid>]` or `error
/// <message>`.
///
/// The process is started through a short-lived intermediate process, so
/// that it is nobody's child here: a long-running caller (a daemon)
/// collects no zombies, and the process outlives the caller.
pub fn start_detached(mut cmd: Command) -> Result<Started> {
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .ctx(|| "create the ready pipe")?;
    let w = ready_w.as_raw_fd();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if w == crate::ready::FD {
                if libc::fcntl(w, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(w, crate::ready::FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => Err(std::io::Error::last_os_error()),
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        });
    }
    let mut intermediate = cmd
        .spawn()
        .ctx(|| format!("start {}", cmd.get_program().to_string_lossy()))?;
    let _ = intermediate.wait();
    drop(ready_w);
    let line = read_line(ready_r)?;
    let (pid, own) = parse(&line)?;
    // Read while it runs: it outlives its ready line by design.
    let process = berth_base::process::ProcessId::of(own).ok_or_else(|| {
        Error::Monitor(format!("process {own} exited right after its ready line"))
    })?;
    Ok(Started { pid, process })
}

fn read_line(fd: OwnedFd) -> Result<String> {
    let mut f = std::fs::File::from(fd);
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') && buf.len() < MAX_LINE {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Monitor(format!(
                "no ready line within {}s",
                READY_TIMEOUT.as_secs()
            )));
        }
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, of an fd `f` keeps open.
        if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).ctx(|| "wait for the monitor's ready line");
        }
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).ctx(|| "read the monitor's ready line"),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// (the pid reported, the reporter's own pid).
fn parse(line: &str) -> Result<(i32, i32)> {
    let Some(line) = line.strip_suffix('\n') else {
        return Err(Error::Monitor(if line.is_empty() {
            "exited without a ready line".into()
        } else {
            format!("unfinished ready line {line:?}")
        }));
    };
    if let Some(pids) = line.strip_prefix("ok ") {
        let mut it = pids
            .split(' ')
            .map(|p| p.parse::<i32>().ok().filter(|p| *p > 0));
        let bad = || Error::Monitor(format!("bad pid in ready line {line:?}"));
        let pid = it.next().flatten().ok_or_else(bad)?;
        let own = match it.next() {
            None => pid,
            Some(p) => p.ok_or_else(bad)?,
        };
        if it.next().is_some() {
            return Err(bad());
        }
        return Ok((pid, own));
    }
    if let Some(msg) = line.strip_prefix("error ") {
        return Err(Error::Monitor(msg.to_string()));
    }
    Err(Error::Monitor(format!("unexpected ready line {line:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines() {
        assert_eq!(parse("ok 42\n").unwrap(), (42, 42));
        assert_eq!(parse("ok 42 7\n").unwrap(), (42, 7));
        assert!(parse("ok 42 7 8\n").is_err());
        for (line, want) in [
            (
                "error create container x: no bundle\n",
                "create container x: no bundle",
            ),
            ("", "exited without a ready line"),
            ("ok 4", "unfinished"),
            ("ok -1\n", "bad pid"),
            ("hello\n", "unexpected"),
        ] {
            let e = parse(line).unwrap_err().to_string();
            assert!(e.contains(want), "{line:?}: {e}");
        }
    }
}
