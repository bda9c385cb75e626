//! User namespaces held by an fd, and id-mapped clones of mounts: what an
//! idmapped mount (mount_setattr's MOUNT_ATTR_IDMAP) needs. Safe to call
//! from a multi-threaded daemon: the namespace is made by a child that
//! shares this process's memory (CLONE_VM, as posix_spawn's child does), so
//! nothing is copied and no fork handler runs; the child makes only raw
//! system calls on a stack of its own.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One line of a uid or gid map: `size` ids from `inside` (in the
/// namespace) onto `outside` (on the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub size: u32,
}

/// The text of /proc/PID/uid_map (or gid_map) for `ranges`.
pub fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.size))
        .collect()
}

/// The host id that `id` in the namespace is, if the ranges map it.
pub fn to_host(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges
        .iter()
        .find(|r| id >= r.inside && id - r.inside < r.size)
        .map(|r| r.outside + (id - r.inside))
}

const STACK: usize = 64 * 1024;

/// The holder's whole life: close its copy of the write end, then wait
/// for the parent to close its own (EOF).
extern "C" fn hold(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: arg points at the two pipe fds in the parent's frame, which
    // outlives this child (the parent waits for it before returning); the
    // child's fd table is its own copy, so closing here touches only it.
    unsafe {
        let fds = arg as *const [libc::c_int; 2];
        libc::close((*fds)[1]);
        let mut b = 0u8;
        libc::read((*fds)[0], &mut b as *mut u8 as *mut libc::c_void, 1);
    }
    0
}

/// A new user namespace with these maps, held by the returned fd.
pub fn create(uids: &[IdRange], gids: &[IdRange]) -> io::Result<OwnedFd> {
    if uids.is_empty() || gids.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a user namespace needs a uid map and a gid map",
        ));
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: an anonymous private mapping, checked below; unmapped by
    // `Stack`'s drop only after the child has been waited for.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let stack = Stack(base);
    let mut pidfd: libc::c_int = -1;
    // SAFETY: `hold` runs on the new stack (its top passed, as x86_64 and
    // aarch64 stacks grow down) and makes only raw system calls on fds
    // `arg` names; `fds` and `pidfd` live in this frame until after the
    // wait below. No exit signal: the child is waited for through its
    // pidfd with __WALL, and no SIGCHLD reaches a daemon's handlers.
    let pid = unsafe {
        libc::clone(
            hold,
            (base as *mut u8).add(STACK) as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_NEWUSER | libc::CLONE_PIDFD,
            fds.as_mut_ptr() as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CLONE_PIDFD stored a new pidfd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let made = (|| {
        std::fs::write(format!("/proc/{pid}/uid_map"), map_text(uids))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), map_text(gids))?;
        File::open(format!("/proc/{pid}/ns/user")).map(OwnedFd::from)
    })();
    drop(w);
    drop(r);
    wait_exit(&pidfd)?;
    drop(stack);
    made
}

/// Waits for the child behind `pidfd` to exit (it is ours, exit signal
/// or not).
fn wait_exit(pidfd: &OwnedFd) -> io::Result<()> {
    const P_PIDFD: libc::idtype_t = 3;
    loop {
        // SAFETY: a zeroed siginfo_t for waitid to fill; the pidfd is open.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::__WALL,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

struct Stack(*mut libc::c_void);

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `create`, of STACK bytes, no longer
        // used: its only user, the child, has exited.
        unsafe { libc::munmap(self.0, STACK) };
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// mount_setattr(2) on the mount behind `fd` (its whole tree when
/// `recursive`): attributes set and cleared, a propagation type, and an
/// id mapping through `userns` (a detached mount only).
pub fn mount_setattr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    (attr_set, attr_clr): (u64, u64),
    propagation: u64,
    userns: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut a = MountAttr {
        attr_set,
        attr_clr,
        propagation,
        userns_fd: 0,
    };
    if let Some(ns) = userns {
        a.attr_set |= MOUNT_ATTR_IDMAP;
        a.userns_fd = ns.as_raw_fd() as u64;
    }
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: fd and the userns fd in `a` are borrowed for the call; `a` is
    // a mount_attr of the size given and the path an empty C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &mut a as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A detached clone of the mount tree at `path` whose ids are mapped
/// through `userns` (files owned by id N on disk show as the host id N
/// maps to). Mounted nowhere: it lives while the fd or a mount made on it
/// (an overlay lower named by /proc/self/fd/N) does.
pub fn idmapped_clone(path: &Path, userns: &OwnedFd) -> io::Result<OwnedFd> {
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        path,
        rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
            | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    mount_setattr(tree.as_fd(), false, (0, 0), 0, Some(userns.as_fd()))?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn ids_map_to_the_host_through_their_range() {
        let r = [IdRange {
            inside: 0,
            outside: 100000,
            size: 65536,
        }];
        assert_eq!(to_host(&r, 0), Some(100000));
        assert_eq!(to_host(&r, 65535), Some(165535));
        assert_eq!(to_host(&r, 65536), None);
        assert_eq!(map_text(&r), "0 100000 65536\n");
    }

    #[test]
    fn an_idmapped_clone_shows_root_owned_files_as_the_mapped_root() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), "x").unwrap();
        let map = [IdRange {
            inside: 0,
            outside: 200000,
            size: 65536,
        }];
        let ns = create(&map, &map).unwrap();
        let tree = idmapped_clone(d.path(), &ns).unwrap();
        let seen = std::fs::metadata(format!("/proc/self/fd/{}/f", tree.as_raw_fd())).unwrap();
        assert_eq!((seen.uid(), seen.gid()), (200000, 200000));
        // The directory itself is untouched.
        assert_eq!(std::fs::metadata(d.path().join("f")).unwrap().uid(), 0);
    }

    #[test]
    fn a_namespace_without_maps_is_refused() {
        assert!(create(&[], &[]).is_err());
    }
}
