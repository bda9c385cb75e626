//! The container's side of `create`: what the cloned child does, in order,
//! until it blocks waiting for `start` and then execs the user's program.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::fs::{Mode, OFlags};

use crate::cgroups::CgroupRecord;
use crate::console;
use crate::error::{Context, Error, Result};
use crate::hooks::{self, Kind};
use crate::namespaces::{self, Namespaces};
use crate::process::{self, Prepared};
use crate::rootfs::{self, Rootfs};
use crate::spawn::{self, Forked};
use crate::state::OciState;
use crate::sync::{Channel, Msg};

/// Everything the child needs, prepared by the parent before the fork.
pub struct InitPlan<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub ns: &'a Namespaces,
    pub joins: &'a [(LinuxNamespaceType, OwnedFd)],
    pub cgroup: &'a CgroupRecord,
    /// O_PATH fd of the exec fifo.
    pub fifo: &'a OwnedFd,
    /// O_PATH fd of the host's /proc, to reopen the fifo after pivot_root.
    pub proc_fd: &'a OwnedFd,
    /// Where to send the pty master when the process has a terminal.
    pub console: Option<&'a OwnedFd>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub prepared: &'a Prepared,
    /// The child was cloned with every new namespace already (fast path);
    /// otherwise it joins and unshares them itself, then forks again.
    pub direct: bool,
    /// The parent runs prestart/createRuntime hooks: stop for them.
    pub runtime_hooks: bool,
    /// Idmapped mounts' sources, already mapped, by mount index.
    pub idmaps: &'a [(usize, OwnedFd)],
}

/// Runs in the cloned child; never returns.
/// The init's command name until it execs the container's program: `start`
/// tells by it whether the init still waits to be released.
pub(crate) const INIT_NAME: &std::ffi::CStr = c"berth-init";

pub fn run(plan: &InitPlan, chan: &Channel) -> ! {
    // Only a name for ps and for `start`; nothing depends on it failing.
    let _ = rustix::thread::set_name(INIT_NAME);
    let err = match setup(plan, chan) {
        Ok(Stage::Exited) => spawn::exit_child(0),
        Ok(Stage::Waiting) => match wait_and_exec(plan) {
            Ok(never) => match never {},
            // The parent is gone by now: the container's stderr is where
            // the error can still be seen.
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "berth-runtime: {e}");
                spawn::exit_child(127)
            }
        },
        Err(e) => e,
    };
    let _ = chan.send(&Msg::Error(err.to_string()));
    spawn::exit_child(1)
}

enum Stage {
    /// This process handed over to a second child and is done.
    Exited,
    /// Setup is complete; wait for `start`.
    Waiting,
}

fn setup(plan: &InitPlan, chan: &Channel) -> Result<Stage> {
    process::reset_signals();
    // SAFETY: umask takes a mode and cannot fail.
    unsafe { libc::umask(0) };
    // Dumpable until Go: the runtime writes this process's id maps before
    // it says Go, and an ordinary user's runtime may write /proc/<pid>
    // files only of a dumpable process (a non-dumpable one's belong to the
    // host's root). Nothing of the container runs meanwhile.
    let go = chan.recv();
    process::undumpable();
    let Msg::Go { pid: host_pid } = (match go? {
        Some(m) => m,
        None => return Err(Error::Other("the runtime went away".into())),
    }) else {
        return Err(Error::Other("unexpected message from the runtime".into()));
    };
    let mut host_pid = host_pid;
    let ns = plan.ns;
    if plan.direct {
        for (t, fd) in plan.joins {
            namespaces::setns(fd, *t)?;
        }
    } else {
        if let Some(child) = enter_namespaces(plan, chan)? {
            match child {
                Some(pid) => {
                    chan.send(&Msg::Pid(pid))?;
                    return Ok(Stage::Exited);
                }
                None => host_pid = 0,
            }
        }
    }
    if ns.contains(LinuxNamespaceType::User) {
        // Become root of the user namespace: the mounts below need it.
        // SAFETY: integer arguments only.
        if unsafe { libc::setresgid(0, 0, 0) } != 0 || unsafe { libc::setresuid(0, 0, 0) } != 0 {
            return Err(Error::os(
                "become root in the user namespace",
                std::io::Error::last_os_error(),
            ));
        }
    }
    if ns.is_new(LinuxNamespaceType::Cgroup) {
        // After the parent placed us: the namespace's root is our cgroup.
        namespaces::unshare(libc::CLONE_NEWCGROUP)?;
    }
    if host_pid == 0 {
        // A second fork happened: this process is that child; the parent
        // learned its pid from the Pid message.
        host_pid = parent_reported_pid();
    }
    rustix::process::setsid().ctx(|| "setsid")?;
    if !plan.no_new_keyring {
        process::join_session_keyring(plan.id)?;
    }

    let mut root = Rootfs::new(
        plan.rootfs,
        plan.bundle,
        plan.spec,
        plan.cgroup,
        (
            ns.contains(LinuxNamespaceType::Cgroup),
            // A runtime already in a user's namespace (rootless) has the
            // same limits as one that made a namespace for the container.
            ns.contains(LinuxNamespaceType::User) || berth_base::rootless::in_user_namespace(),
        ),
        plan.idmaps,
    );
    root.prepare()?;
    if plan.runtime_hooks {
        chan.send(&Msg::RunHooks)?;
        chan.expect(&Msg::HooksDone)?;
    }
    let hooks = plan.spec.hooks().as_ref();
    if hooks.is_some_and(|h| !Kind::CreateContainer.of(h).is_empty()) {
        let state = creating_state(plan, host_pid);
        hooks::run(Kind::CreateContainer, hooks, &state)?;
    }
    rootfs::enter(plan.rootfs, plan.no_pivot, plan.spec)?;

    // Sysctls go through /proc/sys before it turns read-only below.
    let linux = plan.spec.linux().as_ref();
    for (key, value) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).ctx(|| format!("set sysctl {key}={value}"))?;
    }
    if let Some(h) = plan.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        rustix::system::sethostname(h.as_bytes()).ctx(|| format!("set hostname {h}"))?;
    }
    if let Some(d) = plan.spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        rustix::system::setdomainname(d.as_bytes()).ctx(|| format!("set domainname {d}"))?;
    }
    rootfs::finish(plan.spec)?;

    let proc_ = plan.spec.process().as_ref().expect("validated");
    if proc_.terminal() == Some(true) {
        let size = proc_
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        let pty = console::open_pty(size)?;
        console::bind_console(pty.number)?;
        if let Some(sock) = plan.console {
            console::send_fd(sock.as_fd(), pty.master.as_fd(), "/dev/ptmx")?;
        }
        console::become_tty(&pty.slave)?;
    }
    apply_process(plan, proc_, chan)?;
    chan.send(&Msg::Ready)?;
    Ok(Stage::Waiting)
}

/// The slow path: joins existing namespaces, unshares new ones, and forks
/// once more when the pid or time namespace changed (they apply to
/// children only). Returns Some(Some(pid)) in the process that forked,
/// Some(None) in the new child, None when no fork was needed.
fn enter_namespaces(plan: &InitPlan, chan: &Channel) -> Result<Option<Option<i32>>> {
    let ns = plan.ns;
    for (t, fd) in plan.joins {
        namespaces::setns(fd, *t)?;
    }
    if ns.is_new(LinuxNamespaceType::User) {
        namespaces::unshare(libc::CLONE_NEWUSER)?;
        // Dumpable while the runtime writes the maps (see `setup`).
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
        let mapped = chan
            .send(&Msg::MapIds)
            .and_then(|()| chan.expect(&Msg::IdsMapped));
        process::undumpable();
        mapped?;
    }
    let rest = ns.new_flags() & !(libc::CLONE_NEWUSER | libc::CLONE_NEWCGROUP);
    namespaces::unshare(rest)?;
    if ns.is_new(LinuxNamespaceType::Time) {
        write_time_offsets(plan.spec)?;
    }
    let fork_needed = ns.contains(LinuxNamespaceType::Pid) || ns.contains(LinuxNamespaceType::Time);
    if !fork_needed {
        return Ok(None);
    }
    // SAFETY: a forked child (the container's first process) has one thread.
    match unsafe { spawn::fork(libc::CLONE_PARENT, None) }.ctx(|| "fork into the pid namespace")? {
        Forked::Child => Ok(Some(None)),
        Forked::Parent { pid, .. } => Ok(Some(Some(pid))),
    }
}

/// The host pid of this process after the second fork: it is in a new pid
/// namespace now, so getpid() says 1; /proc/self is the host's until the
/// container's /proc is mounted, and its name is the host pid.
fn parent_reported_pid() -> i32 {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse().ok())
        .unwrap_or(0)
}

fn write_time_offsets(spec: &Spec) -> Result<()> {
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
        .unwrap_or_default();
    let mut text = String::new();
    for (clock, off) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::config(
                format!("linux.timeOffsets.{clock}"),
                "only monotonic and boottime can be offset",
            ));
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if !text.is_empty() {
        // The file belongs to the host's root while this process cannot be
        // dumped; nothing of the container runs yet in this window.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
        let written = std::fs::write("/proc/self/timens_offsets", text);
        process::undumpable();
        written.ctx(|| "write time namespace offsets")?;
    }
    Ok(())
}

fn creating_state(plan: &InitPlan, pid: i32) -> OciState {
    OciState {
        oci_version: crate::state::OCI_VERSION.into(),
        id: plan.id.into(),
        pid,
        status: "creating".into(),
        bundle: plan.bundle.display().to_string(),
        rootfs: plan.rootfs.display().to_string(),
        created: String::new(),
        owner: String::new(),
        annotations: plan
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

/// Limits, security settings and the user switch: everything that can
/// fail is done before `Ready`, so `create` reports it.
fn apply_process(plan: &InitPlan, p: &oci_spec::runtime::Process, chan: &Channel) -> Result<()> {
    let linux = plan.spec.linux().clone().unwrap_or_default();
    process::apply_attributes(p, &linux, plan.prepared)?;
    if plan.prepared.seccomp_early(p) {
        plan.prepared.load_seccomp(chan)?;
    }
    process::switch_user(p, &plan.prepared.caps)?;
    process::chdir(p.cwd())?;
    let env = process::environment(p);
    let args = p.args().as_deref().unwrap_or(&[]);
    process::find_executable(&args[0], &env)?;
    process::cloexec_from(3 + plan.preserve_fds);
    Ok(())
}

/// Blocks until `start` opens the fifo, then runs the startContainer hooks
/// and execs the user's program.
fn wait_and_exec(plan: &InitPlan) -> Result<std::convert::Infallible> {
    // What the runtime opened before the fork goes before the long wait.
    // (Here, not earlier: the owners of these fds live in the runtime's
    // frames, which this process never returns to, while setup's own
    // locals have closed theirs by now.)
    let keep = [plan.fifo.as_raw_fd(), plan.proc_fd.as_raw_fd()];
    // SAFETY: as said above; on failure `run` only writes to stderr (fd 2,
    // kept) and calls exit_child, so no owner is used or dropped.
    unsafe { process::close_fds_except(3 + plan.preserve_fds, &keep) };
    let fifo_path = format!("self/fd/{}", plan.fifo.as_raw_fd());
    let fifo = rustix::fs::openat(
        plan.proc_fd,
        fifo_path.as_str(),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open the exec fifo")?;
    rustix::io::write(&fifo, b"0").ctx(|| "write the exec fifo")?;
    // The fifo stays open (close-on-exec) until the program runs: `start`
    // waits for that EOF, so its poststart hooks follow the exec. What
    // fails before the exec is written to it, and `start` reports it.
    let Err(e) = hooks_and_exec(plan);
    let _ = rustix::io::write(&fifo, e.to_string().as_bytes());
    Err(e)
}

/// The startContainer hooks, then the exec: returns only with an error.
fn hooks_and_exec(plan: &InitPlan) -> Result<std::convert::Infallible> {
    let p = plan.spec.process().as_ref().expect("validated");
    let hooks = plan.spec.hooks().as_ref();
    if hooks.is_some_and(|h| !Kind::StartContainer.of(h).is_empty()) {
        let state = creating_state(plan, std::process::id() as i32);
        hooks::run(Kind::StartContainer, hooks, &state)?;
    }
    if !plan.prepared.seccomp_early(p)
        && let Some(filter) = &plan.prepared.seccomp
    {
        // Last, so the filter need not allow the runtime's own calls.
        filter.load()?;
    }
    let env = process::environment(p);
    let args = p.args().as_deref().unwrap_or(&[]);
    let path = process::find_executable(&args[0], &env)?;
    Err(process::exec(&path, args, &env))
}
