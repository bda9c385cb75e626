//! Leases: named holds on store content that no image references yet (a
//! builder's cache layers, a blob being assembled). While a lease lives
//! (not released, not expired) garbage collection keeps everything it
//! references and what that needs: a snapshot's parents and layers, an
//! image's blobs and layers. Records are rows of berth.db; a reference is
//! recorded in the same transaction as what it holds where both are made
//! together (`CommitOptions::lease`).

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{Store, now};

/// What a lease can hold.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "lowercase")]
pub enum Resource {
    Blob(Digest),
    /// A layer directory, by chain ID.
    Layer(Digest),
    /// A snapshot, by key.
    Snapshot(String),
    /// An image, by ID (config digest).
    Image(Digest),
}

impl Resource {
    fn kind(&self) -> &'static str {
        match self {
            Resource::Blob(_) => "blob",
            Resource::Layer(_) => "layer",
            Resource::Snapshot(_) => "snapshot",
            Resource::Image(_) => "image",
        }
    }

    fn id(&self) -> &str {
        match self {
            Resource::Blob(d) | Resource::Layer(d) | Resource::Image(d) => d.as_str(),
            Resource::Snapshot(k) => k,
        }
    }

    fn from_row(kind: &str, id: &str) -> Result<Resource> {
        Ok(match kind {
            "blob" => Resource::Blob(id.parse()?),
            "layer" => Resource::Layer(id.parse()?),
            "snapshot" => Resource::Snapshot(id.to_string()),
            "image" => Resource::Image(id.parse()?),
            other => {
                return Err(Error::invalid(
                    format!("lease resource {other}:{id}"),
                    "unknown kind",
                ));
            }
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds after which the lease holds nothing.
    pub expires: Option<i64>,
    pub resources: Vec<Resource>,
}

impl Lease {
    pub fn live(&self, at: i64) -> bool {
        self.expires.is_none_or(|e| at < e)
    }
}

/// Adds `r` to lease `lease` inside a transaction; the lease must exist
/// and be live.
pub(crate) fn add_in(db: &Connection, lease: &str, r: &Resource) -> Result<()> {
    let expires: Option<Option<i64>> = db
        .query_row("SELECT expires FROM leases WHERE id = ?1", [lease], |r| {
            r.get(0)
        })
        .optional()?;
    match expires {
        None => return Err(Error::NotFound(format!("lease {lease}"))),
        Some(Some(e)) if e <= now() => {
            return Err(Error::invalid(format!("lease {lease}"), "it has expired"));
        }
        Some(_) => {}
    }
    db.execute(
        "INSERT OR IGNORE INTO lease_resources (lease, kind, id) VALUES (?1, ?2, ?3)",
        params![lease, r.kind(), r.id()],
    )?;
    Ok(())
}

pub(crate) fn all(db: &Connection) -> Result<Vec<Lease>> {
    let mut q =
        db.prepare("SELECT id, labels, created, expires FROM leases ORDER BY created, id")?;
    let rows: Vec<(String, String, i64, Option<i64>)> = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut q =
        db.prepare("SELECT kind, id FROM lease_resources WHERE lease = ?1 ORDER BY kind, id")?;
    let mut out = Vec::new();
    for (id, labels, created, expires) in rows {
        let res: Vec<(String, String)> = q
            .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        out.push(Lease {
            labels: serde_json::from_str(&labels)
                .map_err(|e| Error::invalid(format!("labels of lease {id}"), e))?,
            resources: res
                .iter()
                .map(|(k, i)| Resource::from_row(k, i))
                .collect::<Result<_>>()?,
            id,
            created,
            expires,
        });
    }
    Ok(out)
}

/// Deletes expired leases with their references; returns how many.
pub(crate) fn expire(db: &Connection) -> Result<usize> {
    let at = now();
    db.execute(
        "DELETE FROM lease_resources WHERE lease IN (SELECT id FROM leases WHERE expires IS NOT NULL AND expires <= ?1)",
        [at],
    )?;
    Ok(db.execute(
        "DELETE FROM leases WHERE expires IS NOT NULL AND expires <= ?1",
        [at],
    )?)
}

impl Store {
    /// A new lease, holding nothing yet; `expiry` from now, or until
    /// released.
    pub fn lease_create(
        &self,
        labels: BTreeMap<String, String>,
        expiry: Option<Duration>,
    ) -> Result<Lease> {
        let created = now();
        let lease = Lease {
            id: berth_base::ids::random_hex(16),
            labels,
            created,
            expires: expiry.map(|d| created.saturating_add(d.as_secs().max(1) as i64)),
            resources: Vec::new(),
        };
        self.db().execute(
            "INSERT INTO leases (id, labels, created, expires) VALUES (?1, ?2, ?3, ?4)",
            params![
                lease.id,
                serde_json::to_string(&lease.labels).expect("labels serialise"),
                lease.created,
                lease.expires
            ],
        )?;
        Ok(lease)
    }

    /// Makes lease `lease` hold `resource` (which need not exist yet: a
    /// blob about to be written can be held first).
    pub fn lease_add(&self, lease: &str, resource: &Resource) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        add_in(&tx, lease, resource)?;
        tx.commit()?;
        Ok(())
    }

    /// Drops a resource from a lease.
    pub fn lease_remove(&self, lease: &str, resource: &Resource) -> Result<()> {
        self.db().execute(
            "DELETE FROM lease_resources WHERE lease = ?1 AND kind = ?2 AND id = ?3",
            params![lease, resource.kind(), resource.id()],
        )?;
        Ok(())
    }

    /// Ends lease `id`: what only it held goes at the next collection.
    /// False if there was no such lease.
    pub fn lease_release(&self, id: &str) -> Result<bool> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM lease_resources WHERE lease = ?1", [id])?;
        let n = tx.execute("DELETE FROM leases WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Every lease, expired ones included until a collection drops them.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        all(&self.db())
    }
}
