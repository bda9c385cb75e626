//! The container's terminal: a pty from the container's own devpts, its
//! master handed over a unix socket with SCM_RIGHTS (as conmon and
//! containerd expect from runc), its slave the container's stdio.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use crate::error::{Context, Error, Result};
use crate::mountcall;

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub number: u32,
}

pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty> {
    let master = rustix::pty::openpt(
        rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC,
    )
    .ctx(|| "open /dev/ptmx (is /dev/pts mounted?)")?;
    rustix::pty::unlockpt(&master).ctx(|| "unlock the pty")?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC,
    )
    .ctx(|| "open the pty's slave")?;
    let mut number: libc::c_uint = 0;
    // SAFETY: master is open; TIOCGPTN writes one c_uint to `number`.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) } != 0 {
        return Err(Error::os("get the pty number", io::Error::last_os_error()));
    }
    if let Some((height, width)) = size {
        set_size(master.as_fd(), height, width)?;
    }
    Ok(Pty {
        master,
        slave,
        number,
    })
}

pub fn set_size(fd: BorrowedFd<'_>, height: u16, width: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: fd is borrowed for the call; TIOCSWINSZ reads a winsize.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(Error::os(
            "set the terminal size",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Makes /dev/console the pty's slave, as the spec asks of a container
/// with a terminal.
pub fn bind_console(pty_number: u32) -> Result<()> {
    let console = Path::new("/dev/console");
    if !console.exists() {
        rustix::fs::open(
            console,
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .ctx(|| "create /dev/console")?;
    }
    let slave = format!("/dev/pts/{pty_number}");
    mountcall::mount(Some(Path::new(&slave)), console, None, libc::MS_BIND, None)
        .map_err(|e| Error::os(format!("bind {slave} to /dev/console"), e))
}

/// Sends `fd` over a connected unix socket, with `name` as the message.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, name: &str) -> Result<()> {
    let fds = [fd];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let iov = [io::IoSlice::new(name.as_bytes())];
    rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL)
        .ctx(|| "send the pty master to the console socket")?;
    Ok(())
}

/// Receives one fd sent with `send_fd`.
pub fn recv_fd(sock: BorrowedFd<'_>) -> Result<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
        .ctx(|| "receive the pty master")?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(Error::Other("no fd arrived on the console socket".into()))
}

/// Makes the pty slave this process's stdio and controlling terminal.
pub fn become_tty(slave: &OwnedFd) -> Result<()> {
    for target in 0..3 {
        // SAFETY: slave is open for the call; 0-2 are the stdio fds, which
        // no OwnedFd of this process owns.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(Error::os(
                "dup the pty onto stdio",
                io::Error::last_os_error(),
            ));
        }
    }
    // SAFETY: fd 0 is the slave now; TIOCSCTTY takes an integer.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::os(
            "make the pty the controlling terminal",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Sends a process's pidfd to the unix socket at `path` (runc's
/// --pidfd-socket), so a supervisor can watch the process race-free.
pub fn send_pidfd(path: &Path, pidfd: BorrowedFd<'_>) -> Result<()> {
    let sock = connect(path)?;
    send_fd(sock.as_fd(), pidfd, "pidfd")
}

/// A connected socket to the console socket path given on the command line.
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| Error::os(format!("connect to console socket {}", path.display()), e))?;
    Ok(OwnedFd::from(s))
}
