//! Attaching this terminal (or these pipes) to a container through its
//! monitor's socket: output frames to stdout/stderr, stdin and window
//! sizes back, signals forwarded, until the exit frame.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use berth_monitor::Frame;
use berth_monitor::client::Client;

/// Puts the terminal on stdin in raw mode until dropped.
struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    fn enter(on: bool) -> RawMode {
        let stdin = std::io::stdin();
        if !on || !rustix::termios::isatty(stdin.as_fd()) {
            return RawMode { saved: None };
        }
        let Ok(saved) = rustix::termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ =
            rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(s) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin().as_fd(),
                rustix::termios::OptionalActions::Now,
                s,
            );
        }
    }
}

fn window_size() -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout().as_fd()).ok()?;
    (ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Signals this process relays to the container (not in tty mode, where
/// ^C is a byte on the terminal).
const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Blocks the forwarded signals in this thread (and the threads it starts)
/// so one thread can take them with sigwait.
fn block_signals(extra: &[i32]) -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is initialised by sigemptyset; the calls
    // take valid pointers to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED.iter().chain(extra) {
            libc::sigaddset(&mut set, *s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Window size of the terminal on stdout, for an exec's pty.
pub fn terminal_size() -> Option<(u16, u16)> {
    window_size()
}

/// Signals that end a process by default, and so end this one when they
/// are not forwarded (or come twice).
const ENDING: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Ends this process as signal `sig` would have, the terminal given back
/// as it was; the container runs on (with --rm, its monitor removes it
/// when it exits).
fn leave(saved: Option<&rustix::termios::Termios>, sig: i32) -> ! {
    if let Some(s) = saved {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin().as_fd(),
            rustix::termios::OptionalActions::Now,
            s,
        );
    }
    std::process::exit(128 + sig)
}

/// Relays until the process exits; returns its exit code, or None when
/// the monitor went away without one. `forward` takes the signals this
/// process gets (not in tty mode, where ^C is a byte on the terminal).
/// A signal that is not forwarded ends this process as it would without
/// the relay, and so does a second SIGTERM (or INT, HUP, QUIT) that is:
/// a process that ignores it (a pid 1 without a handler) must not leave
/// the caller hung.
pub fn relay(
    client: Client,
    stdin: bool,
    tty: bool,
    forward: Option<Box<dyn Fn(i32) + Send>>,
) -> Result<Option<i32>> {
    let set = block_signals(&[libc::SIGWINCH]);
    let raw = RawMode::enter(tty);
    if tty && let Some((r, c)) = window_size() {
        let _ = client.resize(r, c);
    }
    // Signals: forwarded; SIGWINCH: the new size.
    let sig_client = client.try_clone()?;
    let saved = raw.saved.clone();
    std::thread::spawn(move || {
        let mut ending_forwarded = 0;
        loop {
            let mut sig = 0;
            // SAFETY: sigwait with a valid set and out pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            if sig == libc::SIGWINCH {
                if let Some((r, c)) = window_size() {
                    let _ = sig_client.resize(r, c);
                }
                continue;
            }
            match &forward {
                Some(f) if !tty => {
                    f(sig);
                    if ENDING.contains(&sig) {
                        ending_forwarded += 1;
                        if ending_forwarded > 1 {
                            eprintln!(
                                "Warning: signal {sig} came again: leaving, the container runs on"
                            );
                            leave(saved.as_ref(), sig);
                        }
                    }
                }
                _ => leave(saved.as_ref(), sig),
            }
        }
    });
    if stdin {
        let in_client = client.try_clone()?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut input = std::io::stdin().lock();
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = in_client.close_stdin();
                        return;
                    }
                    Ok(n) => {
                        if in_client.send_stdin(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let mut client = client;
    // Locked per frame, not for the whole relay: the signal thread may
    // have a word to say on stderr.
    loop {
        match client.recv().context("read from the container")? {
            Some(Frame::Stdout(d)) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&d);
                let _ = out.flush();
            }
            Some(Frame::Stderr(d)) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&d);
                let _ = err.flush();
            }
            Some(Frame::Exit(code)) => return Ok(Some(code)),
            Some(_) => {}
            None => return Ok(None),
        }
    }
}
