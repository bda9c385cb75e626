//! Local image management: finding an image by name, ID or digest, tags,
//! removal and garbage collection. Blobs, layers and committed snapshots
//! are removed only when nothing reaches them (an image, a container, a
//! snapshot, a live lease), under the store's exclusive lock.

use std::collections::HashSet;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::{self, Reference};
use crate::registries::RegistriesConf;
use crate::store::{ImageRecord, Store};

/// How a name found its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched {
    /// A full or short image ID.
    Id,
    /// A tag, as stored (`registry/repository:tag`).
    Tag(String),
    /// A digest reference, as stored (`registry/repository@sha256:...`).
    Digest(String),
}

/// Finds an image: a full or short (>= 4 hex) ID, `sha256:ID`, a name (a
/// short name is tried in each search registry, as podman does), or
/// `name@digest`.
pub fn resolve(store: &Store, name: &str, conf: &RegistriesConf) -> Result<ImageRecord> {
    Ok(find(store, name, conf)?.0)
}

/// `resolve`, saying which stored name (if any) matched.
pub fn find(store: &Store, name: &str, conf: &RegistriesConf) -> Result<(ImageRecord, Matched)> {
    let not_found = || Error::NotFound(name.to_string());
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.len() >= 4
        && hex.len() <= 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        let ids = store.ids_with_prefix(hex)?;
        match ids.len() {
            1 => return Ok((store.image(&ids[0])?.ok_or_else(not_found)?, Matched::Id)),
            0 => {}
            _ => {
                return Err(Error::invalid(
                    format!("image ID {name}"),
                    "ambiguous: more than one image has it",
                ));
            }
        }
    }
    let parsed = reference::parse(name)?;
    let candidates: Vec<Reference> = if parsed.qualified {
        vec![parsed.reference]
    } else {
        conf.local_candidates(&parsed.reference)
    };
    for r in candidates {
        let (key, matched): (String, fn(String) -> Matched) = match &r.digest {
            Some(d) => (format!("{}@{d}", r.name()), Matched::Digest),
            None => (r.tagged_or_digested(), Matched::Tag),
        };
        if let Some(id) = store.lookup_name(&key)? {
            return Ok((store.image(&id)?.ok_or_else(not_found)?, matched(key)));
        }
    }
    Err(not_found())
}

/// The image `name` resolves to, and the name an archive of it carries
/// (`save`): the stored tag it matched, so that `save b:2` of an image
/// also tagged `a:1` says `b:2`; for an ID or a digest, the image's first
/// name, else `localhost/<short ID>:latest`.
pub fn for_archive(
    store: &Store,
    name: &str,
    conf: &RegistriesConf,
) -> Result<(ImageRecord, String)> {
    let (rec, matched) = find(store, name, conf)?;
    let tag = match matched {
        Matched::Tag(t) => t,
        Matched::Id | Matched::Digest(_) => rec
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| format!("localhost/{}:latest", rec.id.short())),
    };
    Ok((rec, tag))
}

/// Gives an image another name (`berth tag`).
pub fn tag(store: &Store, image: &ImageRecord, new_name: &str) -> Result<String> {
    let r = Reference::parse(new_name)?;
    let r = if reference::parse(new_name)?.qualified {
        r
    } else {
        r.with_registry("localhost")
    };
    if r.digest.is_some() {
        return Err(Error::invalid(
            format!("tag {new_name}"),
            "a tag cannot contain a digest",
        ));
    }
    let name = r.tagged_or_digested();
    store.add_name(&image.id, &name)?;
    Ok(name)
}

pub enum Removed {
    /// Only a name went; the image still has others.
    Untagged(String),
    Deleted(Digest),
}

/// `rmi`: by tag, drops exactly that tag, and the image with it when it
/// was its last name (or with `force`); by ID, deletes the image; by
/// digest, deletes the image, which must have no tags unless `force` (as
/// podman). An image a container uses stays.
pub fn remove(
    store: &Store,
    name: &str,
    force: bool,
    conf: &RegistriesConf,
) -> Result<Vec<Removed>> {
    let _lock = store.lock_exclusive()?;
    let (image, matched) = find(store, name, conf)?;
    match &matched {
        Matched::Tag(tag) => {
            let others = image
                .names
                .iter()
                .chain(&image.digest_names)
                .any(|n| n != tag);
            if others && !force {
                store.remove_name(tag)?;
                return Ok(vec![Removed::Untagged(tag.clone())]);
            }
        }
        Matched::Digest(_) if !image.names.is_empty() && !force => {
            return Err(Error::invalid(
                format!("image {name}"),
                format!(
                    "a digest names the whole image, which has tags ({}): remove those first, or use --force",
                    image.names.join(", ")
                ),
            ));
        }
        Matched::Digest(_) | Matched::Id => {}
    }
    if let Some(c) = store.containers_of(&image.id)?.first() {
        return Err(Error::InUse {
            image: name.to_string(),
            container: c.clone(),
        });
    }
    let mut out: Vec<Removed> = image
        .names
        .iter()
        .chain(&image.digest_names)
        .map(|n| Removed::Untagged(n.clone()))
        .collect();
    store.delete_image(&image.id)?;
    out.push(Removed::Deleted(image.id.clone()));
    gc_locked(store, Partials::Stale)?;
    Ok(out)
}

/// `image prune`: removes dangling images (no tag, and not pulled by
/// digest), or with `all` every image no container uses and no lease
/// holds; then unreferenced blobs, layers, committed snapshots and every
/// partial download.
pub fn prune(store: &Store, all: bool) -> Result<Vec<Digest>> {
    let _lock = store.lock_exclusive()?;
    let mut used: HashSet<Digest> = store.all_container_images()?.into_iter().collect();
    crate::leases::expire(&store.db())?;
    for l in store.leases()? {
        for r in l.resources {
            if let crate::leases::Resource::Image(d) = r {
                used.insert(d);
            }
        }
    }
    let mut removed = Vec::new();
    for img in store.images()? {
        let dangling = img.is_dangling();
        if (all || dangling) && !used.contains(&img.id) {
            store.delete_image(&img.id)?;
            removed.push(img.id);
        }
    }
    gc_locked(store, Partials::All)?;
    Ok(removed)
}

/// Garbage collection on its own (after a builder's cache lets go of
/// layers): what no image, container, snapshot or live lease reaches.
pub fn collect(store: &Store) -> Result<GcStats> {
    let _lock = store.lock_exclusive()?;
    gc_locked(store, Partials::Stale)
}

/// Which partial downloads garbage collection removes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Partials {
    /// Those whose blob is complete, and those untouched for a day (an
    /// interrupted pull is resumed soon or never).
    Stale,
    All,
}

const STALE_PARTIAL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What garbage collection keeps: everything reachable from an image
/// record, a snapshot that is not a committed one (containers' roots,
/// builders' working snapshots and views), or a live lease.
#[derive(Default)]
struct Reachable {
    blobs: HashSet<String>,
    layers: HashSet<String>,
    snapshots: HashSet<String>,
}

fn reachable(store: &Store) -> Result<Reachable> {
    let (snaps, leases) = {
        let db = store.db();
        (crate::snapshots::all(&db)?, crate::leases::all(&db)?)
    };
    let at = crate::store::now();
    let mut r = Reachable::default();
    let mut images: Vec<ImageRecord> = store.images()?;
    let mut todo: Vec<String> = snaps
        .iter()
        .filter(|s| s.kind != crate::snapshots::Kind::Committed)
        .map(|s| s.key.clone())
        .collect();
    for l in leases.iter().filter(|l| l.live(at)) {
        for res in &l.resources {
            use crate::leases::Resource;
            match res {
                Resource::Blob(d) => {
                    r.blobs.insert(d.hex().to_string());
                }
                Resource::Layer(d) => {
                    r.layers.insert(d.hex().to_string());
                }
                Resource::Snapshot(k) => todo.push(k.clone()),
                // Its record is there (prune keeps leased images) unless
                // it was never made or was removed by name.
                Resource::Image(_) => {}
            }
        }
    }
    let by_key: std::collections::HashMap<&str, &crate::snapshots::Info> =
        snaps.iter().map(|s| (s.key.as_str(), s)).collect();
    while let Some(k) = todo.pop() {
        if !r.snapshots.insert(k.clone()) {
            continue;
        }
        let Some(s) = by_key.get(k.as_str()) else {
            continue;
        };
        for c in s.chain() {
            r.layers.insert(c.hex().to_string());
        }
        if let Some(l) = &s.layer {
            r.blobs.insert(l.digest.hex().to_string());
        }
        if let Some(p) = &s.parent {
            todo.push(p.clone());
        }
    }
    for img in images.drain(..) {
        r.blobs.insert(img.id.hex().to_string());
        r.blobs.insert(img.manifest_digest.hex().to_string());
        for d in &img.extra_blobs {
            r.blobs.insert(d.hex().to_string());
        }
        for l in &img.layers {
            r.blobs.insert(l.digest.hex().to_string());
            r.layers.insert(l.chain_id.hex().to_string());
        }
    }
    Ok(r)
}

/// Whether anything keeps layer `chain` (see `Reachable`), committed
/// snapshots all counting.
pub(crate) fn layer_in_use(store: &Store, chain: &Digest) -> Result<bool> {
    let r = reachable(store)?;
    if r.layers.contains(chain.hex()) {
        return Ok(true);
    }
    let snaps = crate::snapshots::all(&store.db())?;
    Ok(snaps.iter().any(|s| s.chain().contains(chain)))
}

/// Removes what nothing reaches (see `Reachable`): committed snapshots no
/// one holds, then blobs and layers. The caller holds the exclusive lock,
/// so no pull is between writing a blob and recording its image, no
/// commit between making a layer and recording it, and no download is
/// writing a partial file.
fn gc_locked(store: &Store, partials: Partials) -> Result<GcStats> {
    crate::leases::expire(&store.db())?;
    let keep = reachable(store)?;
    let (blobs, layers) = (keep.blobs, keep.layers);
    let mut stats = GcStats::default();
    let mut dirs = HashSet::new();
    {
        let mut db = store.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for s in crate::snapshots::all(&tx)? {
            if s.kind == crate::snapshots::Kind::Committed && !keep.snapshots.contains(&s.key) {
                tx.execute("DELETE FROM snapshots WHERE key = ?1", [&s.key])?;
                stats.snapshots += 1;
            } else if let Some(d) = s.dir {
                dirs.insert(d);
            }
        }
        tx.commit()?;
    }
    let list = |dir: &std::path::Path| -> Result<Vec<std::fs::DirEntry>> {
        Ok(std::fs::read_dir(dir)
            .map_err(|e| Error::Os {
                what: format!("list {}", dir.display()),
                source: e,
            })?
            .flatten()
            .collect())
    };
    for e in list(&store.root.join("blobs/sha256"))? {
        let n = e.file_name().to_string_lossy().into_owned();
        if !blobs.contains(&n) && std::fs::remove_file(e.path()).is_ok() {
            stats.blobs += 1;
        }
    }
    for e in list(&store.root.join("layers"))? {
        let n = e.file_name().to_string_lossy().into_owned();
        // Temporary layer dirs belong to no one while we hold the lock.
        if n.contains(".tmp-") || !layers.contains(&n) {
            store.discard(&e.path())?;
            stats.layers += 1;
        }
    }
    for e in list(&store.root.join("l"))? {
        if !store
            .link_target(&e.file_name())
            .is_some_and(|hex| layers.contains(&hex))
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    // Directories of snapshots whose record is gone (a crash between
    // the two).
    for e in list(&store.root.join("snapshots"))? {
        let n = format!("snapshots/{}", e.file_name().to_string_lossy());
        if !dirs.contains(&n) {
            store.discard(&e.path())?;
        }
    }
    for e in list(&store.root.join("ingest"))? {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(hex) = n.strip_suffix(".partial") else {
            continue;
        };
        let stale = partials == Partials::All
            || store.root.join("blobs/sha256").join(hex).exists()
            || e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_PARTIAL));
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
    for e in list(&store.root.join("tmp"))? {
        let _ = crate::remove::remove_tree(&e.path());
    }
    Ok(stats)
}

#[derive(Default, Debug)]
pub struct GcStats {
    pub blobs: usize,
    pub layers: usize,
    pub snapshots: usize,
}
