//! Small file helpers shared by the state store, cgroups and hooks.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Context, Result};

/// Writes `data` to a temporary sibling, then renames it over `path`, so
/// readers see either the old or the new content, never a torn file.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        fs::rename(&tmp, path)
    };
    write()
        .inspect_err(|_e| {
            let _ = fs::remove_file(&tmp);
        })
        .ctx(|| format!("write {}", path.display()))
}

/// Writes a value to a kernel interface file (cgroup, procfs) in one write(2).
pub fn write_kernel_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(value.as_bytes())
}

/// Reads a kernel interface file (procfs, cgroupfs). They report a size
/// of 0, so std's reader would start small and grow; one 16 KiB buffer
/// takes most of them in one read(2).
pub fn read_kernel_file(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let len = buf.len();
        buf.resize(len + 16 * 1024, 0);
        let n = f.read(&mut buf[len..])?;
        buf.truncate(len + n);
        if n == 0 {
            break;
        }
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads a kernel interface file and trims the trailing newline.
pub fn read_trimmed(path: &Path) -> io::Result<String> {
    let mut s = read_kernel_file(path)?;
    let len = s.trim_end().len();
    s.truncate(len);
    Ok(s)
}
