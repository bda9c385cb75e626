//! Creating the processes that become containers: clone3 with namespace
//! flags, an optional cgroup to start in, and a pidfd; no re-exec of the
//! runtime binary.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `struct clone_args` of clone3(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

pub enum Forked {
    Child,
    Parent {
        pid: i32,
        pidfd: Option<OwnedFd>,
        /// False when the kernel could not start the child in the cgroup
        /// (no clone3): the caller must move it there itself.
        in_cgroup: bool,
    },
}

/// Forks with `flags` (CLONE_NEW*, CLONE_PARENT), starting the child in the
/// cgroup behind `cgroup` when given.
///
/// # Safety
/// The child runs on a copy of this process's memory, as after fork(2),
/// and no atfork handlers run: the caller must be single-threaded, or the
/// child must do only async-signal-safe work (no allocation, no locks)
/// until it execs or calls `exit_child`.
pub unsafe fn fork(flags: libc::c_int, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags as u64 | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        // With CLONE_PARENT the child inherits our exit signal; the kernel
        // refuses one given here.
        exit_signal: if flags & libc::CLONE_PARENT != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: args is a clone_args of the size given; pidfd outlives the
    // call and the cgroup fd is borrowed for it; the caller keeps `fork`'s
    // contract for the child.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        0 => return Ok(Forked::Child),
        pid if pid > 0 => {
            return Ok(Forked::Parent {
                pid: pid as i32,
                // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd that
                // nothing else owns.
                pidfd: Some(unsafe { OwnedFd::from_raw_fd(pidfd) }),
                in_cgroup: cgroup.is_some(),
            });
        }
        _ => {}
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    // Kernels before 5.7 (or a seccomp filter) lack clone3: plain clone.
    // SAFETY: no pointers: without CLONE_VM or a stack this is fork(2);
    // the caller keeps `fork`'s contract for the child.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match r {
        0 => Ok(Forked::Child),
        pid if pid > 0 => Ok(Forked::Parent {
            pid: pid as i32,
            pidfd: None,
            in_cgroup: false,
        }),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Ends a forked child without running destructors or atexit handlers that
/// belong to the parent's copy of the process.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Waits for `pid` and returns its exit status the way a shell reports it:
/// the exit code, or 128 + the signal that killed it.
pub fn wait_status(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer for the call.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(decode_status(status));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

pub fn decode_status(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// Refuses to fork from a process with more than one thread: the child
/// of a multi-threaded process may only make async-signal-safe calls, and
/// a container's setup makes many more. (A daemon reaches containers
/// through their monitors, which are single-threaded.)
pub fn require_single_thread(what: &str) -> crate::error::Result<()> {
    let status = crate::fsutil::read_kernel_file(std::path::Path::new("/proc/self/status"))
        .unwrap_or_default();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(1);
    if threads > 1 {
        return Err(crate::error::Error::Other(format!(
            "{what} forks the calling process, which has {threads} threads: call it from a single-threaded process (berth's monitor)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod thread_tests {
    #[test]
    fn a_multi_threaded_caller_is_refused() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        let e = super::require_single_thread("create").unwrap_err();
        assert!(e.to_string().contains("threads"), "{e}");
        drop(tx);
        other.join().unwrap();
    }
}
