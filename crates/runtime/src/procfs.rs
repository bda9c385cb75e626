//! What /proc says about a process: enough to tell whether the pid we stored
//! still names the process we started (pids are reused), and writing
//! process attributes through the host's procfs.

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};

use crate::error::{Context, Error, Result};

/// The fields of /proc/<pid>/stat that the runtime needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state: R, S, D, Z, T, X...
    pub state: u8,
    pub ppid: i32,
    /// Start time in clock ticks since boot (field 22).
    pub start_time: u64,
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    let raw =
        crate::fsutil::read_kernel_file(std::path::Path::new(&format!("/proc/{pid}/stat"))).ok()?;
    parse_stat(raw.as_bytes())
}

/// The command name (field 2) may hold spaces and parentheses, so the fields
/// are counted from the last ')'.
pub fn parse_stat(raw: &[u8]) -> Option<ProcStat> {
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(raw.get(close + 2..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    // Fields 5..=21 lie between ppid (4) and starttime (22).
    let start_time = fields.nth(17)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        start_time,
    })
}

/// The command name (field 2) of `pid`, if it is still the process that
/// started at `start_time`.
pub fn comm(pid: i32, start_time: u64) -> Option<String> {
    let raw =
        crate::fsutil::read_kernel_file(std::path::Path::new(&format!("/proc/{pid}/stat"))).ok()?;
    if parse_stat(raw.as_bytes())?.start_time != start_time {
        return None;
    }
    let open = raw.find('(')?;
    let close = raw.rfind(')')?;
    raw.get(open + 1..close).map(String::from)
}

/// True while `pid` is the process that started at `start_time` and has not
/// exited (a zombie has exited: only its parent has not reaped it yet).
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    match stat(pid) {
        Some(s) => s.start_time == start_time && s.state != b'Z' && s.state != b'X',
        None => false,
    }
}

/// An O_PATH handle on the host's /proc, checked to be procfs: what
/// container processes write their own attributes through once the
/// container's /proc (whatever the config mounted there) is all they see.
pub fn open_host_proc() -> Result<OwnedFd> {
    let fd = rustix::fs::open(
        "/proc",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open /proc")?;
    let st = rustix::fs::fstatfs(&fd).ctx(|| "statfs /proc")?;
    if st.f_type != libc::PROC_SUPER_MAGIC {
        return Err(Error::Other("/proc is not procfs".into()));
    }
    Ok(fd)
}

/// Writes `value` to `/proc/<which>` through the host procfs handle, where
/// `which` is e.g. `thread-self/attr/exec` or `1234/oom_score_adj`.
pub fn write_via(proc_fd: &OwnedFd, which: &str, value: &str) -> std::io::Result<()> {
    let f = rustix::fs::openat(
        proc_fd,
        which,
        OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let mut f = std::fs::File::from(f);
    std::io::Write::write_all(&mut f, value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let raw = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10 18446744073709551615";
        let s = parse_stat(raw).unwrap();
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_time, 123456);
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert!(is_alive(me, s.start_time));
        assert!(!is_alive(me, s.start_time + 1));
    }
}
