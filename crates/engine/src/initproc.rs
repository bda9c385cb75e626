//! A running container's init as seen through /proc, opened so that a
//! reused pid cannot pass for it: a pidfd is taken first, the runtime
//! vouches that the pid is the container's init, and the pidfd still
//! polls "alive" after the open, so what was opened is the init's.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use oci_spec::runtime::Spec;
use rustix::fs::{Mode, OFlags};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::handler::RtStatus;
use crate::model::{Container, Status};
use crate::spec::{self, NetNs};

/// A namespace of another process held open by this one, for a runtime
/// to join while it is held: its path names this process's fd, which
/// stays the namespace whatever becomes of the process it was taken from.
pub struct HeldNamespace {
    fd: OwnedFd,
}

impl HeldNamespace {
    /// Valid while `self` lives (and this process does).
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }
}

impl Engine {
    /// Opens `/proc/<init>/<rel>` of the running (or paused) container
    /// `c`; a Conflict when it does not run.
    pub(crate) fn open_of_init(&self, c: &Container, rel: &str, flags: OFlags) -> Result<OwnedFd> {
        let gone = || Error::Conflict(format!("container {} is not running", c.name));
        if !matches!(c.state.status, Status::Running | Status::Paused) || c.state.pid <= 0 {
            return Err(gone());
        }
        let pid = c.state.pid;
        let pidfd = rustix::process::Pid::from_raw(pid)
            .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
            .ok_or_else(gone)?;
        // The runtime knows its init by pid and start time.
        let (status, init) = self.handler(c)?.state(&c.id)?;
        if !matches!(status, RtStatus::Running | RtStatus::Paused) || init != pid {
            return Err(gone());
        }
        let fd = rustix::fs::open(
            format!("/proc/{pid}/{rel}"),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::Os {
            what: format!("open /proc/{pid}/{rel} of container {}", c.name),
            source: e.into(),
        })?;
        if exited(pidfd.as_fd()) {
            return Err(gone());
        }
        Ok(fd)
    }

    /// Sets the pid namespace of `c`'s spec to that of the container its
    /// config names (`pid_target`, CRI's TARGET), which must be running
    /// in the same pod. The namespace is held by the returned value, which
    /// the caller keeps until the runtime has created the container.
    pub(crate) fn join_pid_target(
        &self,
        c: &Container,
        s: &mut Spec,
    ) -> Result<Option<HeldNamespace>> {
        let Some(key) = &c.config.extra.pid_target else {
            return Ok(None);
        };
        let target = self.pid_target(&c.config.pod, key)?;
        let fd = self.open_of_init(&target, "ns/pid", OFlags::RDONLY)?;
        let held = HeldNamespace { fd };
        spec::set_pid(s, NetNs::Join(&held.path()));
        Ok(Some(held))
    }

    /// The container whose pid namespace a container of `pod` may join.
    pub(crate) fn pid_target(&self, pod: &Option<String>, key: &str) -> Result<Container> {
        let target = self.container(key).map_err(|e| match e {
            Error::NotFound(_) => {
                Error::NotFound(format!("pid namespace target {key}: no such container"))
            }
            e => e,
        })?;
        if target.config.pod != *pod {
            return Err(Error::invalid(
                format!("pid namespace target {key}"),
                "the container is not in the same pod",
            ));
        }
        Ok(target)
    }
}

/// True once the process behind `pidfd` has exited (it polls readable).
pub(crate) fn exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    let now = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}
