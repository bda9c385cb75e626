//! Unix socket addresses hold 108 bytes, and container directories are
//! often deeper than that. A socket is therefore named through an O_PATH
//! handle of its directory: `/proc/self/fd/<n>/<name>` is always short.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

pub struct ShortPath {
    _dir: File,
    pub path: PathBuf,
}

pub fn short(path: &Path) -> Result<ShortPath> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(crate::error::Error::Io {
            what: format!("socket path {}", path.display()),
            source: std::io::ErrorKind::InvalidInput.into(),
        });
    };
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
        .ctx(|| format!("open the directory of {}", path.display()))?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    Ok(ShortPath {
        _dir: dir,
        path: short,
    })
}
