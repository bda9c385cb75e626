//! The agent's service: one loop, one thread (the runtime library forks
//! the container's processes from it), over the host's port, the
//! processes' stdio and SIGCHLD. Requests arrive on a channel and are
//! answered on it; a process's output and its end go out on its channel.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use berth_runtime::{CreateOptions, ExecOptions, Runtime};
use rustix::pipe::{PipeFlags, pipe_with};

use crate::guest::boot;
use crate::proto::{CHUNK, CreateRequest, Decoder, Frame, Kind, Msg};
use crate::sys::pollfd;

const RUNTIME_ROOT: &str = "/run/berth-runtime";
/// Where each container's spec is written, in a directory of its own.
const BUNDLES: &str = "/run/berth-vm/bundles";

/// One process of the container, as the channel it answers on sees it.
struct Proc {
    pid: i32,
    /// Where the host's stdin bytes go: a pipe or the terminal's master.
    stdin: Option<File>,
    /// Bytes for stdin the process has not taken yet.
    pending: Vec<u8>,
    stdin_eof: bool,
    stdout: Option<File>,
    stderr: Option<File>,
    /// A terminal's master, kept for resizing.
    master: Option<OwnedFd>,
}

pub struct Agent {
    port: File,
    decoder: Decoder,
    rt: Runtime,
    /// The containers in this VM, by id, and the channel of each one's
    /// own process.
    containers: BTreeMap<String, u32>,
    /// Which container each channel's requests are about.
    targets: BTreeMap<u32, String>,
    procs: BTreeMap<u32, Proc>,
    sigchld: OwnedFd,
    console: OwnedFd,
}

impl Agent {
    pub fn new(port: File) -> Result<Agent> {
        let console = File::options()
            .read(true)
            .write(true)
            .open("/dev/console")
            .context("open /dev/console")?;
        Ok(Agent {
            port,
            decoder: Decoder::default(),
            rt: Runtime::new(RUNTIME_ROOT, false),
            containers: BTreeMap::new(),
            targets: BTreeMap::new(),
            procs: BTreeMap::new(),
            sigchld: sigchld_fd()?,
            console: console.into(),
        })
    }

    fn send(&mut self, f: &Frame) -> Result<()> {
        self.port
            .write_all(&f.encode())
            .context("write to the host's port")
    }

    fn answer(&mut self, chan: u32, r: Result<Option<serde_json::Value>>) -> Result<()> {
        let m = match r {
            Ok(value) => Msg::Done { value },
            Err(e) => Msg::Failed {
                error: format!("{e:#}"),
            },
        };
        self.send(&Frame::msg(chan, &m))
    }

    /// Serves until the host's side of the port closes.
    pub fn serve(&mut self, init_ms: u64) -> Result<()> {
        self.send(&Frame::msg(
            0,
            &Msg::Ready {
                kernel: boot::kernel_release(),
                init_ms,
                ready_ms: boot::uptime_ms(),
            },
        ))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut fds = vec![
                pollfd(self.port.as_raw_fd(), libc::POLLIN),
                pollfd(self.sigchld.as_raw_fd(), libc::POLLIN),
            ];
            let mut owners: Vec<(u32, Stream)> = Vec::new();
            for (chan, p) in &self.procs {
                for (stream, f) in [(Stream::Out, &p.stdout), (Stream::Err, &p.stderr)] {
                    if let Some(f) = f {
                        fds.push(pollfd(f.as_raw_fd(), libc::POLLIN));
                        owners.push((*chan, stream));
                    }
                }
                if let (Some(f), false) = (&p.stdin, p.pending.is_empty()) {
                    fds.push(pollfd(f.as_raw_fd(), libc::POLLOUT));
                    owners.push((*chan, Stream::In));
                }
            }
            // SAFETY: fds is a valid array of pollfd of the given length,
            // each naming an fd owned by self for the whole call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("poll");
            }
            for (i, (chan, stream)) in owners.iter().enumerate() {
                if fds[i + 2].revents != 0 {
                    self.pump(*chan, *stream, &mut buf)?;
                }
            }
            if fds[1].revents != 0 {
                drain_signalfd(&self.sigchld);
                self.reap()?;
            }
            if fds[0].revents != 0 {
                let k = match self.port.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("read the host's port"),
                };
                self.decoder.push(&buf[..k]);
                while let Some(f) = self.decoder.next_frame()? {
                    self.handle(f)?;
                }
            }
        }
    }

    /// Moves bytes for one ready stream.
    fn pump(&mut self, chan: u32, stream: Stream, buf: &mut [u8]) -> Result<()> {
        let Some(p) = self.procs.get_mut(&chan) else {
            return Ok(());
        };
        if stream == Stream::In {
            flush_stdin(p);
            return Ok(());
        }
        let slot = if stream == Stream::Out {
            &mut p.stdout
        } else {
            &mut p.stderr
        };
        let Some(f) = slot else { return Ok(()) };
        match f.read(buf) {
            Ok(0) | Err(_) => {
                // EOF, or EIO from a terminal whose last slave closed.
                *slot = None;
                Ok(())
            }
            Ok(k) => {
                let kind = if stream == Stream::Out {
                    Kind::Stdout
                } else {
                    Kind::Stderr
                };
                let frame = Frame::data(kind, chan, &buf[..k]);
                self.send(&frame)
            }
        }
    }

    fn handle(&mut self, f: Frame) -> Result<()> {
        let chan = f.chan;
        match f.kind {
            Kind::Stdin => {
                if let Some(p) = self.procs.get_mut(&chan) {
                    p.pending.extend_from_slice(&f.payload);
                    flush_stdin(p);
                }
                Ok(())
            }
            Kind::StdinEof => {
                if let Some(p) = self.procs.get_mut(&chan) {
                    p.stdin_eof = true;
                    flush_stdin(p);
                }
                Ok(())
            }
            Kind::Msg => match f.message() {
                Ok(m) => self.request(chan, m),
                Err(e) => self.answer(chan, Err(e.into())),
            },
            other => self.answer(chan, Err(anyhow!("a {other:?} frame from the host"))),
        }
    }

    fn request(&mut self, chan: u32, m: Msg) -> Result<()> {
        let r = match m {
            Msg::Create(req) => self.create(chan, *req).map(|()| None),
            Msg::Network { links } => crate::guest::net::take_over(&links).map(|()| None),
            Msg::Target { id } => {
                if self.containers.contains_key(&id) {
                    self.targets.insert(chan, id);
                    Ok(None)
                } else {
                    Err(anyhow!("this VM has no container {id:?}"))
                }
            }
            Msg::Start => self.with_id(chan, |rt, id| rt.start(id)).map(|()| None),
            Msg::Kill { signal, .. } if chan != 0 && self.procs.contains_key(&chan) => {
                // An exec'd process's own channel: the signal is for it.
                let pid = self.procs[&chan].pid;
                // SAFETY: kill(2) takes integers; pid is a child of this
                // process not yet reaped (it leaves procs when reaped).
                let rc = unsafe { libc::kill(pid, signal) };
                (rc == 0).then_some(None).ok_or_else(|| {
                    anyhow!("signal {signal} to {pid}: {}", io::Error::last_os_error())
                })
            }
            Msg::Kill { signal, all } => self
                .with_id(chan, |rt, id| rt.kill(id, signal, all))
                .map(|()| None),
            Msg::Pause => self.with_id(chan, |rt, id| rt.pause(id)).map(|()| None),
            Msg::Resume => self.with_id(chan, |rt, id| rt.resume(id)).map(|()| None),
            Msg::Stats => self
                .with_id(chan, |rt, id| rt.stats(id))
                .map(|s| Some(serde_json::to_value(s).expect("stats serialize"))),
            Msg::Update { resources } => serde_json::from_value(resources)
                .map_err(|e| anyhow!("resources: {e}"))
                .and_then(|r| self.with_id(chan, |rt, id| rt.update(id, &r)))
                .map(|()| None),
            Msg::Exec { process, tty } => self.exec(chan, process, tty).map(|()| None),
            Msg::Resize { rows, cols } => self.resize(chan, rows, cols).map(|()| None),
            Msg::Ping => Ok(None),
            Msg::Hangup => {
                if let Some(p) = self.procs.get_mut(&chan) {
                    p.stdin = None;
                    p.pending.clear();
                }
                // A container whose keeper is gone has no one to report to.
                if let Some(id) = self.container_of(chan) {
                    let _ = self.rt.kill(&id, libc::SIGKILL, true);
                }
                self.targets.remove(&chan);
                return Ok(());
            }
            other => Err(anyhow!("the agent does not take {other:?}")),
        };
        self.answer(chan, r)
    }

    fn with_id<T>(
        &self,
        chan: u32,
        f: impl FnOnce(&Runtime, &str) -> berth_runtime::Result<T>,
    ) -> Result<T> {
        let id = self
            .targets
            .get(&chan)
            .ok_or_else(|| anyhow!("the request names no container"))?;
        Ok(f(&self.rt, id)?)
    }

    /// The container whose own process answers on `chan`.
    fn container_of(&self, chan: u32) -> Option<String> {
        self.containers
            .iter()
            .find(|(_, c)| **c == chan)
            .map(|(id, _)| id.clone())
    }

    fn create(&mut self, chan: u32, req: CreateRequest) -> Result<()> {
        if self.containers.contains_key(&req.id) {
            return Err(anyhow!("this VM already has a container {:?}", req.id));
        }
        if self.procs.contains_key(&chan) {
            return Err(anyhow!("channel {chan} already has a process"));
        }
        berth_runtime::id::validate(&req.id).map_err(|e| anyhow!("{e}"))?;
        let spec = req.spec;
        let bundle = Path::new(BUNDLES).join(&req.id);
        let tty = spec["process"]["terminal"].as_bool().unwrap_or(false);
        std::fs::create_dir_all(&bundle)?;
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec)?)?;
        let opts = CreateOptions {
            bundle,
            want_pty: tty,
            ..Default::default()
        };
        let proc = if tty {
            let created = self.rt.create(&req.id, &opts)?;
            let master = created
                .pty_master
                .ok_or_else(|| anyhow!("the runtime gave no terminal"))?;
            tty_proc(created.pid, master)?
        } else {
            let (proc, lend) = piped_proc()?;
            // The runtime gives the container this process's 0-2: lend it
            // the pipes for the call, then put the console back.
            for (target, fd) in lend.iter().enumerate() {
                dup_onto(fd.as_raw_fd(), target as RawFd)?;
            }
            let created = self.rt.create(&req.id, &opts);
            for target in 0..3 {
                dup_onto(self.console.as_raw_fd(), target)?;
            }
            Proc {
                pid: created?.pid,
                ..proc
            }
        };
        self.procs.insert(chan, proc);
        self.containers.insert(req.id.clone(), chan);
        self.targets.insert(chan, req.id);
        Ok(())
    }

    fn exec(&mut self, chan: u32, process: serde_json::Value, tty: bool) -> Result<()> {
        if self.procs.contains_key(&chan) {
            return Err(anyhow!("channel {chan} already has a process"));
        }
        let process = serde_json::from_value(process).map_err(|e| anyhow!("the process: {e}"))?;
        let id = self
            .targets
            .get(&chan)
            .cloned()
            .ok_or_else(|| anyhow!("the request names no container"))?;
        let mut opts = ExecOptions {
            process,
            console_socket: None,
            pid_file: None,
            preserve_fds: 0,
            want_pty: tty,
            ignore_paused: false,
            pidfd_socket: None,
            stdio: None,
        };
        let proc = if tty {
            let e = self.rt.exec(&id, &opts)?;
            tty_proc(
                e.pid,
                e.pty_master
                    .ok_or_else(|| anyhow!("the runtime gave no terminal"))?,
            )?
        } else {
            let (proc, lend) = piped_proc()?;
            opts.stdio = Some(lend);
            let e = self.rt.exec(&id, &opts)?;
            Proc { pid: e.pid, ..proc }
        };
        self.procs.insert(chan, proc);
        Ok(())
    }

    fn resize(&mut self, chan: u32, rows: u16, cols: u16) -> Result<()> {
        let p = self
            .procs
            .get(&chan)
            .ok_or_else(|| anyhow!("no process on channel {chan}"))?;
        let m = p
            .master
            .as_ref()
            .ok_or_else(|| anyhow!("the process has no terminal"))?;
        Ok(berth_runtime::set_size(m.as_fd(), rows, cols)?)
    }

    /// Collects every ended child; a container's process reports its end
    /// after the last of its output.
    fn reap(&mut self) -> Result<()> {
        loop {
            let mut status = 0;
            // SAFETY: waitpid(2) with a valid out-pointer; -1 and WNOHANG
            // reap any ended child (as PID 1, orphans too) without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return Ok(());
            }
            let Some(chan) = self
                .procs
                .iter()
                .find(|(_, p)| p.pid == pid)
                .map(|(c, _)| *c)
            else {
                continue;
            };
            let mut p = self.procs.remove(&chan).expect("found above");
            let mut buf = vec![0u8; CHUNK];
            for (kind, f) in [
                (Kind::Stdout, p.stdout.take()),
                (Kind::Stderr, p.stderr.take()),
            ] {
                let Some(mut f) = f else { continue };
                set_nonblocking(&f);
                while let Ok(k) = f.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    self.send(&Frame::data(kind, chan, &buf[..k]))?;
                }
            }
            if let Some(id) = self.container_of(chan) {
                // What the container wrote through 9p is on the host's
                // disk already; flush what the guest may still hold. Then
                // the container goes: nothing waits for it any more.
                rustix::fs::sync();
                let _ = self.rt.delete(&id, true);
                self.containers.remove(&id);
                self.targets.retain(|_, t| *t != id);
            }
            self.send(&Frame::msg(chan, &Msg::Exited { status }))?;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    In,
    Out,
    Err,
}

/// Pipes for a process without a terminal: the agent's ends in a Proc
/// (pid still 0), the process's ends to lend.
fn piped_proc() -> Result<(Proc, [OwnedFd; 3])> {
    let pipe = || pipe_with(PipeFlags::CLOEXEC).context("create a stdio pipe");
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdin = File::from(in_w);
    set_nonblocking(&stdin);
    Ok((
        Proc {
            pid: 0,
            stdin: Some(stdin),
            pending: Vec::new(),
            stdin_eof: false,
            stdout: Some(File::from(out_r)),
            stderr: Some(File::from(err_r)),
            master: None,
        },
        [in_r, out_w, err_w],
    ))
}

fn tty_proc(pid: i32, master: OwnedFd) -> Result<Proc> {
    let input = File::from(master.try_clone()?);
    set_nonblocking(&input);
    Ok(Proc {
        pid,
        stdin: Some(input),
        pending: Vec::new(),
        stdin_eof: false,
        stdout: Some(File::from(master.try_clone()?)),
        stderr: None,
        master: Some(master),
    })
}

/// Writes what the process will take now; the rest waits for POLLOUT.
fn flush_stdin(p: &mut Proc) {
    if let Some(f) = &mut p.stdin {
        while !p.pending.is_empty() {
            match f.write(&p.pending) {
                Ok(k) => {
                    p.pending.drain(..k);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // The process closed its stdin: nothing more goes in.
                    p.pending.clear();
                    p.stdin = None;
                    return;
                }
            }
        }
    }
    if p.stdin_eof && p.pending.is_empty() && p.master.is_none() {
        p.stdin = None;
    }
}

fn set_nonblocking(f: &File) {
    let _ = rustix::fs::fcntl_setfl(f, rustix::fs::OFlags::NONBLOCK);
}

fn dup_onto(fd: RawFd, target: RawFd) -> Result<()> {
    // SAFETY: fd is open (borrowed for the call); the target is one of
    // this process's stdio fds, which no OwnedFd owns.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("dup onto fd {target}"));
    }
    Ok(())
}

/// SIGCHLD as a readable fd (the signal itself blocked).
fn sigchld_fd() -> Result<OwnedFd> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; the calls only modify it and this
    // thread's (the only thread's) signal mask.
    let fd = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("signalfd");
    }
    // SAFETY: fd was just returned by signalfd(2) and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn drain_signalfd(fd: &OwnedFd) {
    let mut info = [0u8; 128];
    while rustix::io::read(fd, &mut info).is_ok_and(|n| n > 0) {}
}
