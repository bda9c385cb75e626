//! Where `load` and `import` put blobs before they are known to be good:
//! a private directory under the store's tmp/, one file per blob named by
//! its digest. Nothing enters blobs/ until its image is checked (names,
//! layer count, sizes, digests) and its layers unpacked; a failure leaves
//! nothing behind, as the directory goes when the staging is dropped.
//!
//! Blobs of an OCI layout are opened beneath the layout directory without
//! following any symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
//! must be regular files, and are read up to one byte past their declared
//! size: a link to /dev/zero or /etc/shadow, a FIFO or a blob longer than
//! its descriptor says is refused before it is copied.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::digest::{Digest, Hasher};
use crate::error::{Context, Error, Result};
use crate::store::Store;

/// Manifests, indexes, configs and docker-archive manifest.json files are
/// read whole into memory; real ones are kilobytes. The registry path
/// caps manifests the same way.
pub const MAX_METADATA: u64 = crate::client::MAX_MANIFEST as u64;

pub struct Staging {
    dir: PathBuf,
    /// Size of each staged blob.
    staged: HashMap<Digest, u64>,
}

impl Staging {
    pub fn new(store: &Store) -> Result<Staging> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = store.temp_path("load");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .ctx(|| format!("create {}", dir.display()))?;
        Ok(Staging {
            dir,
            staged: HashMap::new(),
        })
    }

    fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.hex())
    }

    /// Copies `src` in, hashing on the way; returns its digest and size.
    /// Callers bound `src` (one byte past what they accept).
    pub fn add(&mut self, src: &mut dyn Read) -> Result<(Digest, u64)> {
        let tmp = self.dir.join(format!("incoming-{}", self.staged.len()));
        let res = copy_hashing(src, &tmp);
        let (d, len) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, self.path(&d)).ctx(|| format!("rename {}", tmp.display()))?;
        self.staged.insert(d.clone(), len);
        Ok((d, len))
    }

    /// The size of a staged blob.
    pub fn size(&self, d: &Digest) -> Option<u64> {
        self.staged.get(d).copied()
    }

    /// A staged blob, or the store's copy of it.
    pub fn open(&self, store: &Store, d: &Digest) -> Result<File> {
        let p = if self.staged.contains_key(d) {
            self.path(d)
        } else {
            store.blob_path(d)
        };
        File::open(&p).ctx(|| format!("open blob {d}"))
    }

    /// A staged blob (or the store's copy) read whole, refused when larger
    /// than `MAX_METADATA`.
    pub fn read_metadata(&self, store: &Store, d: &Digest, what: &str) -> Result<Vec<u8>> {
        let f = self.open(store, d)?;
        let mut buf = Vec::new();
        f.take(MAX_METADATA + 1)
            .read_to_end(&mut buf)
            .ctx(|| format!("read {what}"))?;
        if buf.len() as u64 > MAX_METADATA {
            return Err(Error::invalid(
                what,
                format!(
                    "larger than {}; more is refused for a manifest or config",
                    crate::limits::human(MAX_METADATA)
                ),
            ));
        }
        Ok(buf)
    }

    /// Moves a staged blob into the store (if the store has no copy yet).
    pub fn commit(&mut self, store: &Store, d: &Digest) -> Result<()> {
        if self.staged.remove(d).is_none() || store.has_blob(d) {
            return Ok(());
        }
        store.commit_file(&self.path(d), d)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = crate::remove::remove_tree(&self.dir);
    }
}

fn copy_hashing(src: &mut dyn Read, dest: &Path) -> Result<(Digest, u64)> {
    let mut out = File::create(dest).ctx(|| format!("create {}", dest.display()))?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match src.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::invalid("read input", e)),
        };
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .ctx(|| format!("write {}", dest.display()))?;
    }
    out.sync_all().ctx(|| format!("sync {}", dest.display()))?;
    let len = h.len;
    Ok((h.finish(), len))
}

/// An OCI layout directory, opened once; files in it are only reached
/// beneath it.
pub struct LayoutDir {
    fd: OwnedFd,
    pub what: String,
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

impl LayoutDir {
    pub fn open(dir: &Path) -> Result<LayoutDir> {
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {}", dir.display()))?;
        Ok(LayoutDir {
            fd,
            what: format!("OCI layout {}", dir.display()),
        })
    }

    /// Opens `rel` for reading: no symlink anywhere in its path, nothing
    /// outside the layout, and only a regular file. O_NONBLOCK keeps a
    /// FIFO from blocking the open (it is refused right after).
    /// `label` names the file in errors (`blob sha256:...`).
    pub fn open_file(&self, rel: &str, label: &str) -> Result<File> {
        let bad = |why: String| Error::invalid(format!("{}: {label}", self.what), why);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), RESOLVE).map_err(
            |e| match e {
                Errno::LOOP | Errno::XDEV => {
                    bad("is a symlink or goes through one; blobs are never followed".into())
                }
                Errno::NOENT => bad("missing".into()),
                e => bad(format!("cannot open: {e}")),
            },
        )?;
        let st = rustix::fs::fstat(&fd).map_err(|e| bad(format!("stat: {e}")))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(bad(format!(
                "is not a regular file but a {}",
                kind_name(kind)
            )));
        }
        Ok(File::from(fd))
    }

    /// Stages blob `d` of declared `size`: refused when `size` is over
    /// `max`, when the file is not a plain file, or when its length or
    /// digest differ from the descriptor's.
    pub fn stage_blob(
        &self,
        staging: &mut Staging,
        d: &Digest,
        size: u64,
        max: Option<u64>,
    ) -> Result<()> {
        self.stage_blob_at(staging, &format!("blobs/sha256/{}", d.hex()), d, size, max)
    }

    /// `stage_blob` of the file at `rel` (a docker dir names blobs by their
    /// hex digest alone).
    pub fn stage_blob_at(
        &self,
        staging: &mut Staging,
        rel: &str,
        d: &Digest,
        size: u64,
        max: Option<u64>,
    ) -> Result<()> {
        let what = format!("{}: blob {d}", self.what);
        if let Some(max) = max.filter(|&m| size > m) {
            return Err(Error::invalid(
                what,
                format!(
                    "declares {size} bytes; more than {} are refused for a manifest or config",
                    crate::limits::human(max)
                ),
            ));
        }
        if staging.size(d) == Some(size) {
            return Ok(());
        }
        let f = self.open_file(rel, &format!("blob {d}"))?;
        let (got, len) = staging.add(&mut f.take(size.saturating_add(1)))?;
        crate::ingest::check_read(d, size, &got, len, what)
    }

    /// A small file of the layout (index.json) read whole.
    pub fn read_metadata(&self, rel: &str) -> Result<Vec<u8>> {
        let f = self.open_file(rel, rel)?;
        let mut buf = Vec::new();
        f.take(MAX_METADATA + 1)
            .read_to_end(&mut buf)
            .ctx(|| format!("read {}: {rel}", self.what))?;
        if buf.len() as u64 > MAX_METADATA {
            return Err(Error::invalid(
                format!("{}: {rel}", self.what),
                format!("larger than {}", crate::limits::human(MAX_METADATA)),
            ));
        }
        Ok(buf)
    }
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "FIFO",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Directory => "directory",
        FileType::Socket => "socket",
        FileType::Symlink => "symlink",
        _ => "special file",
    }
}
