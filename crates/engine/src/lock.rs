//! Per-object locks across berth processes: an flock on a file under the
//! run root, held for the length of one lifecycle operation.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{Context, Result};

pub struct Lock {
    _file: File,
}

impl Lock {
    /// Blocks until the lock on `<dir>/<name>.lock` is ours.
    pub fn acquire(dir: &Path, name: &str) -> Result<Lock> {
        std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        let path = dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(std::io::Error::from(e)).ctx(|| format!("lock {}", path.display()));
                }
            }
        }
    }

    /// The lock if it is free now.
    pub fn try_acquire(dir: &Path, name: &str) -> Result<Option<Lock>> {
        std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        let path = dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(std::io::Error::from(e)).ctx(|| format!("lock {}", path.display())),
        }
    }
}
