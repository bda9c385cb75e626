//! The monitor's socket and its clients. A client says what it is in its
//! first frame (HELLO, protocol.rs): an attach client gets the
//! container's output, an exec client its session's. Nothing here may
//! block: sockets are non-blocking, a client's unsent output is bounded
//! and a client that falls further behind is dropped.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use crate::frame::{self, Decoder, Frame};

/// Unsent output a client may have before it counts as too slow.
const MAX_BACKLOG: usize = 256 * 1024;
/// More clients than this are turned away.
const MAX_CLIENTS: usize = 32;
/// A client that has not said what it wants by then is dropped.
const HELLO_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connected, no HELLO yet; dropped after this instant.
    New(std::time::Instant),
    Attach,
    Exec,
}

pub struct Client {
    /// Unique for the monitor's life: sessions name their client by it.
    pub id: u64,
    pub role: Role,
    sock: UnixStream,
    dec: Decoder,
    out: Vec<u8>,
    /// The last frame is queued: close once it is sent.
    closing: bool,
}

impl Client {
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    pub fn done(&self) -> bool {
        self.closing && self.out.is_empty()
    }

    /// The client is closed once what is queued is sent.
    pub fn closing_after_send(&mut self) {
        self.closing = true;
    }

    /// Queues the last frame: the client is closed once it is sent.
    pub fn finish(&mut self, kind: u8, payload: &[u8]) {
        self.queue(kind, payload);
        self.closing = true;
    }

    /// Queues a frame; false when the client is too far behind to keep.
    pub fn queue(&mut self, kind: u8, payload: &[u8]) -> bool {
        if self.closing {
            return true;
        }
        if self.out.len() + frame::HEADER + payload.len() > MAX_BACKLOG {
            return false;
        }
        self.out
            .extend_from_slice(&frame::header(kind, payload.len()));
        self.out.extend_from_slice(payload);
        self.flush()
    }

    /// Sends what the socket takes now; false when the client is gone.
    pub fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            match (&self.sock).write(&self.out) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        if self.out.is_empty() && self.out.capacity() > 16 * 1024 {
            self.out = Vec::new();
        }
        true
    }

    /// Reads what arrived; Ok(false) at the client's end of stream.
    pub fn read(&mut self, frames: &mut Vec<Frame>) -> Result<bool> {
        let mut buf = [0u8; 4096];
        let n = loop {
            match (&self.sock).read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e).ctx(|| "read from an attach client"),
            }
        };
        if n == 0 {
            return Ok(false);
        }
        self.dec.push(&buf[..n]);
        while let Some(f) = self.dec.next_frame()? {
            let first = matches!(self.role, Role::New(_));
            match f {
                Frame::Hello(_) if first => frames.push(f),
                Frame::Stdin(_) | Frame::CloseStdin | Frame::Resize { .. } if !first => {
                    frames.push(f)
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "a client sent {other:?} {}",
                        if first { "before HELLO" } else { "out of turn" }
                    )));
                }
            }
        }
        Ok(true)
    }
}

pub struct Server {
    path: PathBuf,
    /// The socket file it bound (device, inode), to remove only that.
    bound_file: Option<(u64, u64)>,
    listener: UnixListener,
    pub clients: Vec<Client>,
    /// Set once the container has exited: late attach clients get it at
    /// once.
    pub exit_code: Option<i32>,
    next_id: u64,
}

impl Server {
    /// Binds the socket (mode 0600), replacing a stale one.
    pub fn bind(path: &Path) -> Result<Server> {
        let short = berth_base::sockpath::short(path)
            .ctx(|| format!("name the socket {}", path.display()))?;
        match std::fs::symlink_metadata(path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }
        // Created 0600 from the start: no moment in which others connect.
        // SAFETY: umask only swaps the mask; the monitor is single-threaded,
        // so no other thread creates files meanwhile.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(&short.path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound.ctx(|| format!("bind the attach socket {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .ctx(|| "make the attach socket non-blocking")?;
        let bound_file = file_id(path);
        Ok(Server {
            path: path.to_path_buf(),
            bound_file,
            listener,
            clients: Vec::new(),
            exit_code: None,
            next_id: 1,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    pub fn accept(&mut self) {
        loop {
            let sock = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if self.clients.len() >= MAX_CLIENTS || sock.set_nonblocking(true).is_err() {
                continue;
            }
            self.clients.push(Client {
                id: self.next_id,
                role: Role::New(std::time::Instant::now() + HELLO_WAIT),
                sock,
                dec: Decoder::default(),
                out: Vec::new(),
                closing: false,
            });
            self.next_id += 1;
        }
    }

    /// The client with `id`, if it is still connected.
    pub fn client(&mut self, id: u64) -> Option<&mut Client> {
        self.clients.iter_mut().find(|c| c.id == id)
    }

    /// Drops clients that did not say HELLO in time; the earliest such
    /// deadline still to come, for the poll timeout.
    pub fn expire_new(&mut self, now: std::time::Instant) -> Option<std::time::Instant> {
        self.clients
            .retain(|c| !matches!(c.role, Role::New(deadline) if now >= deadline));
        self.clients
            .iter()
            .filter_map(|c| match c.role {
                Role::New(d) => Some(d),
                _ => None,
            })
            .min()
    }

    /// Sends the container's output to every attach client, dropping
    /// those too slow to take it.
    pub fn broadcast(&mut self, kind: u8, data: &[u8]) {
        self.clients
            .retain_mut(|c| c.role != Role::Attach || c.queue(kind, data));
    }

    /// The container's last frame: its exit code; attach clients are
    /// closed once it is sent.
    pub fn exit(&mut self, code: i32) {
        self.exit_code = Some(code);
        for c in &mut self.clients {
            if c.role == Role::Attach {
                c.finish(frame::EXIT, &code.to_be_bytes());
            }
        }
        self.clients.retain(|c| !c.done());
    }

    pub fn drop_client(&mut self, i: usize) {
        self.clients.swap_remove(i);
    }

    pub fn drop_done(&mut self) {
        self.clients.retain(|c| !c.done());
    }

    pub fn all_sent(&self) -> bool {
        self.clients.iter().all(|c| c.out.is_empty())
    }

    /// Removes the socket: no client can come any more. Only if the path
    /// is still this monitor's socket: a container started again at once
    /// has a new monitor whose socket has the same path.
    pub fn remove(&self) {
        if self.bound_file.is_some() && file_id(&self.path) == self.bound_file {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The file at `path`, by device and inode.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}
