//! Pods: containers sharing network, ipc and uts namespaces, pinned by
//! bind mounts as network namespaces are: no pause image, no process. Only
//! a pod whose containers share one pid namespace has an infra process of
//! berth's own (`berth pod infra`), that namespace's init: it enters the
//! pod's network namespace, makes the pid, ipc and uts namespaces, sets the
//! hostname, reaps orphans and sleeps until told to stop.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_network::{PortMapping, netns};

use crate::engine::{Engine, now, path_str, poll_until};
use crate::error::{Context, Error, Result};
use crate::ids;
use crate::model::{Container, NetworkMode, Pod, PodOptions, Status};
use crate::net;

pub struct PodRequest {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub network: NetworkMode,
    pub ports: Vec<PortMapping>,
    pub labels: Vec<(String, String)>,
    pub options: PodOptions,
}

impl Engine {
    pub fn pod_create(&self, mut r: PodRequest) -> Result<Pod> {
        r.network = crate::net::for_this_user(r.network)?;
        if matches!(r.network, NetworkMode::Pod | NetworkMode::Container(_)) {
            return Err(Error::invalid(
                "pod --network",
                "a pod has a network of its own, or the host's",
            ));
        }
        if matches!(r.network, NetworkMode::Host | NetworkMode::None) && !r.ports.is_empty() {
            return Err(Error::invalid(
                "-p",
                "ports need a network of the pod's own",
            ));
        }
        berth_network::ports::check_count(&r.ports)
            .map_err(|e| Error::invalid("-p", e.to_string()))?;
        let id = ids::new_id();
        let name = match r.name {
            Some(n) => {
                ids::check_name("pod", &n)?;
                n
            }
            None => ids::make_name(|n| self.db.pod_name_taken(n))?,
        };
        let mut p = Pod {
            hostname: r.hostname.unwrap_or_else(|| name.clone()),
            id,
            name,
            created: now(),
            network: r.network,
            ports: r.ports,
            labels: r.labels,
            infra_pid: 0,
            infra_start: 0,
            netns: None,
            uts_ns: None,
            ipc_ns: None,
            networks: Vec::new(),
            options: r.options,
            version: 0,
        };
        self.db.insert_pod(&mut p)?;
        if let Err(e) = crate::recover::save_pod_file(self, &p) {
            let _ = self.db.remove_pod(&p.id);
            return Err(e);
        }
        self.emit(pod_event(&p, "create"));
        Ok(p)
    }

    pub fn pod(&self, key: &str) -> Result<Pod> {
        self.db.find_pod(key)
    }

    /// Every pod with its containers.
    pub fn pods(&self) -> Result<Vec<(Pod, Vec<Container>)>> {
        self.db
            .pods()?
            .into_iter()
            .map(|p| {
                let cs = self
                    .db
                    .pod_containers(&p.id)?
                    .into_iter()
                    .map(|c| self.refresh(c))
                    .collect::<Result<_>>()?;
                Ok((p, cs))
            })
            .collect()
    }

    pub fn pod_running(&self, p: &Pod) -> bool {
        p.running()
    }

    /// Starts the infra process (and the pod's network), then the pod's
    /// containers.
    pub fn pod_start(&self, key: &str) -> Result<Pod> {
        let p = self.ensure_pod_running(key)?;
        for c in self.db.pod_containers(&p.id)? {
            self.start(&c.id)?;
        }
        self.pod(&p.id)
    }

    /// The infra process and network, without the containers (a container
    /// of the pod being started needs just this).
    pub(crate) fn ensure_pod_running(&self, key: &str) -> Result<Pod> {
        let p = self.db.find_pod(key)?;
        let _lock = self.lock(&p.id)?;
        let mut p = self.db.find_pod(&p.id)?;
        if self.pod_running(&p) {
            return Ok(p);
        }
        self.pod_release(&mut p)?;
        match self.pod_launch(&mut p) {
            Ok(()) => {
                self.emit(pod_event(&p, "start"));
                Ok(p)
            }
            Err(e) => {
                let _ = self.pod_release(&mut p);
                Err(e)
            }
        }
    }

    fn pod_launch(&self, p: &mut Pod) -> Result<()> {
        let netns = match p.network.clone() {
            NetworkMode::Host => None,
            NetworkMode::None => {
                // Recorded before it is made: a crash leaves a pin that
                // release finds.
                let pin = self.netns_dir().join(Engine::netns_name(&p.id));
                p.netns = Some(path_str(&pin));
                self.db.update_pod(p)?;
                let path = netns::create(&self.netns_dir(), &Engine::netns_name(&p.id))
                    .map_err(|e| Error::Network(e.to_string()))?;
                Some(path)
            }
            mode => {
                let (id, ports) = (p.id.clone(), p.ports.clone());
                let path = net::attach_all(self, &id, &mode, &ports, |ns, at| {
                    p.netns = ns;
                    p.networks = at;
                    self.db.update_pod(p)
                })?;
                net::user_net_ready(self, &id, &mode, &mut p.networks)?;
                self.db.update_pod(p)?;
                Some(path)
            }
        };
        if let Some(path) = &netns {
            net::set_default_sysctls(path, p.options.owner.as_deref(), &p.options.sysctls)?;
        }
        if p.options.share_pid {
            self.infra_launch(p, netns.as_deref())
        } else {
            self.pin_namespaces(p)
        }
    }

    /// The pod's uts (with its hostname) and ipc namespaces, pinned: no
    /// process holds them.
    fn pin_namespaces(&self, p: &mut Pod) -> Result<()> {
        let dir = self.run_root.join("pins");
        std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        let pin = |kind: &str| dir.join(format!("{}-{kind}", crate::ids::short(&p.id)));
        let mut pins = vec![(netns::Kind::Uts, pin("uts"))];
        if !p.options.host_ipc {
            pins.push((netns::Kind::Ipc, pin("ipc")));
        }
        // Recorded before they are made: a crash leaves pins that release
        // finds.
        p.uts_ns = Some(path_str(&pins[0].1));
        p.ipc_ns = pins.get(1).map(|(_, x)| path_str(x));
        self.db.update_pod(p)?;
        let hostname = p.hostname.clone();
        netns::create_pinned(&pins, move || {
            rustix::system::sethostname(hostname.as_bytes()).map_err(std::io::Error::from)
        })
        .map_err(|e| Error::Network(format!("pod {}: {e}", p.name)))
    }

    /// The infra process of a pod sharing one pid namespace: its init,
    /// holding the pod's uts and ipc namespaces too.
    fn infra_launch(&self, p: &mut Pod, netns: Option<&Path>) -> Result<()> {
        let mut cmd = Command::new(&self.berth);
        cmd.args(["pod", "infra", "--hostname", &p.hostname]);
        if let Some(n) = netns {
            cmd.arg("--netns").arg(n);
        }
        cmd.arg("--share-pid");
        if p.options.host_ipc {
            cmd.arg("--host-ipc");
        }
        let started = berth_monitor::start_detached(cmd)
            .map_err(|e| Error::Monitor(format!("pod infra: {e}")))?;
        p.infra_pid = started.process.pid;
        p.infra_start = started.process.start_time;
        self.db.update_pod(p)
    }

    /// Stops the infra process, unpins the namespaces and releases the
    /// pod's network. Idempotent.
    fn pod_release(&self, p: &mut Pod) -> Result<()> {
        // Signalled through a pidfd of the very process the record names:
        // after a reboot its pid may be another's.
        if let Some(infra) = p.infra().filter(|i| i.is_alive()) {
            infra.signal(libc::SIGTERM);
            if !poll_until(Duration::from_secs(5), || !infra.is_alive()) {
                infra.signal(libc::SIGKILL);
                poll_until(Duration::from_secs(5), || !infra.is_alive());
            }
        }
        p.infra_pid = 0;
        p.infra_start = 0;
        for pin in [p.uts_ns.take(), p.ipc_ns.take()].into_iter().flatten() {
            netns::remove(Path::new(&pin)).map_err(|e| Error::Network(e.to_string()))?;
        }
        match p.network {
            NetworkMode::Default | NetworkMode::Bridge(_) => net::detach_all(
                self,
                &p.id,
                &p.network,
                &p.ports,
                &p.networks,
                p.netns.as_deref(),
            )?,
            _ => {
                if let Some(n) = &p.netns {
                    netns::remove(Path::new(n)).map_err(|e| Error::Network(e.to_string()))?;
                }
            }
        }
        p.netns = None;
        p.networks.clear();
        self.db.update_pod(p)
    }

    /// Stops the pod's containers, then its infra process and network.
    pub fn pod_stop(&self, key: &str, timeout: Option<Duration>) -> Result<Pod> {
        let p = self.db.find_pod(key)?;
        for c in self.db.pod_containers(&p.id)? {
            self.stop(&c.id, timeout)?;
        }
        let _lock = self.lock(&p.id)?;
        let mut p = self.db.find_pod(&p.id)?;
        self.pod_release(&mut p)?;
        self.emit(pod_event(&p, "stop"));
        Ok(p)
    }

    /// Removes the pod; with running containers only with `force`.
    pub fn pod_remove(&self, key: &str, force: bool) -> Result<Pod> {
        let p = self.db.find_pod(key)?;
        let members = self.db.pod_containers(&p.id)?;
        for c in &members {
            let c = self.refresh(c.clone())?;
            if matches!(c.state.status, Status::Running | Status::Paused) && !force {
                return Err(Error::Conflict(format!(
                    "pod {} has running containers ({}): stop it first, or remove it with --force",
                    p.name, c.name
                )));
            }
        }
        for c in members {
            self.remove(&c.id, true)?;
        }
        let _lock = self.lock(&p.id)?;
        let mut p = self.db.find_pod(&p.id)?;
        self.pod_release(&mut p)?;
        self.db.remove_pod(&p.id)?;
        crate::recover::remove_pod_file(self, &p.id);
        self.emit(pod_event(&p, "remove"));
        let _ = std::fs::remove_file(self.run_root.join("locks").join(format!("{}.lock", p.id)));
        Ok(p)
    }
}

fn pod_event(p: &Pod, action: &str) -> berth_base::events::Event {
    berth_base::events::Event::new("pod", action, &p.id).attr("name", p.name.as_str())
}

/// What the infra process holds.
pub struct Infra<'a> {
    pub netns: Option<&'a Path>,
    pub hostname: &'a str,
    /// A new pid namespace, whose pid 1 the infra process is.
    pub share_pid: bool,
    /// The host's ipc namespace rather than one of the pod's own.
    pub host_ipc: bool,
}

/// The infra process itself (`berth pod infra`): never returns while the
/// pod runs. fd 3 is the ready pipe. It enters the pod's network
/// namespace, makes its uts (and ipc, and with `share_pid` pid) namespace,
/// sets the hostname and then waits: for SIGTERM or SIGINT to end it, and,
/// as the pid namespace's init, reaping what the pod's containers leave.
pub fn infra_main(i: &Infra) -> Result<()> {
    // SAFETY: fd 3 is the ready pipe the launcher handed this process to
    // own (start_detached); nothing else here uses it.
    let mut ready = unsafe { std::fs::File::from_raw_fd(3) };
    let os = |what: &str| Error::Os {
        what: what.into(),
        source: std::io::Error::last_os_error(),
    };
    let r = (|| -> Result<()> {
        if let Some(p) = i.netns {
            let f = std::fs::File::open(p).map_err(|e| Error::Os {
                what: format!("open {}", p.display()),
                source: e,
            })?;
            // SAFETY: f is an open netns file for the length of the call.
            if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0
            {
                return Err(os("enter the pod's network namespace"));
            }
        }
        let mut flags = libc::CLONE_NEWUTS;
        if !i.host_ipc {
            flags |= libc::CLONE_NEWIPC;
        }
        if i.share_pid {
            flags |= libc::CLONE_NEWPID;
        }
        // SAFETY: unshare takes flags only; this process is single-threaded.
        if unsafe { libc::unshare(flags) } != 0 {
            return Err(os("unshare the pod's namespaces"));
        }
        rustix::system::sethostname(i.hostname.as_bytes()).map_err(|e| Error::Os {
            what: format!("set hostname {}", i.hostname),
            source: e.into(),
        })?;
        Ok(())
    })();
    if let Err(e) = r {
        let _ = writeln!(ready, "error {e}");
        return Err(e);
    }
    if i.share_pid {
        // The new pid namespace takes the next child: it is the infra
        // process, this one leaves.
        // SAFETY: single-threaded; the child goes on in plain Rust and the
        // parent only exits.
        match unsafe { libc::fork() } {
            -1 => {
                let e = os("fork the pod's init");
                let _ = writeln!(ready, "error {e}");
                return Err(e);
            }
            0 => {}
            // SAFETY: _exit ends the parent without running anything of
            // the child's (its buffers, atexit handlers).
            _ => unsafe { libc::_exit(0) },
        }
    }
    // Blocked, so that they are queued even for a pid namespace's init
    // (which the kernel spares signals it would take the default action
    // for) and taken below.
    // SAFETY: a zeroed sigset_t set up by sigemptyset; valid pointers.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    // In a new pid namespace getpid() says 1: the host's /proc says what
    // the engine must know it by.
    let pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<u32>().ok())
        .unwrap_or_else(std::process::id);
    let _ = writeln!(ready, "ok {pid} {pid}");
    drop(ready);
    let _ = rustix::process::setsid();
    loop {
        let mut sig = 0;
        // SAFETY: a valid set and out pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            // SAFETY: waitpid with a null status pointer.
            while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
            continue;
        }
        return Ok(());
    }
}
