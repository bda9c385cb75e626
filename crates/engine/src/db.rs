//! The engine's records in one SQLite database (WAL, busy timeout): every
//! `berth` process opens it, and each change is one transaction, so
//! concurrent invocations see each other's containers and never half of
//! one. Records are stored as JSON beside the columns that are looked up.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::model::{Container, Pod, Volume};

pub struct Db {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    pod TEXT,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pods (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
";

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialize")
}

fn from_json<T: DeserializeOwned>(what: &str, raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| Error::invalid(format!("stored {what}"), e.to_string()))
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let conn = berth_image::store::open_db(path, SCHEMA)?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a container; its name must be free (among pods too, as in podman
    /// names are per kind: only containers here).
    pub fn insert_container(&self, c: &Container) -> Result<()> {
        let conn = self.conn();
        let r = conn.execute(
            "INSERT INTO containers (id, name, pod, record) VALUES (?1, ?2, ?3, ?4)",
            params![c.id, c.name, c.config.pod, to_json(c)],
        );
        match r {
            Ok(_) => Ok(()),
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

    pub fn update_container(&self, c: &Container) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE containers SET name = ?2, pod = ?3, record = ?4 WHERE id = ?1",
            params![c.id, c.name, c.config.pod, to_json(c)],
        );
        match n {
            Ok(0) => Err(Error::NotFound(format!("no container with id {}", c.id))),
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::Conflict(format!(
                    "the container name {:?} is already in use",
                    c.name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn remove_container(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM containers WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn containers(&self) -> Result<Vec<Container>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT record FROM containers ORDER BY rowid")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| from_json("container", &r?)).collect()
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

    /// A container by exact name, full id or unique id prefix.
    pub fn find_container(&self, key: &str) -> Result<Container> {
        let conn = self.conn();
        let by_name: Option<String> = conn
            .query_row(
                "SELECT record FROM containers WHERE name = ?1 OR id = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(raw) = by_name {
            return from_json("container", &raw);
        }
        if key.len() >= 3 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut st =
                conn.prepare("SELECT record FROM containers WHERE id LIKE ?1 || '%' LIMIT 2")?;
            let found: Vec<String> = st
                .query_map(params![key], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            match found.len() {
                1 => return from_json("container", &found[0]),
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

    pub fn insert_pod(&self, p: &Pod) -> Result<()> {
        let r = self.conn().execute(
            "INSERT INTO pods (id, name, record) VALUES (?1, ?2, ?3)",
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
            r => r.map(|_| ()).map_err(Into::into),
        }
    }

    pub fn update_pod(&self, p: &Pod) -> Result<()> {
        self.conn().execute(
            "UPDATE pods SET record = ?2 WHERE id = ?1",
            params![p.id, to_json(p)],
        )?;
        Ok(())
    }

    pub fn remove_pod(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM pods WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn pods(&self) -> Result<Vec<Pod>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT record FROM pods ORDER BY rowid")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| from_json("pod", &r?)).collect()
    }

    pub fn find_pod(&self, key: &str) -> Result<Pod> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT record FROM pods WHERE name = ?1 OR id = ?1 OR (length(?1) >= 3 AND id LIKE ?1 || '%') LIMIT 2",
        )?;
        let found: Vec<String> = st
            .query_map(params![key], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        match found.len() {
            1 => from_json("pod", &found[0]),
            0 => Err(Error::NotFound(format!("no pod with name or id {key:?}"))),
            _ => Err(Error::Conflict(format!("{key}: more than one pod matches"))),
        }
    }

    pub fn pod_containers(&self, pod_id: &str) -> Result<Vec<Container>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT record FROM containers WHERE pod = ?1 ORDER BY rowid")?;
        let rows = st.query_map(params![pod_id], |r| r.get::<_, String>(0))?;
        rows.map(|r| from_json("container", &r?)).collect()
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
