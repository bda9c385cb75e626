//! Images for berth: references and registries configuration, the OCI
//! distribution protocol (pull, push, auth), a content-addressed store with
//! image records, safe layer unpacking, snapshots by key (overlay or
//! copy), upper dirs made into layers, leases, and the image config -> OCI
//! runtime spec conversion.

pub mod archive;
pub mod auth;
pub mod bundle;
pub mod changes;
pub mod client;
pub mod commit;
pub mod digest;
pub mod error;
pub mod export;
pub mod fetch;
pub mod filter;
pub mod history;
pub mod images;
pub mod ingest;
pub mod leases;
pub mod limits;
pub mod load;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod protect;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registries;
pub mod remove;
pub mod search;
pub mod snapshot;
pub mod snapshots;
pub mod spec;
pub mod staging;
pub mod store;
pub mod tar_guard;
pub mod tls;
pub mod unpack;
pub mod upper;

pub use digest::Digest;
pub use error::{Error, Result};
pub use platform::Platform;
pub use reference::Reference;
