//! What /proc says about a process: enough to tell whether the pid we stored
//! still names the process we started (pids are reused).

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

/// True while `pid` is the process that started at `start_time` and has not
/// exited (a zombie has exited: only its parent has not reaped it yet).
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    match stat(pid) {
        Some(s) => s.start_time == start_time && s.state != b'Z' && s.state != b'X',
        None => false,
    }
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
