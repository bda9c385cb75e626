//! Processes named so that a reused pid cannot pass for them: the pid and
//! the start time the kernel gives it (clock ticks since boot, field 22 of
//! /proc/<pid>/stat). After a reboot or a wrap of the pid space, another
//! process may hold the pid; it will not have the same start time.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

/// The fields of /proc/<pid>/stat berth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// One letter: R, S, D, Z, T, X...
    pub state: u8,
    pub ppid: i32,
    pub start_time: u64,
}

pub fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    let mut raw = Vec::with_capacity(512);
    File::open(format!("/proc/{pid}/stat"))
        .ok()?
        .read_to_end(&mut raw)
        .ok()?;
    parse_stat(&raw)
}

/// The command name (field 2) may hold spaces and parentheses: fields are
/// counted from the last ')'.
pub fn parse_stat(raw: &[u8]) -> Option<Stat> {
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(raw.get(close + 2..)?).ok()?;
    let mut f = rest.split_ascii_whitespace();
    let state = *f.next()?.as_bytes().first()?;
    let ppid = f.next()?.parse().ok()?;
    // Fields 5..=21 lie between ppid (4) and starttime (22).
    let start_time = f.nth(17)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        start_time,
    })
}

impl ProcessId {
    /// The process that has `pid` now, if any.
    pub fn of(pid: i32) -> Option<ProcessId> {
        stat(pid).map(|s| ProcessId {
            pid,
            start_time: s.start_time,
        })
    }

    /// True while this very process runs (a zombie has exited).
    pub fn is_alive(&self) -> bool {
        stat(self.pid)
            .is_some_and(|s| s.start_time == self.start_time && s.state != b'Z' && s.state != b'X')
    }

    /// A pidfd for this process, or None when it is gone (or the pid now
    /// names another). The check comes after the open, so the fd cannot
    /// name a process that took the pid in between.
    pub fn pidfd(&self) -> Option<OwnedFd> {
        let pid = rustix::process::Pid::from_raw(self.pid)?;
        let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
        self.is_alive().then_some(fd)
    }

    /// Sends `signal` if this process still runs; false when it is gone.
    pub fn signal(&self, signal: i32) -> bool {
        let Some(fd) = self.pidfd() else {
            return false;
        };
        let Some(sig) = rustix::process::Signal::from_named_raw(signal) else {
            return false;
        };
        rustix::process::pidfd_send_signal(fd.as_fd(), sig).is_ok()
    }
}

/// A child's exit status, waited for on its pidfd (woken at the exit,
/// not at the next tick of a sleep); at the deadline the child and its
/// process group, if it leads one, are killed and None is returned.
pub fn wait_until(
    child: &mut std::process::Child,
    deadline: std::time::Instant,
) -> Option<std::process::ExitStatus> {
    use rustix::event::{PollFd, PollFlags, poll};
    let pidfd = rustix::process::Pid::from_raw(child.id() as i32)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            // SAFETY: kill(2) takes integers; the group is the child's own
            // where it leads one (ESRCH otherwise, harmlessly).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        match &pidfd {
            Some(fd) => {
                let ts = rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: left.subsec_nanos() as i64,
                };
                let _ = poll(&mut [PollFd::new(fd, PollFlags::IN)], Some(&ts));
            }
            None => std::thread::sleep(left.min(std::time::Duration::from_millis(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_spaces_and_parens() {
        let raw = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 1000 10";
        let s = parse_stat(raw).unwrap();
        assert_eq!((s.state, s.ppid, s.start_time), (b'S', 1, 777));
    }

    #[test]
    fn a_reused_pid_is_not_the_process() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
        assert!(impostor.pidfd().is_none());
        assert!(!impostor.signal(0));
        assert!(!ProcessId::default().is_alive());
    }

    #[test]
    fn a_wait_ends_at_the_exit_or_kills_at_the_deadline() {
        use std::time::{Duration, Instant};
        let mut quick = std::process::Command::new("true").spawn().unwrap();
        let s = wait_until(&mut quick, Instant::now() + Duration::from_secs(5)).unwrap();
        assert!(s.success());
        let mut slow = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let t = Instant::now();
        assert!(wait_until(&mut slow, t + Duration::from_millis(100)).is_none());
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(slow.try_wait().unwrap().is_some(), "killed and reaped");
    }
}
