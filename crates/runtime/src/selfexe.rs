//! Keeping the runtime binary out of reach of containers (CVE-2019-5736):
//! the container's processes are forks of this process, so until they
//! exec (and, through `execve("/proc/self/exe")`, even after) their
//! /proc/<pid>/exe names this binary. A container process that opens it
//! could otherwise write to the host's berth-runtime.
//!
//! So this process re-executes itself from a view of the binary that no
//! write can reach: the binary's directory as the lower layer of a
//! detached overlayfs without an upper layer (read-only even if someone
//! remounted it, and sharing the page cache, so it costs one exec), or,
//! where overlayfs cannot be had, a sealed in-memory copy.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::mountcall;

const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
const MOUNT_ATTR_RDONLY: u32 = 0x1;
const MOUNT_ATTR_NODEV: u32 = 0x4;

fn os(what: &str) -> Error {
    Error::os(what, io::Error::last_os_error())
}

/// True when writes to the running binary cannot happen.
pub fn is_protected() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: exe is open for the call; F_GET_SEALS takes no argument.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return true;
    }
    // SAFETY: statvfs is plain integers, for which all zeroes is valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: exe is open and st a valid out-pointer for the call.
    unsafe { libc::fstatvfs(exe.as_raw_fd(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0 }
}

/// Re-executes this program, with the same arguments and environment, from
/// a view of its binary that cannot be written, unless it runs from one
/// already. Returns only when no re-exec was needed, or with the error.
pub fn ensure_protected() -> Result<()> {
    if is_protected() {
        return Ok(());
    }
    let exe =
        std::fs::read_link("/proc/self/exe").map_err(|e| Error::os("read /proc/self/exe", e))?;
    let view = match overlay_view(&exe) {
        Ok(fd) => fd,
        Err(_) => sealed_copy()?,
    };
    reexec(&view)
}

/// The binary opened through a detached read-only overlayfs whose only
/// content layers are its own directory and an empty tmpfs (overlayfs
/// wants two lower layers when it has no upper one).
fn overlay_view(exe: &Path) -> io::Result<OwnedFd> {
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no directory"));
    };
    let empty = mountcall::detached_fs("tmpfs", &[("size", "4k")], MOUNT_ATTR_RDONLY)?;
    let dir = dir.to_str().ok_or(io::ErrorKind::InvalidInput)?;
    let escaped = dir.replace('\\', "\\\\").replace(':', "\\:");
    let lower = format!("{escaped}:/proc/self/fd/{}", empty.as_raw_fd());
    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
    let mnt = mountcall::detached_fs("overlay", &[("lowerdir", &lower)], attrs)?;
    let name = CString::new(name.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    // SAFETY: mnt is open and name NUL-terminated for the call; without
    // O_CREAT no mode argument is read.
    let fd = unsafe { libc::openat(mnt.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A sealed memfd holding a copy of the binary.
fn sealed_copy() -> Result<OwnedFd> {
    let exe = File::open("/proc/self/exe").map_err(|e| Error::os("open /proc/self/exe", e))?;
    let name = c"berth-runtime";
    // SAFETY: name is a NUL-terminated literal.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(os("memfd_create"));
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let mfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = exe
        .metadata()
        .map_err(|e| Error::os("stat /proc/self/exe", e))?
        .len();
    let mut left = len as usize;
    while left > 0 {
        // SAFETY: both fds are open for the call; a null offset means exe's
        // own file position.
        let n =
            unsafe { libc::sendfile(mfd.as_raw_fd(), exe.as_raw_fd(), std::ptr::null_mut(), left) };
        if n <= 0 {
            return Err(os("copy the runtime binary"));
        }
        left -= n as usize;
    }
    // SAFETY: mfd is open for the call; F_ADD_SEALS takes an int.
    if unsafe { libc::fcntl(mfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
        return Err(os("seal the runtime copy"));
    }
    Ok(mfd)
}

fn reexec(fd: &OwnedFd) -> Result<()> {
    let cstr = |s: OsString| CString::new(s.into_vec()).unwrap_or_default();
    let args: Vec<CString> = std::env::args_os().map(cstr).collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstr(kv)
        })
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: fd is open for the call; the empty path is NUL-terminated;
    // argv and envp are NULL-terminated arrays of pointers into args and
    // env, which outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(os("re-execute from the protected view"))
}
