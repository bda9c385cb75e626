//! berth's OCI runtime (runtime-spec 1.2) as a library: everything runc
//! does, synchronous, with no async runtime, so that the `berth-runtime`
//! binary stays small and fast and the engine can call it in-process.
//!
//! Callers must be single-threaded when they call `create` or `exec`: the
//! container's process is forked from the caller without an exec of a
//! helper binary.

mod capabilities;
pub mod cgroups;
pub mod config;
mod console;
mod container;
mod create;
pub mod error;
mod events;
mod exec;
pub mod features;
pub mod foreground;
mod fsutil;
mod hooks;
pub mod id;
mod init;
mod inroot;
mod mountcall;
mod mountopts;
pub mod namespaces;
mod netdev;
mod procattrs;
mod process;
pub mod procfs;
mod rootfs;
mod seccomp;
pub mod selfexe;
pub mod signals;
pub mod spawn;
pub mod state;
mod sync;
pub mod template;
pub mod update;

use std::sync::OnceLock;

pub use console::{
    Pty, become_tty, connect as console_connect, open_pty, recv_fd, send_fd, send_pidfd, set_size,
};
pub use container::{Runtime, write_pid_file};
pub use create::{CreateOptions, Created};
pub use error::{Error, Result};
pub use events::Event;
pub use exec::{ExecFlags, ExecOptions, Execed, exec_process_from};
/// The filter a profile compiles to, for checking a profile before any
/// container uses it (the engine's tests run its default profile's).
pub use seccomp::compile as compile_seccomp;
pub use state::{OciState, Status};

/// Where non-fatal problems (a failing poststart hook...) are reported.
static WARN: OnceLock<fn(&str)> = OnceLock::new();

/// Routes warnings to the caller's log; the default is stderr.
pub fn set_warning_sink(f: fn(&str)) {
    let _ = WARN.set(f);
}

pub(crate) fn warn(msg: &str) {
    match WARN.get() {
        Some(f) => f(msg),
        None => eprintln!("warning: {msg}"),
    }
}
