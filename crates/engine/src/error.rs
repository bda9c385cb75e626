//! The engine's errors: each names what was wrong, and the CLI maps the
//! kinds to docker's exit codes.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such container, pod, volume or network.
    #[error("{0}")]
    NotFound(String),

    /// A name in use, a container in the wrong state for the operation.
    #[error("{0}")]
    Conflict(String),

    /// A bad option or value, from the command line or a record.
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },

    #[error(transparent)]
    Image(#[from] berth_image::Error),

    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),

    #[error("network: {0}")]
    Network(String),

    /// The monitor or infra process could not start.
    #[error("{0}")]
    Monitor(String),

    #[error("external runtime {runtime}: {why}")]
    ExternalRuntime { runtime: String, why: String },

    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),

    /// A record that no longer parses: it is skipped in listings and can
    /// only be removed (`rm -f`).
    #[error(
        "container {} ({name}): its record is unreadable ({why}); remove it with `berth rm -f {}`",
        crate::ids::short(id),
        crate::ids::short(id)
    )]
    Unreadable {
        id: String,
        name: String,
        why: String,
    },

    /// The database file failed SQLite's integrity check.
    #[error("state database {} is damaged ({why}); {}", path.display(), match backup {
        Ok(b) => format!("a copy is at {}; `berth system repair` moves it aside and rebuilds the records from the containers, pods, volumes and networks on disk", b.display()),
        Err(e) => format!("copying it aside failed ({e}); copy it before `berth system repair` rebuilds the records from disk"),
    })]
    Damaged {
        path: std::path::PathBuf,
        why: String,
        backup: std::result::Result<std::path::PathBuf, String>,
    },

    /// The message includes the OS error.
    #[error("{what}: {source}")]
    Os { what: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(what: impl Into<String>, why: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }
}

/// Adds what was being done to an I/O error.
pub trait Context<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Os {
            what: what().into(),
            source,
        })
    }
}
