//! Path resolution inside the container's root before pivot_root, where a
//! symlink in the image could otherwise point at the host. Every lookup
//! goes through openat2(RESOLVE_IN_ROOT): symlinks resolve as if the rootfs
//! were "/", and the result is an fd, so a later swap of a path component
//! cannot redirect the operation that uses it.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self, Mode, OFlags, ResolveFlags};

/// Resolves `path` (absolute inside the container) from `root`.
pub fn open(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    open_with(root, path, flags, ResolveFlags::empty())
}

pub fn open_with(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    extra: ResolveFlags,
) -> io::Result<OwnedFd> {
    let rel = relative(path);
    loop {
        match fs::openat2(
            root,
            &rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | extra,
        ) {
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// The path without its leading "/" (and without "." components); ".." is
/// kept, since RESOLVE_IN_ROOT clamps it at the root.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// mkdir -p inside the root; returns an O_PATH fd of the directory. A
/// dangling symlink on the way (an image's /var/run -> /run with no /run)
/// is followed, inside the root, and its target made.
pub fn mkdir_all(root: BorrowedFd<'_>, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    mkdir_all_from(root, path, mode, 0)
}

fn mkdir_all_from(root: BorrowedFd<'_>, path: &Path, mode: u32, links: u32) -> io::Result<OwnedFd> {
    // As the kernel's own limit on symlinks followed in one lookup.
    if links > 40 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let dir = OFlags::PATH | OFlags::DIRECTORY;
    match open(root, path, dir) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let rel = relative(path);
    let comps: Vec<Component> = rel.components().collect();

    let mut cur = PathBuf::from("/");
    let mut fd = open(root, &cur, dir)?;
    for (i, comp) in comps.iter().enumerate() {
        let next = cur.join(comp);
        match open(root, &next, dir) {
            Ok(f) => {
                fd = f;
                cur = next;
                continue;
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let name = comp.as_os_str();
        match fs::mkdirat(&fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) => {
                fd = open(root, &next, dir)?;
                cur = next;
            }
            Err(rustix::io::Errno::EXIST) => {
                // Something is there yet did not resolve: a dangling link.
                let target = fs::readlinkat(&fd, name, Vec::new())?;
                let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
                let rest: PathBuf = comps[i + 1..].iter().collect();
                return mkdir_all_from(root, &cur.join(target).join(rest), mode, links + 1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fd)
}

/// Creates an empty file at `path` (its directory made as needed) unless
/// something is there already; returns an O_PATH fd of what is there.
pub fn create_file(root: BorrowedFd<'_>, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    match open(root, path, OFlags::PATH) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let (parent, name) = split(path)?;
    let dir = mkdir_all(root, parent, 0o755)?;
    // O_PATH fds cannot create; reopen the directory for real.
    let dir = reopen_dir(&dir)?;
    match fs::openat(
        &dir,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    ) {
        Ok(_) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    open(root, path, OFlags::PATH)
}

/// Opens the directory behind an O_PATH fd for reading.
pub fn reopen_dir(fd: &OwnedFd) -> io::Result<OwnedFd> {
    fs::openat(
        fd.as_fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Splits an absolute container path into parent and final name.
pub fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no final component", path.display()),
        )),
    }
}

/// The magic-link path of an fd, for system calls that take paths.
pub fn fd_path(fd: &impl AsFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let fd = fs::open(dir.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        (dir, fd)
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let (dir, fd) = root();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("escape")).unwrap();
        symlink("../../../../", dir.path().join("up")).unwrap();
        // Both resolve inside the root: creating through them must not
        // touch the directory outside.
        mkdir_all(fd.as_fd(), Path::new("/escape/x"), 0o755).unwrap();
        mkdir_all(fd.as_fd(), Path::new("/up/y"), 0o755).unwrap();
        create_file(fd.as_fd(), Path::new("/../../z"), 0o644).unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(
            dir.path()
                .join(outside.path().strip_prefix("/").unwrap())
                .join("x")
                .is_dir()
        );
        assert!(dir.path().join("y").is_dir());
        assert!(dir.path().join("z").is_file());
    }

    #[test]
    fn dangling_links_are_followed_inside_the_root() {
        let (dir, fd) = root();
        symlink("/run", dir.path().join("varrun")).unwrap();
        symlink("../../elsewhere/deeper", dir.path().join("rel")).unwrap();
        mkdir_all(fd.as_fd(), Path::new("/varrun/lock"), 0o755).unwrap();
        mkdir_all(fd.as_fd(), Path::new("/rel/x"), 0o755).unwrap();
        assert!(dir.path().join("run/lock").is_dir());
        assert!(dir.path().join("elsewhere/deeper/x").is_dir());
        symlink("loop2", dir.path().join("loop1")).unwrap();
        symlink("loop1", dir.path().join("loop2")).unwrap();
        assert!(mkdir_all(fd.as_fd(), Path::new("/loop1/x"), 0o755).is_err());
    }

    #[test]
    fn creates_files_once() {
        let (dir, fd) = root();
        create_file(fd.as_fd(), Path::new("/a/b/c"), 0o600).unwrap();
        std::fs::write(dir.path().join("a/b/c"), "x").unwrap();
        create_file(fd.as_fd(), Path::new("/a/b/c"), 0o600).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/b/c")).unwrap(), b"x");
    }
}
