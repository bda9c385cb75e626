//! Integration tests of berth-runtime: real containers from a busybox
//! rootfs, observed from inside (their /proc, mounts, cgroup files) and
//! from the host. Run as root.

#[macro_use]
mod support;

mod cgroups;
mod devices;
mod exec;
mod hooks;
mod hostile;
mod lifecycle;
mod mounts;
mod namespaces;
mod peers;
mod process;
mod spec_config;
mod spec_config_linux;
mod spec_runtime;
mod terminal;
mod v2_guest;
#[path = "../common/vm.rs"]
mod vm;
