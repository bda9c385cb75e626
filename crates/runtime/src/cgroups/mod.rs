//! cgroups for a container on v1, v2 and hybrid hosts, driven through
//! cgroupfs (the systemd driver only adds a transient scope on top).
//!
//! A container's cgroup is a set of directories, one per mounted hierarchy.
//! Each resource is written to the hierarchy that hosts its controller: on a
//! hybrid host most land in v1 directories and the rest (hugetlb here) in
//! the unified one.

mod dbus;
pub mod devices;
pub mod ebpf;
pub mod layout;
pub mod oom;
pub mod stats;
pub mod systemd;
mod v1;
mod v2;

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{read_trimmed, write_kernel_file};
pub use layout::Layout;

/// One directory of the container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    pub path: PathBuf,
    /// Where the hierarchy is mounted on the host: its last component
    /// names the directory in the container's /sys/fs/cgroup.
    #[serde(default)]
    pub mountpoint: PathBuf,
    #[serde(default)]
    pub v2: bool,
    /// Controllers served from this directory.
    pub controllers: Vec<String>,
}

/// What the state file keeps about a container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupRecord {
    pub dirs: Vec<CgroupDir>,
    /// Ancestors that create made (outermost first); delete removes them
    /// again once empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_parents: Vec<PathBuf>,
    /// The transient scope made by the systemd driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
}

/// The cgroup of one container.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub record: CgroupRecord,
}

fn err(what: String, e: io::Error) -> Error {
    Error::Cgroup(format!("{what}: {e}"))
}

pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    write_kernel_file(&path, value)
        .map_err(|e| err(format!("write {value:?} to {}", path.display()), e))
}

pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    read_trimmed(&path).map_err(|e| err(format!("read {}", path.display()), e))
}

impl Cgroup {
    /// Works out the container's directory in every hierarchy.
    ///
    /// An absolute `cgroups_path` is taken from each hierarchy's root; a
    /// relative one (or the container id when none is given) from the
    /// cgroup the runtime itself runs in (v1) or its parent (v2), as runc
    /// does.
    pub fn plan(layout: &Layout, cgroups_path: Option<&Path>, id: &str) -> Result<Cgroup> {
        let path = match cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from(id),
        };
        check_path(&path)?;
        let dirs = layout
            .hierarchies
            .iter()
            .map(|h| {
                let base = if path.is_absolute() {
                    PathBuf::from("/")
                } else if h.v2 {
                    // A v2 cgroup with members cannot have children that
                    // use controllers: the sibling of our own cgroup can.
                    let own = layout.own_path(h);
                    own.parent().map(Path::to_path_buf).unwrap_or(own)
                } else {
                    layout.own_path(h)
                };
                let rel = base.join(&path);
                CgroupDir {
                    path: h.mountpoint.join(rel.strip_prefix("/").unwrap_or(&rel)),
                    mountpoint: h.mountpoint.clone(),
                    v2: h.v2,
                    controllers: h.controllers.clone(),
                }
            })
            .collect::<Vec<_>>();
        if dirs.is_empty() {
            return Err(Error::Cgroup("no cgroup hierarchy is mounted".into()));
        }
        Ok(Cgroup {
            record: CgroupRecord {
                dirs,
                ..Default::default()
            },
        })
    }

    pub fn from_record(record: CgroupRecord) -> Cgroup {
        Cgroup { record }
    }

    /// The directory that hosts `controller`: a v1 hierarchy bound to it, or
    /// else the unified hierarchy if it offers it.
    pub fn dir_of(&self, controller: &str) -> Option<&CgroupDir> {
        let dirs = &self.record.dirs;
        dirs.iter()
            .find(|d| !d.v2 && d.controllers.iter().any(|c| c == controller))
            .or_else(|| {
                dirs.iter()
                    .find(|d| d.v2 && d.controllers.iter().any(|c| c == controller))
            })
    }

    pub fn v2_dir(&self) -> Option<&CgroupDir> {
        self.record.dirs.iter().find(|d| d.v2)
    }

    /// True when every controller lives in the unified hierarchy.
    pub fn is_pure_v2(&self) -> bool {
        !self.is_absent() && self.record.dirs.iter().all(|d| d.v2)
    }

    /// Creates the directories (recording the ancestors it had to make) and
    /// prepares them so that processes can join. With `own`, a directory
    /// that exists already must have no processes: another container's
    /// cgroup, or a service's, is not ours to share, limit or kill. On
    /// failure, whatever it made is removed again.
    pub fn create(&mut self, own: bool) -> Result<()> {
        // An ordinary user (rootless, or root of a user's namespace) can
        // make directories only where the host delegated a subtree to it:
        // the hierarchies it cannot write are left out (podman's rule on
        // v1 and hybrid hosts), and the container runs without them.
        if berth_base::rootless::in_user_namespace() || !rustix::process::geteuid().is_root() {
            self.record.dirs.retain(|d| writable_from_user(&d.path));
        }
        let mut made_all = Vec::new();
        let res = (|| {
            for dir in &self.record.dirs {
                let made = mkdir_all(&dir.path)?;
                let existed = !made.contains(&dir.path);
                made_all.extend(made);
                if own && existed {
                    ensure_no_members(&dir.path)?;
                }
                if !dir.v2 && dir.controllers.iter().any(|c| c == "cpuset") {
                    v1::init_cpuset(&dir.path)?;
                }
                if dir.v2 {
                    v2::enable_controllers(&dir.path, &dir.controllers);
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            for d in made_all.iter().rev() {
                let _ = fs::remove_dir(d);
            }
            return Err(e);
        }
        let leaves: Vec<&PathBuf> = self.record.dirs.iter().map(|d| &d.path).collect();
        made_all.retain(|p| !leaves.contains(&p));
        self.record.created_parents = made_all;
        Ok(())
    }

    /// Writes every resource limit of the spec. `devices` (the rules for
    /// the config's `linux.devices`) is None on update: device rules stay
    /// as created, as with runc.
    pub fn apply(&self, r: &LinuxResources, devices: Option<&[LinuxDeviceCgroup]>) -> Result<()> {
        v1::apply(self, r)?;
        v2::apply(self, r)?;
        match devices {
            Some(extra) => devices::apply(self, r.devices().as_deref().unwrap_or(&[]), extra),
            None => Ok(()),
        }
    }

    /// Moves a process into every directory but the unified one when
    /// `skip_v2` (clone3 already placed it there).
    pub fn add_pid(&self, pid: i32, skip_v2: bool) -> Result<()> {
        for d in &self.record.dirs {
            if skip_v2 && d.v2 {
                continue;
            }
            write(&d.path, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// An fd of the unified directory, for clone3's CLONE_INTO_CGROUP.
    pub fn open_v2(&self) -> Option<OwnedFd> {
        let d = self.v2_dir()?;
        rustix::fs::open(
            &d.path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()
    }

    /// True when the container has no cgroup at all (an ordinary user's,
    /// on a host that delegated none).
    pub fn is_absent(&self) -> bool {
        self.record.dirs.is_empty()
    }

    /// Pids of every process in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        if self.is_absent() {
            return Ok(Vec::new());
        }
        let dir = self
            .v2_dir()
            .filter(|_| self.is_pure_v2())
            .or_else(|| self.dir_of("pids"))
            .or_else(|| self.dir_of("freezer"))
            .or_else(|| self.record.dirs.first())
            .ok_or_else(|| Error::Cgroup("container has no cgroup".into()))?;
        let raw = match read(&dir.path, "cgroup.procs") {
            Ok(r) => r,
            Err(_) if !dir.path.exists() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(raw.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// SIGKILLs every member at once through v2's cgroup.kill (Linux 5.14);
    /// false where that is not available.
    pub fn kill_all(&self) -> bool {
        self.is_pure_v2()
            && self
                .v2_dir()
                .is_some_and(|d| write_kernel_file(&d.path.join("cgroup.kill"), "1").is_ok())
    }

    pub fn freeze(&self, frozen: bool) -> Result<()> {
        if let Some(d) = self.dir_of("freezer") {
            return v1::freeze(&d.path, frozen);
        }
        match self.v2_dir() {
            Some(d) => v2::freeze(&d.path, frozen),
            None => Err(Error::Cgroup("no freezer is available".into())),
        }
    }

    pub fn is_frozen(&self) -> bool {
        if let Some(d) = self.dir_of("freezer") {
            return read(&d.path, "freezer.state").is_ok_and(|s| s == "FROZEN");
        }
        self.v2_dir()
            .is_some_and(|d| read(&d.path, "cgroup.freeze").is_ok_and(|s| s == "1"))
    }

    /// Removes the directories, and any cgroups the container made below
    /// them, deepest first. Processes still inside are killed first: a
    /// cgroup with members cannot be removed.
    pub fn destroy(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for d in &self.record.dirs {
            self.remove_tree(&d.path, deadline, 0)?;
        }
        for p in self.record.created_parents.iter().rev() {
            // Another container may share the ancestor: leave it then.
            let _ = fs::remove_dir(p);
        }
        Ok(())
    }

    fn remove_tree(&self, dir: &Path, deadline: Instant, depth: usize) -> Result<()> {
        // The kernel bounds cgroup nesting far below this; a bound here
        // keeps a hostile tree from exhausting the stack all the same.
        const MAX_DEPTH: usize = 256;
        if depth > MAX_DEPTH {
            return Err(Error::Cgroup(format!(
                "{} is nested too deeply",
                dir.display()
            )));
        }
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    self.remove_tree(&e.path(), deadline, depth + 1)?;
                }
            }
        }
        // A cgroup whose last process was just reaped can refuse removal
        // for a moment (the kernel drops its references after the reap):
        // short naps first, so `delete` right after the exit does not
        // sleep a whole 5 ms for it.
        let mut nap = Duration::from_micros(100);
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    self.kill_members(dir);
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(Duration::from_millis(5));
                }
                Err(e) => return Err(err(format!("remove {}", dir.display()), e)),
            }
        }
    }

    fn kill_members(&self, dir: &Path) {
        if let Ok(raw) = read(dir, "cgroup.procs") {
            for pid in raw.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill takes integers only (a stale pid is a race on
                // the target, not on memory).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        // Frozen tasks cannot die.
        if self.is_frozen() {
            let _ = self.freeze(false);
        }
    }
}

/// Rejects paths that climb out of the hierarchy or name the root of
/// where they start: a container gets a cgroup of its own.
fn check_path(p: &Path) -> Result<()> {
    use std::path::Component;
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(Error::config(
            "linux.cgroupsPath",
            format!("{} must not contain '..'", p.display()),
        ));
    }
    if !p.components().any(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::config(
            "linux.cgroupsPath",
            format!("{} names no cgroup below the hierarchy's root", p.display()),
        ));
    }
    Ok(())
}

/// Fails when the existing cgroup `dir` has processes.
fn ensure_no_members(dir: &Path) -> Result<()> {
    let procs = read(dir, "cgroup.procs")?;
    let n = procs.lines().filter(|l| !l.trim().is_empty()).count();
    if n > 0 {
        return Err(Error::Cgroup(format!(
            "{} already has {n} process(es): a container needs a cgroup of its own",
            dir.display()
        )));
    }
    Ok(())
}

/// mkdir -p that reports which directories it made, outermost first.
/// Whether the nearest existing ancestor of `path` (or `path`) lets this
/// process make a directory in it.
fn writable_from_user(path: &Path) -> bool {
    let mut cur = path;
    while !cur.exists() {
        match cur.parent() {
            Some(p) => cur = p,
            None => return false,
        }
    }
    rustix::fs::access(cur, rustix::fs::Access::WRITE_OK).is_ok()
}

fn mkdir_all(path: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = path;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    missing.reverse();
    let mut made = Vec::new();
    for dir in missing {
        match fs::create_dir(&dir) {
            Ok(()) => made.push(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                for d in made.iter().rev() {
                    let _ = fs::remove_dir(d);
                }
                return Err(err(format!("create {}", dir.display()), e));
            }
        }
    }
    Ok(made)
}
