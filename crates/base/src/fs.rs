//! Durable writes: a file is replaced whole or not at all, and survives a
//! crash once the call returns.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `data` to a temporary sibling, syncs it, renames it over `path`
/// and syncs the directory: readers see the old file or the whole new one,
/// and a crash (or power loss) right after leaves one of the two, never an
/// empty or torn file. The temp file is removed on failure.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    atomic_write_with(path, mode, |f| f.write_all(data))
}

/// `atomic_write` of what `write` puts into the file, for contents too
/// large to hold in memory (a saved image). `write` may fail with its own
/// error type; the new file then never appears.
pub fn atomic_write_with<E: From<io::Error>>(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), E> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let attempt = || -> Result<(), E> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    };
    attempt().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    Ok(sync_dir(path.parent().unwrap_or(Path::new(".")))?)
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Calls `f` with the metadata of everything under `dir` (not `dir`
/// itself), not following symlinks nor leaving its file system; what
/// cannot be read is skipped.
fn walk_same_fs(dir: &Path, mut f: impl FnMut(&std::fs::Metadata)) {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return;
    };
    let dev = top.dev();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            if m.is_dir() {
                stack.push(e.path());
            }
            f(&m);
        }
    }
}

/// Bytes (allocated blocks) and inodes under `dir`, not following
/// symlinks nor leaving its file system; what cannot be read is skipped.
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0u64, 0u64);
    walk_same_fs(dir, |m| {
        inodes += 1;
        bytes += m.blocks() * 512;
    });
    (bytes, inodes)
}

/// The bytes the files under `dir` hold, as docker sizes a container's
/// writable layer: the apparent size of each entry that is not a
/// directory (a symlink's is its target's length), a hard-linked inode
/// once; not following symlinks nor leaving its file system. Blocks
/// (`disk_usage`) would make a 12-byte file 4 KiB. What cannot be read
/// is skipped.
pub fn apparent_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0u64;
    walk_same_fs(dir, |m| {
        if !m.is_dir() && m.size() > 0 && seen.insert(m.ino()) {
            bytes += m.size();
        }
    });
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apparent_size_counts_bytes_once_per_inode() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/twelve"), b"0123456789ab").unwrap();
        fs::hard_link(d.path().join("sub/twelve"), d.path().join("again")).unwrap();
        fs::write(d.path().join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("sub/twelve", d.path().join("link")).unwrap();
        // 12 bytes once, the link's 10 ("sub/twelve"), the directory none.
        assert_eq!(apparent_size(d.path()), 22);
        assert_eq!(apparent_size(&d.path().join("missing")), 0);
    }

    #[test]
    fn replaces_whole_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        atomic_write(&p, b"old", 0o600).unwrap();
        // A directory where the temp file would go makes the write fail.
        let tmp = d.path().join(format!(".x.{}.tmp", std::process::id()));
        fs::create_dir(&tmp).unwrap();
        assert!(atomic_write(&p, b"new", 0o600).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
    }
}
