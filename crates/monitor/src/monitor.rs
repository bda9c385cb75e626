//! The monitor's life (docs/engine.md): detach, create the container,
//! say ready, then one poll loop that copies output to the log and the
//! attach clients, feeds stdin, reaps children, and on the init's exit
//! records it, runs the exit command and goes.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::crilog::{LogWriter, Stream};
use crate::exit::ExitRecord;
use crate::frame::{self, Frame};
use crate::handler::{self, Io, Launched};
use crate::health::Checker;
use crate::pio::Pio;
use crate::protocol::{Hello, Reply, Request};
use crate::ready::Ready;
use crate::server::{Role, Server};
use crate::session::Session;

/// After the init's exit, output still in flight is read until the
/// streams end, or until they stay quiet this long (a process outside the
/// container's pid namespace may hold them open)...
const DRAIN_QUIET: Duration = Duration::from_millis(250);
/// ...and never longer than this in all.
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// How long clients get to take their last frames before the monitor
/// exits.
const FAREWELL: Duration = Duration::from_secs(1);
const READ_CHUNK: usize = 8192;

/// The whole of the `berth-monitor` program after its binary is
/// protected; returns the exit status.
pub fn main(args: &[OsString]) -> i32 {
    let Some(ready) = Ready::take() else {
        eprintln!("berth-monitor: fd 3 (the ready pipe) is not open");
        return 1;
    };
    // Whatever else the spawner handed over (the sockets reserving the
    // container's published ports) is held for this process's life and
    // passed to none it starts: the container, the runtime, the exit
    // command.
    // SAFETY: close_range only changes fd flags; no fd is closed.
    if unsafe { libc::close_range(4, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) } != 0 {
        ready.error(&format!(
            "mark inherited fds close-on-exec: {}",
            std::io::Error::last_os_error()
        ));
        return 1;
    }
    let [_, config_path] = args else {
        ready.error("usage: berth-monitor <monitor.json>");
        return 1;
    };
    if let Err(e) = detach() {
        ready.error(&format!("detach: {e}"));
        return 1;
    }
    let cfg = match Config::load(Path::new(config_path)) {
        Ok(c) => c,
        Err(e) => {
            ready.error(&e.to_string());
            return 1;
        }
    };
    // Holding no directory busy: every path in the config is absolute.
    let _ = std::env::set_current_dir("/");
    let sigfd = match child_signals() {
        Ok(fd) => fd,
        Err(e) => {
            ready.error(&format!("watch for SIGCHLD: {e}"));
            return 1;
        }
    };
    let log = match LogWriter::open(&cfg.log_path, cfg.log_max_size, cfg.log_max_files) {
        Ok(l) => l,
        Err(e) => {
            ready.error(&e.to_string());
            return 1;
        }
    };
    // Bound before create, so the engine can attach before it starts.
    let server = match Server::bind(&cfg.attach_socket) {
        Ok(s) => s,
        Err(e) => {
            ready.error(&e.to_string());
            return 1;
        }
    };
    let launched = match handler::create(&cfg) {
        Ok(l) => l,
        Err(e) => {
            server.remove();
            ready.error(&e.to_string());
            return 1;
        }
    };
    // Found now, while create's garbage is on the heap anyway (it reads
    // the mount table).
    let oom = berth_runtime::cgroups::oom::OomCounter::of_pid(launched.pid).map(|c| {
        let n = c.kills();
        (c, n)
    });
    // Parsing the bundle and creating left garbage on the heap; give it
    // back, the loop needs little.
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe { libc::malloc_trim(0) };
    ready.ok(launched.pid);
    let mut m = Monitor::new(&cfg, log, server, sigfd, launched, oom);
    m.run();
    0
}

/// Gives back the stack pages that parsing the bundle and creating the
/// container touched and the loop will not: the main stack never shrinks
/// by itself, and its pages count once per container. Everything more
/// than a margin below the current frame is unused from here on.
fn release_unused_stack() {
    const MARGIN: usize = 8 * 1024;
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some(lo) = maps
        .lines()
        .find(|l| l.ends_with("[stack]"))
        .and_then(|l| usize::from_str_radix(l.split('-').next()?, 16).ok())
    else {
        return;
    };
    // SAFETY: sysconf takes a constant and returns a number.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let end = sp.saturating_sub(MARGIN) & !(page - 1);
    if end > lo {
        // SAFETY: [lo, end) lies below the live frames of this (only)
        // thread; its pages read back as zeros if ever touched again.
        unsafe { libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_DONTNEED) };
    }
}

/// Out of the spawner's session and stdio, and the parent of every
/// orphan of the container (its init, when the runtime runs elsewhere).
fn detach() -> std::io::Result<()> {
    // EPERM when the spawner made this a group leader: a session of its
    // own is then not needed to escape the spawner's signals.
    let _ = rustix::process::setsid();
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: `null` is open; 0-2 are this process's to replace.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// SIGCHLD through a signalfd, and SIGHUP blocked. Blocked rather than
/// ignored: children get a clean mask, but an ignored signal would stay
/// ignored in the container.
fn child_signals() -> std::io::Result<OwnedFd> {
    // SAFETY: a zeroed sigset_t is set up by sigemptyset; every call gets
    // valid pointers; the signalfd returned is new and owned here.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigaddset(&mut set, libc::SIGHUP);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::sigdelset(&mut set, libc::SIGHUP);
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Signals,
    Listener,
    /// The container's output `i`.
    Output(usize),
    Stdin,
    Client(usize),
    /// Exec session `s`'s output `i`.
    SessionOutput(usize, usize),
    SessionStdin(usize),
}

struct Monitor<'a> {
    cfg: &'a Config,
    log: LogWriter,
    server: Server,
    sigfd: OwnedFd,
    init_pid: i32,
    /// The container's stdio.
    io: Pio,
    init_status: Option<i32>,
    exit_pid: Option<i32>,
    sessions: Vec<Session>,
    /// The container's memory cgroup OOM counter and its count at start.
    oom: Option<(berth_runtime::cgroups::oom::OomCounter, u64)>,
    health: Option<Checker>,
}

impl<'a> Monitor<'a> {
    fn new(
        cfg: &'a Config,
        log: LogWriter,
        server: Server,
        sigfd: OwnedFd,
        launched: Launched,
        oom: Option<(berth_runtime::cgroups::oom::OomCounter, u64)>,
    ) -> Monitor<'a> {
        let Io {
            stdout,
            stderr,
            stdin,
            tty,
        } = launched.io;
        Monitor {
            cfg,
            log,
            server,
            sigfd,
            init_pid: launched.pid,
            io: Pio::new(stdout, stderr, stdin, tty),
            init_status: None,
            exit_pid: None,
            sessions: Vec::new(),
            oom,
            health: cfg.health.clone().map(|h| Checker::new(h, Instant::now())),
        }
    }

    fn run(&mut self) {
        release_unused_stack();
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(8);
        let mut slots: Vec<Slot> = Vec::with_capacity(8);
        let mut frames: Vec<(u64, Frame)> = Vec::new();
        let mut client_frames = Vec::new();
        let mut buf = [0u8; READ_CHUNK];
        // Set when the init exits: drain until then, at the latest.
        let mut drain_until: Option<Instant> = None;
        let mut last_output = Instant::now();
        let mut exit_code = None;
        let mut farewell_until: Option<Instant> = None;

        loop {
            let now = Instant::now();
            if self.init_status.is_some() && drain_until.is_none() {
                drain_until = Some(now + DRAIN_MAX);
                last_output = now;
            }
            if exit_code.is_none()
                && self.init_status.is_some()
                && (self.io.drained()
                    || drain_until.is_some_and(|d| now >= d)
                    || now >= last_output + DRAIN_QUIET)
            {
                exit_code = Some(self.finish());
            }
            self.end_sessions(now);
            if exit_code.is_none() && self.init_status.is_none() {
                self.start_check(now);
            }
            // Clients whose last frame went out are closed.
            self.server.drop_done();
            if exit_code.is_some() && self.exit_pid.is_none() {
                let until = *farewell_until.get_or_insert(now + FAREWELL);
                let quiet = self.sessions.is_empty() && self.server.all_sent();
                if quiet || now >= until {
                    break;
                }
            }
            let hello_deadline = self.server.expire_new(now);

            pfds.clear();
            slots.clear();
            let mut add = |fd: RawFd, events: i16, slot: Slot| {
                pfds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                slots.push(slot);
            };
            add(self.sigfd.as_raw_fd(), libc::POLLIN, Slot::Signals);
            if exit_code.is_none() || self.exit_pid.is_some() || !self.sessions.is_empty() {
                add(self.server.fd(), libc::POLLIN, Slot::Listener);
            }
            for (i, o) in self.io.outputs.iter().enumerate() {
                if let Some(fd) = o {
                    add(fd.as_raw_fd(), libc::POLLIN, Slot::Output(i));
                }
            }
            if let Some(fd) = self.io.stdin_fd()
                && !self.io.pending.is_empty()
            {
                add(fd, libc::POLLOUT, Slot::Stdin);
            }
            for (s, sess) in self.sessions.iter().enumerate() {
                let Some(io) = &sess.io else { continue };
                for (i, o) in io.outputs.iter().enumerate() {
                    if let Some(fd) = o {
                        add(fd.as_raw_fd(), libc::POLLIN, Slot::SessionOutput(s, i));
                    }
                }
                if let Some(fd) = io.stdin_fd()
                    && !io.pending.is_empty()
                {
                    add(fd, libc::POLLOUT, Slot::SessionStdin(s));
                }
            }
            for (i, c) in self.server.clients.iter().enumerate() {
                let mut ev = 0;
                if self.may_read(c) {
                    ev |= libc::POLLIN;
                }
                if c.wants_write() {
                    ev |= libc::POLLOUT;
                }
                add(c.fd(), ev, Slot::Client(i));
            }

            let mut deadline = match (exit_code, self.init_status) {
                (Some(_), _) if self.exit_pid.is_none() => farewell_until,
                (None, Some(_)) => drain_until.map(|d| d.min(last_output + DRAIN_QUIET)),
                _ => None,
            };
            let check = self
                .health
                .as_ref()
                .filter(|_| self.init_status.is_none())
                .and_then(Checker::deadline);
            for d in self
                .sessions
                .iter()
                .flat_map(|s| [s.deadline.filter(|_| s.status.is_none()), s.drain_until])
                .flatten()
                .chain(hello_deadline)
                .chain(check)
            {
                deadline = Some(deadline.map_or(d, |x| x.min(d)));
            }
            let timeout = deadline.map_or(-1, |d| {
                d.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1
            });
            // SAFETY: pfds is a valid array of pollfd of this length.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                // EINTR, or nothing else: look again.
                continue;
            }
            let mut dropped = Vec::new();
            for (p, slot) in pfds.iter().zip(slots.iter()) {
                if p.revents == 0 {
                    continue;
                }
                match *slot {
                    Slot::Signals => self.reap(),
                    Slot::Listener => self.server.accept(),
                    Slot::Output(i) => {
                        if self.read_output(i, &mut buf) {
                            last_output = Instant::now();
                        }
                    }
                    Slot::Stdin => self.io.write_stdin(&[]),
                    Slot::SessionOutput(s, i) => self.read_session_output(s, i, &mut buf),
                    Slot::SessionStdin(s) => {
                        if let Some(io) = &mut self.sessions[s].io {
                            io.write_stdin(&[]);
                        }
                    }
                    Slot::Client(i) => {
                        let c = &mut self.server.clients[i];
                        let mut alive = true;
                        if p.revents & libc::POLLOUT != 0 {
                            alive = c.flush();
                        }
                        if alive && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                        {
                            alive = matches!(c.read(&mut client_frames), Ok(true));
                            frames.extend(client_frames.drain(..).map(|f| (c.id, f)));
                        }
                        if !alive {
                            dropped.push(i);
                        }
                    }
                }
            }
            for (id, f) in frames.drain(..) {
                self.client_frame(id, f);
            }
            // Highest first, so swap_remove leaves the others' indexes.
            dropped.sort_unstable_by(|a, b| b.cmp(a));
            for i in dropped {
                let id = self.server.clients[i].id;
                for s in self.sessions.iter_mut().filter(|s| s.client == Some(id)) {
                    s.client = None;
                }
                self.server.drop_client(i);
            }
            self.check_timeouts(Instant::now());
        }
        self.server.remove();
    }

    /// A client is read unless the stdin it feeds still has data pending
    /// (back-pressure: the process is slower than the client).
    fn may_read(&self, c: &crate::server::Client) -> bool {
        match c.role {
            Role::New(_) => true,
            Role::Attach => self.io.pending.is_empty(),
            Role::Exec => self
                .sessions
                .iter()
                .find(|s| s.client == Some(c.id))
                .and_then(|s| s.io.as_ref())
                .is_none_or(|io| io.pending.is_empty()),
        }
    }

    /// Reads one chunk of the container's output; false when the stream
    /// ended or had nothing.
    fn read_output(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let stream = if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        match self.io.read(i, buf) {
            crate::pio::Read::Data(n) => {
                let data = &buf[..n];
                self.log.write(stream, data, SystemTime::now());
                let kind = if i == 0 { frame::STDOUT } else { frame::STDERR };
                self.server.broadcast(kind, data);
                true
            }
            crate::pio::Read::Nothing => false,
            crate::pio::Read::Ended => {
                self.log.close_stream(stream, SystemTime::now());
                false
            }
        }
    }

    /// An exec session's output goes to its client only (and nowhere when
    /// it has gone).
    fn read_session_output(&mut self, s: usize, i: usize, buf: &mut [u8]) {
        let sess = &mut self.sessions[s];
        let Some(io) = &mut sess.io else { return };
        if let crate::pio::Read::Data(n) = io.read(i, buf) {
            sess.last_output = Instant::now();
            if let Some(h) = self.health.as_mut().filter(|h| h.is_check(sess.pid)) {
                h.output(&buf[..n]);
            }
            let kind = if i == 0 { frame::STDOUT } else { frame::STDERR };
            if let Some(id) = sess.client
                && let Some(c) = self.server.client(id)
                && !c.queue(kind, &buf[..n])
            {
                // Too far behind: it goes, the process runs on.
                sess.client = None;
                self.server.clients.retain(|c| c.id != id);
            }
        }
    }

    fn client_frame(&mut self, id: u64, f: Frame) {
        let Some(role) = self.server.client(id).map(|c| c.role) else {
            return;
        };
        match (role, f) {
            (Role::New(_), Frame::Hello(raw)) => self.hello(id, &raw),
            (Role::Attach, f) => {
                let stdin_open = self.cfg.stdin;
                apply_input(&mut self.io, f, stdin_open)
            }
            (Role::Exec, f) => {
                if let Some(io) = self
                    .sessions
                    .iter_mut()
                    .find(|s| s.client == Some(id))
                    .and_then(|s| s.io.as_mut())
                {
                    apply_input(io, f, true);
                }
            }
            _ => {}
        }
    }

    /// A client's request, answered with REPLY.
    fn hello(&mut self, id: u64, raw: &[u8]) {
        let reply = |c: &mut crate::server::Client, r: &Reply| {
            c.queue(
                frame::REPLY,
                &serde_json::to_vec(r).expect("a reply serializes"),
            )
        };
        let hello: Hello = match serde_json::from_slice(raw) {
            Ok(h) => h,
            Err(e) => {
                if let Some(c) = self.server.client(id) {
                    let r = Reply::error(format!(
                        "a request this monitor (protocol {}) does not know: {e}",
                        crate::protocol::VERSION
                    ));
                    reply(c, &r);
                    c.closing_after_send();
                }
                return;
            }
        };
        let exited = self.init_status.is_some() || self.server.exit_code.is_some();
        match hello.request {
            Request::Attach => {
                let code = self.server.exit_code;
                let Some(c) = self.server.client(id) else {
                    return;
                };
                c.role = Role::Attach;
                reply(c, &Reply::ok(None));
                if let Some(code) = code {
                    c.finish(frame::EXIT, &code.to_be_bytes());
                }
            }
            Request::ReopenLog => {
                let r = match self.log.reopen() {
                    Ok(()) => Reply::ok(None),
                    Err(e) => Reply::error(e.to_string()),
                };
                if let Some(c) = self.server.client(id) {
                    reply(c, &r);
                    c.closing_after_send();
                }
            }
            Request::Exec(req) => {
                let started = if exited {
                    Err(crate::error::Error::Protocol(
                        "the container is not running".into(),
                    ))
                } else {
                    crate::session::start(self.cfg, &req)
                };
                let Some(c) = self.server.client(id) else {
                    // Gone meanwhile: a started process runs unwatched.
                    if let Ok(s) = started {
                        self.sessions.push(s);
                    }
                    return;
                };
                match started {
                    Ok(mut s) => {
                        reply(c, &Reply::ok(Some(s.pid)));
                        if req.detach {
                            c.closing_after_send();
                        } else {
                            c.role = Role::Exec;
                            s.client = Some(id);
                        }
                        self.sessions.push(s);
                    }
                    Err(e) => {
                        reply(c, &Reply::error(e.to_string()));
                        c.closing_after_send();
                    }
                }
            }
        }
    }

    /// Sessions whose process ran past its timeout are killed.
    fn check_timeouts(&mut self, now: Instant) {
        for s in &mut self.sessions {
            if s.status.is_none() && !s.timed_out && s.deadline.is_some_and(|d| now >= d) {
                s.timed_out = true;
                // SAFETY: kill(2) of our own child, which is not reaped yet
                // (status is None), so the pid is still its.
                unsafe { libc::kill(s.pid, libc::SIGKILL) };
            }
        }
    }

    /// Sessions whose process has exited and whose output is read: their
    /// client gets TIMED_OUT (if so) and the exit code, and they go.
    fn end_sessions(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.sessions.len() {
            let s = &mut self.sessions[i];
            let Some(status) = s.status else {
                i += 1;
                continue;
            };
            let until = *s.drain_until.get_or_insert(now + DRAIN_MAX);
            let drained = s.io.as_ref().is_none_or(|io| io.drained());
            if !(drained || now >= until || now >= s.last_output + DRAIN_QUIET) {
                i += 1;
                continue;
            }
            let s = self.sessions.swap_remove(i);
            let code = ExitRecord::from_wait_status(status, SystemTime::now()).exit_code;
            if let Some(h) = self.health.as_mut().filter(|h| h.is_check(s.pid)) {
                // A check killed at its timeout failed, whatever its code.
                let changed = h.finished(if s.timed_out { -1 } else { code }, now);
                if let Some(status) = changed.map(str::to_string) {
                    self.emit(self.event("health_status").attr("healthStatus", status));
                }
            }
            if let Some(c) = s.client.and_then(|id| self.server.client(id)) {
                if s.timed_out {
                    c.queue(frame::TIMED_OUT, &[]);
                }
                c.finish(frame::EXIT, &code.to_be_bytes());
            }
        }
    }

    /// Reaps every exited child: the init's status is kept, an exec
    /// session's given to it, the exit command's end noted, orphans'
    /// statuses dropped.
    fn reap(&mut self) {
        let mut info = [0u8; 128];
        while rustix::io::read(&self.sigfd, &mut info).is_ok() {}
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                if pid == self.init_pid && self.init_status.is_none() {
                    self.init_status = Some(status);
                } else if Some(pid) == self.exit_pid {
                    self.exit_pid = None;
                } else if let Some(s) = self
                    .sessions
                    .iter_mut()
                    .find(|s| s.pid == pid && s.status.is_none())
                {
                    s.status = Some(status);
                }
                continue;
            }
            if pid < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            break;
        }
    }

    /// The init has exited and its output is read: record it, tell the
    /// clients, start the exit command. Returns the exit code.
    fn finish(&mut self) -> i32 {
        let now = SystemTime::now();
        self.io.close();
        self.log.close_stream(Stream::Stdout, now);
        self.log.close_stream(Stream::Stderr, now);
        let status = self.init_status.unwrap_or(0);
        let mut record = ExitRecord::from_wait_status(status, now);
        record.oom_killed = self
            .oom
            .as_ref()
            .is_some_and(|(counter, before)| counter.kills() > *before);
        // Nobody to tell if this fails: the engine sees no exit file and
        // the container stopped, as after a crash of the monitor.
        let _ = record.write(&self.cfg.exit_file);
        if record.oom_killed {
            self.emit(self.event("oom"));
        }
        self.emit(
            self.event("die")
                .attr("exitCode", record.exit_code.to_string()),
        );
        self.server.exit(record.exit_code);
        if let Some(argv) = &self.cfg.exit_command {
            let spawned = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            // Reaped by `reap` like every other child.
            self.exit_pid = spawned.ok().map(|c| c.id() as i32);
        }
        record.exit_code
    }
}

impl Monitor<'_> {
    /// An event of this container, with its name, image and the engine's
    /// attributes (owner, pod).
    fn event(&self, action: &str) -> berth_base::events::Event {
        let mut e = berth_base::events::Event::new("container", action, &self.cfg.id)
            .attr("name", self.cfg.name.as_str())
            .attr("image", self.cfg.image.as_str());
        e.actor.attributes.extend(self.cfg.event_attributes.clone());
        e
    }

    /// Appended to the engine's event log, when it has one.
    fn emit(&self, e: berth_base::events::Event) {
        if let Some(dir) = &self.cfg.events_dir {
            // Nobody to tell if this fails.
            let _ = berth_base::events::append(dir, &e);
        }
    }

    /// Starts the healthcheck when one is due.
    fn start_check(&mut self, now: Instant) {
        let Some(req) = self.health.as_ref().and_then(|h| h.due(now)) else {
            return;
        };
        match crate::session::start(self.cfg, &req) {
            Ok(s) => {
                if let Some(h) = &mut self.health {
                    h.started(s.pid);
                }
                self.sessions.push(s);
            }
            Err(e) => {
                let changed = self
                    .health
                    .as_mut()
                    .and_then(|h| h.failed_to_start(&e.to_string(), now))
                    .map(str::to_string);
                if let Some(status) = changed {
                    self.emit(self.event("health_status").attr("healthStatus", status));
                }
            }
        }
    }
}

/// A client's stdin, its end, or a terminal size, for a process's stdio.
fn apply_input(io: &mut Pio, f: Frame, stdin_open: bool) {
    match f {
        Frame::Stdin(data) if stdin_open => io.write_stdin(&data),
        Frame::CloseStdin if stdin_open => io.close_stdin(),
        Frame::Resize { rows, cols } => io.resize(rows, cols),
        _ => {}
    }
}
