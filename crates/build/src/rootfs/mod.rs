//! Kaniko's mode (`--isolation rootfs`): a build inside an unprivileged
//! container, where no mount, namespace or working container can be made.
//! Each step runs in the process's own root: `/` is made to hold exactly
//! the stage's layers (emptied but for what must stay, then the layers
//! laid down from the store's layer directories), walked before the step,
//! the step's process run as a direct child (or COPY written in), and
//! walked again: what is new or changed, and whiteouts for what vanished,
//! become the layer, written by the same writer as a container's changes.
//!
//! What must stay (keep.rs) is never removed nor written: /proc, /sys,
//! /dev, every mount point, the runtime's /etc files, berth's binary
//! directory, its store and run root, the build context. Emptying `/` is
//! refused outright unless the process is root in a container that is not
//! a system container (guard.rs).

pub mod guard;
pub mod keep;
pub mod process;
pub mod snapshot;
mod workspace;

pub use workspace::{RootLock, RootfsWorkspace, TreeWorkspace, for_build};

use crate::error::{Error, Result};

/// Where a build's steps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// A working container per step, on overlay snapshots.
    #[default]
    Container,
    /// The process's own root, snapshotted by walking it.
    Rootfs,
}

impl Isolation {
    pub fn parse(s: &str) -> Result<Isolation> {
        match s {
            "container" | "oci" => Ok(Isolation::Container),
            "rootfs" | "chroot" => Ok(Isolation::Rootfs),
            _ => Err(Error::invalid(
                format!("--isolation {s}"),
                "expected container or rootfs",
            )),
        }
    }

    /// The isolation of a build: `--isolation` when given, else
    /// `$BERTH_ISOLATION` (berth's builder image sets `rootfs`, as
    /// buildah's image sets BUILDAH_ISOLATION), else `container`. Where
    /// this process cannot mount, `container` cannot work, but `rootfs`
    /// is not chosen for it unasked: it empties this container's root,
    /// which in a container someone works in is their work. Returns a
    /// note to show when the environment chose.
    pub fn choose(
        flag: Option<&str>,
        env: Option<&str>,
        probe_dir: &std::path::Path,
    ) -> Result<(Isolation, Option<String>)> {
        decide(flag, env, || can_mount(probe_dir))
    }
}

/// `Isolation::choose`, with the mount probe given.
fn decide(
    flag: Option<&str>,
    env: Option<&str>,
    can_mount: impl FnOnce() -> std::result::Result<(), String>,
) -> Result<(Isolation, Option<String>)> {
    if let Some(f) = flag {
        return Ok((Isolation::parse(f)?, None));
    }
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        let i = Isolation::parse(e).map_err(|_| {
            Error::invalid(
                format!("BERTH_ISOLATION={e}"),
                "expected container or rootfs",
            )
        })?;
        let note = (i == Isolation::Rootfs).then(|| {
            "building with --isolation rootfs (from BERTH_ISOLATION): steps run in this container's own root".to_string()
        });
        return Ok((i, note));
    }
    match can_mount() {
        Ok(()) => Ok((Isolation::Container, None)),
        Err(why) => Err(Error::invalid(
            "berth build",
            format!(
                "{why}, so no working container can be made here; inside a builder container, --isolation rootfs (or BERTH_ISOLATION=rootfs, which berth's builder image sets) runs the steps in this container's own root instead, deleting everything in it but /proc, /sys, /dev, its mounts and berth's own paths"
            ),
        )),
    }
}

/// CAP_SYS_ADMIN's bit in the capability sets.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether this process can mount (what a working container needs): it
/// has CAP_SYS_ADMIN and a tmpfs mount on `dir` (made for the probe,
/// removed after) succeeds; else why not.
pub fn can_mount(dir: &std::path::Path) -> std::result::Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("read /proc/self/status: {e}"))?;
    if !has_cap(&status, CAP_SYS_ADMIN) {
        return Err("this process lacks CAP_SYS_ADMIN, so it cannot mount".into());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let res = rustix::mount::mount(
        "tmpfs",
        dir,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        c"size=4k",
    );
    let out = match res {
        Ok(()) => {
            let _ = rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH);
            Ok(())
        }
        Err(e) => Err(format!("a tmpfs mount was refused ({e})")),
    };
    let _ = std::fs::remove_dir(dir);
    out
}

/// Whether `cap` is in the effective set of a /proc/PID/status text.
fn has_cap(status: &str, cap: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|set| set & (1u64 << cap) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_names() {
        assert_eq!(Isolation::parse("rootfs").unwrap(), Isolation::Rootfs);
        assert_eq!(Isolation::parse("chroot").unwrap(), Isolation::Rootfs);
        assert_eq!(Isolation::parse("container").unwrap(), Isolation::Container);
        let e = Isolation::parse("vm").unwrap_err().to_string();
        assert!(e.contains("--isolation vm") && e.contains("rootfs"), "{e}");
    }

    #[test]
    fn the_flag_then_the_environment_choose_and_rootfs_is_never_guessed() {
        let cannot = || Err("this process lacks CAP_SYS_ADMIN, so it cannot mount".to_string());
        let can = || Ok(());
        let pick = |f, e, m: &dyn Fn() -> std::result::Result<(), String>| {
            decide(f, e, m).map(|(i, n)| (i, n.is_some()))
        };
        assert_eq!(
            pick(Some("rootfs"), None, &cannot).unwrap(),
            (Isolation::Rootfs, false)
        );
        assert_eq!(
            pick(Some("container"), Some("rootfs"), &can).unwrap(),
            (Isolation::Container, false)
        );
        assert_eq!(
            pick(None, Some("rootfs"), &cannot).unwrap(),
            (Isolation::Rootfs, true)
        );
        assert_eq!(
            pick(None, None, &can).unwrap(),
            (Isolation::Container, false)
        );
        assert_eq!(
            pick(None, Some(""), &can).unwrap(),
            (Isolation::Container, false)
        );
        let e = pick(None, None, &cannot).unwrap_err().to_string();
        assert!(
            e.contains("lacks CAP_SYS_ADMIN") && e.contains("--isolation rootfs"),
            "{e}"
        );
        let e = pick(None, Some("vm"), &can).unwrap_err().to_string();
        assert!(e.contains("BERTH_ISOLATION=vm"), "{e}");
    }

    #[test]
    fn cap_sys_admin_from_status() {
        let with = "Name:\tx\nCapInh:\t0\nCapEff:\t000001ffffffffff\n";
        let without = "CapEff:\t00000000a80425fb\n";
        assert!(has_cap(with, CAP_SYS_ADMIN));
        assert!(!has_cap(without, CAP_SYS_ADMIN));
        assert!(!has_cap("no caps here", CAP_SYS_ADMIN));
    }
}
