//! The engine's records in one SQLite database (WAL, busy timeout): every
//! `berth` process opens it, and each change is one transaction, so
//! concurrent invocations see each other's containers and never half of
//! one.
//!
//! A container is two JSON documents beside the columns that are looked
//! up: what it was created as (immutable) and its state (mutable), with a
//! version that each state change checks and bumps: a writer that read an
//! older state fails instead of overwriting a newer one (or bringing back
//! a removed container).
//!
//! The schema has a version (`PRAGMA user_version`); older databases are
//! migrated on open. A damaged file is never used: it is copied aside and
//! the error says how to rebuild the records from what is on disk.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::model::{Container, ContainerRun, ContainerSpec, Pod, Volume};

pub struct Db {
    conn: Mutex<Connection>,
}

/// The schema this code writes.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    pod TEXT,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX containers_pod ON containers (pod);
CREATE TABLE pods (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE volumes (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE networks (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
PRAGMA user_version = 2;
";

/// How the database was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// It held records (perhaps migrated).
    Existing,
    /// There was none, or an empty file: records may need rebuilding from
    /// what is on disk.
    New,
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialize")
}

fn from_json<T: DeserializeOwned>(what: &str, raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| Error::invalid(format!("stored {what}"), e.to_string()))
}

/// A container row as stored; its documents not yet parsed.
struct Row {
    id: String,
    name: String,
    spec: String,
    state: String,
    version: i64,
}

const ROW: &str = "SELECT id, name, spec, state, version FROM containers";

fn row(r: &rusqlite::Row) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        name: r.get(1)?,
        spec: r.get(2)?,
        state: r.get(3)?,
        version: r.get(4)?,
    })
}

impl Row {
    fn parse(self) -> Result<Container> {
        let unreadable = |e: Error| Error::Unreadable {
            id: self.id.clone(),
            name: self.name.clone(),
            why: e.to_string(),
        };
        let spec: ContainerSpec = from_json("container", &self.spec).map_err(unreadable)?;
        let run: ContainerRun = from_json("container state", &self.state).map_err(unreadable)?;
        Ok(Container::assemble(
            self.id,
            self.name,
            spec,
            run,
            self.version,
        ))
    }
}

impl Db {
    pub fn open(path: &Path) -> Result<(Db, Found)> {
        let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        let conn = berth_image::store::open_db(path, "")?;
        if existed {
            check_integrity(&conn, path)?;
        }
        let found = migrate(&conn)?;
        let found = if existed { found } else { Found::New };
        Ok((
            Db {
                conn: Mutex::new(conn),
            },
            found,
        ))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a container; its name must be free.
    pub fn insert_container(&self, c: &mut Container) -> Result<()> {
        let conn = self.conn();
        let r = conn.execute(
            "INSERT INTO containers (id, name, pod, spec, state, version) VALUES (?1, ?2, ?3, ?4, ?5, 1)",
            params![c.id, c.name, c.config.pod, to_json(&c.spec()), to_json(&c.run())],
        );
        match r {
            Ok(_) => {
                c.version = 1;
                Ok(())
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let holder: Option<String> = conn
                    .query_row(
                        "SELECT id FROM containers WHERE name = ?1",
                        params![c.name],
                        |r| r.get(0),
                    )
                    .optional()?;
                Err(Error::Conflict(format!(
                    "the container name {:?} is already in use by {}",
                    c.name,
                    holder
                        .as_deref()
                        .map(crate::ids::short)
                        .unwrap_or("another container")
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the container's state if nobody changed it since it was
    /// read (its version); bumps the version.
    pub fn update_container(&self, c: &mut Container) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE containers SET state = ?2, version = version + 1 WHERE id = ?1 AND version = ?3",
            params![c.id, to_json(&c.run()), c.version],
        )?;
        if n == 1 {
            c.version += 1;
            return Ok(());
        }
        Err(self.lost_race(c))
    }

    /// Writes what the container was created as anew (`update` changes its
    /// resources), with the same version check as a state change.
    pub fn update_container_spec(&self, c: &mut Container) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE containers SET spec = ?2, version = version + 1 WHERE id = ?1 AND version = ?3",
            params![c.id, to_json(&c.spec()), c.version],
        )?;
        if n == 1 {
            c.version += 1;
            return Ok(());
        }
        Err(self.lost_race(c))
    }

    /// Renames the container (its name is a column of its own).
    pub fn rename_container(&self, c: &mut Container, new: &str) -> Result<()> {
        let r = self.conn().execute(
            "UPDATE containers SET name = ?2, version = version + 1 WHERE id = ?1 AND version = ?3",
            params![c.id, new, c.version],
        );
        match r {
            Ok(1) => {
                c.name = new.to_string();
                c.version += 1;
                Ok(())
            }
            Ok(_) => Err(self.lost_race(c)),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::Conflict(format!(
                    "the container name {new:?} is already in use"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn lost_race(&self, c: &Container) -> Error {
        let exists = self
            .conn()
            .query_row(
                "SELECT 1 FROM containers WHERE id = ?1",
                params![c.id],
                |_| Ok(()),
            )
            .optional();
        match exists {
            Ok(None) => Error::NotFound(format!("container {} was removed", c.name)),
            Ok(Some(())) => Error::Conflict(format!(
                "container {} was changed by another berth process meanwhile",
                c.name
            )),
            Err(e) => e.into(),
        }
    }

    pub fn remove_container(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM containers WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Every readable container. An unreadable record does not fail the
    /// listing: it is reported (with how to remove it) and skipped.
    pub fn containers(&self) -> Result<Vec<Container>> {
        self.containers_where("", params![])
    }

    fn containers_where(&self, filter: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<Container>> {
        let rows: Vec<Row> = {
            let conn = self.conn();
            let mut st = conn.prepare(&format!("{ROW} {filter} ORDER BY rowid"))?;
            st.query_map(p, row)?.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            match r.parse() {
                Ok(c) => out.push(c),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(out)
    }

    /// Ids of every container record, readable or not.
    pub fn container_ids(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id FROM containers")?;
        let ids = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    pub fn container_name_taken(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM containers WHERE name = ?1",
                params![name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The id and name of a container by exact name, full id or unique id
    /// prefix, without reading its record.
    pub fn resolve_container(&self, key: &str) -> Result<(String, String)> {
        let conn = self.conn();
        let exact: Option<(String, String)> = conn
            .query_row(
                "SELECT id, name FROM containers WHERE name = ?1 OR id = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some(found) = exact {
            return Ok(found);
        }
        if key.len() >= 3 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut st =
                conn.prepare("SELECT id, name FROM containers WHERE id LIKE ?1 || '%' LIMIT 2")?;
            let found: Vec<(String, String)> = st
                .query_map(params![key], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            match found.len() {
                1 => return Ok(found.into_iter().next().expect("one")),
                2 => {
                    return Err(Error::Conflict(format!(
                        "{key}: more than one container has an id starting so"
                    )));
                }
                _ => {}
            }
        }
        Err(Error::NotFound(format!(
            "no container with name or id {key:?}"
        )))
    }

    /// A container by exact name, full id or unique id prefix.
    pub fn find_container(&self, key: &str) -> Result<Container> {
        let (id, _) = self.resolve_container(key)?;
        let r = self
            .conn()
            .query_row(&format!("{ROW} WHERE id = ?1"), params![id], row)
            .optional()?;
        match r {
            Some(r) => r.parse(),
            None => Err(Error::NotFound(format!("container {key} was removed"))),
        }
    }

    pub fn insert_pod(&self, p: &mut Pod) -> Result<()> {
        let r = self.conn().execute(
            "INSERT INTO pods (id, name, record, version) VALUES (?1, ?2, ?3, 1)",
            params![p.id, p.name, to_json(p)],
        );
        match r {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::Conflict(format!(
                    "the pod name {:?} is already in use",
                    p.name
                )))
            }
            r => {
                r?;
                p.version = 1;
                Ok(())
            }
        }
    }

    /// Writes the pod if nobody changed it since it was read.
    pub fn update_pod(&self, p: &mut Pod) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE pods SET record = ?2, version = version + 1 WHERE id = ?1 AND version = ?3",
            params![p.id, to_json(p), p.version],
        )?;
        if n == 1 {
            p.version += 1;
            return Ok(());
        }
        Err(Error::Conflict(format!(
            "pod {} was changed or removed by another berth process meanwhile",
            p.name
        )))
    }

    pub fn remove_pod(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM pods WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn pods(&self) -> Result<Vec<Pod>> {
        let rows: Vec<(String, i64)> = {
            let conn = self.conn();
            let mut st = conn.prepare("SELECT record, version FROM pods ORDER BY rowid")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::new();
        for (raw, version) in rows {
            match from_json::<Pod>("pod", &raw) {
                Ok(mut p) => {
                    p.version = version;
                    out.push(p)
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(out)
    }

    pub fn find_pod(&self, key: &str) -> Result<Pod> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT record, version FROM pods WHERE name = ?1 OR id = ?1 OR (length(?1) >= 3 AND id LIKE ?1 || '%') LIMIT 2",
        )?;
        let found: Vec<(String, i64)> = st
            .query_map(params![key], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        match found.len() {
            1 => {
                let (raw, version) = &found[0];
                let mut p: Pod = from_json("pod", raw)?;
                p.version = *version;
                Ok(p)
            }
            0 => Err(Error::NotFound(format!("no pod with name or id {key:?}"))),
            _ => Err(Error::Conflict(format!("{key}: more than one pod matches"))),
        }
    }

    pub fn pod_name_taken(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM pods WHERE name = ?1", params![name], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    pub fn pod_containers(&self, pod_id: &str) -> Result<Vec<Container>> {
        self.containers_where("WHERE pod = ?1", params![pod_id])
    }

    pub fn insert_volume(&self, v: &Volume) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO volumes (name, record) VALUES (?1, ?2)",
            params![v.name, to_json(v)],
        )?;
        Ok(n == 1)
    }

    pub fn volume(&self, name: &str) -> Result<Option<Volume>> {
        let raw: Option<String> = self
            .conn()
            .query_row(
                "SELECT record FROM volumes WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        raw.map(|r| from_json("volume", &r)).transpose()
    }

    pub fn volumes(&self) -> Result<Vec<Volume>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT record FROM volumes ORDER BY name")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| from_json("volume", &r?)).collect()
    }

    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM volumes WHERE name = ?1", params![name])?;
        Ok(())
    }

    /// Networks are stored as the network crate describes them.
    pub fn insert_network<T: Serialize>(&self, name: &str, n: &T) -> Result<bool> {
        let c = self.conn().execute(
            "INSERT OR IGNORE INTO networks (name, record) VALUES (?1, ?2)",
            params![name, to_json(n)],
        )?;
        Ok(c == 1)
    }

    pub fn network<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let raw: Option<String> = self
            .conn()
            .query_row(
                "SELECT record FROM networks WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        raw.map(|r| from_json("network", &r)).transpose()
    }

    pub fn networks<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT record FROM networks ORDER BY name")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| from_json("network", &r?)).collect()
    }

    pub fn remove_network(&self, name: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM networks WHERE name = ?1", params![name])?;
        Ok(())
    }
}

/// Refuses a damaged database, keeping a copy of it: records are never
/// read from (or written into) a file SQLite itself calls corrupt.
fn check_integrity(conn: &Connection, path: &Path) -> Result<()> {
    let verdict: std::result::Result<Vec<String>, rusqlite::Error> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect());
    let problems = match verdict {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => return Ok(()),
        Ok(lines) => lines.join("; "),
        Err(e) => e.to_string(),
    };
    let backup = backup(path);
    Err(Error::Damaged {
        path: path.to_path_buf(),
        why: problems.chars().take(300).collect(),
        backup: backup.map_err(|e| e.to_string()),
    })
}

/// Copies the database (and its write-ahead log) aside.
fn backup(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let copy = path.with_file_name(format!("{name}.damaged-{stamp}"));
    std::fs::copy(path, &copy)?;
    let wal = path.with_file_name(format!("{name}-wal"));
    if wal.exists() {
        std::fs::copy(
            &wal,
            copy.with_file_name(format!("{name}.damaged-{stamp}-wal")),
        )?;
    }
    Ok(copy)
}

/// Brings the schema to SCHEMA_VERSION, in one transaction that the first
/// of several concurrent openers performs.
fn migrate(conn: &Connection) -> Result<Found> {
    let version = |c: &Connection| -> rusqlite::Result<i64> {
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
    };
    if version(conn)? == SCHEMA_VERSION {
        return Ok(Found::Existing);
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let v = version(&tx)?;
    let has_tables: bool = tx.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'containers'",
        [],
        |r| r.get(0),
    )?;
    let found = match (v, has_tables) {
        (SCHEMA_VERSION, _) => Found::Existing,
        (0, false) => {
            tx.execute_batch(SCHEMA)?;
            Found::New
        }
        (0, true) => {
            migrate_v1(&tx)?;
            Found::Existing
        }
        (newer, _) => {
            return Err(Error::invalid(
                "state database",
                format!(
                    "its schema version {newer} is newer than this berth's ({SCHEMA_VERSION}): use a newer berth"
                ),
            ));
        }
    };
    tx.commit()?;
    Ok(found)
}

/// Version 1 (before `user_version` was kept): a container was one JSON
/// record. It becomes the immutable spec and the mutable state; a record
/// that does not parse is kept as it is, so it stays visible to `rm -f`.
fn migrate_v1(tx: &Connection) -> Result<()> {
    let rows: Vec<(String, String, Option<String>, String)> = {
        let mut st = tx.prepare("SELECT id, name, pod, record FROM containers ORDER BY rowid")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    tx.execute_batch(
        "ALTER TABLE containers RENAME TO containers_v1;
         ALTER TABLE pods ADD COLUMN version INTEGER NOT NULL DEFAULT 1;",
    )?;
    tx.execute_batch(
        "CREATE TABLE containers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            pod TEXT,
            spec TEXT NOT NULL,
            state TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX containers_pod ON containers (pod);",
    )?;
    for (id, name, pod, record) in rows {
        let (spec, state) = match serde_json::from_str::<Container>(&record) {
            Ok(c) => (to_json(&c.spec()), to_json(&c.run())),
            Err(_) => (record, "{}".to_string()),
        };
        tx.execute(
            "INSERT INTO containers (id, name, pod, spec, state, version) VALUES (?1, ?2, ?3, ?4, ?5, 1)",
            params![id, name, pod, spec, state],
        )?;
    }
    tx.execute_batch("DROP TABLE containers_v1; PRAGMA user_version = 2;")?;
    Ok(())
}
