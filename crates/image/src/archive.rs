//! Images in and out of files: `save` to an OCI layout directory or a
//! docker-archive tarball, `load` from either, and `import` of a rootfs
//! tarball as a one-layer image. Everything that enters the store is
//! hashed on the way in and unpacked with the same safe writer as a pull.
//! Loading and importing are in load.rs.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::json;

use crate::digest::Digest;
use crate::error::{Context, Error, Result};
pub use crate::load::{LoadOptions, Loaded, import, load, load_stream};
use crate::manifest;
use crate::reference::{self, Reference};
use crate::store::{ImageRecord, Store, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OciDir,
    /// An OCI layout as a tar stream (skopeo's and podman's oci-archive).
    OciArchive,
    DockerArchive,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "oci-dir" | "oci" => Ok(Format::OciDir),
            "oci-archive" => Ok(Format::OciArchive),
            "docker-archive" | "docker" => Ok(Format::DockerArchive),
            _ => Err(Error::invalid(
                format!("format {s:?}"),
                "expected oci-dir, oci-archive or docker-archive",
            )),
        }
    }
}

/// Names as stored: a short name becomes `localhost/name:tag`.
pub fn local_name(name: &str) -> Result<String> {
    let p = reference::parse(name)?;
    let r = if p.qualified {
        p.reference
    } else {
        p.reference.with_registry("localhost")
    };
    Ok(r.tagged_or_digested())
}

/// Writes `images` (each with the name to give it) to `out`. Holds the
/// store's shared lock: removal waits, so no blob goes mid-write.
///
/// A tar archive goes to `out` as `write_as_given` writes.
pub fn save(
    store: &Store,
    images: &[(ImageRecord, String)],
    format: Format,
    out: &Path,
) -> Result<()> {
    let _lock = store.lock_shared()?;
    match format {
        Format::OciDir => save_oci(store, images, out),
        Format::DockerArchive | Format::OciArchive => {
            write_as_given(out, |f, what| save_tar(store, images, format, f, what))
        }
    }
}

/// Writes what `write` makes to `out` as the user gave it: a symlink is
/// followed (as docker does); a FIFO, a character device or a socket is
/// written to; a regular file, or a new one, is replaced whole or not at
/// all. Nothing but a regular file is ever replaced: `-o /dev/stdout`
/// writes to stdout rather than over the link. `write` gets the writer and
/// a name for `out` for its errors.
pub fn write_as_given(
    out: &Path,
    mut write: impl FnMut(&mut dyn io::Write, &str) -> Result<()>,
) -> Result<()> {
    match sink(out)? {
        Sink::Stream(mut f) => write(&mut f, &out.display().to_string()),
        Sink::Replace(target) => {
            let what = target.display().to_string();
            // The writer's own error, kept apart from the file's.
            let mut failed = None;
            let written = berth_base::fs::atomic_write_with(&target, 0o666, |f| {
                write(f, &what).map_err(|e| {
                    failed = Some(e);
                    io::Error::other("the output was not written")
                })
            });
            match (written, failed) {
                (_, Some(e)) => Err(e),
                (r, None) => r.ctx(|| format!("write {what}")),
            }
        }
    }
}

/// One of the tar formats, to any writer.
fn save_tar(
    store: &Store,
    images: &[(ImageRecord, String)],
    format: Format,
    out: &mut dyn io::Write,
    what: &str,
) -> Result<()> {
    match format {
        Format::OciArchive => save_oci_archive(store, images, out, what),
        _ => save_docker(store, images, out, what),
    }
}

/// `save` of a docker or OCI archive to a stream (stdout for `-o -`);
/// `what` names it in errors. OCI layouts are directories and cannot go
/// there.
pub fn save_stream(
    store: &Store,
    images: &[(ImageRecord, String)],
    format: Format,
    out: &mut dyn io::Write,
    what: &str,
) -> Result<()> {
    if format == Format::OciDir {
        return Err(Error::invalid(
            what.to_string(),
            "an OCI layout is a directory: give it with -o DIR, or use oci-archive",
        ));
    }
    let _lock = store.lock_shared()?;
    save_tar(store, images, format, out, what)
}

/// Where a docker archive goes: written through, or replaced atomically.
enum Sink {
    Stream(File),
    Replace(std::path::PathBuf),
}

/// Decides how `out` is written, following symlinks as open(2) would.
fn sink(out: &Path) -> Result<Sink> {
    match std::fs::metadata(out) {
        Ok(m) if m.is_file() => {
            // The file a chain of links ends at is the one replaced.
            let target = std::fs::canonicalize(out).ctx(|| format!("resolve {}", out.display()))?;
            Ok(Sink::Replace(target))
        }
        Ok(m) if m.is_dir() => Err(Error::invalid(
            format!("output {}", out.display()),
            "is a directory: this output is one file (save --format oci-dir writes a directory)",
        )),
        Ok(_) => {
            // A FIFO, a terminal, a socket: no temp file can stand in for
            // it. No O_CREAT: it exists, and must stay what it is.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(out)
                .ctx(|| format!("open {}", out.display()))?;
            Ok(Sink::Stream(f))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Sink::Replace(dangling_target(out)?)),
        Err(e) => Err(e).ctx(|| format!("stat {}", out.display())),
    }
}

/// The path a missing `out` names once its symlinks are followed: a
/// dangling link makes its target, as open(2) with O_CREAT would.
fn dangling_target(out: &Path) -> Result<std::path::PathBuf> {
    let mut p = out.to_path_buf();
    // Linux's own limit on links followed in one lookup.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = std::fs::read_link(&p).ctx(|| format!("read link {}", p.display()))?;
                // Relative to the link's directory; an absolute one as is.
                p = p.parent().map_or_else(|| t.clone(), |d| d.join(&t));
            }
            Ok(_) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(e).ctx(|| format!("stat {}", p.display())),
        }
    }
    Err(Error::invalid(
        format!("output {}", out.display()),
        "too many levels of symbolic links",
    ))
}

/// What an OCI layout of `images` holds: the blobs (each once, with the
/// size the record gives, when it gives one) and index.json, naming each
/// image by `io.containerd.image.name` and its tag.
fn oci_layout(
    store: &Store,
    images: &[(ImageRecord, String)],
) -> (Vec<(Digest, Option<u64>)>, Vec<u8>) {
    let mut manifests = Vec::new();
    let mut blobs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (img, name) in images {
        let mut all = vec![
            (img.manifest_digest.clone(), None),
            (img.id.clone(), Some(img.config_size)),
        ];
        all.extend(img.layers.iter().map(|l| (l.digest.clone(), Some(l.size))));
        for (d, size) in all {
            if seen.insert(d.clone()) {
                blobs.push((d, size));
            }
        }
        let tag = Reference::parse(name)
            .ok()
            .and_then(|r| r.tag)
            .unwrap_or_else(|| "latest".into());
        manifests.push(json!({
            "mediaType": img.manifest_media_type,
            "digest": img.manifest_digest,
            "size": std::fs::metadata(store.blob_path(&img.manifest_digest)).map(|m| m.len()).unwrap_or(0),
            "annotations": {
                "org.opencontainers.image.ref.name": tag,
                "io.containerd.image.name": name,
            }
        }));
    }
    let index =
        json!({ "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": manifests });
    (blobs, serde_json::to_vec(&index).expect("json"))
}

const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

fn save_oci(store: &Store, images: &[(ImageRecord, String)], out: &Path) -> Result<()> {
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).ctx(|| format!("create {}", blobs.display()))?;
    std::fs::write(out.join("oci-layout"), OCI_LAYOUT_FILE)
        .ctx(|| format!("write {}/oci-layout", out.display()))?;
    let (all, index) = oci_layout(store, images);
    for (d, size) in all {
        copy_blob(store, &d, size, &blobs)?;
    }
    std::fs::write(out.join("index.json"), index)
        .ctx(|| format!("write {}/index.json", out.display()))
}

/// oci-archive: the same layout as `save_oci` writes, as a tar stream
/// (blobs first, index.json last, so a reader that sees the index has
/// every blob it names).
fn save_oci_archive(
    store: &Store,
    images: &[(ImageRecord, String)],
    out: &mut dyn io::Write,
    what: &str,
) -> Result<()> {
    let mut tar = Stream::new(out, what);
    let (all, index) = oci_layout(store, images);
    tar.add(
        "oci-layout",
        OCI_LAYOUT_FILE.len() as u64,
        &mut &*OCI_LAYOUT_FILE,
    )?;
    for (d, size) in all {
        let (f, have) = open_blob(store, &d, size)?;
        // Exactly the length the header says, even if the file changed.
        let mut exact = Exact {
            inner: f.take(have),
            left: have,
            what: format!("blob {d} has"),
        };
        tar.add(&format!("blobs/sha256/{}", d.hex()), have, &mut exact)?;
    }
    tar.add("index.json", index.len() as u64, &mut index.as_slice())?;
    tar.finish()
}

/// An archive written as a stream: regular files only, each 0644 with
/// time 0 (so the same images save to the same bytes), through a 1 MiB
/// buffer; errors name the entry and `what` is written.
struct Stream<'a> {
    tar: tar::Builder<io::BufWriter<&'a mut dyn io::Write>>,
    what: &'a str,
}

impl<'a> Stream<'a> {
    fn new(out: &'a mut dyn io::Write, what: &'a str) -> Self {
        Stream {
            tar: tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out)),
            what,
        }
    }

    fn add(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(0);
        self.tar
            .append_data(&mut h, name, data)
            .ctx(|| format!("write {name} to {}", self.what))
    }

    fn finish(self) -> Result<()> {
        let what = self.what;
        let mut w = self.tar.into_inner().ctx(|| format!("finish {what}"))?;
        io::Write::flush(&mut w).ctx(|| format!("flush {what}"))
    }
}

/// Blob `d` of the store, opened, with its length, which must be the
/// `size` the image record gives (when it gives one).
fn open_blob(store: &Store, d: &Digest, size: Option<u64>) -> Result<(File, u64)> {
    let f = File::open(store.blob_path(d)).ctx(|| format!("open blob {d}"))?;
    let have = f.metadata().ctx(|| format!("stat blob {d}"))?.len();
    if let Some(want) = size.filter(|&w| w != have) {
        return Err(Error::invalid(
            format!("blob {d} in the store"),
            format!("{have} bytes, the image record says {want}: pull the image again"),
        ));
    }
    Ok((f, have))
}

/// Copies blob `d` into `blobs` (an OCI layout's blobs/sha256): a copy,
/// never a hard link (the output is the user's to change, and the store's
/// blobs must not change with it), of exactly the size the image record
/// says, written under a temporary name and renamed over whatever was
/// there (a symlink in the way is replaced, not followed).
fn copy_blob(store: &Store, d: &Digest, size: Option<u64>, blobs: &Path) -> Result<()> {
    let (mut from, have) = open_blob(store, d, size)?;
    let tmp = blobs.join(format!(".{}.tmp-{}", d.hex(), std::process::id()));
    let res = (|| {
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let n = io::copy(&mut from, &mut to)?;
        if n != have {
            return Err(io::Error::other(format!(
                "copied {n} bytes, the blob has {have}"
            )));
        }
        to.sync_all()?;
        std::fs::rename(&tmp, blobs.join(d.hex()))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.ctx(|| format!("copy blob {d} to {}", blobs.display()))
}

/// docker-archive: manifest.json, the config, and each layer as an
/// uncompressed tar (what `docker load` and `podman load` read).
fn save_docker(
    store: &Store,
    images: &[(ImageRecord, String)],
    out: &mut dyn io::Write,
    what: &str,
) -> Result<()> {
    let mut tar = Stream::new(out, what);
    let mut manifest = Vec::new();
    let mut written = std::collections::HashSet::new();
    for (img, name) in images {
        let config = store.read_blob(&img.id)?;
        if config.len() as u64 != img.config_size {
            return Err(Error::invalid(
                format!("config {} in the store", img.id),
                format!(
                    "{} bytes, the image record says {}: pull the image again",
                    config.len(),
                    img.config_size
                ),
            ));
        }
        let cname = format!("{}.json", img.id.hex());
        if written.insert(cname.clone()) {
            tar.add(&cname, config.len() as u64, &mut config.as_slice())?;
        }
        let mut layers = Vec::new();
        for l in &img.layers {
            let lname = format!("{}/layer.tar", l.diff_id.hex());
            if written.insert(lname.clone()) {
                let blob = File::open(store.blob_path(&l.digest))
                    .ctx(|| format!("open blob {}", l.digest))?;
                let dec = decoder(BufReader::with_capacity(1 << 20, blob))
                    .ctx(|| format!("read blob {}", l.digest))?;
                let mut exact = Exact {
                    inner: dec,
                    left: l.unpacked,
                    what: format!("blob {} decompresses to", l.digest),
                };
                tar.add(&lname, l.unpacked, &mut exact)?;
            }
            layers.push(lname);
        }
        manifest.push(json!({ "Config": cname, "RepoTags": [name], "Layers": layers }));
    }
    let m = serde_json::to_vec(&manifest).expect("json");
    tar.add("manifest.json", m.len() as u64, &mut m.as_slice())?;
    tar.finish()
}

/// A reader that must give exactly the `left` bytes a tar header already
/// promised: any other length would shift every later entry.
struct Exact<R> {
    inner: R,
    left: u64,
    what: String,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One byte more than promised is one too many.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "{} more bytes than the image record says",
                    self.what
                ))),
            };
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} {} bytes fewer than the image record says",
                self.what, self.left
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub fn decoder<R: io::BufRead + 'static>(mut r: R) -> io::Result<Box<dyn Read>> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// RFC 3339 UTC without pulling in a date crate.
pub(crate) fn humantime_now() -> String {
    let secs = now();
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
