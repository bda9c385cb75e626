//! Images in and out of files: `save` to an OCI layout directory or a
//! docker-archive tarball, `load` from either, and `import` of a rootfs
//! tarball as a one-layer image. Everything that enters the store is
//! hashed on the way in and unpacked with the same safe writer as a pull.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use serde_json::json;

use crate::digest::{Digest, Hasher};
use crate::error::{Context, Error, Result};
use crate::ingest::{self, Job};
use crate::manifest;
use crate::platform::Platform;
use crate::reference::{self, Reference};
use crate::store::{ImageRecord, Store, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OciDir,
    DockerArchive,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "oci-dir" | "oci" => Ok(Format::OciDir),
            "docker-archive" | "docker" => Ok(Format::DockerArchive),
            _ => Err(Error::invalid(
                format!("format {s:?}"),
                "expected oci-dir or docker-archive",
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
pub fn save(
    store: &Store,
    images: &[(ImageRecord, String)],
    format: Format,
    out: &Path,
) -> Result<()> {
    let _lock = store.lock_shared()?;
    match format {
        Format::OciDir => save_oci(store, images, out),
        Format::DockerArchive => save_docker(store, images, out).inspect_err(|_| {
            let _ = std::fs::remove_file(out.with_extension("partial"));
        }),
    }
}

fn save_oci(store: &Store, images: &[(ImageRecord, String)], out: &Path) -> Result<()> {
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).ctx(|| format!("create {}", blobs.display()))?;
    std::fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .ctx(|| format!("write {}/oci-layout", out.display()))?;
    let mut manifests = Vec::new();
    let mut copied = std::collections::HashSet::new();
    for (img, name) in images {
        let mut all = vec![
            (img.manifest_digest.clone(), None),
            (img.id.clone(), Some(img.config_size)),
        ];
        all.extend(img.layers.iter().map(|l| (l.digest.clone(), Some(l.size))));
        for (d, size) in all {
            if copied.insert(d.clone()) {
                copy_blob(store, &d, size, &blobs)?;
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
    std::fs::write(
        out.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .ctx(|| format!("write {}/index.json", out.display()))
}

/// Copies blob `d` into `blobs` (an OCI layout's blobs/sha256): a copy,
/// never a hard link (the output is the user's to change, and the store's
/// blobs must not change with it), of exactly the size the image record
/// says, written under a temporary name and renamed over whatever was
/// there (a symlink in the way is replaced, not followed).
fn copy_blob(store: &Store, d: &Digest, size: Option<u64>, blobs: &Path) -> Result<()> {
    let src = store.blob_path(d);
    let mut from = File::open(&src).ctx(|| format!("open blob {d}"))?;
    let have = from.metadata().ctx(|| format!("stat blob {d}"))?.len();
    if let Some(want) = size.filter(|&w| w != have) {
        return Err(Error::invalid(
            format!("blob {d} in the store"),
            format!("{have} bytes, the image record says {want}: pull the image again"),
        ));
    }
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
fn save_docker(store: &Store, images: &[(ImageRecord, String)], out: &Path) -> Result<()> {
    let tmp = out.with_extension("partial");
    let f = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, f));
    let mut manifest = Vec::new();
    let mut written = std::collections::HashSet::new();
    let add =
        |tar: &mut tar::Builder<_>, name: &str, size: u64, data: &mut dyn Read| -> Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mtime(0);
            tar.append_data(&mut h, name, data)
                .ctx(|| format!("write {name} to {}", out.display()))
        };
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
            add(
                &mut tar,
                &cname,
                config.len() as u64,
                &mut config.as_slice(),
            )?;
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
                add(&mut tar, &lname, l.unpacked, &mut exact)?;
            }
            layers.push(lname);
        }
        manifest.push(json!({ "Config": cname, "RepoTags": [name], "Layers": layers }));
    }
    let m = serde_json::to_vec(&manifest).expect("json");
    add(&mut tar, "manifest.json", m.len() as u64, &mut m.as_slice())?;
    let w = tar
        .into_inner()
        .ctx(|| format!("finish {}", out.display()))?;
    let f = w
        .into_inner()
        .map_err(|e| e.into_error())
        .ctx(|| format!("flush {}", out.display()))?;
    f.sync_all().ctx(|| format!("sync {}", out.display()))?;
    std::fs::rename(&tmp, out).ctx(|| format!("rename to {}", out.display()))
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

fn decoder<R: io::BufRead + 'static>(mut r: R) -> io::Result<Box<dyn Read>> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// Copies a file into the store as a blob, hashing on the way; returns
/// its digest and size.
fn ingest_file(store: &Store, src: &mut dyn Read) -> Result<(Digest, u64)> {
    let tmp = store.temp_path("load");
    let mut out = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).ctx(|| "read input".into())?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .ctx(|| format!("write {}", tmp.display()))?;
    }
    out.sync_all().ctx(|| format!("sync {}", tmp.display()))?;
    let len = h.len;
    let d = h.finish();
    if store.has_blob(&d) {
        let _ = std::fs::remove_file(&tmp);
    } else {
        store.commit_file(&tmp, &d)?;
    }
    Ok((d, len))
}

/// The diffID of a stored (maybe compressed) layer blob and its length.
fn diff_id_of(store: &Store, d: &Digest) -> Result<(Digest, u64)> {
    let f = File::open(store.blob_path(d)).ctx(|| format!("open blob {d}"))?;
    let mut dec = decoder(BufReader::with_capacity(1 << 20, f)).ctx(|| format!("read blob {d}"))?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = dec.read(&mut buf).ctx(|| format!("decompress blob {d}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let len = h.len;
    Ok((h.finish(), len))
}

fn layer_media_type(store: &Store, d: &Digest) -> Result<&'static str> {
    let mut head = [0u8; 4];
    let mut f = File::open(store.blob_path(d)).ctx(|| format!("open blob {d}"))?;
    let n = f.read(&mut head).ctx(|| format!("read blob {d}"))?;
    Ok(if head[..n].starts_with(&[0x1f, 0x8b]) {
        manifest::OCI_LAYER_GZIP
    } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        manifest::OCI_LAYER
    })
}

/// Unpacks the layers (from blobs already in the store) and records the
/// image under `names`.
fn commit_image(
    store: &Store,
    manifest_bytes: &[u8],
    media_type: &str,
    config_bytes: &[u8],
    names: &[String],
) -> Result<ImageRecord> {
    let mdigest = Digest::of(manifest_bytes);
    let what = format!("manifest {mdigest}");
    let m = manifest::parse_manifest(manifest_bytes, &what)?;
    let config = manifest::parse_config(config_bytes, &what)?;
    let layers = crate::pull::plan_layers(&m, &config, &what)?;
    let config_digest = manifest::digest_of(m.config().digest(), &what)?;
    store.put_blob(config_bytes, &config_digest)?;
    store.put_blob(manifest_bytes, &mdigest)?;
    let mut infos = Vec::new();
    for mut l in layers {
        let _lock = store.lock_blob(&l.digest)?;
        // Decompressed and checked against its diffID also when the layer
        // is there already: the blob is recorded as this layer, and must be
        // it (a blob claiming a known diffID would otherwise be taken).
        let prefix =
            File::open(store.blob_path(&l.digest)).ctx(|| format!("open blob {}", l.digest))?;
        let job = Job {
            digest: l.digest.clone(),
            size: l.size,
            diff_id: l.diff_id.clone(),
            chain_id: l.chain_id.clone(),
            unpack: !store.has_layer(&l.chain_id),
        };
        ingest::run(store, &job, Some(prefix), None, None)?;
        l.unpacked = store.layer_size(&l.chain_id);
        infos.push(l);
    }
    let rec = ImageRecord {
        id: config_digest,
        manifest_digest: mdigest,
        manifest_media_type: media_type.to_string(),
        config_size: config_bytes.len() as u64,
        layers: infos,
        created: config.created().clone(),
        added: now(),
        extra_blobs: Vec::new(),
        names: Vec::new(),
        repo_digests: Vec::new(),
        digest_names: Vec::new(),
    };
    store.put_image(&rec, names, &[], &[])
}

/// `load`: an OCI layout directory or a docker-archive tarball.
pub fn load(store: &Store, input: &Path) -> Result<Vec<ImageRecord>> {
    let _lock = store.lock_shared()?;
    if input.is_dir() {
        load_oci(store, input)
    } else {
        load_docker(store, input)
    }
}

fn load_oci(store: &Store, dir: &Path) -> Result<Vec<ImageRecord>> {
    let what = format!("OCI layout {}", dir.display());
    let index_bytes = std::fs::read(dir.join("index.json"))
        .ctx(|| format!("read {}/index.json", dir.display()))?;
    let index = manifest::parse_index(&index_bytes, &what)?;
    let copy_blob = |d: &Digest| -> Result<()> {
        if store.has_blob(d) {
            return Ok(());
        }
        let mut f = File::open(dir.join("blobs/sha256").join(d.hex()))
            .ctx(|| format!("{what}: blob {d}"))?;
        let (got, _) = ingest_file(store, &mut f)?;
        if &got != d {
            return Err(Error::DigestMismatch {
                what: format!("{what}: blob {d}"),
                expected: d.to_string(),
                actual: got.to_string(),
            });
        }
        Ok(())
    };
    let mut out = Vec::new();
    for desc in index.manifests() {
        let d = manifest::digest_of(desc.digest(), &what)?;
        copy_blob(&d)?;
        let body = store.read_blob(&d)?;
        let (kind, mt) = manifest::classify(&body, desc.media_type().as_ref(), &what)?;
        let body = match kind {
            manifest::Kind::Manifest => body,
            manifest::Kind::Index => {
                let idx = manifest::parse_index(&body, &what)?;
                let (d, _) = manifest::choose(&idx, &Platform::host(), &what)?;
                copy_blob(&d)?;
                store.read_blob(&d)?
            }
        };
        let m = manifest::parse_manifest(&body, &what)?;
        let cd = manifest::digest_of(m.config().digest(), &what)?;
        copy_blob(&cd)?;
        for l in m.layers() {
            copy_blob(&manifest::digest_of(l.digest(), &what)?)?;
        }
        let ann = desc.annotations().clone().unwrap_or_default();
        let name = ann.get("io.containerd.image.name").cloned().or_else(|| {
            ann.get("org.opencontainers.image.ref.name").map(|t| {
                let base = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_lowercase())
                    .unwrap_or_else(|| "image".into());
                format!("{base}:{t}")
            })
        });
        let names: Vec<String> = name.and_then(|n| local_name(&n).ok()).into_iter().collect();
        let config = store.read_blob(&cd)?;
        let mt = if matches!(kind, manifest::Kind::Index) {
            manifest::OCI_MANIFEST.to_string()
        } else {
            mt
        };
        out.push(commit_image(store, &body, &mt, &config, &names)?);
    }
    Ok(out)
}

fn load_docker(store: &Store, file: &Path) -> Result<Vec<ImageRecord>> {
    let what = format!("docker archive {}", file.display());
    let f = File::open(file).ctx(|| format!("open {}", file.display()))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, f));
    // Entries come in any order: each file goes into the store as a blob,
    // remembered by its path in the archive.
    let mut files: HashMap<String, (Digest, u64)> = HashMap::new();
    for e in archive.entries().map_err(|e| Error::invalid(&what, e))? {
        let mut e = e.map_err(|e| Error::invalid(&what, e))?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = String::from_utf8_lossy(&e.path_bytes())
            .trim_start_matches("./")
            .to_string();
        let (d, len) = ingest_file(store, &mut e)?;
        files.insert(path, (d, len));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let get = |p: &str| {
        files
            .get(p)
            .cloned()
            .ok_or_else(|| Error::invalid(&what, format!("{p} is not in the archive")))
    };
    let (md, _) = get("manifest.json")?;
    let entries: Vec<Entry> = serde_json::from_slice(&store.read_blob(&md)?)
        .map_err(|e| Error::invalid(&what, format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let (cd, clen) = get(&e.config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (ld, llen) = get(l)?;
            layers.push(
                json!({ "mediaType": layer_media_type(store, &ld)?, "digest": ld, "size": llen }),
            );
        }
        let m = json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": { "mediaType": manifest::OCI_CONFIG, "digest": cd, "size": clen },
            "layers": layers,
        });
        let body = serde_json::to_vec(&m).expect("json");
        let names: Vec<String> = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|n| local_name(n))
            .collect::<Result<_>>()?;
        let config = store.read_blob(&cd)?;
        out.push(commit_image(
            store,
            &body,
            manifest::OCI_MANIFEST,
            &config,
            &names,
        )?);
    }
    Ok(out)
}

/// `import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer
/// image, named `name` if given.
pub fn import(
    store: &Store,
    tarball: &Path,
    name: Option<&str>,
    cmd: Option<Vec<String>>,
) -> Result<ImageRecord> {
    let _lock = store.lock_shared()?;
    let mut f = File::open(tarball).ctx(|| format!("open {}", tarball.display()))?;
    let (ld, llen) = ingest_file(store, &mut f)?;
    let (diff_id, _) = diff_id_of(store, &ld)?;
    let p = Platform::host();
    let created = humantime_now();
    let mut cfg = json!({
        "created": created,
        "architecture": p.architecture,
        "os": p.os,
        "config": { "Env": [crate::spec::DEFAULT_PATH] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": created, "created_by": format!("berth import {}", tarball.display()) }],
    });
    if let Some(c) = cmd {
        cfg["config"]["Cmd"] = json!(c);
    }
    let config = serde_json::to_vec(&cfg).expect("json");
    let cd = Digest::of(&config);
    let m = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": { "mediaType": manifest::OCI_CONFIG, "digest": cd, "size": config.len() },
        "layers": [{ "mediaType": layer_media_type(store, &ld)?, "digest": ld, "size": llen }],
    });
    let body = serde_json::to_vec(&m).expect("json");
    let names: Vec<String> = name.map(local_name).transpose()?.into_iter().collect();
    commit_image(store, &body, manifest::OCI_MANIFEST, &config, &names)
}

/// RFC 3339 UTC without pulling in a date crate.
fn humantime_now() -> String {
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
