//! The ready pipe (fd 3): one line, `ok <pid> <own pid>` or `error
//! <message>`, then closed, so the spawner knows how create went (and
//! which process the monitor is, past the double fork) without waiting
//! for the monitor to exit.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

pub const FD: i32 = 3;

pub struct Ready(std::fs::File);

impl Ready {
    /// Takes fd 3 if it is open, and keeps it from every process the
    /// monitor starts (runtime, container, exit command).
    pub fn take() -> Option<Ready> {
        // SAFETY: fcntl on an integer fd; an fd that is not open fails
        // with EBADF, which is the answer sought.
        if unsafe { libc::fcntl(FD, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: fd 3 is open and handed to this process to own.
        Some(Ready(unsafe { OwnedFd::from_raw_fd(FD) }.into()))
    }

    pub fn ok(self, pid: i32) {
        self.line(&format!("ok {pid} {}\n", std::process::id()));
    }

    pub fn error(self, msg: &str) {
        // One line, whatever the message held.
        let msg: String = msg
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.line(&format!("error {}\n", msg.trim()));
    }

    fn line(mut self, s: &str) {
        // The spawner may have gone away; nothing more can be told then.
        let _ = self.0.write_all(s.as_bytes());
    }
}
