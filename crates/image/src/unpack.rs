//! Safe layer unpacking. Every entry is created with *at syscalls relative
//! to the layer directory: parents are resolved with openat2
//! (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV), so no symlink
//! is ever followed and nothing outside the layer can be named. Absolute
//! names, `..`, links whose target leaves the layer and absurd sizes are
//! errors naming the entry. The tar crate only parses headers.
//!
//! Whiteouts are stored the way overlayfs reads them: a `.wh.NAME` entry
//! becomes a 0/0 character device NAME, `.wh..wh..opq` sets
//! trusted.overlay.opaque=y on its directory.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::error::{Context, Error, Result};
use crate::protect::Protected;
use crate::remove::remove_all_at;
use crate::tar_guard::TarGuard;

/// Entries larger than this are refused before a byte is written.
pub const MAX_ENTRY_SIZE: u64 = 1 << 40;
const MAX_PATH: usize = 4096;
/// Directories nested deeper than this are refused: no real image needs
/// them, and every tool that walks the tree pays for each level.
pub const MAX_DEPTH: usize = 1024;
/// Runs of zeros this long (and aligned so) become holes, not writes.
const HOLE: usize = 4096;
const FD_CACHE: usize = 64;

#[derive(Debug, Clone)]
pub enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

#[derive(Debug, Clone)]
pub struct Meta {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub size: u64,
}

/// Writes entries into one layer directory.
pub struct LayerWriter {
    root: OwnedFd,
    layer: String,
    /// Parent directory fds by path; dropped whenever an entry replaces
    /// something, so a cached fd never stands for a name that changed.
    cache: HashMap<Vec<u8>, OwnedFd>,
    /// Directories whose times are set at the end (creating children
    /// changes them).
    dir_times: Vec<(Vec<u8>, i64)>,
    buf: Vec<u8>,
    pub bytes: u64,
    pub entries: u64,
    /// File data (holes by their size) this layer may write in all; the
    /// stream is capped before it gets here, but a GNU sparse entry
    /// expands to more than its share of the stream.
    pub max_bytes: u64,
    /// Applying layers onto one tree (the copy snapshotter): whiteouts
    /// delete and opaque markers empty the directory, instead of being
    /// stored for overlayfs.
    merge: bool,
    /// Merging into a live root: paths never removed or written (see
    /// `Protected`).
    protect: Option<Protected>,
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

impl LayerWriter {
    /// `dir` must exist and is the only place written to.
    pub fn new(dir: &Path, layer: &str) -> Result<LayerWriter> {
        let root = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open layer directory {}", dir.display()))?;
        Ok(LayerWriter {
            root,
            layer: layer.to_string(),
            cache: HashMap::new(),
            dir_times: Vec::new(),
            buf: vec![0; 256 << 10],
            bytes: 0,
            entries: 0,
            max_bytes: u64::MAX,
            merge: false,
            protect: None,
        })
    }

    /// A writer that merges layers into one tree (see `merge`).
    pub fn merging(dir: &Path, layer: &str) -> Result<LayerWriter> {
        let mut w = LayerWriter::new(dir, layer)?;
        w.merge = true;
        Ok(w)
    }

    /// A merging writer that leaves `protect`'s paths alone: entries at
    /// or below them are skipped, and what would remove one (a whiteout,
    /// an opaque directory, an entry replacing a directory) removes the
    /// rest only.
    pub fn merging_except(dir: &Path, layer: &str, protect: Protected) -> Result<LayerWriter> {
        let mut w = LayerWriter::merging(dir, layer)?;
        w.protect = Some(protect);
        Ok(w)
    }

    fn err(&self, entry: &[u8], why: impl std::fmt::Display) -> Error {
        Error::Layer {
            layer: self.layer.clone(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            why: why.to_string(),
        }
    }

    /// The directory fd for `parent` (components already checked),
    /// creating missing directories as 0755 root-owned (tar streams may
    /// leave them out).
    fn parent(&mut self, entry: &[u8], parent: &[u8]) -> Result<BorrowedFd<'_>> {
        if parent.is_empty() {
            return Ok(self.root.as_fd());
        }
        if !self.cache.contains_key(parent) {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let fd = match rustix::fs::openat2(&self.root, parent, flags, Mode::empty(), RESOLVE) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => self.create_parents(entry, parent)?,
                Err(e) => return Err(self.resolve_error(entry, e)),
            };
            if self.cache.len() >= FD_CACHE {
                self.cache.clear();
            }
            self.cache.insert(parent.to_vec(), fd);
        }
        Ok(self.cache[parent].as_fd())
    }

    fn create_parents(&self, entry: &[u8], parent: &[u8]) -> Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut cur = rustix::io::fcntl_dupfd_cloexec(&self.root, 0).ctx(|| "dup".into())?;
        for comp in parent.split(|&b| b == b'/') {
            let next = match rustix::fs::openat2(&cur, comp, flags, Mode::empty(), RESOLVE) {
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(self.err(entry, format!("create parent directory: {e}")));
                        }
                    }
                    rustix::fs::openat2(&cur, comp, flags, Mode::empty(), RESOLVE)
                }
                other => other,
            };
            cur = next.map_err(|e| self.resolve_error(entry, e))?;
        }
        Ok(cur)
    }

    fn resolve_error(&self, entry: &[u8], e: Errno) -> Error {
        let why = match e {
            Errno::LOOP => {
                "its path goes through a symlink, which extraction never follows".to_string()
            }
            Errno::NOTDIR => "a parent in its path is not a directory".to_string(),
            Errno::XDEV => "its path leaves the layer (crosses a mount point)".to_string(),
            e => format!("cannot open its parent directory: {e}"),
        };
        self.err(entry, why)
    }

    /// Clears the way for a new entry: an existing directory stays when the
    /// new entry is a directory too; anything else is removed.
    fn make_room(
        &mut self,
        entry: &[u8],
        parent: &[u8],
        name: &[u8],
        keep_dir: bool,
    ) -> Result<bool> {
        let pfd = self.parent(entry, parent)?;
        let st = match rustix::fs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(self.err(entry, format!("stat: {e}"))),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir && keep_dir {
            return Ok(true);
        }
        let pfd = rustix::io::fcntl_dupfd_cloexec(pfd, 0).ctx(|| "dup".into())?;
        if let Some(p) = &self.protect {
            let left = p
                .remove(pfd.as_fd(), parent, name)
                .map_err(|e| self.err(entry, format!("replace: {e}")))?;
            self.cache.clear();
            if left {
                return Err(self.err(
                    entry,
                    "it would replace a directory kept in this tree (a mount point, or one holding kept paths)",
                ));
            }
            return Ok(false);
        }
        if is_dir {
            remove_all_at(pfd.as_fd(), name)
                .map_err(|e| self.err(entry, format!("replace directory: {e}")))?;
        } else {
            rustix::fs::unlinkat(&pfd, name, AtFlags::empty())
                .map_err(|e| self.err(entry, format!("replace: {e}")))?;
        }
        self.cache.clear();
        Ok(false)
    }

    /// Writes one entry; `path` is the raw name from the archive.
    pub fn entry(&mut self, path: &[u8], meta: &Meta, data: &mut dyn Read) -> Result<()> {
        self.entries += 1;
        let clean = clean_path(path).map_err(|why| self.err(path, why))?;
        if clean.is_empty() {
            // The layer root itself ("./"): its metadata belongs to the
            // container's root, which the snapshot owns.
            return Ok(());
        }
        let (parent, name) = match clean.iter().rposition(|&b| b == b'/') {
            Some(i) => (&clean[..i], &clean[i + 1..]),
            None => (&clean[..0], &clean[..]),
        };
        if let Some(p) = &self.protect {
            let target = match name.strip_prefix(b".wh.") {
                Some(b".wh..opq") => parent.to_vec(),
                Some(hidden) => crate::protect::join(parent, hidden),
                None => clean.clone(),
            };
            if p.is_kept(&target) {
                return Ok(());
            }
            if !matches!(meta.kind, Kind::Dir)
                && !name.starts_with(b".wh.")
                && p.holds_kept(&target)
            {
                // A file or link in place of a directory holding kept
                // paths would need them removed: the directory stays.
                return Ok(());
            }
        }
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            return self.whiteout(path, parent, hidden);
        }
        if meta.size > MAX_ENTRY_SIZE {
            return Err(self.err(
                path,
                format!("declares an absurd size of {} bytes", meta.size),
            ));
        }
        match &meta.kind {
            Kind::Dir => {
                let existed = self.make_room(path, parent, name, true)?;
                let pfd = self.parent(path, parent)?;
                if !existed {
                    rustix::fs::mkdirat(pfd, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| self.err(path, format!("mkdir: {e}")))?;
                }
                let pfd = self.parent(path, parent)?;
                let fd = rustix::fs::openat(
                    pfd,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.err(path, format!("open directory: {e}")))?;
                self.set_meta_fd(path, &fd, meta, false)?;
                self.dir_times.push((clean.clone(), meta.mtime));
            }
            Kind::File => {
                self.make_room(path, parent, name, false)?;
                let pfd = self.parent(path, parent)?;
                let fd = rustix::fs::openat(
                    pfd,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| self.err(path, format!("create: {e}")))?;
                let written = self.copy(path, data, &fd)?;
                if written != meta.size {
                    return Err(self.err(
                        path,
                        format!("{written} bytes of data, the header says {}", meta.size),
                    ));
                }
                self.set_meta_fd(path, &fd, meta, true)?;
            }
            Kind::Symlink(target) => {
                if target.is_empty() || target.contains(&0) {
                    return Err(self.err(path, "symlink with an empty or NUL target"));
                }
                self.make_room(path, parent, name, false)?;
                let pfd = self.parent(path, parent)?;
                // The target is stored, never resolved: it is only read
                // inside the container's root.
                rustix::fs::symlinkat(target.as_slice(), pfd, name)
                    .map_err(|e| self.err(path, format!("symlink: {e}")))?;
                self.set_meta_at(path, parent, name, meta, false)?;
            }
            Kind::Hardlink(target) => {
                let tclean = clean_path(target)
                    .map_err(|why| self.err(path, format!("hardlink target: {why}")))?;
                if tclean.is_empty() {
                    return Err(self.err(path, "hardlink to the layer root"));
                }
                if tclean == clean {
                    return Ok(());
                }
                let (tparent, tname) = match tclean.iter().rposition(|&b| b == b'/') {
                    Some(i) => (tclean[..i].to_vec(), tclean[i + 1..].to_vec()),
                    None => (Vec::new(), tclean.clone()),
                };
                self.make_room(path, parent, name, false)?;
                let tfd = self.parent(path, &tparent)?;
                let tfd = rustix::io::fcntl_dupfd_cloexec(tfd, 0).ctx(|| "dup".into())?;
                let pfd = self.parent(path, parent)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the
                // symlink itself, as tar means it.
                rustix::fs::linkat(&tfd, tname.as_slice(), pfd, name, AtFlags::empty()).map_err(
                    |e| {
                        let why = match e {
                            Errno::NOENT => "hardlink target is not in this layer".to_string(),
                            Errno::PERM => "hardlink to a directory".to_string(),
                            e => format!("hardlink to {}: {e}", String::from_utf8_lossy(target)),
                        };
                        self.err(path, why)
                    },
                )?;
            }
            // A user's namespace may not make device nodes: they are
            // left out, as rootless podman leaves them (a container gets
            // its devices from the runtime, bound from the host).
            Kind::Char(..) | Kind::Block(..) if berth_base::rootless::in_user_namespace() => {
                self.make_room(path, parent, name, false)?;
            }
            Kind::Char(..) | Kind::Block(..) | Kind::Fifo => {
                self.make_room(path, parent, name, false)?;
                let (ft, dev) = match meta.kind {
                    Kind::Char(ma, mi) => (FileType::CharacterDevice, rustix::fs::makedev(ma, mi)),
                    Kind::Block(ma, mi) => (FileType::BlockDevice, rustix::fs::makedev(ma, mi)),
                    _ => (FileType::Fifo, 0),
                };
                let pfd = self.parent(path, parent)?;
                rustix::fs::mknodat(pfd, name, ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| self.err(path, format!("mknod: {e}")))?;
                self.set_meta_at(path, parent, name, meta, true)?;
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, path: &[u8], parent: &[u8], hidden: &[u8]) -> Result<()> {
        if hidden == b".wh..opq" && self.merge {
            let fd = if parent.is_empty() {
                rustix::fs::openat(
                    &self.root,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            } else {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                rustix::fs::openat2(&self.root, parent, flags, Mode::empty(), RESOLVE)
            };
            let Ok(fd) = fd else { return Ok(()) };
            if let Some(p) = &self.protect {
                p.empty(fd.as_fd(), parent)
                    .map_err(|e| self.err(path, format!("empty opaque directory: {e}")))?;
                self.cache.clear();
                return Ok(());
            }
            let mut names = Vec::new();
            let mut d = rustix::fs::Dir::read_from(&fd)
                .map_err(|e| self.err(path, format!("read directory: {e}")))?;
            while let Some(Ok(e)) = d.next() {
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(n.to_vec());
                }
            }
            for n in names {
                remove_all_at(fd.as_fd(), &n)
                    .map_err(|e| self.err(path, format!("empty opaque directory: {e}")))?;
            }
            self.cache.clear();
            return Ok(());
        }
        if hidden == b".wh..opq" {
            let fd = if parent.is_empty() {
                rustix::fs::openat(
                    &self.root,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            } else {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                match rustix::fs::openat2(&self.root, parent, flags, Mode::empty(), RESOLVE) {
                    Err(Errno::NOENT) => {
                        self.create_parents(path, parent)?;
                        rustix::fs::openat2(&self.root, parent, flags, Mode::empty(), RESOLVE)
                    }
                    other => other,
                }
            }
            .map_err(|e| self.resolve_error(path, e))?;
            let opaque = berth_base::rootless::overlay_xattr("opaque");
            return rustix::fs::fsetxattr(&fd, opaque.as_str(), b"y", XattrFlags::empty())
                .map_err(|e| self.err(path, format!("mark directory opaque: {e}")));
        }
        if hidden.starts_with(b".wh.") {
            // aufs bookkeeping (.wh..wh.plnk and the like): no meaning here.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.err(path, "whiteout of an invalid name"));
        }
        if self.protect.is_some() {
            let pfd = self.parent(path, parent)?;
            let pfd = rustix::io::fcntl_dupfd_cloexec(pfd, 0).ctx(|| "dup".into())?;
            let p = self.protect.as_ref().expect("checked");
            p.remove(pfd.as_fd(), parent, hidden)
                .map_err(|e| self.err(path, format!("delete: {e}")))?;
            self.cache.clear();
            return Ok(());
        }
        self.make_room(path, parent, hidden, false)?;
        if self.merge {
            return Ok(());
        }
        let pfd = self.parent(path, parent)?;
        rustix::fs::mknodat(pfd, hidden, FileType::CharacterDevice, Mode::empty(), 0)
            .map_err(|e| self.err(path, format!("create whiteout: {e}")))
    }

    /// Copies an entry's data into `fd`. Blocks of zeros are skipped with
    /// a seek, leaving holes: sparse files stay sparse, and a layer of
    /// compressed zeros cannot fill the disk.
    fn copy(&mut self, path: &[u8], data: &mut dyn Read, fd: &OwnedFd) -> Result<u64> {
        let mut total = 0u64;
        let mut holes = false;
        loop {
            // Whole buffers, so holes line up with file system blocks.
            let mut n = 0;
            while n < self.buf.len() {
                match data.read(&mut self.buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.err(path, format!("read data: {e}"))),
                }
            }
            if n == 0 {
                break;
            }
            let mut off = 0;
            while off < n {
                let end = (off + HOLE).min(n);
                let zero = self.buf[off..end].iter().all(|&b| b == 0);
                // A run of blocks of the same kind.
                let mut run_end = end;
                while run_end < n {
                    let next = (run_end + HOLE).min(n);
                    if self.buf[run_end..next].iter().all(|&b| b == 0) != zero {
                        break;
                    }
                    run_end = next;
                }
                if zero {
                    rustix::fs::seek(fd, rustix::fs::SeekFrom::Current((run_end - off) as i64))
                        .map_err(|e| self.err(path, format!("seek: {e}")))?;
                    holes = true;
                } else {
                    write_all(fd, &self.buf[off..run_end])
                        .map_err(|e| self.err(path, format!("write: {e}")))?;
                }
                off = run_end;
            }
            total += n as u64;
            if total > MAX_ENTRY_SIZE {
                return Err(self.err(path, "more data than any entry may hold"));
            }
            if self.bytes.saturating_add(total) > self.max_bytes {
                return Err(self.err(
                    path,
                    format!(
                        "the layer's files hold more than {}, the limit for one layer (--max-layer-size)",
                        crate::limits::human(self.max_bytes)
                    ),
                ));
            }
        }
        if holes {
            // A hole at the end is only a size.
            rustix::fs::ftruncate(fd, total)
                .map_err(|e| self.err(path, format!("set size: {e}")))?;
        }
        self.bytes += total;
        Ok(total)
    }

    /// Owner, then mode (chown clears setuid bits), then xattrs (chown
    /// clears security.capability), then times.
    fn set_meta_fd(&self, path: &[u8], fd: &OwnedFd, meta: &Meta, times: bool) -> Result<()> {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
        )
        .map_err(|e| {
            self.err(
                path,
                berth_base::rootless::chown_error(meta.uid, meta.gid, e),
            )
        })?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))
            .map_err(|e| self.err(path, format!("chmod: {e}")))?;
        for (k, v) in &meta.xattrs {
            if !allowed_xattr(k) {
                continue;
            }
            rustix::fs::fsetxattr(fd, k.as_slice(), v, XattrFlags::empty()).map_err(|e| {
                self.err(path, format!("xattr {}: {e}", String::from_utf8_lossy(k)))
            })?;
        }
        if times {
            rustix::fs::futimens(fd, &stamp(meta.mtime))
                .map_err(|e| self.err(path, format!("set times: {e}")))?;
        }
        Ok(())
    }

    /// For entries that cannot be opened (symlinks, devices, fifos).
    fn set_meta_at(
        &mut self,
        path: &[u8],
        parent: &[u8],
        name: &[u8],
        meta: &Meta,
        chmod: bool,
    ) -> Result<()> {
        let pfd = self.parent(path, parent)?;
        let pfd = rustix::io::fcntl_dupfd_cloexec(pfd, 0).ctx(|| "dup".into())?;
        rustix::fs::chownat(
            &pfd,
            name,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| {
            self.err(
                path,
                berth_base::rootless::chown_error(meta.uid, meta.gid, e),
            )
        })?;
        if chmod {
            chmod_nofollow(&pfd, name, meta.mode & 0o7777)
                .map_err(|e| self.err(path, format!("chmod: {e}")))?;
        }
        if meta.xattrs.iter().any(|(k, _)| allowed_xattr(k)) {
            let mut p =
                format!("/proc/self/fd/{}/", std::os::fd::AsRawFd::as_raw_fd(&pfd)).into_bytes();
            p.extend_from_slice(name);
            let p: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(p);
            for (k, v) in &meta.xattrs {
                if allowed_xattr(k) {
                    rustix::fs::lsetxattr(p.as_os_str(), k.as_slice(), v, XattrFlags::empty())
                        .map_err(|e| {
                            self.err(path, format!("xattr {}: {e}", String::from_utf8_lossy(k)))
                        })?;
                }
            }
        }
        rustix::fs::utimensat(&pfd, name, &stamp(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err(path, format!("set times: {e}")))
    }

    /// Sets directory times, deepest first.
    pub fn finish(mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dir_times);
        for (path, mtime) in dirs.iter().rev() {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            // A directory replaced later in the stream is simply gone.
            if let Ok(fd) =
                rustix::fs::openat2(&self.root, path.as_slice(), flags, Mode::empty(), RESOLVE)
            {
                rustix::fs::futimens(&fd, &stamp(*mtime))
                    .map_err(|e| self.err(path, format!("set times: {e}")))?;
            }
        }
        Ok(())
    }
}

/// Overlay's own xattrs may only come from whiteout handling: a layer
/// that sets them could redirect lookups in the merged tree.
fn allowed_xattr(k: &[u8]) -> bool {
    !berth_base::rootless::is_overlay_xattr(k)
}

fn stamp(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// A relative, normalised path: `./` and empty components dropped,
/// absolute paths and `..` refused.
pub fn clean_path(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    if raw.contains(&0) {
        return Err("NUL in path".into());
    }
    if raw.len() > MAX_PATH {
        return Err(format!("path longer than {MAX_PATH} bytes"));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut depth = 0;
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err("path contains '..'".into()),
            c if c.len() > 255 => return Err("a path component is longer than 255 bytes".into()),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
                depth += 1;
            }
        }
    }
    if depth > MAX_DEPTH {
        return Err(format!(
            "nested {depth} levels deep; more than {MAX_DEPTH} are refused"
        ));
    }
    Ok(out)
}

/// Unpacks an uncompressed tar stream into `dir`. Returns the reader
/// positioned after the archive's end marker (with any bytes read ahead).
pub fn unpack_tar<R: Read>(
    reader: R,
    dir: &Path,
    layer: &str,
) -> Result<io::Chain<io::Cursor<Vec<u8>>, R>> {
    unpack_tar_capped(reader, dir, layer, u64::MAX)
}

/// `unpack_tar`, writing at most `max_bytes` of file data.
pub fn unpack_tar_capped<R: Read>(
    reader: R,
    dir: &Path,
    layer: &str,
    max_bytes: u64,
) -> Result<io::Chain<io::Cursor<Vec<u8>>, R>> {
    let mut w = LayerWriter::new(dir, layer)?;
    w.max_bytes = max_bytes;
    let mut archive = tar::Archive::new(TarGuard::new(reader));
    let res = write_entries(&mut archive, &mut w, layer);
    let guard = archive.into_inner();
    // The guard's reason is the real one; the tar crate only saw an error.
    if let Some(why) = guard.refusal() {
        return Err(Error::Layer {
            layer: layer.to_string(),
            entry: String::new(),
            why: why.to_string(),
        });
    }
    res?;
    w.finish()?;
    Ok(guard.into_inner())
}

fn write_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    w: &mut LayerWriter,
    layer: &str,
) -> Result<()> {
    let bad = |why: String| Error::Layer {
        layer: layer.to_string(),
        entry: String::new(),
        why,
    };
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar stream: {e}")))?;
    for entry in entries {
        let mut e = entry.map_err(|e| {
            bad(format!(
                "malformed tar stream after {} entries: {e}",
                w.entries
            ))
        })?;
        let path = e.path_bytes().into_owned();
        let (meta, skip) = meta_of(&mut e).map_err(|why| Error::Layer {
            layer: layer.to_string(),
            entry: String::from_utf8_lossy(&path).into_owned(),
            why,
        })?;
        if skip {
            continue;
        }
        w.entry(&path, &meta, &mut e)?;
    }
    Ok(())
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) -> rustix::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// chmod of `name` in `dir` without following a symlink there: opened as
/// O_PATH | O_NOFOLLOW, checked, and changed through /proc/self/fd (an
/// O_PATH descriptor cannot be fchmod'ed, and fchmodat's
/// AT_SYMLINK_NOFOLLOW needs fchmodat2, Linux 6.6).
fn chmod_nofollow(dir: &OwnedFd, name: &[u8], mode: u32) -> rustix::io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Err(Errno::LOOP);
    }
    let p = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    rustix::fs::chmod(p.as_str(), Mode::from_raw_mode(mode))
}

/// The metadata of a tar entry; `true` for headers that create nothing.
fn meta_of<R: Read>(e: &mut tar::Entry<'_, R>) -> Result<(Meta, bool), String> {
    let h = e.header();
    let et = h.entry_type();
    let num = |r: io::Result<u64>, what: &str| r.map_err(|err| format!("bad {what} field: {err}"));
    let dev = |r: io::Result<Option<u32>>| {
        r.map_err(|err| format!("bad device number: {err}"))
            .map(|v| v.unwrap_or(0))
    };
    let kind = match et {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            Kind::File
        }
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink(
            e.link_name_bytes()
                .ok_or("symlink without a target")?
                .into_owned(),
        ),
        tar::EntryType::Link => Kind::Hardlink(
            e.link_name_bytes()
                .ok_or("hardlink without a target")?
                .into_owned(),
        ),
        tar::EntryType::Char => Kind::Char(dev(h.device_major())?, dev(h.device_minor())?),
        tar::EntryType::Block => Kind::Block(dev(h.device_major())?, dev(h.device_minor())?),
        tar::EntryType::Fifo => Kind::Fifo,
        tar::EntryType::XGlobalHeader => {
            return Ok((empty_meta(), true));
        }
        other => {
            return Err(format!(
                "unsupported tar entry type {:?}",
                other.as_byte() as char
            ));
        }
    };
    let mode = num(h.mode().map(u64::from), "mode")? as u32;
    let mut uid = num(h.uid(), "uid")?;
    let mut gid = num(h.gid(), "gid")?;
    let mtime = num(h.mtime(), "mtime")? as i64;
    let size = e.size();
    let mut xattrs = Vec::new();
    if let Some(pax) = e
        .pax_extensions()
        .map_err(|err| format!("bad PAX header: {err}"))?
    {
        for ext in pax {
            let ext = ext.map_err(|err| format!("bad PAX record: {err}"))?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            } else if key == b"uid" || key == b"gid" {
                let v = std::str::from_utf8(ext.value_bytes())
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or("bad PAX uid/gid")?;
                if key == b"uid" { uid = v } else { gid = v }
            }
        }
    }
    if uid > u32::MAX as u64 || gid > u32::MAX as u64 {
        return Err(format!("owner {uid}:{gid} out of range"));
    }
    Ok((
        Meta {
            kind,
            mode,
            uid: uid as u32,
            gid: gid as u32,
            mtime,
            xattrs,
            size,
        },
        false,
    ))
}

fn empty_meta() -> Meta {
    Meta {
        kind: Kind::Dir,
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: Vec::new(),
        size: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        assert_eq!(clean_path(b"./a//b/./c").unwrap(), b"a/b/c");
        assert!(clean_path("d/".repeat(MAX_DEPTH).as_bytes()).is_ok());
        assert!(clean_path("d/".repeat(MAX_DEPTH + 1).as_bytes()).is_err());
        assert_eq!(clean_path(b"./").unwrap(), b"");
        assert!(clean_path(b"/etc/passwd").is_err());
        assert!(clean_path(b"a/../../b").is_err());
        assert!(clean_path(b"..").is_err());
    }

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn header() -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }

    #[test]
    fn runs_of_zeros_become_holes() {
        let d = tempfile::tempdir().unwrap();
        // 64 MiB of zeros around a little data, and a zero tail.
        let mut data = vec![0u8; 64 << 20];
        data[32 << 20..(32 << 20) + 5].copy_from_slice(b"hello");
        let t = tar_of(|b| file(b, "sparse", 0o644, &data));
        unpack_tar(&t[..], d.path(), "test").unwrap();
        let p = d.path().join("sparse");
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.len(), 64 << 20);
        let allocated = std::os::unix::fs::MetadataExt::blocks(&md) * 512;
        assert!(allocated <= 1 << 20, "{allocated} bytes allocated");
        assert_eq!(std::fs::read(&p).unwrap(), data);
    }

    #[test]
    fn file_data_past_the_layer_cap_is_refused_with_the_limit() {
        let d = tempfile::tempdir().unwrap();
        // Zeros are written as holes, and still count at their size.
        let t = tar_of(|b| {
            file(b, "a", 0o644, &vec![0u8; 48 << 10]);
            file(b, "b", 0o644, &vec![0u8; 48 << 10]);
        });
        unpack_tar_capped(&t[..], d.path(), "capped", 96 << 10).unwrap();
        let d = tempfile::tempdir().unwrap();
        let err = unpack_tar_capped(&t[..], d.path(), "capped", 64 << 10)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer capped") && err.contains("\"b\"") && err.contains("64 KiB"),
            "{err}"
        );
    }

    #[test]
    fn trees_deeper_than_the_cap_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let ok = format!("{}f", "d/".repeat(MAX_DEPTH - 1));
        let deep = format!("{}f", "d/".repeat(MAX_DEPTH));
        let t = tar_of(|b| {
            file(b, &ok, 0o644, b"fine");
            file(b, &deep, 0o644, b"too deep");
        });
        let err = unpack_tar(&t[..], d.path(), "deep")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer deep") && err.contains(&format!("more than {MAX_DEPTH}")),
            "{err}"
        );
        assert_eq!(
            std::fs::read(d.path().join(&ok)).unwrap(),
            b"fine",
            "the deepest allowed entry was written"
        );
        crate::remove::remove_tree(&d.path().join("d")).unwrap();
    }

    #[test]
    fn modes_are_never_set_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::write(&outside, b"x").unwrap();
        std::fs::set_permissions(
            &outside,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let layer = d.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        let t = tar_of(|b| {
            let mut h = header();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o4777);
            h.set_size(0);
            b.append_link(&mut h, "link", &outside).unwrap();
        });
        unpack_tar(&t[..], &layer, "test").unwrap();
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
                & 0o7777
        };
        assert_eq!(mode(&outside), 0o600);
        // The helper itself refuses a symlink and changes a device node.
        let dir =
            rustix::fs::open(&layer, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert_eq!(chmod_nofollow(&dir, b"link", 0o777), Err(Errno::LOOP));
        assert_eq!(mode(&outside), 0o600);
        rustix::fs::mknodat(&dir, "fifo", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        chmod_nofollow(&dir, b"fifo", 0o640).unwrap();
        assert_eq!(mode(&layer.join("fifo")), 0o640);
    }
}
