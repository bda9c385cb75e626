//! The one way berth-vm's commands start a long-lived process (a VM's
//! holder, a keeper): fork, a session of its own, and a verdict on a pipe
//! before the command goes on, so a failure is the command's error and
//! success means the process serves.

use std::io::{Read, Write};
use std::os::fd::{OwnedFd, RawFd};

use anyhow::{Context, Result, anyhow};
use rustix::pipe::{PipeFlags, pipe_with};

/// Forks a process running `body` (which never returns) in a session of
/// its own and waits for its verdict on the pipe `body` gets; returns its
/// pid. The child closes `close` first (locks of the caller's, which a
/// long-lived child would otherwise hold). The caller is single-threaded
/// (a command of berth-vm).
pub fn fork_and_wait(close: &[RawFd], body: impl FnOnce(OwnedFd)) -> Result<i32> {
    berth_runtime::spawn::require_single_thread("berth-vm").map_err(|e| anyhow!("{e}"))?;
    let (r, w) = pipe_with(PipeFlags::CLOEXEC).context("create a pipe")?;
    // SAFETY: this process has one thread (checked above), so the child
    // may run any code; it ends in `body`, or exits right after.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        drop(r);
        for fd in close {
            // SAFETY: the child's copy of an fd the caller named; the
            // value owning it in the parent is never used (nor dropped)
            // here, as `body` does not return.
            unsafe { libc::close(*fd) };
        }
        // SAFETY: setsid(2) takes nothing; the child leads no group yet.
        unsafe { libc::setsid() };
        body(w);
        std::process::exit(255)
    }
    drop(w);
    match verdict(r) {
        Ok(()) => Ok(pid),
        Err(e) => {
            let _ = berth_runtime::spawn::wait_status(pid);
            Err(e)
        }
    }
}

/// The forked process's end of a pipe to `create`: one line, "ok" or the
/// error.
pub fn report(fd: OwnedFd, r: &Result<()>) {
    let mut f = std::fs::File::from(fd);
    let line = match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:#}"),
    };
    let _ = f.write_all(line.as_bytes());
}

/// `create`'s end: the forked process's verdict.
pub fn verdict(fd: OwnedFd) -> Result<()> {
    let mut f = std::fs::File::from(fd);
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    match s.as_str() {
        "ok" => Ok(()),
        "" => Err(anyhow!("berth-vm's process ended before it was ready")),
        e => Err(anyhow!("{e}")),
    }
}

/// Points stdin, stdout and stderr at /dev/null: for a process that
/// outlives the command whose caller reads those to their end.
pub fn detach_stdio() {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard fds of this process; `null` is
        // open until the loop ends.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
    }
}
