//! A user's subordinate ids (/etc/subuid, /etc/subgid, as shadow-utils
//! keeps them) and the user namespace they make through newuidmap and
//! newgidmap, the setuid helpers that may write maps an ordinary user
//! cannot: the user's own id as root inside, the subordinate ranges above.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::userns::IdRange;

pub const SUBUID: &str = "/etc/subuid";
pub const SUBGID: &str = "/etc/subgid";

/// Why a user has no user namespace to enter.
#[derive(Debug, thiserror::Error)]
pub enum SubIdError {
    #[error(
        "{file} has no range for {user}: add a line `{user}:100000:65536` (as root: usermod --add-{flag} 100000-165535 {user})"
    )]
    NoRange {
        file: String,
        user: String,
        flag: &'static str,
    },
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{helper} is missing: install Debian's uidmap package (it writes the maps of a user's namespace)"
    )]
    NoHelper { helper: &'static str },
    #[error("{helper} {args}: {why}")]
    Helper {
        helper: &'static str,
        args: String,
        why: String,
    },
}

/// The name /etc/passwd gives `uid`.
pub fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// The ranges `user` (named, or by number) has in a subid file's text:
/// `name:start:count` or `uid:start:count` lines.
pub fn ranges_in(text: &str, user: &str, uid: u32) -> Vec<(u32, u32)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != user && who.parse::<u32>().ok() != Some(uid) {
                return None;
            }
            let (start, count) = (start.parse().ok()?, count.parse().ok()?);
            (count > 0).then_some((start, count))
        })
        .collect()
}

/// The maps of a user's namespace: its own id as 0, then each
/// subordinate range from 1 on.
pub fn maps(own: u32, ranges: &[(u32, u32)]) -> Vec<IdRange> {
    let mut out = vec![IdRange {
        inside: 0,
        outside: own,
        size: 1,
    }];
    let mut next = 1u32;
    for &(start, count) in ranges {
        out.push(IdRange {
            inside: next,
            outside: start,
            size: count,
        });
        next = next.saturating_add(count);
    }
    out
}

/// A user's maps from the subid files at `files` (uid file, gid file).
pub fn user_maps(
    user: &str,
    uid: u32,
    gid: u32,
    files: (&Path, &Path),
) -> Result<(Vec<IdRange>, Vec<IdRange>), SubIdError> {
    let read = |file: &Path, flag: &'static str| -> Result<Vec<(u32, u32)>, SubIdError> {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(SubIdError::Read {
                    file: file.display().to_string(),
                    source,
                });
            }
        };
        let r = ranges_in(&text, user, uid);
        if r.is_empty() {
            return Err(SubIdError::NoRange {
                file: file.display().to_string(),
                user: user.to_string(),
                flag,
            });
        }
        Ok(r)
    };
    let uids = read(files.0, "subuids")?;
    let gids = read(files.1, "subgids")?;
    Ok((maps(uid, &uids), maps(gid, &gids)))
}

fn helper(name: &'static str) -> Result<PathBuf, SubIdError> {
    crate::paths::find_program(name).ok_or(SubIdError::NoHelper { helper: name })
}

/// Writes process `pid`'s maps with newuidmap and newgidmap.
pub fn write_maps(pid: u32, uids: &[IdRange], gids: &[IdRange]) -> Result<(), SubIdError> {
    for (name, ranges) in [("newuidmap", uids), ("newgidmap", gids)] {
        let bin = helper(name)?;
        let mut args = vec![pid.to_string()];
        for r in ranges {
            args.extend([
                r.inside.to_string(),
                r.outside.to_string(),
                r.size.to_string(),
            ]);
        }
        let out = Command::new(&bin)
            .args(&args)
            .output()
            .map_err(|e| SubIdError::Helper {
                helper: name,
                args: args.join(" "),
                why: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(SubIdError::Helper {
                helper: name,
                args: args.join(" "),
                why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}

/// Starts `argv` in a new user namespace (and mount namespace) whose
/// maps are `uids` and `gids`, with `env` added to its environment. The
/// child unshares between fork and exec, then execs a shell that waits on
/// a pipe (fd 3) while this process has newuidmap and newgidmap write its
/// maps; the command runs, as root of the namespace, only once they are
/// written, and never if this process goes away first. (The wait cannot
/// be before the exec: spawning waits for the exec.) A `detached` child
/// gets a session of its own and /dev/null for stdio, so it outlives the
/// caller's terminal.
pub fn spawn_in_userns(
    argv: &[String],
    env: &[(&str, &str)],
    uids: &[IdRange],
    gids: &[IdRange],
    detached: bool,
) -> Result<std::process::Child, SubIdError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let io_err = |what: &str, e: io::Error| SubIdError::Helper {
        helper: "berth",
        args: what.to_string(),
        why: e.to_string(),
    };
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_err("pipe", e.into()))?;
    let (rfd, wfd) = (r.as_raw_fd(), w.as_raw_fd());
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        "read -r _ <&3 || exit 125; exec 3<&-; exec \"$@\"",
        "berth-userns",
    ])
    .args(argv)
    .envs(env.iter().copied());
    if detached {
        use std::process::Stdio;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (close, setsid, unshare, dup2)
    // on fds open in the child; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // The write end is the parent's: holding it, a dead parent
            // would leave the shell's read waiting forever.
            libc::close(wfd);
            if detached && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            // fd 3 reaches the shell: dup2 clears close-on-exec, except
            // where the pipe already is fd 3 (dup2 then does nothing).
            let ok = if rfd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(rfd, 3)
            };
            if ok < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| io_err("start the command", e))?;
    drop(r);
    if let Err(e) = write_maps(child.id(), uids, gids) {
        // Closing the write end lets the shell give up.
        drop(w);
        let _ = child.wait();
        return Err(e);
    }
    rustix::io::write(&w, b"go\n").map_err(|e| io_err("release the command", e.into()))?;
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_number_and_maps_above_the_own_id() {
        let text =
            "# comment\nalice:100000:65536\n1001:200000:1000\nbob:300000:0\nalice:400000:10\n";
        assert_eq!(
            ranges_in(text, "alice", 1000),
            [(100000, 65536), (400000, 10)]
        );
        assert_eq!(ranges_in(text, "carol", 1001), [(200000, 1000)]);
        assert!(
            ranges_in(text, "bob", 1002).is_empty(),
            "a zero count is no range"
        );
        let m = maps(1000, &[(100000, 65536), (400000, 10)]);
        assert_eq!(
            m.iter()
                .map(|r| (r.inside, r.outside, r.size))
                .collect::<Vec<_>>(),
            [(0, 1000, 1), (1, 100000, 65536), (65537, 400000, 10)]
        );
    }

    #[test]
    fn a_user_without_a_range_is_told_the_line_to_add() {
        let d = tempfile::tempdir().unwrap();
        let (u, g) = (d.path().join("subuid"), d.path().join("subgid"));
        std::fs::write(&u, "other:100000:65536\n").unwrap();
        std::fs::write(&g, "dave:100000:65536\n").unwrap();
        let err = user_maps("dave", 1000, 1000, (&u, &g))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has no range for dave") && err.contains("dave:100000:65536"),
            "{err}"
        );
        assert!(err.contains(&u.display().to_string()), "{err}");
        std::fs::write(&u, "dave:100000:65536\n").unwrap();
        let (uids, gids) = user_maps("dave", 1000, 1001, (&u, &g)).unwrap();
        assert_eq!((uids.len(), gids[0].outside), (2, 1001));
    }
}
