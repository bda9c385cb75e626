//! Walking an overlay upper directory: what a container changed. The
//! directory belongs to the container and is hostile input: it is walked
//! with *at calls from one descriptor of its root, every directory opened
//! with openat2 (BENEATH | NO_SYMLINKS | NO_XDEV), so no symlink is ever
//! followed and nothing outside it is read. Only regular files are opened
//! for their data, with O_NOFOLLOW | O_NONBLOCK, and checked to be the
//! inode that was listed (a FIFO or device swapped in meanwhile is never
//! read). Only the current directory's descriptor is open at a time, so
//! a tree deeper than the open-file limit is no obstacle.
//!
//! Entries come in a fixed order, each directory before its contents and
//! names sorted bytewise, so the same tree always gives the same walk (and
//! the same layer tar).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Context, Error, Result};

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// What an entry of the upper directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A 0/0 character device: the name is deleted from the lower layers.
    Whiteout,
    /// `opaque`: the directory hides what lower layers have under it.
    Dir {
        opaque: bool,
    },
    File,
    Symlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    /// Not layer content (a bound socket); callers skip it.
    Socket,
}

/// One entry, as listed (lstat) from its directory.
#[derive(Debug, Clone)]
pub struct Node {
    /// Relative to the upper directory, no leading slash.
    pub path: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits (with setuid, setgid, sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
    /// The change time: a rewrite within the mtime's granularity, a
    /// chmod, chown or xattr change all move it.
    pub ctime: i64,
    pub ctime_nsec: i64,
    pub size: u64,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    /// Disk usage (st_blocks * 512).
    pub blocks: u64,
    /// Extended attributes, less overlayfs' own (`trusted.overlay.*`,
    /// `user.overlay.*`); only when the walk asked for them.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Node {
    /// `/path`, as a container sees it.
    pub fn abs(&self) -> String {
        format!("/{}", String::from_utf8_lossy(&self.path))
    }
}

/// An upper directory opened for walking.
pub struct UpperDir {
    root: OwnedFd,
    what: String,
}

impl UpperDir {
    pub fn open(path: &Path) -> Result<UpperDir> {
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open upper directory {}", path.display()))?;
        Ok(UpperDir {
            root,
            what: path.display().to_string(),
        })
    }

    fn err(&self, path: &[u8], why: impl std::fmt::Display) -> Error {
        Error::invalid(
            format!("{} in {}", String::from_utf8_lossy(path), self.what),
            why,
        )
    }

    fn open_dir(&self, path: &[u8]) -> Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if path.is_empty() {
            return rustix::fs::openat(&self.root, ".", flags, Mode::empty())
                .map_err(|e| self.err(b"/", format!("open: {e}")));
        }
        rustix::fs::openat2(&self.root, path, flags, Mode::empty(), RESOLVE).map_err(|e| {
            let why = match e {
                Errno::LOOP | Errno::NOTDIR => {
                    "replaced by a symlink or a file while walking".into()
                }
                Errno::XDEV => "a mount point".into(),
                Errno::NAMETOOLONG => "path too long".into(),
                e => format!("open: {e}"),
            };
            self.err(path, why)
        })
    }

    /// The entries of directory `path`, sorted by name.
    fn children(&self, path: &[u8], xattrs: bool) -> Result<Vec<Node>> {
        let dir = self.open_dir(path)?;
        let mut names = Vec::new();
        for e in
            rustix::fs::Dir::read_from(&dir).map_err(|e| self.err(path, format!("read: {e}")))?
        {
            let e = e.map_err(|e| self.err(path, format!("read: {e}")))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let mut rel = path.to_vec();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            let st = match rustix::fs::statat(&dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed meanwhile (a running container): not a change.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(self.err(&rel, format!("stat: {e}"))),
            };
            let ft = FileType::from_raw_mode(st.st_mode);
            let (ma, mi) = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
            let is_whiteout = ft == FileType::CharacterDevice && st.st_rdev == 0;
            // Whiteouts have no xattrs of interest; every directory is
            // asked whether it is opaque.
            let all = if is_whiteout || !(xattrs || ft == FileType::Directory) {
                Vec::new()
            } else {
                read_xattrs(&dir, &name).map_err(|e| self.err(&rel, format!("xattrs: {e}")))?
            };
            let mut opaque = false;
            let mut kept = Vec::new();
            for (k, v) in all {
                let own = berth_base::rootless::is_overlay_xattr(&k)
                    .then(|| k.splitn(3, |&b| b == b'.').nth(2).unwrap_or_default());
                match own {
                    None => kept.push((k, v)),
                    Some(b"opaque") => opaque = v == b"y",
                    // The file's data or the directory's content is
                    // somewhere in the lower layers: this walk alone cannot
                    // say what the container sees there.
                    Some(b"redirect") | Some(b"metacopy") => {
                        return Err(self.err(
                            &rel,
                            format!(
                                "overlayfs {} entry (mounted with redirect_dir or metacopy): not supported",
                                String::from_utf8_lossy(&k)
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            let kind = match ft {
                _ if is_whiteout => NodeKind::Whiteout,
                FileType::Directory => NodeKind::Dir { opaque },
                FileType::RegularFile => NodeKind::File,
                FileType::Symlink => NodeKind::Symlink(
                    rustix::fs::readlinkat(&dir, name.as_slice(), Vec::new())
                        .map_err(|e| self.err(&rel, format!("readlink: {e}")))?
                        .into_bytes(),
                ),
                FileType::CharacterDevice => NodeKind::Char(ma, mi),
                FileType::BlockDevice => NodeKind::Block(ma, mi),
                FileType::Fifo => NodeKind::Fifo,
                _ => NodeKind::Socket,
            };
            out.push(Node {
                path: rel,
                kind,
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
                mtime: st.st_mtime,
                mtime_nsec: st.st_mtime_nsec as i64,
                ctime: st.st_ctime,
                ctime_nsec: st.st_ctime_nsec as i64,
                size: st.st_size as u64,
                nlink: st.st_nlink,
                dev: st.st_dev,
                ino: st.st_ino,
                blocks: st.st_blocks as u64 * 512,
                xattrs: if xattrs { kept } else { Vec::new() },
            });
        }
        Ok(out)
    }

    /// Visits every entry, directories before their contents, names in
    /// byte order. Entries whose path is in `exclude` (relative, no
    /// leading slash) are skipped with everything under them.
    pub fn walk(
        &self,
        exclude: &[Vec<u8>],
        xattrs: bool,
        visit: impl FnMut(&Node) -> Result<()>,
    ) -> Result<()> {
        self.walk_except(|n| exclude.iter().any(|e| e == &n.path), xattrs, visit)
    }

    /// `walk`, skipping the entries `skip` says (with everything under
    /// them): a walk of a live root leaves out its mount points.
    pub fn walk_except(
        &self,
        skip: impl Fn(&Node) -> bool,
        xattrs: bool,
        mut visit: impl FnMut(&Node) -> Result<()>,
    ) -> Result<()> {
        let mut stack: Vec<Node> = self.children(b"", xattrs)?;
        stack.reverse();
        while let Some(node) = stack.pop() {
            if skip(&node) {
                continue;
            }
            visit(&node)?;
            if matches!(node.kind, NodeKind::Dir { .. }) {
                let mut kids = self.children(&node.path, xattrs)?;
                kids.reverse();
                stack.extend(kids);
            }
        }
        Ok(())
    }

    /// Opens a regular file the walk listed, for reading its data: never
    /// through a symlink, never blocking, and only if it is still the
    /// same inode.
    pub fn open_file(&self, node: &Node) -> Result<std::fs::File> {
        let fd = rustix::fs::openat2(
            &self.root,
            node.path.as_slice(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| self.err(&node.path, format!("open: {e}")))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.err(&node.path, format!("stat: {e}")))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || (st.st_dev, st.st_ino) != (node.dev, node.ino)
        {
            return Err(self.err(&node.path, "replaced while being read"));
        }
        Ok(std::fs::File::from(fd))
    }
}

/// The extended attributes of `name` in `dir`, the name itself never
/// followed: through the directory's /proc/self/fd entry with the l*
/// calls (a symlink or device cannot be opened for f*xattr).
fn read_xattrs(dir: &OwnedFd, name: &[u8]) -> rustix::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    let p: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(p);
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(p.as_os_str(), &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    };
    let mut out = Vec::new();
    for k in names[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let mut val = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(p.as_os_str(), k, &mut val[..]) {
                Ok(len) => break Some(len),
                Err(Errno::RANGE) if val.len() < 1 << 16 => val.resize(1 << 16, 0),
                // Removed between the listing and the read.
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e),
            }
        };
        if let Some(len) = len {
            val.truncate(len);
            out.push((k.to_vec(), val));
        }
    }
    out.sort();
    Ok(out)
}

/// `/a/b` as a walk path (`a/b`).
pub fn rel_path(abs: &str) -> Vec<u8> {
    abs.trim_start_matches('/')
        .trim_end_matches('/')
        .as_bytes()
        .to_vec()
}
