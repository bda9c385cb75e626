//! The monitor library's one error type: every variant names the thing
//! that was wrong, so a caller can print it as it is.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("monitor config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("create container {id}: {msg}")]
    Create { id: String, msg: String },
    #[error("monitor protocol: {0}")]
    Protocol(String),
    /// An exec session's process could not be started (the runtime's
    /// words).
    #[error("{0}")]
    Exec(String),
    #[error("log {path}: {msg}")]
    Log { path: PathBuf, msg: String },
    #[error("exit file {path}: {msg}")]
    ExitFile { path: PathBuf, msg: String },
    /// The monitor said `error <msg>` on its ready pipe, or said nothing.
    #[error("monitor: {0}")]
    Monitor(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a description of the failed operation to an io::Error.
pub(crate) trait Context<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what().into(),
            source,
        })
    }
}

impl<T> Context<T> for rustix::io::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Io {
            what: what().into(),
            source: e.into(),
        })
    }
}
