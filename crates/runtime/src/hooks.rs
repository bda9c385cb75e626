//! OCI hooks: programs run at points of the lifecycle with the container's
//! state on stdin, each with an optional timeout.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};
use rustix::event::{PollFd, PollFlags, poll};

use crate::error::{Error, Result};
use crate::state::OciState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            #[allow(deprecated)]
            Kind::Prestart => hooks.prestart(),
            Kind::CreateRuntime => hooks.create_runtime(),
            Kind::CreateContainer => hooks.create_container(),
            Kind::StartContainer => hooks.start_container(),
            Kind::Poststart => hooks.poststart(),
            Kind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

/// Runs the hooks of one kind in order, each of them: for poststart and
/// poststop hooks the spec has a failure logged and the rest run.
pub fn run_warning(kind: Kind, hooks: Option<&Hooks>, state: &OciState) {
    let Some(hooks) = hooks else { return };
    let input = serde_json::to_vec(state).expect("state serializes");
    for h in kind.of(hooks) {
        if let Err(e) = run_one(kind, h, &input) {
            crate::warn(&e.to_string());
        }
    }
}

/// Runs the hooks of one kind in order; the first failure stops the rest.
pub fn run(kind: Kind, hooks: Option<&Hooks>, state: &OciState) -> Result<()> {
    let Some(hooks) = hooks else { return Ok(()) };
    let list = kind.of(hooks);
    if list.is_empty() {
        return Ok(());
    }
    let input = serde_json::to_vec(state).expect("state serializes");
    for h in list {
        run_one(kind, h, &input)?;
    }
    Ok(())
}

fn run_one(kind: Kind, h: &Hook, input: &[u8]) -> Result<()> {
    let fail = |why: String| Error::Hook {
        kind: kind.name(),
        path: h.path().display().to_string(),
        why,
    };
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args()
        && let Some((arg0, rest)) = args.split_first()
    {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run: {e}")))?;
    // From a thread: a hook that does not read a large state must neither
    // block us past its timeout nor fail the write. The pipe closes when
    // the hook ends, which ends the thread.
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut out = Vec::new();
    let mut stdout = child
        .stdout
        .take()
        .map(|p| std::fs::File::from(std::os::fd::OwnedFd::from(p)));
    let mut stderr = child
        .stderr
        .take()
        .map(|p| std::fs::File::from(std::os::fd::OwnedFd::from(p)));
    // Drain both pipes while waiting, so a chatty hook cannot block.
    while stdout.is_some() || stderr.is_some() {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if timeout == Some(Duration::ZERO) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                h.timeout().unwrap_or(0)
            )));
        }
        let ts = timeout.map(|t| rustix::time::Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: t.subsec_nanos() as i64,
        });
        let mut fds = Vec::new();
        if let Some(s) = &stdout {
            fds.push(PollFd::new(s, PollFlags::IN));
        }
        if let Some(s) = &stderr {
            fds.push(PollFd::new(s, PollFlags::IN));
        }
        let _ = poll(&mut fds, ts.as_ref());
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut i = 0;
        for pipe in [&mut stdout, &mut stderr] {
            if pipe.is_none() {
                continue;
            }
            if ready[i] {
                let mut buf = [0u8; 4096];
                let n = match pipe.as_mut() {
                    Some(p) => read_some(p, &mut buf),
                    None => 0,
                };
                if n == 0 {
                    *pipe = None;
                } else if out.len() < 64 * 1024 {
                    out.extend_from_slice(&buf[..n]);
                }
            }
            i += 1;
        }
    }
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| fail(format!("wait: {e}")))? {
            break s;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                h.timeout().unwrap_or(0)
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if !status.success() {
        let text = String::from_utf8_lossy(&out);
        return Err(fail(format!("{status}: {}", text.trim())));
    }
    Ok(())
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> usize {
    loop {
        match r.read(buf) {
            Ok(n) => return n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return 0,
        }
    }
}
