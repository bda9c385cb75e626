//! An ordinary user's berth: root of the user's namespace (the user's own
//! id as 0, its subordinate ids above; `subid`), one namespace per user,
//! held open by a pause process as podman holds its own. Every berth the
//! user runs joins it first, so a container one command made is the next
//! command's to exec into, stop or remove (a sibling namespace could not
//! join it), and the overlay mounts of its rootfs outlive the command that
//! made them (they are in the pause process's mount namespace).

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::process::ProcessId;
use crate::subid::{self, SubIdError};
use crate::userns::IdRange;

/// Set by `enter` for the rest of the process and its children: the
/// user (on the host) whose namespace they are in.
pub const ROOTLESS_UID_ENV: &str = "BERTH_ROOTLESS_UID";

#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    #[error(transparent)]
    SubId(#[from] SubIdError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not the user's own private directory ({why}); remove it or set XDG_RUNTIME_DIR"
    )]
    NotPrivate { path: PathBuf, why: String },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RootlessError {
    let what = what.into();
    move |source| RootlessError::Io { what, source }
}

/// The host user whose berth this is: the caller's own id outside any
/// namespace of berth's, the id `enter` recorded inside it; None for
/// root's berth.
pub fn host_user() -> Option<u32> {
    if let Some(uid) = std::env::var(ROOTLESS_UID_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        && in_user_namespace()
    {
        return Some(uid);
    }
    let euid = rustix::process::geteuid().as_raw();
    (euid != 0).then_some(euid)
}

/// True in any user namespace but the host's (whose map is the identity
/// of all 2^32 - 1 ids).
pub fn in_user_namespace() -> bool {
    static IN: OnceLock<bool> = OnceLock::new();
    *IN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
            .unwrap_or(false)
    })
}

/// The xattr namespace overlayfs reads its whiteouts and opaque markers
/// from: `trusted.overlay.` needs CAP_SYS_ADMIN on the host, so in a
/// user namespace the store uses `user.overlay.` and mounts with
/// `userxattr`.
pub fn overlay_xattr_prefix() -> &'static str {
    if in_user_namespace() {
        "user.overlay."
    } else {
        "trusted.overlay."
    }
}

/// The highest group id this process's namespace maps, at most
/// 2^31 - 1 (the most a kernel id range such as ping_group_range takes).
pub fn highest_gid() -> u32 {
    const MAX: u32 = i32::MAX as u32;
    namespace_maps()
        .and_then(|(_, gids)| {
            gids.iter()
                .filter(|r| r.size > 0)
                .map(|r| r.inside as u64 + r.size as u64 - 1)
                .max()
        })
        .map_or(MAX, |h| h.min(MAX as u64) as u32)
}

/// The name of overlay's xattr `name` (opaque, redirect) in the store's
/// namespace.
pub fn overlay_xattr(name: &str) -> String {
    format!("{}{name}", overlay_xattr_prefix())
}

/// True for xattrs overlayfs reads as its own, in either namespace: a
/// layer or a copy must never set them (they could redirect lookups in
/// the merged tree).
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// The maps of this process's user namespace (uids, gids), read from
/// /proc/self; None on the host.
pub fn namespace_maps() -> Option<(Vec<IdRange>, Vec<IdRange>)> {
    if !in_user_namespace() {
        return None;
    }
    let read = |f: &str| -> Vec<IdRange> {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<u32> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (f.len() == 3).then(|| IdRange {
                    inside: f[0],
                    outside: f[1],
                    size: f[2],
                })
            })
            .collect()
    };
    Some((read("/proc/self/uid_map"), read("/proc/self/gid_map")))
}

/// Why `chown` to `uid`:`gid` failed with `e`, said for a user's
/// namespace where EINVAL means an id it does not map.
pub fn chown_error(uid: u32, gid: u32, e: impl std::fmt::Display + Into<io::Error>) -> String {
    let text = e.to_string();
    let e: io::Error = e.into();
    if e.raw_os_error() == Some(libc::EINVAL)
        && let Some((uids, gids)) = namespace_maps()
    {
        let count = |r: &[IdRange]| r.iter().map(|r| r.size as u64).sum::<u64>();
        return format!(
            "chown {uid}:{gid}: this user's namespace maps {} uids and {} gids (its own and the ranges of {} and {}); an image owning higher ids needs a larger range",
            count(&uids),
            count(&gids),
            subid::SUBUID,
            subid::SUBGID
        );
    }
    format!("chown {uid}:{gid}: {text}")
}

/// A runtime's default state directory: `system` for root; for an
/// ordinary user, or root of a user's namespace (rootless podman runs its
/// runtime so), `$XDG_RUNTIME_DIR/NAME`, else `/tmp/NAME-UID` with the
/// user's id on the host, as runc places its own.
pub fn runtime_root(name: &str, system: &str) -> PathBuf {
    let euid = rustix::process::geteuid().as_raw();
    let outside = namespace_maps()
        .and_then(|(uids, _)| uids.iter().find(|r| r.inside == 0).map(|r| r.outside))
        .unwrap_or(euid);
    if euid == 0 && outside == 0 {
        return PathBuf::from(system);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => Path::new(&d).join(name),
        None => PathBuf::from(format!("/tmp/{name}-{outside}")),
    }
}

/// Makes `dir` the user's private directory (0700), or checks that it is
/// one: a directory (not a link to one) the user owns, that no one else
/// may write. /tmp is everyone's: a directory planted there by another
/// user must not become this user's run root.
pub fn private_dir(dir: &Path, uid: u32) -> Result<(), RootlessError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io_err(format!("create {}", parent.display())))?;
            }
            return private_dir(dir, uid);
        }
        Err(e) => return Err(io_err(format!("create {}", dir.display()))(e)),
    }
    let md = std::fs::symlink_metadata(dir).map_err(io_err(format!("stat {}", dir.display())))?;
    let why = if !md.is_dir() {
        Some("not a directory".to_string())
    } else if md.uid() != uid {
        Some(format!("owned by uid {}", md.uid()))
    } else if md.mode() & 0o022 != 0 {
        Some(format!("mode {:o}", md.mode() & 0o7777))
    } else {
        None
    };
    match why {
        Some(why) => Err(RootlessError::NotPrivate {
            path: dir.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

/// Joins the user's namespace (user and mount), starting its pause
/// process first where none runs; `run_dir` is the user's run directory
/// (its pid file and lock go there). Called by an ordinary user's berth
/// before it starts any thread: a multi-threaded process cannot join a
/// user namespace. The working directory is kept (joining a mount
/// namespace moves it to the root).
pub fn enter(run_dir: &Path, pause_argv: &[String]) -> Result<(), RootlessError> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    private_dir(run_dir, uid)?;
    let _lock = crate::lock::Flock::acquire(
        &run_dir.join("pause.lock"),
        crate::lock::Kind::Exclusive,
        crate::lock::Wait::For(std::time::Duration::from_secs(30)),
    )
    .map_err(io_err(format!("lock {}/pause.lock", run_dir.display())))?
    .ok_or_else(|| {
        io_err(format!("lock {}/pause.lock", run_dir.display()))(io::Error::from(
            io::ErrorKind::TimedOut,
        ))
    })?;
    let pid_file = run_dir.join("pause.pid");
    let running = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| parse_pid_file(&t))
        .and_then(|p| p.pidfd());
    let pidfd = match running {
        Some(fd) => fd,
        None => {
            let user = subid::user_name(uid).unwrap_or_else(|| uid.to_string());
            let (uids, gids) = subid::user_maps(
                &user,
                uid,
                gid,
                (Path::new(subid::SUBUID), Path::new(subid::SUBGID)),
            )?;
            let child = subid::spawn_in_userns(pause_argv, &[], &uids, &gids, true)?;
            let id = ProcessId::of(child.id() as i32)
                .ok_or_else(|| io_err("the pause process")(io::Error::other("exited at once")))?;
            crate::fs::atomic_write(
                &pid_file,
                format!("{} {}\n", id.pid, id.start_time).as_bytes(),
                0o600,
            )
            .map_err(io_err(format!("write {}", pid_file.display())))?;
            id.pidfd()
                .ok_or_else(|| io_err("the pause process")(io::Error::other("exited at once")))?
        }
    };
    let cwd = std::env::current_dir().ok();
    rustix::thread::move_into_thread_name_spaces(
        pidfd.as_fd(),
        rustix::thread::ThreadNameSpaceType::USER | rustix::thread::ThreadNameSpaceType::MOUNT,
    )
    .map_err(|e| io_err("join the user's namespace")(e.into()))?;
    if let Some(cwd) = cwd {
        std::env::set_current_dir(&cwd).map_err(io_err(format!(
            "the working directory {} in the user's namespace",
            cwd.display()
        )))?;
    }
    // SAFETY: called before any thread exists (the caller's contract; a
    // multi-threaded process could not have joined the user namespace
    // above), so nothing reads the environment concurrently.
    unsafe { std::env::set_var(ROOTLESS_UID_ENV, uid.to_string()) };
    Ok(())
}

fn parse_pid_file(text: &str) -> Option<ProcessId> {
    let mut f = text.split_whitespace();
    Some(ProcessId {
        pid: f.next()?.parse().ok()?,
        start_time: f.next()?.parse().ok()?,
    })
}

/// The pause process's life: it holds the namespace and does nothing.
/// Signals that end a session (SIGHUP, SIGINT) are ignored; SIGTERM or
/// SIGKILL ends it, and the user's next berth starts another (containers
/// still running keep the old namespace, out of the new one's reach, as
/// podman's do after its pause process goes).
pub fn pause() -> ! {
    // SAFETY: SIG_IGN installs no handler code; pause only sleeps.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        loop {
            libc::pause();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_dir_is_made_or_refused_when_another_owns_it_or_may_write_it() {
        let d = tempfile::tempdir().unwrap();
        let me = rustix::process::geteuid().as_raw();
        let dir = d.path().join("a/run");
        private_dir(&dir, me).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        private_dir(&dir, me).unwrap();
        let err = private_dir(&dir, me + 1).unwrap_err().to_string();
        assert!(err.contains("owned by uid"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = private_dir(&dir, me).unwrap_err().to_string();
        assert!(err.contains("mode 777"), "{err}");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = private_dir(&link, me).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn pid_files_name_the_pid_and_its_start_time() {
        assert_eq!(
            parse_pid_file("12 345\n"),
            Some(ProcessId {
                pid: 12,
                start_time: 345
            })
        );
        assert_eq!(parse_pid_file("12"), None);
    }
}
