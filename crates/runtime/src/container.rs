//! The runtime's side of each operation: create, start, kill, delete,
//! pause, resume, state and list. Each call stands alone: everything it
//! needs comes from the state directory, so any process may make the next.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Spec};
use rustix::fs::{Mode, OFlags};

use crate::cgroups::{self, Cgroup, Layout};
use crate::config::{self, Bundle};
use crate::error::{Context, Error, Result};
use crate::hooks::{self, Kind};
use crate::init::{self, InitPlan};
use crate::namespaces::Namespaces;
use crate::process::Prepared;
use crate::spawn::{self, Forked};
use crate::state::{self, CONFIG_FILE, ContainerState, EXEC_FIFO, OciState, Status, Store};
use crate::sync::{Channel, Msg};
use crate::{console, procfs, seccomp};

/// Global settings of one runtime invocation.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub store: Store,
    /// Create cgroups through systemd (transient scopes) instead of cgroupfs.
    pub systemd_cgroup: bool,
}

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

/// Writes the pid file the way runc does: the number alone, renamed into
/// place so readers never see it half-written.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}"));
    fs::write(&tmp, pid.to_string()).ctx(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(|| format!("rename {} to {}", tmp.display(), path.display()))
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>, systemd_cgroup: bool) -> Self {
        Runtime {
            store: Store::new(root),
            systemd_cgroup,
        }
    }

    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Created> {
        crate::id::validate(id)?;
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
        let prepared = Prepared::new(process, linux)?;
        let joins = ns.open_joins()?;
        let listener = seccomp::Listener::connect(linux)?;
        // idmapped mounts: a user namespace per mount, made before the fork.
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
            idmaps.push((i, crate::namespaces::userns_with_maps(uids, gids)?));
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
            cg.create()?;
            undo.cgroup = Some(cg.clone());
            cg.apply(&resources, &devices)?;
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
            undo.cgroup = Some(cg.clone());
            cgroups::systemd::start_scope(&cg, child, id)?;
            cg.create()?;
            undo.cgroup = Some(cg.clone());
            cg.apply(&resources, &devices)?;
        }
        cg.add_pid(child, in_cgroup)?;
        if direct && ns.is_new(LinuxNamespaceType::User) {
            crate::namespaces::write_id_maps(
                child,
                linux.uid_mappings().as_deref().unwrap_or(&[]),
                linux.gid_mappings().as_deref().unwrap_or(&[]),
            )?;
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

    pub fn load(&self, id: &str) -> Result<ContainerState> {
        self.store.load(id)
    }

    /// The container's configuration as it was created (and updated).
    pub fn spec(&self, id: &str) -> Result<Spec> {
        let path = self.store.dir(id).join(CONFIG_FILE);
        let raw = fs::read(&path).ctx(|| format!("read {}", path.display()))?;
        config::parse(&raw, "config.json")
    }

    pub fn status(&self, st: &ContainerState) -> Status {
        if st.init_pid == 0 {
            let making = st
                .creator
                .is_some_and(|(pid, start)| procfs::is_alive(pid, start));
            return if making {
                Status::Creating
            } else {
                Status::Stopped
            };
        }
        if !st.init_alive() {
            return Status::Stopped;
        }
        if self.store.dir(&st.id).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if Cgroup::from_record(st.cgroup.clone()).is_frozen() {
            return Status::Paused;
        }
        Status::Running
    }

    pub fn state(&self, id: &str) -> Result<OciState> {
        let st = self.load(id)?;
        Ok(st.oci(self.status(&st)))
    }

    /// Every container under the root with its state; unreadable ones are
    /// skipped with the error, as runc's list does.
    pub fn list(&self) -> Result<Vec<(OciState, Result<()>)>> {
        let mut out = Vec::new();
        for id in self.store.ids()? {
            match self.load(&id) {
                Ok(st) => {
                    let mut oci = st.oci(self.status(&st));
                    oci.owner = owner_of(&self.store.dir(&id));
                    out.push((oci, Ok(())));
                }
                Err(e) => out.push((
                    OciState {
                        oci_version: state::OCI_VERSION.into(),
                        id: id.clone(),
                        pid: 0,
                        status: String::new(),
                        bundle: String::new(),
                        rootfs: String::new(),
                        created: String::new(),
                        owner: String::new(),
                        annotations: Default::default(),
                    },
                    Err(e),
                )),
            }
        }
        Ok(out)
    }

    pub fn start(&self, id: &str) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.load(id)?;
        match self.status(&st) {
            Status::Created => {}
            Status::Stopped => {
                return Err(bad_state(
                    id,
                    Status::Stopped,
                    "cannot start a container that has stopped",
                ));
            }
            s => {
                return Err(bad_state(
                    id,
                    s,
                    "cannot start an already running container",
                ));
            }
        }
        let fifo_path = self.store.dir(id).join(EXEC_FIFO);
        let fifo = rustix::fs::open(
            &fifo_path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| "open the exec fifo")?;
        // Opening the read end releases the init blocked on the write end;
        // it writes one byte, runs the startContainer hooks and execs, which
        // closes its end. The byte means started; the EOF means exec'd.
        let mut released = false;
        loop {
            let mut pfd = [rustix::event::PollFd::new(
                &fifo,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            };
            let _ = rustix::event::poll(&mut pfd, Some(&timeout));
            let mut b = [0u8; 1];
            match rustix::io::read(&fifo, &mut b) {
                Ok(1) => released = true,
                Ok(_) if released => break,
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {
                    if !st.init_alive() {
                        if released {
                            break;
                        }
                        return Err(bad_state(
                            id,
                            Status::Stopped,
                            "container process is already dead",
                        ));
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::os("read the exec fifo", io::Error::from(e))),
            }
        }
        let _ = fs::remove_file(&fifo_path);
        if let Ok(spec) = self.spec(id) {
            let oci = st.oci(Status::Running);
            if let Err(e) = hooks::run(Kind::Poststart, spec.hooks().as_ref(), &oci) {
                // The spec: a failing poststart hook is logged, not fatal.
                crate::warn(&format!("{e}"));
            }
        }
        Ok(())
    }

    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let st = self.load(id)?;
        let status = self.status(&st);
        let cg = Cgroup::from_record(st.cgroup.clone());
        if status == Status::Stopped {
            if all {
                // Members the init left behind (shared pid namespace).
                return signal_all(&cg, signal);
            }
            return Err(bad_state(id, status, "container not running"));
        }
        if all {
            return signal_all(&cg, signal);
        }
        signal_process(st.init_pid, st.init_start_time, signal)
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        crate::id::validate(id)?;
        let lock = match self.store.lock(id) {
            Ok(l) => l,
            Err(Error::NotExist(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let st = match self.load(id) {
            Ok(st) => st,
            Err(Error::NotExist(_)) => {
                // A create that died half-way: nothing but the directory.
                self.store.remove(id)?;
                return if force {
                    Ok(())
                } else {
                    Err(Error::NotExist(id.into()))
                };
            }
            Err(e) => return Err(e),
        };
        let cg = Cgroup::from_record(st.cgroup.clone());
        match self.status(&st) {
            Status::Stopped => {}
            Status::Created => self.kill_and_wait(&st, &cg)?,
            Status::Creating if force => {
                // The runtime making it goes first, then what it made.
                if let Some((pid, start)) = st.creator {
                    let _ = signal_process(pid, start, libc::SIGKILL);
                }
                let _ = signal_all(&cg, libc::SIGKILL);
            }
            s if force => {
                if s == Status::Paused {
                    let _ = cg.freeze(false);
                }
                self.kill_and_wait(&st, &cg)?
            }
            s => {
                return Err(bad_state(
                    id,
                    s,
                    &format!("cannot delete container {id} that is not stopped: {s}"),
                ));
            }
        }
        // systemd owns the scope: ask it to go first, then remove what
        // systemd does not manage.
        if let Some(unit) = &st.cgroup.systemd_unit {
            cgroups::systemd::stop_unit(unit, cg.v2_dir().map(|d| d.path.as_path()))?;
        }
        cg.destroy()?;

        let spec = self.spec(id).ok();
        self.store.remove(id)?;
        drop(lock);
        if let Some(spec) = spec
            && let Err(e) = hooks::run(
                Kind::Poststop,
                spec.hooks().as_ref(),
                &st.oci(Status::Stopped),
            )
        {
            crate::warn(&format!("{e}"));
        }
        Ok(())
    }

    fn kill_and_wait(&self, st: &ContainerState, cg: &Cgroup) -> Result<()> {
        let _ = signal_all(cg, libc::SIGKILL);
        let _ = signal_process(st.init_pid, st.init_start_time, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while st.init_alive() {
            if Instant::now() > deadline {
                return Err(Error::Other(format!(
                    "container {} did not die after SIGKILL",
                    st.id
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.load(id)?;
        match self.status(&st) {
            Status::Running | Status::Created => {}
            s => return Err(bad_state(id, s, "container not running")),
        }
        Cgroup::from_record(st.cgroup).freeze(true)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.load(id)?;
        match self.status(&st) {
            Status::Paused => {}
            s => return Err(bad_state(id, s, "container not paused")),
        }
        Cgroup::from_record(st.cgroup).freeze(false)
    }

    /// Pids of the container's processes.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let st = self.load(id)?;
        Cgroup::from_record(st.cgroup).pids()
    }

    /// Applies new resource limits and records them in the saved config.
    pub fn update(&self, id: &str, r: &LinuxResources) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.load(id)?;
        if self.status(&st) == Status::Stopped {
            return Err(bad_state(id, Status::Stopped, "container not running"));
        }
        let cg = Cgroup::from_record(st.cgroup.clone());
        // Device rules stay as created, as with runc.
        let mut r = r.clone();
        r.set_devices(None);
        cg.apply(&r, &[])?;
        let mut spec = self.spec(id)?;
        if let Some(linux) = spec.linux_mut() {
            let merged = crate::update::merge(linux.resources().clone().unwrap_or_default(), &r);
            linux.set_resources(Some(merged));
        }
        let raw = serde_json::to_vec(&spec).expect("spec serializes");
        crate::fsutil::atomic_write(&self.store.dir(id).join(CONFIG_FILE), &raw, 0o600)
    }

    pub fn stats(&self, id: &str) -> Result<cgroups::stats::Stats> {
        let st = self.load(id)?;
        if self.status(&st) == Status::Stopped {
            return Err(bad_state(id, Status::Stopped, "container not running"));
        }
        Ok(cgroups::stats::collect(&Cgroup::from_record(st.cgroup)))
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

fn bad_state(id: &str, status: Status, why: &str) -> Error {
    Error::BadState {
        id: id.to_string(),
        status: status.as_str(),
        why: why.to_string(),
    }
}

/// Sends `signal` to the process that started at `start_time`, through a
/// pidfd so a recycled pid cannot receive it.
fn signal_process(pid: i32, start_time: u64, signal: i32) -> Result<()> {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return Err(Error::Other("container has no process".into()));
    };
    let pidfd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
        .map_err(|_| Error::Other("container not running: its process is gone".into()))?;
    if !procfs::is_alive(pid, start_time) {
        return Err(Error::Other(
            "container not running: its process is gone".into(),
        ));
    }
    let sig = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| Error::Other(format!("unknown signal {signal}")))?;
    rustix::process::pidfd_send_signal(&pidfd, sig).ctx(|| format!("send signal {signal}"))
}

/// Signals every process of the cgroup; a SIGKILL is sent with the cgroup
/// frozen so nothing forks away in between.
fn signal_all(cg: &Cgroup, signal: i32) -> Result<()> {
    if signal == libc::SIGKILL && cg.kill_all() {
        return Ok(());
    }
    let freeze = signal == libc::SIGKILL && !cg.is_frozen() && cg.freeze(true).is_ok();

    let r = cg.pids().map(|pids| {
        for pid in pids {
            unsafe { libc::kill(pid, signal) };
        }
    });
    if freeze {
        let _ = cg.freeze(false);
    }
    r
}

/// The owner of the state directory, as runc's list shows it.
fn owner_of(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(dir) else {
        return String::new();
    };
    let uid = meta.uid();
    let name = fs::read_to_string("/etc/passwd").ok().and_then(|p| {
        p.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
        })
    });
    name.unwrap_or_else(|| format!("#{uid}"))
}
