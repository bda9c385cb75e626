//! Snapshots by key, over chains of layers (after containerd's
//! snapshotter model). A snapshot is one of:
//!
//! - **committed**: read-only, its content a layer directory of the
//!   store (`layers/<chain>/diff`, the chain ID an image would give it),
//!   usable as a parent and as an image layer;
//! - **active**: writable, an upper and a work dir over its parent's
//!   layers (or, with the copy snapshotter, a merged copy of them);
//! - **view**: a read-only mount of a committed chain.
//!
//! A parent is a committed snapshot or a chain of image layers (chain
//! IDs, bottom first), so a container's root (the active snapshot
//! `containers/<id>`, parent the image's layers) and a builder's steps
//! are the same thing. `prepare` and `view` return the `Mounts` to make;
//! the caller mounts them where it wants.
//!
//! Records are rows of berth.db's `snapshots` table, written in the same
//! transaction as what goes with them (a container's row, a lease's
//! reference). Directories come after the record and go before it, so a
//! crash leaves at worst a record whose directory is missing (removing it
//! works) or a directory without a record (garbage collection takes it).
//! A committed snapshot stays while a lease holds it or another snapshot
//! has it as parent; `images::prune` and the other collections remove
//! the rest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use berth_base::userns::IdRange;

use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use crate::export::{Compression, ExportOptions};
use crate::leases::Resource;
use crate::snapshot::{self, Snapshotter};
use crate::store::{LayerInfo, Store, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Committed,
    Active,
    View,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Committed => "committed",
            Kind::Active => "active",
            Kind::View => "view",
        }
    }
}

/// A snapshot as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub key: String,
    pub kind: Kind,
    /// The committed snapshot it was made on, if it was made on one
    /// (rather than on image layers or on nothing).
    pub parent: Option<String>,
    /// The layers under it, as chain IDs, bottom first.
    pub lowers: Vec<Digest>,
    /// A committed snapshot's own layer.
    pub layer: Option<LayerInfo>,
    /// `overlay` or `copy` (active snapshots; views and committed ones are
    /// overlay).
    pub snapshotter: String,
    /// Active and view: its directory, relative to the store root.
    pub dir: Option<String>,
    /// Unix seconds.
    pub created: i64,
    pub labels: BTreeMap<String, String>,
}

impl Info {
    /// The layer chain a child of this snapshot stands on (bottom first).
    pub fn chain(&self) -> Vec<Digest> {
        let mut c = self.lowers.clone();
        if let Some(l) = &self.layer {
            c.push(l.chain_id.clone());
        }
        c
    }

    fn dir_path(&self, store: &Store) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| store.root.join(d))
    }

    fn kind_of_snapshotter(&self) -> Result<Snapshotter> {
        Snapshotter::parse(&self.snapshotter)
    }
}

/// What a new snapshot stands on.
#[derive(Debug, Clone, Copy)]
pub enum Parent<'a> {
    /// A committed snapshot, by key.
    Snapshot(&'a str),
    /// Image layers by chain ID, bottom first.
    Layers(&'a [Digest]),
}

/// The uid and gid maps of a container's user namespace, kept in its
/// snapshot's labels so that a remount (after a reboot) maps alike.
///
/// Overlayfs cannot itself be mounted id-mapped, so each lower is: an
/// id-mapped clone of the layer's directory, on which a file the layer
/// owns as root shows as the namespace's root. The upper dir is not (the
/// kernel refuses an id-mapped upper to a mounter outside the map): what
/// the container writes is stored with host ids, and its root directory
/// is made the namespace root's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

const UIDMAP_LABEL: &str = "berth.uidmap";
const GIDMAP_LABEL: &str = "berth.gidmap";

impl IdMap {
    fn text(ranges: &[IdRange]) -> String {
        ranges
            .iter()
            .map(|r| format!("{}:{}:{}", r.inside, r.outside, r.size))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn parse(label: &str, text: &str) -> Result<Vec<IdRange>> {
        let bad = || {
            Error::invalid(
                format!("snapshot label {label}"),
                format!("{text:?} is not a map"),
            )
        };
        text.split(',')
            .map(|r| {
                let n: Vec<u32> = r
                    .split(':')
                    .map(|x| x.parse().map_err(|_| bad()))
                    .collect::<Result<_>>()?;
                match n[..] {
                    [inside, outside, size] if size > 0 => Ok(IdRange {
                        inside,
                        outside,
                        size,
                    }),
                    _ => Err(bad()),
                }
            })
            .collect()
    }

    fn to_labels(&self, labels: &mut BTreeMap<String, String>) {
        labels.insert(UIDMAP_LABEL.into(), IdMap::text(&self.uids));
        labels.insert(GIDMAP_LABEL.into(), IdMap::text(&self.gids));
    }

    fn from_labels(labels: &BTreeMap<String, String>) -> Result<Option<IdMap>> {
        match (labels.get(UIDMAP_LABEL), labels.get(GIDMAP_LABEL)) {
            (Some(u), Some(g)) => Ok(Some(IdMap {
                uids: IdMap::parse(UIDMAP_LABEL, u)?,
                gids: IdMap::parse(GIDMAP_LABEL, g)?,
            })),
            _ => Ok(None),
        }
    }
}

/// What to mount for a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mounts {
    /// Layers (chain IDs, top first) under an upper and work dir, or
    /// read-only without. `empty` is the lower used when there are no
    /// layers.
    Overlay {
        lowers: Vec<Digest>,
        upper: Option<(PathBuf, PathBuf)>,
        empty: PathBuf,
        /// The container's user namespace maps: lowers are mounted
        /// id-mapped through them (see `IdMap`).
        idmap: Option<IdMap>,
    },
    /// A directory bound in place (a copy snapshot, a one-layer view).
    Bind { source: PathBuf, readonly: bool },
}

impl Mounts {
    /// Mounts the snapshot on `target` (nothing to do when it is mounted
    /// there, or is that directory).
    pub fn mount(&self, store: &Store, target: &Path) -> Result<()> {
        match self {
            Mounts::Overlay {
                lowers,
                upper,
                empty,
                idmap,
            } => snapshot::mount_overlay(
                store,
                lowers,
                upper.as_ref().map(|(u, w)| (u.as_path(), w.as_path())),
                empty,
                target,
                idmap.as_ref(),
                false,
            ),
            Mounts::Bind { source, readonly } => snapshot::mount_bind(source, target, *readonly),
        }
    }

    /// The writable directory holding the snapshot's own changes: the
    /// upper dir of an overlay.
    pub fn upper(&self) -> Option<&Path> {
        match self {
            Mounts::Overlay {
                upper: Some((u, _)),
                ..
            } => Some(u),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    /// Default overlay.
    pub snapshotter: Option<Snapshotter>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub compression: Compression,
    pub labels: BTreeMap<String, String>,
    /// A lease to hold the committed snapshot, recorded with it (so that
    /// no collection comes between).
    pub lease: Option<String>,
}

/// Bytes and inodes of a snapshot's own content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub size: u64,
    pub inodes: u64,
}

/// The key of a container's snapshot.
pub fn container_key(id: &str) -> String {
    format!("containers/{id}")
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 512 || key.contains('\0') {
        return Err(Error::invalid(
            format!("snapshot key {key:?}"),
            "use 1-512 bytes without NUL",
        ));
    }
    Ok(())
}

/// A directory name for a snapshot of `key` in snapshots/.
fn dir_for(key: &str) -> String {
    format!("snapshots/{}", &Digest::of(key.as_bytes()).hex()[..32])
}

pub(crate) fn get(db: &Connection, key: &str) -> Result<Option<Info>> {
    let raw: Option<String> = db
        .query_row("SELECT record FROM snapshots WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?;
    raw.map(|s| {
        serde_json::from_str(&s).map_err(|e| Error::invalid(format!("record of snapshot {key}"), e))
    })
    .transpose()
}

pub(crate) fn all(db: &Connection) -> Result<Vec<Info>> {
    let mut q = db.prepare("SELECT key, record FROM snapshots ORDER BY key")?;
    let rows: Vec<(String, String)> = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(k, s)| {
            serde_json::from_str(&s)
                .map_err(|e| Error::invalid(format!("record of snapshot {k}"), e))
        })
        .collect()
}

fn insert(tx: &Transaction<'_>, info: &Info) -> Result<()> {
    let n = tx.execute(
        "INSERT OR IGNORE INTO snapshots (key, kind, parent, record) VALUES (?1, ?2, ?3, ?4)",
        params![
            info.key,
            info.kind.name(),
            info.parent,
            serde_json::to_string(info).expect("record serialises")
        ],
    )?;
    if n == 0 {
        return Err(Error::invalid(
            format!("snapshot {}", info.key),
            "a snapshot with this key exists",
        ));
    }
    Ok(())
}

/// Schema version 1: every container gets its snapshot record (its
/// parent the image's layers), so containers made before snapshots had
/// records are snapshots like any other.
pub(crate) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= crate::store::SCHEMA_VERSION {
        return Ok(());
    }
    crate::store::retry_busy(|| {
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < 1 {
            let rows: Vec<(String, String, String, i64)> = {
                let mut q = tx.prepare(
                    "SELECT c.id, c.image, c.snapshotter, c.created FROM containers c \
                     WHERE NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.key = 'containers/' || c.id)",
                )?;
                q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<Result<_, _>>()?
            };
            for (id, image, kind, created) in rows {
                let record: Option<String> = tx
                    .query_row("SELECT record FROM images WHERE id = ?1", [&image], |r| {
                        r.get(0)
                    })
                    .optional()?;
                let lowers = record
                    .and_then(|r| serde_json::from_str::<crate::store::ImageRecord>(&r).ok())
                    .map(|i| i.layers.into_iter().map(|l| l.chain_id).collect())
                    .unwrap_or_default();
                let info = container_info(&id, lowers, &kind, created);
                tx.execute(
                    "INSERT OR IGNORE INTO snapshots (key, kind, parent, record) VALUES (?1, 'active', NULL, ?2)",
                    params![info.key, serde_json::to_string(&info).expect("record serialises")],
                )?;
            }
        }
        tx.execute_batch(&format!(
            "PRAGMA user_version = {}",
            crate::store::SCHEMA_VERSION
        ))?;
        tx.commit()
    })
}

fn container_info(id: &str, lowers: Vec<Digest>, snapshotter: &str, created: i64) -> Info {
    Info {
        key: container_key(id),
        kind: Kind::Active,
        parent: None,
        lowers,
        layer: None,
        snapshotter: snapshotter.to_string(),
        dir: Some(format!("containers/{id}")),
        created,
        labels: BTreeMap::new(),
    }
}

/// The snapshot API on one store.
pub struct Snapshots<'a> {
    store: &'a Store,
}

impl Store {
    pub fn snapshots(&self) -> Snapshots<'_> {
        Snapshots { store: self }
    }
}

impl Snapshots<'_> {
    /// The snapshot `key`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        get(&self.store.db(), key)?.ok_or_else(|| Error::NotFound(format!("snapshot {key}")))
    }

    /// Every snapshot, by key.
    pub fn walk(&self) -> Result<Vec<Info>> {
        all(&self.store.db())
    }

    /// The parent's key and the layers under a new snapshot on it.
    fn resolve(&self, parent: Option<Parent<'_>>) -> Result<(Option<String>, Vec<Digest>)> {
        match parent {
            None => Ok((None, Vec::new())),
            Some(Parent::Snapshot(p)) => {
                let info = self.stat(p)?;
                if info.kind != Kind::Committed {
                    return Err(Error::invalid(
                        format!("parent snapshot {p}"),
                        format!(
                            "it is {}; only a committed snapshot can be a parent",
                            info.kind.name()
                        ),
                    ));
                }
                Ok((Some(p.to_string()), info.chain()))
            }
            Some(Parent::Layers(chains)) => {
                for c in chains {
                    if !self.store.has_layer(c) {
                        return Err(Error::NotFound(format!(
                            "layer {c} (a parent layer is missing from the store: pull its image again)"
                        )));
                    }
                }
                Ok((None, chains.to_vec()))
            }
        }
    }

    fn mounts_of(&self, info: &Info) -> Result<Mounts> {
        let dir = info.dir_path(self.store);
        let top_first: Vec<Digest> = info.chain().into_iter().rev().collect();
        let dir_or = |what: &str| {
            dir.clone().ok_or_else(|| {
                Error::invalid(
                    format!("snapshot {}", info.key),
                    format!("no directory for {what}"),
                )
            })
        };
        Ok(match info.kind {
            Kind::Committed => match top_first.len() {
                1 => Mounts::Bind {
                    source: self.store.layer_diff(&top_first[0]),
                    readonly: true,
                },
                _ => Mounts::Overlay {
                    lowers: top_first,
                    upper: None,
                    empty: self.store.root.join("tmp"),
                    idmap: None,
                },
            },
            Kind::View => match top_first.len() {
                0 => Mounts::Bind {
                    source: dir_or("a view")?.join("empty"),
                    readonly: true,
                },
                1 => Mounts::Bind {
                    source: self.store.layer_diff(&top_first[0]),
                    readonly: true,
                },
                _ => Mounts::Overlay {
                    lowers: top_first,
                    upper: None,
                    empty: dir_or("a view")?.join("empty"),
                    idmap: None,
                },
            },
            Kind::Active => {
                let dir = dir_or("an active snapshot")?;
                match info.kind_of_snapshotter()? {
                    Snapshotter::Copy => Mounts::Bind {
                        source: dir.join("rootfs"),
                        readonly: false,
                    },
                    Snapshotter::Overlay => Mounts::Overlay {
                        lowers: top_first,
                        upper: Some((dir.join("upper"), dir.join("work"))),
                        empty: dir.join("empty"),
                        idmap: IdMap::from_labels(&info.labels)?,
                    },
                }
            }
        })
    }

    /// What to mount for snapshot `key`.
    pub fn mounts(&self, key: &str) -> Result<Mounts> {
        let info = self.stat(key)?;
        self.mounts_of(&info)
    }

    /// A new active (writable) snapshot on `parent`.
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<Parent<'_>>,
        opts: &PrepareOptions,
    ) -> Result<Mounts> {
        check_key(key)?;
        // Shared, as every writer: no collection takes the parent's layers
        // between the look at them and the record that holds them.
        let _lock = self.store.lock_shared()?;
        let (parent, lowers) = self.resolve(parent)?;
        let kind = opts.snapshotter.unwrap_or(Snapshotter::Overlay);
        let info = Info {
            key: key.to_string(),
            kind: Kind::Active,
            parent,
            lowers,
            layer: None,
            snapshotter: kind.name().to_string(),
            dir: Some(dir_for(key)),
            created: now(),
            labels: opts.labels.clone(),
        };
        self.create(&info, |_| Ok(()))
    }

    /// A new read-only view of `parent`.
    pub fn view(
        &self,
        key: &str,
        parent: Option<Parent<'_>>,
        labels: BTreeMap<String, String>,
    ) -> Result<Mounts> {
        check_key(key)?;
        let _lock = self.store.lock_shared()?;
        let (parent, lowers) = self.resolve(parent)?;
        let info = Info {
            key: key.to_string(),
            kind: Kind::View,
            parent,
            lowers,
            layer: None,
            snapshotter: Snapshotter::Overlay.name().to_string(),
            dir: Some(dir_for(key)),
            created: now(),
            labels,
        };
        self.create(&info, |_| Ok(()))
    }

    /// Records `info` (with whatever `also` adds in the same transaction),
    /// then makes its directories. On failure nothing is left.
    fn create(
        &self,
        info: &Info,
        also: impl FnOnce(&Transaction<'_>) -> Result<()>,
    ) -> Result<Mounts> {
        {
            let mut db = self.store.db();
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            insert(&tx, info)?;
            also(&tx)?;
            tx.commit()?;
        }
        match self.make_dirs(info) {
            Ok(m) => Ok(m),
            Err(e) => {
                if let Some(d) = info.dir_path(self.store) {
                    let _ = snapshot::unmount_all(&d.join("rootfs"));
                    let _ = crate::remove::remove_tree(&d);
                }
                let _ = self.delete_records(&info.key, |_| Ok(()));
                Err(e)
            }
        }
    }

    fn make_dirs(&self, info: &Info) -> Result<Mounts> {
        let dir = info
            .dir_path(self.store)
            .expect("new snapshots have a directory");
        let subdirs: &[&str] = match (info.kind, info.kind_of_snapshotter()?) {
            (Kind::View, _) => &["empty"],
            (_, Snapshotter::Copy) => &["rootfs"],
            _ => &["upper", "work"],
        };
        for d in subdirs {
            std::fs::create_dir_all(dir.join(d)).ctx(|| format!("create {}/{d}", dir.display()))?;
        }
        if info.kind == Kind::Active && info.kind_of_snapshotter()? == Snapshotter::Copy {
            snapshot::copy_layers(self.store, &info.lowers, &dir.join("rootfs"))?;
        }
        self.mounts_of(info)
    }

    fn delete_records(
        &self,
        key: &str,
        also: impl FnOnce(&Transaction<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut db = self.store.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM snapshots WHERE key = ?1", [key])?;
        tx.execute(
            "DELETE FROM lease_resources WHERE kind = 'snapshot' AND id = ?1",
            [key],
        )?;
        also(&tx)?;
        tx.commit()?;
        Ok(())
    }

    fn children(&self, key: &str) -> Result<Vec<String>> {
        let db = self.store.db();
        let mut q = db.prepare("SELECT key FROM snapshots WHERE parent = ?1 ORDER BY key")?;
        let v = q
            .query_map([key], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Turns active snapshot `active` into committed snapshot `name`: its
    /// upper dir becomes a layer (blob and layer directory, see export.rs)
    /// on its parent's chain, and the active snapshot is gone. The caller
    /// has unmounted it (or keeps it from changing).
    pub fn commit(&self, name: &str, active: &str, opts: &CommitOptions) -> Result<Info> {
        check_key(name)?;
        let _lock = self.store.lock_shared()?;
        let info = self.stat(active)?;
        if info.kind != Kind::Active {
            return Err(Error::invalid(
                format!("snapshot {active}"),
                format!(
                    "it is {}; only an active snapshot can be committed",
                    info.kind.name()
                ),
            ));
        }
        if get(&self.store.db(), name)?.is_some() {
            return Err(Error::invalid(
                format!("snapshot {name}"),
                "a snapshot with this key exists",
            ));
        }
        let mounts = self.mounts_of(&info)?;
        let upper = mounts.upper().ok_or_else(|| Error::Unsupported {
            what: format!("commit of snapshot {active}"),
            why: format!(
                "it uses the {} snapshotter; a commit needs an overlay upper dir",
                info.snapshotter
            ),
        })?;
        let layer = crate::export::export_layer(
            self.store,
            upper,
            info.lowers.last(),
            &ExportOptions {
                compression: opts.compression,
                exclude: Vec::new(),
            },
        )?;
        let committed = Info {
            key: name.to_string(),
            kind: Kind::Committed,
            parent: info.parent.clone(),
            lowers: info.lowers.clone(),
            layer: Some(layer),
            snapshotter: Snapshotter::Overlay.name().to_string(),
            dir: None,
            created: now(),
            labels: opts.labels.clone(),
        };
        {
            let mut db = self.store.db();
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM snapshots WHERE key = ?1", [active])?;
            insert(&tx, &committed)?;
            if let Some(lease) = &opts.lease {
                crate::leases::add_in(&tx, lease, &Resource::Snapshot(name.to_string()))?;
            }
            tx.commit()?;
        }
        if let Some(d) = info.dir_path(self.store) {
            self.store.discard(&d)?;
        }
        Ok(committed)
    }

    /// Removes snapshot `key`; refused while another snapshot stands on
    /// it. An active snapshot or view goes with its directory (unmounted
    /// first where the caller mounted it there); a committed snapshot's
    /// layer goes unless an image or another snapshot uses it.
    pub fn remove(&self, key: &str) -> Result<()> {
        let info = self.stat(key)?;
        if let Some(id) = key.strip_prefix("containers/")
            && self.store.container(id)?.is_some()
        {
            return Err(Error::invalid(
                format!("snapshot {key}"),
                format!("it is container {id}'s root: remove the container"),
            ));
        }
        let kids = self.children(key)?;
        if !kids.is_empty() {
            return Err(Error::invalid(
                format!("snapshot {key}"),
                format!(
                    "snapshots stand on it ({}): remove them first",
                    kids.join(", ")
                ),
            ));
        }
        match info.kind {
            Kind::Committed => {
                let _lock = self.store.lock_exclusive()?;
                self.delete_records(key, |_| Ok(()))?;
                let chain = info
                    .chain()
                    .pop()
                    .expect("a committed snapshot has a layer");
                if !crate::images::layer_in_use(self.store, &chain)? {
                    self.store.discard(&self.store.layer_dir(&chain))?;
                }
                Ok(())
            }
            Kind::Active | Kind::View => {
                self.delete_records(key, |_| Ok(()))?;
                if let Some(d) = info.dir_path(self.store) {
                    snapshot::unmount_all(&d.join("rootfs"))?;
                    self.store.discard(&d)?;
                }
                Ok(())
            }
        }
    }

    /// Bytes (allocated) and inodes of the snapshot's own content: an
    /// active snapshot's upper dir (or copy), a committed one's layer; a
    /// view has none. Hardlinked files count once.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let info = self.stat(key)?;
        let dir = match info.kind {
            Kind::View => return Ok(Usage::default()),
            Kind::Committed => self.store.layer_diff(&info.chain().pop().expect("a layer")),
            Kind::Active => match self.mounts_of(&info)? {
                Mounts::Overlay {
                    upper: Some((u, _)),
                    ..
                } => u,
                Mounts::Bind { source, .. } => source,
                Mounts::Overlay { .. } => return Ok(Usage::default()),
            },
        };
        let mut u = Usage { size: 0, inodes: 1 };
        let mut seen = std::collections::HashSet::new();
        crate::upper::UpperDir::open(&dir)?.walk(&[], false, |n| {
            if n.nlink > 1 && !seen.insert((n.dev, n.ino)) {
                return Ok(());
            }
            u.inodes += 1;
            u.size += n.blocks;
            Ok(())
        })?;
        Ok(u)
    }
}

/// A container's snapshot: active, on the image's layers, in
/// `containers/<id>` (where its bundle goes too). Recorded in one
/// transaction with the container's row, which keeps the image from
/// removal.
pub(crate) fn prepare_container(
    store: &Store,
    id: &str,
    image: &crate::store::ImageRecord,
    kind: Snapshotter,
    idmap: Option<&IdMap>,
) -> Result<Mounts> {
    if idmap.is_some() && kind != Snapshotter::Overlay {
        return Err(Error::Unsupported {
            what: "a user namespace's rootfs".into(),
            why: "it needs the overlay snapshotter (id-mapped lowers)".into(),
        });
    }
    let chains: Vec<Digest> = image.layers.iter().map(|l| l.chain_id.clone()).collect();
    for l in &image.layers {
        if !store.has_layer(&l.chain_id) {
            return Err(Error::invalid(
                format!("image {}", image.id.short()),
                format!(
                    "layer {} is missing from the store: pull the image again",
                    l.digest
                ),
            ));
        }
    }
    let mut info = container_info(id, chains, kind.name(), now());
    if let Some(m) = idmap {
        m.to_labels(&mut info.labels);
    }
    let snaps = store.snapshots();
    let mounts = snaps.create(&info, |tx| {
        let n = tx.execute(
            "INSERT OR IGNORE INTO containers (id, image, snapshotter, created) VALUES (?1, ?2, ?3, ?4)",
            params![id, image.id.as_str(), kind.name(), info.created],
        )?;
        if n == 0 {
            return Err(Error::invalid(
                format!("container {id}"),
                "a snapshot with this id already exists",
            ));
        }
        Ok(())
    })?;
    if let (Some(m), Some(upper)) = (idmap, mounts.upper()) {
        // The overlay's root directory is the upper dir's: the owner the
        // image gives its root, as the namespace sees it.
        let top = info.lowers.last().map(|c| store.layer_diff(c));
        let (uid, gid) = match top.map(std::fs::metadata) {
            Some(Ok(md)) => {
                use std::os::unix::fs::MetadataExt;
                (md.uid(), md.gid())
            }
            _ => (0, 0),
        };
        let host = |ranges: &[IdRange], id: u32, what: &str| {
            berth_base::userns::to_host(ranges, id).ok_or_else(|| {
                Error::invalid(
                    format!("the {what} map"),
                    format!("it does not map id {id}, which owns the image's root"),
                )
            })
        };
        let owned = host(&m.uids, uid, "uid")
            .and_then(|u| Ok((u, host(&m.gids, gid, "gid")?)))
            .and_then(|(u, g)| {
                std::os::unix::fs::chown(upper, Some(u), Some(g))
                    .ctx(|| format!("chown {}", upper.display()))
            });
        if let Err(e) = owned {
            let _ = remove_container(store, id);
            return Err(e);
        }
    }
    Ok(mounts)
}

/// Removes a container's snapshot (unmounting its rootfs) and its row.
/// Missing is fine.
pub(crate) fn remove_container(store: &Store, id: &str) -> Result<()> {
    let dir = snapshot::container_dir(store, id);
    snapshot::unmount_all(&dir.join("rootfs"))?;
    crate::remove::remove_tree(&dir)?;
    store.snapshots().delete_records(&container_key(id), |tx| {
        tx.execute("DELETE FROM containers WHERE id = ?1", [id])?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::Resource;

    /// A store with one image layer holding `base` = "base".
    fn store_with_layer() -> (tempfile::TempDir, Store, Digest) {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        let chain = Digest::of(b"base layer");
        let tmp = store.layer_temp(&chain, &chain);
        std::fs::create_dir_all(tmp.join("diff/dir")).unwrap();
        std::fs::write(tmp.join("diff/base"), b"base").unwrap();
        std::fs::write(tmp.join("diff/dir/old"), b"old").unwrap();
        store.commit_layer(&tmp, &chain, 1).unwrap();
        (d, store, chain)
    }

    /// Mounts `m` on a fresh directory, unmounted when dropped.
    struct Mounted(PathBuf);
    impl Mounted {
        fn new(store: &Store, m: &Mounts, at: PathBuf) -> Mounted {
            std::fs::create_dir_all(&at).unwrap();
            m.mount(store, &at).unwrap();
            Mounted(at)
        }
    }
    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = snapshot::unmount_all(&self.0);
        }
    }

    #[test]
    fn prepare_commit_chains_views_and_removal() {
        let (d, store, base) = store_with_layer();
        let snaps = store.snapshots();
        let layers = [base.clone()];
        // A step on the image's layer: add a file, delete one.
        let m = snaps
            .prepare(
                "step1",
                Some(Parent::Layers(&layers)),
                &PrepareOptions::default(),
            )
            .unwrap();
        {
            let at = Mounted::new(&store, &m, d.path().join("m1"));
            assert_eq!(std::fs::read(at.0.join("base")).unwrap(), b"base");
            std::fs::write(at.0.join("one"), b"1").unwrap();
            std::fs::remove_file(at.0.join("dir/old")).unwrap();
        }
        assert_eq!(snaps.mounts("step1").unwrap(), m);
        let u = snaps.usage("step1").unwrap();
        assert!(u.inodes >= 4 && u.size > 0, "{u:?}");
        let c1 = snaps
            .commit("c1", "step1", &CommitOptions::default())
            .unwrap();
        assert_eq!(c1.kind, Kind::Committed);
        assert!(snaps.stat("step1").is_err(), "the active snapshot is gone");
        let l1 = c1.layer.clone().unwrap();
        assert_eq!(
            l1.chain_id,
            Digest::of(format!("{base} {}", l1.diff_id).as_bytes()),
            "a chain ID as an image would have"
        );
        assert!(store.has_layer(&l1.chain_id) && store.has_blob(&l1.digest));
        // A second step on the committed one sees both layers.
        let m2 = snaps
            .prepare(
                "step2",
                Some(Parent::Snapshot("c1")),
                &PrepareOptions::default(),
            )
            .unwrap();
        match &m2 {
            Mounts::Overlay { lowers, .. } => {
                assert_eq!(lowers, &[l1.chain_id.clone(), base.clone()])
            }
            other => panic!("{other:?}"),
        }
        {
            let at = Mounted::new(&store, &m2, d.path().join("m2"));
            assert_eq!(std::fs::read(at.0.join("one")).unwrap(), b"1");
            assert!(!at.0.join("dir/old").exists());
            std::fs::write(at.0.join("two"), b"2").unwrap();
        }
        let c2 = snaps
            .commit("c2", "step2", &CommitOptions::default())
            .unwrap();
        assert_eq!(c2.parent.as_deref(), Some("c1"));
        assert_eq!(c2.chain().len(), 3);
        // A read-only view of the chain.
        let v = snaps
            .view("v", Some(Parent::Snapshot("c2")), BTreeMap::new())
            .unwrap();
        {
            let at = Mounted::new(&store, &v, d.path().join("v"));
            assert_eq!(std::fs::read(at.0.join("two")).unwrap(), b"2");
            assert_eq!(std::fs::read(at.0.join("base")).unwrap(), b"base");
            let err = std::fs::write(at.0.join("x"), b"x").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        }
        // Only committed snapshots are parents.
        let err = snaps
            .prepare(
                "bad",
                Some(Parent::Snapshot("v")),
                &PrepareOptions::default(),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("only a committed snapshot"),
            "{err}"
        );
        let err = snaps
            .prepare("v", None, &PrepareOptions::default())
            .unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");

        let walked: Vec<(String, Kind, Option<String>)> = snaps
            .walk()
            .unwrap()
            .into_iter()
            .map(|s| (s.key, s.kind, s.parent))
            .collect();
        assert_eq!(
            walked,
            [
                ("c1".into(), Kind::Committed, None),
                ("c2".into(), Kind::Committed, Some("c1".into())),
                ("v".into(), Kind::View, Some("c2".into())),
            ]
        );
        assert_eq!(snaps.usage("v").unwrap(), Usage::default());
        let u = snaps.usage("c2").unwrap();
        assert_eq!(u.inodes, 2, "the layer's root and `two`");

        // Removal waits for the children.
        let err = snaps.remove("c1").unwrap_err().to_string();
        assert!(err.contains("c2"), "{err}");
        let err = snaps.remove("c2").unwrap_err().to_string();
        assert!(err.contains("v"), "{err}");
        snaps.remove("v").unwrap();
        snaps.remove("c2").unwrap();
        assert!(!store.has_layer(&c2.layer.unwrap().chain_id));
        snaps.remove("c1").unwrap();
        assert!(!store.has_layer(&l1.chain_id));
        assert!(snaps.walk().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(store.root.join("snapshots"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_leased_cache_layer_survives_prune_until_released() {
        let (d, store, base) = store_with_layer();
        let snaps = store.snapshots();
        let layers = [base];
        let lease = store
            .lease_create(
                BTreeMap::from([("purpose".to_string(), "build cache".to_string())]),
                None,
            )
            .unwrap();
        let mut made = Vec::new();
        for (key, leased) in [("cached", true), ("loose", false)] {
            let m = snaps
                .prepare(
                    &format!("{key}-work"),
                    Some(Parent::Layers(&layers)),
                    &PrepareOptions::default(),
                )
                .unwrap();
            {
                let at = Mounted::new(&store, &m, d.path().join(key));
                std::fs::write(at.0.join(key), key).unwrap();
            }
            let opts = CommitOptions {
                lease: leased.then(|| lease.id.clone()),
                ..CommitOptions::default()
            };
            made.push(snaps.commit(key, &format!("{key}-work"), &opts).unwrap());
        }
        let (cached, loose) = (
            made[0].layer.clone().unwrap(),
            made[1].layer.clone().unwrap(),
        );
        assert_eq!(
            store.leases().unwrap()[0].resources,
            [Resource::Snapshot("cached".into())]
        );
        crate::images::prune(&store, true).unwrap();
        // No image has them: the leased one stays, the other goes.
        assert!(snaps.stat("cached").is_ok());
        assert!(store.has_layer(&cached.chain_id) && store.has_blob(&cached.digest));
        assert!(snaps.stat("loose").is_err());
        assert!(!store.has_layer(&loose.chain_id) && !store.has_blob(&loose.digest));
        // A lease can hold a blob alone too.
        let blob = Digest::of(b"held blob");
        store.put_blob(b"held blob", &blob).unwrap();
        store
            .lease_add(&lease.id, &Resource::Blob(blob.clone()))
            .unwrap();
        crate::images::prune(&store, true).unwrap();
        assert!(store.has_blob(&blob) && store.has_layer(&cached.chain_id));

        assert!(store.lease_release(&lease.id).unwrap());
        assert!(store.leases().unwrap().is_empty());
        crate::images::prune(&store, true).unwrap();
        assert!(snaps.stat("cached").is_err());
        assert!(!store.has_layer(&cached.chain_id) && !store.has_blob(&cached.digest));
        assert!(!store.has_blob(&blob));

        // An expired lease holds nothing, and is dropped.
        let short = store
            .lease_create(BTreeMap::new(), Some(std::time::Duration::from_secs(1)))
            .unwrap();
        store
            .lease_add(&short.id, &Resource::Blob(blob.clone()))
            .unwrap();
        store.put_blob(b"held blob", &blob).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2100));
        crate::images::prune(&store, true).unwrap();
        assert!(!store.has_blob(&blob));
        assert!(store.leases().unwrap().is_empty());
        let err = store
            .lease_add(&short.id, &Resource::Blob(blob))
            .unwrap_err();
        assert!(err.to_string().contains("lease"), "{err}");
    }

    #[test]
    fn containers_made_before_snapshot_records_get_theirs_on_open() {
        let (d, store, base) = store_with_layer();
        let image = crate::store::ImageRecord {
            id: Digest::of(b"config"),
            manifest_digest: Digest::of(b"manifest"),
            manifest_media_type: crate::manifest::OCI_MANIFEST.into(),
            config_size: 0,
            layers: vec![LayerInfo {
                digest: Digest::of(b"blob"),
                size: 1,
                media_type: crate::manifest::OCI_LAYER.into(),
                diff_id: base.clone(),
                chain_id: base.clone(),
                unpacked: 1,
            }],
            created: None,
            added: 0,
            extra_blobs: Vec::new(),
            names: Vec::new(),
            repo_digests: Vec::new(),
            digest_names: Vec::new(),
        };
        store.put_image(&image, &[], &[], &[]).unwrap();
        // As an older berth left it: a container row, no snapshot, schema 0.
        {
            let db = store.db();
            db.execute(
                "INSERT INTO containers (id, image, snapshotter, created) VALUES ('old', ?1, 'overlay', 5)",
                [image.id.as_str()],
            )
            .unwrap();
            db.execute_batch("PRAGMA user_version = 0").unwrap();
        }
        drop(store);
        let store = Store::open(&d.path().join("root")).unwrap();
        let info = store.snapshots().stat("containers/old").unwrap();
        assert_eq!(info.kind, Kind::Active);
        assert_eq!(info.lowers, [base]);
        assert_eq!(info.dir.as_deref(), Some("containers/old"));
        // It goes with its container, not on its own.
        let err = store.snapshots().remove("containers/old").unwrap_err();
        assert!(err.to_string().contains("remove the container"), "{err}");
        let v: i64 = store
            .db()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, crate::store::SCHEMA_VERSION);
    }
}
