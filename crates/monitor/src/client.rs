//! The client side of the monitor protocol, for the engine and the CLI:
//! connect to a monitor's socket, say what is wanted (attach, exec, log
//! reopen), then send stdin, stdin's end and terminal sizes, and receive
//! output and the exit frame. Nothing here forks: any thread of any
//! process (a daemon's) may use it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Context, Error, Result};
use crate::frame::{self, Decoder, Frame};
use crate::protocol::{ExecRequest, Hello, Reply, Request, VERSION};

/// Stdin is sent in frames of at most this size.
const STDIN_CHUNK: usize = 16 * 1024;

pub struct Client {
    sock: UnixStream,
    path: PathBuf,
    dec: Decoder,
}

/// How long the monitor may take to answer a request (an exec through an
/// external runtime runs that runtime first).
const REPLY_WAIT: Duration = Duration::from_secs(60);

/// What an exec session ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// None when the monitor went away without one.
    pub exit_code: Option<i32>,
    /// The process ran past its timeout and was killed.
    pub timed_out: bool,
}

impl Client {
    fn connect(path: &Path) -> Result<Client> {
        let short = berth_base::sockpath::short(path)
            .ctx(|| format!("name the socket {}", path.display()))?;
        let sock = UnixStream::connect(&short.path)
            .ctx(|| format!("connect to the monitor socket {}", path.display()))?;
        Ok(Client {
            sock,
            path: path.to_path_buf(),
            dec: Decoder::default(),
        })
    }

    /// Connects and asks; the monitor's answer is an error when it refuses.
    pub fn request(path: &Path, request: Request) -> Result<(Client, Reply)> {
        let mut c = Client::connect(path)?;
        let hello = Hello {
            version: VERSION,
            request,
        };
        c.send(&Frame::Hello(
            serde_json::to_vec(&hello).expect("a request serializes"),
        ))?;
        c.set_read_timeout(Some(REPLY_WAIT))?;
        let reply = match c.recv()? {
            Some(Frame::Reply(raw)) => serde_json::from_slice::<Reply>(&raw)
                .map_err(|e| Error::Protocol(format!("the monitor's reply: {e}")))?,
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "the monitor sent {other:?} before its reply"
                )));
            }
            None => {
                return Err(Error::Protocol(
                    "the monitor closed the connection without a reply (a monitor older than this berth?)".into(),
                ));
            }
        };
        c.set_read_timeout(None)?;
        if let Some(e) = &reply.error {
            return Err(Error::Monitor(e.clone()));
        }
        Ok((c, reply))
    }

    /// Attaches to the container's stdio.
    pub fn attach(path: &Path) -> Result<Client> {
        Ok(Client::request(path, Request::Attach)?.0)
    }

    /// Starts an exec session; returns the client and the process's pid.
    pub fn exec(path: &Path, req: ExecRequest) -> Result<(Client, i32)> {
        let (c, reply) = Client::request(path, Request::Exec(req))?;
        let pid = reply
            .pid
            .ok_or_else(|| Error::Protocol("the monitor's reply has no pid".into()))?;
        Ok((c, pid))
    }

    /// Asks the monitor to open its log file anew.
    pub fn reopen_log(path: &Path) -> Result<()> {
        Client::request(path, Request::ReopenLog).map(drop)
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

    /// The connection and what was already read from it, for a caller
    /// that goes on with its own (asynchronous) I/O after the request.
    pub fn into_parts(self) -> (UnixStream, Decoder) {
        (self.sock, self.dec)
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

    /// Receives until the exit frame.
    pub fn collect(&mut self) -> Result<Finished> {
        let mut f = Finished {
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit_code: None,
            timed_out: false,
        };
        while let Some(frame) = self.recv()? {
            match frame {
                Frame::Stdout(d) => f.stdout.extend_from_slice(&d),
                Frame::Stderr(d) => f.stderr.extend_from_slice(&d),
                Frame::TimedOut => f.timed_out = true,
                Frame::Exit(code) => {
                    f.exit_code = Some(code);
                    return Ok(f);
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "the monitor sent a client frame: {other:?}"
                    )));
                }
            }
        }
        Ok(f)
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
