//! Typed messages between the runtime and the process it is turning into a
//! container, over a SOCK_SEQPACKET socketpair (one message per packet).
//! The socket is close-on-exec: when the child execs, the parent reads EOF.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{self, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::error::{Context, Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Parent → child: the child is in its cgroup (and, for a direct
    /// clone, its id maps are written); `pid` is its pid on the host.
    Go { pid: i32 },
    /// Child → parent: a new user namespace exists; write its id maps.
    MapIds,
    /// Parent → child: the id maps are written.
    IdsMapped,
    /// Child → parent: this pid, not the child itself, is the container's
    /// process (a second fork entered the pid or time namespace).
    Pid(i32),
    /// Child → parent: the namespaces and mounts exist; run the
    /// prestart and createRuntime hooks.
    RunHooks,
    /// Parent → child: the hooks ran.
    HooksDone,
    /// Child → parent: setup is complete; what follows is waiting for
    /// `start` (a container) or the exec itself (exec).
    Ready,
    /// Child → parent: setup failed; the text says why.
    Error(String),
    /// Child → parent: the seccomp notify fd rides along (SCM_RIGHTS), for
    /// the runtime to hand to the profile's listener.
    SeccompFd,
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        let (tag, body): (u8, Vec<u8>) = match self {
            Msg::Go { pid } => (1, pid.to_le_bytes().to_vec()),
            Msg::MapIds => (2, vec![]),
            Msg::IdsMapped => (3, vec![]),
            Msg::Pid(p) => (4, p.to_le_bytes().to_vec()),
            Msg::RunHooks => (5, vec![]),
            Msg::HooksDone => (6, vec![]),
            Msg::Ready => (7, vec![]),
            Msg::Error(s) => (8, s.as_bytes().to_vec()),
            Msg::SeccompFd => (9, vec![]),
        };
        let mut out = Vec::with_capacity(1 + body.len());
        out.push(tag);
        out.extend(body);
        out
    }

    fn decode(b: &[u8]) -> Option<Msg> {
        let (&tag, body) = b.split_first()?;
        let int = || Some(i32::from_le_bytes(body.try_into().ok()?));
        Some(match tag {
            1 => Msg::Go { pid: int()? },
            2 => Msg::MapIds,
            3 => Msg::IdsMapped,
            4 => Msg::Pid(int()?),
            5 => Msg::RunHooks,
            6 => Msg::HooksDone,
            7 => Msg::Ready,
            8 => Msg::Error(String::from_utf8_lossy(body).into_owned()),
            9 => Msg::SeccompFd,
            _ => return None,
        })
    }
}

/// Largest message: an error text is cut to fit.
const MAX_MSG: usize = 16 * 1024;

pub struct Channel {
    fd: OwnedFd,
    /// An fd that arrived with the last message.
    received: std::cell::RefCell<Option<OwnedFd>>,
}

impl Channel {
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .ctx(|| "create sync socketpair")?;
        Ok((Channel::new(a), Channel::new(b)))
    }

    fn new(fd: OwnedFd) -> Channel {
        Channel {
            fd,
            received: Default::default(),
        }
    }

    /// Sends a message with an fd attached.
    pub fn send_with_fd(&self, msg: &Msg, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};
        let raw = msg.encode();
        let fds = [fd];
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(
            &self.fd,
            &[io::IoSlice::new(&raw)],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .ctx(|| "send an fd on the sync socket")?;
        Ok(())
    }

    /// The fd that came with the last message received, if any.
    pub fn take_fd(&self) -> Option<OwnedFd> {
        self.received.borrow_mut().take()
    }

    pub fn send(&self, msg: &Msg) -> Result<()> {
        let mut raw = msg.encode();
        raw.truncate(MAX_MSG);
        loop {
            match net::send(&self.fd, &raw, SendFlags::NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Error::os("send on sync socket", io::Error::from(e))),
            }
        }
    }

    /// The next message, or `None` once the other end is closed (for a
    /// child: it exited or exec'd).
    pub fn recv(&self) -> Result<Option<Msg>> {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage};
        let mut buf = vec![0u8; MAX_MSG];
        loop {
            let mut space =
                [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [io::IoSliceMut::new(&mut buf)];
            let got = net::recvmsg(&self.fd, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
                .map(|r| r.bytes);
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(mut fds) = m {
                    *self.received.borrow_mut() = fds.next();
                }
            }
            match got {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return Msg::decode(&buf[..n])
                        .map(Some)
                        .ok_or_else(|| Error::Other("garbled message on sync socket".into()));
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::CONNRESET) => return Ok(None),
                Err(e) => return Err(Error::os("receive on sync socket", io::Error::from(e))),
            }
        }
    }

    /// Waits for exactly `want`; an error message or EOF becomes an error.
    pub fn expect(&self, want: &Msg) -> Result<()> {
        match self.recv()? {
            Some(m) if &m == want => Ok(()),
            Some(Msg::Error(e)) => Err(Error::Init(e)),
            Some(m) => Err(Error::Other(format!(
                "expected {want:?} on sync socket, got {m:?}"
            ))),
            None => Err(Error::Other(
                "the other end of the sync socket went away".into(),
            )),
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let (a, b) = Channel::pair().unwrap();
        for m in [
            Msg::Go { pid: 4242 },
            Msg::MapIds,
            Msg::Pid(-1),
            Msg::Error("boom: ü".into()),
            Msg::Ready,
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}

#[cfg(test)]
mod fd_tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn passes_an_fd() {
        let (a, b) = Channel::pair().unwrap();
        let f = std::fs::File::open("/proc/self/status").unwrap();
        a.send_with_fd(&Msg::SeccompFd, f.as_fd()).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Msg::SeccompFd));
        let got = b.take_fd().expect("an fd arrived");
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(got), &mut s).unwrap();
        assert!(s.contains("Name:"));
    }
}
