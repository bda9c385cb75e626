//! The container's filesystem view, built inside its new mount namespace:
//! the root bind-mounted onto itself, the config's mounts in order, /dev,
//! then pivot_root, masked and read-only paths.

mod devices;
mod pivot;

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::cgroups::CgroupRecord;
use crate::error::{Context, Error, Result};
use crate::inroot;
use crate::mountcall::{self, clone_tree, move_mount, setattr};
use crate::mountopts::{self, ATTR_NODEV, ATTR_NOEXEC, ATTR_NOSUID, ATTR_RDONLY, Attrs, MountOpts};

pub use pivot::{enter, finish};

pub struct Rootfs<'a> {
    pub path: &'a Path,
    pub bundle: &'a Path,
    pub spec: &'a Spec,
    pub cgroup: &'a CgroupRecord,
    /// The container has a cgroup namespace of its own.
    pub cgroupns: bool,
    /// The container runs in a user namespace: no mknod, fewer mounts.
    pub userns: bool,
    /// Idmapped mounts' sources, mapped before the user namespace, by
    /// index in `mounts`.
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
        // Unbindable is put on "/" at the end (pivot::finish); until then a
        // mount the rootfs's self-bind copies must not be unbindable.
        let prop = if prop & libc::MS_UNBINDABLE != 0 {
            (prop & !libc::MS_UNBINDABLE) | libc::MS_PRIVATE
        } else {
            prop
        };
        mountcall::mount(None, Path::new("/"), None, prop, None)
            .map_err(os("set the propagation of /"))?;
        let recursive_unshared = prop & libc::MS_REC != 0 && prop & libc::MS_SHARED == 0;
        if !recursive_unshared {
            // The mount holding the rootfs (the rootfs itself when it is a
            // mount point, as CRI runtimes give it) may still be shared
            // with the host's. Then the self-bind below, and every mount
            // made under it, would show up on the host, and pivot_root
            // refuses a new root whose parent is shared. As a slave it
            // still receives the host's mounts but sends none back; the
            // propagation the config asks for is put on "/" at the end
            // (pivot::finish).
            let holder = holding_mount(self.path);
            mountcall::mount(None, &holder, None, libc::MS_SLAVE, None)
                .map_err(os(format!("make {} a slave mount", holder.display())))?;
        }
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

    fn mount_bind(
        &self,
        field: &str,
        m: &Mount,
        opts: &MountOpts,
        idmapped: Option<&OwnedFd>,
    ) -> Result<()> {
        let cloned;
        let (tree, is_dir) = match idmapped {
            // Made before the user namespace (see `idmapped_source`); its
            // source may be nowhere this process can reach by path now.
            Some(tree) => {
                let st = rustix::fs::fstat(tree).map_err(|e| os("stat the mount")(e.into()))?;
                (
                    tree,
                    rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir(),
                )
            }
            None => {
                let src = bind_source(self.bundle, field, m)?;
                let meta = fs::metadata(&src).map_err(|e| {
                    Error::config(format!("{field}.source"), format!("{}: {e}", src.display()))
                })?;
                cloned = clone_tree(&src, opts.recursive)
                    .map_err(os(format!("clone {}", src.display())))?;
                (&cloned, meta.is_dir())
            }
        };
        let target = if is_dir {
            inroot::mkdir_all(self.root(), m.destination(), 0o755)
        } else {
            inroot::create_file(self.root(), m.destination(), 0o644)
        }
        .map_err(os("create the mount point"))?;
        attach(tree, &target, opts)
    }

    fn mount_fs(&self, field: &str, m: &Mount, typ: &str, opts: &MountOpts) -> Result<()> {
        let dest = m.destination();
        // A symlinked /proc or /sys would let the masked paths land
        // somewhere else than where they mean to hide things.
        let strict = matches!(typ, "proc" | "sysfs");
        let mut target =
            inroot::mkdir_all(self.root(), dest, 0o755).map_err(os("create the mount point"))?;
        if strict {
            // Resolved once, without symlinks, and mounted on that very fd.
            target = inroot::open_with(self.root(), dest, OFlags::PATH, ResolveFlags::NO_SYMLINKS)
                .map_err(|_| {
                    Error::config(
                        format!("{field}.destination"),
                        format!("{} must not be a symlink", dest.display()),
                    )
                })?;
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
                let tree = match clone_tree(Path::new(host), true) {
                    Ok(t) => t,
                    // A host without /dev/mqueue has no queues to show:
                    // the mount point stays an empty directory.
                    Err(e) if typ == "mqueue" && e.raw_os_error() == Some(libc::ENOENT) => {
                        return Ok(());
                    }
                    Err(e) => return Err(os(format!("clone {host}"))(e)),
                };
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
        // No directories: an ordinary user's container on a host that
        // delegated none. With a cgroup namespace it still gets a cgroup2
        // view of its own; without, an empty tmpfs below.
        let none = self.cgroup.dirs.is_empty();
        let pure_v2 = !none && self.cgroup.dirs.iter().all(|d| d.v2);
        let mut bind_opts = MountOpts {
            recursive: true,
            ..Default::default()
        };
        bind_opts.attrs = Attrs {
            set: ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC | if ro { ATTR_RDONLY } else { 0 },
            clr: 0,
        };
        if pure_v2 || (none && self.cgroupns) {
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
}

/// The mount point of the mount that holds `path`: `path` itself when it is
/// a mount point, else its nearest ancestor that is one.
fn holding_mount(path: &Path) -> PathBuf {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
    let mut cur = path;
    loop {
        match rustix::fs::statx(
            rustix::fs::CWD,
            cur,
            AtFlags::empty(),
            StatxFlags::BASIC_STATS,
        ) {
            Ok(st) if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) => {
                if st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT) {
                    return cur.to_path_buf();
                }
            }
            // A kernel without STATX_ATTR_MOUNT_ROOT: ask mountinfo.
            _ => return holding_mount_from_mountinfo(path),
        }
        match cur.parent() {
            Some(p) => cur = p,
            None => return PathBuf::from("/"),
        }
    }
}

fn holding_mount_from_mountinfo(path: &Path) -> PathBuf {
    let info =
        crate::fsutil::read_kernel_file(Path::new("/proc/self/mountinfo")).unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Puts a detached mount tree at `target` with the options' attributes and
/// propagation.
fn bind_source(bundle: &Path, field: &str, m: &Mount) -> Result<PathBuf> {
    let src = m
        .source()
        .as_ref()
        .ok_or_else(|| Error::config(format!("{field}.source"), "a bind mount needs a source"))?;
    Ok(if src.is_absolute() {
        src.clone()
    } else {
        bundle.join(src)
    })
}

/// The source of an idmapped bind mount, cloned and mapped through
/// `userns`. Made by the runtime before the container's user namespace:
/// the kernel lets only a holder of CAP_SYS_ADMIN over the source's file
/// system map its ids, which the container's root is not.
pub fn idmapped_source(
    bundle: &Path,
    field: &str,
    m: &Mount,
    opts: &MountOpts,
    userns: &OwnedFd,
) -> Result<OwnedFd> {
    let src = bind_source(bundle, field, m)?;
    let tree = clone_tree(&src, opts.recursive).map_err(os(format!("clone {}", src.display())))?;
    setattr(
        &tree,
        opts.idmap_recursive,
        Attrs::default(),
        0,
        Some(userns),
    )
    .map_err(os(format!("{field}: map the ids of {}", src.display())))?;
    Ok(tree)
}

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
