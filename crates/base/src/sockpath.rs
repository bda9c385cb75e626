//! Unix socket addresses hold 108 bytes, and container directories are
//! often deeper than that. A socket is therefore named through an O_PATH
//! handle of its directory: `/proc/self/fd/<n>/<name>` is always short.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A short name for a socket path, valid while this value lives.
pub struct ShortPath {
    _dir: File,
    pub path: PathBuf,
}

pub fn short(path: &Path) -> io::Result<ShortPath> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {}", path.display()),
        ));
    };
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("open the directory of {}: {e}", path.display()),
            )
        })?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    Ok(ShortPath {
        _dir: dir,
        path: short,
    })
}
