//! Small file helpers shared by the monitor's writers.

use std::path::Path;

use crate::error::{Context, Result};

/// berth-base's durable atomic write, with the monitor's error.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    berth_base::fs::atomic_write(path, data, mode).ctx(|| format!("write {}", path.display()))
}
