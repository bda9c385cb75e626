//! berthd end to end: a real berthd per test, with its own store, run root
//! and CRI socket, driven over gRPC as kubelet drives it (and by crictl
//! when installed); real pods, CNI, streaming. Run as root.

#[path = "../image/support.rs"]
#[macro_use]
mod support;
#[path = "../common/berth_vm.rs"]
mod berth_vm;
#[path = "../containers/env.rs"]
mod env;

mod cdi;
mod daemon;
mod errors;
mod handlers;
mod image_volumes;
mod images;
mod lifecycle;
mod pid_target;
mod restart;
mod streams;
mod userns;
