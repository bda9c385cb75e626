//! End-to-end tests of `berth build`: the Dockerfiles of corpus/ built
//! on a busybox image from a real registry, each result checked from
//! inside a container of it (corpus/*/check.sh) and in its config
//! (corpus/*/config.json); the same corpus built by buildah and the two
//! images compared; the cache; bad input. Run as root.

#[path = "../image/support.rs"]
#[macro_use]
mod support;

#[path = "../containers/env.rs"]
mod env;

mod buildah;
mod cache;
mod corpus;
mod errors;
mod outputs;
mod rootfs;
