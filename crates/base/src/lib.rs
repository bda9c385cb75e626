//! The foundation every berth crate stands on, one of each: the name and
//! id rules, atomic file writes, file locks with deadlines, RFC 3339
//! times, process identity that survives pid reuse, and user namespaces
//! for idmapped mounts. It depends on no other berth crate.

pub mod events;
pub mod fs;
pub mod ids;
pub mod lock;
pub mod mountinfo;
pub mod names;
pub mod netlink;
pub mod paths;
pub mod process;
pub mod rootless;
pub mod sockpath;
pub mod subid;
pub mod time;
pub mod userns;
