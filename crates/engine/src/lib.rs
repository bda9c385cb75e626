//! The one place container lifecycle policy lives: container, pod, volume
//! and network records in one database, runtime handlers, monitors,
//! networks, recovery after crashes and reboots. Used by the `berth` CLI
//! (and later the CRI server). See docs/engine.md.

pub mod cdi;
pub mod commit;
mod copy;
pub mod db;
pub mod engine;
pub mod error;
mod etcfiles;
pub mod exec;
pub mod filters;
mod gvisor;
pub mod handler;
pub mod health;
pub mod ids;
pub mod images;
pub mod imagevol;
pub mod info;
pub mod initproc;
pub mod inspect;
mod lifecycle;
mod lock;
pub mod model;
mod names;
mod net;
pub mod podman_conf;
pub mod pods;
pub mod recover;
pub mod rootfd;
mod seccomp;
pub mod signals;
pub mod spec;
pub mod update;
pub mod usage;
mod volumes;

pub use berth_network;
pub use engine::{Engine, Options};
pub use error::{Error, Result};
pub use exec::{ExecRequest, ExecSession};
pub use images::PullPolicy;
pub use update::ResourceUpdate;
