//! The keeper: the process the host knows as the container. `create`
//! forks it; it boots the VM, has the agent create the container, and
//! then lives exactly as long as the container's process: it relays that
//! process's stdio, passes signals on, routes the other commands' channels
//! to the agent, and ends with the process's status. Whatever ends the VM
//! otherwise (QEMU killed, a guest panic, an agent that stops answering)
//! ends the keeper too, with the reason on the container's stderr and in
//! its directory, and nothing of the VM left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use berth_base::process::ProcessId;
use serde_json::Value;

use crate::host::assets::Assets;
use crate::host::relay::{self, Relay};
use crate::host::state::{Dirs, Record};
use crate::host::{net, qemu, share};
use crate::proto::{CreateRequest, Decoder, Frame, Kind, Msg};

/// The channel of the keeper's own liveness checks.
const PING: u32 = u32::MAX;
/// How often the keeper asks whether the agent still answers.
const PING_EVERY: Duration = Duration::from_secs(5);

pub struct Launch {
    pub id: String,
    pub bundle: PathBuf,
    pub dirs: Dirs,
    pub spec: Value,
    pub assets: Assets,
    pub accel: &'static str,
    /// Where the container's terminal master goes (runc's --console-socket).
    pub console_socket: Option<PathBuf>,
    /// How long the guest may take to boot and answer (TCG is slow).
    pub boot_timeout: Duration,
    /// How long the agent may leave a request or a ping unanswered.
    pub agent_timeout: Duration,
}

/// What the keeper made, undone in reverse when it ends (or fails to
/// start): the VM, the NICs' plumbing, the shared directory's binds.
struct Made {
    dirs_share: PathBuf,
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
        share::release(&self.dirs_share);
    }
}

/// Boots the VM and creates the container in it; on success the caller
/// (the forked keeper) reports to `create` and calls [`Keeper::serve`].
pub fn boot(l: Launch) -> Result<Keeper> {
    let netns = share::netns_path(&l.spec)?;
    let mut made = Made {
        dirs_share: l.dirs.share(),
        netns: netns.clone(),
        interfaces: Vec::new(),
        qemu: None,
    };
    match boot_in(l, &mut made) {
        Ok(k) => Ok(k),
        Err(e) => {
            made.undo();
            Err(e)
        }
    }
}

fn boot_in(l: Launch, made: &mut Made) -> Result<Keeper> {
    let guest_spec = share::prepare(&l.spec, &l.bundle, &l.dirs.share())?;
    let tty = l.spec["process"]["terminal"].as_bool().unwrap_or(false);
    if tty {
        let socket = l
            .console_socket
            .as_ref()
            .context("the process wants a terminal: --console-socket is required")?;
        relay::take_terminal(socket)?;
    }
    let plugged = match &made.netns {
        Some(ns) => net::plug(ns)?,
        None => net::Plugged::default(),
    };
    made.interfaces = plugged.links.iter().map(|c| c.name.clone()).collect();
    let (link, qemu_end) = UnixStream::pair().context("make the agent's socket pair")?;
    let (cpus, memory_mib) = qemu::size(&l.spec);
    let machine = qemu::Machine {
        assets: &l.assets,
        accel: l.accel,
        share: &l.dirs.share(),
        console_log: &l.dirs.console(),
        nics: plugged.links.iter().map(|c| c.mac).collect(),
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
    // makes async-signal-safe calls (prctl, dup2, fcntl) on fds this
    // process holds open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // QEMU dies with its keeper, whatever kills the keeper.
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
    let child = cmd
        .spawn()
        .context("start qemu-system-x86_64 (is qemu-system-x86 installed?)")?;
    drop(qemu_end);
    drop(plugged.taps);
    let qemu_id = ProcessId::of(child.id() as i32).context("QEMU ended at once")?;
    made.qemu = Some(child);
    let qemu_pidfd = qemu_id.pidfd().context("QEMU ended at once")?;
    let mut k = Keeper {
        link,
        decoder: Decoder::default(),
        relay: Relay::new(tty),
        clients: BTreeMap::new(),
        next_chan: 1,
        starting: BTreeSet::new(),
        listener: None,
        signals: relay::signal_fd(relay::FORWARDED)?,
        qemu_pidfd,
        dirs: l.dirs,
        record: None,
        agent_timeout: l.agent_timeout,
        ping_sent: None,
        last_ping: Instant::now(),
        made: Made {
            dirs_share: made.dirs_share.clone(),
            netns: made.netns.clone(),
            interfaces: made.interfaces.clone(),
            qemu: made.qemu.take(),
        },
    };
    let ready = k.await_msg(0, l.boot_timeout);
    let kernel = match ready {
        Ok(Msg::Ready { kernel }) => kernel,
        Ok(other) => bail!("the agent said {other:?} before it was ready"),
        Err(e) => {
            let e = anyhow!("{e:#}{}", k.console_tail());
            k.made.undo();
            return Err(e);
        }
    };
    let req = CreateRequest {
        id: l.id.clone(),
        spec: guest_spec,
        net: plugged.links.clone(),
    };
    k.send(&Frame::msg(0, &Msg::Create(Box::new(req))))?;
    match k.await_msg(0, l.boot_timeout) {
        Ok(Msg::Done { .. }) => {}
        Ok(Msg::Failed { error }) => {
            k.made.undo();
            bail!("{error}")
        }
        Ok(other) => {
            k.made.undo();
            bail!("the agent answered {other:?} to create")
        }
        Err(e) => {
            let e = anyhow!("{e:#}{}", k.console_tail());
            k.made.undo();
            return Err(e);
        }
    }
    let ctl = k.dirs.ctl();
    let short = berth_base::sockpath::short(&ctl)?;
    let _ = std::fs::remove_file(&ctl);
    let listener =
        UnixListener::bind(&short.path).with_context(|| format!("bind {}", ctl.display()))?;
    k.listener = Some(listener);
    let record = Record {
        id: l.id,
        bundle: l.bundle,
        keeper: ProcessId::of(std::process::id() as i32).context("the keeper's own identity")?,
        qemu: qemu_id,
        created: berth_base::time::now_rfc3339(),
        started: false,
        kernel,
        accel: l.accel.to_string(),
        netns: k.made.netns.clone(),
        interfaces: k.made.interfaces.clone(),
        annotations: l.spec["annotations"].clone(),
    };
    k.dirs.save(&record)?;
    k.record = Some(record);
    Ok(k)
}

struct Client {
    stream: UnixStream,
    decoder: Decoder,
}

pub struct Keeper {
    link: UnixStream,
    decoder: Decoder,
    relay: Relay,
    clients: BTreeMap<u32, Client>,
    next_chan: u32,
    /// Channels whose Start awaits the agent's answer.
    starting: BTreeSet<u32>,
    listener: Option<UnixListener>,
    signals: OwnedFd,
    qemu_pidfd: OwnedFd,
    dirs: Dirs,
    record: Option<Record>,
    agent_timeout: Duration,
    ping_sent: Option<Instant>,
    last_ping: Instant,
    made: Made,
}

impl Keeper {
    fn send(&mut self, f: &Frame) -> Result<()> {
        self.link.set_write_timeout(Some(self.agent_timeout))?;
        self.link
            .write_all(&f.encode())
            .map_err(|e| anyhow!("the guest agent takes no more input ({e})"))
    }

    /// Reads the link until a message arrives on `chan` (stdio of the
    /// container before that is passed on), QEMU ends, or the deadline.
    fn await_msg(&mut self, chan: u32, timeout: Duration) -> Result<Msg> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(f) = self.decoder.next_frame()? {
                if f.chan == chan && f.kind == Kind::Msg {
                    return Ok(f.message()?);
                }
                self.relay.output(&f);
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
                match self.link.read(&mut buf) {
                    Ok(0) => bail!("the VM closed the agent's port"),
                    Ok(k) => self.decoder.push(&buf[..k]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).context("read the agent's port"),
                }
            } else if fds[1].revents != 0 {
                bail!("the VM ended: {}", self.qemu_end());
            }
        }
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

    /// The end of the guest's console and QEMU's messages, for an error.
    fn console_tail(&self) -> String {
        let mut out = String::new();
        for (what, path) in [
            ("console", self.dirs.console()),
            ("qemu", self.dirs.qemu_log()),
        ] {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
            if !tail.is_empty() {
                out.push_str(&format!("; {what}: {tail}"));
            }
        }
        out
    }

    /// Relays and routes until the container's process ends; never returns.
    pub fn serve(mut self) -> ! {
        let end = match self.run() {
            Ok(status) => Ok(status),
            Err(e) => Err(format!("{e:#}")),
        };
        match end {
            Ok(status) => {
                self.made.undo();
                relay::mirror_exit(status)
            }
            Err(reason) => {
                let reason = format!("{reason}{}", self.console_tail());
                let _ = std::fs::write(self.dirs.reason(), &reason);
                let _ = writeln!(io::stderr(), "berth-vm: {reason}");
                self.made.undo();
                std::process::exit(255)
            }
        }
    }

    /// The container's wait status, or why the VM ended without one.
    fn run(&mut self) -> Result<i32> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let listener_fd = self.listener.as_ref().map(|l| l.as_raw_fd()).unwrap_or(-1);
            let mut fds = vec![
                relay::pollfd(self.link.as_raw_fd()),
                relay::pollfd(self.qemu_pidfd.as_raw_fd()),
                relay::pollfd(self.signals.as_raw_fd()),
                relay::pollfd(listener_fd),
                relay::pollfd(if self.relay.input_open { 0 } else { -1 }),
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
                match self.link.read(&mut buf) {
                    Ok(0) => bail!("the VM ended unexpectedly: {}", self.qemu_end()),
                    Ok(k) => self.decoder.push(&buf[..k]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).context("read the agent's port"),
                }
                while let Some(f) = self.decoder.next_frame()? {
                    if let Some(status) = self.on_agent_frame(f)? {
                        return Ok(status);
                    }
                }
            }
            if fds[1].revents != 0 {
                bail!("the VM ended unexpectedly: {}", self.qemu_end());
            }
            if fds[2].revents != 0 {
                while let Some(sig) = relay::next_signal(&self.signals) {
                    let m = if sig == libc::SIGWINCH {
                        self.relay.size()
                    } else {
                        Some(Msg::Kill {
                            signal: sig,
                            all: false,
                        })
                    };
                    if let Some(m) = m {
                        self.send(&Frame::msg(0, &m))?;
                    }
                }
            }
            if fds[3].revents != 0 {
                self.accept();
            }
            if fds[4].revents != 0
                && let Some(f) = self.relay.read_input(0)
            {
                self.send(&f)?;
            }
            for (i, c) in chans.iter().enumerate() {
                if fds[5 + i].revents != 0 {
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

    /// A frame from the agent; Some(status) when the container has ended.
    fn on_agent_frame(&mut self, f: Frame) -> Result<Option<i32>> {
        if f.chan == PING {
            self.ping_sent = None;
            self.last_ping = Instant::now();
            return Ok(None);
        }
        if f.chan == 0 {
            if f.kind != Kind::Msg {
                self.relay.output(&f);
                return Ok(None);
            }
            return Ok(match f.message()? {
                Msg::Exited { status } => Some(status),
                // Answers to the signals and resizes passed on.
                _ => None,
            });
        }
        if f.kind == Kind::Msg
            && self.starting.remove(&f.chan)
            && let (Ok(Msg::Done { .. }), Some(r)) = (f.message(), self.record.as_mut())
        {
            r.started = true;
            let r = r.clone();
            self.dirs.save(&r)?;
        }
        let gone = match self.clients.get_mut(&f.chan) {
            Some(c) => c.stream.write_all(&f.encode()).is_err(),
            None => false,
        };
        if gone {
            self.drop_client(f.chan)?;
        }
        Ok(None)
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        let Ok((stream, _)) = l.accept() else { return };
        // A client that stops reading must not stall the container's stdio.
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
            if f.kind == Kind::Msg {
                match f.message() {
                    Ok(Msg::Status) => {
                        let value = serde_json::to_value(&self.record).ok();
                        self.reply(chan, &Msg::Done { value });
                        continue;
                    }
                    Ok(Msg::Start) => {
                        self.starting.insert(chan);
                    }
                    _ => {}
                }
            }
            self.send(&f)?;
        }
        Ok(())
    }

    fn reply(&mut self, chan: u32, m: &Msg) {
        if let Some(c) = self.clients.get_mut(&chan) {
            let _ = c.stream.write_all(&Frame::msg(chan, m).encode());
        }
    }

    fn drop_client(&mut self, chan: u32) -> Result<()> {
        if self.clients.remove(&chan).is_some() {
            self.starting.remove(&chan);
            self.send(&Frame::msg(chan, &Msg::Hangup))?;
        }
        Ok(())
    }
}

/// The keeper's end of a pipe to `create`: one line, "ok" or the error.
pub fn report(fd: OwnedFd, r: &Result<()>) {
    let mut f = std::fs::File::from(fd);
    let line = match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:#}"),
    };
    let _ = f.write_all(line.as_bytes());
}

/// `create`'s end: the keeper's verdict.
pub fn verdict(fd: OwnedFd) -> Result<()> {
    let mut f = std::fs::File::from(fd);
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    match s.as_str() {
        "ok" => Ok(()),
        "" => Err(anyhow!("the keeper ended before the container was created")),
        e => Err(anyhow!("{e}")),
    }
}
