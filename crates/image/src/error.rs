//! One error type for the image library. Every variant names what was wrong
//! (which reference, registry, digest, layer entry or file), so the CLI can
//! print it as one line.

use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference {reference:?}: {why}")]
    Reference { reference: String, why: String },

    /// The message includes the OS error, so it is not repeated as a source.
    #[error("{what}: {source}")]
    Os { what: String, source: io::Error },

    #[error("registry {registry}: {why}")]
    Registry { registry: String, why: String },

    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// A layer that is malformed or tries to write outside its directory.
    #[error("layer {layer}: entry {entry:?}: {why}")]
    Layer {
        layer: String,
        entry: String,
        why: String,
    },

    /// A blob whose length is not the one its descriptor declares.
    #[error("blob {digest} {why}")]
    BlobSize { digest: String, why: String },

    /// A short name that registries.conf does not let resolve; worded as
    /// podman's.
    #[error("{0}")]
    ShortName(String),

    #[error("{0}: image not known")]
    NotFound(String),

    #[error("image {image} is in use by container {container}")]
    InUse { image: String, container: String },

    /// Malformed input other than a layer: a manifest, a config, an archive,
    /// a configuration file, a command-line value.
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },

    /// Something this host cannot do (e.g. mount overlayfs), as opposed to
    /// a failure of something it can: callers may fall back.
    #[error("{what}: not supported here: {why}")]
    Unsupported { what: String, why: String },

    #[error("store database: {0}")]
    Db(#[from] rusqlite::Error),
}

impl Error {
    pub fn invalid(what: impl Into<String>, why: impl std::fmt::Display) -> Error {
        Error::Invalid {
            what: what.into(),
            why: why.to_string(),
        }
    }

    pub fn registry(registry: impl Into<String>, why: impl std::fmt::Display) -> Error {
        Error::Registry {
            registry: registry.into(),
            why: why.to_string(),
        }
    }
}

/// Attaches what was being done to an `io::Error`.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Os {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for rustix::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Os {
            what: what(),
            source: e.into(),
        })
    }
}
