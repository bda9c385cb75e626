//! berth-vm's commands, runc's in name and meaning: the binary parses
//! its command line and calls these.

use std::os::fd::RawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use berth_base::lock::{Flock, Kind as LockKind, Wait};
use berth_base::process::ProcessId;
use serde_json::{Value, json};

use crate::guest::boot::SHARE as GUEST_SHARE;
use crate::host::client::Client;
use crate::host::holder::{self, VmLaunch};
use crate::host::keeper::Keeper;
use crate::host::state::{self, Dirs, Record, VmDirs, VmRecord};
use crate::host::{assets, fork, share};
use crate::proto::{CreateRequest, Msg};

pub struct Vm {
    pub root: PathBuf,
    pub kernel: Option<PathBuf>,
    pub agent: Option<PathBuf>,
    /// How many spare VMs to keep booted ahead of their containers.
    pub warm: usize,
}

/// How long a request to a live container's agent may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The annotations naming a container's pod, by which it finds its pod's
/// VM: berthd's, and containerd's (whose sandbox container comes first
/// and boots the VM).
const POD_ANNOTATIONS: &[&str] = &["io.github.berth.pod-id", "io.kubernetes.cri.sandbox-id"];

fn secs_from_env(var: &str, default: u64) -> Duration {
    let s = std::env::var(var).ok().and_then(|v| v.parse().ok());
    Duration::from_secs(s.unwrap_or(default))
}

/// How long a VM may take to boot and answer (TCG is slow).
pub(crate) fn boot_timeout() -> Duration {
    secs_from_env("BERTH_VM_BOOT_TIMEOUT", 120)
}

impl Vm {
    fn dirs(&self, id: &str) -> Result<Dirs> {
        Dirs::new(&self.root, id)
    }

    /// Creates the container in its pod's VM, or in a VM booted for it.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: Option<&Path>,
        console_socket: Option<&Path>,
    ) -> Result<()> {
        let dirs = self.dirs(id)?;
        let bundle = std::path::absolute(bundle).context("--bundle")?;
        let raw = std::fs::read(bundle.join("config.json"))
            .with_context(|| format!("read {}/config.json", bundle.display()))?;
        berth_runtime::config::parse::<oci_spec::runtime::Spec>(&raw, "config.json")
            .map_err(|e| anyhow!("{e}"))?;
        let spec: Value = serde_json::from_slice(&raw).context("config.json")?;
        let netns = share::netns_path(&spec)?;
        let tty = spec["process"]["terminal"].as_bool().unwrap_or(false);
        if tty && console_socket.is_none() {
            bail!("the process wants a terminal: --console-socket is required");
        }
        let sandbox = POD_ANNOTATIONS
            .iter()
            .find_map(|a| spec["annotations"][*a].as_str())
            .map(String::from);
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("create {}", self.root.display()))?;
        match std::fs::DirBuilder::new().mode(0o700).create(&dirs.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("container \"{id}\" already exists")
            }
            Err(e) => return Err(e).with_context(|| format!("create {}", dirs.dir.display())),
        }
        let made = self.create_in(id, &bundle, &spec, netns, sandbox, console_socket);
        match made {
            Ok(pid) => {
                if let Some(p) = pid_file {
                    berth_runtime::write_pid_file(p, pid)?;
                }
                // The pool, a spare short after a claim (or empty still),
                // fills in the background; when it cannot, the next
                // create boots as if it had no pool.
                if self.warm > 0 {
                    let _ = self.fill_pool(false);
                }
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dirs.dir);
                Err(e)
            }
        }
    }

    fn create_in(
        &self,
        id: &str,
        bundle: &Path,
        spec: &Value,
        netns: Option<PathBuf>,
        sandbox: Option<String>,
        console_socket: Option<&Path>,
    ) -> Result<i32> {
        // One VM per pod: its containers are created one at a time, and
        // the first boots it.
        let _pod = match &sandbox {
            Some(s) => {
                let wait = Wait::For(Duration::from_secs(300));
                let lock = self.lock(&format!("pod-{s}"), wait)?;
                Some(lock.ok_or_else(|| anyhow!("pod {s} stayed locked"))?)
            }
            None => None,
        };
        // The lock's fd must not live on in the forked holder and keeper.
        let inherited: Vec<RawFd> = _pod.iter().map(Flock::raw_fd).collect();
        let found = match self.pod_vm(sandbox.as_deref(), netns.as_deref()) {
            Some(found) => Some(found),
            None => self.claim_spare(spec, netns.as_deref(), sandbox.as_deref())?,
        };
        let (vm_dirs, vm) = match found {
            Some(found) => found,
            None => self.boot(id, spec, netns, sandbox, &inherited, None)?,
        };
        let share_dir = vm_dirs.share().join(id);
        let guest_spec =
            share::prepare(id, spec, bundle, &share_dir, &format!("{GUEST_SHARE}/{id}"))?;
        let client = match Client::connect(&vm_dirs.ctl(), boot_timeout()) {
            Ok(c) => c,
            Err(e) => {
                share::release(&share_dir);
                return Err(e);
            }
        };
        let keeper = Keeper {
            client,
            first: Msg::Create(Box::new(CreateRequest {
                id: id.to_string(),
                spec: guest_spec,
            })),
            tty: spec["process"]["terminal"].as_bool().unwrap_or(false),
            console: console_socket.map(Path::to_path_buf),
            share: Some(share_dir),
        };
        let pid = fork::fork_and_wait(&inherited, move |report| keeper.run(Some(report)))?;
        let record = Record {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            keeper: ProcessId::of(pid).context("the container's keeper ended at once")?,
            vm: vm.name,
            created: berth_base::time::now_rfc3339(),
            started: false,
            annotations: spec["annotations"].clone(),
        };
        self.dirs(id)?.save(&record)?;
        Ok(pid)
    }

    /// The live VM of pod `sandbox` on the same network namespace, if any.
    fn pod_vm(&self, sandbox: Option<&str>, netns: Option<&Path>) -> Option<(VmDirs, VmRecord)> {
        let sandbox = sandbox?;
        state::vms(&self.root)
            .into_iter()
            .find(|(_, r)| r.sandbox.as_deref() == Some(sandbox) && r.netns.as_deref() == netns)
    }

    /// The guest's kernel and initramfs.
    pub(crate) fn assets(&self) -> Result<assets::Assets> {
        assets::find(
            self.kernel.as_deref(),
            self.agent.as_deref(),
            &self.root.join(".cache"),
        )
    }

    /// Forks a holder that boots a VM, and waits until it serves; a spare
    /// VM (see [`crate::host::pool`]) when given its pool slot.
    pub(crate) fn boot(
        &self,
        id: &str,
        spec: &Value,
        netns: Option<PathBuf>,
        sandbox: Option<String>,
        inherited: &[RawFd],
        spare: Option<Flock>,
    ) -> Result<(VmDirs, VmRecord)> {
        let assets = self.assets()?;
        // A VM is named after the container that booted it (unique among
        // live containers, hence among live VMs), a spare at random.
        let dirs = VmDirs::new(&self.root, id);
        let _ = std::fs::remove_dir_all(&dirs.dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dirs.dir)
            .with_context(|| format!("create {}", dirs.dir.display()))?;
        let launch = VmLaunch {
            name: id.to_string(),
            dirs: VmDirs {
                dir: dirs.dir.clone(),
            },
            spec: spec.clone(),
            netns,
            sandbox,
            assets,
            accel: assets::accelerator(),
            boot_timeout: boot_timeout(),
            agent_timeout: secs_from_env("BERTH_VM_AGENT_TIMEOUT", 30),
            spare,
        };
        let booted = fork::fork_and_wait(inherited, move |report| {
            // The holder outlives this command: it must not hold the
            // caller's pipes open (its errors go through `report`).
            fork::detach_stdio();
            match holder::boot(launch) {
                Ok(h) => {
                    fork::report(report, &Ok(()));
                    h.serve()
                }
                Err(e) => {
                    fork::report(report, &Err(e));
                    std::process::exit(1)
                }
            }
        });
        if let Err(e) = booted {
            let _ = std::fs::remove_dir_all(&dirs.dir);
            return Err(e);
        }
        let r = dirs.load()?;
        Ok((dirs, r))
    }

    /// An exclusive lock of berth-vm's root, named; None when `wait` is
    /// No and another process holds it.
    pub(crate) fn lock(&self, name: &str, wait: Wait) -> Result<Option<Flock>> {
        let dir = self.root.join(".locks");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.lock"));
        Flock::acquire(&path, LockKind::Exclusive, wait)
            .with_context(|| format!("lock {}", path.display()))
    }

    fn live(&self, id: &str) -> Result<(Dirs, Record)> {
        let dirs = self.dirs(id)?;
        let r = dirs.load()?;
        if !r.keeper.is_alive() {
            bail!("container \"{id}\" is not running");
        }
        Ok((dirs, r))
    }

    /// A channel to the agent about container `r`.
    fn connect(&self, r: &Record) -> Result<Client> {
        let vm = VmDirs::new(&self.root, &r.vm);
        let mut c = Client::connect(&vm.ctl(), REQUEST_TIMEOUT)?;
        c.request(&Msg::Target { id: r.id.clone() })?;
        Ok(c)
    }

    fn request(&self, id: &str, m: &Msg) -> Result<Option<Value>> {
        let (_, r) = self.live(id)?;
        self.connect(&r)?.request(m)
    }

    pub fn start(&self, id: &str) -> Result<()> {
        let (dirs, mut r) = self.live(id)?;
        if r.started {
            bail!("container \"{id}\" has already been started");
        }
        self.connect(&r)?.request(&Msg::Start)?;
        r.started = true;
        dirs.save(&r)
    }

    pub fn state(&self, id: &str) -> Result<Value> {
        let dirs = self.dirs(id)?;
        if !dirs.dir.exists() {
            bail!("container \"{id}\" does not exist");
        }
        let Ok(r) = dirs.load() else {
            // Being created, or its create was cut short: nothing runs.
            return Ok(
                json!({"ociVersion": berth_runtime::state::OCI_VERSION, "id": id, "status": "stopped", "pid": 0, "bundle": ""}),
            );
        };
        let status = state::status(&r);
        let pid = if status == "stopped" { 0 } else { r.keeper.pid };
        let mut annotations = r.annotations.clone();
        if !annotations.is_object() {
            annotations = json!({});
        }
        if let Ok(vm) = VmDirs::new(&self.root, &r.vm).load() {
            annotations["io.github.berth.vm.kernel"] = json!(vm.kernel);
            annotations["io.github.berth.vm.accelerator"] = json!(vm.accel);
        }
        Ok(json!({
            "ociVersion": berth_runtime::state::OCI_VERSION,
            "id": id,
            "status": status,
            "pid": pid,
            "bundle": r.bundle,
            "created": r.created,
            "annotations": annotations,
        }))
    }

    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let (_, r) = self.live(id)?;
        let asked = self
            .connect(&r)
            .and_then(|mut c| c.request(&Msg::Kill { signal, all }));
        match asked {
            Ok(_) => Ok(()),
            // A VM that cannot take the request still loses the container
            // to SIGKILL: its keeper ends here, and the agent, when it
            // answers again, kills what the keeper stood for.
            Err(_) if signal == libc::SIGKILL => {
                end_keeper(&r.keeper);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let dirs = self.dirs(id)?;
        if !dirs.dir.exists() {
            // runc's: forcing the removal of what is not there succeeds.
            if force {
                return Ok(());
            }
            bail!("container \"{id}\" does not exist");
        }
        if let Ok(r) = dirs.load() {
            if r.keeper.is_alive() {
                if !force && r.started {
                    bail!("container \"{id}\" is running: stop it first, or delete --force");
                }
                end_keeper(&r.keeper);
            }
            share::release(&VmDirs::new(&self.root, &r.vm).share().join(id));
        }
        std::fs::remove_dir_all(&dirs.dir).with_context(|| format!("remove {}", dirs.dir.display()))
    }

    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let r = self.dirs(id)?.load()?;
        Ok(if r.keeper.is_alive() {
            vec![r.keeper.pid]
        } else {
            Vec::new()
        })
    }

    pub fn stats(&self, id: &str) -> Result<Value> {
        let data = self.request(id, &Msg::Stats)?.unwrap_or(Value::Null);
        Ok(json!({"type": "stats", "id": id, "data": data}))
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        self.request(id, &Msg::Pause).map(drop)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.request(id, &Msg::Resume).map(drop)
    }

    pub fn update(&self, id: &str, resources: Value) -> Result<()> {
        self.request(id, &Msg::Update { resources }).map(drop)
    }

    pub fn list(&self) -> Result<Vec<Value>> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(s) = self.state(&name) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// runc's exec: the process runs in the container; with `detach` a
    /// keeper of its own (the pid in `pid_file`) relays its stdio and ends
    /// with its status, else this process does.
    pub fn exec(
        &self,
        id: &str,
        process: Value,
        console_socket: Option<&Path>,
        pid_file: Option<&Path>,
        detach: bool,
    ) -> Result<()> {
        let (_, r) = self.live(id)?;
        let tty = process["terminal"].as_bool().unwrap_or(false);
        if tty && console_socket.is_none() && detach {
            bail!("a detached process with a terminal needs --console-socket");
        }
        let keeper = Keeper {
            client: self.connect(&r)?,
            first: Msg::Exec { process, tty },
            tty,
            console: console_socket.map(Path::to_path_buf),
            share: None,
        };
        if !detach {
            keeper.run(None)
        }
        let pid = fork::fork_and_wait(&[], move |report| keeper.run(Some(report)))?;
        if let Some(p) = pid_file {
            berth_runtime::write_pid_file(p, pid)?;
        }
        Ok(())
    }
}

/// SIGKILL to a keeper, and a wait (bounded) for it to go.
fn end_keeper(keeper: &ProcessId) {
    keeper.signal(libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while keeper.is_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What berth-vm supports, in runc's `features` shape.
pub fn features() -> Value {
    let mut doc = berth_runtime::features::document();
    // Hooks are host programs; the container runs in the guest.
    doc["hooks"] = json!([]);
    doc["annotations"]["io.github.berth.vm.accelerator"] = json!(assets::accelerator());
    doc["annotations"]["io.github.berth.vm.transport"] = json!("virtio-serial");
    doc["annotations"]["io.github.berth.vm.share"] = json!("virtio-9p");
    doc
}
