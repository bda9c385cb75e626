//! The runtime's side of each operation but create (create.rs): start,
//! kill, delete, pause, resume, state, list. Each call stands alone: all it
//! needs comes from the state directory, so any process may make the next.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxResources, Spec};
use rustix::fs::{Mode, OFlags};

use crate::cgroups::{self, Cgroup};
use crate::config;
use crate::error::{Context, Error, Result};
use crate::hooks::{self, Kind};
use crate::procfs;
use crate::state::{self, CONFIG_FILE, ContainerState, EXEC_FIFO, OciState, Status, Store};

/// Global settings of one runtime invocation.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub store: Store,
    /// Create cgroups through systemd (transient scopes) instead of cgroupfs.
    pub systemd_cgroup: bool,
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

/// How long `start` waits for the created init to take the signal.
const START_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Runtime {
    /// Compiled seccomp filters, kept between calls (see
    /// seccomp::prepare); beside the containers' state, private as it is.
    pub fn seccomp_cache(&self) -> PathBuf {
        self.store.root().join(".seccomp")
    }

    pub fn new(root: impl Into<PathBuf>, systemd_cgroup: bool) -> Self {
        Runtime {
            store: Store::new(root),
            systemd_cgroup,
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
        // A created container can be paused too: frozen comes first.
        if Cgroup::from_record(st.cgroup.clone()).is_frozen() {
            return Status::Paused;
        }
        if self.store.dir(&st.id).join(EXEC_FIFO).exists() {
            return Status::Created;
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
            Status::Paused => {
                return Err(bad_state(
                    id,
                    Status::Paused,
                    "cannot start a paused container: resume it first",
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
        // After the release byte, anything the init writes is the error
        // that kept it from running the program (a startContainer hook that
        // failed, an exec that failed); it exits, which stops the container.
        let mut failure = Vec::new();
        // The init answers at once when it waits on the fifo; when it does
        // not (it is stuck, or not ours any more), say so instead of
        // waiting forever.
        let answer_by = std::time::Instant::now() + START_ANSWER_TIMEOUT;
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
            let mut b = [0u8; 4096];
            match rustix::io::read(&fifo, &mut b) {
                Ok(n) if n > 0 => {
                    let rest = if released { &b[..n] } else { &b[1..n] };
                    released = true;
                    failure.extend_from_slice(rest);
                }
                Ok(_) if released => break,
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {
                    // Nobody writes, and the init runs a program of its own:
                    // an earlier `start` released it and died before it
                    // recorded that (its caller was killed). It has started.
                    if !released && init_has_execed(&st) {
                        break;
                    }
                    if !released && std::time::Instant::now() > answer_by {
                        return Err(Error::Other(format!(
                            "container {id}: its process did not take the start signal within {}s",
                            START_ANSWER_TIMEOUT.as_secs()
                        )));
                    }
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
        if !failure.is_empty() {
            return Err(Error::Other(format!(
                "container {id}: {}",
                String::from_utf8_lossy(&failure)
            )));
        }
        if let Ok(spec) = self.spec(id) {
            let oci = st.oci(Status::Running);
            hooks::run_warning(Kind::Poststart, spec.hooks().as_ref(), &oci);
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
        // Without a cgroup (an ordinary user's, undelegated) the members
        // cannot be found: the init is signalled, as without --all.
        if all && !cg.is_absent() {
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
            // The runtime-spec: deleting a container that is not stopped
            // must fail and change nothing; --force is the caller's word
            // that it means the kill (containerd and podman pass it).
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
                    &format!(
                        "cannot delete container {id} that is not stopped: {s} (stop it first, or delete --force)"
                    ),
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
        if let Some(spec) = spec {
            hooks::run_warning(
                Kind::Poststop,
                spec.hooks().as_ref(),
                &st.oci(Status::Stopped),
            );
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
        cg.apply(&r, None)?;
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
        let cg = Cgroup::from_record(st.cgroup);
        if cg.is_absent() {
            return Err(Error::Cgroup(format!(
                "container {id} has no cgroup to read statistics from: this user has none delegated (rootless containers on cgroup v1 and hybrid hosts run without)"
            )));
        }
        Ok(cgroups::stats::collect(&cg))
    }
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
            // SAFETY: kill takes integers only (a pid read from cgroup.procs
            // may be stale: a race on the target, not on memory).
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

/// Whether the container's init has exec'd its program: its command name
/// is no longer the one it waits under.
fn init_has_execed(st: &crate::state::ContainerState) -> bool {
    let waiting = crate::init::INIT_NAME.to_str().unwrap_or_default();
    crate::procfs::comm(st.init_pid, st.init_start_time).is_some_and(|c| c != waiting)
}
