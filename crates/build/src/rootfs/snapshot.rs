//! A step's changes found by walking the root before and after it: every
//! path's metadata recorded first; then what is new or changed goes into
//! the layer (with its parent directories, as an overlay upper dir would
//! hold them), and what vanished becomes a whiteout.
//!
//! A regular file changed when its size, mtime, ctime, inode, mode or
//! owner did: the ctime catches a rewrite to the same size within the
//! mtime's granularity (and a chmod, chown or xattr change); the inode a
//! file replaced by rename. A directory changed when its mode, owner or
//! mtime did (an entry added or removed moves its mtime; its inode is not
//! compared: overlayfs does not keep directory inodes across copy-up).

use std::collections::{HashMap, HashSet};

use berth_image::protect::Protected;
use berth_image::upper::{Node, NodeKind, UpperDir};

use crate::error::Result;

/// One path's metadata, as far as a change shows in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    kind: NodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl Stamp {
    fn of(n: &Node) -> Stamp {
        Stamp {
            kind: n.kind.clone(),
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            size: n.size,
            mtime: (n.mtime, n.mtime_nsec),
            ctime: (n.ctime, n.ctime_nsec),
            ino: n.ino,
        }
    }

    fn changed(&self, n: &Node) -> bool {
        let now = Stamp::of(n);
        match (&self.kind, &now.kind) {
            (NodeKind::Dir { .. }, NodeKind::Dir { .. }) => {
                (self.mode, self.uid, self.gid, self.mtime)
                    != (now.mode, now.uid, now.gid, now.mtime)
            }
            _ => *self != now,
        }
    }
}

/// The root's paths and their stamps.
#[derive(Debug, Default)]
pub struct Snapshot {
    stamps: HashMap<Vec<u8>, Stamp>,
}

/// Every entry of `root`, in walk order, but the kept ones and
/// directories on another device (mount points mountinfo did not name):
/// xattrs read when `xattrs` (the walk whose entries go into a layer).
pub fn walk(root: &UpperDir, root_dev: u64, keep: &Protected, xattrs: bool) -> Result<Vec<Node>> {
    let mut out = Vec::new();
    root.walk_except(
        |n| keep.is_kept(&n.path) || (matches!(n.kind, NodeKind::Dir { .. }) && n.dev != root_dev),
        xattrs,
        |n| {
            out.push(n.clone());
            Ok(())
        },
    )?;
    Ok(out)
}

/// `a/b/c` -> its components, the order a walk visits paths in.
fn components(p: &[u8]) -> Vec<&[u8]> {
    p.split(|&b| b == b'/').collect()
}

fn parent(p: &[u8]) -> Option<&[u8]> {
    p.iter().rposition(|&b| b == b'/').map(|i| &p[..i])
}

impl Snapshot {
    pub fn of(nodes: &[Node]) -> Snapshot {
        Snapshot {
            stamps: nodes
                .iter()
                .map(|n| (n.path.clone(), Stamp::of(n)))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }

    /// What changed from this snapshot to the walk `after`: the new and
    /// changed entries with their parent directories, and a whiteout for
    /// each vanished path whose parent is still a directory (a vanished
    /// directory's whiteout covers what was in it), in walk order.
    pub fn changes(&self, after: &[Node]) -> Vec<Node> {
        let index: HashMap<&[u8], usize> = after
            .iter()
            .enumerate()
            .map(|(i, n)| (n.path.as_slice(), i))
            .collect();
        let mut take = vec![false; after.len()];
        let mark_parents = |take: &mut Vec<bool>, p: &[u8]| {
            let mut cur = parent(p);
            while let Some(q) = cur {
                match index.get(q) {
                    Some(&i) if !take[i] => take[i] = true,
                    // Marked already: so are its parents.
                    Some(_) => break,
                    None => {}
                }
                cur = parent(q);
            }
        };
        for (i, n) in after.iter().enumerate() {
            let changed = self.stamps.get(&n.path).is_none_or(|s| s.changed(n));
            if changed {
                take[i] = true;
                mark_parents(&mut take, &n.path);
            }
        }
        let mut gone: Vec<Node> = Vec::new();
        let vanished: HashSet<&[u8]> = self
            .stamps
            .keys()
            .map(|p| p.as_slice())
            .filter(|p| !index.contains_key(p))
            .collect();
        for p in &vanished {
            let parent_is_dir = match parent(p) {
                None => true,
                Some(q) => {
                    !vanished.contains(q)
                        && index
                            .get(q)
                            .is_some_and(|&i| matches!(after[i].kind, NodeKind::Dir { .. }))
                }
            };
            if !parent_is_dir {
                continue;
            }
            mark_parents(&mut take, p);
            gone.push(whiteout(p));
        }
        let mut out: Vec<Node> = after
            .iter()
            .zip(&take)
            .filter(|(_, t)| **t)
            .map(|(n, _)| n.clone())
            .chain(gone)
            .collect();
        out.sort_by(|a, b| components(&a.path).cmp(&components(&b.path)));
        out
    }
}

/// The whiteout of `path`, as an overlay upper dir would hold it.
fn whiteout(path: &[u8]) -> Node {
    Node {
        path: path.to_vec(),
        kind: NodeKind::Whiteout,
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: 0,
        mtime_nsec: 0,
        ctime: 0,
        ctime_nsec: 0,
        size: 0,
        nlink: 1,
        dev: 0,
        ino: 0,
        blocks: 0,
        xattrs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn scan(root: &Path, keep: &Protected) -> Vec<Node> {
        let u = UpperDir::open(root).unwrap();
        let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(root).unwrap());
        walk(&u, dev, keep, true).unwrap()
    }

    fn names(nodes: &[Node]) -> Vec<String> {
        nodes
            .iter()
            .map(|n| {
                let p = String::from_utf8_lossy(&n.path).into_owned();
                if n.kind == NodeKind::Whiteout {
                    format!("-{p}")
                } else {
                    p
                }
            })
            .collect()
    }

    #[test]
    fn new_changed_and_vanished_paths_with_their_parents() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["etc", "usr/lib/deep", "var/cache/x", "kept", "same"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::fs::write(r.join("etc/conf"), b"aaaa").unwrap();
        std::fs::write(r.join("etc/untouched"), b"u").unwrap();
        std::fs::write(r.join("usr/lib/deep/lib.so"), b"old").unwrap();
        std::fs::write(r.join("usr/lib/deep/mode"), b"m").unwrap();
        std::fs::write(r.join("var/cache/x/a"), b"a").unwrap();
        std::fs::write(r.join("kept/f"), b"k").unwrap();
        std::fs::write(r.join("same/f"), b"s").unwrap();
        std::fs::write(r.join("gone"), b"g").unwrap();
        let keep = Protected::new(["/kept"]);
        let before = Snapshot::of(&scan(r, &keep));
        assert!(!before.stamps.contains_key(b"kept/f".as_slice()));

        // Same size, same second: only the ctime (and the inode, for the
        // rename) tell.
        std::fs::write(r.join("etc/conf.new"), b"bbbb").unwrap();
        std::fs::rename(r.join("etc/conf.new"), r.join("etc/conf")).unwrap();
        // Rewritten in place, same size.
        std::fs::write(r.join("usr/lib/deep/lib.so"), b"new").unwrap();
        std::fs::set_permissions(
            r.join("usr/lib/deep/mode"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::remove_dir_all(r.join("var/cache/x")).unwrap();
        std::fs::remove_file(r.join("gone")).unwrap();
        std::fs::write(r.join("kept/f"), b"changed but kept").unwrap();
        std::fs::create_dir(r.join("new")).unwrap();
        std::fs::write(r.join("new/file"), b"n").unwrap();
        std::os::unix::fs::symlink("/etc/conf", r.join("link")).unwrap();

        let after = scan(r, &keep);
        let ch = before.changes(&after);
        assert_eq!(
            names(&ch),
            [
                "etc",
                "etc/conf",
                "-gone",
                "link",
                "new",
                "new/file",
                "usr",
                "usr/lib",
                "usr/lib/deep",
                "usr/lib/deep/lib.so",
                "usr/lib/deep/mode",
                "var",
                "var/cache",
                "-var/cache/x",
            ]
        );
        // The next step starts from this walk: nothing changed since.
        assert!(Snapshot::of(&after).changes(&after).is_empty());
    }

    #[test]
    fn a_directory_replaced_by_a_file_needs_no_whiteouts_below_it() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("d/sub")).unwrap();
        std::fs::write(r.join("d/sub/f"), b"x").unwrap();
        let keep = Protected::default();
        let before = Snapshot::of(&scan(r, &keep));
        std::fs::remove_dir_all(r.join("d")).unwrap();
        std::fs::write(r.join("d"), b"now a file").unwrap();
        let ch = before.changes(&scan(r, &keep));
        assert_eq!(names(&ch), ["d"]);
        assert_eq!(ch[0].kind, NodeKind::File);
    }
}
