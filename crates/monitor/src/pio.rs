//! The monitor's ends of one process's stdio (the container's init, or an
//! exec session's process): output pipes or a pty master to read, stdin to
//! feed without ever blocking the monitor.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

pub struct Pio {
    /// stdout (or the pty master) and stderr, until each ends.
    pub outputs: [Option<OwnedFd>; 2],
    pub tty: bool,
    /// The pty master, for resizes, while it is open.
    master: Option<RawFd>,
    stdin: Option<OwnedFd>,
    /// Stdin a client sent that the process has not taken yet; clients
    /// are not read while it is there.
    pub pending: Vec<u8>,
    close_after: bool,
}

/// What a read of one output gave.
pub enum Read {
    Data(usize),
    /// Nothing now (it would block).
    Nothing,
    /// The stream ended (EOF, or EIO from a pty whose other side closed).
    Ended,
}

impl Pio {
    /// `stdout` is the pty master for a tty (stderr None then); `stdin` is
    /// None when the process's stdin is not fed by clients.
    pub fn new(stdout: OwnedFd, stderr: Option<OwnedFd>, stdin: Option<OwnedFd>, tty: bool) -> Pio {
        for fd in [Some(&stdout), stderr.as_ref(), stdin.as_ref()]
            .into_iter()
            .flatten()
        {
            let _ = rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK);
        }
        let master = tty.then(|| stdout.as_raw_fd());
        Pio {
            outputs: [Some(stdout), stderr],
            tty,
            master,
            stdin,
            pending: Vec::new(),
            close_after: false,
        }
    }

    pub fn stdin_fd(&self) -> Option<RawFd> {
        self.stdin.as_ref().map(|f| f.as_raw_fd())
    }

    /// True once every output stream has ended.
    pub fn drained(&self) -> bool {
        self.outputs.iter().all(Option::is_none)
    }

    /// Reads one chunk of output `i` into `buf`.
    pub fn read(&mut self, i: usize, buf: &mut [u8]) -> Read {
        let Some(fd) = &self.outputs[i] else {
            return Read::Ended;
        };
        match rustix::io::read(fd, buf) {
            Ok(0) => {}
            Ok(n) => return Read::Data(n),
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => return Read::Nothing,
            // EIO: a pty whose other side is all closed.
            Err(_) => {}
        }
        self.end_output(i);
        Read::Ended
    }

    pub fn end_output(&mut self, i: usize) {
        self.outputs[i] = None;
        if i == 0 {
            self.master = None;
        }
    }

    /// Writes `data` after anything pending, keeping what the process does
    /// not take now.
    pub fn write_stdin(&mut self, data: &[u8]) {
        let Some(fd) = &self.stdin else {
            return;
        };
        if self.close_after && !data.is_empty() {
            return;
        }
        self.pending.extend_from_slice(data);
        while !self.pending.is_empty() {
            match rustix::io::write(fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => {
                    // The process closed its stdin: nobody will read it.
                    self.pending = Vec::new();
                    self.stdin = None;
                    return;
                }
            }
        }
        self.pending = Vec::new();
        if self.close_after {
            self.stdin = None;
        }
    }

    /// A client's end of stdin: closed once what is pending is written. A
    /// pty's master carries the output too: it stays.
    pub fn close_stdin(&mut self) {
        if self.tty {
            return;
        }
        if self.pending.is_empty() {
            self.stdin = None;
        } else {
            self.close_after = true;
        }
    }

    pub fn resize(&self, rows: u16, cols: u16) {
        if let Some(fd) = self.master {
            // SAFETY: the master stays open while `master` is Some (it is
            // outputs[0], cleared together).
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let _ = berth_runtime::set_size(fd, rows, cols);
        }
    }

    /// Drops every stream.
    pub fn close(&mut self) {
        self.outputs = [None, None];
        self.master = None;
        self.stdin = None;
        self.pending = Vec::new();
    }
}
