//! Swapping the root and finishing the view from inside it.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use oci_spec::runtime::Spec;
use rustix::fs::{Mode, OFlags};

use super::os;
use crate::error::{Context, Result};
use crate::mountcall::{self, clone_tree, move_mount, setattr};
use crate::mountopts::{self, ATTR_NODEV, ATTR_NOEXEC, ATTR_NOSUID, ATTR_RDONLY, Attrs};

/// Swaps the root: pivot_root into `rootfs` and detach the old root, or,
/// with `no_pivot`, move the rootfs over "/" and chroot (for ramdisk hosts).
pub fn enter(rootfs: &Path, no_pivot: bool, spec: &Spec) -> Result<()> {
    let shared = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .is_some_and(|p| p.contains("shared"));
    if shared {
        // pivot_root (and a move onto "/") refuses a shared "/"; the mount
        // holding the rootfs is no longer shared (Rootfs::prepare). The
        // propagation the config asks for is put back on "/" afterwards
        // (finish).
        mountcall::mount(None, Path::new("/"), None, libc::MS_PRIVATE, None)
            .map_err(os("make / private for pivot_root"))?;
    }
    if no_pivot {
        rustix::process::chdir(rootfs).ctx(|| "chdir to the rootfs")?;
        mountcall::mount(Some(rootfs), Path::new("/"), None, libc::MS_MOVE, None)
            .map_err(os("move the rootfs to /"))?;
        rustix::process::chroot(".").ctx(|| "chroot")?;
        rustix::process::chdir("/").ctx(|| "chdir /")?;
        return Ok(());
    }
    let old = rustix::fs::open(
        "/",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open /")?;
    rustix::process::chdir(rootfs).ctx(|| "chdir to the rootfs")?;
    rustix::process::pivot_root(".", ".").ctx(|| "pivot_root")?;
    rustix::process::fchdir(&old).ctx(|| "fchdir to the old root")?;
    // The old root is now stacked under the new one. Stop propagation
    // first, so that detaching it does not unmount anything on the host.
    mountcall::mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .map_err(os("make the old root a slave"))?;
    mountcall::umount(Path::new("."), libc::MNT_DETACH).map_err(os("detach the old root"))?;
    rustix::process::chdir("/").ctx(|| "chdir /")?;
    Ok(())
}

/// After pivot_root: hide the masked paths, freeze the read-only ones and
/// (if asked) the root itself.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask(Path::new(p)).map_err(os(format!("mask {p}")))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly(Path::new(p)).map_err(os(format!("make {p} read-only")))?;
    }
    if let Some(prop) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| !p.is_empty())
    {
        let flags = mountopts::root_propagation(Some(prop))?;
        mountcall::mount(None, Path::new("/"), None, flags, None)
            .map_err(os("set the propagation of /"))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let root = rustix::fs::open(
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| "open /")?;
        setattr(
            &root,
            false,
            Attrs {
                set: ATTR_RDONLY,
                clr: 0,
            },
            0,
            None,
        )
        .map_err(os("make / read-only"))?;
    }
    Ok(())
}

fn mask(p: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        mountcall::mount(
            Some(Path::new("tmpfs")),
            p,
            Some("tmpfs"),
            libc::MS_RDONLY,
            Some("size=0k"),
        )
    } else {
        // The container's /dev/null, which the config may have bound from
        // anywhere: it must be the null device, or the "mask" shows data.
        let null = fs::metadata("/dev/null")?;
        if !null.file_type().is_char_device() || null.rdev() != libc::makedev(1, 3) {
            return Err(io::Error::other(
                "the container's /dev/null is not the null device",
            ));
        }
        mountcall::mount(Some(Path::new("/dev/null")), p, None, libc::MS_BIND, None)
    }
}

fn readonly(p: &Path) -> io::Result<()> {
    let tree = match clone_tree(p, true) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    setattr(
        &tree,
        true,
        Attrs {
            set: ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
            clr: 0,
        },
        0,
        None,
    )?;
    let target = rustix::fs::open(p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    move_mount(&tree, &target)
}
