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

/// docker's default detach sequence: ctrl-p ctrl-q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// `--detach-keys`: docker's comma-separated keys, each a character or
/// `ctrl-X` (X a letter or one of @[\]^_); an empty string turns
/// detaching off.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|k| {
            let b = k.as_bytes();
            match b {
                [c] => Ok(*c),
                [b'c', b't', b'r', b'l', b'-', c] => match c.to_ascii_lowercase() {
                    l @ b'a'..=b'z' => Ok(l - b'a' + 1),
                    b'@' => Ok(0),
                    x @ (b'[' | b'\\' | b']' | b'^' | b'_') => Ok(x - b'@'),
                    _ => anyhow::bail!("--detach-keys {s}: {k:?} is no control key"),
                },
                _ => anyhow::bail!("--detach-keys {s}: {k:?} is neither a character nor ctrl-X"),
            }
        })
        .collect()
}

/// Finds the detach sequence in the input, holding back a part of it
/// until the next byte says whether the rest follows.
struct DetachKeys {
    keys: Vec<u8>,
    held: usize,
}

impl DetachKeys {
    fn new(keys: &[u8]) -> DetachKeys {
        DetachKeys {
            keys: keys.to_vec(),
            held: 0,
        }
    }

    /// What to pass on of `input`, and whether the sequence is complete.
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        if self.keys.is_empty() {
            return (input.to_vec(), false);
        }
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            // Not the sequence after all: what was held is input.
            out.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if b == self.keys[0] {
                self.held = 1;
                if self.keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// The user typed the detach keys: the terminal as it was, the container
/// running on, this process done (exit 0, as docker's).
fn detached(saved: Option<&rustix::termios::Termios>) -> ! {
    if let Some(t) = saved {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin().as_fd(),
            rustix::termios::OptionalActions::Now,
            t,
        );
    }
    eprintln!();
    std::process::exit(0)
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
    detach_keys: &[u8],
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
        let saved = raw.saved.clone();
        let mut keys = DetachKeys::new(if tty { detach_keys } else { &[] });
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
                        let (pass, detach) = keys.feed(&buf[..n]);
                        if !pass.is_empty() && in_client.send_stdin(&pass).is_err() {
                            return;
                        }
                        if detach {
                            detached(saved.as_ref());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_detaches_and_its_false_starts_pass_on() {
        assert_eq!(parse_detach_keys(DEFAULT_DETACH_KEYS).unwrap(), [16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), [1, b'x']);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("abc").is_err());
        let mut k = DetachKeys::new(&[16, 17]);
        assert_eq!(k.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(k.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(k.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(k.feed(b"\x11rest"), (Vec::new(), true));
        let mut off = DetachKeys::new(&[]);
        assert_eq!(off.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }
}
