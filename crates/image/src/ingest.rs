//! One layer blob from bytes to a committed blob and unpacked layer, in a
//! single pass: each chunk is appended to the partial blob file, hashed,
//! decompressed, hashed again (the diffID) and unpacked while the download
//! goes on. The bytes of an earlier interrupted download are replayed from
//! the partial file first, so only the rest comes over the network.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use bytes::Bytes;

use crate::digest::{Digest, Hasher};
use crate::error::{Context, Error, Result};
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
    what: String,
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
            return Err(io::Error::other(format!(
                "{}: more bytes than the manifest says ({})",
                self.what, self.limit
            )));
        }
        Ok(n)
    }
}

/// Hashes what passes through (the uncompressed stream).
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
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
pub struct Job {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// Unpack into the layer store (false when the layer is there).
    pub unpack: bool,
}

pub struct Done {
    pub unpacked: u64,
}

/// Runs on a blocking thread. `prefix` is a local file whose bytes come
/// first (the partial download, or the complete blob); `rx` brings the
/// rest, which is appended to `partial`. Called with the blob lock held.
pub fn run(
    store: &Store,
    job: &Job,
    prefix: Option<File>,
    partial: Option<(PathBuf, File)>,
    rx: Option<tokio::sync::mpsc::Receiver<Bytes>>,
) -> Result<Done> {
    let what = format!("layer {}", job.digest);
    let (partial_path, out) = match partial {
        Some((p, f)) => (Some(p), Some(f)),
        None => (None, None),
    };
    let source = Source {
        prefix,
        rx,
        out,
        pending: Bytes::new(),
        hasher: Hasher::default(),
        limit: job.size,
        what: what.clone(),
    };
    let tmp = store.layer_temp(&job.chain_id, &job.digest);
    let (source, diff) = if job.unpack {
        if tmp.exists() {
            crate::unpack::remove_tree(&tmp)?;
        }
        std::fs::create_dir_all(tmp.join("diff")).ctx(|| format!("create {}", tmp.display()))?;
        match unpack(source, &tmp, &job.digest) {
            Ok(v) => v,
            Err(e) => {
                let _ = crate::unpack::remove_tree(&tmp);
                return Err(e);
            }
        }
    } else {
        let mut source = source;
        io::copy(&mut source, &mut io::sink()).map_err(|e| Error::invalid(&what, e))?;
        (source, None)
    };
    let cleanup = |e: Error| {
        let _ = crate::unpack::remove_tree(&tmp);
        e
    };
    if source.rx.is_some() {
        return Err(cleanup(Error::invalid(&what, "stream ended early")));
    }
    let got_len = source.hasher.len;
    let actual = source.hasher.clone().finish();
    if got_len != job.size || actual != job.digest {
        // A short stream keeps its partial file for the next attempt; a
        // complete one with the wrong digest is garbage.
        if let (Some(p), true) = (&partial_path, got_len == job.size) {
            let _ = std::fs::remove_file(p);
        }
        let e = if got_len != job.size {
            Error::invalid(
                &what,
                format!("{got_len} bytes, the manifest says {}", job.size),
            )
        } else {
            Error::DigestMismatch {
                what,
                expected: job.digest.to_string(),
                actual: actual.to_string(),
            }
        };
        return Err(cleanup(e));
    }
    let unpacked = match diff {
        Some(h) => {
            let d = h.clone().finish();
            if d != job.diff_id {
                return Err(cleanup(Error::DigestMismatch {
                    what: format!("diffID of layer {} (uncompressed)", job.digest),
                    expected: job.diff_id.to_string(),
                    actual: d.to_string(),
                }));
            }
            Some(h.len)
        }
        None => None,
    };
    if let (Some(p), Some(out)) = (&partial_path, &source.out) {
        out.sync_all().ctx(|| format!("sync {}", p.display()))?;
        store.commit_file(p, &job.digest)?;
    }
    let unpacked = match unpacked {
        Some(n) => {
            store.commit_layer(&tmp, &job.chain_id, n)?;
            n
        }
        None => store.layer_size(&job.chain_id),
    };
    Ok(Done { unpacked })
}

fn unpack(
    source: Source,
    tmp: &std::path::Path,
    digest: &Digest,
) -> Result<(Source, Option<Hasher>)> {
    let what = format!("layer {digest}");
    let decoder = Decoder::new(source).map_err(|e| Error::invalid(&what, e))?;
    let hashing = Hashing {
        inner: decoder,
        hasher: Hasher::default(),
    };
    let mut rest = crate::unpack::unpack_tar(hashing, &tmp.join("diff"), digest.short())?;
    // The diffID covers the whole stream, padding after the end marker too.
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| Error::invalid(&what, format!("decompress: {e}")))?;
    let Hashing { inner, hasher } = rest;
    let mut source = inner.into_source();
    // Trailing bytes after the compressed stream still count for the digest.
    io::copy(&mut source, &mut io::sink()).map_err(|e| Error::invalid(&what, e))?;
    Ok((source.into_inner(), Some(hasher)))
}
