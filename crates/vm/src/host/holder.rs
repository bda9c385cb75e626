//! The holder: the process that owns a VM. `create` forks it when a
//! container needs a VM (its own, or its pod's first); it plugs the
//! container's network into taps, boots QEMU, waits for the agent and then
//! routes: each connection to its control socket is one channel to the
//! agent (a container's keeper, an exec's keeper, a command). It watches
//! QEMU and pings the agent; when the VM ends otherwise than by its last
//! container's end (QEMU killed, a guest panic, an agent that stops
//! answering) every client is told why, and nothing of the VM is left:
//! QEMU, taps, redirects, shared binds, its directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use berth_base::lock::Flock;
use berth_base::process::ProcessId;
use serde_json::Value;

use crate::host::assets::Assets;
use crate::host::relay;
use crate::host::state::{Boot, VmDirs, VmRecord};
use crate::host::{net, qemu, share};
use crate::proto::{Decoder, Frame, Kind, Msg};

/// The holder's own requests to the agent (the network's takeover).
const OWN: u32 = 0;
/// The channel of the holder's liveness checks.
const PING: u32 = u32::MAX;
/// How often the holder asks whether the agent still answers.
const PING_EVERY: Duration = Duration::from_secs(5);

pub struct VmLaunch {
    pub name: String,
    pub dirs: VmDirs,
    /// The first container's spec: its limits size the VM.
    pub spec: Value,
    pub netns: Option<PathBuf>,
    pub sandbox: Option<String>,
    pub assets: Assets,
    pub accel: &'static str,
    /// How long the guest may take to boot and answer (TCG is slow).
    pub boot_timeout: Duration,
    /// How long the agent may leave a ping unanswered.
    pub agent_timeout: Duration,
    /// Boot ahead of any container, as a pool's spare: the pool slot's
    /// lock, held until a container claims the VM.
    pub spare: Option<Flock>,
}

/// What the holder made, undone when it ends (or fails to start).
struct Made {
    dirs: VmDirs,
    netns: Option<PathBuf>,
    interfaces: Vec<String>,
    qemu: Option<Child>,
}

impl Made {
    fn undo(&mut self) {
        if let Some(mut q) = self.qemu.take() {
            let _ = q.kill();
            let _ = q.wait();
        }
        if let Some(ns) = &self.netns {
            net::release(ns, &self.interfaces);
        }
        share::release(&self.dirs.share());
        let _ = std::fs::remove_dir_all(&self.dirs.dir);
    }
}

/// Boots the VM; on success the caller (the forked holder) reports to
/// `create` and calls [`Holder::serve`]. On failure nothing is left.
pub fn boot(l: VmLaunch) -> Result<Holder> {
    let mut made = Some(Made {
        dirs: VmDirs {
            dir: l.dirs.dir.clone(),
        },
        netns: l.netns.clone(),
        interfaces: Vec::new(),
        qemu: None,
    });
    let h = boot_in(l, &mut made);
    if h.is_err()
        && let Some(m) = made.as_mut()
    {
        m.undo();
    }
    h
}

/// Boots; `made` is the undo list until the Holder takes it.
fn boot_in(l: VmLaunch, made: &mut Option<Made>) -> Result<Holder> {
    let undo = made.as_mut().expect("not taken yet");
    std::fs::create_dir_all(l.dirs.share())
        .with_context(|| format!("create {}", l.dirs.share().display()))?;
    let mut plugged = match &l.netns {
        Some(ns) => net::plug(ns)?,
        None => net::Plugged::default(),
    };
    undo.interfaces = plugged.links.iter().map(|c| c.name.clone()).collect();
    let mut nics: Vec<[u8; 6]> = plugged.links.iter().map(|c| c.mac).collect();
    if l.spare.is_some() {
        // The spare NIC's tap waits in a namespace of the holder's own,
        // out of the host's sight, and goes with it.
        // SAFETY: unshare(2) takes flags only; the holder is a forked
        // process of one thread, which alone moves to the new namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error())
                .context("a network namespace for the spare tap");
        }
        let (tap, mac) = net::spare()?;
        plugged.taps.push(tap);
        nics.push(mac);
    }
    let (link, qemu_end) = UnixStream::pair().context("make the agent's socket pair")?;
    let (cpus, memory_mib) = qemu::size(&l.spec);
    let machine = qemu::Machine {
        assets: &l.assets,
        accel: l.accel,
        share: &l.dirs.share(),
        console_log: &l.dirs.console(),
        nics,
        cpus,
        memory_mib,
    };
    let mut cmd = machine.command();
    let log = std::fs::File::create(l.dirs.qemu_log())?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    let mut inherit: Vec<RawFd> = vec![qemu_end.as_raw_fd()];
    inherit.extend(plugged.taps.iter().map(|t| t.as_raw_fd()));
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (prctl, dup2, close) on fds this
    // process holds open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // QEMU dies with its holder, whatever kills the holder.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Above every fd to be placed, so no dup2 overwrites a source.
            let base = 100;
            for (i, fd) in inherit.iter().enumerate() {
                if libc::dup2(*fd, base + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for i in 0..inherit.len() {
                let target = qemu::AGENT_FD + i as RawFd;
                if libc::dup2(base + i as RawFd, target) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(base + i as RawFd);
            }
            Ok(())
        });
    }
    let spawned = Instant::now();
    let child = cmd
        .spawn()
        .context("start qemu-system-x86_64 (is qemu-system-x86 installed?)")?;
    drop(qemu_end);
    drop(plugged.taps);
    undo.qemu = Some(child);
    let qemu_id = undo
        .qemu
        .as_ref()
        .and_then(|c| ProcessId::of(c.id() as i32))
        .context("QEMU ended at once")?;
    let qemu_pidfd = qemu_id.pidfd().context("QEMU ended at once")?;
    let mut h = Holder {
        link,
        decoder: Decoder::default(),
        clients: BTreeMap::new(),
        next_chan: 1,
        containers: BTreeSet::new(),
        had_container: false,
        listener: None,
        qemu_pidfd,
        agent_timeout: l.agent_timeout,
        ping_sent: None,
        last_ping: Instant::now(),
        served_since: Instant::now(),
        made: made.take().expect("not taken yet"),
        record: None,
        spare: None,
        retired: false,
    };
    let r = h.finish_boot(l, spawned, qemu_id, plugged.links);
    match r {
        Ok(()) => Ok(h),
        Err(e) => {
            let e = anyhow!("{e:#}{}", h.console_tail());
            h.made.undo();
            Err(e)
        }
    }
}

struct Client {
    stream: UnixStream,
    decoder: Decoder,
}

pub struct Holder {
    link: UnixStream,
    decoder: Decoder,
    clients: BTreeMap<u32, Client>,
    next_chan: u32,
    /// Channels that created a container (its keeper's).
    containers: BTreeSet<u32>,
    had_container: bool,
    listener: Option<UnixListener>,
    qemu_pidfd: OwnedFd,
    agent_timeout: Duration,
    ping_sent: Option<Instant>,
    last_ping: Instant,
    served_since: Instant,
    made: Made,
    /// What vm.json says, once booted.
    record: Option<VmRecord>,
    /// A pool's spare VM holds its slot's lock until claimed.
    spare: Option<Flock>,
    /// A spare told to end.
    retired: bool,
}

impl Holder {
    fn finish_boot(
        &mut self,
        l: VmLaunch,
        spawned: Instant,
        qemu: ProcessId,
        links: Vec<berth_network::link::LinkConfig>,
    ) -> Result<()> {
        let (kernel, mut boot) = match self.await_msg(OWN, l.boot_timeout)? {
            Msg::Ready {
                kernel,
                init_ms,
                ready_ms,
            } => {
                let ready = spawned.elapsed().as_millis() as u64;
                let boot = Boot {
                    // What passed before the guest's clock started: QEMU's
                    // own start and the firmware.
                    qemu_ms: ready.saturating_sub(ready_ms),
                    kernel_ms: init_ms,
                    agent_ms: ready_ms.saturating_sub(init_ms),
                    network_ms: 0,
                };
                (kernel, boot)
            }
            other => bail!("the agent said {other:?} before it was ready"),
        };
        let t = Instant::now();
        self.send(&Frame::msg(OWN, &Msg::Network { links }))?;
        match self.await_msg(OWN, l.boot_timeout)? {
            Msg::Done { .. } => boot.network_ms = t.elapsed().as_millis() as u64,
            Msg::Failed { error } => bail!("the guest's network: {error}"),
            other => bail!("the agent answered {other:?} to the network"),
        }
        let ctl = l.dirs.ctl();
        let short = berth_base::sockpath::short(&ctl)?;
        let listener =
            UnixListener::bind(&short.path).with_context(|| format!("bind {}", ctl.display()))?;
        self.listener = Some(listener);
        let (cpus, memory_mib) = qemu::size(&l.spec);
        let record = VmRecord {
            name: l.name,
            holder: ProcessId::of(std::process::id() as i32).context("the holder's identity")?,
            qemu,
            kernel,
            accel: l.accel.to_string(),
            sandbox: l.sandbox,
            netns: self.made.netns.clone(),
            interfaces: self.made.interfaces.clone(),
            boot,
            warm: l.spare.is_some(),
            initramfs: l.assets.initramfs.clone(),
            cpus,
            memory_mib,
        };
        l.dirs.save(&record)?;
        self.record = Some(record);
        self.spare = l.spare;
        self.served_since = Instant::now();
        Ok(())
    }

    /// A container takes this spare VM: the spare NIC joins its
    /// namespace's interface, the guest takes that interface over, and
    /// the VM is the pod's. Err is the VM's end (it is half-joined); the
    /// inner Err only refuses the claim.
    fn claim(&mut self, netns: Option<PathBuf>, sandbox: Option<String>) -> Result<Result<()>> {
        if self.spare.is_none() {
            return Ok(Err(anyhow!("the VM was claimed already")));
        }
        // Checked before anything moves: a refusal leaves the spare as it was.
        let target = match netns.as_deref().map(net::spare_target) {
            Some(Ok(name)) => netns.as_deref().zip(name),
            Some(Err(e)) => return Ok(Err(e)),
            None => None,
        };
        let t = Instant::now();
        let links = match target {
            Some((ns, name)) => vec![net::adopt(ns, &name)?],
            None => Vec::new(),
        };
        self.made.netns = netns.clone();
        self.made.interfaces = links.iter().map(|c| c.name.clone()).collect();
        self.send(&Frame::msg(OWN, &Msg::Network { links }))?;
        match self.await_msg(OWN, self.agent_timeout)? {
            Msg::Done { .. } => {}
            Msg::Failed { error } => bail!("the guest's network: {error}"),
            other => bail!("the agent answered {other:?} to the network"),
        }
        let record = self.record.as_mut().expect("booted");
        record.warm = false;
        record.sandbox = sandbox;
        record.netns = netns;
        record.interfaces = self.made.interfaces.clone();
        record.boot.network_ms = t.elapsed().as_millis() as u64;
        self.made.dirs.save(record)?;
        // The slot is free for the next spare.
        self.spare = None;
        self.served_since = Instant::now();
        Ok(Ok(()))
    }

    fn send(&mut self, f: &Frame) -> Result<()> {
        self.link.set_write_timeout(Some(self.agent_timeout))?;
        self.link
            .write_all(&f.encode())
            .map_err(|e| anyhow!("the guest agent takes no more input ({e})"))
    }

    /// Reads the link until a message arrives on `chan`, QEMU ends, or the
    /// time is up.
    fn await_msg(&mut self, chan: u32, timeout: Duration) -> Result<Msg> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(f) = self.decoder.next_frame()? {
                if f.chan == chan && f.kind == Kind::Msg {
                    return Ok(f.message()?);
                }
                if f.chan == PING {
                    self.pong();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the guest did not answer within {} s", timeout.as_secs());
            }
            let mut fds = [
                relay::pollfd(self.link.as_raw_fd()),
                relay::pollfd(self.qemu_pidfd.as_raw_fd()),
            ];
            // SAFETY: fds is a valid pollfd array naming fds self holds.
            let n = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    2,
                    left.as_millis().min(i32::MAX as u128) as i32,
                )
            };
            if n < 0 {
                continue;
            }
            if fds[0].revents != 0 {
                self.read_link(&mut buf)?;
            } else if fds[1].revents != 0 {
                bail!("the VM ended unexpectedly: {}", self.qemu_end());
            }
        }
    }

    /// Takes what the agent's port has into the decoder; its end is the
    /// VM's.
    fn read_link(&mut self, buf: &mut [u8]) -> Result<()> {
        match self.link.read(buf) {
            Ok(0) => bail!("the VM ended unexpectedly: {}", self.qemu_end()),
            Ok(k) => self.decoder.push(&buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("read the agent's port"),
        }
        Ok(())
    }

    /// QEMU's exit, in words.
    fn qemu_end(&mut self) -> String {
        match self.made.qemu.as_mut().map(Child::wait) {
            Some(Ok(s)) => match s.code() {
                Some(c) => format!("QEMU exited with status {c}"),
                None => format!("QEMU was killed ({s})"),
            },
            _ => "QEMU is gone".into(),
        }
    }

    /// What the guest's console and QEMU said last, for an error: a
    /// kernel panic's own line where there is one, else the last lines.
    fn console_tail(&self) -> String {
        let mut out = String::new();
        let dirs = &self.made.dirs;
        for (what, path) in [("console", dirs.console()), ("qemu", dirs.qemu_log())] {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let said = match lines.iter().find(|l| l.contains("Kernel panic")) {
                Some(panic) => panic.trim().to_string(),
                None => lines[lines.len().saturating_sub(3)..].join(" | "),
            };
            if !said.is_empty() {
                out.push_str(&format!("; {what}: {said}"));
            }
        }
        out
    }

    /// Routes until the VM's last container has gone, or the VM ends
    /// otherwise; never returns.
    pub fn serve(mut self) -> ! {
        match self.run() {
            Ok(()) => {
                self.made.undo();
                std::process::exit(0)
            }
            Err(e) => {
                let reason = format!("{e:#}{}", self.console_tail());
                let gone = Frame::msg(0, &Msg::Gone { reason });
                for c in self.clients.values_mut() {
                    let _ = c.stream.write_all(&gone.encode());
                }
                self.made.undo();
                std::process::exit(1)
            }
        }
    }

    fn run(&mut self) -> Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.retired {
                return Ok(());
            }
            if self.containers.is_empty() && self.spare.is_none() {
                // The last container has gone; or none came, though
                // `create` booted (or claimed) this VM for one.
                let waited = self.served_since.elapsed();
                if self.had_container
                    || (self.clients.is_empty() && waited > Duration::from_secs(30))
                {
                    return Ok(());
                }
            }
            let listener = self.listener.as_ref().map_or(-1, |l| l.as_raw_fd());
            let mut fds = vec![
                relay::pollfd(self.link.as_raw_fd()),
                relay::pollfd(self.qemu_pidfd.as_raw_fd()),
                relay::pollfd(listener),
            ];
            let chans: Vec<u32> = self.clients.keys().copied().collect();
            for c in &chans {
                fds.push(relay::pollfd(self.clients[c].stream.as_raw_fd()));
            }
            let wait = self.heartbeat()?;
            // SAFETY: fds is a valid pollfd array naming fds self holds
            // (negative entries are ignored by poll).
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
            if n < 0 {
                continue;
            }
            if fds[0].revents != 0 {
                self.read_link(&mut buf)?;
                while let Some(f) = self.decoder.next_frame()? {
                    self.on_agent_frame(f)?;
                }
            }
            if fds[1].revents != 0 {
                bail!("the VM ended unexpectedly: {}", self.qemu_end());
            }
            if fds[2].revents != 0 {
                self.accept();
            }
            for (i, c) in chans.iter().enumerate() {
                if fds[3 + i].revents != 0 {
                    self.on_client_input(*c, &mut buf)?;
                }
            }
        }
    }

    /// Sends a ping when one is due; fails when the last went unanswered
    /// too long. Returns poll's timeout until the next check.
    fn heartbeat(&mut self) -> Result<i32> {
        let now = Instant::now();
        if let Some(sent) = self.ping_sent {
            if now.duration_since(sent) > self.agent_timeout {
                bail!(
                    "the guest agent has not answered for {} s",
                    self.agent_timeout.as_secs()
                );
            }
            return Ok(500);
        }
        if now.duration_since(self.last_ping) >= PING_EVERY {
            self.send(&Frame::msg(PING, &Msg::Ping))?;
            self.ping_sent = Some(now);
            return Ok(500);
        }
        Ok((PING_EVERY - now.duration_since(self.last_ping)).as_millis() as i32 + 1)
    }

    fn pong(&mut self) {
        self.ping_sent = None;
        self.last_ping = Instant::now();
    }

    fn on_agent_frame(&mut self, f: Frame) -> Result<()> {
        if f.chan == PING {
            self.pong();
            return Ok(());
        }
        let gone = match self.clients.get_mut(&f.chan) {
            Some(c) => c.stream.write_all(&f.encode()).is_err(),
            None => false,
        };
        if gone {
            self.drop_client(f.chan)?;
        }
        Ok(())
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        let Ok((stream, _)) = l.accept() else { return };
        // A client that stops reading must not stall the others.
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let chan = self.next_chan;
        self.next_chan += 1;
        self.clients.insert(
            chan,
            Client {
                stream,
                decoder: Decoder::default(),
            },
        );
    }

    fn on_client_input(&mut self, chan: u32, buf: &mut [u8]) -> Result<()> {
        let Some(c) = self.clients.get_mut(&chan) else {
            return Ok(());
        };
        let k = match c.stream.read(buf) {
            Ok(0) | Err(_) => return self.drop_client(chan),
            Ok(k) => k,
        };
        c.decoder.push(&buf[..k]);
        let mut frames = Vec::new();
        loop {
            match c.decoder.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => return self.drop_client(chan),
            }
        }
        for mut f in frames {
            f.chan = chan;
            let msg = (f.kind == Kind::Msg).then(|| f.message().ok()).flatten();
            match msg {
                Some(Msg::Claim { netns, sandbox }) => {
                    let r = self.claim(netns, sandbox)?;
                    self.answer(chan, r);
                    continue;
                }
                Some(Msg::Retire) => {
                    let r = match self.spare {
                        Some(_) => Ok(()),
                        None => Err(anyhow!("the VM serves a container")),
                    };
                    self.retired = r.is_ok();
                    self.answer(chan, r);
                    continue;
                }
                Some(Msg::Create(_)) => {
                    self.containers.insert(chan);
                    self.had_container = true;
                }
                _ => {}
            }
            self.send(&f)?;
        }
        Ok(())
    }

    /// The holder's own answer to a client's command.
    fn answer(&mut self, chan: u32, r: Result<()>) {
        let m = match r {
            Ok(()) => Msg::Done { value: None },
            Err(e) => Msg::Failed {
                error: format!("{e:#}"),
            },
        };
        if let Some(c) = self.clients.get_mut(&chan) {
            let _ = c.stream.write_all(&Frame::msg(chan, &m).encode());
        }
    }

    fn drop_client(&mut self, chan: u32) -> Result<()> {
        if self.clients.remove(&chan).is_some() {
            self.containers.remove(&chan);
            self.send(&Frame::msg(chan, &Msg::Hangup))?;
        }
        Ok(())
    }
}
