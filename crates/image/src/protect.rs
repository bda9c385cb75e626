//! Paths a tree keeps whatever is removed from it. Building in a process's
//! own root (`berth build --isolation rootfs`) empties `/` and lays layers
//! down on it, while `/proc`, the build context, berth's store and its
//! own binary must stay: every removal there goes through `Protected`,
//! which never removes a kept path, empties an ancestor of one (keeping
//! the directory and the way down to the kept path) instead of removing
//! it, and never enters a directory on another device (a mount point,
//! listed or not).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Kept paths, relative to the tree's root (no leading slash).
#[derive(Debug, Clone, Default)]
pub struct Protected {
    paths: Vec<Vec<u8>>,
}

/// `a/b` + `c` = `a/b/c`; `` + `c` = `c`.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

impl Protected {
    /// `paths` absolute or relative (`/proc`, `var/lib/berth`); `.` and
    /// empty components dropped. The root itself cannot be kept.
    pub fn new<I, P>(paths: I) -> Protected
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        let mut out: Vec<Vec<u8>> = paths
            .into_iter()
            .map(|p| {
                p.as_ref()
                    .split(|&b| b == b'/')
                    .filter(|c| !c.is_empty() && *c != b".")
                    .collect::<Vec<_>>()
                    .join(&b'/')
            })
            .filter(|p| !p.is_empty())
            .collect();
        out.sort();
        out.dedup();
        Protected { paths: out }
    }

    pub fn paths(&self) -> &[Vec<u8>] {
        &self.paths
    }

    /// `path` is kept: a kept path or below one.
    pub fn is_kept(&self, path: &[u8]) -> bool {
        self.paths
            .iter()
            .any(|k| path == k.as_slice() || (path.starts_with(k) && path[k.len()] == b'/'))
    }

    /// `path` is a strict ancestor of a kept path (the root holds them
    /// all, when there are any).
    pub fn holds_kept(&self, path: &[u8]) -> bool {
        if path.is_empty() {
            return !self.paths.is_empty();
        }
        self.paths
            .iter()
            .any(|k| k.len() > path.len() && k.starts_with(path) && k[path.len()] == b'/')
    }

    /// Removes `name` in `dir` (whose path is `parent`) as far as allowed:
    /// nothing when it is kept or a directory on another device; its
    /// contents but the kept ones when it holds kept paths; else all of
    /// it. Returns whether a directory is still there.
    pub fn remove(&self, dir: BorrowedFd<'_>, parent: &[u8], name: &[u8]) -> io::Result<bool> {
        let path = join(parent, name);
        if self.is_kept(&path) {
            return Ok(true);
        }
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir {
            let parent_dev = rustix::fs::fstat(dir)?.st_dev;
            if st.st_dev != parent_dev {
                // A mount point: neither it nor what it holds is the
                // tree's to remove.
                return Ok(true);
            }
            if self.holds_kept(&path) {
                let fd = rustix::fs::openat(dir, name, DIR, Mode::empty())?;
                self.empty(fd.as_fd(), &path)?;
                return Ok(true);
            }
        } else if self.holds_kept(&path) {
            // A symlink on the way to a kept path: what it resolves to
            // is not this tree's.
            return Ok(false);
        }
        crate::remove::remove_all_at(dir, name)?;
        Ok(false)
    }

    /// Empties directory `dir` (whose path is `path`) but for what is
    /// kept, mount points and the way down to kept paths.
    pub fn empty(&self, dir: BorrowedFd<'_>, path: &[u8]) -> io::Result<()> {
        let mut names = Vec::new();
        let fd = rustix::fs::openat(dir, ".", DIR, Mode::empty())?;
        for e in rustix::fs::Dir::read_from(&fd)? {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        for n in names {
            self.remove(dir, path, &n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn open(p: &Path) -> std::os::fd::OwnedFd {
        rustix::fs::open(p, DIR, Mode::empty()).unwrap()
    }

    #[test]
    fn paths_are_normalised_and_matched_by_component() {
        let p = Protected::new(["/proc", "var/lib/berth/", "//etc/./hosts", "/"]);
        assert_eq!(
            p.paths(),
            [
                b"etc/hosts".to_vec(),
                b"proc".to_vec(),
                b"var/lib/berth".to_vec()
            ]
        );
        assert!(p.is_kept(b"proc"));
        assert!(p.is_kept(b"proc/1/root"));
        assert!(
            !p.is_kept(b"processes"),
            "a prefix of a name is not the name"
        );
        assert!(!p.is_kept(b"var/lib"));
        assert!(p.holds_kept(b"var/lib"));
        assert!(p.holds_kept(b"var"));
        assert!(p.holds_kept(b""));
        assert!(!p.holds_kept(b"var/lib/berth"));
        assert!(!p.holds_kept(b"va"));
        assert!(!Protected::new(Vec::<&[u8]>::new()).holds_kept(b""));
    }

    #[test]
    fn emptying_keeps_kept_paths_and_the_way_to_them() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["var/lib/berth/layers", "var/log", "usr/bin", "keep"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::fs::write(r.join("var/lib/berth/layers/x"), b"store").unwrap();
        std::fs::write(r.join("var/lib/other"), b"gone").unwrap();
        std::fs::write(r.join("usr/bin/tool"), b"gone").unwrap();
        std::fs::write(r.join("keep/f"), b"kept").unwrap();
        std::fs::write(r.join("file"), b"gone").unwrap();
        std::os::unix::fs::symlink("/", r.join("link-to-root")).unwrap();
        let p = Protected::new(["/var/lib/berth", "/keep"]);
        p.empty(open(r).as_fd(), b"").unwrap();
        let mut left: Vec<String> = walkdir(r);
        left.sort();
        assert_eq!(
            left,
            [
                "keep",
                "keep/f",
                "var",
                "var/lib",
                "var/lib/berth",
                "var/lib/berth/layers",
                "var/lib/berth/layers/x"
            ]
        );
        // The symlink was removed, not followed.
        assert!(Path::new("/").read_dir().is_ok());
    }

    #[test]
    fn a_symlink_where_a_kept_path_goes_is_left() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("real/berth")).unwrap();
        std::os::unix::fs::symlink("real", r.join("var")).unwrap();
        let p = Protected::new(["/var/berth"]);
        p.empty(open(r).as_fd(), b"").unwrap();
        // `var` is on the way to a kept path: not removed; `real` is not.
        assert!(r.join("var").symlink_metadata().is_ok());
        assert!(!r.join("real").exists());
    }

    fn walkdir(r: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![r.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                out.push(p.strip_prefix(r).unwrap().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    stack.push(p);
                }
            }
        }
        out
    }
}
