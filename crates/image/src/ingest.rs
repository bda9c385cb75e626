//! One layer blob from bytes to a committed blob and unpacked layer, in a
//! single pass: each chunk is appended to the partial blob file, hashed,
//! decompressed, hashed again (the diffID) and unpacked while the download
//! goes on. The bytes of an earlier interrupted download are replayed from
//! the partial file first, so only the rest comes over the network.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::digest::{Digest, Hasher};
use crate::error::{Context, Error, Result};
use crate::limits::{Budget, Meter};
use crate::store::Store;

/// Where the compressed bytes come from: a local prefix (a partial file or
/// a complete blob), then the channel the download feeds.
pub struct Source {
    prefix: Option<File>,
    rx: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    out: Option<File>,
    pending: Bytes,
    pub hasher: Hasher,
    limit: u64,
    digest: Digest,
    /// Where a refusal is kept for the caller (the decompressor only sees
    /// an I/O error).
    meter: Arc<Meter>,
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &mut self.prefix {
            let n = f.read(buf)?;
            if n > 0 {
                self.hasher.update(&buf[..n]);
                return Ok(n);
            }
            self.prefix = None;
        }
        if self.pending.is_empty() {
            let Some(rx) = &mut self.rx else { return Ok(0) };
            match rx.blocking_recv() {
                Some(chunk) => {
                    if let Some(out) = &mut self.out {
                        out.write_all(&chunk)?;
                    }
                    self.pending = chunk;
                }
                None => {
                    self.rx = None;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        let _ = self.pending.split_to(n);
        self.hasher.update(&buf[..n]);
        if self.hasher.len > self.limit {
            let err = too_long(&self.digest, self.limit);
            let text = err.to_string();
            self.meter.refuse(err);
            return Err(io::Error::other(text));
        }
        Ok(n)
    }
}

/// The error for a blob that goes on past its declared size.
pub fn too_long(digest: &Digest, size: u64) -> Error {
    Error::BlobSize {
        digest: digest.to_string(),
        why: format!("is longer than the {size} bytes its manifest declares"),
    }
}

/// The error for a blob that ends before its declared size.
pub fn too_short(digest: &Digest, got: u64, size: u64) -> Error {
    Error::BlobSize {
        digest: digest.to_string(),
        why: format!("is {got} bytes, shorter than the {size} bytes its manifest declares"),
    }
}

/// Checks what was read of the blob `expected` (`got`, `len` bytes)
/// against its descriptor: its size first, then its digest; `what` names
/// it in the digest error.
pub fn check_read(
    expected: &Digest,
    size: u64,
    got: &Digest,
    len: u64,
    what: String,
) -> Result<()> {
    if len > size {
        return Err(too_long(expected, size));
    }
    if len < size {
        return Err(too_short(expected, len, size));
    }
    if got != expected {
        return Err(Error::DigestMismatch {
            what,
            expected: expected.to_string(),
            actual: got.to_string(),
        });
    }
    Ok(())
}

/// Hashes what passes through (the uncompressed stream) and counts it
/// against the unpacked-size caps, so decompression stops as soon as one
/// is crossed.
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
    meter: Arc<Meter>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.charge(n as u64)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

enum Decoder {
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<Source>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<Source>>),
    Plain(BufReader<Source>),
}

impl Read for Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Plain(d) => d.read(buf),
        }
    }
}

impl Decoder {
    /// Chooses by magic bytes rather than the declared media type: docker
    /// media types say gzip for anything, and some "tar" layers are not.
    fn new(source: Source) -> io::Result<Decoder> {
        let mut br = BufReader::with_capacity(1 << 20, source);
        let head = br.fill_buf()?;
        Ok(if head.starts_with(&[0x1f, 0x8b]) {
            Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(br)))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(br)?)
        } else {
            Decoder::Plain(br)
        })
    }

    fn into_source(self) -> BufReader<Source> {
        match self {
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish(),
            Decoder::Plain(d) => d,
        }
    }
}

/// What to do with one layer blob.
#[derive(Clone)]
pub struct Job {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// Unpack into the layer store (false when the layer is there).
    pub unpack: bool,
    /// The image's unpacked-size caps, shared by its layers.
    pub budget: Arc<Budget>,
}

pub struct Done {
    pub unpacked: u64,
}

/// Why a blob was not ingested, and whether its bytes had been checked
/// against its digest by then. An error about unchecked bytes may be the
/// server's fault (a mirror may serve good ones); one about checked bytes
/// is the image's own.
#[derive(Debug)]
pub struct Failed {
    pub error: Error,
    pub verified: bool,
}

impl From<Failed> for Error {
    fn from(f: Failed) -> Error {
        f.error
    }
}

/// Runs on a blocking thread. `prefix` is a local file whose bytes come
/// first (the partial download, or the complete blob); `rx` brings the
/// rest, which is appended to `partial`. Called with the blob lock held.
/// The stream is always decompressed and its diffID checked, also when the
/// layer is already unpacked: a blob is only stored once it is known to be
/// the layer the config names.
pub fn run(
    store: &Store,
    job: &Job,
    prefix: Option<File>,
    partial: Option<(PathBuf, File)>,
    rx: Option<tokio::sync::mpsc::Receiver<Bytes>>,
) -> Result<Done, Failed> {
    // Without a download the bytes are a blob of the store, checked when
    // it was stored.
    let trusted = rx.is_none();
    let unverified = |error: Error| Failed {
        error,
        verified: trusted,
    };
    let verified = |error: Error| Failed {
        error,
        verified: true,
    };
    let what = format!("layer {}", job.digest);
    let (partial_path, out) = match partial {
        Some((p, f)) => (Some(p), Some(f)),
        None => (None, None),
    };
    let meter = Meter::new(job.budget.clone(), &job.digest);
    let source = Source {
        prefix,
        rx,
        out,
        pending: Bytes::new(),
        hasher: Hasher::default(),
        limit: job.size,
        digest: job.digest.clone(),
        meter: meter.clone(),
    };
    let tmp = store.layer_temp(&job.chain_id, &job.digest);
    if job.unpack {
        make_layer_dir(&tmp).map_err(unverified)?;
    }
    let cleanup = || {
        if job.unpack {
            let _ = crate::remove::remove_tree(&tmp);
        }
    };
    let (source, diff) = match decode(source, job.unpack.then_some(tmp.as_path()), &meter) {
        Ok(v) => v,
        Err(e) => {
            cleanup();
            // A cap or a blob longer than declared is the real reason; the
            // decompressor or tar reader only saw an I/O error.
            return Err(unverified(meter.take_refusal().unwrap_or(e)));
        }
    };
    if source.rx.is_some() {
        cleanup();
        return Err(unverified(Error::invalid(&what, "stream ended early")));
    }
    let got_len = source.hasher.len;
    let actual = source.hasher.clone().finish();
    if got_len != job.size {
        cleanup();
        return Err(unverified(if got_len > job.size {
            too_long(&job.digest, job.size)
        } else {
            too_short(&job.digest, got_len, job.size)
        }));
    }
    if actual != job.digest {
        cleanup();
        return Err(unverified(Error::DigestMismatch {
            what,
            expected: job.digest.to_string(),
            actual: actual.to_string(),
        }));
    }
    let d = diff.clone().finish();
    if d != job.diff_id {
        cleanup();
        return Err(verified(Error::DigestMismatch {
            what: format!("diffID of layer {} (uncompressed)", job.digest),
            expected: job.diff_id.to_string(),
            actual: d.to_string(),
        }));
    }
    if let (Some(p), Some(out)) = (&partial_path, &source.out) {
        out.sync_all()
            .ctx(|| format!("sync {}", p.display()))
            .and_then(|()| store.commit_file(p, &job.digest))
            .map_err(|e| {
                cleanup();
                verified(e)
            })?;
    }
    if job.unpack {
        store
            .commit_layer(&tmp, &job.chain_id, diff.len)
            .map_err(verified)?;
    }
    Ok(Done { unpacked: diff.len })
}

/// A fresh temporary layer directory with an empty `diff`; private, like
/// everything in the store.
fn make_layer_dir(tmp: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if tmp.exists() {
        crate::remove::remove_tree(tmp)?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(tmp)
        .and_then(|()| std::fs::create_dir(tmp.join("diff")))
        .ctx(|| format!("create {}", tmp.display()))
}

/// Decompresses the blob, hashing the tar stream for the diffID, and
/// unpacks it into `tmp/diff` when `tmp` is given. Returns the source
/// (drained, so its hasher covers the whole blob) and the diffID hasher.
fn decode(source: Source, tmp: Option<&Path>, meter: &Arc<Meter>) -> Result<(Source, Hasher)> {
    let digest = &source.digest.clone();
    let what = format!("layer {digest}");
    let decoder =
        Decoder::new(source).map_err(|e| Error::invalid(&what, format!("decompress: {e}")))?;
    let mut hashing = Hashing {
        inner: decoder,
        hasher: Hasher::default(),
        meter: meter.clone(),
    };
    let drain_err = |e: io::Error| Error::invalid(&what, format!("decompress: {e}"));
    let hashing = match tmp {
        Some(tmp) => {
            let mut rest = crate::unpack::unpack_tar_capped(
                hashing,
                &tmp.join("diff"),
                digest.short(),
                meter.layer_limit(),
            )?;
            // The diffID covers the whole stream, padding after the end
            // marker too.
            io::copy(&mut rest, &mut io::sink()).map_err(drain_err)?;
            rest.into_inner().1
        }
        None => {
            io::copy(&mut hashing, &mut io::sink()).map_err(drain_err)?;
            hashing
        }
    };
    let Hashing { inner, hasher, .. } = hashing;
    let mut source = inner.into_source();
    // Trailing bytes after the compressed stream still count for the digest.
    io::copy(&mut source, &mut io::sink()).map_err(|e| Error::invalid(&what, e))?;
    Ok((source.into_inner(), hasher))
}
