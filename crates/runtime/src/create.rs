//! `create`: everything the runtime does to bring a container to the
//! "created" state, and the undoing of it when any step fails.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use oci_spec::runtime::LinuxNamespaceType;
use rustix::fs::{Mode, OFlags};

use crate::cgroups::{self, Cgroup, Layout};
use crate::config::{self, Bundle};
use crate::container::{Runtime, write_pid_file};
use crate::error::{Context, Error, Result};
use crate::hooks::{self, Kind};
use crate::init::{self, InitPlan};
use crate::namespaces::Namespaces;
use crate::process::Prepared;
use crate::spawn::{self, Forked};
use crate::state::{self, CONFIG_FILE, ContainerState, EXEC_FIFO, OciState, Status, Store};
use crate::sync::{Channel, Msg};
use crate::{console, procfs, seccomp};

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// The caller will proxy a terminal itself (`run` in the foreground):
    /// the pty master comes back in `Created` instead of to a socket.
    pub want_pty: bool,
    /// Where to send a pidfd of the container's process.
    pub pidfd_socket: Option<PathBuf>,
}

pub struct Created {
    pub pid: i32,
    /// The init process's pidfd, when the kernel gave one.
    pub pidfd: Option<OwnedFd>,
    pub pty_master: Option<OwnedFd>,
}

/// Undoes a half-made container when create fails at any step.
struct Undo<'a> {
    store: &'a Store,
    id: &'a str,
    cgroup: Option<Cgroup>,
    children: Vec<i32>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for &pid in &self.children {
            // SAFETY: integer arguments; pids leave `children` once waited
            // for, so each is still our child and cannot be recycled.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = spawn::wait_status(pid);
        }
        if let Some(cg) = &self.cgroup {
            if let Some(unit) = &cg.record.systemd_unit {
                let _ = cgroups::systemd::stop_unit(unit, cg.v2_dir().map(|d| d.path.as_path()));
            }
            let _ = cg.destroy();
        }

        let _ = self.store.remove(self.id);
    }
}

impl Runtime {
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Created> {
        crate::id::validate(id)?;
        crate::spawn::require_single_thread("create")?;
        let bundle = config::load_bundle(&opts.bundle)?;
        let spec = &bundle.spec;
        let process = spec.process().as_ref().expect("validated");
        let linux = spec.linux().as_ref().expect("validated");
        let terminal = process.terminal() == Some(true);
        if terminal && opts.console_socket.is_none() && !opts.want_pty {
            return Err(Error::config(
                "process.terminal",
                "a terminal needs --console-socket (or run in the foreground)",
            ));
        }
        if !terminal && opts.console_socket.is_some() {
            return Err(Error::config(
                "process.terminal",
                "--console-socket was given but the process has no terminal",
            ));
        }
        let ns = Namespaces::from_spec(linux)?;
        let prepared = Prepared::new(process, linux, Some(&self.seccomp_cache()))?;
        let joins = ns.open_joins()?;
        let listener = seccomp::Listener::connect(linux)?;
        // idmapped mounts: their sources mapped before the fork, by this
        // process, which holds the rights over them.
        let mut idmaps = Vec::new();
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            let opts = crate::mountopts::parse(
                m.options().as_deref().unwrap_or(&[]),
                m.typ().as_deref(),
                "",
            )?;
            if !opts.idmap {
                continue;
            }
            let uids = m.uid_mappings().as_ref().or(linux.uid_mappings().as_ref());
            let gids = m.gid_mappings().as_ref().or(linux.gid_mappings().as_ref());
            let (Some(uids), Some(gids)) = (uids, gids) else {
                return Err(Error::config(
                    format!("mounts[{i}]"),
                    "an idmapped mount needs uidMappings and gidMappings (the mount's or the container's)",
                ));
            };
            let userns = crate::namespaces::userns_with_maps(uids, gids)?;
            let field = format!("mounts[{i}]");
            idmaps.push((
                i,
                crate::rootfs::idmapped_source(&bundle.dir, &field, m, &opts, &userns)?,
            ));
        }
        let layout = Layout::detect().ctx(|| "read the cgroup layout")?;

        let dir = self.store.create_dir(id)?;
        let mut undo = Undo {
            store: &self.store,
            id,
            cgroup: None,
            children: Vec::new(),
            armed: true,
        };

        let mut cg = if self.systemd_cgroup {
            cgroups::systemd::plan(&layout, linux.cgroups_path().as_deref(), id)?
        } else {
            Cgroup::plan(&layout, linux.cgroups_path().as_deref(), id)?
        };
        let me = std::process::id() as i32;
        let mut st = ContainerState {
            id: id.to_string(),
            init_pid: 0,
            init_start_time: 0,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: state::now_rfc3339(),
            owner: String::new(),
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            cgroup: cg.record.clone(),
            creator: Some((me, procfs::stat(me).map(|s| s.start_time).unwrap_or(0))),
        };
        self.store.save(&st)?;
        let resources = linux.resources().clone().unwrap_or_default();
        let devices: Vec<_> = linux.devices().iter().flatten().map(device_rule).collect();
        if !self.systemd_cgroup {
            cg.create(true)?;
            undo.cgroup = Some(cg.clone());
            cg.apply(&resources, Some(&devices))?;
        }

        let fifo_path = dir.join(EXEC_FIFO);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo_path,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o622),
            0,
        )
        .ctx(|| "create the exec fifo")?;
        // mknod honours the umask: make the mode exact.
        rustix::fs::chmod(&fifo_path, Mode::from_raw_mode(0o622)).ctx(|| "chmod the exec fifo")?;
        let fifo = rustix::fs::open(&fifo_path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .ctx(|| "open the exec fifo")?;
        let proc_fd = rustix::fs::open(
            "/proc",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| "open /proc")?;

        let (console_sock, pty_pair) = match (&opts.console_socket, terminal && opts.want_pty) {
            (Some(path), _) => (Some(console::connect(path)?), None),
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

        // The fast path clones straight into every new namespace; joining a
        // user, pid or time namespace (or a new user namespace next to
        // joined ones) needs the child to arrange them step by step.
        let joined_special = [
            LinuxNamespaceType::User,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Time,
        ]
        .iter()
        .any(|t| ns.is_joined(*t));
        let new_userns_beside_joins = ns.is_new(LinuxNamespaceType::User) && !joins.is_empty();
        let direct =
            !joined_special && !ns.is_new(LinuxNamespaceType::Time) && !new_userns_beside_joins;
        let clone_flags = if direct {
            ns.new_flags() & !libc::CLONE_NEWCGROUP
        } else {
            0
        };
        let hooks = spec.hooks().as_ref();
        let runtime_hooks = hooks.is_some_and(|h| {
            !Kind::Prestart.of(h).is_empty() || !Kind::CreateRuntime.of(h).is_empty()
        });

        let (parent_chan, child_chan) = Channel::pair()?;
        let plan = InitPlan {
            id,
            spec,
            bundle: &bundle.dir,
            rootfs: &bundle.rootfs,
            ns: &ns,
            joins: &joins,
            cgroup: &cg.record,
            fifo: &fifo,
            proc_fd: &proc_fd,
            console: console_sock.as_ref(),
            preserve_fds: opts.preserve_fds,
            no_pivot: opts.no_pivot,
            no_new_keyring: opts.no_new_keyring,
            prepared: &prepared,
            direct,
            runtime_hooks,
            idmaps: &idmaps,
        };
        // systemd makes the scope around a pid: only after the fork.
        let cgroup_fd = if self.systemd_cgroup {
            None
        } else {
            cg.open_v2()
        };
        // SAFETY: create's caller is single-threaded (the crate's rule, see
        // lib.rs); the child runs init::run, which only execs or exits.
        let forked = unsafe { spawn::fork(clone_flags, cgroup_fd.as_ref().map(|f| f.as_fd())) }
            .ctx(|| format!("clone the container process (flags {clone_flags:#x})"))?;
        let (child, pidfd, in_cgroup) = match forked {
            Forked::Child => {
                drop(parent_chan);
                init::run(&plan, &child_chan)
            }
            Forked::Parent {
                pid,
                pidfd,
                in_cgroup,
            } => (pid, pidfd, in_cgroup),
        };
        drop(child_chan);
        drop(console_sock);
        undo.children.push(child);

        if self.systemd_cgroup {
            // Only a scope we made is ours to stop and remove.
            cgroups::systemd::start_scope(&cg, child, id)?;
            undo.cgroup = Some(cg.clone());
            // systemd made the scope, with the container's first process.
            cg.create(false)?;
            undo.cgroup = Some(cg.clone());
            cg.apply(&resources, Some(&devices))?;
        }
        cg.add_pid(child, in_cgroup)?;
        if direct && ns.is_new(LinuxNamespaceType::User) {
            crate::namespaces::write_id_maps(
                child,
                linux.uid_mappings().as_deref().unwrap_or(&[]),
                linux.gid_mappings().as_deref().unwrap_or(&[]),
            )?;
        }
        if let Some(adj) = process.oom_score_adj() {
            crate::process::set_oom_score_adj(child, adj)?;
        }
        parent_chan.send(&Msg::Go { pid: child })?;

        let mut init_pid = child;
        let mut pidfd = pidfd;
        loop {
            match parent_chan.recv()? {
                Some(Msg::MapIds) => {
                    crate::namespaces::write_id_maps(
                        child,
                        linux.uid_mappings().as_deref().unwrap_or(&[]),
                        linux.gid_mappings().as_deref().unwrap_or(&[]),
                    )?;
                    parent_chan.send(&Msg::IdsMapped)?;
                }
                Some(Msg::Pid(pid)) => {
                    // The first child handed over to its own child (ours,
                    // through CLONE_PARENT) and exits.
                    init_pid = pid;
                    undo.children.push(pid);
                    let _ = spawn::wait_status(child);
                    undo.children.retain(|p| *p != child);
                    pidfd = rustix::process::pidfd_open(
                        rustix::process::Pid::from_raw(pid).expect("positive pid"),
                        rustix::process::PidfdFlags::empty(),
                    )
                    .ok();
                }
                Some(Msg::RunHooks) => {
                    let st = self.creating_state(id, init_pid, &bundle);
                    hooks::run(Kind::Prestart, hooks, &st)?;
                    hooks::run(Kind::CreateRuntime, hooks, &st)?;
                    parent_chan.send(&Msg::HooksDone)?;
                }
                Some(Msg::SeccompFd) => {
                    if let Some(l) = &listener {
                        l.forward(
                            &parent_chan,
                            init_pid,
                            &self.creating_state(id, init_pid, &bundle),
                        )?;
                    }
                }
                Some(Msg::Ready) => break,
                Some(Msg::Error(e)) => return Err(Error::Init(e)),
                Some(other) => {
                    return Err(Error::Other(format!(
                        "unexpected {other:?} from the container process"
                    )));
                }
                None => {
                    let status = spawn::wait_status(init_pid).unwrap_or(-1);
                    undo.children.retain(|p| *p != init_pid);
                    return Err(Error::Other(format!(
                        "the container process exited during setup (status {status})"
                    )));
                }
            }
        }

        let pty_master = match pty_pair {
            Some(sock) => Some(console::recv_fd(sock.as_fd())?),
            None => None,
        };
        // Host interfaces go into the container's network namespace while
        // its process still waits for start.
        if let Some(devices) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) {
            let netns: OwnedFd = fs::File::open(format!("/proc/{init_pid}/ns/net"))
                .ctx(|| "open the container's network namespace")?
                .into();
            for (host, dev) in devices {
                let name = dev.name().clone().unwrap_or_else(|| host.clone());
                crate::netdev::move_device(host, &name, &netns)?;
            }
        }
        let start_time = procfs::stat(init_pid)
            .map(|s| s.start_time)
            .ok_or_else(|| Error::Other("the container process vanished after setup".into()))?;
        st.init_pid = init_pid;
        st.init_start_time = start_time;
        st.cgroup = cg.record.clone();
        st.creator = None;
        crate::fsutil::atomic_write(&dir.join(CONFIG_FILE), &bundle.raw, 0o600)?;
        self.store.save(&st)?;
        if let Some(path) = &opts.pid_file {
            write_pid_file(path, init_pid)?;
        }
        if let Some(path) = &opts.pidfd_socket {
            let fd = pidfd.as_ref().ok_or_else(|| {
                Error::Other("this kernel gave no pidfd for --pidfd-socket".into())
            })?;
            console::send_pidfd(path, fd.as_fd())?;
        }
        undo.armed = false;
        Ok(Created {
            pid: init_pid,
            pidfd,
            pty_master,
        })
    }

    fn creating_state(&self, id: &str, pid: i32, b: &Bundle) -> OciState {
        OciState {
            oci_version: state::OCI_VERSION.into(),
            id: id.into(),
            pid,
            status: Status::Creating.as_str().into(),
            bundle: b.dir.display().to_string(),
            rootfs: b.rootfs.display().to_string(),
            created: String::new(),
            owner: String::new(),
            annotations: b
                .spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }
}

fn device_rule(d: &oci_spec::runtime::LinuxDevice) -> oci_spec::runtime::LinuxDeviceCgroup {
    let mut rule = oci_spec::runtime::LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_typ(Some(d.typ()));
    rule.set_major(Some(d.major()));
    rule.set_minor(Some(d.minor()));
    rule.set_access(Some("rwm".into()));
    rule
}
