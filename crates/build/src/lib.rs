//! `berth build`: a Dockerfile read as BuildKit's frontend reads it
//! (dockerfile/), the stages it needs planned, and each step executed on
//! berth's snapshots: RUN in a container of the builtin runtime, COPY and
//! ADD written straight into a layer.

pub mod dockerfile;
