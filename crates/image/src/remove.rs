//! Removing directory trees: never following a symlink, never crossing
//! into another filesystem, and holding a few descriptors however deep the
//! tree is. A layer may nest directories deeper than the open-file limit,
//! so a walk that keeps one descriptor per level would fail with EMFILE on
//! every later attempt and the tree could never be removed.
//!
//! The walk keeps only the current directory open. Going back up it opens
//! `..` and checks that it is still the directory it came from (device and
//! inode), so a tree moved while being removed is an error, not a walk
//! into somewhere else.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Context, Error, Result};

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// One directory on the way down.
struct Level {
    /// Its name in its parent.
    name: Vec<u8>,
    id: (u64, u64),
    /// Subdirectories still to remove.
    pending: Vec<Vec<u8>>,
}

/// Removes `name` under `dir` and everything below it. A missing `name` is
/// fine; a mount point inside the tree is an error (EXDEV).
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let mut cur = match rustix::fs::openat(dir, name, DIR, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
            return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
        }
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let top = rustix::fs::fstat(&cur)?;
    let dev = top.st_dev;
    let mut stack = vec![Level {
        name: name.to_vec(),
        id: (top.st_dev, top.st_ino),
        pending: empty_out(&cur)?,
    }];
    loop {
        let level = stack.last_mut().expect("a level while walking");
        if let Some(child) = level.pending.pop() {
            match rustix::fs::openat(&cur, child.as_slice(), DIR, Mode::empty()) {
                Ok(fd) => {
                    let st = rustix::fs::fstat(&fd)?;
                    if st.st_dev != dev {
                        return Err(io::Error::new(
                            io::ErrorKind::CrossesDevices,
                            format!("{} is a mount point", String::from_utf8_lossy(&child)),
                        ));
                    }
                    let pending = empty_out(&fd)?;
                    stack.push(Level {
                        name: child,
                        id: (st.st_dev, st.st_ino),
                        pending,
                    });
                    cur = fd;
                }
                Err(Errno::NOENT) => {}
                // Replaced by a non-directory meanwhile.
                Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
                    unlink_ok_if_gone(cur.as_fd(), &child, AtFlags::empty())?
                }
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        // `cur` is empty: remove it from its parent.
        let done = stack.pop().expect("the level just looked at");
        let Some(parent) = stack.last() else {
            drop(cur);
            return unlink_ok_if_gone(dir, &done.name, AtFlags::REMOVEDIR);
        };
        let up = rustix::fs::openat(&cur, "..", DIR, Mode::empty())?;
        let st = rustix::fs::fstat(&up)?;
        if (st.st_dev, st.st_ino) != parent.id {
            return Err(io::Error::other(format!(
                "{} was moved while being removed",
                String::from_utf8_lossy(&parent.name)
            )));
        }
        unlink_ok_if_gone(up.as_fd(), &done.name, AtFlags::REMOVEDIR)?;
        cur = up;
    }
}

/// Unlinks every non-directory in `dir`; returns its subdirectories.
fn empty_out(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push((n.to_vec(), e.file_type()));
        }
    }
    let mut dirs = Vec::new();
    for (n, ft) in names {
        if ft == FileType::Directory {
            dirs.push(n);
            continue;
        }
        match rustix::fs::unlinkat(dir, n.as_slice(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            // The file system did not say the type, and it is a directory.
            Err(Errno::ISDIR) => dirs.push(n),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(dirs)
}

fn unlink_ok_if_gone(dir: BorrowedFd<'_>, name: &[u8], flags: AtFlags) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes a directory tree by path (see `remove_all_at`).
pub fn remove_tree(path: &Path) -> Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => return Err(Error::invalid(path.display().to_string(), "cannot remove")),
    };
    let pfd = match rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("open {}", parent.display())),
    };
    remove_all_at(pfd.as_fd(), std::os::unix::ffi::OsStrExt::as_bytes(name))
        .ctx(|| format!("remove {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_nofile(n: u64) -> rustix::process::Rlimit {
        let old = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(n),
                maximum: old.maximum,
            },
        )
        .unwrap();
        old
    }

    #[test]
    fn removes_a_tree_deeper_than_the_open_file_limit() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("top");
        let mut p = top.clone();
        for i in 0..400 {
            p.push("d");
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join(format!("f{i}")), b"x").unwrap();
            if i % 50 == 0 {
                std::os::unix::fs::symlink("/", p.join("up")).unwrap();
                std::fs::create_dir(p.join("side")).unwrap();
            }
        }
        // Below the depth: a walk holding one descriptor per level fails.
        // (The limit is per process: nextest runs each test in its own.)
        let old = limit_nofile(64);
        let r = remove_tree(&top);
        rustix::process::setrlimit(rustix::process::Resource::Nofile, old).unwrap();
        r.unwrap();
        assert!(!top.exists());
        assert!(std::path::Path::new("/").exists());
    }

    #[test]
    fn a_missing_tree_or_a_plain_file_is_fine() {
        let d = tempfile::tempdir().unwrap();
        remove_tree(&d.path().join("nothing")).unwrap();
        std::fs::write(d.path().join("file"), b"x").unwrap();
        remove_tree(&d.path().join("file")).unwrap();
        assert!(!d.path().join("file").exists());
    }
}
