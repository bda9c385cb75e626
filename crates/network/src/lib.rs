//! Container networking: pinned network namespaces, CNI plugin invocation
//! (ADD/CHECK/DEL, conflists, prevResult chaining) and port mappings.
//! See docs/engine.md, section Network.
//!
//! The crate keeps no records of its own: the engine stores [`Network`]s and
//! hands them in. The only state written here is what CNI needs to undo its
//! work after a crash: host-local's IPAM files and the cache of ADD results,
//! both under [`Cni::state_dir`].

pub mod cni;
pub mod firewall;
pub mod link;
mod netlink;
pub mod netns;
pub mod network;
pub mod ports;
pub mod tc;
pub mod usernet;

pub use cni::{Attachment, Cni, CniError};
pub use network::{Network, NetworkError};
pub use ports::{PortError, PortMapping, Protocol};
