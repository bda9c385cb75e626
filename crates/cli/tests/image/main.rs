//! End-to-end tests of the `berth` image commands against a real registry
//! (Debian's docker-registry), with images pushed by skopeo. Run as root.

#[macro_use]
mod support;

mod archives;
mod caps;
mod crash;
mod faults;
mod formats;
mod hostile;
mod listing;
mod load;
mod names;
mod prune;
mod pull;
mod registries;
mod search;
mod store;
