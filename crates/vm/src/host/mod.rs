//! berth-vm on the host: the commands, the keeper that stands for a
//! container, and what a VM is made of.

pub mod assets;
pub mod client;
pub mod fork;
pub mod holder;
pub mod keeper;
pub mod net;
pub mod ops;
pub mod pool;
pub mod qemu;
pub mod relay;
pub mod share;
pub mod state;
