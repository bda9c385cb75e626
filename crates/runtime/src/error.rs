//! One error type for the runtime library. Every variant names what was wrong
//! and where, so the CLI can print it as a single line.

use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {why}")]
    InvalidId { id: String, why: &'static str },

    #[error("container with id {0} already exists")]
    AlreadyExists(String),

    /// The wording matches runc's ("container does not exist"): podman and
    /// containerd recognise a missing container by this text.
    #[error("container {0} does not exist")]
    NotExist(String),

    /// The container exists but the operation does not fit its status.
    #[error("container {id} is {status}: {why}")]
    BadState {
        id: String,
        status: &'static str,
        why: String,
    },

    /// config.json (or a resources file) is malformed or asks for something
    /// unsupported. `field` is the JSON path, e.g. `linux.namespaces[2].type`.
    #[error("{file}: {field}: {why}")]
    Config {
        file: &'static str,
        field: String,
        why: String,
    },

    /// The message includes the OS error; it is not repeated as a
    /// `source`, so printing the error chain does not say it twice.
    #[error("{what}: {source}")]
    Os { what: String, source: io::Error },

    #[error("{kind} hook {path}: {why}")]
    Hook {
        kind: &'static str,
        path: String,
        why: String,
    },

    #[error("cgroup: {0}")]
    Cgroup(String),

    #[error("systemd: {0}")]
    Systemd(String),

    #[error("seccomp: {0}")]
    Seccomp(String),

    /// An error reported by the container's init process during setup.
    #[error("{0}")]
    Init(String),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn config(field: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Config {
            file: "config.json",
            field: field.into(),
            why: why.into(),
        }
    }

    pub fn os(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Os {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The errno behind an OS error, if any: callers branch on EPERM, ENOENT...
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Attaches a description of the operation to an OS-level error.
pub trait Context<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::os(what(), e))
    }
}

impl<T> Context<T> for rustix::io::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::os(what(), io::Error::from(e)))
    }
}
