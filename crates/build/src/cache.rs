//! The build cache: a step's key (what it does, on what, with which
//! files' contents) to the layer it made. Entries are files under the
//! store (`build-cache/entries/<key>.json`); their layers and blobs are
//! held by one lease of the store, so garbage collection keeps them until
//! `builder prune` lets them go.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use berth_image::digest::Digest;
use berth_image::leases::Resource;
use berth_image::store::{LayerInfo, Store};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const LEASE_LABEL: &str = "berth.build.cache";

/// What a cached step made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub layer: LayerInfo,
    /// When the step first ran (RFC 3339): the history entry's time, so a
    /// build all from cache makes the same image, byte for byte.
    pub created: String,
    /// Unix seconds of its last use (prune keeps the recent ones).
    #[serde(default)]
    pub used: i64,
}

pub struct Cache {
    dir: PathBuf,
    lease: String,
}

/// What `builder prune` removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub entries: usize,
    /// Unpacked bytes of the layers no entry holds any more.
    pub bytes: u64,
}

impl Cache {
    /// The store's cache, its lease made on first use.
    pub fn open(store: &Store) -> Result<Cache> {
        let dir = store.root.join("build-cache");
        let entries = dir.join("entries");
        std::fs::create_dir_all(&entries)
            .map_err(Error::io(format!("create {}", entries.display())))?;
        let _lock = lock(&dir, berth_base::lock::Kind::Exclusive)?;
        let file = dir.join("lease");
        let known = std::fs::read_to_string(&file).unwrap_or_default();
        let known = known.trim();
        let leases = store.leases()?;
        if leases.iter().any(|l| l.id == known) {
            return Ok(Cache {
                dir,
                lease: known.to_string(),
            });
        }
        let lease = store
            .lease_create(
                BTreeMap::from([(LEASE_LABEL.to_string(), "true".to_string())]),
                None,
            )?
            .id;
        // Entries of a lost lease would point at what nothing holds: they
        // are forgotten, and their layers held again as they are used.
        for e in std::fs::read_dir(&entries)
            .map_err(Error::io(format!("list {}", entries.display())))?
            .flatten()
        {
            let _ = std::fs::remove_file(e.path());
        }
        berth_base::fs::atomic_write(&file, lease.as_bytes(), 0o600)
            .map_err(Error::io(format!("write {}", file.display())))?;
        Ok(Cache { dir, lease })
    }

    fn entry_path(&self, key: &Digest) -> PathBuf {
        self.dir.join("entries").join(format!("{}.json", key.hex()))
    }

    /// The entry for `key`, if its layer is still in the store.
    pub fn get(&self, store: &Store, key: &Digest) -> Result<Option<Entry>> {
        let path = self.entry_path(key);
        let Ok(raw) = std::fs::read(&path) else {
            return Ok(None);
        };
        let Ok(mut e) = serde_json::from_slice::<Entry>(&raw) else {
            // A damaged entry is a miss; the step runs again and rewrites
            // it.
            return Ok(None);
        };
        if !store.has_layer(&e.layer.chain_id) || !store.has_blob(&e.layer.digest) {
            return Ok(None);
        }
        e.used = berth_image::store::now();
        let _ = self.write(&path, &e);
        Ok(Some(e))
    }

    /// Records what the step of `key` made, its layer held by the cache's
    /// lease from now on.
    pub fn put(&self, store: &Store, key: &Digest, e: &Entry) -> Result<()> {
        let _lock = lock(&self.dir, berth_base::lock::Kind::Shared)?;
        store.lease_add(&self.lease, &Resource::Layer(e.layer.chain_id.clone()))?;
        store.lease_add(&self.lease, &Resource::Blob(e.layer.digest.clone()))?;
        self.write(&self.entry_path(key), e)
    }

    fn write(&self, path: &std::path::Path, e: &Entry) -> Result<()> {
        let data = serde_json::to_vec(e).expect("an entry serialises");
        berth_base::fs::atomic_write(path, &data, 0o600)
            .map_err(Error::io(format!("write {}", path.display())))
    }

    /// Every entry, with its key.
    fn entries(&self) -> Result<Vec<(PathBuf, Option<Entry>)>> {
        let dir = self.dir.join("entries");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir)
            .map_err(Error::io(format!("list {}", dir.display())))?
            .flatten()
        {
            let entry = std::fs::read(e.path())
                .ok()
                .and_then(|raw| serde_json::from_slice(&raw).ok());
            out.push((e.path(), entry));
        }
        Ok(out)
    }

    /// Total unpacked bytes the cache holds, and its entry count.
    pub fn usage(&self) -> Result<(u64, usize)> {
        let entries = self.entries()?;
        let mut seen = HashSet::new();
        let bytes = entries
            .iter()
            .filter_map(|(_, e)| e.as_ref())
            .filter(|e| seen.insert(e.layer.chain_id.clone()))
            .map(|e| e.layer.unpacked)
            .sum();
        Ok((bytes, entries.len()))
    }

    /// Removes entries, least recently used first, until what is left
    /// holds at most `keep` bytes (all of them without `keep`); then the
    /// layers no entry holds leave the lease, and garbage collection
    /// takes those no image uses.
    pub fn prune(&self, store: &Store, keep: Option<u64>) -> Result<Pruned> {
        let _lock = lock(&self.dir, berth_base::lock::Kind::Exclusive)?;
        let mut entries = self.entries()?;
        // Newest first: kept while they fit.
        entries.sort_by_key(|(_, e)| std::cmp::Reverse(e.as_ref().map(|e| e.used).unwrap_or(0)));
        let mut kept_bytes = 0u64;
        let mut kept: HashSet<Digest> = HashSet::new();
        let mut out = Pruned::default();
        let mut dropped: Vec<LayerInfo> = Vec::new();
        for (path, e) in entries {
            let fits = match (&e, keep) {
                (Some(e), Some(k)) => {
                    kept.contains(&e.layer.chain_id) || kept_bytes + e.layer.unpacked <= k
                }
                _ => false,
            };
            match e {
                Some(e) if fits => {
                    if kept.insert(e.layer.chain_id.clone()) {
                        kept_bytes += e.layer.unpacked;
                    }
                }
                e => {
                    std::fs::remove_file(&path)
                        .map_err(Error::io(format!("remove {}", path.display())))?;
                    out.entries += 1;
                    dropped.extend(e.map(|e| e.layer));
                }
            }
        }
        let mut counted = HashSet::new();
        for l in dropped {
            if kept.contains(&l.chain_id) || !counted.insert(l.chain_id.clone()) {
                continue;
            }
            out.bytes += l.unpacked;
            store.lease_remove(&self.lease, &Resource::Layer(l.chain_id.clone()))?;
            store.lease_remove(&self.lease, &Resource::Blob(l.digest.clone()))?;
        }
        berth_image::images::collect(store)?;
        Ok(out)
    }
}

/// The cache's own lock: prune against concurrent puts.
fn lock(dir: &std::path::Path, kind: berth_base::lock::Kind) -> Result<berth_base::lock::Flock> {
    let path = dir.join("lock");
    berth_base::lock::Flock::acquire(
        &path,
        kind,
        berth_base::lock::Wait::For(std::time::Duration::from_secs(300)),
    )
    .map_err(Error::io(format!("lock {}", path.display())))?
    .ok_or_else(|| Error::invalid(path.display().to_string(), "not locked"))
}

/// A step's cache key: the digest of a canonical description of it (its
/// parent chain among the parts).
pub fn key(parts: &serde_json::Value) -> Digest {
    Digest::of(&serde_json::to_vec(parts).expect("a key serialises"))
}
