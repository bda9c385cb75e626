//! Writing into a root file system through a directory fd of it, never
//! following a symlink out of it: the user's path resolved with openat2
//! RESOLVE_IN_ROOT (a symlink in it resolves inside the root, whatever it
//! points at), nothing at all followed below it. `berth cp` into a
//! container and `berth build`'s COPY use it, on a container's root or
//! (in the build's rootfs isolation) the process's own.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use crate::error::{Error, Result};

/// The user's path inside the root: symlinks resolve in the root.
pub const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
/// Below it: no symlink is followed at all.
pub const BELOW: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Os { what, source }
}

pub(crate) fn errno(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> Error {
    let what = what.into();
    move |e| Error::Os {
        what,
        source: e.into(),
    }
}

/// A directory fd of `path` (a directory of the host) to write into.
pub fn open_root(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(errno(format!("open {}", path.display())))
}

/// Unpacks a tar stream into directory `dest` of `root`; `what` names the
/// copy in errors.
pub fn unpack_tar(root: &OwnedFd, input: impl Read, dest: &str, what: &str) -> Result<()> {
    unpack_tar_except(root, input, dest, what, |_| false)
}

/// `unpack_tar`, but the entries `skip` says (given each entry's path
/// below `dest`, `/`-separated, without `.` or empty components) are left
/// out.
pub fn unpack_tar_except(
    root: &OwnedFd,
    input: impl Read,
    dest: &str,
    what: &str,
    skip: impl Fn(&[u8]) -> bool,
) -> Result<()> {
    let dir = rustix::fs::openat2(
        root,
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        IN_ROOT,
    )
    .map_err(|e| match e {
        rustix::io::Errno::NOTDIR => Error::invalid(what, "not a directory in the container"),
        e => errno(what)(e),
    })?;
    let mut a = tar::Archive::new(input);
    for entry in a.entries().map_err(io_err(what))? {
        let mut entry = entry.map_err(io_err(what))?;
        let path: Vec<u8> = entry
            .path_bytes()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect::<Vec<_>>()
            .join(&b'/');
        if skip(&path) {
            continue;
        }
        unpack_entry(&dir, &mut entry).map_err(io_err(what))?;
    }
    Ok(())
}

/// Makes directory `path` of `root` and the missing ones on the way
/// (0755, owned by `owner`), each component's symlink resolved inside the
/// root; `what` names it in errors.
pub fn mkdir_all(root: &OwnedFd, path: &str, owner: (u32, u32), what: &str) -> Result<()> {
    let mut prefix = String::new();
    for part in Path::new(path).components() {
        let Component::Normal(part) = part else {
            continue;
        };
        let parent = if prefix.is_empty() { "/" } else { &prefix };
        let dir = rustix::fs::openat2(
            root,
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )
        .map_err(errno(what))?;
        prefix = format!("{prefix}/{}", part.to_string_lossy());
        match rustix::fs::openat2(
            root,
            &prefix,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        ) {
            Ok(_) => continue,
            Err(rustix::io::Errno::NOENT) => {}
            Err(rustix::io::Errno::NOTDIR) => {
                return Err(Error::invalid(what, format!("{prefix} is not a directory")));
            }
            Err(e) => return Err(errno(what)(e)),
        }
        rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)).map_err(errno(what))?;
        rustix::fs::chownat(
            &dir,
            part,
            Some(rustix::fs::Uid::from_raw(owner.0)),
            Some(rustix::fs::Gid::from_raw(owner.1)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno(what))?;
    }
    Ok(())
}

/// Whether `path` of `root` (symlinks resolved inside it) is a directory.
pub fn is_dir(root: &OwnedFd, path: &str, what: &str) -> Result<bool> {
    match rustix::fs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        IN_ROOT,
    ) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(false),
        Err(e) => Err(errno(what)(e)),
    }
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
pub fn unpack_entry<R: Read>(dest: &OwnedFd, e: &mut tar::Entry<'_, R>) -> io::Result<()> {
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
