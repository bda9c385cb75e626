//! What a build reports: where in the Dockerfile, and what went wrong.

use crate::dockerfile::Pos;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Dockerfile does not parse, or names what does not exist.
    #[error("{file}: {pos}: {message}")]
    Dockerfile {
        file: String,
        pos: Pos,
        message: String,
    },

    /// A step failed: the instruction as written and why.
    #[error("{pos}: {instruction}: {why}")]
    Step {
        pos: Pos,
        instruction: String,
        why: String,
    },

    /// A RUN's process exited with `code`; the last lines it wrote.
    #[error(
        "{pos}: {instruction}: the command exited with code {code}{}",
        if tail.is_empty() { String::new() } else { format!("; its last output:\n{tail}") }
    )]
    RunFailed {
        pos: Pos,
        instruction: String,
        code: i32,
        tail: String,
    },

    /// A bad option.
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },

    /// Ctrl-C or SIGTERM: the build stopped, its containers removed.
    #[error("the build was interrupted")]
    Interrupted,

    #[error(transparent)]
    Engine(#[from] berth_engine::Error),

    #[error(transparent)]
    Image(#[from] berth_image::Error),

    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(what: impl Into<String>, why: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }

    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Error {
        Error::Io {
            what: "system call".into(),
            source: e.into(),
        }
    }
}
