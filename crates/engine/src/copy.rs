//! `berth cp`: files between the host and a container's filesystem, as tar
//! streams, without forking the caller. The container's files are reached
//! through a directory fd of its root: its init's `/proc/<pid>/root` while
//! it runs (its mount namespace: volumes and its /etc files are there), the
//! rootfs mount when it does not. Every path inside is resolved from that
//! fd with openat2: RESOLVE_IN_ROOT for the path the user named (a symlink
//! in it resolves inside the container, whatever it points at), and no
//! symlinks at all below it. A hostile image cannot make `cp` read or write
//! the host's files.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::Status;

/// Trees deeper than this are not copied (a mount loop, or a hostile one).
const MAX_DEPTH: usize = 1024;

/// The user's path inside the container: symlinks resolve in its root.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
/// Below it: no symlink is followed at all.
const BELOW: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Os { what, source }
}

fn errno(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> Error {
    let what = what.into();
    move |e| Error::Os {
        what,
        source: e.into(),
    }
}

impl Engine {
    /// A directory fd of the container's root as its processes see it.
    fn container_root(&self, key: &str) -> Result<(String, OwnedFd)> {
        let c = self.container(key)?;
        if c.state.status == Status::Running && c.state.pid > 0 {
            let root = self.open_of_init(&c, "root", OFlags::PATH | OFlags::DIRECTORY)?;
            return Ok((c.name, root));
        }
        let root = self.rootfs_dir(&c)?;
        Ok((c.name, root))
    }

    /// A directory fd of the container's root filesystem itself (its
    /// snapshot, mounted again if a reboot took the mount), without what
    /// its processes mount over it (/proc, /sys, volumes).
    fn rootfs_dir(&self, c: &crate::model::Container) -> Result<OwnedFd> {
        let rootfs = self.bundle_dir(&c.id).join("rootfs");
        if !berth_image::snapshot::is_mounted(&rootfs) {
            berth_image::bundle::remount_bundle(&self.images, &c.id)?;
        }
        rustix::fs::open(
            &rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(errno(format!("open {}", rootfs.display())))
    }

    /// Writes `src` (in the container) as a tar stream: a directory with
    /// everything below it, under its own name.
    pub fn copy_out_tar(&self, key: &str, src: &str, out: impl Write) -> Result<()> {
        let (name, root) = self.container_root(key)?;
        tar_of(&root, src, out, &format!("cp {name}:{src}"))
    }

    /// The container's root filesystem as a tar stream (`export`): its
    /// image and its changes, not what its processes mount over them.
    pub fn export(&self, key: &str, out: impl Write) -> Result<()> {
        let c = self.container(key)?;
        let root = self.rootfs_dir(&c)?;
        tar_of(&root, "/", out, &format!("export {}", c.name))
    }

    /// Copies `src` (in the container) to `dest` on the host: into `dest`
    /// when it is a directory, else as `dest`.
    pub fn copy_out(&self, key: &str, src: &str, dest: &Path) -> Result<()> {
        let mut data = Vec::new();
        self.copy_out_tar(key, src, &mut data)?;
        let name = Path::new(src)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        let (into, rename) = if dest.is_dir() {
            (dest.to_path_buf(), None)
        } else {
            let parent = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (parent.to_path_buf(), dest.file_name().map(PathBuf::from))
        };
        // The archive comes from the container: unpack_in keeps every entry
        // inside `into` (no absolute paths, no `..`, no writing through
        // links).
        let bad = |e: io::Error| Error::invalid("cp", e.to_string());
        let mut a = tar::Archive::new(&data[..]);
        a.set_preserve_permissions(true);
        a.set_overwrite(true);
        for entry in a.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let path = entry.path().map_err(bad)?.into_owned();
            match &rename {
                Some(r) => {
                    // The top entry takes the destination's name.
                    let rel = path.strip_prefix(&name).unwrap_or(&path).to_path_buf();
                    let target = if rel.as_os_str().is_empty() {
                        into.join(r)
                    } else {
                        into.join(r).join(rel)
                    };
                    let parent = target.parent().unwrap_or(&into).to_path_buf();
                    std::fs::create_dir_all(&parent)
                        .map_err(io_err(format!("create {}", parent.display())))?;
                    entry
                        .unpack(&target)
                        .map_err(io_err(format!("write {}", target.display())))?;
                }
                None => {
                    entry
                        .unpack_in(&into)
                        .map_err(io_err(format!("write into {}", into.display())))?;
                }
            }
        }
        Ok(())
    }

    /// Unpacks a tar stream into the container's directory `dest`.
    pub fn copy_in_tar(&self, key: &str, input: impl Read, dest: &str) -> Result<()> {
        let (name, root) = self.container_root(key)?;
        let what = format!("cp to {name}:{dest}");
        let dir = rustix::fs::openat2(
            &root,
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOTDIR => Error::invalid(&what, "not a directory in the container"),
            e => errno(what.clone())(e),
        })?;
        let mut a = tar::Archive::new(input);
        for entry in a.entries().map_err(io_err(what.clone()))? {
            let mut entry = entry.map_err(io_err(what.clone()))?;
            unpack_entry(&dir, &mut entry).map_err(io_err(what.clone()))?;
        }
        Ok(())
    }

    /// Copies `src` on the host into the container: into `dest` when it
    /// is a directory there, else as `dest` (a new name in an existing
    /// directory, or a file it replaces), as docker's cp does.
    pub fn copy_in(&self, key: &str, src: &Path, dest: &str) -> Result<()> {
        let (into, name) = if self.is_dir_in(key, dest)? {
            let name = src
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| Error::invalid(format!("cp {}", src.display()), "no file name"))?;
            (dest.to_string(), name)
        } else {
            let d = Path::new(dest);
            let name = d
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| Error::invalid(format!("cp to {dest}"), "no file name"))?;
            let parent = d
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("/"));
            (parent.display().to_string(), name)
        };
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        let meta =
            std::fs::symlink_metadata(src).map_err(io_err(format!("stat {}", src.display())))?;
        let r = if meta.is_dir() {
            b.append_dir_all(&name, src)
        } else {
            b.append_path_with_name(src, &name)
        };
        r.and_then(|_| b.finish())
            .map_err(io_err(format!("read {}", src.display())))?;
        let data = b.into_inner().map_err(io_err("tar"))?;
        self.copy_in_tar(key, &data[..], &into)
    }

    /// Makes directory `path` in the container and the missing ones on
    /// the way (0755, owned by `owner`), each component's symlink resolved
    /// inside the container's root: a builder's WORKDIR and COPY
    /// destinations.
    pub fn mkdir_in(&self, key: &str, path: &str, owner: (u32, u32)) -> Result<()> {
        let (name, root) = self.container_root(key)?;
        let what = format!("mkdir {name}:{path}");
        let mut prefix = String::new();
        for part in Path::new(path).components() {
            let Component::Normal(part) = part else {
                continue;
            };
            let parent = if prefix.is_empty() { "/" } else { &prefix };
            let dir = rustix::fs::openat2(
                &root,
                parent,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                IN_ROOT,
            )
            .map_err(errno(what.clone()))?;
            prefix = format!("{prefix}/{}", part.to_string_lossy());
            match rustix::fs::openat2(
                &root,
                &prefix,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                IN_ROOT,
            ) {
                Ok(_) => continue,
                Err(rustix::io::Errno::NOENT) => {}
                Err(rustix::io::Errno::NOTDIR) => {
                    return Err(Error::invalid(
                        &what,
                        format!("{prefix} is not a directory"),
                    ));
                }
                Err(e) => return Err(errno(what)(e)),
            }
            rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755))
                .map_err(errno(what.clone()))?;
            rustix::fs::chownat(
                &dir,
                part,
                Some(rustix::fs::Uid::from_raw(owner.0)),
                Some(rustix::fs::Gid::from_raw(owner.1)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno(what.clone()))?;
        }
        Ok(())
    }

    pub fn is_dir_in(&self, key: &str, path: &str) -> Result<bool> {
        let (name, root) = self.container_root(key)?;
        match rustix::fs::openat2(
            &root,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        ) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(false),
            Err(e) => Err(errno(format!("cp to {name}:{path}"))(e)),
        }
    }
}

/// `src` below `root` (a directory fd) as a tar stream, under its own
/// name (`.` for the root itself); `what` names it in errors.
fn tar_of(root: &OwnedFd, src: &str, out: impl Write, what: &str) -> Result<()> {
    let fd = rustix::fs::openat2(
        root,
        src,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        IN_ROOT,
    )
    .map_err(errno(what))?;
    let top = Path::new(src)
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut b = tar::Builder::new(out);
    let mut w = Walker { b: &mut b };
    w.entry(fd, None, &top, 0).map_err(io_err(what))?;
    b.finish().map_err(io_err(what))
}

/// Writes the container's files into a tar stream, reading them through
/// fds that never follow a symlink.
struct Walker<'a, W: Write> {
    b: &'a mut tar::Builder<W>,
}

impl<W: Write> Walker<'_, W> {
    /// Adds the file `fd` (an O_PATH fd; `parent`/`name` to open its data)
    /// as `path`, and what is below it.
    fn entry(
        &mut self,
        fd: OwnedFd,
        parent: Option<(&OwnedFd, &std::ffi::OsStr)>,
        path: &Path,
        depth: usize,
    ) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Err(io::Error::other(format!(
                "{} is more than {MAX_DEPTH} levels deep",
                path.display()
            )));
        }
        let st = rustix::fs::fstat(&fd)?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                h.set_entry_type(tar::EntryType::Directory);
                self.b.append_data(&mut h, path, io::empty())?;
                let dir = rustix::fs::openat(
                    &fd,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let mut names: Vec<std::ffi::OsString> = Vec::new();
                for e in rustix::fs::Dir::read_from(&dir)? {
                    let e = e?;
                    let n = e.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        let n: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(n);
                        names.push(n.to_owned());
                    }
                }
                names.sort();
                for n in names {
                    let child = rustix::fs::openat2(
                        &dir,
                        n.as_os_str(),
                        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                        BELOW,
                    )?;
                    self.entry(child, Some((&dir, &n)), &path.join(&n), depth + 1)?;
                }
            }
            FileType::RegularFile => {
                // Opened again for reading, from its directory, not
                // following a link that may have replaced it meanwhile;
                // non-blocking, in case it became a FIFO.
                let data = match parent {
                    Some((dir, name)) => rustix::fs::openat2(
                        dir,
                        name,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                        Mode::empty(),
                        BELOW,
                    )?,
                    None => reopen(&fd)?,
                };
                let now = rustix::fs::fstat(&data)?;
                if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile {
                    return Err(io::Error::other(format!(
                        "{} changed while it was copied",
                        path.display()
                    )));
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(now.st_size as u64);
                let f = std::fs::File::from(data);
                self.b
                    .append_data(&mut h, path, f.take(now.st_size as u64))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
                h.set_entry_type(tar::EntryType::Symlink);
                let target: &std::ffi::OsStr =
                    std::os::unix::ffi::OsStrExt::from_bytes(target.as_bytes());
                self.b.append_link(&mut h, path, target)?;
            }
            FileType::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                self.b.append_data(&mut h, path, io::empty())?;
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                h.set_entry_type(
                    if FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice {
                        tar::EntryType::Char
                    } else {
                        tar::EntryType::Block
                    },
                );
                h.set_device_major(rustix::fs::major(st.st_rdev))?;
                h.set_device_minor(rustix::fs::minor(st.st_rdev))?;
                self.b.append_data(&mut h, path, io::empty())?;
            }
            // Sockets and the like have no content to copy.
            _ => {}
        }
        Ok(())
    }
}

/// A regular file's O_PATH fd opened for reading (the top of a copy, whose
/// directory fd is not at hand): through its /proc/self/fd entry, which
/// names exactly this inode.
fn reopen(fd: &OwnedFd) -> rustix::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The entry's path as components below the destination: no absolute
/// paths, no `..`.
fn clean(path: &Path) -> io::Result<Vec<&std::ffi::OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::other(format!(
                    "{}: paths in the archive stay below the destination",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Unpacks one entry below `dest`, creating what is missing on the way and
/// following no symlink (an existing link in the container is replaced,
/// never written through).
fn unpack_entry<R: Read>(dest: &OwnedFd, e: &mut tar::Entry<'_, R>) -> io::Result<()> {
    let path = e.path()?.into_owned();
    let parts = clean(&path)?;
    let Some((last, dirs)) = parts.split_last() else {
        return Ok(());
    };
    let mut dir = rustix::fs::openat(
        dest,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for d in dirs {
        dir = match rustix::fs::openat2(
            &dir,
            *d,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            BELOW,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::mkdirat(&dir, *d, Mode::from_raw_mode(0o755))?;
                rustix::fs::openat2(
                    &dir,
                    *d,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    BELOW,
                )?
            }
            Err(e) => return Err(e.into()),
        };
    }
    let h = e.header().clone();
    let mode = Mode::from_raw_mode(h.mode().unwrap_or(0o644) & 0o7777);
    let replace = |dir: &OwnedFd| match rustix::fs::unlinkat(dir, *last, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::ISDIR) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    };
    match h.entry_type() {
        tar::EntryType::Directory => match rustix::fs::mkdirat(&dir, *last, mode) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        },
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            replace(&dir)?;
            let fd = rustix::fs::openat2(
                &dir,
                *last,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                mode,
                BELOW,
            )?;
            let mut f = std::fs::File::from(fd);
            io::copy(e, &mut f)?;
            // Owner first: chown clears the set-id bits the mode may hold.
            let _ = rustix::fs::fchown(
                &f,
                Some(rustix::fs::Uid::from_raw(h.uid().unwrap_or(0) as u32)),
                Some(rustix::fs::Gid::from_raw(h.gid().unwrap_or(0) as u32)),
            );
            rustix::fs::fchmod(&f, mode)?;
            set_mtime(&dir, last, &h);
            return Ok(());
        }
        tar::EntryType::Symlink => {
            let target = e
                .link_name()?
                .ok_or_else(|| io::Error::other("a symlink without a target"))?;
            replace(&dir)?;
            rustix::fs::symlinkat(target.as_ref(), &dir, *last)?;
        }
        other => {
            tracing::warn!("cp: {}: {other:?} entries are not copied", path.display());
            return Ok(());
        }
    }
    let (uid, gid) = (h.uid().unwrap_or(0), h.gid().unwrap_or(0));
    let _ = rustix::fs::chownat(
        &dir,
        *last,
        Some(rustix::fs::Uid::from_raw(uid as u32)),
        Some(rustix::fs::Gid::from_raw(gid as u32)),
        AtFlags::SYMLINK_NOFOLLOW,
    );
    if h.entry_type() == tar::EntryType::Directory {
        // mkdirat went through the umask, and an existing directory
        // takes the archive's mode as tar gives it.
        rustix::fs::chmodat(&dir, *last, mode, AtFlags::empty())?;
    }
    set_mtime(&dir, last, &h);
    Ok(())
}

/// The entry's modification time, as docker's cp and COPY keep it (a
/// failure leaves the time of the copy: not worth failing the copy for).
fn set_mtime(dir: &OwnedFd, name: &std::ffi::OsStr, h: &tar::Header) {
    let Ok(secs) = h.mtime() else {
        return;
    };
    let t = rustix::fs::Timespec {
        tv_sec: secs as i64,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    let _ = rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW);
}
