//! A keeper: the host process standing for one process in a VM, a
//! container's own or an exec'd one. It holds one channel to the agent
//! (through the VM's holder), asks for its process, and then lives exactly
//! as long as that process: it relays the process's stdio (pipes or a
//! terminal), passes signals and resizes on, and ends with the process's
//! status, so whoever waits for the keeper (berth's monitor, podman's
//! conmon, containerd's shim) sees the container's. When the VM ends first
//! it says why on stderr and ends with 255.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use anyhow::Result;

use crate::host::client::Client;
use crate::host::fork;
use crate::host::relay::{self, Relay};
use crate::host::share;
use crate::proto::{Decoder, Frame, Kind, Msg};

pub struct Keeper {
    pub client: Client,
    /// What to ask for: Create (a container) or Exec (one more process).
    pub first: Msg,
    pub tty: bool,
    /// Where the terminal's master goes (runc's --console-socket).
    pub console: Option<PathBuf>,
    /// A container's directory in the VM's shared directory, unbound at
    /// the end.
    pub share: Option<PathBuf>,
}

impl Keeper {
    /// Asks for the process, reports to `report` (or, without one, prints
    /// a failure), then relays; never returns.
    pub fn run(mut self, report: Option<OwnedFd>) -> ! {
        let started = (|| -> Result<OwnedFd> {
            // Blocked before the terminal is handed over: the first resize
            // follows at once.
            let signals = relay::signal_fd(relay::FORWARDED)?;
            let terminal = match &self.console {
                Some(c) if self.tty => {
                    relay::take_terminal(c)?;
                    true
                }
                _ => false,
            };
            self.client.request(&self.first)?;
            if terminal && let Some(size) = Relay::new(true).size() {
                self.client.send(&size)?;
            }
            Ok(signals)
        })();
        let signals = match (started, report) {
            (Ok(s), Some(rep)) => {
                fork::report(rep, &Ok(()));
                s
            }
            (Ok(s), None) => s,
            (Err(e), rep) => {
                self.release();
                match rep {
                    Some(rep) => fork::report(rep, &Err(e)),
                    None => eprintln!("berth-vm: {e:#}"),
                }
                std::process::exit(255)
            }
        };
        let status = self.relay(&signals);
        self.release();
        match status {
            Ok(status) => relay::mirror_exit(status),
            Err(reason) => {
                let _ = writeln!(std::io::stderr(), "berth-vm: {reason}");
                std::process::exit(255)
            }
        }
    }

    fn release(&self) {
        if let Some(s) = &self.share {
            share::release(s);
        }
    }

    /// The process's wait status, or why the VM ended before it.
    fn relay(&mut self, signals: &OwnedFd) -> std::result::Result<i32, String> {
        let mut relay = Relay::new(self.tty && self.console.is_some());
        let mut dec = Decoder::default();
        let mut buf = vec![0u8; 64 * 1024];
        let stream = &mut self.client.stream;
        let _ = stream.set_read_timeout(None);
        let ended = || "the VM ended before the process did".to_string();
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
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return Err(ended()),
                    Ok(k) => dec.push(&buf[..k]),
                }
                loop {
                    let f = match dec.next_frame() {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => return Err(format!("the VM's holder sent garbage: {e}")),
                    };
                    if f.kind != Kind::Msg {
                        relay.output(&f);
                        continue;
                    }
                    match f.message() {
                        Ok(Msg::Exited { status }) => return Ok(status),
                        Ok(Msg::Gone { reason }) => return Err(reason),
                        // Answers to the signals and resizes passed on.
                        _ => {}
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
                while let Some(sig) = relay::next_signal(signals) {
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
                if stream.write_all(&f.encode()).is_err() {
                    return Err(ended());
                }
            }
        }
    }
}
