//! File locks (flock) between berth processes, held until dropped. Every
//! wait can have a deadline: a daemon must not hang on a lock a stuck
//! process holds.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation as Op;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Shared,
    Exclusive,
}

#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Until the lock is ours.
    Forever,
    /// Give up (Ok(None)) at once when it is held.
    No,
    /// Give up (Err TimedOut) after this long.
    For(Duration),
}

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Flock {
    _file: File,
}

impl Flock {
    /// The fd holding the lock (a child given it keeps the lock held).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self._file)
    }

    /// Locks `path`, creating it (mode 0600) if needed. Ok(None) only with
    /// `Wait::No` when another holds it.
    pub fn acquire(path: &Path, kind: Kind, wait: Wait) -> io::Result<Option<Flock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)?;
        Self::on(file, kind, wait)
    }

    /// Locks an open file (a directory, say).
    pub fn on(file: File, kind: Kind, wait: Wait) -> io::Result<Option<Flock>> {
        let (blocking, nonblocking) = match kind {
            Kind::Shared => (Op::LockShared, Op::NonBlockingLockShared),
            Kind::Exclusive => (Op::LockExclusive, Op::NonBlockingLockExclusive),
        };
        let deadline = match wait {
            Wait::Forever => loop {
                match rustix::fs::flock(&file, blocking) {
                    Ok(()) => return Ok(Some(Flock { _file: file })),
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            },
            Wait::No => None,
            Wait::For(d) => Some(Instant::now() + d),
        };
        let mut pause = Duration::from_millis(1);
        loop {
            match rustix::fs::flock(&file, nonblocking) {
                Ok(()) => return Ok(Some(Flock { _file: file })),
                Err(rustix::io::Errno::WOULDBLOCK) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let Some(deadline) = deadline else {
                return Ok(None);
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "another process holds the lock",
                ));
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_deadlines_hold() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let held = Flock::acquire(&p, Kind::Exclusive, Wait::Forever).unwrap();
        assert!(held.is_some());
        assert!(
            Flock::acquire(&p, Kind::Shared, Wait::No)
                .unwrap()
                .is_none()
        );
        let t = Instant::now();
        let e =
            Flock::acquire(&p, Kind::Exclusive, Wait::For(Duration::from_millis(60))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(60));
        drop(held);
        let a = Flock::acquire(&p, Kind::Shared, Wait::No).unwrap();
        let b = Flock::acquire(&p, Kind::Shared, Wait::No).unwrap();
        assert!(a.is_some() && b.is_some(), "shared locks share");
    }
}
