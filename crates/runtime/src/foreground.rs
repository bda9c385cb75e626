//! Staying with a container process in the foreground (`run` and `exec`
//! without --detach): forward signals to it, proxy its terminal, and return
//! its exit status.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, poll};

use crate::error::{Error, Result};
use crate::spawn;

/// Signals that are about this process's own faults: never forwarded.
const SYNCHRONOUS: [i32; 6] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGABRT,
    libc::SIGTRAP,
];

/// Blocks the forwardable signals and reads them from a signalfd instead.
/// Call before the container process exists, so none is lost; the child
/// unblocks them for itself.
pub struct SignalRelay {
    sfd: OwnedFd,
}

impl SignalRelay {
    pub fn new() -> Result<SignalRelay> {
        // SAFETY: set is a valid sigset_t (zeroed, then filled) for every
        // call; signalfd's new fd is owned at once, by the relay.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut set);
            for s in SYNCHRONOUS {
                libc::sigdelset(&mut set, s);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(Error::os("block signals", io::Error::last_os_error()));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(Error::os("signalfd", io::Error::last_os_error()));
            }
            Ok(SignalRelay {
                sfd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    fn next(&self) -> Option<i32> {
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
        // SAFETY: sfd is open and `info` writable for the size given.
        let n = unsafe {
            libc::read(
                self.sfd.as_raw_fd(),
                info.as_mut_ptr() as *mut libc::c_void,
                std::mem::size_of::<libc::signalfd_siginfo>(),
            )
        };
        // SAFETY: a full-sized read initialised all of `info`.
        (n == std::mem::size_of::<libc::signalfd_siginfo>() as isize)
            .then(|| unsafe { info.assume_init() }.ssi_signo as i32)
    }
}

/// Puts the terminal on stdin in raw mode until dropped.
struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        // SAFETY: termios is plain data, for which zeroes are valid; `t` is a
        // valid in/out pointer for each call on fd 0.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::isatty(0) == 0 || libc::tcgetattr(0, &mut t) != 0 {
                return RawMode { saved: None };
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            RawMode { saved: Some(saved) }
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: t is the termios saved by `enter`, valid for the call.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

fn copy_winsize(to: BorrowedFd<'_>) {
    // SAFETY: ws is a winsize TIOCGWINSZ fills and TIOCSWINSZ reads; `to`
    // is borrowed for the call.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Waits for `pid` (a child of this process), forwarding signals to it and
/// copying between our stdio and its pty master (our stdin only with
/// `stdin`). Returns its exit status as a shell reports it. Other children
/// that exit meanwhile (orphans we reap as a subreaper) are collected and
/// ignored.
pub fn wait(relay: &SignalRelay, pid: i32, pty: Option<OwnedFd>, relay_stdin: bool) -> Result<i32> {
    let _raw = pty.as_ref().map(|_| RawMode::enter());
    if let Some(m) = &pty {
        copy_winsize(m.as_fd());
    }
    // SAFETY: fds 0 and 1 are open (Rust's startup puts /dev/null on a
    // closed one) and nothing here closes them while these borrows live.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    // SAFETY: as for stdin.
    let stdout = unsafe { BorrowedFd::borrow_raw(1) };
    let mut stdin_open = pty.is_some() && relay_stdin;
    let mut master_open = pty.is_some();
    let mut status: Option<i32> = None;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if let Some(code) = status
            && !master_open
        {
            return Ok(code);
        }
        let mut fds = vec![PollFd::new(&relay.sfd, PollFlags::IN)];
        let master_idx = if master_open {
            fds.push(PollFd::new(pty.as_ref().expect("pty"), PollFlags::IN));
            Some(fds.len() - 1)
        } else {
            None
        };
        let stdin_idx = if stdin_open && status.is_none() {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
            Some(fds.len() - 1)
        } else {
            None
        };
        // Once the process is gone, only drain what its pty still holds.
        let timeout = status.map(|_| rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        });
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => master_open = false,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::os("poll", io::Error::from(e))),
        }
        let ready = |i: Option<usize>| i.is_some_and(|i| !fds[i].revents().is_empty());
        let (sig_ready, master_ready, stdin_ready) = (
            !fds[0].revents().is_empty(),
            ready(master_idx),
            ready(stdin_idx),
        );
        drop(fds);
        if sig_ready {
            while let Some(sig) = relay.next() {
                match sig {
                    libc::SIGCHLD => loop {
                        let mut st = 0;
                        // SAFETY: st is a valid out-pointer for the call.
                        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
                        if r <= 0 {
                            break;
                        }
                        if r == pid {
                            status = Some(spawn::decode_status(st));
                        }
                    },
                    libc::SIGWINCH => {
                        if let Some(m) = &pty {
                            copy_winsize(m.as_fd());
                        }
                    }
                    // Once reaped, the pid may name someone else's process.
                    s if status.is_none() => {
                        // SAFETY: integer arguments; pid is our child, not
                        // yet reaped, so it cannot name a recycled process.
                        unsafe { libc::kill(pid, s) };
                    }
                    _ => {}
                }
            }
        }
        if master_ready {
            match rustix::io::read(pty.as_ref().expect("pty"), &mut buf) {
                Ok(0) | Err(rustix::io::Errno::IO) => master_open = false,
                Ok(n) => {
                    write_all(stdout, &buf[..n]);
                }
                Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                Err(_) => master_open = false,
            }
        }
        if stdin_ready {
            match rustix::io::read(stdin, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if !write_all(pty.as_ref().expect("pty").as_fd(), &buf[..n]) {
                        stdin_open = false;
                    }
                }
            }
        }
    }
}
