//! berth-vm's commands, runc's in name and meaning: the binary parses
//! its command line and calls these.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rustix::pipe::{PipeFlags, pipe_with};
use serde_json::{Value, json};

use crate::host::client::Client;
use crate::host::keeper::{self, Launch};
use crate::host::relay::{self, Relay};
use crate::host::state::{self, Dirs, Record};
use crate::host::{assets, net, share};
use crate::proto::{Decoder, Frame, Kind, Msg};

pub struct Vm {
    pub root: PathBuf,
    pub kernel: Option<PathBuf>,
    pub agent: Option<PathBuf>,
}

/// How long a request to a live container's agent may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

fn secs_from_env(var: &str, default: u64) -> Duration {
    let s = std::env::var(var).ok().and_then(|v| v.parse().ok());
    Duration::from_secs(s.unwrap_or(default))
}

impl Vm {
    fn dirs(&self, id: &str) -> Result<Dirs> {
        Dirs::new(&self.root, id)
    }

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
        share::netns_path(&spec)?;
        let accel = assets::accelerator();
        let assets = assets::find(
            self.kernel.as_deref(),
            self.agent.as_deref(),
            &self.root.join(".cache"),
        )?;
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("create {}", self.root.display()))?;
        match std::fs::DirBuilder::new().mode(0o700).create(&dirs.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("container \"{id}\" already exists")
            }
            Err(e) => return Err(e).with_context(|| format!("create {}", dirs.dir.display())),
        }
        let launch = Launch {
            id: id.to_string(),
            bundle,
            dirs,
            spec,
            assets,
            accel,
            console_socket: console_socket.map(Path::to_path_buf),
            boot_timeout: secs_from_env("BERTH_VM_BOOT_TIMEOUT", 120),
            agent_timeout: secs_from_env("BERTH_VM_AGENT_TIMEOUT", 15),
        };
        let dir = launch.dirs.dir.clone();
        let made = fork_keeper(move |report| {
            let r = keeper::boot(launch);
            match r {
                Ok(k) => {
                    keeper::report(report, &Ok(()));
                    k.serve()
                }
                Err(e) => {
                    keeper::report(report, &Err(e));
                    std::process::exit(1)
                }
            }
        });
        match made {
            Ok(pid) => {
                if let Some(p) = pid_file {
                    berth_runtime::write_pid_file(p, pid)?;
                }
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn live(&self, id: &str) -> Result<(Dirs, Record)> {
        let dirs = self.dirs(id)?;
        let r = dirs.load()?;
        if !r.keeper.is_alive() {
            bail!("container \"{id}\" is not running");
        }
        Ok((dirs, r))
    }

    fn request(&self, id: &str, m: &Msg) -> Result<Option<Value>> {
        let (dirs, _) = self.live(id)?;
        Client::connect(&dirs.ctl(), REQUEST_TIMEOUT)?.request(m)
    }

    pub fn start(&self, id: &str) -> Result<()> {
        let (dirs, r) = self.live(id)?;
        if r.started {
            bail!("container \"{id}\" has already been started");
        }
        Client::connect(&dirs.ctl(), REQUEST_TIMEOUT)?.request(&Msg::Start)?;
        Ok(())
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
        annotations["io.github.berth.vm.kernel"] = json!(r.kernel);
        annotations["io.github.berth.vm.accelerator"] = json!(r.accel);
        if let Ok(reason) = std::fs::read_to_string(dirs.reason()) {
            annotations["io.github.berth.vm.ended"] = json!(reason);
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
        let (dirs, r) = self.live(id)?;
        let asked = Client::connect(&dirs.ctl(), REQUEST_TIMEOUT)
            .and_then(|mut c| c.request(&Msg::Kill { signal, all }));
        match asked {
            Ok(_) => Ok(()),
            // A VM that cannot take the request still dies by SIGKILL: the
            // keeper and QEMU are ended from here.
            Err(_) if signal == libc::SIGKILL => {
                force_end(&r);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let dirs = self.dirs(id)?;
        if !dirs.dir.exists() {
            bail!("container \"{id}\" does not exist");
        }
        if let Ok(r) = dirs.load() {
            if r.keeper.is_alive() {
                if !force && r.started {
                    bail!("container \"{id}\" is running: stop it first, or delete --force");
                }
                force_end(&r);
            }
            if let Some(ns) = &r.netns {
                net::release(ns, &r.interfaces);
            }
        }
        share::release(&dirs.share());
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
        let (dirs, _) = self.live(id)?;
        let tty = process["terminal"].as_bool().unwrap_or(false);
        if tty && console_socket.is_none() && detach {
            bail!("a detached process with a terminal needs --console-socket");
        }
        let client = Client::connect(&dirs.ctl(), REQUEST_TIMEOUT)?;
        let console = console_socket.map(Path::to_path_buf);
        if !detach {
            exec_keeper(client, process, tty, console, None)
        }
        let pid =
            fork_keeper(move |report| exec_keeper(client, process, tty, console, Some(report)))?;
        if let Some(p) = pid_file {
            berth_runtime::write_pid_file(p, pid)?;
        }
        Ok(())
    }
}

/// SIGKILL to the keeper and QEMU, and a wait (bounded) for both to go.
fn force_end(r: &Record) {
    for p in [&r.keeper, &r.qemu] {
        p.signal(libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (r.keeper.is_alive() || r.qemu.is_alive()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Forks a keeper running `body` (which never returns) in a session of
/// its own and waits for its verdict on the pipe `body` gets; returns the
/// keeper's pid. The caller is single-threaded (a command of berth-vm).
fn fork_keeper(body: impl FnOnce(OwnedFd)) -> Result<i32> {
    berth_runtime::spawn::require_single_thread("berth-vm").map_err(|e| anyhow!("{e}"))?;
    let (r, w) = pipe_with(PipeFlags::CLOEXEC).context("create a pipe")?;
    // SAFETY: this process has one thread (checked above), so the child
    // may run any code; it ends in `body` without returning.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork the keeper");
    }
    if pid == 0 {
        drop(r);
        // SAFETY: setsid(2) takes nothing; the child leads no group yet.
        unsafe { libc::setsid() };
        body(w);
        std::process::exit(255)
    }
    drop(w);
    match keeper::verdict(r) {
        Ok(()) => Ok(pid),
        Err(e) => {
            let _ = berth_runtime::spawn::wait_status(pid);
            Err(e)
        }
    }
}

/// An exec'd process's keeper: asks for the process, reports, relays.
fn exec_keeper(
    mut client: Client,
    process: Value,
    tty: bool,
    console: Option<PathBuf>,
    report: Option<OwnedFd>,
) -> ! {
    let started = (|| -> Result<OwnedFd> {
        if tty && let Some(c) = &console {
            relay::take_terminal(c)?
        }
        let signals = relay::signal_fd(relay::FORWARDED)?;
        client.request(&Msg::Exec { process, tty })?;
        Ok(signals)
    })();
    let signals = match (started, report) {
        (Ok(s), Some(rep)) => {
            keeper::report(rep, &Ok(()));
            s
        }
        (Ok(s), None) => s,
        (Err(e), Some(rep)) => {
            keeper::report(rep, &Err(e));
            std::process::exit(255)
        }
        (Err(e), None) => {
            eprintln!("berth-vm: exec failed: {e:#}");
            std::process::exit(255)
        }
    };
    let mut relay = Relay::new(tty && console.is_some());
    let mut dec = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    let stream = &mut client.stream;
    let _ = stream.set_read_timeout(None);
    loop {
        let mut fds = [
            relay::pollfd(stream.as_raw_fd()),
            relay::pollfd(if relay.input_open { 0 } else { -1 }),
            relay::pollfd(signals.as_raw_fd()),
        ];
        // SAFETY: fds is a valid pollfd array naming fds held here.
        if unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) } < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            use std::io::Read;
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => {
                    eprintln!("berth-vm: the container's VM ended before the process did");
                    std::process::exit(255)
                }
                Ok(k) => dec.push(&buf[..k]),
            }
            while let Ok(Some(f)) = dec.next_frame() {
                if f.kind != Kind::Msg {
                    relay.output(&f);
                } else if let Ok(Msg::Exited { status }) = f.message() {
                    relay::mirror_exit(status)
                }
            }
        }
        let mut out = Vec::new();
        if fds[1].revents != 0
            && let Some(f) = relay.read_input(0)
        {
            out.push(f);
        }
        if fds[2].revents != 0 {
            while let Some(sig) = relay::next_signal(&signals) {
                let m = if sig == libc::SIGWINCH {
                    relay.size()
                } else {
                    Some(Msg::Kill {
                        signal: sig,
                        all: false,
                    })
                };
                out.extend(m.map(|m| Frame::msg(0, &m)));
            }
        }
        for f in out {
            use std::io::Write;
            if stream.write_all(&f.encode()).is_err() {
                eprintln!("berth-vm: the container's VM ended before the process did");
                std::process::exit(255)
            }
        }
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
