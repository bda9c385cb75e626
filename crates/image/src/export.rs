//! An overlay upper directory (or a list of changes found by walking a
//! root file system) becomes a layer: in one walk, an OCI layer
//! tar (whiteouts and opaque directories in the tar form) streamed through
//! the diffID hash, the compressor and the blob hash into a blob file, and
//! the same entries written into a new layer directory of the store with
//! the writer that unpacks pulled layers. The layer is not unpacked again
//! from the tar, and the upper dir is not moved: a running container keeps
//! it, and the writer stores only what a layer may hold (no overlay
//! xattrs of the container's making, no redirects).
//!
//! The tar is deterministic for a given tree: entries in the walk's order,
//! no access or change times, owners by number only. Hardlinks within the
//! layer are tar hardlinks to the first name in that order.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::digest::{Digest, Hasher};
use crate::error::{Context, Error, Result};
use crate::store::{LayerInfo, Store};
use crate::unpack::{Kind, LayerWriter, Meta};
use crate::upper::{Node, NodeKind, UpperDir};

/// How a new layer blob is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// gzip (level 1: a commit is waited for; the size is a few percent
    /// larger than at the default level).
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    pub fn parse(s: &str) -> Result<Compression> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            _ => Err(Error::invalid(
                format!("compression {s:?}"),
                "expected gzip or zstd",
            )),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => crate::manifest::OCI_LAYER_GZIP,
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub compression: Compression,
    /// Paths (as the container sees them, `/etc/hosts`) left out with
    /// everything under them: mount points the runtime made, which are
    /// not the container's changes.
    pub exclude: Vec<String>,
}

/// Writes what it is given to the blob file, hashing it.
struct BlobOut {
    file: BufWriter<File>,
    hasher: Hasher,
}

impl Write for BlobOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

enum Compressor {
    Gzip(flate2::write::GzEncoder<BlobOut>),
    Zstd(zstd::stream::write::Encoder<'static, BlobOut>),
}

impl Compressor {
    fn finish(self) -> io::Result<BlobOut> {
        match self {
            Compressor::Gzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

/// The tar stream: hashed for the diffID, then compressed.
struct TarOut {
    inner: Compressor,
    hasher: Hasher,
}

impl Write for TarOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.inner {
            Compressor::Gzip(e) => e.write(buf)?,
            Compressor::Zstd(e) => e.write(buf)?,
        };
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Compressor::Gzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}

/// Exactly `left` bytes of a file that may change under us (a container
/// not paused): fewer is an error, more is not read.
struct Exactly<'a> {
    file: &'a mut File,
    left: u64,
    what: &'a str,
}

impl Read for Exactly<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} shrank while being read",
                self.what
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Makes a layer of `upper` on top of the layer chain `parent` (its top
/// chain ID): stores the blob and the layer directory and returns the
/// layer as an image records it. The caller holds the store's shared
/// lock, so garbage collection cannot take the blob or the layer before
/// something references them.
pub fn export_layer(
    store: &Store,
    upper: &Path,
    parent: Option<&Digest>,
    opts: &ExportOptions,
) -> Result<LayerInfo> {
    let src = UpperDir::open(upper)?;
    let exclude: Vec<Vec<u8>> = opts
        .exclude
        .iter()
        .map(|e| crate::upper::rel_path(e))
        .collect();
    let mut sink = LayerSink::new(store, opts.compression)?;
    let res = src.walk(&exclude, true, |node| sink.emit(&src, node));
    match res {
        Ok(()) => sink.finish(parent),
        Err(e) => {
            sink.discard();
            Err(e)
        }
    }
}

/// Makes a layer of `changes`, entries of the tree `root` (a walked root
/// file system rather than an overlay upper dir: what a step changed, as
/// its walks before and after found), on top of `parent`. `changes` come
/// in the order a walk gives (each directory before its contents, names
/// in byte order); whiteouts among them delete names of lower layers.
/// The same writer as `export_layer`'s: one tar, one layer directory.
pub fn export_changes(
    store: &Store,
    root: &UpperDir,
    changes: &[Node],
    parent: Option<&Digest>,
    compression: Compression,
) -> Result<LayerInfo> {
    let mut sink = LayerSink::new(store, compression)?;
    for node in changes {
        if let Err(e) = sink.emit(root, node) {
            sink.discard();
            return Err(e);
        }
    }
    sink.finish(parent)
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A layer being written: each entry into the tar stream (hashed for the
/// diffID, compressed, hashed again into a blob file) and into a new
/// layer directory, both temporary until `finish` stores them.
struct LayerSink<'s> {
    store: &'s Store,
    compression: Compression,
    tmp_layer: std::path::PathBuf,
    tmp_blob: std::path::PathBuf,
    layer: LayerWriter,
    tar: tar::Builder<TarOut>,
    /// The first name of each hardlinked inode written.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<'s> LayerSink<'s> {
    fn new(store: &'s Store, compression: Compression) -> Result<LayerSink<'s>> {
        let tmp_layer = store
            .root
            .join("layers")
            .join(format!("export.tmp-{}", unique()));
        let tmp_blob = store.temp_path("export-blob");
        let res = Self::open(&tmp_layer, &tmp_blob, compression);
        match res {
            Ok((layer, tar)) => Ok(LayerSink {
                store,
                compression,
                tmp_layer,
                tmp_blob,
                layer,
                tar,
                links: HashMap::new(),
            }),
            Err(e) => {
                let _ = crate::remove::remove_tree(&tmp_layer);
                let _ = std::fs::remove_file(&tmp_blob);
                Err(e)
            }
        }
    }

    fn open(
        tmp_layer: &Path,
        tmp_blob: &Path,
        compression: Compression,
    ) -> Result<(LayerWriter, tar::Builder<TarOut>)> {
        let diff = tmp_layer.join("diff");
        std::fs::create_dir_all(&diff).ctx(|| format!("create {}", diff.display()))?;
        let layer = LayerWriter::new(&diff, "(new layer)")?;
        let file = File::create(tmp_blob).ctx(|| format!("create {}", tmp_blob.display()))?;
        let out = BlobOut {
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: Hasher::default(),
        };
        let inner = match compression {
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::fast(),
            )),
            Compression::Zstd => Compressor::Zstd(
                zstd::stream::write::Encoder::new(out, 3).ctx(|| "start zstd".into())?,
            ),
        };
        let tar = tar::Builder::new(TarOut {
            inner,
            hasher: Hasher::default(),
        });
        Ok((layer, tar))
    }

    fn emit(&mut self, src: &UpperDir, node: &Node) -> Result<()> {
        emit(src, node, &mut self.tar, &mut self.layer, &mut self.links)
    }

    /// Drops what was written (an error on the way).
    fn discard(self) {
        let _ = crate::remove::remove_tree(&self.tmp_layer);
        let _ = std::fs::remove_file(&self.tmp_blob);
    }

    fn finish(self, parent: Option<&Digest>) -> Result<LayerInfo> {
        let (tmp_layer, tmp_blob) = (self.tmp_layer.clone(), self.tmp_blob.clone());
        let res = self.store_it(parent);
        if res.is_err() {
            let _ = crate::remove::remove_tree(&tmp_layer);
            let _ = std::fs::remove_file(&tmp_blob);
        }
        res
    }

    /// Ends the tar and the layer directory and moves both into the store.
    fn store_it(self, parent: Option<&Digest>) -> Result<LayerInfo> {
        let LayerSink {
            store,
            compression,
            tmp_layer,
            tmp_blob,
            layer,
            tar,
            ..
        } = self;
        layer.finish()?;
        let tar_out = tar.into_inner().ctx(|| "finish the layer tar".into())?;
        let diff_id = tar_out.hasher.clone().finish();
        let unpacked = tar_out.hasher.len;
        let mut blob = tar_out
            .inner
            .finish()
            .ctx(|| "finish compressing the layer".into())?;
        blob.file
            .flush()
            .ctx(|| format!("write {}", tmp_blob.display()))?;
        let digest = blob.hasher.clone().finish();
        let size = blob.hasher.len;
        let file = blob
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx(|| format!("write {}", tmp_blob.display()))?;
        file.sync_all()
            .ctx(|| format!("sync {}", tmp_blob.display()))?;
        let chain_id = match parent {
            None => diff_id.clone(),
            Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
        };
        {
            let _blob_lock = store.lock_blob(&digest)?;
            if store.has_blob(&digest) {
                std::fs::remove_file(&tmp_blob).ctx(|| format!("remove {}", tmp_blob.display()))?;
            } else {
                store.commit_file(&tmp_blob, &digest)?;
            }
        }
        // Another layer with the same chain ID has the same content: ours is
        // dropped then.
        store.commit_layer(&tmp_layer, &chain_id, unpacked)?;
        Ok(LayerInfo {
            digest,
            size,
            media_type: compression.media_type().to_string(),
            diff_id,
            chain_id,
            unpacked,
        })
    }
}

fn header(node: &Node, et: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(et);
    h.set_mode(node.mode);
    h.set_uid(node.uid as u64);
    h.set_gid(node.gid as u64);
    h.set_mtime(node.mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn meta(node: &Node, kind: Kind) -> Meta {
    Meta {
        kind,
        mode: node.mode,
        uid: node.uid,
        gid: node.gid,
        mtime: node.mtime,
        xattrs: node.xattrs.clone(),
        size: 0,
    }
}

/// `dir/.wh.name` for `dir/name`; `dir/.wh..wh..opq` for `marker`.
fn whiteout_name(path: &[u8], opaque_marker: bool) -> Vec<u8> {
    if opaque_marker {
        let mut p = path.to_vec();
        p.extend_from_slice(b"/.wh..wh..opq");
        return p;
    }
    let mut p = path.to_vec();
    let at = p.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    p.splice(at..at, b".wh.".iter().copied());
    p
}

fn os(p: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(p))
}

fn emit<W: Write>(
    src: &UpperDir,
    node: &Node,
    tar: &mut tar::Builder<W>,
    layer: &mut LayerWriter,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> Result<()> {
    let what = node.abs();
    let werr = |e: io::Error| Error::invalid(format!("layer tar entry {what}"), e);
    let pax = |tar: &mut tar::Builder<W>| -> io::Result<()> {
        if node.xattrs.is_empty() {
            return Ok(());
        }
        let recs: Vec<(String, &[u8])> = node
            .xattrs
            .iter()
            .map(|(k, v)| {
                (
                    format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
                    v.as_slice(),
                )
            })
            .collect();
        tar.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
    };
    match &node.kind {
        NodeKind::Socket => {}
        NodeKind::Whiteout => {
            // As docker and podman write them: a regular file with the
            // whiteout's permission bits and owner.
            let name = whiteout_name(&node.path, false);
            let mut h = header(node, tar::EntryType::Regular);
            h.set_mode(node.mode & 0o777);
            tar.append_data(&mut h, os(&name), io::empty())
                .map_err(werr)?;
            layer.entry(&name, &meta(node, Kind::File), &mut io::empty())?;
        }
        NodeKind::Dir { opaque } => {
            pax(tar).map_err(werr)?;
            let mut h = header(node, tar::EntryType::Directory);
            tar.append_data(&mut h, os(&node.path), io::empty())
                .map_err(werr)?;
            layer.entry(&node.path, &meta(node, Kind::Dir), &mut io::empty())?;
            if *opaque {
                let name = whiteout_name(&node.path, true);
                let mut h = header(node, tar::EntryType::Regular);
                h.set_mode(node.mode & 0o777);
                tar.append_data(&mut h, os(&name), io::empty())
                    .map_err(werr)?;
                layer.entry(&name, &meta(node, Kind::File), &mut io::empty())?;
            }
        }
        NodeKind::File => {
            if node.nlink > 1 {
                if let Some(first) = links.get(&(node.dev, node.ino)) {
                    let mut h = header(node, tar::EntryType::Link);
                    tar.append_link(&mut h, os(&node.path), os(first))
                        .map_err(werr)?;
                    layer.entry(
                        &node.path,
                        &meta(node, Kind::Hardlink(first.clone())),
                        &mut io::empty(),
                    )?;
                    return Ok(());
                }
                links.insert((node.dev, node.ino), node.path.clone());
            }
            pax(tar).map_err(werr)?;
            let mut h = header(node, tar::EntryType::Regular);
            h.set_size(node.size);
            let mut f = src.open_file(node)?;
            tar.append_data(
                &mut h,
                os(&node.path),
                Exactly {
                    file: &mut f,
                    left: node.size,
                    what: &what,
                },
            )
            .map_err(werr)?;
            let mut f = src.open_file(node)?;
            let mut m = meta(node, Kind::File);
            m.size = node.size;
            layer.entry(
                &node.path,
                &m,
                &mut Exactly {
                    file: &mut f,
                    left: node.size,
                    what: &what,
                },
            )?;
        }
        NodeKind::Symlink(target) => {
            pax(tar).map_err(werr)?;
            let mut h = header(node, tar::EntryType::Symlink);
            tar.append_link(&mut h, os(&node.path), os(target))
                .map_err(werr)?;
            layer.entry(
                &node.path,
                &meta(node, Kind::Symlink(target.clone())),
                &mut io::empty(),
            )?;
        }
        NodeKind::Char(ma, mi) | NodeKind::Block(ma, mi) => {
            let (et, kind) = if matches!(node.kind, NodeKind::Char(..)) {
                (tar::EntryType::Char, Kind::Char(*ma, *mi))
            } else {
                (tar::EntryType::Block, Kind::Block(*ma, *mi))
            };
            pax(tar).map_err(werr)?;
            let mut h = header(node, et);
            h.set_device_major(*ma).map_err(werr)?;
            h.set_device_minor(*mi).map_err(werr)?;
            tar.append_data(&mut h, os(&node.path), io::empty())
                .map_err(werr)?;
            layer.entry(&node.path, &meta(node, kind), &mut io::empty())?;
        }
        NodeKind::Fifo => {
            pax(tar).map_err(werr)?;
            let mut h = header(node, tar::EntryType::Fifo);
            tar.append_data(&mut h, os(&node.path), io::empty())
                .map_err(werr)?;
            layer.entry(&node.path, &meta(node, Kind::Fifo), &mut io::empty())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};

    fn mknod(path: &Path, ft: rustix::fs::FileType, mode: u32, dev: u64) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            ft,
            rustix::fs::Mode::from_raw_mode(mode),
            dev,
        )
        .unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// An upper dir as overlayfs leaves it after a container's changes.
    fn upper_dir(at: &Path) {
        use rustix::fs::{FileType, XattrFlags};
        std::fs::create_dir_all(at.join("etc")).unwrap();
        std::fs::write(at.join("etc/conf"), b"changed\n").unwrap();
        std::fs::set_permissions(at.join("etc/conf"), PermissionsExt::from_mode(0o640)).unwrap();
        std::os::unix::fs::lchown(at.join("etc/conf"), Some(1000), Some(2000)).unwrap();
        rustix::fs::setxattr(
            at.join("etc/conf"),
            "user.origin",
            b"test",
            XattrFlags::empty(),
        )
        .unwrap();
        // overlayfs' own bookkeeping must not reach the layer.
        rustix::fs::setxattr(
            at.join("etc"),
            "trusted.overlay.impure",
            b"y",
            XattrFlags::empty(),
        )
        .unwrap();
        // Deleted: a file and a directory.
        mknod(&at.join("gone"), FileType::CharacterDevice, 0, 0);
        mknod(&at.join("etc/old"), FileType::CharacterDevice, 0, 0);
        // Emptied and made again (rm -rf; mkdir): opaque.
        std::fs::create_dir(at.join("opq")).unwrap();
        rustix::fs::setxattr(
            at.join("opq"),
            "trusted.overlay.opaque",
            b"y",
            XattrFlags::empty(),
        )
        .unwrap();
        std::fs::write(at.join("opq/new"), b"n").unwrap();
        // Hardlinks, symlinks out of the tree, a FIFO, a device.
        std::fs::write(at.join("a-first"), b"linked").unwrap();
        std::fs::hard_link(at.join("a-first"), at.join("b-second")).unwrap();
        symlink("/etc/passwd", at.join("abs-link")).unwrap();
        symlink("../../../../..", at.join("up-link")).unwrap();
        symlink("/", at.join("root-dir-link")).unwrap();
        mknod(&at.join("fifo"), FileType::Fifo, 0o620, 0);
        mknod(
            &at.join("null"),
            FileType::CharacterDevice,
            0o666,
            rustix::fs::makedev(1, 3),
        );
    }

    struct Entry {
        path: String,
        kind: tar::EntryType,
        mode: u32,
        owner: (u64, u64),
        link: Option<String>,
        xattrs: Vec<(String, Vec<u8>)>,
    }

    fn entries(tar_bytes: &[u8]) -> Vec<Entry> {
        let mut a = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut xattrs = Vec::new();
            if let Some(pax) = e.pax_extensions().unwrap() {
                for x in pax {
                    let x = x.unwrap();
                    if let Some(k) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                        xattrs.push((k.to_string(), x.value_bytes().to_vec()));
                    }
                }
            }
            let h = e.header();
            out.push(Entry {
                path: String::from_utf8(e.path_bytes().to_vec()).unwrap(),
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                owner: (h.uid().unwrap(), h.gid().unwrap()),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.to_vec()).unwrap()),
                xattrs,
            });
        }
        out
    }

    fn decompress(blob: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::archive::decoder(std::io::BufReader::new(std::io::Cursor::new(blob.to_vec())))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn an_upper_dir_becomes_a_layer_tar_and_a_layer() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        let upper = d.path().join("upper");
        upper_dir(&upper);
        let parent = Digest::of(b"parent chain");
        let info = export_layer(&store, &upper, Some(&parent), &ExportOptions::default()).unwrap();

        let blob = std::fs::read(store.blob_path(&info.digest)).unwrap();
        assert_eq!(Digest::of(&blob), info.digest);
        assert_eq!(blob.len() as u64, info.size);
        assert_eq!(info.media_type, crate::manifest::OCI_LAYER_GZIP);
        let tar_bytes = decompress(&blob);
        assert_eq!(Digest::of(&tar_bytes), info.diff_id, "diffID of the tar");
        assert_eq!(tar_bytes.len() as u64, info.unpacked);
        assert_eq!(
            info.chain_id,
            Digest::of(format!("{parent} {}", info.diff_id).as_bytes())
        );

        let es = entries(&tar_bytes);
        let names: Vec<&str> = es.iter().map(|e| e.path.as_str()).collect();
        // Directories before their contents, names in byte order; the
        // whiteouts where the names they delete were.
        assert_eq!(
            names,
            [
                "a-first",
                "abs-link",
                "b-second",
                "etc",
                "etc/conf",
                "etc/.wh.old",
                "fifo",
                ".wh.gone",
                "null",
                "opq",
                "opq/.wh..wh..opq",
                "opq/new",
                "root-dir-link",
                "up-link",
            ]
        );
        let by = |p: &str| es.iter().find(|e| e.path == p).unwrap();
        use tar::EntryType as T;
        assert_eq!(by("a-first").kind, T::Regular);
        assert_eq!(by("b-second").kind, T::Link);
        assert_eq!(by("b-second").link.as_deref(), Some("a-first"));
        assert_eq!(by("abs-link").kind, T::Symlink);
        assert_eq!(by("abs-link").link.as_deref(), Some("/etc/passwd"));
        assert_eq!(by("up-link").link.as_deref(), Some("../../../../.."));
        assert_eq!(by("root-dir-link").kind, T::Symlink, "never followed");
        assert_eq!(by("etc/conf").mode, 0o640);
        assert_eq!(by("etc/conf").owner, (1000, 2000));
        assert_eq!(
            by("etc/conf").xattrs,
            [("user.origin".to_string(), b"test".to_vec())]
        );
        assert!(by("etc").xattrs.is_empty(), "overlay's own xattrs stay out");
        assert_eq!(by(".wh.gone").kind, T::Regular);
        assert_eq!(by(".wh.gone").mode, 0);
        assert_eq!(by("opq/.wh..wh..opq").kind, T::Regular);
        assert_eq!(by("fifo").kind, T::Fifo);
        assert_eq!(by("fifo").mode, 0o620);
        assert_eq!(by("null").kind, T::Char);

        // The layer directory is what unpacking that tar gives: overlay's
        // whiteouts and opaque marker, the hardlink, the symlinks as they
        // were.
        let diff = store.layer_diff(&info.chain_id);
        let md = |p: &str| std::fs::symlink_metadata(diff.join(p)).unwrap();
        assert!(md("gone").file_type().is_char_device() && md("gone").rdev() == 0);
        assert!(md("etc/old").file_type().is_char_device());
        let mut v = [0u8; 4];
        let n = rustix::fs::getxattr(diff.join("opq"), "trusted.overlay.opaque", &mut v).unwrap();
        assert_eq!(&v[..n], b"y");
        assert!(rustix::fs::getxattr(diff.join("etc"), "trusted.overlay.impure", &mut v).is_err());
        assert_eq!(md("a-first").ino(), md("b-second").ino());
        assert_eq!(
            std::fs::read_link(diff.join("root-dir-link")).unwrap(),
            Path::new("/")
        );
        assert_eq!(std::fs::read(diff.join("etc/conf")).unwrap(), b"changed\n");
        assert_eq!(md("etc/conf").uid(), 1000);
        assert_eq!(store.layer_size(&info.chain_id), info.unpacked);

        // The same tree gives the same layer; zstd on request.
        let again = export_layer(&store, &upper, Some(&parent), &ExportOptions::default()).unwrap();
        assert_eq!(again.diff_id, info.diff_id);
        assert_eq!(again.digest, info.digest);
        let z = export_layer(
            &store,
            &upper,
            None,
            &ExportOptions {
                compression: Compression::Zstd,
                exclude: vec!["/etc/conf".into(), "/opq".into()],
            },
        )
        .unwrap();
        let blob = std::fs::read(store.blob_path(&z.digest)).unwrap();
        assert!(blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
        let names: Vec<String> = entries(&decompress(&blob))
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert!(names.contains(&"etc/.wh.old".to_string()));
        assert!(
            !names
                .iter()
                .any(|n| n == "etc/conf" || n.starts_with("opq")),
            "{names:?}"
        );
        assert_eq!(z.chain_id, z.diff_id);
        // Nothing left in tmp/ or as a temporary layer.
        assert_eq!(
            std::fs::read_dir(store.root.join("tmp")).unwrap().count(),
            0
        );
        assert!(
            std::fs::read_dir(store.root.join("layers"))
                .unwrap()
                .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp-"))
        );
    }

    #[test]
    fn a_file_swapped_for_a_symlink_or_fifo_is_not_read() {
        let d = tempfile::tempdir().unwrap();
        let upper = d.path().join("upper");
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::write(upper.join("f"), b"data").unwrap();
        let src = UpperDir::open(&upper).unwrap();
        let mut nodes = Vec::new();
        src.walk(&[], false, |n| {
            nodes.push(n.clone());
            Ok(())
        })
        .unwrap();
        // Swapped after the listing, as a container could.
        std::fs::remove_file(upper.join("f")).unwrap();
        symlink("/etc/shadow", upper.join("f")).unwrap();
        let err = src.open_file(&nodes[0]).unwrap_err().to_string();
        assert!(err.contains("/f") || err.contains("f in"), "{err}");
        std::fs::remove_file(upper.join("f")).unwrap();
        mknod(&upper.join("f"), rustix::fs::FileType::Fifo, 0o600, 0);
        let err = src.open_file(&nodes[0]).unwrap_err().to_string();
        assert!(err.contains("replaced"), "{err}");
    }
}
