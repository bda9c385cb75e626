//! Per-object locks across berth processes: an flock on a file under the
//! run root, held for the length of one lifecycle operation.

use std::path::Path;
use std::time::Duration;

use berth_base::lock::{Flock, Kind, Wait};

use crate::error::{Context, Error, Result};

/// How long an operation waits for another's lock on the same object
/// before it says so: long enough for a slow stop (its timeout plus the
/// kill), short enough that a stuck holder is reported, not waited on.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

pub type Lock = Flock;

fn path(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    Ok(dir.join(format!("{name}.lock")))
}

/// Waits (at most LOCK_WAIT) until the lock on `<dir>/<name>.lock` is ours.
pub fn acquire(dir: &Path, name: &str) -> Result<Lock> {
    let p = path(dir, name)?;
    match Flock::acquire(&p, Kind::Exclusive, Wait::For(LOCK_WAIT)) {
        Ok(l) => Ok(l.expect("a waiting lock")),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(Error::Conflict(format!(
            "{name} is locked by another berth process for more than {}s",
            LOCK_WAIT.as_secs()
        ))),
        Err(e) => Err(e).ctx(|| format!("lock {}", p.display())),
    }
}

/// The lock if it is free now.
pub fn try_acquire(dir: &Path, name: &str) -> Result<Option<Lock>> {
    let p = path(dir, name)?;
    Flock::acquire(&p, Kind::Exclusive, Wait::No).ctx(|| format!("lock {}", p.display()))
}
