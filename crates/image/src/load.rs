//! `load` of an OCI layout directory or a docker-archive tarball, and
//! `import` of a rootfs tarball. Input is staged (see staging.rs) and
//! checked before anything enters the store: names parse, the layer count
//! fits overlayfs, every blob has its declared size and digest, and layers
//! unpack within the size caps. A refused input leaves the store as it
//! was.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use crate::archive::{decoder, local_name};
use crate::digest::{Digest, Hasher};
use crate::error::{Context, Error, Result};
use crate::ingest::{self, Job};
use crate::limits::{self, Budget, Limits};
use crate::manifest;
use crate::platform::Platform;
use crate::staging::{LayoutDir, MAX_METADATA, Staging};
use crate::store::{ImageRecord, Store, now};

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub limits: Limits,
}

/// One image a load brought in: its record (with every name it has now)
/// and the names the input gave it, which are what the load did.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub image: ImageRecord,
    pub names: Vec<String>,
}

/// `load`: an OCI layout directory, a docker dir (skopeo's `dir:`), or a
/// docker-archive or oci-archive tarball (a file, or anything that reads
/// as one: a FIFO, a character device).
pub fn load(store: &Store, input: &Path, opts: &LoadOptions) -> Result<Vec<Loaded>> {
    if input.is_dir() {
        let _lock = store.lock_shared()?;
        let mut staging = Staging::new(store)?;
        let mut layout = LayoutDir::open(input)?;
        if input.join("index.json").exists() {
            let base = base_name(input);
            return load_oci(store, &mut staging, &Source::Dir(&layout), &base, opts);
        }
        if input.join("manifest.json").exists() {
            layout.what = format!("docker dir {}", input.display());
            return load_docker_dir(store, &mut staging, &layout, opts);
        }
        return Err(Error::invalid(
            input.display().to_string(),
            "neither an OCI layout (no index.json) nor a docker dir (no manifest.json)",
        ));
    }
    let f = File::open(input).ctx(|| format!("open {}", input.display()))?;
    load_tar(
        store,
        f,
        &format!("archive {}", input.display()),
        &base_name(input),
        opts,
    )
}

/// `load` of a docker-archive or oci-archive tarball read once from start
/// to end (`load -i -` reads stdin); `what` names the input in errors.
pub fn load_stream(
    store: &Store,
    input: impl Read,
    what: &str,
    opts: &LoadOptions,
) -> Result<Vec<Loaded>> {
    load_tar(store, input, what, "image", opts)
}

/// Stages every member, then reads it as what it holds: manifest.json
/// makes a docker archive, index.json an OCI one. `base` names an OCI
/// image that has only a tag (as the layout directory's name does).
fn load_tar(
    store: &Store,
    input: impl Read,
    what: &str,
    base: &str,
    opts: &LoadOptions,
) -> Result<Vec<Loaded>> {
    let _lock = store.lock_shared()?;
    let mut staging = Staging::new(store)?;
    let members = stage_members(&mut staging, input, what)?;
    if members.files.contains_key("manifest.json") {
        load_docker(store, &mut staging, &members, what, opts)
    } else if members.files.contains_key("index.json") {
        let src = Source::Tar(&members, what);
        load_oci(store, &mut staging, &src, base, opts)
    } else {
        Err(Error::invalid(
            what,
            "neither a docker archive (no manifest.json) nor an OCI archive (no index.json)",
        ))
    }
}

/// A lower-case name from a path's last component, without `.tar`: what
/// an OCI image with only a tag is called.
fn base_name(p: &Path) -> String {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "image".into());
    name.strip_suffix(".tar").unwrap_or(&name).to_string()
}

/// Where an OCI layout's files are: a directory, or an oci-archive whose
/// members are staged already (by content, so a blob's path only says
/// which staged file to check against its descriptor).
enum Source<'a> {
    Dir(&'a LayoutDir),
    Tar(&'a Members, &'a str),
}

impl Source<'_> {
    fn what(&self) -> String {
        match self {
            Source::Dir(l) => l.what.clone(),
            Source::Tar(_, what) => what.to_string(),
        }
    }

    fn read_metadata(&self, store: &Store, staging: &Staging, rel: &str) -> Result<Vec<u8>> {
        match self {
            Source::Dir(l) => l.read_metadata(rel),
            Source::Tar(m, what) => {
                let (d, len) = m.get(rel, what)?;
                if len > MAX_METADATA {
                    return Err(Error::invalid(
                        format!("{what}: {rel}"),
                        format!("larger than {}", crate::limits::human(MAX_METADATA)),
                    ));
                }
                staging.read_metadata(store, &d, &format!("{what}: {rel}"))
            }
        }
    }

    /// Stages blob `d` of declared `size` unless the store has it: its
    /// length and digest must be the descriptor's.
    fn stage(
        &self,
        store: &Store,
        staging: &mut Staging,
        d: &Digest,
        size: u64,
        max: Option<u64>,
    ) -> Result<()> {
        if store.has_blob(d) {
            return Ok(());
        }
        let (l, what) = match self {
            Source::Dir(l) => return l.stage_blob(staging, d, size, max),
            Source::Tar(m, what) => (m, what),
        };
        let what = format!("{what}: blob {d}");
        if let Some(max) = max.filter(|&m| size > m) {
            return Err(Error::invalid(
                what,
                format!(
                    "declares {size} bytes; more than {} are refused for a manifest or config",
                    crate::limits::human(max)
                ),
            ));
        }
        let (got, len) = l.get(&format!("blobs/sha256/{}", d.hex()), &what)?;
        crate::ingest::check_read(d, size, &got, len, what)
    }
}

fn load_oci(
    store: &Store,
    staging: &mut Staging,
    src: &Source,
    base: &str,
    opts: &LoadOptions,
) -> Result<Vec<Loaded>> {
    let what = src.what();
    let index = manifest::parse_index(&src.read_metadata(store, staging, "index.json")?, &what)?;
    // Names first: a bad one refuses the load before a byte is copied.
    let mut names = Vec::new();
    for desc in index.manifests() {
        names.push(oci_names(desc.annotations().as_ref(), base)?);
    }
    let meta = Some(MAX_METADATA);
    let mut planned = Vec::new();
    for (desc, names) in index.manifests().iter().zip(names) {
        let d = manifest::digest_of(desc.digest(), &what)?;
        src.stage(store, staging, &d, desc.size(), meta)?;
        let body = staging.read_metadata(store, &d, &what)?;
        let (kind, mt) = manifest::classify(&body, desc.media_type().as_ref(), &what)?;
        let (body, media_type) = match kind {
            manifest::Kind::Manifest => (body, mt),
            manifest::Kind::Index => {
                let idx = manifest::parse_index(&body, &what)?;
                let (d, size) = manifest::choose(&idx, &Platform::host(), &what)?;
                src.stage(store, staging, &d, size, meta)?;
                let body = staging.read_metadata(store, &d, &what)?;
                (body, manifest::OCI_MANIFEST.to_string())
            }
        };
        let m = manifest::parse_manifest(&body, &what)?;
        limits::check_layer_count(m.layers().len(), &what)?;
        let c = m.config();
        let cd = manifest::digest_of(c.digest(), &what)?;
        src.stage(store, staging, &cd, c.size(), meta)?;
        for l in m.layers() {
            let ld = manifest::digest_of(l.digest(), &what)?;
            src.stage(store, staging, &ld, l.size(), None)?;
        }
        let config = staging.read_metadata(store, &cd, &format!("config {cd}"))?;
        planned.push((body, media_type, config, names));
    }
    let mut out = Vec::new();
    for (body, media_type, config, names) in planned {
        let image = commit_image(store, staging, &body, &media_type, &config, &names, opts)?;
        out.push(Loaded { image, names });
    }
    Ok(out)
}

/// A docker dir, as `skopeo copy ... dir:DIR` writes it: manifest.json is
/// the image's manifest (docker schema 2 or OCI, one platform), each blob
/// a file named by its hex digest. It carries no name: the image is
/// loaded by ID only.
fn load_docker_dir(
    store: &Store,
    staging: &mut Staging,
    layout: &LayoutDir,
    opts: &LoadOptions,
) -> Result<Vec<Loaded>> {
    let what = layout.what.clone();
    let body = layout.read_metadata("manifest.json")?;
    let (kind, media_type) = manifest::classify(&body, "", &what)?;
    if kind != manifest::Kind::Manifest {
        return Err(Error::invalid(
            what,
            "manifest.json is a list of platforms' images: copy one platform (skopeo copy without --all)",
        ));
    }
    let m = manifest::parse_manifest(&body, &what)?;
    limits::check_layer_count(m.layers().len(), &what)?;
    let mut blobs = vec![(m.config().digest(), m.config().size(), Some(MAX_METADATA))];
    blobs.extend(m.layers().iter().map(|l| (l.digest(), l.size(), None)));
    for (d, size, max) in blobs {
        let d = manifest::digest_of(d, &what)?;
        if !store.has_blob(&d) {
            layout.stage_blob_at(staging, d.hex(), &d, size, max)?;
        }
    }
    let cd = manifest::digest_of(m.config().digest(), &what)?;
    let config = staging.read_metadata(store, &cd, &format!("config {cd}"))?;
    let image = commit_image(store, staging, &body, &media_type, &config, &[], opts)?;
    Ok(vec![Loaded {
        image,
        names: Vec::new(),
    }])
}

/// The names an index entry gives its image: `io.containerd.image.name`
/// (which must parse); else `org.opencontainers.image.ref.name`, which
/// podman and skopeo fill with the whole name (`localhost/app:1`) and
/// others with a tag alone, taken with the layout directory's name (a
/// guess, dropped when it is no valid name).
fn oci_names(ann: Option<&HashMap<String, String>>, base: &str) -> Result<Vec<String>> {
    let Some(ann) = ann else {
        return Ok(Vec::new());
    };
    if let Some(n) = ann.get("io.containerd.image.name") {
        return Ok(vec![local_name(n)?]);
    }
    let Some(r) = ann.get("org.opencontainers.image.ref.name") else {
        return Ok(Vec::new());
    };
    // A tag holds neither '/' nor ':'; a name with either is whole.
    if r.contains(['/', ':']) {
        return Ok(vec![local_name(r)?]);
    }
    Ok(local_name(&format!("{base}:{r}"))
        .ok()
        .into_iter()
        .collect())
}

fn load_docker(
    store: &Store,
    staging: &mut Staging,
    members: &Members,
    what: &str,
    opts: &LoadOptions,
) -> Result<Vec<Loaded>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let get = |p: &str| members.get(p, what);
    let (md, _) = get("manifest.json")?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&staging.read_metadata(store, &md, "manifest.json")?)
            .map_err(|e| Error::invalid(what, format!("manifest.json: {e}")))?;
    let mut planned = Vec::new();
    for e in entries {
        // Names first: a bad one refuses the load before anything is
        // stored.
        let names: Vec<String> = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|n| local_name(n))
            .collect::<Result<_>>()?;
        limits::check_layer_count(e.layers.len(), what)?;
        let (cd, clen) = get(&e.config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (ld, llen) = get(l)?;
            let mt = layer_media_type(&mut staging.open(store, &ld)?, &ld)?;
            layers.push(json!({ "mediaType": mt, "digest": ld, "size": llen }));
        }
        let m = json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": { "mediaType": manifest::OCI_CONFIG, "digest": cd, "size": clen },
            "layers": layers,
        });
        let body = serde_json::to_vec(&m).expect("json");
        let config = staging.read_metadata(store, &cd, &format!("{what}: {}", e.config))?;
        planned.push((body, config, names));
    }
    let mut out = Vec::new();
    for (body, config, names) in planned {
        let image = commit_image(
            store,
            staging,
            &body,
            manifest::OCI_MANIFEST,
            &config,
            &names,
            opts,
        )?;
        out.push(Loaded { image, names });
    }
    Ok(out)
}

/// The members of a docker archive: regular files staged by path, links
/// kept as names to look up among them (docker's own archives link
/// layer.tar to blobs/). A link is only ever resolved to another member
/// of the same archive, never on the file system.
struct Members {
    files: HashMap<String, (Digest, u64)>,
    links: HashMap<String, String>,
}

impl Members {
    fn get(&self, path: &str, what: &str) -> Result<(Digest, u64)> {
        let mut p = normalize(path)
            .ok_or_else(|| Error::invalid(what, format!("{path:?} leaves the archive")))?;
        // Links to links, but not in a loop.
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Ok(f.clone());
            }
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        Err(Error::invalid(
            what,
            format!("{path} is not in the archive (links are followed only to its own files)"),
        ))
    }
}

fn stage_members(staging: &mut Staging, f: impl Read, what: &str) -> Result<Members> {
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, f));
    let mut m = Members {
        files: HashMap::new(),
        links: HashMap::new(),
    };
    for e in archive.entries().map_err(|e| Error::invalid(what, e))? {
        let mut e = e.map_err(|e| Error::invalid(what, e))?;
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let Some(path) = normalize(&raw) else {
            continue;
        };
        let target = e
            .link_name_bytes()
            .map(|t| String::from_utf8_lossy(&t).into_owned());
        match (e.header().entry_type(), target) {
            (tar::EntryType::Regular, _) => {
                let staged = staging.add(&mut e)?;
                m.files.insert(path, staged);
            }
            (tar::EntryType::Symlink, Some(t)) => {
                // Relative to the link's directory; an absolute target or
                // one above the archive's root names nothing in it.
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                if !t.starts_with('/')
                    && let Some(t) = normalize(&format!("{dir}/{t}"))
                {
                    m.links.insert(path, t);
                }
            }
            (tar::EntryType::Link, Some(t)) => {
                if let Some(t) = normalize(&t) {
                    m.links.insert(path, t);
                }
            }
            _ => {}
        }
    }
    Ok(m)
}

/// A member path without `./` and empty components; `None` when `..`
/// climbs above the archive's root.
fn normalize(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// `import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer
/// image, named `name` if given.
pub fn import(
    store: &Store,
    tarball: &Path,
    name: Option<&str>,
    cmd: Option<Vec<String>>,
    opts: &LoadOptions,
) -> Result<ImageRecord> {
    let names: Vec<String> = name.map(local_name).transpose()?.into_iter().collect();
    let _lock = store.lock_shared()?;
    let mut staging = Staging::new(store)?;
    let mut f = File::open(tarball).ctx(|| format!("open {}", tarball.display()))?;
    let (ld, llen) = staging.add(&mut f)?;
    let diff_id = diff_id_of(&mut staging.open(store, &ld)?, &ld, opts.limits.layer)?;
    let p = Platform::host();
    let created = crate::archive::humantime_now();
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
    let mt = layer_media_type(&mut staging.open(store, &ld)?, &ld)?;
    let m = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": { "mediaType": manifest::OCI_CONFIG, "digest": cd, "size": config.len() },
        "layers": [{ "mediaType": mt, "digest": ld, "size": llen }],
    });
    let body = serde_json::to_vec(&m).expect("json");
    commit_image(
        store,
        &mut staging,
        &body,
        manifest::OCI_MANIFEST,
        &config,
        &names,
        opts,
    )
}

/// The diffID of a (maybe compressed) layer file, decompressing at most
/// `limit` bytes.
fn diff_id_of(f: &mut File, d: &Digest, limit: u64) -> Result<Digest> {
    let mut dec = decoder(BufReader::with_capacity(
        1 << 20,
        f.try_clone().ctx(|| "dup".into())?,
    ))
    .ctx(|| format!("read blob {d}"))?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = dec.read(&mut buf).ctx(|| format!("decompress blob {d}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if h.len > limit {
            return Err(limits::layer_error(d, limit));
        }
    }
    Ok(h.finish())
}

fn layer_media_type(f: &mut File, d: &Digest) -> Result<&'static str> {
    let mut head = [0u8; 4];
    let n = f.read(&mut head).ctx(|| format!("read blob {d}"))?;
    Ok(if head[..n].starts_with(&[0x1f, 0x8b]) {
        manifest::OCI_LAYER_GZIP
    } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        manifest::OCI_LAYER
    })
}

/// Unpacks the layers (staged, or already in the store) within the size
/// caps, moves each staged blob into the store once its layer is done,
/// then stores the config and manifest and records the image under
/// `names`.
fn commit_image(
    store: &Store,
    staging: &mut Staging,
    manifest_bytes: &[u8],
    media_type: &str,
    config_bytes: &[u8],
    names: &[String],
    opts: &LoadOptions,
) -> Result<ImageRecord> {
    let mdigest = Digest::of(manifest_bytes);
    let what = format!("manifest {mdigest}");
    let m = manifest::parse_manifest(manifest_bytes, &what)?;
    limits::check_layer_count(m.layers().len(), &what)?;
    let config = manifest::parse_config(config_bytes, &what)?;
    let layers = crate::pull::plan_layers(&m, &config, &what)?;
    let config_digest = manifest::digest_of(m.config().digest(), &what)?;
    let budget = Budget::new(opts.limits);
    let mut infos = Vec::new();
    for mut l in layers {
        let _lock = store.lock_blob(&l.digest)?;
        // Decompressed and checked against its diffID also when the layer
        // is there already: the blob is recorded as this layer, and must be
        // it (a blob claiming a known diffID would otherwise be taken).
        let prefix = staging.open(store, &l.digest)?;
        let job = Job {
            digest: l.digest.clone(),
            size: l.size,
            diff_id: l.diff_id.clone(),
            chain_id: l.chain_id.clone(),
            unpack: !store.has_layer(&l.chain_id),
            budget: Arc::clone(&budget),
        };
        ingest::run(store, &job, Some(prefix), None, None)?;
        staging.commit(store, &l.digest)?;
        l.unpacked = store.layer_size(&l.chain_id);
        infos.push(l);
    }
    store.put_blob(config_bytes, &config_digest)?;
    store.put_blob(manifest_bytes, &mdigest)?;
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
