//! The container's filesystem view, built inside its new mount namespace:
//! the root bind-mounted onto itself, the config's mounts in order, /dev,
//! then pivot_root, masked and read-only paths.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::cgroups::CgroupRecord;
use crate::error::{Context, Error, Result};
use crate::inroot;
use crate::mountcall::{self, clone_tree, move_mount, setattr};
use crate::mountopts::{self, ATTR_NODEV, ATTR_NOEXEC, ATTR_NOSUID, ATTR_RDONLY, Attrs, MountOpts};

pub struct Rootfs<'a> {
    pub path: &'a Path,
    pub bundle: &'a Path,
    pub spec: &'a Spec,
    pub cgroup: &'a CgroupRecord,
    /// The container has a cgroup namespace of its own.
    pub cgroupns: bool,
    /// The container runs in a user namespace: no mknod, fewer mounts.
    pub userns: bool,
    /// User namespaces for idmapped mounts, by index in `mounts`.
    pub idmaps: &'a [(usize, OwnedFd)],
    root: Option<OwnedFd>,
}

fn os(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |e| Error::os(what, e)
}

impl<'a> Rootfs<'a> {
    pub fn new(
        path: &'a Path,
        bundle: &'a Path,
        spec: &'a Spec,
        cgroup: &'a CgroupRecord,
        (cgroupns, userns): (bool, bool),
        idmaps: &'a [(usize, OwnedFd)],
    ) -> Self {
        Rootfs {
            path,
            bundle,
            spec,
            cgroup,
            cgroupns,
            userns,
            idmaps,
            root: None,
        }
    }

    fn root(&self) -> std::os::fd::BorrowedFd<'_> {
        self.root.as_ref().expect("rootfs is prepared").as_fd()
    }

    /// Everything up to, not including, pivot_root.
    pub fn prepare(&mut self) -> Result<()> {
        let linux = self.spec.linux().as_ref();
        let prop =
            mountopts::root_propagation(linux.and_then(|l| l.rootfs_propagation().as_deref()))?;
        mountcall::mount(None, Path::new("/"), None, prop, None)
            .map_err(os("set the propagation of /"))?;
        // pivot_root needs the new root to be a mount point.
        mountcall::mount(
            Some(self.path),
            self.path,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(os(format!("bind {} onto itself", self.path.display())))?;
        self.root = Some(
            rustix::fs::open(
                self.path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("open {}", self.path.display()))?,
        );
        for (i, m) in self.spec.mounts().iter().flatten().enumerate() {
            self.mount_entry(i, m)?;
        }
        if !self.dev_is_bind() {
            let devices = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
            self.create_devices(&devices)?;
            self.dev_symlinks()?;
        }
        Ok(())
    }

    fn dev_is_bind(&self) -> bool {
        self.spec.mounts().iter().flatten().any(|m| {
            m.destination() == Path::new("/dev")
                && (m.typ().as_deref() == Some("bind")
                    || m.options()
                        .iter()
                        .flatten()
                        .any(|o| o == "bind" || o == "rbind"))
        })
    }

    fn mount_entry(&self, i: usize, m: &Mount) -> Result<()> {
        let field = format!("mounts[{i}]");
        let typ = m.typ().as_deref().filter(|t| !t.is_empty());
        let opts = mountopts::parse(
            m.options().as_deref().unwrap_or(&[]),
            typ,
            &format!("{field}.options"),
        )?;
        let dest = m.destination();
        let wrap = |e: Error| match e {
            Error::Os { what, source } => {
                Error::os(format!("{field} ({}): {what}", dest.display()), source)
            }
            other => other,
        };
        if opts.idmap && !opts.bind {
            return Err(Error::config(
                format!("{field}.options"),
                "idmap is supported on bind mounts only",
            ));
        }
        let r = if matches!(typ, Some("cgroup") | Some("cgroup2")) {
            self.mount_cgroup(dest, &opts)
        } else if opts.bind {
            let idmap = self
                .idmaps
                .iter()
                .find(|(idx, _)| *idx == i)
                .map(|(_, fd)| fd);
            self.mount_bind(&field, m, &opts, idmap)
        } else {
            self.mount_fs(&field, m, typ.unwrap_or("none"), &opts)
        };
        r.map_err(wrap)
    }

    fn bind_source(&self, field: &str, m: &Mount) -> Result<PathBuf> {
        let src = m.source().as_ref().ok_or_else(|| {
            Error::config(format!("{field}.source"), "a bind mount needs a source")
        })?;
        Ok(if src.is_absolute() {
            src.clone()
        } else {
            self.bundle.join(src)
        })
    }

    fn mount_bind(
        &self,
        field: &str,
        m: &Mount,
        opts: &MountOpts,
        idmap: Option<&OwnedFd>,
    ) -> Result<()> {
        let src = self.bind_source(field, m)?;
        let meta = fs::metadata(&src).map_err(|e| {
            Error::config(format!("{field}.source"), format!("{}: {e}", src.display()))
        })?;
        let target = if meta.is_dir() {
            inroot::mkdir_all(self.root(), m.destination(), 0o755)
        } else {
            inroot::create_file(self.root(), m.destination(), 0o644)
        }
        .map_err(os("create the mount point"))?;
        let tree =
            clone_tree(&src, opts.recursive).map_err(os(format!("clone {}", src.display())))?;
        if let Some(userns) = idmap {
            // Only a detached mount can take an id mapping.
            setattr(
                &tree,
                opts.idmap_recursive,
                Attrs::default(),
                0,
                Some(userns),
            )
            .map_err(os("map the mount's ids"))?;
        }
        attach(&tree, &target, opts)
    }

    fn mount_fs(&self, field: &str, m: &Mount, typ: &str, opts: &MountOpts) -> Result<()> {
        let dest = m.destination();
        // A symlinked /proc or /sys would let the masked paths land
        // somewhere else than where they mean to hide things.
        let strict = matches!(typ, "proc" | "sysfs");
        let target =
            inroot::mkdir_all(self.root(), dest, 0o755).map_err(os("create the mount point"))?;
        if strict {
            inroot::open_with(self.root(), dest, OFlags::PATH, ResolveFlags::NO_SYMLINKS).map_err(
                |_| {
                    Error::config(
                        format!("{field}.destination"),
                        format!("{} must not be a symlink", dest.display()),
                    )
                },
            )?;
        }
        let copy_from = if opts.tmpcopyup {
            Some(inroot::reopen_dir(&target).map_err(os("open"))?)
        } else {
            None
        };
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let r = mountcall::mount(
            Some(&source),
            &inroot::fd_path(&target),
            Some(typ),
            opts.flags,
            Some(&opts.data),
        );
        match r {
            Ok(()) => {}
            // In a user namespace that does not own the network (or ipc)
            // namespace, sysfs (mqueue) cannot be mounted: show the host's.
            Err(e)
                if self.userns
                    && e.raw_os_error() == Some(libc::EPERM)
                    && matches!(typ, "sysfs" | "mqueue") =>
            {
                let host = if typ == "sysfs" {
                    "/sys"
                } else {
                    "/dev/mqueue"
                };
                let tree =
                    clone_tree(Path::new(host), true).map_err(os(format!("clone {host}")))?;
                let mut o = opts.clone();
                o.rec_attrs.add_set(ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC);
                if opts.flags & libc::MS_RDONLY != 0 {
                    o.rec_attrs.add_set(ATTR_RDONLY);
                }
                return attach(&tree, &target, &o);
            }
            Err(e) => return Err(Error::os(format!("mount {typ}"), e)),
        }
        let mounted =
            inroot::open(self.root(), dest, OFlags::PATH).map_err(os("open the new mount"))?;
        for p in &opts.propagation {
            mountcall::mount(None, &inroot::fd_path(&mounted), None, *p, None)
                .map_err(os("set propagation"))?;
        }
        if !opts.rec_attrs.is_empty() {
            setattr(&mounted, true, opts.rec_attrs, 0, None).map_err(os("set mount attributes"))?;
        }
        if let Some(from) = copy_from {
            let to = inroot::reopen_dir(&mounted).map_err(os("open the new mount"))?;
            copy_tree(&from, &to).map_err(os("copy up into the tmpfs"))?;
        }
        Ok(())
    }

    /// /sys/fs/cgroup: a fresh cgroup2 mount where the container has a
    /// cgroup namespace on a pure v2 host; otherwise the container's own
    /// directories of each hierarchy, bound read-only or not, under a tmpfs.
    fn mount_cgroup(&self, dest: &Path, opts: &MountOpts) -> Result<()> {
        let ro = opts.flags & libc::MS_RDONLY != 0;
        let base = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let target =
            inroot::mkdir_all(self.root(), dest, 0o755).map_err(os("create the mount point"))?;
        let pure_v2 = self.cgroup.dirs.iter().all(|d| d.v2);
        let mut bind_opts = MountOpts {
            recursive: true,
            ..Default::default()
        };
        bind_opts.attrs = Attrs {
            set: ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC | if ro { ATTR_RDONLY } else { 0 },
            clr: 0,
        };
        if pure_v2 {
            if self.cgroupns {
                let flags = base | if ro { libc::MS_RDONLY } else { 0 };
                return mountcall::mount(
                    Some(Path::new("cgroup2")),
                    &inroot::fd_path(&target),
                    Some("cgroup2"),
                    flags,
                    None,
                )
                .map_err(os("mount cgroup2"));
            }
            let dir = &self.cgroup.dirs[0].path;
            let tree = clone_tree(dir, true).map_err(os(format!("clone {}", dir.display())))?;
            return attach(&tree, &target, &bind_opts);
        }
        mountcall::mount(
            Some(Path::new("tmpfs")),
            &inroot::fd_path(&target),
            Some("tmpfs"),
            base,
            Some("mode=755"),
        )
        .map_err(os("mount tmpfs for cgroups"))?;
        let top =
            inroot::open(self.root(), dest, OFlags::PATH).map_err(os("open the cgroup tmpfs"))?;
        let top_dir = inroot::reopen_dir(&top).map_err(os("open the cgroup tmpfs"))?;
        for d in &self.cgroup.dirs {
            let Some(name) = d.mountpoint.file_name() else {
                continue;
            };
            let sub = dest.join(name);
            let target = inroot::mkdir_all(self.root(), &sub, 0o755)
                .map_err(os("create the cgroup mount point"))?;
            let tree =
                clone_tree(&d.path, true).map_err(os(format!("clone {}", d.path.display())))?;
            attach(&tree, &target, &bind_opts)?;
            // Co-mounted controllers ("cpu,cpuacct") get a link per name.
            let name = name.to_string_lossy();
            if name.contains(',') {
                for part in name.split(',') {
                    let _ = rustix::fs::symlinkat(name.as_ref(), &top_dir, part);
                }
            }
        }
        if ro {
            setattr(
                &top,
                false,
                Attrs {
                    set: ATTR_RDONLY,
                    clr: 0,
                },
                0,
                None,
            )
            .map_err(os("make the cgroup tmpfs read-only"))?;
        }
        Ok(())
    }

    fn create_devices(&self, devices: &[LinuxDevice]) -> Result<()> {
        let default = |name: &str, minor| -> (PathBuf, LinuxDeviceType, i64, i64, u32, u32, u32) {
            let (major, minor) = if name == "tty" { (5, 0) } else { (1, minor) };
            (
                PathBuf::from(format!("/dev/{name}")),
                LinuxDeviceType::C,
                major,
                minor,
                0o666,
                0,
                0,
            )
        };
        let mut all = vec![
            default("null", 3),
            default("zero", 5),
            default("full", 7),
            default("random", 8),
            default("urandom", 9),
            default("tty", 0),
        ];
        for d in devices {
            let entry = (
                d.path().clone(),
                d.typ(),
                d.major(),
                d.minor(),
                d.file_mode().unwrap_or(0o666) & 0o7777,
                d.uid().unwrap_or(0),
                d.gid().unwrap_or(0),
            );
            match all.iter_mut().find(|x| x.0 == entry.0) {
                Some(slot) => *slot = entry,
                None => all.push(entry),
            }
        }
        for (path, typ, major, minor, mode, uid, gid) in all {
            self.create_device(&path, typ, major, minor, mode, uid, gid)
                .map_err(|e| match e {
                    Error::Os { what, source } => {
                        Error::os(format!("device {}: {what}", path.display()), source)
                    }
                    other => other,
                })?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn create_device(
        &self,
        path: &Path,
        typ: LinuxDeviceType,
        major: i64,
        minor: i64,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<()> {
        let kind = match typ {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::config(
                    "linux.devices",
                    format!("{}: type \"a\" is not a device", path.display()),
                ));
            }
        };
        if self.userns {
            // mknod is not allowed in a user namespace: bind the host's node.
            let target = inroot::create_file(self.root(), path, 0o000).map_err(os("create"))?;
            let tree =
                clone_tree(path, false).map_err(os(format!("clone host {}", path.display())))?;
            return move_mount(&tree, &target).map_err(os("bind"));
        }
        let (parent, name) = inroot::split(path).map_err(os("split"))?;
        let dir = inroot::mkdir_all(self.root(), parent, 0o755).map_err(os("create parent"))?;
        let dir = inroot::reopen_dir(&dir).map_err(os("open parent"))?;
        let dev = libc::makedev(major as u32, minor as u32);
        let mknod = || {
            rustix::fs::mknodat(
                &dir,
                name,
                rustix::fs::FileType::from_raw_mode(kind),
                Mode::from_raw_mode(mode),
                dev,
            )
        };
        match mknod() {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                // What the image put there is replaced by the real device.
                rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty())
                    .ctx(|| "remove the old node")?;
                mknod().ctx(|| "mknod")?;
            }
            Err(e) => return Err(Error::os("mknod", io::Error::from(e))),
        }
        rustix::fs::chownat(
            &dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .ctx(|| "chown")?;
        Ok(())
    }

    fn dev_symlinks(&self) -> Result<()> {
        let dev =
            inroot::mkdir_all(self.root(), Path::new("/dev"), 0o755).map_err(os("create /dev"))?;
        let dev = inroot::reopen_dir(&dev).map_err(os("open /dev"))?;
        let mut links = vec![
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
        ];
        if Path::new("/proc/kcore").exists() {
            links.push(("/proc/kcore", "core"));
        }
        let has_pts = self
            .spec
            .mounts()
            .iter()
            .flatten()
            .any(|m| m.destination() == Path::new("/dev/pts"));
        if has_pts {
            let _ = rustix::fs::unlinkat(&dev, "ptmx", rustix::fs::AtFlags::empty());
            links.push(("pts/ptmx", "ptmx"));
        }
        for (target, name) in links {
            match rustix::fs::symlinkat(target, &dev, name) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => {
                    return Err(Error::os(
                        format!("symlink /dev/{name}"),
                        io::Error::from(e),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Puts a detached mount tree at `target` with the options' attributes and
/// propagation.
fn attach(tree: &OwnedFd, target: &OwnedFd, opts: &MountOpts) -> Result<()> {
    if !opts.attrs.is_empty() {
        setattr(tree, false, opts.attrs, 0, None).map_err(os("set mount attributes"))?;
    }
    if !opts.rec_attrs.is_empty() {
        setattr(tree, true, opts.rec_attrs, 0, None)
            .map_err(os("set recursive mount attributes"))?;
    }
    move_mount(tree, target).map_err(os("attach the mount"))?;
    for p in &opts.propagation {
        setattr(tree, p & libc::MS_REC != 0, Attrs::default(), *p, None)
            .map_err(os("set propagation"))?;
    }
    Ok(())
}

impl Attrs {
    fn add_set(&mut self, bits: u64) {
        self.set |= bits;
        self.clr &= !bits;
    }
}

/// Swaps the root: pivot_root into `rootfs` and detach the old root, or,
/// with `no_pivot`, move the rootfs over "/" and chroot (for ramdisk hosts).
pub fn enter(rootfs: &Path, no_pivot: bool, spec: &Spec) -> Result<()> {
    let shared = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .is_some_and(|p| p.contains("shared"));
    if shared {
        // pivot_root refuses shared mounts around it; the propagation the
        // config asks for is put back on "/" afterwards (finish).
        let parent = parent_mount(rootfs);
        for p in [Path::new("/"), parent.as_path(), rootfs] {
            mountcall::mount(None, p, None, libc::MS_PRIVATE, None)
                .map_err(os(format!("make {} private for pivot_root", p.display())))?;
        }
    }
    if no_pivot {
        rustix::process::chdir(rootfs).ctx(|| "chdir to the rootfs")?;
        mountcall::mount(Some(rootfs), Path::new("/"), None, libc::MS_MOVE, None)
            .map_err(os("move the rootfs to /"))?;
        rustix::process::chroot(".").ctx(|| "chroot")?;
        rustix::process::chdir("/").ctx(|| "chdir /")?;
        return Ok(());
    }
    let old = rustix::fs::open(
        "/",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open /")?;
    rustix::process::chdir(rootfs).ctx(|| "chdir to the rootfs")?;
    rustix::process::pivot_root(".", ".").ctx(|| "pivot_root")?;
    rustix::process::fchdir(&old).ctx(|| "fchdir to the old root")?;
    // The old root is now stacked under the new one. Stop propagation
    // first, so that detaching it does not unmount anything on the host.
    mountcall::mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .map_err(os("make the old root a slave"))?;
    mountcall::umount(Path::new("."), libc::MNT_DETACH).map_err(os("detach the old root"))?;
    rustix::process::chdir("/").ctx(|| "chdir /")?;
    Ok(())
}

/// The mount point that holds `path` (not counting `path` itself).
fn parent_mount(path: &Path) -> PathBuf {
    let info =
        crate::fsutil::read_kernel_file(Path::new("/proc/self/mountinfo")).unwrap_or_default();
    let parent = path.parent().unwrap_or(Path::new("/"));
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| parent.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// After pivot_root: hide the masked paths, freeze the read-only ones and
/// (if asked) the root itself.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask(Path::new(p)).map_err(os(format!("mask {p}")))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly(Path::new(p)).map_err(os(format!("make {p} read-only")))?;
    }
    if let Some(prop) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| !p.is_empty())
    {
        let flags = mountopts::root_propagation(Some(prop))?;
        mountcall::mount(None, Path::new("/"), None, flags, None)
            .map_err(os("set the propagation of /"))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let root = rustix::fs::open(
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| "open /")?;
        setattr(
            &root,
            false,
            Attrs {
                set: ATTR_RDONLY,
                clr: 0,
            },
            0,
            None,
        )
        .map_err(os("make / read-only"))?;
    }
    Ok(())
}

fn mask(p: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        mountcall::mount(
            Some(Path::new("tmpfs")),
            p,
            Some("tmpfs"),
            libc::MS_RDONLY,
            Some("size=0k"),
        )
    } else {
        mountcall::mount(Some(Path::new("/dev/null")), p, None, libc::MS_BIND, None)
    }
}

fn readonly(p: &Path) -> io::Result<()> {
    let tree = match clone_tree(p, true) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    setattr(
        &tree,
        true,
        Attrs {
            set: ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
            clr: 0,
        },
        0,
        None,
    )?;
    let target = rustix::fs::open(p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    move_mount(&tree, &target)
}

/// Copies a directory tree (files, directories, symlinks; modes, owners)
/// between two open directories: tmpcopyup's work. Everything goes through
/// the fds, because the source directory is covered by the new tmpfs.
fn copy_tree(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
    use rustix::fs::{AtFlags, FileType};
    let mut dir = rustix::fs::Dir::read_from(from)?;
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let st = rustix::fs::statat(from, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
        let nofollow = OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                rustix::fs::mkdirat(to, name, perm)?;
                let a = rustix::fs::openat(
                    from,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | nofollow,
                    Mode::empty(),
                )?;
                let b = rustix::fs::openat(
                    to,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | nofollow,
                    Mode::empty(),
                )?;
                copy_tree(&a, &b)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(from, name, Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), to, name)?;
            }
            FileType::RegularFile => {
                let a = rustix::fs::openat(from, name, OFlags::RDONLY | nofollow, Mode::empty())?;
                let b = rustix::fs::openat(
                    to,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | nofollow,
                    perm,
                )?;
                io::copy(&mut fs::File::from(a), &mut fs::File::from(b))?;
            }
            _ => continue,
        }
        rustix::fs::chownat(
            to,
            name,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}
