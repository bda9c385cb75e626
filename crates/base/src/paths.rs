//! Where berth keeps things on this host, in one place: the persistent
//! and volatile roots, network namespace pins and host-wide locks. Nothing
//! else names /var/lib/berth, /run/berth, /run/netns or /run/lock, so a
//! berth for another root (a test's, a user's) is a different context,
//! not a different code path.

use std::path::{Path, PathBuf};

pub const SYSTEM_ROOT: &str = "/var/lib/berth";
pub const SYSTEM_RUN_ROOT: &str = "/run/berth";
/// Where `ip netns` looks: pins of the system berth go there.
const SYSTEM_NETNS: &str = "/run/netns";
const SYSTEM_LOCKS: &str = "/run/lock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// Persistent state: images, layers, containers' bundles, volumes.
    pub root: PathBuf,
    /// Volatile state: runtime state, locks, sockets, the event log.
    pub run_root: PathBuf,
    /// Where network namespaces are pinned.
    pub netns_dir: PathBuf,
    /// Locks every berth on the host shares, whatever its roots (network
    /// address plans are host resources).
    pub host_locks: PathBuf,
}

/// An ordinary user's roots, as rootless podman places its own: the store
/// in `$XDG_DATA_HOME/berth` (`~/.local/share/berth`), volatile state in
/// `$XDG_RUNTIME_DIR/berth`, else in `/tmp/berth-run-UID` (which the user
/// owns; made private by whoever makes it).
pub fn user_roots(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    uid: u32,
) -> (PathBuf, PathBuf) {
    let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let data = set("XDG_DATA_HOME")
        .or_else(|| set("HOME").map(|h| h.join(".local/share")))
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/berth-{uid}")));
    let run = set("XDG_RUNTIME_DIR")
        .map(|r| r.join("berth"))
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/berth-run-{uid}")));
    (data.join("berth"), run)
}

/// A program's path: the first in $PATH, then in the usual places (a
/// helper such as newuidmap or pasta is found even where a caller's PATH
/// is bare).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl HostPaths {
    /// The system berth's (root's).
    pub fn system() -> HostPaths {
        HostPaths::with_roots(SYSTEM_ROOT, SYSTEM_RUN_ROOT)
    }

    /// Given roots; pins go to /run/netns only for the system run root,
    /// else inside the run root.
    pub fn with_roots(root: impl Into<PathBuf>, run_root: impl Into<PathBuf>) -> HostPaths {
        let run_root = run_root.into();
        let netns_dir = if run_root == Path::new(SYSTEM_RUN_ROOT) {
            PathBuf::from(SYSTEM_NETNS)
        } else {
            run_root.join("netns")
        };
        // An ordinary user's networks are its own (in its bridge home):
        // their locks too; /run/lock may hold root's, which it cannot open.
        let host_locks = match crate::rootless::host_user() {
            Some(_) => run_root.join("locks"),
            None => PathBuf::from(SYSTEM_LOCKS),
        };
        HostPaths {
            root: root.into(),
            run_root,
            netns_dir,
            host_locks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_roots_follow_xdg() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let (r, run) = user_roots(
            env(&[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/1000")]),
            1000,
        );
        assert_eq!(
            (r.as_path(), run.as_path()),
            (
                Path::new("/home/u/.local/share/berth"),
                Path::new("/run/user/1000/berth")
            )
        );
        let (r, run) = user_roots(env(&[("XDG_DATA_HOME", "/d"), ("HOME", "/home/u")]), 7);
        assert_eq!(
            (r.as_path(), run.as_path()),
            (Path::new("/d/berth"), Path::new("/tmp/berth-run-7"))
        );
    }

    #[test]
    fn pins_go_where_ip_netns_looks_only_for_the_system_run_root() {
        assert_eq!(HostPaths::system().netns_dir, Path::new("/run/netns"));
        let t = HostPaths::with_roots("/tmp/r", "/tmp/run");
        assert_eq!(t.netns_dir, Path::new("/tmp/run/netns"));
        assert_eq!(t.host_locks, Path::new("/run/lock"));
    }
}
