//! Running another process in a live container: join its namespaces and
//! cgroup, take its security settings, exec.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::cgroups::Cgroup;
use crate::container::{Runtime, write_pid_file};
use crate::error::{Context, Error, Result};
use crate::namespaces;
use crate::process::{self, Prepared};
use crate::spawn::{self, Forked};
use crate::state::Status;
use crate::sync::{Channel, Msg};
use crate::{console, seccomp};

#[derive(Debug)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Return the pty master to the caller (foreground exec with -t).
    pub want_pty: bool,
    pub ignore_paused: bool,
    /// Where to send a pidfd of the new process.
    pub pidfd_socket: Option<PathBuf>,
    /// The process's stdin, stdout and stderr; None: the caller's own
    /// (runc's behaviour). A terminal process gets the pty instead.
    pub stdio: Option<[OwnedFd; 3]>,
}

pub struct Execed {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    pub pty_master: Option<OwnedFd>,
}

impl Runtime {
    pub fn exec(&self, id: &str, o: &ExecOptions) -> Result<Execed> {
        crate::spawn::require_single_thread("exec")?;
        let st = self.load(id)?;
        match self.status(&st) {
            Status::Running | Status::Created => {}
            Status::Paused if o.ignore_paused => {}
            Status::Paused => {
                return Err(Error::BadState {
                    id: id.into(),
                    status: "paused",
                    why: "cannot exec in a paused container (use --ignore-paused to override)"
                        .into(),
                });
            }
            s => {
                return Err(Error::BadState {
                    id: id.into(),
                    status: s.as_str(),
                    why: "cannot exec in a stopped container".into(),
                });
            }
        }
        let spec = self.spec(id)?;
        let p = &o.process;
        crate::config::validate_process(p, "process.json", "")?;
        let terminal = p.terminal() == Some(true);
        if terminal && o.console_socket.is_none() && !o.want_pty {
            return Err(Error::Other(
                "a terminal needs --console-socket (or a foreground exec)".into(),
            ));
        }
        let linux = spec.linux().clone().unwrap_or_default();
        let prepared = Prepared::new(p, &linux, Some(&self.seccomp_cache()))?;
        let listener = seccomp::Listener::connect(&linux)?;
        // The container's namespaces, as its init holds them now.
        let mut joins: Vec<(LinuxNamespaceType, OwnedFd)> = Vec::new();
        let listed: Vec<LinuxNamespaceType> = linux
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect();
        for t in namespaces::join_order() {
            if !listed.contains(&t) {
                continue;
            }
            let path = format!("/proc/{}/ns/{}", st.init_pid, namespaces::name(t));
            let fd = rustix::fs::open(
                &path,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .ctx(|| format!("open {path}"))?;
            joins.push((t, fd));
        }
        let fork_again =
            listed.contains(&LinuxNamespaceType::Pid) || listed.contains(&LinuxNamespaceType::Time);

        let (console_sock, pty_pair) = match (&o.console_socket, terminal && o.want_pty) {
            (Some(path), _) if terminal => (Some(console::connect(path)?), None),
            (None, true) => {
                let (a, b) = rustix::net::socketpair(
                    rustix::net::AddressFamily::UNIX,
                    rustix::net::SocketType::STREAM,
                    rustix::net::SocketFlags::CLOEXEC,
                    None,
                )
                .ctx(|| "create a socketpair for the pty")?;
                (Some(b), Some(a))
            }
            _ => (None, None),
        };

        let cg = Cgroup::from_record(st.cgroup.clone());
        let cgroup_fd = cg.open_v2();
        let (parent_chan, child_chan) = Channel::pair()?;
        // SAFETY: exec's caller is single-threaded (the crate's rule, see
        // lib.rs); the child runs child_main, which only execs or exits.
        let forked =
            unsafe { spawn::fork(0, cgroup_fd.as_ref().map(|f| f.as_fd())) }.ctx(|| "fork")?;
        let (child, pidfd, in_cgroup) = match forked {
            Forked::Child => {
                drop(parent_chan);
                let args = ChildArgs {
                    process: p,
                    stdio: o.stdio.as_ref(),
                    joins: &joins,
                    fork_again,
                    console: console_sock.as_ref(),
                    preserve_fds: o.preserve_fds,
                    prepared: &prepared,
                    linux: &linux,
                };
                child_main(&args, &child_chan)
            }
            Forked::Parent {
                pid,
                pidfd,
                in_cgroup,
            } => (pid, pidfd, in_cgroup),
        };
        drop(child_chan);
        drop(console_sock);
        let kill = |pid: i32| {
            // SAFETY: integer arguments; pid is our child, not yet waited
            // for, so it cannot name a recycled process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = spawn::wait_status(pid);
        };
        if let Err(e) = cg.add_pid(child, in_cgroup) {
            kill(child);
            return Err(e);
        }
        if let Some(adj) = p.oom_score_adj()
            && let Err(e) = process::set_oom_score_adj(child, adj)
        {
            kill(child);
            return Err(e);
        }
        parent_chan.send(&Msg::Go { pid: child })?;
        let mut pid = child;
        let mut pidfd = pidfd;
        let mut ready = false;
        loop {
            match parent_chan.recv()? {
                Some(Msg::Pid(p)) => {
                    pid = p;
                    let _ = spawn::wait_status(child);
                    pidfd = rustix::process::pidfd_open(
                        rustix::process::Pid::from_raw(p).expect("positive pid"),
                        rustix::process::PidfdFlags::empty(),
                    )
                    .ok();
                }
                Some(Msg::SeccompFd) => {
                    if let Some(l) = &listener {
                        l.forward(&parent_chan, pid, &st.oci(Status::Running))?;
                    }
                }
                Some(Msg::Ready) => ready = true,
                Some(Msg::Error(e)) => {
                    let _ = spawn::wait_status(pid);
                    return Err(Error::Init(e));
                }
                Some(other) => {
                    kill(pid);
                    return Err(Error::Other(format!(
                        "unexpected {other:?} from the exec process"
                    )));
                }
                // The socket closes on exec: the program runs.
                None if ready => break,
                None => {
                    let status = spawn::wait_status(pid).unwrap_or(-1);
                    return Err(Error::Other(format!(
                        "the exec process died during setup (status {status})"
                    )));
                }
            }
        }
        let pty_master = match pty_pair {
            Some(sock) => Some(console::recv_fd(sock.as_fd())?),
            None => None,
        };
        if let Some(path) = &o.pid_file {
            write_pid_file(path, pid)?;
        }
        if let Some(path) = &o.pidfd_socket {
            let fd = pidfd.as_ref().ok_or_else(|| {
                Error::Other("this kernel gave no pidfd for --pidfd-socket".into())
            })?;
            console::send_pidfd(path, fd.as_fd())?;
        }
        Ok(Execed {
            pid,
            pidfd,
            pty_master,
        })
    }
}

struct ChildArgs<'a> {
    process: &'a Process,
    stdio: Option<&'a [OwnedFd; 3]>,
    joins: &'a [(LinuxNamespaceType, OwnedFd)],
    fork_again: bool,
    console: Option<&'a OwnedFd>,
    preserve_fds: u32,
    prepared: &'a Prepared,
    linux: &'a oci_spec::runtime::Linux,
}

fn child_main(a: &ChildArgs, chan: &Channel) -> ! {
    let e = match child_setup(a, chan) {
        Ok(None) => spawn::exit_child(0),
        Ok(Some(e)) | Err(e) => e,
    };
    let _ = chan.send(&Msg::Error(e.to_string()));
    spawn::exit_child(1)
}

/// Returns Ok(None) in a process that handed over to its child, and the
/// exec error otherwise (exec does not return on success).
fn child_setup(a: &ChildArgs, chan: &Channel) -> Result<Option<Error>> {
    process::reset_signals();
    process::undumpable();
    if let Some(cpus) = a
        .process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|x| x.initial().clone())
    {
        crate::procattrs::set_cpu_affinity(&cpus, "process.execCPUAffinity.initial")?;
    }
    match chan.recv()? {
        Some(Msg::Go { .. }) => {}
        _ => return Err(Error::Other("the runtime went away".into())),
    }
    for (t, fd) in a.joins {
        namespaces::setns(fd, *t)?;
    }
    if a.fork_again {
        // SAFETY: a forked child has a single thread.
        match unsafe { spawn::fork(libc::CLONE_PARENT, None) }
            .ctx(|| "fork into the pid namespace")?
        {
            Forked::Parent { pid, .. } => {
                chan.send(&Msg::Pid(pid))?;
                return Ok(None);
            }
            Forked::Child => {}
        }
    }
    let p = a.process;
    rustix::process::setsid().ctx(|| "setsid")?;
    if let Some(stdio) = a.stdio {
        for (target, fd) in stdio.iter().enumerate() {
            // SAFETY: fd is open for the length of the call; dup2 onto 0-2
            // clears close-on-exec there.
            if unsafe { libc::dup2(fd.as_raw_fd(), target as i32) } < 0 {
                return Err(std::io::Error::last_os_error()).ctx(|| "set up stdio");
            }
        }
    }
    if p.terminal() == Some(true) {
        let size = p
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        let pty = console::open_pty(size)?;
        if let Some(sock) = a.console {
            console::send_fd(sock.as_fd(), pty.master.as_fd(), "/dev/ptmx")?;
        }
        console::become_tty(&pty.slave)?;
    }
    process::apply_attributes(p, a.linux, a.prepared)?;
    let early = a.prepared.seccomp_early(p);
    if early {
        a.prepared.load_seccomp(chan)?;
    }
    process::switch_user(p, &a.prepared.caps)?;
    process::chdir(p.cwd())?;
    let env = process::environment(p);
    let args = p.args().as_deref().unwrap_or(&[]);
    let path = process::find_executable(&args[0], &env)?;
    // SAFETY: from here this child only execs or exits: nothing it runs
    // uses or drops the owners of the fds closed (the runtime's and its caller's).
    unsafe { process::close_fds_except(3 + a.preserve_fds, &[chan.as_fd().as_raw_fd()]) };
    if let Some(cpus) = p
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.cpu_affinity_final().clone())
    {
        crate::procattrs::set_cpu_affinity(&cpus, "process.execCPUAffinity.final")?;
    }
    chan.send(&Msg::Ready)?;
    if !early && let Some(f) = &a.prepared.seccomp {
        f.load()?;
    }
    Ok(Some(process::exec(&path, args, &env)))
}

/// `exec`'s flags, for building the process when no --process file is given.
#[derive(Debug, Default, Clone)]
pub struct ExecFlags {
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub tty: bool,
    /// "uid" or "uid:gid", numeric as with runc.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
}

impl Runtime {
    /// The process to exec: the container's own process settings with
    /// the flags applied on top, as runc does.
    pub fn exec_process(&self, id: &str, f: &ExecFlags) -> Result<Process> {
        exec_process_from(self.spec(id)?.process().as_ref(), f)
    }
}

/// `base` (a container's process) with the exec flags applied on top.
pub fn exec_process_from(base: Option<&Process>, f: &ExecFlags) -> Result<Process> {
    {
        use oci_spec::runtime::Capability;
        let mut p = base.cloned().unwrap_or_default();
        if f.args.is_empty() {
            return Err(Error::Other("exec needs a command to run".into()));
        }
        p.set_args(Some(f.args.clone()));
        if let Some(cwd) = &f.cwd {
            p.set_cwd(cwd.clone());
        }
        let mut env = p.env().clone().unwrap_or_default();
        for e in &f.env {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
        p.set_terminal(Some(f.tty));
        p.set_console_size(None);
        if let Some(u) = &f.user {
            let (uid, gid) = match u.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (u.as_str(), None),
            };
            let num = |s: &str| {
                s.parse::<u32>().map_err(|_| {
                    Error::Other(format!("--user {u:?}: only numeric uid[:gid] is supported"))
                })
            };
            let user = p.user_mut();
            user.set_uid(num(uid)?);
            if let Some(g) = gid {
                user.set_gid(num(g)?);
            }
        }
        if !f.additional_gids.is_empty() {
            p.user_mut()
                .set_additional_gids(Some(f.additional_gids.clone()));
        }
        if !f.caps.is_empty() {
            let mut c = p.capabilities().clone().unwrap_or_else(|| {
                oci_spec::runtime::LinuxCapabilitiesBuilder::default()
                    .build()
                    .expect("empty caps")
            });
            let mut extra = Vec::new();
            for name in &f.caps {
                let cap: Capability =
                    serde_json::from_value(serde_json::Value::String(name.clone()))
                        .map_err(|_| Error::Other(format!("--cap {name:?}: unknown capability")))?;
                extra.push(cap);
            }
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.extend(extra.iter().copied());
                Some(s)
            };
            c.set_bounding(add(c.bounding()));
            c.set_effective(add(c.effective()));
            c.set_permitted(add(c.permitted()));
            c.set_ambient(add(c.ambient()));
            p.set_capabilities(Some(c));
        }
        if f.no_new_privs {
            p.set_no_new_privileges(Some(true));
        }
        if let Some(a) = &f.apparmor {
            p.set_apparmor_profile(Some(a.clone()));
        }
        if let Some(l) = &f.process_label {
            p.set_selinux_label(Some(l.clone()));
        }
        Ok(p)
    }
}
