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
use crate::ready::Ready;
use crate::server::Server;

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
    // Parsing the bundle and creating left garbage on the heap; give it
    // back, the loop needs little.
    unsafe { libc::malloc_trim(0) };
    ready.ok(launched.pid);
    let mut m = Monitor::new(&cfg, log, server, sigfd, launched);
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
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
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
    Output(usize),
    Stdin,
    Client(usize),
}

struct Monitor<'a> {
    cfg: &'a Config,
    log: LogWriter,
    server: Server,
    sigfd: OwnedFd,
    init_pid: i32,
    /// stdout (or the pty master) and stderr, until each ends.
    outputs: [Option<OwnedFd>; 2],
    tty: bool,
    /// The pty master for resizes.
    master: Option<RawFd>,
    stdin: Option<OwnedFd>,
    /// Stdin a client sent that the container has not taken yet; clients
    /// are not read while it is there.
    stdin_pending: Vec<u8>,
    close_stdin_after: bool,
    init_status: Option<i32>,
    exit_pid: Option<i32>,
}

impl<'a> Monitor<'a> {
    fn new(
        cfg: &'a Config,
        log: LogWriter,
        server: Server,
        sigfd: OwnedFd,
        launched: Launched,
    ) -> Monitor<'a> {
        let Io {
            stdout,
            stderr,
            stdin,
            tty,
        } = launched.io;
        for fd in [Some(&stdout), stderr.as_ref(), stdin.as_ref()]
            .into_iter()
            .flatten()
        {
            let _ = rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK);
        }
        let master = tty.then(|| stdout.as_raw_fd());
        Monitor {
            cfg,
            log,
            server,
            sigfd,
            init_pid: launched.pid,
            outputs: [Some(stdout), stderr],
            tty,
            master,
            stdin,
            stdin_pending: Vec::new(),
            close_stdin_after: false,
            init_status: None,
            exit_pid: None,
        }
    }

    fn run(&mut self) {
        release_unused_stack();
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(8);
        let mut slots: Vec<Slot> = Vec::with_capacity(8);
        let mut frames = Vec::new();
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
                && (self.outputs.iter().all(Option::is_none)
                    || drain_until.is_some_and(|d| now >= d)
                    || now >= last_output + DRAIN_QUIET)
            {
                exit_code = Some(self.finish());
            }
            if exit_code.is_some() && self.exit_pid.is_none() {
                let until = *farewell_until.get_or_insert(now + FAREWELL);
                self.server.clients.retain(|c| !c.done());
                if self.server.all_sent() || now >= until {
                    break;
                }
            }

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
            if self.exit_pid.is_some() || exit_code.is_none() {
                add(self.server.fd(), libc::POLLIN, Slot::Listener);
            }
            for (i, o) in self.outputs.iter().enumerate() {
                if let Some(fd) = o {
                    add(fd.as_raw_fd(), libc::POLLIN, Slot::Output(i));
                }
            }
            if let Some(fd) = &self.stdin
                && !self.stdin_pending.is_empty()
            {
                add(fd.as_raw_fd(), libc::POLLOUT, Slot::Stdin);
            }
            let read_clients = self.stdin_pending.is_empty();
            for (i, c) in self.server.clients.iter().enumerate() {
                let mut ev = 0;
                if read_clients {
                    ev |= libc::POLLIN;
                }
                if c.wants_write() {
                    ev |= libc::POLLOUT;
                }
                add(c.fd(), ev, Slot::Client(i));
            }

            let deadline = match (exit_code, self.init_status) {
                (Some(_), _) if self.exit_pid.is_none() => farewell_until,
                (None, Some(_)) => drain_until.map(|d| d.min(last_output + DRAIN_QUIET)),
                _ => None,
            };
            let timeout = deadline.map_or(-1, |d| {
                d.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1
            });
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
                    Slot::Stdin => self.write_stdin(&[]),
                    Slot::Client(i) => {
                        let c = &mut self.server.clients[i];
                        let mut alive = true;
                        if p.revents & libc::POLLOUT != 0 {
                            alive = c.flush();
                        }
                        if alive && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                        {
                            alive = matches!(c.read(&mut frames), Ok(true));
                        }
                        if !alive {
                            dropped.push(i);
                        }
                    }
                }
            }
            for f in frames.drain(..) {
                self.client_frame(f);
            }
            // Highest first, so swap_remove leaves the others' indexes.
            dropped.sort_unstable_by(|a, b| b.cmp(a));
            for i in dropped {
                self.server.drop_client(i);
            }
        }
        self.server.remove();
    }

    /// Reads one chunk of output; false when the stream ended or had
    /// nothing.
    fn read_output(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let Some(fd) = &self.outputs[i] else {
            return false;
        };
        let stream = if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => {}
            Ok(n) => {
                let data = &buf[..n];
                self.log.write(stream, data, SystemTime::now());
                let kind = if i == 0 { frame::STDOUT } else { frame::STDERR };
                self.server.broadcast(kind, data);
                return true;
            }
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => return false,
            // EIO: a pty whose other side is all closed.
            Err(_) => {}
        }
        self.outputs[i] = None;
        self.log.close_stream(stream, SystemTime::now());
        if i == 0 {
            self.master = None;
        }
        false
    }

    fn client_frame(&mut self, f: Frame) {
        match f {
            Frame::Stdin(data) => self.write_stdin(&data),
            // A pty's master carries the output too: it stays.
            Frame::CloseStdin if self.tty => {}
            Frame::CloseStdin => {
                if self.stdin_pending.is_empty() {
                    self.stdin = None;
                } else {
                    self.close_stdin_after = true;
                }
            }
            Frame::Resize { rows, cols } => {
                if let Some(fd) = self.master {
                    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                    let _ = berth_runtime::set_size(fd, rows, cols);
                }
            }
            _ => {}
        }
    }

    /// Writes `data` after anything pending, keeping what the container
    /// does not take now.
    fn write_stdin(&mut self, data: &[u8]) {
        let Some(fd) = &self.stdin else {
            return;
        };
        if self.close_stdin_after && !data.is_empty() {
            return;
        }
        self.stdin_pending.extend_from_slice(data);
        while !self.stdin_pending.is_empty() {
            match rustix::io::write(fd, &self.stdin_pending) {
                Ok(n) => {
                    self.stdin_pending.drain(..n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => {
                    // The container closed its stdin: nobody will read it.
                    self.stdin_pending = Vec::new();
                    self.stdin = None;
                    return;
                }
            }
        }
        self.stdin_pending = Vec::new();
        if self.close_stdin_after {
            self.stdin = None;
        }
    }

    /// Reaps every exited child: the init's status is kept, the exit
    /// command's end noted, orphans' statuses dropped.
    fn reap(&mut self) {
        let mut info = [0u8; 128];
        while rustix::io::read(&self.sigfd, &mut info).is_ok() {}
        loop {
            let mut status = 0;
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                if pid == self.init_pid && self.init_status.is_none() {
                    self.init_status = Some(status);
                } else if Some(pid) == self.exit_pid {
                    self.exit_pid = None;
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
        self.outputs = [None, None];
        self.master = None;
        self.stdin = None;
        self.stdin_pending = Vec::new();
        self.log.close_stream(Stream::Stdout, now);
        self.log.close_stream(Stream::Stderr, now);
        let status = self.init_status.unwrap_or(0);
        let record = ExitRecord::from_wait_status(status, now);
        // Nobody to tell if this fails: the engine sees no exit file and
        // the container stopped, as after a crash of the monitor.
        let _ = record.write(&self.cfg.exit_file);
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
