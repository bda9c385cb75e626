//! The local store under one root:
//!
//! ```text
//! blobs/sha256/<hex>        content-addressed blobs, verified before rename
//! ingest/<hex>.partial      a blob being downloaded; kept for resume
//! layers/<chain-hex>/diff   an unpacked layer, shared by every image with it
//! layers/<chain-hex>/size   its unpacked (tar stream) size
//! l/<short>                 -> ../layers/<chain-hex>/diff, short overlay lowers
//! containers/<id>/          containers' snapshots and bundles
//! snapshots/<hex>/          other active snapshots and views (snapshots.rs)
//! locks/                    per-blob flock files
//! tmp/                      files being made, trees being deleted
//! store.lock                shared by writers, exclusive for removal
//! berth.db                  image, snapshot and lease records (SQLite, WAL)
//! ```
//!
//! Every file and directory is made under a temporary name, verified,
//! synced and renamed into place, so a crash leaves either nothing or the
//! whole thing; leftovers under temporary names are removed by the next
//! writer of the same blob or by `prune`. Removal goes the other way: a
//! tree is first renamed into tmp/, then deleted.
//!
//! The store is private (0700, and so is every directory in it): layers
//! hold images' setuid binaries and device nodes with their own modes,
//! which no host user may reach.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Context, Error, Result};

pub struct Store {
    pub root: PathBuf,
    db: Mutex<Connection>,
}

/// One layer of an image, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerInfo {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// Bytes of the uncompressed tar stream.
    pub unpacked: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest, as docker and podman name images.
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config_size: u64,
    pub layers: Vec<LayerInfo>,
    /// The image's own creation time (RFC 3339), if its config says.
    pub created: Option<String>,
    /// When it entered this store (Unix seconds).
    pub added: i64,
    /// Other blobs the image keeps alive: the index it was chosen from.
    pub extra_blobs: Vec<Digest>,
    /// Tags.
    pub names: Vec<String>,
    /// `repo@digest` for every manifest (and index) the image came as.
    pub repo_digests: Vec<String>,
    /// `repo@digest` references the image was pulled by: names of their
    /// own, which keep it from being dangling (as in podman).
    #[serde(default)]
    pub digest_names: Vec<String>,
}

impl ImageRecord {
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.unpacked).sum()
    }

    /// No tag and not pulled by digest: what `image prune` removes and
    /// `images --filter dangling=true` lists (as in podman).
    pub fn is_dangling(&self) -> bool {
        self.names.is_empty() && self.digest_names.is_empty()
    }

    pub fn top_layer(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }
}

/// An flock held until dropped.
pub struct Lock(#[allow(dead_code)] File);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,
    image TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS repo_digests (
    name TEXT PRIMARY KEY,
    image TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS digest_names (
    name TEXT PRIMARY KEY,
    image TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    snapshotter TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    parent TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots (parent);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER
);
CREATE TABLE IF NOT EXISTS lease_resources (
    lease TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (lease, kind, id)
);
";

/// The schema version this code writes (`PRAGMA user_version`): 1 added
/// snapshots and leases, and gave every container a snapshot record.
pub const SCHEMA_VERSION: i64 = 1;

const DIRS: [&str; 9] = [
    "blobs",
    "blobs/sha256",
    "ingest",
    "layers",
    "l",
    "containers",
    "snapshots",
    "locks",
    "tmp",
];

impl Store {
    /// Opens (making if needed) the store at `root`, making it and its
    /// directories private if they were not.
    pub fn open(root: &Path) -> Result<Store> {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
        }
        make_private(root)?;
        for d in DIRS {
            make_private(&root.join(d))?;
        }
        let root = root
            .canonicalize()
            .ctx(|| format!("resolve {}", root.display()))?;
        let conn = open_db(&root.join("berth.db"), SCHEMA)?;
        crate::snapshots::migrate(&conn)?;
        Ok(Store {
            root,
            db: Mutex::new(conn),
        })
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("{}.partial", d.hex()))
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        fs::read(self.blob_path(d)).ctx(|| format!("read blob {d}"))
    }

    /// Stores a small blob held in memory, after checking its digest.
    pub fn put_blob(&self, data: &[u8], expected: &Digest) -> Result<()> {
        let actual = Digest::of(data);
        if &actual != expected {
            return Err(Error::DigestMismatch {
                what: format!("blob {expected}"),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        if self.has_blob(expected) {
            return Ok(());
        }
        let tmp = self.temp_path("blob");
        let mut f = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .ctx(|| format!("write {}", tmp.display()))?;
        self.commit_file(&tmp, expected)
    }

    /// Renames a complete, synced file into place as blob `d`.
    pub fn commit_file(&self, tmp: &Path, d: &Digest) -> Result<()> {
        let dest = self.blob_path(d);
        fs::rename(tmp, &dest).ctx(|| format!("rename {} to {}", tmp.display(), dest.display()))?;
        sync_dir(&self.root.join("blobs/sha256"))
    }

    /// A unique name under tmp/ (same filesystem as everything else).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        self.root.join("tmp").join(format!(
            "{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// A file under tmp/ with no name (O_TMPFILE): it goes when closed,
    /// whatever happens to the process.
    pub fn temp_file(&self) -> Result<File> {
        let dir = self.root.join("tmp");
        let fd = rustix::fs::open(
            &dir,
            rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .map_err(|e| Error::Os {
            what: format!("make a temporary file in {}", dir.display()),
            source: e.into(),
        })?;
        Ok(File::from(fd))
    }

    pub fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.root.join("layers").join(chain.hex())
    }

    pub fn layer_diff(&self, chain: &Digest) -> PathBuf {
        self.layer_dir(chain).join("diff")
    }

    /// Whether a complete layer is there: its size file (written last,
    /// before the rename) and its diff directory. A layer half deleted by
    /// a crash of an older version may have lost either.
    pub fn has_layer(&self, chain: &Digest) -> bool {
        let dir = self.layer_dir(chain);
        fs::symlink_metadata(dir.join("size")).is_ok_and(|m| m.is_file())
            && fs::symlink_metadata(dir.join("diff")).is_ok_and(|m| m.is_dir())
    }

    pub fn layer_size(&self, chain: &Digest) -> u64 {
        fs::read_to_string(self.layer_dir(chain).join("size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Where a layer is built before its rename, named after the blob it
    /// comes from (only that blob's lock holder writes it).
    pub fn layer_temp(&self, chain: &Digest, blob: &Digest) -> PathBuf {
        self.root
            .join("layers")
            .join(format!("{}.tmp-{}", chain.hex(), &blob.hex()[..16]))
    }

    /// Makes a finished layer directory visible: size file, short link,
    /// syncfs, rename. Another process may have committed the same chain
    /// ID from another blob meanwhile; then ours is dropped. An incomplete
    /// layer in the way (left by a crash) is moved out first.
    pub fn commit_layer(&self, tmp: &Path, chain: &Digest, unpacked: u64) -> Result<()> {
        fs::write(tmp.join("size"), unpacked.to_string())
            .ctx(|| format!("write {}/size", tmp.display()))?;
        // The link may dangle until the rename; gc removes it if the
        // rename never comes.
        self.layer_link(chain)?;
        let fd = File::open(tmp).ctx(|| format!("open {}", tmp.display()))?;
        rustix::fs::syncfs(fd.as_fd()).ctx(|| format!("sync {}", tmp.display()))?;
        let dest = self.layer_dir(chain);
        let mut moved_aside = false;
        loop {
            match fs::rename(tmp, &dest) {
                Ok(()) => return sync_dir(&self.root.join("layers")),
                Err(_) if self.has_layer(chain) => return crate::remove::remove_tree(tmp),
                Err(_) if !moved_aside && dest.exists() => {
                    self.discard(&dest)?;
                    moved_aside = true;
                }
                Err(e) => {
                    return Err(e)
                        .ctx(|| format!("rename {} to {}", tmp.display(), dest.display()));
                }
            }
        }
    }

    /// Removes a layer directory: renamed into tmp/ first (and the rename
    /// synced), so a crash while deleting leaves no half layer under its
    /// name; then deleted.
    pub fn discard(&self, path: &Path) -> Result<()> {
        let trash = self.temp_path("discard");
        match fs::rename(path, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).ctx(|| format!("move {} to {}", path.display(), trash.display()));
            }
        }
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        crate::remove::remove_tree(&trash)
    }

    /// The short name of a layer in l/, for overlay mounts through mount(2)
    /// where all lowers must fit in one page of options: the first 16 hex
    /// digits of the chain ID, longer only if another layer has those.
    /// Made when missing (layers committed before links existed).
    pub fn layer_link(&self, chain: &Digest) -> Result<String> {
        let target = PathBuf::from(format!("../layers/{}/diff", chain.hex()));
        let links = self.root.join("l");
        for len in [16, 24, 32, 48, 64] {
            let name = &chain.hex()[..len];
            let link = links.join(name);
            // Twice: another process may make the same link between our
            // look and our symlink.
            for _ in 0..2 {
                match fs::read_link(&link) {
                    Ok(t) if t == target => return Ok(name.to_string()),
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).ctx(|| format!("read {}", link.display())),
                }
                match std::os::unix::fs::symlink(&target, &link) {
                    Ok(()) => return Ok(name.to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e).ctx(|| format!("create {}", link.display())),
                }
            }
        }
        Err(Error::invalid(
            format!("layer {chain}"),
            "no free short name in l/ (every prefix of its chain ID is taken)",
        ))
    }

    /// The chain ID (hex) a link in l/ is for, if it is one of ours.
    pub fn link_target(&self, name: &std::ffi::OsStr) -> Option<String> {
        let t = fs::read_link(self.root.join("l").join(name)).ok()?;
        let hex = t
            .to_str()?
            .strip_prefix("../layers/")?
            .strip_suffix("/diff")?;
        Digest::from_hex(hex).ok().map(|d| d.hex().to_string())
    }

    fn lock_file(&self, path: &Path, exclusive: bool, wait: bool) -> Result<Option<Lock>> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ctx(|| format!("open lock {}", path.display()))?;
        use rustix::fs::FlockOperation as Op;
        let op = match (exclusive, wait) {
            (true, true) => Op::LockExclusive,
            (true, false) => Op::NonBlockingLockExclusive,
            (false, true) => Op::LockShared,
            (false, false) => Op::NonBlockingLockShared,
        };
        match rustix::fs::flock(&f, op) {
            Ok(()) => Ok(Some(Lock(f))),
            Err(rustix::io::Errno::WOULDBLOCK) if !wait => Ok(None),
            Err(e) => Err(e).ctx(|| format!("lock {}", path.display())),
        }
    }

    /// Held (shared) by anything that adds to the store.
    pub fn lock_shared(&self) -> Result<Lock> {
        Ok(self
            .lock_file(&self.root.join("store.lock"), false, true)?
            .expect("blocking lock"))
    }

    /// Held by removal: no writer runs meanwhile.
    pub fn lock_exclusive(&self) -> Result<Lock> {
        Ok(self
            .lock_file(&self.root.join("store.lock"), true, true)?
            .expect("blocking lock"))
    }

    /// One writer per blob: the second waits, then finds it done.
    pub fn lock_blob(&self, d: &Digest) -> Result<Lock> {
        Ok(self
            .lock_file(&self.root.join("locks").join(d.hex()), true, true)?
            .expect("blocking lock"))
    }

    pub fn try_lock_blob(&self, d: &Digest) -> Result<Option<Lock>> {
        self.lock_file(&self.root.join("locks").join(d.hex()), true, false)
    }

    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an image and points `names`, `repo_digests` and
    /// `digest_names` at it; a name that pointed at another image moves
    /// (that image may become dangling, as in podman).
    pub fn put_image(
        &self,
        rec: &ImageRecord,
        names: &[String],
        repo_digests: &[String],
        digest_names: &[String],
    ) -> Result<ImageRecord> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut stored = tx
            .query_row(
                "SELECT record FROM images WHERE id = ?1",
                [rec.id.as_str()],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|s| serde_json::from_str::<ImageRecord>(&s).ok())
            .unwrap_or_else(|| rec.clone());
        // The blobs every time the image came kept it alive stay alive: a
        // repo digest still names each of them.
        let mut extra = stored.extra_blobs.clone();
        if stored.manifest_digest != rec.manifest_digest {
            // Same config, another manifest (other compression): keep the
            // newest's layers so its blobs are the ones referenced, and the
            // older manifest with the other extras.
            extra.push(stored.manifest_digest.clone());
            stored = rec.clone();
        }
        extra.extend(rec.extra_blobs.iter().cloned());
        extra.retain(|d| d != &stored.manifest_digest);
        extra.sort();
        extra.dedup();
        stored.extra_blobs = extra;
        for n in names {
            tx.execute(
                "INSERT OR REPLACE INTO names (name, image) VALUES (?1, ?2)",
                params![n, rec.id.as_str()],
            )?;
        }
        for n in repo_digests {
            tx.execute(
                "INSERT OR REPLACE INTO repo_digests (name, image) VALUES (?1, ?2)",
                params![n, rec.id.as_str()],
            )?;
        }
        for n in digest_names {
            tx.execute(
                "INSERT OR REPLACE INTO digest_names (name, image) VALUES (?1, ?2)",
                params![n, rec.id.as_str()],
            )?;
        }
        let json = serde_json::to_string(&stored).expect("record serialises");
        tx.execute(
            "INSERT OR REPLACE INTO images (id, record) VALUES (?1, ?2)",
            params![rec.id.as_str(), json],
        )?;
        tx.commit()?;
        drop(db);
        self.image(&rec.id)?
            .ok_or_else(|| Error::NotFound(rec.id.to_string()))
    }

    fn fill(&self, db: &Connection, mut rec: ImageRecord) -> Result<ImageRecord> {
        let mut q = db.prepare_cached("SELECT name FROM names WHERE image = ?1 ORDER BY name")?;
        rec.names = q
            .query_map([rec.id.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut q =
            db.prepare_cached("SELECT name FROM repo_digests WHERE image = ?1 ORDER BY name")?;
        rec.repo_digests = q
            .query_map([rec.id.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut q =
            db.prepare_cached("SELECT name FROM digest_names WHERE image = ?1 ORDER BY name")?;
        rec.digest_names = q
            .query_map([rec.id.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(rec)
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let db = self.db();
        let rec: Option<String> = db
            .query_row(
                "SELECT record FROM images WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        match rec {
            None => Ok(None),
            Some(s) => {
                let rec = serde_json::from_str(&s)
                    .map_err(|e| Error::invalid(format!("record of image {id}"), e))?;
                Ok(Some(self.fill(&db, rec)?))
            }
        }
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let db = self.db();
        let mut q = db.prepare("SELECT id, record FROM images")?;
        let rows: Vec<(String, String)> = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        drop(q);
        let mut out = Vec::new();
        for (id, s) in rows {
            let rec = serde_json::from_str(&s)
                .map_err(|e| Error::invalid(format!("record of image {id}"), e))?;
            out.push(self.fill(&db, rec)?);
        }
        out.sort_by(|a: &ImageRecord, b| b.added.cmp(&a.added).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The image a tag, digest name or repo digest stands for.
    pub fn lookup_name(&self, name: &str) -> Result<Option<Digest>> {
        let db = self.db();
        for table in ["names", "digest_names", "repo_digests"] {
            let q = format!("SELECT image FROM {table} WHERE name = ?1");
            if let Some(id) = db
                .query_row(&q, [name], |r| r.get::<_, String>(0))
                .optional()?
            {
                return Ok(Some(id.parse()?));
            }
        }
        Ok(None)
    }

    pub fn ids_with_prefix(&self, hex_prefix: &str) -> Result<Vec<Digest>> {
        let db = self.db();
        let mut q = db.prepare("SELECT id FROM images WHERE id >= ?1 AND id < ?2")?;
        let lo = format!("sha256:{hex_prefix}");
        let hi = format!("sha256:{hex_prefix}\u{7f}");
        let ids: Vec<String> = q
            .query_map(params![lo, hi], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.iter().map(|s| s.parse()).collect()
    }

    pub fn add_name(&self, id: &Digest, name: &str) -> Result<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO names (name, image) VALUES (?1, ?2)",
            params![name, id.as_str()],
        )?;
        Ok(())
    }

    /// Removes a tag or a digest name; true if it existed.
    pub fn remove_name(&self, name: &str) -> Result<bool> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM names WHERE name = ?1", [name])?
            + tx.execute("DELETE FROM digest_names WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Deletes an image record with its names. Blobs and layers stay until
    /// `gc`.
    pub fn delete_image(&self, id: &Digest) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM names WHERE image = ?1", [id.as_str()])?;
        tx.execute("DELETE FROM repo_digests WHERE image = ?1", [id.as_str()])?;
        tx.execute("DELETE FROM digest_names WHERE image = ?1", [id.as_str()])?;
        tx.execute("DELETE FROM images WHERE id = ?1", [id.as_str()])?;
        tx.commit()?;
        Ok(())
    }

    /// Containers (snapshots) using an image.
    pub fn containers_of(&self, id: &Digest) -> Result<Vec<String>> {
        let db = self.db();
        let mut q = db.prepare("SELECT id FROM containers WHERE image = ?1 ORDER BY id")?;
        let v = q
            .query_map([id.as_str()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub fn container(&self, id: &str) -> Result<Option<(Digest, String)>> {
        let db = self.db();
        let row: Option<(String, String)> = db
            .query_row(
                "SELECT image, snapshotter FROM containers WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            Some((img, s)) => Ok(Some((img.parse()?, s))),
            None => Ok(None),
        }
    }

    /// Every container holding an image (by its snapshot).
    pub fn container_ids(&self) -> Result<Vec<String>> {
        let db = self.db();
        let mut q = db.prepare("SELECT id FROM containers")?;
        let v = q.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub fn all_container_images(&self) -> Result<Vec<Digest>> {
        let db = self.db();
        let mut q = db.prepare("SELECT DISTINCT image FROM containers")?;
        let v: Vec<String> = q.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        v.iter().map(|s| s.parse()).collect()
    }
}

/// An SQLite database shared by every berth process: WAL, a long busy
/// timeout, `schema` applied. Many processes opening a new database at
/// once get BUSY without waiting (switching to WAL, recovery): retried.
pub fn open_db(path: &Path, schema: &str) -> rusqlite::Result<Connection> {
    retry_busy(|| {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(schema)?;
        Ok(conn)
    })
}

/// SQLite answers BUSY without waiting in a few WAL corners (another
/// process's last connection checkpointing on close, recovery): retry
/// those for a while rather than fail a pull at its last step.
pub fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Makes `dir` (owner rwx only) or takes group and other access from it.
fn make_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).ctx(|| format!("create {}", dir.display())),
    }
    let md = fs::metadata(dir).ctx(|| format!("stat {}", dir.display()))?;
    if !md.is_dir() {
        return Err(Error::invalid(dir.display().to_string(), "not a directory"));
    }
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & !0o077))
            .ctx(|| format!("make {} private", dir.display()))?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx(|| format!("sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_store_and_its_directories_are_private() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        // Made with a permissive umask, and one left open by someone.
        let old = rustix::process::umask(Mode::empty());
        fs::create_dir_all(root.join("layers")).unwrap();
        fs::set_permissions(root.join("layers"), fs::Permissions::from_mode(0o1777)).unwrap();
        let store = Store::open(&root);
        rustix::process::umask(old);
        let store = store.unwrap();
        assert_eq!(mode(&store.root), 0o700);
        for dir in DIRS {
            let m = mode(&store.root.join(dir));
            assert_eq!(m & 0o077, 0, "{dir}: {m:o}");
            assert_eq!(m & 0o700, 0o700, "{dir}: {m:o}");
        }
        // Opening again keeps it so.
        fs::set_permissions(&store.root, fs::Permissions::from_mode(0o755)).unwrap();
        Store::open(&root).unwrap();
        assert_eq!(mode(&store.root), 0o700);
    }

    use rustix::fs::Mode;

    #[test]
    fn a_layer_is_out_of_its_name_before_its_removal_starts() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        let chain = Digest::of(b"chain");
        let tmp = store.layer_temp(&chain, &Digest::of(b"blob"));
        fs::create_dir_all(tmp.join("diff/sub/mnt")).unwrap();
        fs::write(tmp.join("diff/file"), b"x").unwrap();
        store.commit_layer(&tmp, &chain, 1).unwrap();
        assert!(store.has_layer(&chain));
        // A mount point inside stops the removal halfway (as a crash
        // would): the layer must already be gone from its name.
        let mnt = store.layer_diff(&chain).join("sub/mnt");
        rustix::mount::mount(
            "tmpfs",
            &mnt,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        let res = store.discard(&store.layer_dir(&chain));
        let moved: Vec<PathBuf> = fs::read_dir(store.root.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        // Clean up before asserting.
        for m in &moved {
            let _ =
                rustix::mount::unmount(m.join("diff/sub/mnt"), rustix::mount::UnmountFlags::DETACH);
        }
        let _ = rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::DETACH);
        let err = res.unwrap_err();
        assert!(err.to_string().contains("mount point"), "{err}");
        assert!(!store.layer_dir(&chain).exists(), "left under its name");
        assert!(!store.has_layer(&chain));
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert!(moved[0].join("diff").exists(), "the rest waits in tmp/");
        // Once nothing is in the way, the trash goes.
        crate::remove::remove_tree(&moved[0]).unwrap();
    }

    fn record(manifest: &[u8], extra: &[&[u8]]) -> ImageRecord {
        ImageRecord {
            id: Digest::of(b"config"),
            manifest_digest: Digest::of(manifest),
            manifest_media_type: crate::manifest::OCI_MANIFEST.into(),
            config_size: 6,
            layers: Vec::new(),
            created: None,
            added: 1,
            extra_blobs: extra.iter().map(|e| Digest::of(e)).collect(),
            names: Vec::new(),
            repo_digests: Vec::new(),
            digest_names: Vec::new(),
        }
    }

    #[test]
    fn storing_an_image_again_keeps_every_blob_it_came_with() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        store
            .put_image(&record(b"m1", &[b"index1"]), &["a:1".into()], &[], &[])
            .unwrap();
        // The same manifest again from another index.
        store
            .put_image(&record(b"m1", &[b"index2"]), &["a:2".into()], &[], &[])
            .unwrap();
        let rec = store.image(&Digest::of(b"config")).unwrap().unwrap();
        let mut want = vec![Digest::of(b"index1"), Digest::of(b"index2")];
        want.sort();
        assert_eq!(rec.extra_blobs, want);
        assert_eq!(rec.names, ["a:1", "a:2"]);
        // Another manifest of the same config: the first one is kept too.
        let rec = store.put_image(&record(b"m2", &[]), &[], &[], &[]).unwrap();
        assert_eq!(rec.manifest_digest, Digest::of(b"m2"));
        let mut want = vec![
            Digest::of(b"index1"),
            Digest::of(b"index2"),
            Digest::of(b"m1"),
        ];
        want.sort();
        assert_eq!(rec.extra_blobs, want);
    }
}
