//! exit.json: how the container's init ended, written once, atomically.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{fsutil, timefmt};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal for a signal death (docker's
    /// convention).
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
    /// The kernel's OOM killer struck in the container's memory cgroup.
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitRecord {
    /// From a waitpid status.
    pub fn from_wait_status(status: i32, at: SystemTime) -> ExitRecord {
        let (exit_code, signal) = if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            (128 + sig, Some(sig))
        } else {
            (libc::WEXITSTATUS(status), None)
        };
        ExitRecord {
            exit_code,
            signal,
            finished_at: timefmt::format_string(at),
            oom_killed: false,
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let raw = serde_json::to_vec(self).expect("an ExitRecord always serializes");
        fsutil::atomic_write(path, &raw, 0o644)
    }

    /// Reads an exit file (for the engine); Ok(None) when there is none
    /// yet.
    pub fn read(path: &Path) -> Result<Option<ExitRecord>> {
        let raw = match std::fs::read(path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::ExitFile {
                    path: path.to_path_buf(),
                    msg: e.to_string(),
                });
            }
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| Error::ExitFile {
                path: path.to_path_buf(),
                msg: format!("not valid: {e}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn codes_and_json_shape() {
        let t = UNIX_EPOCH + Duration::from_secs(1);
        let normal = ExitRecord::from_wait_status(3 << 8, t);
        assert_eq!((normal.exit_code, normal.signal), (3, None));
        let killed = ExitRecord::from_wait_status(libc::SIGKILL, t);
        assert_eq!((killed.exit_code, killed.signal), (137, Some(9)));
        assert_eq!(
            serde_json::to_string(&killed).unwrap(),
            r#"{"exitCode":137,"signal":9,"finishedAt":"1970-01-01T00:00:01.000000000Z","oomKilled":false}"#
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exit.json");
        assert_eq!(ExitRecord::read(&p).unwrap(), None);
        killed.write(&p).unwrap();
        assert_eq!(ExitRecord::read(&p).unwrap(), Some(killed));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
