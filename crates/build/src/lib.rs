//! `berth build`: a Dockerfile read as BuildKit's frontend reads it
//! (dockerfile/), the stages the target needs planned (plan.rs) and built
//! in order (build.rs), each step on berth's snapshots: RUN in a working
//! container of the engine (run.rs, working.rs), COPY and ADD written
//! into one without running anything (copy.rs, context.rs), each step's
//! layer kept in a cache keyed by what it did and read (cache.rs).

pub mod build;
pub mod cache;
pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod error;
pub mod onbuild;
pub mod output;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod remote_cache;
pub mod rootfs;
pub mod run;
pub mod stage;
pub mod working;

pub use build::{BuildOptions, build};
pub use error::{Error, Result};
pub use progress::Progress;
pub use rootfs::Isolation;
