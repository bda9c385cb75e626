//! Starting a container's monitor: `berth-monitor <config>` with a pipe on
//! fd 3 on which it says `ok <pid>` once the runtime created the
//! container, or `error <why>`. The monitor is not waited for: it outlives
//! this process.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Returns (monitor pid, container pid).
pub fn spawn(monitor: &Path, config: &Path) -> Result<(i32, i32)> {
    let mut cmd = Command::new(monitor);
    cmd.arg(config);
    spawn_ready(cmd, "monitor")
}

/// Runs `cmd` with the ready pipe on fd 3; returns its pid and the number
/// it reported with `ok`.
pub fn spawn_ready(mut cmd: Command, what: &str) -> Result<(i32, i32)> {
    let fail = |why: String| Error::Monitor(format!("{what}: {why}"));
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| fail(format!("pipe: {e}")))?;
    let write_fd = write.as_raw_fd();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    unsafe {
        cmd.pre_exec(move || {
            // The ready pipe becomes fd 3, inherited across exec.
            if write_fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(write_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    drop(write);
    let mut line = String::new();
    let mut f = std::fs::File::from(read);
    // Everything the monitor says fits in one short read; read to EOF to
    // notice one that died without a word.
    let _ = f.read_to_string(&mut line);
    let line = line.trim();
    let monitor_pid = child.id() as i32;
    if let Some(pid) = line.strip_prefix("ok ") {
        let pid = pid
            .trim()
            .parse()
            .map_err(|_| fail(format!("unexpected answer {line:?}")))?;
        return Ok((monitor_pid, pid));
    }
    // It failed: collect it, it exits right away.
    let mut child = child;
    let _ = child.wait();
    match line.strip_prefix("error ") {
        Some(why) => Err(fail(why.to_string())),
        None if line.is_empty() => Err(fail("it exited without a word".into())),
        None => Err(fail(format!("unexpected answer {line:?}"))),
    }
}
