//! One process's stdio on the host side: what a keeper reads from its own
//! stdin (or terminal) goes to the guest as frames, the guest's output
//! frames come out on its stdout and stderr, and its end becomes the
//! keeper's own exit, so whoever waits for the keeper sees the container's
//! status.

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result};

use crate::proto::{CHUNK, Frame, Kind, Msg};

pub struct Relay {
    /// Still reading fd 0.
    pub input_open: bool,
    pub tty: bool,
}

/// fd `n` of this process as a File that is never closed by the drop.
fn stdio(n: RawFd) -> ManuallyDrop<File> {
    // SAFETY: 0-2 stay open for the process's life; ManuallyDrop never
    // closes them.
    ManuallyDrop::new(unsafe { File::from_raw_fd(n) })
}

impl Relay {
    pub fn new(tty: bool) -> Relay {
        Relay {
            input_open: true,
            tty,
        }
    }

    /// What fd 0 has now, as the frame for the guest: bytes, or the end.
    pub fn read_input(&mut self, chan: u32) -> Option<Frame> {
        let mut buf = vec![0u8; CHUNK];
        match stdio(0).read(&mut buf) {
            Ok(0) => {}
            Ok(k) => return Some(Frame::data(Kind::Stdin, chan, &buf[..k])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return None,
            // EIO: the terminal's master is gone.
            Err(_) => {}
        }
        self.input_open = false;
        // A terminal has no end of input to pass on: the guest's line
        // discipline gets ^D like any other byte.
        (!self.tty).then(|| Frame::data(Kind::StdinEof, chan, b""))
    }

    /// Writes an output frame where it belongs; a reader that went away
    /// only loses the output.
    pub fn output(&self, f: &Frame) {
        let fd = if f.kind == Kind::Stderr && !self.tty {
            2
        } else {
            1
        };
        let _ = stdio(fd).write_all(&f.payload);
    }

    /// The terminal's size now, for the guest's.
    pub fn size(&self) -> Option<Msg> {
        if !self.tty {
            return None;
        }
        // SAFETY: winsize is plain data that TIOCGWINSZ fills.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is the terminal; ws is a valid out-pointer.
        if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } != 0 || ws.ws_row == 0 {
            return None;
        }
        Some(Msg::Resize {
            rows: ws.ws_row,
            cols: ws.ws_col,
        })
    }
}

/// A terminal for the process: its master to runc's console socket, its
/// slave this process's stdio and controlling terminal (so a resize of the
/// master reaches the keeper as SIGWINCH), in raw mode: the guest's own
/// terminal does the line discipline.
pub fn take_terminal(socket: &std::path::Path) -> Result<()> {
    let pty = berth_runtime::open_pty(None)?;
    let conn = berth_runtime::console_connect(socket)?;
    berth_runtime::send_fd(
        std::os::fd::AsFd::as_fd(&conn),
        std::os::fd::AsFd::as_fd(&pty.master),
        "berth-vm",
    )?;
    berth_runtime::become_tty(&pty.slave)?;
    let mut t = rustix::termios::tcgetattr(&pty.slave)?;
    t.make_raw();
    // Raw mode reads a break as a NUL byte, which the guest's terminal
    // would take as typed; a break means nothing to the container.
    t.input_modes |= rustix::termios::InputModes::IGNBRK;
    rustix::termios::tcsetattr(&pty.slave, rustix::termios::OptionalActions::Now, &t)?;
    Ok(())
}

/// Ends this process the way the guest's process ended: the same exit
/// code, or death by the same signal (without a core dump).
pub fn mirror_exit(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: restoring the default action and unblocking the signal
        // only affect this process, which is about to end; raise(3) sends
        // it to this thread, the only one.
        unsafe {
            let mut core: libc::rlimit = std::mem::zeroed();
            core.rlim_cur = 0;
            libc::setrlimit(libc::RLIMIT_CORE, &core);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
        std::process::exit(128 + sig);
    }
    std::process::exit(libc::WEXITSTATUS(status))
}

/// Blocks `signals` and returns a signalfd for them.
pub fn signal_fd(signals: &[i32]) -> Result<OwnedFd> {
    // SAFETY: sigset_t is plain data, emptied before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; sigprocmask changes this (single)
    // thread's mask; signalfd returns a new fd or -1.
    let fd = unsafe {
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("signalfd");
    }
    // SAFETY: a new fd from signalfd(2), owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The next pending signal on a signalfd.
pub fn next_signal(fd: &OwnedFd) -> Option<i32> {
    let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    match rustix::io::read(fd, &mut info) {
        Ok(n) if n == info.len() => Some(u32::from_ne_bytes(info[0..4].try_into().ok()?) as i32),
        _ => None,
    }
}

/// The signals a keeper passes on to its process (and SIGWINCH, which
/// becomes a resize).
pub const FORWARDED: &[i32] = &[
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCONT,
    libc::SIGWINCH,
];

/// A pollfd waiting for input on `fd`.
pub fn pollfd(fd: RawFd) -> libc::pollfd {
    crate::sys::pollfd(fd, libc::POLLIN)
}
