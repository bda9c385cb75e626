//! Whether this process's `/` may be emptied: the rootfs mode deletes
//! everything in it but the kept paths, which on a host (or in a system
//! container, whose root is a whole machine's) would destroy it. Allowed
//! only when all of these hold:
//!
//! - the process is root (it could not empty `/` otherwise, and a
//!   half-emptied root is worse than none);
//! - it is in a container: a runtime's marker is there (`container=` in
//!   the environment, which berth, podman, systemd-nspawn and LXC set;
//!   /run/.containerenv; /.dockerenv), or /proc/self/mountinfo shows an
//!   overlay mounted on `/` (docker, containerd and Kubernetes' roots);
//! - its PID 1 is not an init system (systemd, init, openrc): a system
//!   container's root is someone's machine.

use crate::error::{Error, Result};

/// What the check looks at, gathered apart so the decision is testable.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub euid: u32,
    /// `$container`.
    pub container_env: Option<String>,
    /// Which of /run/.containerenv and /.dockerenv exist.
    pub marker_files: Vec<String>,
    /// The file system type mounted on `/` (from /proc/self/mountinfo).
    pub root_fstype: Option<String>,
    /// /proc/1/comm.
    pub pid1: Option<String>,
}

const MARKERS: &[&str] = &["/run/.containerenv", "/.dockerenv"];
const INITS: &[&str] = &[
    "systemd",
    "init",
    "openrc-init",
    "runit",
    "s6-svscan",
    "upstart",
];

impl Evidence {
    /// This process's.
    pub fn gather() -> Evidence {
        Evidence {
            euid: rustix::process::geteuid().as_raw(),
            container_env: std::env::var("container").ok().filter(|v| !v.is_empty()),
            marker_files: MARKERS
                .iter()
                .filter(|m| std::fs::symlink_metadata(m).is_ok())
                .map(|m| m.to_string())
                .collect(),
            root_fstype: std::fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .and_then(|t| root_fstype(&t)),
            pid1: std::fs::read_to_string("/proc/1/comm")
                .ok()
                .map(|s| s.trim().to_string()),
        }
    }

    /// Ok when `/` may be emptied; else why not, and what to do.
    pub fn check(&self) -> Result<()> {
        let refuse = |why: String| {
            Err(Error::invalid(
                "--isolation rootfs",
                format!(
                    "{why}; this mode deletes everything in / but the build's own paths, so it runs only as root inside a container (see docs/build-in-kubernetes.md)"
                ),
            ))
        };
        if self.euid != 0 {
            return refuse(format!("this process is not root (uid {})", self.euid));
        }
        let in_container = self.container_env.is_some()
            || !self.marker_files.is_empty()
            || self.root_fstype.as_deref() == Some("overlay");
        if !in_container {
            return refuse(
                "no container runtime's marker is here ($container, /run/.containerenv, /.dockerenv, an overlay on /)"
                    .into(),
            );
        }
        if let Some(p) = &self.pid1
            && INITS.contains(&p.as_str())
        {
            return refuse(format!(
                "PID 1 is {p}: this is a system container (a machine's root), not a builder's"
            ));
        }
        Ok(())
    }
}

/// The file system type of the mount on `/`, the last one there (mounts
/// stack): mountinfo's fields are `ID PARENT MAJ:MIN ROOT MOUNTPOINT
/// OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`.
pub fn root_fstype(mountinfo: &str) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            (f.get(4) == Some(&"/")).then(|| f.get(dash + 1).map(|s| s.to_string()))?
        })
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> Evidence {
        Evidence {
            euid: 0,
            container_env: Some("berth".into()),
            marker_files: vec![],
            root_fstype: Some("overlay".into()),
            pid1: Some("berth".into()),
        }
    }

    #[test]
    fn root_in_an_application_container_may_empty_its_root() {
        container().check().unwrap();
        // Any one sign of a container is enough.
        let only_overlay = Evidence {
            container_env: None,
            ..container()
        };
        only_overlay.check().unwrap();
        let only_marker = Evidence {
            container_env: None,
            root_fstype: Some("ext4".into()),
            marker_files: vec!["/.dockerenv".into()],
            ..container()
        };
        only_marker.check().unwrap();
    }

    #[test]
    fn a_host_a_user_or_a_system_container_is_refused() {
        let host = Evidence {
            euid: 0,
            container_env: None,
            marker_files: vec![],
            root_fstype: Some("ext4".into()),
            pid1: Some("systemd".into()),
        };
        let e = host.check().unwrap_err().to_string();
        assert!(e.contains("no container runtime's marker"), "{e}");
        assert!(e.contains("--isolation rootfs"), "{e}");
        let user = Evidence {
            euid: 1000,
            ..container()
        };
        let e = user.check().unwrap_err().to_string();
        assert!(e.contains("not root (uid 1000)"), "{e}");
        let system = Evidence {
            pid1: Some("systemd".into()),
            ..container()
        };
        let e = system.check().unwrap_err().to_string();
        assert!(e.contains("PID 1 is systemd"), "{e}");
    }

    #[test]
    fn the_root_mount_is_the_last_on_slash() {
        let mi = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:5 / /proc rw - proc proc rw
412 300 0:60 / / rw,relatime - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c
";
        assert_eq!(root_fstype(mi).as_deref(), Some("overlay"));
        assert_eq!(
            root_fstype("22 1 0:21 / / rw shared:1 - ext4 /dev/vda rw\n").as_deref(),
            Some("ext4")
        );
        assert_eq!(root_fstype(""), None);
    }
}
