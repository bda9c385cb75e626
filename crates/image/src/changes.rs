//! What a container changed, as `docker diff` reports it: `A` for a path
//! added, `C` for one changed, `D` for one deleted, read from the
//! snapshot's upper directory and compared with its lower layers.
//!
//! The rules are docker's (and podman's): a whiteout is a deletion; an
//! opaque directory that a lower layer has is reported deleted (its old
//! content is gone) and its new entries added; an entry a lower layer has
//! is a change, except a directory whose size, mode and mtime are the
//! same (it is in the upper dir only because something under it changed);
//! the parent of an added or deleted entry is reported changed. Lower
//! layers are looked into without following any symlink.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use crate::error::Result;
use crate::upper::{Node, NodeKind, UpperDir};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// As the container sees it: `/etc/passwd`.
    pub path: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.letter(), self.path)
    }
}

/// What lstat says of a path in a lower layer.
struct LowerStat {
    dir: bool,
    size: u64,
    mode: u32,
    mtime: (i64, i64),
}

/// The layers under the upper dir, top first.
struct Lowers(Vec<PathBuf>);

impl Lowers {
    /// The topmost lower entry at `rel`, or None if no layer has it (or the
    /// first layer that says anything about it deletes it).
    fn find(&self, rel: &[u8]) -> Option<LowerStat> {
        let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&rel[..0], rel),
        };
        for layer in &self.0 {
            let Ok(root) = rustix::fs::open(
                layer,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            let dir = if parent.is_empty() {
                Ok(root)
            } else {
                rustix::fs::openat2(
                    &root,
                    parent,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH
                        | ResolveFlags::NO_SYMLINKS
                        | ResolveFlags::NO_MAGICLINKS
                        | ResolveFlags::NO_XDEV,
                )
            };
            let Ok(dir) = dir else { continue };
            match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    let ft = FileType::from_raw_mode(st.st_mode);
                    if ft == FileType::CharacterDevice && st.st_rdev == 0 {
                        return None;
                    }
                    return Some(LowerStat {
                        dir: ft == FileType::Directory,
                        size: st.st_size as u64,
                        mode: st.st_mode,
                        mtime: (st.st_mtime, st.st_mtime_nsec as i64),
                    });
                }
                Err(_) => continue,
            }
        }
        None
    }
}

/// docker's comparison of times across file systems: equal, or equal
/// seconds where one side has no nanoseconds.
fn same_time(a: (i64, i64), b: (i64, i64)) -> bool {
    a == b || (a.0 == b.0 && (a.1 == 0 || b.1 == 0))
}

/// The changes in `upper` over `lowers` (layer directories, top first),
/// sorted by path. `exclude` as for export: mount points the runtime
/// made.
pub fn changes(upper: &Path, lowers: &[PathBuf], exclude: &[String]) -> Result<Vec<Change>> {
    let src = UpperDir::open(upper)?;
    let lowers = Lowers(lowers.to_vec());
    let exclude: Vec<Vec<u8>> = exclude.iter().map(|e| crate::upper::rel_path(e)).collect();
    let mut out: Vec<Change> = Vec::new();
    let mut changed_dirs: HashSet<Vec<u8>> = HashSet::new();
    src.walk(&exclude, false, |node: &Node| {
        let lower = lowers.find(&node.path);
        let kind = match (&node.kind, &lower) {
            (NodeKind::Whiteout, _) => ChangeKind::Deleted,
            (NodeKind::Dir { opaque: true }, Some(_)) => ChangeKind::Deleted,
            (_, None) => ChangeKind::Added,
            (NodeKind::Dir { .. }, Some(l))
                if l.dir
                    && l.size == node.size
                    && l.mode & 0o7777 == node.mode
                    && same_time(l.mtime, (node.mtime, node.mtime_nsec)) =>
            {
                return Ok(());
            }
            (_, Some(_)) => ChangeKind::Changed,
        };
        if matches!(node.kind, NodeKind::Dir { .. }) {
            changed_dirs.insert(node.path.clone());
        }
        if matches!(kind, ChangeKind::Added | ChangeKind::Deleted)
            && let Some(i) = node.path.iter().rposition(|&b| b == b'/')
        {
            let parent = node.path[..i].to_vec();
            if changed_dirs.insert(parent.clone()) {
                out.push(Change {
                    kind: ChangeKind::Changed,
                    path: format!("/{}", String::from_utf8_lossy(&parent)),
                });
            }
        }
        out.push(Change {
            kind,
            path: node.abs(),
        });
        Ok(())
    })?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::XattrFlags;

    fn copy_times(from: &Path, to: &Path) {
        let md = std::fs::metadata(from).unwrap();
        let t = std::fs::FileTimes::new().set_modified(md.modified().unwrap());
        std::fs::File::open(to).unwrap().set_times(t).unwrap();
    }

    #[test]
    fn changes_are_reported_as_docker_reports_them() {
        let d = tempfile::tempdir().unwrap();
        let (lower, upper) = (d.path().join("lower"), d.path().join("upper"));
        for dir in ["keep", "gone", "remade", "etc"] {
            std::fs::create_dir_all(lower.join(dir)).unwrap();
        }
        std::fs::write(lower.join("keep/file"), b"1").unwrap();
        std::fs::write(lower.join("remade/old"), b"1").unwrap();
        std::fs::write(lower.join("etc/conf"), b"1").unwrap();
        // Upper: keep/ copied up unchanged around a changed file; gone/
        // deleted; remade/ emptied and refilled; a new tree; a symlink
        // pointing out, never followed.
        std::fs::create_dir_all(upper.join("keep")).unwrap();
        std::fs::write(upper.join("keep/file"), b"2").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/hosts"), b"").unwrap();
        for dir in ["keep", "etc"] {
            copy_times(&lower.join(dir), &upper.join(dir));
        }
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        std::fs::create_dir(upper.join("remade")).unwrap();
        rustix::fs::setxattr(
            upper.join("remade"),
            "trusted.overlay.opaque",
            b"y",
            XattrFlags::empty(),
        )
        .unwrap();
        std::fs::write(upper.join("remade/new"), b"n").unwrap();
        std::fs::create_dir_all(upper.join("new/sub")).unwrap();
        std::os::unix::fs::symlink("/etc", upper.join("new/sub/out")).unwrap();
        let got: Vec<String> = changes(&upper, &[lower], &["/etc/hosts".into()])
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "D /gone",
                "C /keep/file",
                "A /new",
                "A /new/sub",
                "A /new/sub/out",
                "D /remade",
                "A /remade/new",
            ]
        );
    }
}
