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
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::Status;
use crate::rootfd::{BELOW, IN_ROOT, errno, io_err};

/// Trees deeper than this are not copied (a mount loop, or a hostile one).
const MAX_DEPTH: usize = 1024;

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
        crate::rootfd::unpack_tar(&root, input, dest, &format!("cp to {name}:{dest}"))
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
        crate::rootfd::mkdir_all(&root, path, owner, &format!("mkdir {name}:{path}"))
    }

    pub fn is_dir_in(&self, key: &str, path: &str) -> Result<bool> {
        let (name, root) = self.container_root(key)?;
        crate::rootfd::is_dir(&root, path, &format!("cp to {name}:{path}"))
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
