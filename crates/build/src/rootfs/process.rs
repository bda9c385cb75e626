//! A RUN's process in the rootfs mode: a direct child of the builder, in
//! its own process group, as the step's user (its groups too), in the
//! step's working directory, with the image's Env and the step's; its
//! output (stdout and stderr, one pipe) relayed to the progress as it
//! comes. Ctrl-C kills its whole group; so does its end (a daemon a RUN
//! leaves behind dies with the step, as it would with its container).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::working::{Ran, Tail};

/// What to run.
pub struct Spec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Runs `spec`, its output to `progress` (step `n`), `stdin` as its whole
/// input; `cancel` kills it.
pub fn run(
    spec: &Spec,
    stdin: Option<&[u8]>,
    progress: &dyn Progress,
    n: usize,
    cancel: &AtomicBool,
) -> Result<Ran> {
    let Some((prog, args)) = spec.argv.split_first() else {
        return Err(Error::invalid("RUN", "an empty command"));
    };
    let (reader, writer) = std::io::pipe().map_err(Error::io("make the step's output pipe"))?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().filter_map(|e| e.split_once('=')))
        .current_dir(&spec.cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(
            writer
                .try_clone()
                .map_err(Error::io("make the step's output pipe"))?,
        )
        .stderr(writer)
        // Its own group: Ctrl-C on the builder's terminal is the
        // builder's to handle, and the group is killed as one.
        .process_group(0);
    let (uid, gid, groups) = (spec.uid, spec.gid, spec.groups.clone());
    // SAFETY: the closure runs in the child between fork and exec and
    // makes only async-signal-safe system calls (setgroups, setgid,
    // setuid) on data moved into it before the fork; it allocates nothing.
    // The ids are set here, not with Command::uid/gid, because std sets
    // them before this closure would run and setgroups needs root.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::invalid(
            format!("RUN {}", spec.argv.join(" ")),
            format!("start {prog}: {e}"),
        )
    })?;
    // Only the child holds the pipe's write end now.
    drop(cmd);
    let pgid = child.id() as i32;
    if let (Some(data), Some(mut input)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        // A writer of its own: the child may not read all before
        // writing (a pipe holds only so much).
        std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
    }
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let pump = std::thread::spawn(move || {
        let mut reader = reader;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    if tx.send(buf[..k].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut tail = Tail::default();
    let kill_group = || {
        // SAFETY: kill(2) with a negative pid signals the group this
        // child leads; no memory is involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    };
    let code = loop {
        if cancel.load(Ordering::Relaxed) {
            kill_group();
            let _ = child.wait();
            return Err(Error::Interrupted);
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(d) => {
                tail.push(&d);
                progress.output(n, &d);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Its output closed (it may still run): poll for its end.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(50))
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                break status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            }
            Ok(None) => {}
            Err(e) => return Err(Error::io("wait for the step's process")(e)),
        }
    };
    // What it left running holds the pipe open: it ends with the step.
    kill_group();
    while let Ok(d) = rx.recv_timeout(Duration::from_secs(2)) {
        tail.push(&d);
        progress.output(n, &d);
    }
    let _ = pump.join();
    Ok(Ran {
        code,
        tail: tail.text(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    #[derive(Default)]
    struct Seen(Mutex<Vec<u8>>);

    impl Progress for Seen {
        fn step(&self, _: usize, _: &str) {}
        fn cached(&self, _: usize) {}
        fn output(&self, _: usize, d: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(d);
        }
        fn note(&self, _: usize, _: &str) {}
        fn done(&self, _: usize, _: Duration) {}
    }

    fn spec(script: &str) -> Spec {
        Spec {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/usr/bin:/bin".into(), "GREETING=hi".into()],
            cwd: "/".into(),
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            groups: vec![rustix::process::getgid().as_raw()],
        }
    }

    fn root() -> bool {
        // setgroups needs root, as the builder is in rootfs isolation.
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn output_env_input_and_the_exit_code() {
        if !root() {
            eprintln!("not root: skipped");
            return;
        }
        let p = Seen::default();
        let no = AtomicBool::new(false);
        let ran = run(
            &spec("echo $GREETING; echo err >&2; cat; echo \"home=$HOME\"; exit 3"),
            Some(b"from stdin\n"),
            &p,
            1,
            &no,
        )
        .unwrap();
        assert_eq!(ran.code, 3);
        let out = String::from_utf8(p.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out, "hi\nerr\nfrom stdin\nhome=\n", "only the step's env");
        assert_eq!(ran.tail, "hi\nerr\nfrom stdin\nhome=");
    }

    #[test]
    fn cancel_kills_it_and_what_it_left_ends_with_the_step() {
        if !root() {
            eprintln!("not root: skipped");
            return;
        }
        let p = Seen::default();
        let cancel = AtomicBool::new(false);
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                cancel.store(true, Ordering::Relaxed);
            });
            let r = run(&spec("sleep 30"), None, &p, 1, &cancel);
            assert!(matches!(r, Err(Error::Interrupted)), "{:?}", r.err());
        });
        assert!(started.elapsed() < Duration::from_secs(10));
        // A daemon holding the output pipe: the step still ends when its
        // process does, and the daemon with it.
        let no = AtomicBool::new(false);
        let started = Instant::now();
        let ran = run(
            &spec("sleep 30 & echo $! > /dev/stderr; exit 0"),
            None,
            &p,
            1,
            &no,
        )
        .unwrap();
        assert_eq!(ran.code, 0);
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: i32 = ran.tail.lines().last().unwrap().trim().parse().unwrap();
        // Reaped by nobody but gone from the group: signal 0 fails once
        // it is dead or a zombie of init's.
        std::thread::sleep(Duration::from_millis(200));
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.split_whitespace().nth(2) == Some("Z"),
            "the background sleep lives on: {state}"
        );
    }
}
