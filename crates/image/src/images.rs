//! Local image management: finding an image by name, ID or digest, tags,
//! removal and garbage collection. Blobs and layers are removed only when
//! no image record references them, under the store's exclusive lock.

use std::collections::HashSet;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::{self, Reference};
use crate::registries::RegistriesConf;
use crate::store::{ImageRecord, Store};

/// Finds an image: a full or short (>= 4 hex) ID, `sha256:ID`, a name (a
/// short name is tried in each search registry, as podman does), or
/// `name@digest`.
pub fn resolve(store: &Store, name: &str, conf: &RegistriesConf) -> Result<ImageRecord> {
    let not_found = || Error::NotFound(name.to_string());
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.len() >= 4
        && hex.len() <= 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        let ids = store.ids_with_prefix(hex)?;
        match ids.len() {
            1 => return store.image(&ids[0])?.ok_or_else(not_found),
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
        let mut v: Vec<Reference> = conf
            .search_registries()
            .iter()
            .map(|r| parsed.reference.with_registry(r))
            .collect();
        // Images made here (import, load, commit) are named localhost/.
        v.push(parsed.reference.with_registry("localhost"));
        v
    };
    for r in candidates {
        let key = match &r.digest {
            Some(d) => format!("{}@{d}", r.name()),
            None => r.tagged_or_digested(),
        };
        if let Some(id) = store.lookup_name(&key)? {
            return store.image(&id)?.ok_or_else(not_found);
        }
    }
    Err(not_found())
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

/// `rmi`: by name, drops the name and the image when it was its last one
/// (or `force`); by ID, deletes the image. An image a container uses stays.
pub fn remove(
    store: &Store,
    name: &str,
    force: bool,
    conf: &RegistriesConf,
) -> Result<Vec<Removed>> {
    let _lock = store.lock_exclusive()?;
    let image = resolve(store, name, conf)?;
    let by_id = image
        .id
        .hex()
        .starts_with(name.trim_start_matches("sha256:"));
    let mut out = Vec::new();
    if !by_id && image.names.len() > 1 && !force {
        let key = image
            .names
            .iter()
            .find(|n| {
                reference::parse(name)
                    .map(|p| {
                        n.as_str() == p.reference.tagged_or_digested()
                            || n.ends_with(&format!(
                                "/{}",
                                p.reference
                                    .tagged_or_digested()
                                    .rsplit('/')
                                    .next()
                                    .unwrap_or("")
                            ))
                    })
                    .unwrap_or(false)
            })
            .cloned()
            .unwrap_or_else(|| image.names[0].clone());
        store.remove_name(&key)?;
        out.push(Removed::Untagged(key));
        return Ok(out);
    }
    if let Some(c) = store.containers_of(&image.id)?.first() {
        return Err(Error::InUse {
            image: name.to_string(),
            container: c.clone(),
        });
    }
    for n in &image.names {
        out.push(Removed::Untagged(n.clone()));
    }
    store.delete_image(&image.id)?;
    out.push(Removed::Deleted(image.id.clone()));
    gc_locked(store)?;
    Ok(out)
}

/// `image prune`: removes dangling images (no name), or with `all` every
/// image no container uses; then unreferenced blobs and layers.
pub fn prune(store: &Store, all: bool) -> Result<Vec<Digest>> {
    let _lock = store.lock_exclusive()?;
    let used: HashSet<Digest> = store.all_container_images()?.into_iter().collect();
    let mut removed = Vec::new();
    for img in store.images()? {
        if (all || img.names.is_empty()) && !used.contains(&img.id) {
            store.delete_image(&img.id)?;
            removed.push(img.id);
        }
    }
    gc_locked(store)?;
    Ok(removed)
}

/// Removes what no image references. The caller holds the exclusive lock,
/// so no pull is between writing a blob and recording its image.
fn gc_locked(store: &Store) -> Result<GcStats> {
    let mut blobs = HashSet::new();
    let mut layers = HashSet::new();
    for img in store.images()? {
        blobs.insert(img.id.hex().to_string());
        blobs.insert(img.manifest_digest.hex().to_string());
        for d in &img.extra_blobs {
            blobs.insert(d.hex().to_string());
        }
        for l in &img.layers {
            blobs.insert(l.digest.hex().to_string());
            layers.insert(l.chain_id.hex().to_string());
        }
    }
    let mut stats = GcStats::default();
    let blob_dir = store.root.join("blobs/sha256");
    for e in std::fs::read_dir(&blob_dir)
        .map_err(|e| Error::Os {
            what: format!("list {}", blob_dir.display()),
            source: e,
        })?
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if !blobs.contains(&n) && std::fs::remove_file(e.path()).is_ok() {
            stats.blobs += 1;
        }
    }
    let layer_dir = store.root.join("layers");
    for e in std::fs::read_dir(&layer_dir)
        .map_err(|e| Error::Os {
            what: format!("list {}", layer_dir.display()),
            source: e,
        })?
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        // Temporary layer dirs belong to no one while we hold the lock.
        let base = n.split(".tmp-").next().unwrap_or("").to_string();
        if n.contains(".tmp-") || !layers.contains(&base) {
            crate::unpack::remove_tree(&e.path())?;
            stats.layers += 1;
        }
    }
    // Partial downloads are kept for resume unless their blob is complete.
    let ingest = store.root.join("ingest");
    for e in std::fs::read_dir(&ingest).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(hex) = n.strip_suffix(".partial")
            && store.root.join("blobs/sha256").join(hex).exists()
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    for e in std::fs::read_dir(store.root.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = crate::unpack::remove_tree(&e.path());
    }
    Ok(stats)
}

#[derive(Default, Debug)]
pub struct GcStats {
    pub blobs: usize,
    pub layers: usize,
}
