//! End-to-end tests of `berth run` and the other container commands: real
//! containers from a busybox image pulled from a real registry (Debian's
//! docker-registry), real monitors, networks and CNI plugins. Run as root.

#[path = "../image/support.rs"]
#[macro_use]
mod support;
#[path = "../common/berth_vm.rs"]
mod berth_vm;

mod cli;
mod commit;
mod compat;
mod core;
mod daily;
mod env;
mod format;
mod health;
mod hostile;
mod lifecycle;
mod microvm;
mod network;
mod podman_conf;
mod pods;
mod ps;
mod recovery;
mod restart;
mod rootless;
mod runflags;
mod sandboxed;
mod security;
mod trust;
#[path = "../common/vm.rs"]
mod vm;
