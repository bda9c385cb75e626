//! Thin wrappers over the mount system calls, old and new.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::mountopts::{Attrs, MsFlags};

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// mount(2).
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstr).transpose()?;
    let target = cstr(target)?;
    let fstype = fstype.map(|t| CString::new(t).unwrap_or_default());
    let data = data
        .filter(|d| !d.is_empty())
        .map(|d| CString::new(d).unwrap_or_default());
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: each pointer is null or a NUL-terminated string owned by a
    // local that outlives the call.
    let r = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data) as *const libc::c_void,
        )
    };
    check(r as libc::c_long).map(|_| ())
}

pub fn umount(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cstr(target)?;
    // SAFETY: target is a NUL-terminated path that outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), flags) } as libc::c_long).map(|_| ())
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// A detached copy of the mount (tree) at `path`, for a bind mount.
pub fn clone_tree(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: p is a NUL-terminated path that outlives the call.
    let fd =
        check(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), flags) })?;
    // SAFETY: open_tree returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches the detached mount `tree` on top of what `target` refers to.
pub fn move_mount(tree: &impl AsFd, target: &impl AsFd) -> io::Result<()> {
    let empty = c"";
    // SAFETY: both fds are borrowed, so open, for the call; the paths are
    // empty NUL-terminated strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_fd().as_raw_fd(),
            empty.as_ptr(),
            target.as_fd().as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(|_| ())
}

/// mount_setattr(2) on the mount behind `fd` (and its whole tree when
/// `recursive`): attributes, a propagation type, or an id mapping.
pub fn setattr(
    fd: &impl AsFd,
    recursive: bool,
    attrs: Attrs,
    propagation: MsFlags,
    userns: Option<&OwnedFd>,
) -> io::Result<()> {
    berth_base::userns::mount_setattr(
        fd.as_fd(),
        recursive,
        (attrs.set, attrs.clr),
        propagation & !libc::MS_REC,
        userns.map(|u| u.as_fd()),
    )
}

/// A new filesystem of `fstype` with the string `options`, mounted nowhere
/// (fsopen, fsconfig, fsmount): it lives as long as the returned fd, or as
/// long as something opened through it.
pub fn detached_fs(fstype: &str, options: &[(&str, &str)], attr_flags: u32) -> io::Result<OwnedFd> {
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const CLOEXEC: libc::c_uint = 1; // FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC
    let c = |s: &str| {
        CString::new(s)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option holds a NUL byte"))
    };
    let ty = c(fstype)?;
    // SAFETY: ty is a NUL-terminated string that outlives the call.
    let fs = check(unsafe { libc::syscall(libc::SYS_fsopen, ty.as_ptr(), CLOEXEC) })?;
    // SAFETY: fsopen returned a new fd that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    for (key, value) in options {
        let (k, v) = (c(key)?, c(value)?);
        // SAFETY: fs is open; k and v are NUL-terminated and outlive the call.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        })?;
    }
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: fs is open; FSCONFIG_CMD_CREATE takes no key or value.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            null,
            null,
            0,
        )
    })?;
    // SAFETY: fs is open for the call; the other arguments are integers.
    let mnt =
        check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), CLOEXEC, attr_flags) })?;
    // SAFETY: as above, for fsmount's new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as i32) })
}
