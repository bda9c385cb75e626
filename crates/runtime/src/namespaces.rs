//! Which namespaces a container gets: new ones (clone/unshare flags) and
//! existing ones joined by path (setns).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::error::{Context, Error, Result};

/// The kernel's CLONE_NEW* flag for a namespace type.
pub fn flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// The namespace's name as in /proc/<pid>/ns/.
pub fn name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The order in which existing namespaces are joined: the mount namespace
/// last (it changes how later paths resolve), and the user namespace where
/// it grants what the others need. A caller without CAP_SYS_ADMIN (rootless)
/// joins it first: its rights there are what let it join the rest. A
/// privileged caller joins it last: the rest may be owned by the host's
/// user namespace (a pod's network, ipc and uts), which the container's
/// root has no rights over, and the host's root can join them all.
pub fn join_order() -> [LinuxNamespaceType; 8] {
    use LinuxNamespaceType::*;
    let privileged = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_ADMIN,
    )
    .unwrap_or(false);
    if privileged {
        [Ipc, Uts, Network, Pid, Cgroup, Time, Mount, User]
    } else {
        [User, Ipc, Uts, Network, Pid, Cgroup, Time, Mount]
    }
}

#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    entries: Vec<(LinuxNamespaceType, Option<PathBuf>)>,
}

impl Namespaces {
    pub fn from_spec(linux: &Linux) -> Result<Self> {
        let mut entries: Vec<(LinuxNamespaceType, Option<PathBuf>)> = Vec::new();
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            if entries.iter().any(|(t, _)| *t == ns.typ()) {
                return Err(Error::config(
                    format!("linux.namespaces[{i}].type"),
                    format!("{} namespace is listed twice", name(ns.typ())),
                ));
            }
            let path = ns.path().clone().filter(|p| !p.as_os_str().is_empty());
            if let Some(p) = &path
                && !p.is_absolute()
            {
                return Err(Error::config(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} is not an absolute path", p.display()),
                ));
            }
            entries.push((ns.typ(), path));
        }
        Ok(Namespaces { entries })
    }

    pub fn contains(&self, t: LinuxNamespaceType) -> bool {
        self.entries.iter().any(|(x, _)| *x == t)
    }

    pub fn is_new(&self, t: LinuxNamespaceType) -> bool {
        self.entries.iter().any(|(x, p)| *x == t && p.is_none())
    }

    /// True when `t` is joined by a path that names the runtime's own
    /// namespace of that type: the host's, for all purposes of a config.
    pub fn joins_hosts(&self, t: LinuxNamespaceType) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(path) = self
            .entries
            .iter()
            .find(|(x, _)| *x == t)
            .and_then(|(_, p)| p.as_ref())
        else {
            return false;
        };
        let own = std::fs::metadata(format!("/proc/self/ns/{}", name(t)));
        match (std::fs::metadata(path), own) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    pub fn is_joined(&self, t: LinuxNamespaceType) -> bool {
        self.entries.iter().any(|(x, p)| *x == t && p.is_some())
    }

    /// CLONE_NEW* flags of every namespace to create.
    pub fn new_flags(&self) -> libc::c_int {
        self.entries
            .iter()
            .filter(|(_, p)| p.is_none())
            .fold(0, |acc, (t, _)| acc | flag(*t))
    }

    /// Opens every namespace to join, in join order, checking that each path
    /// really is a namespace of the stated type.
    pub fn open_joins(&self) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
        let mut out = Vec::new();
        for t in join_order() {
            let Some((_, Some(path))) = self.entries.iter().find(|(x, _)| *x == t) else {
                continue;
            };
            let file = File::open(path).map_err(|e| {
                Error::config(
                    format!("linux.namespaces[{}].path", name(t)),
                    format!("{}: {e}", path.display()),
                )
            })?;
            // NS_GET_NSTYPE answers the type of the namespace behind an fd.
            const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
            // SAFETY: file is open for the call; NS_GET_NSTYPE takes no argument.
            let got = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
            if got != flag(t) {
                return Err(Error::config(
                    format!("linux.namespaces[{}].path", name(t)),
                    format!("{} is not a {} namespace", path.display(), name(t)),
                ));
            }
            out.push((t, OwnedFd::from(file)));
        }
        Ok(out)
    }
}

pub fn setns(fd: &OwnedFd, t: LinuxNamespaceType) -> Result<()> {
    // SAFETY: fd is borrowed, so open, for the call; integer flags.
    if unsafe { libc::setns(fd.as_raw_fd(), flag(t)) } != 0 {
        return Err(Error::os(
            format!("join {} namespace", name(t)),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

pub fn unshare(flags: libc::c_int) -> Result<()> {
    // SAFETY: unshare takes integer flags only.
    if flags != 0 && unsafe { libc::unshare(flags) } != 0 {
        return Err(Error::os(
            format!("unshare namespaces {flags:#x}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Writes the uid and gid maps of the user namespace of `pid`.
pub fn write_id_maps(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    let text = |maps: &[LinuxIdMapping]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    std::fs::write(format!("/proc/{pid}/uid_map"), text(uids)).ctx(|| "write uid_map")?;
    // An ordinary user may map its own group only once setgroups is
    // denied in the namespace (user_namespaces(7)); root keeps it.
    if !rustix::process::geteuid().is_root() {
        match std::fs::write(format!("/proc/{pid}/setgroups"), "deny") {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::os("deny setgroups", e));
            }
            _ => {}
        }
    }
    std::fs::write(format!("/proc/{pid}/gid_map"), text(gids)).ctx(|| "write gid_map")?;
    Ok(())
}

/// A user namespace with these mappings, held by an fd: what an idmapped
/// mount needs.
pub fn userns_with_maps(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let ranges = |maps: &[LinuxIdMapping]| -> Vec<berth_base::userns::IdRange> {
        maps.iter()
            .map(|m| berth_base::userns::IdRange {
                inside: m.container_id(),
                outside: m.host_id(),
                size: m.size(),
            })
            .collect()
    };
    berth_base::userns::create(&ranges(uids), &ranges(gids))
        .ctx(|| "make the mount's user namespace")
}
