//! berth's Kubernetes CRI v1 server (berthd's library): RuntimeService and
//! ImageService over berth's engine and image store, the streaming server
//! for exec, attach and port-forward, events and metrics. The engine does
//! the work; this crate checks each request, names what is wrong in it,
//! and speaks CRI's types and status codes. See docs/berthd.md.

mod authority;
pub mod config;
mod container;
mod events;
mod exec;
mod health;
mod images;
mod meta;
pub mod metrics;
mod podmetrics;
mod runtime;
mod sandbox;
pub mod server;
mod service;
mod stats;
mod status;
mod streams;
mod time;
mod userns;

pub use k8s_cri::v1 as api;
pub use meta::OWNER;
pub use server::{Binaries, Ready, ServeError, serve};
