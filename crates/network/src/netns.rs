//! Network namespaces pinned by a bind mount, as `ip netns add` does, so they
//! outlive every process in them and can be named by path (CNI_NETNS); and
//! a pod's uts and ipc namespaces, pinned the same way.
//!
//! Nothing here changes the calling thread's namespace: new namespaces are
//! made, and foreign ones entered, in short-lived threads. unshare(2) and
//! setns(2) with CLONE_NEWNET act on the calling thread only, and the thread
//! dies with its namespace membership.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// statfs f_type of nsfs, the filesystem namespace files live on.
const NSFS_MAGIC: i64 = 0x6e73_6673;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("invalid netns name {0:?}: must be a single path component without NUL")]
    InvalidName(String),
    #[error("namespace pin {0} already exists")]
    Exists(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not a network namespace")]
    NotNetns(PathBuf),
    #[error("{0:?} is not a sysctl of network namespaces (net.*)")]
    NotNetSysctl(String),
}

type Result<T> = std::result::Result<T, NetnsError>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Creates a new network namespace with `lo` up, pinned at `<dir>/<name>`.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    fs::create_dir_all(dir).map_err(io_err("creating netns directory", dir))?;
    make_shared(dir)?;
    let pin = dir.join(name);
    create_pinned(&[(Kind::Net, pin.clone())], || crate::link::set_up("lo"))?;
    Ok(pin)
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(NetnsError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// A kind of namespace a thread can make for itself alone (unshare(2)
/// acts on the calling thread for these) and a bind mount can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Net,
    Uts,
    Ipc,
}

impl Kind {
    fn flag(self) -> libc::c_int {
        match self {
            Kind::Net => libc::CLONE_NEWNET,
            Kind::Uts => libc::CLONE_NEWUTS,
            Kind::Ipc => libc::CLONE_NEWIPC,
        }
    }

    fn proc_name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Uts => "uts",
            Kind::Ipc => "ipc",
        }
    }
}

/// Makes one new namespace of each kind given, runs `setup` inside them
/// (a hostname, `lo` up) and pins each at its path, so they outlive every
/// process: a pod's namespaces without a process to hold them. The
/// directories must exist; on error nothing is left pinned.
pub fn create_pinned(
    pins: &[(Kind, PathBuf)],
    setup: impl FnOnce() -> io::Result<()> + Send,
) -> Result<()> {
    let mut made: Vec<&Path> = Vec::new();
    for (_, pin) in pins {
        // An empty file the namespace gets bind-mounted over; O_EXCL so
        // two creators of one name cannot share (and later both remove) it.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(pin)
        {
            Ok(_) => made.push(pin),
            Err(e) => {
                for p in made {
                    let _ = remove(p);
                }
                return Err(match e.kind() {
                    io::ErrorKind::AlreadyExists => NetnsError::Exists(pin.clone()),
                    _ => io_err("creating namespace pin", pin)(e),
                });
            }
        }
    }
    let flags = pins.iter().fold(0, |f, (k, _)| f | k.flag());
    let first = pins.first().map(|(_, p)| p.clone()).unwrap_or_default();
    let done = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            // SAFETY: unshare of these kinds only affects this thread,
            // which ends right after.
            check(unsafe { libc::unshare(flags) })
                .map_err(io_err("unshare namespaces for", &first))?;
            setup().map_err(io_err("setting up the namespaces of", &first))?;
            for (kind, pin) in pins {
                let own = PathBuf::from(format!("/proc/thread-self/ns/{}", kind.proc_name()));
                bind_mount(&own, pin).map_err(io_err("pinning namespace at", pin))?;
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::Io {
                what: "namespace creation thread panicked for",
                path: first.clone(),
                source: io::Error::other("panic"),
            })
        })
    });
    if let Err(e) = done {
        for (_, pin) in pins {
            let _ = remove(pin);
        }
        return Err(e);
    }
    Ok(())
}

/// Makes `dir` a mount point with shared propagation, as `ip netns` does with
/// /run/netns: pins made later then show up in mount namespaces that were
/// copied from this one (containers, other tools), not only here.
fn make_shared(dir: &Path) -> Result<()> {
    // Two creators that both find the directory unmounted would both bind
    // it onto itself, and the upper mount would hide pins made below it:
    // one at a time (the lock is on the directory's inode, which the bind
    // does not change).
    let guard = fs::File::open(dir).map_err(io_err("opening netns directory", dir))?;
    // SAFETY: a valid fd; the lock goes with `guard`.
    check(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&guard), libc::LOCK_EX) })
        .map_err(io_err("locking netns directory", dir))?;
    let c = cstr(dir).map_err(io_err("netns directory", dir))?;
    let flags = libc::MS_SHARED | libc::MS_REC;
    // SAFETY: c is a valid path; a propagation change takes no data.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EINVAL) {
        return Err(io_err("making netns directory shared", dir)(e));
    }
    // EINVAL: not a mount point yet. Bind it onto itself, then retry.
    bind_mount(dir, dir).map_err(io_err("bind-mounting netns directory on itself", dir))?;
    // SAFETY: as above.
    check(unsafe {
        libc::mount(
            c"none".as_ptr(),
            c.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    })
    .map_err(io_err("making netns directory shared", dir))
}

fn bind_mount(src: &Path, dst: &Path) -> io::Result<()> {
    let s = cstr(src)?;
    let d = cstr(dst)?;
    // SAFETY: both are valid NUL-terminated paths.
    check(unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    })
}

/// Unpins and deletes the netns at `path`. A path that is already gone, or
/// not mounted, is fine: removal is retried after crashes.
pub fn remove(path: &Path) -> Result<()> {
    let c = cstr(path).map_err(io_err("netns pin", path))?;
    // Loop: a pin can be mounted more than once if two tools raced on it.
    for _ in 0..16 {
        // SAFETY: c is a valid path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::ENOENT) => break,
                _ => return Err(io_err("unmounting netns pin", path)(e)),
            }
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("deleting netns pin", path)(e)),
    }
}

/// True if `path` is a pinned namespace (an nsfs mount), not just a file.
pub fn exists(path: &Path) -> bool {
    let Ok(c) = cstr(path) else { return false };
    // SAFETY: zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid path and st a valid out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == NSFS_MAGIC
}

/// Runs `f` on a thread that has joined the network namespace at `path`,
/// leaving the caller's namespace untouched.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    if !exists(path) {
        return Err(NetnsError::NotNetns(path.to_path_buf()));
    }
    let file = fs::File::open(path).map_err(io_err("opening netns", path))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only; the thread ends after `f`.
            check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) })
                .map_err(io_err("entering netns", path))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Sets sysctl `key` (`net.ipv4.ping_group_range`) of the network
/// namespace at `path` with this process's privileges (the host's root,
/// where a container in a user namespace could not), from a thread inside
/// it: /proc/sys/net is the namespace of the thread that opens it.
pub fn set_sysctl(path: &Path, key: &str, value: &str) -> Result<()> {
    let valid = key.starts_with("net.")
        && key
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !valid {
        return Err(NetnsError::NotNetSysctl(key.to_string()));
    }
    let file = Path::new("/proc/sys").join(key.replace('.', "/"));
    run_in(path, || fs::write(&file, value))?.map_err(io_err("writing sysctl", &file))
}

/// A throw-away network namespace held by a parked thread rather than a
/// mount, named by its /proc path; it vanishes when dropped. Used as a
/// stand-in when a plugin needs *some* netns and the real one is gone.
pub struct Scratch {
    path: PathBuf,
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scratch {
    /// Makes the namespace and runs `setup` inside it.
    pub fn new(setup: impl FnOnce() -> io::Result<()> + Send + 'static) -> Result<Scratch> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: unshare affects only this thread, which ends when released.
            let made = check(unsafe { libc::unshare(libc::CLONE_NEWNET) }).and_then(|()| setup());
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let ok = made.is_ok();
            let _ = ready_tx.send(made.map(|()| tid));
            if ok {
                // Park until the owner drops its sender.
                let _ = release_rx.recv();
            }
        });
        let scratch_path = Path::new("/proc/thread-self/ns/net");
        match ready_rx.recv() {
            Ok(Ok(tid)) => Ok(Scratch {
                path: PathBuf::from(format!("/proc/{}/task/{tid}/ns/net", std::process::id())),
                release: Some(release_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(io_err("setting up a scratch netns", scratch_path)(e))
            }
            Err(_) => {
                let _ = thread.join();
                Err(io_err("setting up a scratch netns", scratch_path)(
                    io::Error::other("setup thread panicked"),
                ))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
