//! Turning the current process into the container's process: limits,
//! security settings, user, working directory, then execve. Shared by the
//! container's init and by exec.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{PosixRlimitType, Process};

use crate::capabilities::CapSets;
use crate::error::{Context, Error, Result};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the process needs prepared before the user switch, computed by the
/// runtime before it forks so that errors surface before anything exists.
pub struct Prepared {
    /// The five sets; a config without `capabilities` gets all of them
    /// empty, as with runc, not the runtime's own.
    pub caps: CapSets,
    pub seccomp: Option<crate::seccomp::Filter>,
    /// The filter hands syscalls to a listener: it must be loaded while
    /// the runtime is still there to pass the notify fd on.
    pub seccomp_notify: bool,
    /// The LSM label for the exec, decided from the host's /sys.
    lsm: Option<LsmExec>,
    /// The host's procfs: LSM attributes are written through it, never
    /// through whatever the container has mounted at /proc.
    host_proc: OwnedFd,
}

/// An LSM attribute file (under /proc/thread-self) and what goes in it.
struct LsmExec {
    attr: &'static str,
    value: String,
    what: String,
}

impl Prepared {
    /// `seccomp_cache`: where compiled filters are kept between calls.
    pub fn new(
        p: &Process,
        linux: &oci_spec::runtime::Linux,
        seccomp_cache: Option<&Path>,
    ) -> Result<Prepared> {
        let nnp = p.no_new_privileges() == Some(true);
        Ok(Prepared {
            caps: CapSets::new(p.capabilities().as_ref()),
            seccomp: linux
                .seccomp()
                .as_ref()
                .map(|s| crate::seccomp::prepare(s, nnp, seccomp_cache))
                .transpose()?,
            seccomp_notify: linux
                .seccomp()
                .as_ref()
                .is_some_and(crate::seccomp::uses_notify),
            lsm: lsm_exec(p),
            host_proc: crate::procfs::open_host_proc()?,
        })
    }

    /// Applies the AppArmor profile or SELinux label on exec.
    pub fn set_lsm(&self) -> Result<()> {
        let Some(l) = &self.lsm else { return Ok(()) };
        crate::procfs::write_via(&self.host_proc, l.attr, &l.value).ctx(|| l.what.clone())
    }

    /// Whether the filter goes on before the user switch (and `Ready`):
    /// without no_new_privs only a privileged process may load it.
    pub fn seccomp_early(&self, p: &Process) -> bool {
        self.seccomp_notify || p.no_new_privileges() != Some(true)
    }

    /// Loads the filter, handing its notify fd (if any) to the runtime.
    pub fn load_seccomp(&self, chan: &crate::sync::Channel) -> Result<()> {
        let Some(filter) = &self.seccomp else {
            return Ok(());
        };
        filter.load()?;
        if let crate::seccomp::Filter::Context(ctx) = filter
            && self.seccomp_notify
        {
            let fd = ctx
                .get_notify_fd()
                .map_err(|e| Error::Seccomp(format!("notify fd: {e}")))?;
            // SAFETY: get_notify_fd succeeded, so fd is the listener fd libseccomp
            // holds open since the load above; it is only borrowed for the send.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            chan.send_with_fd(&crate::sync::Msg::SeccompFd, fd)?;
        }
        Ok(())
    }
}

/// What every container process gets before the user switch: limits,
/// scheduling, personality, memory policy, LSM labels and no_new_privs.
/// (oom_score_adj is the runtime's to set: see set_oom_score_adj.)
pub fn apply_attributes(
    p: &Process,
    linux: &oci_spec::runtime::Linux,
    prepared: &Prepared,
) -> Result<()> {
    set_rlimits(p)?;
    crate::procattrs::set_io_priority(p)?;
    if let Some(s) = p.scheduler() {
        crate::procattrs::set_scheduler(s)?;
    }
    if let Some(pers) = linux.personality() {
        crate::procattrs::set_personality(pers)?;
    }
    if let Some(m) = linux.memory_policy() {
        crate::procattrs::set_memory_policy(m)?;
    }
    prepared.set_lsm()?;
    if p.no_new_privileges() == Some(true) {
        set_no_new_privs()?;
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: lim is a valid rlimit for the call.
        if unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) } != 0 {
            let e = io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                " (raising a hard limit needs CAP_SYS_RESOURCE)"
            } else {
                ""
            };
            return Err(Error::os(
                format!("set {:?} to {}:{}{hint}", r.typ(), r.soft(), r.hard()),
                e,
            ));
        }
    }
    Ok(())
}

/// Sets the oom_score_adj of the child `pid` from the runtime, before the
/// child runs anything: its forks inherit it, and the child need not
/// write its own /proc while it cannot be dumped.
pub fn set_oom_score_adj(pid: i32, adj: i32) -> Result<()> {
    fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string()).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
            " (lowering it needs CAP_SYS_RESOURCE)"
        } else {
            ""
        };
        Error::os(format!("write oom_score_adj {adj}{hint}"), e)
    })
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Error::os("set no_new_privs", io::Error::last_os_error()));
    }
    Ok(())
}

/// The AppArmor profile or SELinux label to apply on exec, where the host
/// has that LSM; like runc, nothing where it has not.
fn lsm_exec(p: &Process) -> Option<LsmExec> {
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        let enabled = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y");
        if enabled {
            // The per-LSM file where the kernel stacks LSMs.
            let attr = if Path::new("/proc/self/attr/apparmor/exec").exists() {
                "thread-self/attr/apparmor/exec"
            } else {
                "thread-self/attr/exec"
            };
            return Some(LsmExec {
                attr,
                value: format!("exec {profile}"),
                what: format!("apply AppArmor profile {profile}"),
            });
        }
    }
    if let Some(label) = p.selinux_label().as_deref().filter(|s| !s.is_empty())
        && Path::new("/sys/fs/selinux/enforce").exists()
    {
        return Some(LsmExec {
            attr: "thread-self/attr/exec",
            value: label.to_string(),
            what: format!("set SELinux label {label}"),
        });
    }
    None
}

/// Until it execs the user's program, a container process holds host
/// file descriptors and its /proc/<pid>/exe is the runtime binary: with
/// this, only the host's root may open its /proc files or ptrace it.
/// execve makes the program's process dumpable again (when it may be).
pub fn undumpable() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// Joins a new session keyring named after the container, so it does not
/// share the host's.
pub fn join_session_keyring(name: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = CString::new(format!("_ses.{name}")).unwrap_or_default();
    // SAFETY: name is a NUL-terminated string that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        // Kernels without keys, or a seccomp profile denying keyctl.
        if !matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) {
            return Err(Error::os("join a session keyring", e));
        }
    }
    Ok(())
}

/// Switches to the configured user and groups, keeping the capabilities
/// the spec grants.
pub fn switch_user(p: &Process, caps: &CapSets) -> Result<()> {
    let user = p.user();
    caps.drop_bounding()?;
    // Keep the permitted set across setuid; the effective set is restored
    // from it below.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // SAFETY: groups holds groups.len() gids (none is read when empty).
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        let e = io::Error::last_os_error();
        // A user namespace with setgroups denied: only an empty list would
        // have worked, and there is nothing to drop.
        if !(e.raw_os_error() == Some(libc::EPERM) && groups.is_empty()) {
            return Err(Error::os(format!("setgroups {groups:?}"), e));
        }
    }
    // SAFETY: integer arguments only.
    if unsafe { libc::setresgid(user.gid(), user.gid(), user.gid()) } != 0 {
        return Err(Error::os(
            format!("setgid {}", user.gid()),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: integer arguments only.
    if unsafe { libc::setresuid(user.uid(), user.uid(), user.uid()) } != 0 {
        return Err(Error::os(
            format!("setuid {}", user.uid()),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    caps.apply()?;
    // SAFETY: umask takes a mode and cannot fail.
    unsafe { libc::umask(user.umask().unwrap_or(0o022) as libc::mode_t) };
    Ok(())
}

/// The environment for the process: the spec's, plus HOME from the
/// container's /etc/passwd when the spec does not set it.
pub fn environment(p: &Process) -> Vec<String> {
    let mut env = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(p.user().uid()).unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    env
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
    })
}

/// Finds the program as execvp would, in the PATH of the container's
/// environment. The wording of the error is Go's, which podman maps to
/// exit code 127.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf> {
    let not_found = || {
        Error::Init(format!(
            "exec: {arg0:?}: executable file not found in $PATH"
        ))
    };
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        return match is_executable(&p) {
            Ok(true) => Ok(p),
            Ok(false) => Err(Error::Init(format!("exec: {arg0:?}: permission denied"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::Init(format!(
                "exec: {arg0:?}: no such file or directory"
            ))),
            Err(e) => Err(Error::os(format!("exec {arg0:?}"), e)),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg0);
        if let Ok(true) = is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

fn is_executable(p: &Path) -> io::Result<bool> {
    let meta = fs::metadata(p)?;
    if meta.is_dir() {
        return Ok(false);
    }
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // access(2) checks as the real (container) user, after the switch.
    Ok(meta.permissions().mode() & 0o111 != 0
        // SAFETY: c is a NUL-terminated path that outlives the call.
        && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0)
}

pub fn chdir(cwd: &Path) -> Result<()> {
    rustix::process::chdir(cwd).ctx(|| format!("chdir to cwd {:?}", cwd.display().to_string()))
}

/// Resets what this runtime process changed for itself and must not leak
/// into the container: the signal mask and ignored signals.
pub fn reset_signals() {
    // SAFETY: set is a valid sigset_t (zeroed, then emptied) for the calls;
    // SIG_DFL installs no handler code.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Rust ignores SIGPIPE at startup; execve keeps ignored signals.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Closes every descriptor from `first` on except those in `keep`, then
/// marks the kept ones close-on-exec: what the runtime opened before the
/// fork and the process no longer needs (cgroup dirs, sockets, a pty
/// master) is gone before anything of the container can look.
///
/// # Safety
/// This closes fds that `OwnedFd`s and `File`s elsewhere still own: the
/// caller (a forked container process) must never use or drop any of them
/// again, only exec or `exit_child`.
pub unsafe fn close_fds_except(first: u32, keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd >= first)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut lo = first;
    for k in keep.iter().copied().chain([u32::MAX]) {
        if k > lo {
            let hi = if k == u32::MAX { k } else { k - 1 };
            // SAFETY: by this fn's contract, the owners of the fds closed
            // here are never used or dropped again.
            let r = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0) };
            if r != 0 {
                // Before Linux 5.9: one by one, from what /proc lists.
                for fd in open_fds().into_iter().filter(|&fd| fd >= lo && fd <= hi) {
                    // SAFETY: as for close_range above; the listing's own fd,
                    // closed by now, just gets EBADF.
                    unsafe { libc::close(fd as RawFd) };
                }
            }
        }
        lo = k.saturating_add(1);
    }
    cloexec_from(first);
}

fn open_fds() -> Vec<u32> {
    fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Marks every fd from `first` on close-on-exec, so only stdio and the
/// preserved fds reach the container.
pub fn cloexec_from(first: u32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: integer arguments; CLOSE_RANGE_CLOEXEC only sets a flag, no fd
    // is closed in this process.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r != 0 {
        // Before Linux 5.11: walk /proc/self/fd.
        for fd in open_fds().into_iter().filter(|&fd| fd >= first) {
            // SAFETY: setting FD_CLOEXEC closes nothing; a stale fd gets EBADF.
            unsafe { libc::fcntl(fd as RawFd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// execve(2). Returns only on failure.
pub fn exec(path: &Path, args: &[String], env: &[String]) -> Error {
    let cstr = |s: &str| CString::new(s).unwrap_or_default();
    let path_c = CString::new(path.as_os_str().as_bytes()).unwrap_or_default();
    let argv: Vec<CString> = args.iter().map(|a| cstr(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| cstr(e)).collect();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: path_c is NUL-terminated; argv_p and envp_p are
    // NULL-terminated arrays of pointers into argv and envp, all alive here.
    unsafe { libc::execve(path_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    Error::os(
        format!("exec {}", path.display()),
        io::Error::last_os_error(),
    )
}
