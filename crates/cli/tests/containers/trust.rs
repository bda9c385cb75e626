//! What a user must be able to trust: one print per error, piped input
//! with `-it` neither hangs nor ignores SIGTERM, volumes a run made go
//! with it when it fails (and anonymous ones with --rm), `cp` with `-`
//! is a tar stream, and a published port already in use is refused with
//! nothing left behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::*;
use crate::support::{Sandbox, run_within};

/// Lines of `text` that say `needle`.
fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn errors_of_stop_rm_kill_and_inspect_are_printed_once() {
    let sb = Sandbox::new();
    let berth = |args: &[&str]| {
        let mut c = sb.cmd();
        c.arg("--runroot").arg(sb.path().join("run")).args(args);
        c.output().unwrap()
    };
    for cmd in [
        &["stop", "nosuch"][..],
        &["rm", "nosuch"],
        &["kill", "nosuch"],
        &["inspect", "nosuch"],
        &["pause", "nosuch"],
    ] {
        let out = berth(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{cmd:?}: {err}");
        assert_eq!(count(&err, "nosuch"), 1, "{cmd:?} printed:\n{err}");
        assert_eq!(err.lines().count(), 1, "{cmd:?} printed:\n{err}");
    }
    // Several names: each failure once, and nothing more.
    let out = berth(&["rm", "gone1", "gone2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(count(&err, "gone1"), 1, "{err}");
    assert_eq!(count(&err, "gone2"), 1, "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
}

/// Sends `sig` to the process `pid`.
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child of this test, which it has not reaped.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Waits for `child` at most `limit`; kills it and fails if it is hung.
fn exits_within(child: &mut std::process::Child, limit: Duration, what: &str) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            return s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0));
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} was still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn piped_input_with_it_runs_without_a_tty_and_sigterm_never_leaves_run_hung() {
    let env = Env::new();
    // printf x | berth run --rm -it IMAGE cat: warned, run without a
    // terminal, the input ends and so does cat.
    let input = env.sb.path().join("input");
    std::fs::write(&input, "x").unwrap();
    let mut c = env.cmd();
    c.args(["run", "--rm", "-it", &env.image, "cat"])
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (out, _) = run_within(c, Duration::from_secs(30), "printf x | run --rm -it cat");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x");
    assert!(err.contains("the input device is not a TTY"), "{err}");
    assert!(env.ids().is_empty(), "--rm left {:?}", env.ids());

    // With a terminal for the container (-t), SIGTERM to the CLI ends the
    // CLI (its signals are not the container's there); the container runs
    // on, as with docker.
    let mut child = env
        .cmd()
        .args(["run", "-t", "--name", "tty", &env.image, "sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the container", || {
        env.ids().len() == 1 && env.status("tty") == "running"
    });
    signal(child.id(), libc::SIGTERM);
    assert_eq!(
        exits_within(&mut child, Duration::from_secs(10), "run -t"),
        143
    );
    assert_eq!(env.status("tty"), "running");
    env.ok(&["rm", "-f", "tty"]);

    // Without a terminal the signal goes to the container; sleep as pid 1
    // ignores it, so a second SIGTERM ends the CLI.
    let mut child = env
        .cmd()
        .args(["run", "--name", "plain", &env.image, "sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the container", || {
        env.ids().len() == 1 && env.status("plain") == "running"
    });
    signal(child.id(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), libc::SIGTERM);
    assert_eq!(
        exits_within(&mut child, Duration::from_secs(10), "run"),
        143
    );
    env.ok(&["rm", "-f", "plain"]);
}
