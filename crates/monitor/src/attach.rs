//! The client side of the attach protocol, for the engine and the CLI:
//! connect to a monitor's attach socket, send stdin, stdin's end and
//! terminal sizes, and receive output and the exit frame.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Context, Error, Result};
use crate::frame::{self, Decoder, Frame};

/// Stdin is sent in frames of at most this size.
const STDIN_CHUNK: usize = 16 * 1024;

pub struct Client {
    sock: UnixStream,
    path: PathBuf,
    dec: Decoder,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client> {
        let short = crate::sockpath::short(path)?;
        let sock = UnixStream::connect(&short.path)
            .ctx(|| format!("connect to the attach socket {}", path.display()))?;
        Ok(Client {
            sock,
            path: path.to_path_buf(),
            dec: Decoder::default(),
        })
    }

    /// Another handle on the same connection, so that one thread can send
    /// while another receives.
    pub fn try_clone(&self) -> Result<Client> {
        Ok(Client {
            sock: self
                .sock
                .try_clone()
                .ctx(|| "clone the attach connection")?,
            path: self.path.clone(),
            dec: Decoder::default(),
        })
    }

    pub fn send_stdin(&self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(STDIN_CHUNK) {
            self.send(&Frame::Stdin(chunk.to_vec()))?;
        }
        Ok(())
    }

    pub fn close_stdin(&self) -> Result<()> {
        self.send(&Frame::CloseStdin)
    }

    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        self.send(&Frame::Resize { rows, cols })
    }

    /// Waits at most `timeout` in each `recv` (None: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.sock
            .set_read_timeout(timeout)
            .ctx(|| "set the attach read timeout")
    }

    /// The next frame from the monitor: `Stdout`, `Stderr` or, last,
    /// `Exit`. None when the monitor closed the connection.
    pub fn recv(&mut self) -> Result<Option<Frame>> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(f) = self.dec.next_frame()? {
                return Ok(Some(f));
            }
            let n = match (&self.sock).read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(e).ctx(|| format!("read from {}", self.path.display()));
                }
            };
            if n == 0 {
                if self.dec.has_partial() {
                    return Err(Error::Protocol(format!(
                        "{} closed in the middle of a frame",
                        self.path.display()
                    )));
                }
                return Ok(None);
            }
            self.dec.push(&buf[..n]);
        }
    }

    /// Receives until the exit frame; returns (stdout, stderr, exit code).
    /// The code is None when the monitor went away without one.
    pub fn collect(&mut self) -> Result<(Vec<u8>, Vec<u8>, Option<i32>)> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(f) = self.recv()? {
            match f {
                Frame::Stdout(d) => out.extend_from_slice(&d),
                Frame::Stderr(d) => err.extend_from_slice(&d),
                Frame::Exit(code) => return Ok((out, err, Some(code))),
                other => {
                    return Err(Error::Protocol(format!(
                        "the monitor sent a client frame: {other:?}"
                    )));
                }
            }
        }
        Ok((out, err, None))
    }

    fn send(&self, f: &Frame) -> Result<()> {
        let mut wire = Vec::with_capacity(frame::HEADER + STDIN_CHUNK);
        frame::encode(f, &mut wire);
        (&self.sock)
            .write_all(&wire)
            .ctx(|| format!("write to {}", self.path.display()))
    }
}

impl AsFd for Client {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
