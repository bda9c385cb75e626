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
    // (rm's 1 for a missing name is podman's and docker's.)
    for (code, cmd) in [
        (125, &["stop", "nosuch"][..]),
        (1, &["rm", "nosuch"]),
        (125, &["kill", "nosuch"]),
        (125, &["inspect", "nosuch"]),
        (125, &["pause", "nosuch"]),
    ] {
        let out = berth(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{cmd:?}: {err}");
        assert_eq!(count(&err, "nosuch"), 1, "{cmd:?} printed:\n{err}");
        assert_eq!(err.lines().count(), 1, "{cmd:?} printed:\n{err}");
    }
    // Several names: each failure once, and nothing more.
    let out = berth(&["rm", "gone1", "gone2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
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
    // exec -it alike.
    env.run_d(&["--name", "box", "--network", "none"], &["sleep", "1000"]);
    let mut c = env.cmd();
    c.args(["exec", "-it", "box", "cat"])
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (out, _) = run_within(c, Duration::from_secs(30), "printf x | exec -it cat");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x");
    assert!(err.contains("the input device is not a TTY"), "{err}");
    env.ok(&["rm", "-f", "box"]);

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

fn volume_names(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = env
        .ok(&["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[test]
fn a_failed_run_takes_the_volumes_it_made_and_rm_takes_anonymous_ones() {
    let env = Env::new();
    env.ok(&["volume", "create", "kept"]);
    // A run whose start fails: the volume it made goes with it, the one
    // that was there stays, and no container is left.
    let (_, err) = env.code(
        127,
        &[
            "run",
            "--network",
            "none",
            "-v",
            "made:/made",
            "-v",
            "kept:/kept",
            "-v",
            "/anon",
            &env.image,
            "no-such-command",
        ],
    );
    assert_eq!(count(&err, "no-such-command"), 1, "{err}");
    assert_eq!(volume_names(&env), ["kept"]);
    assert!(env.ids().is_empty(), "left {:?}", env.ids());

    // run --rm with an anonymous volume: it goes with the container; a
    // named one stays (docker's rule).
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "/anon",
        "-v",
        "named:/named",
        &env.image,
        "sh",
        "-c",
        "echo hi > /anon/f; echo hi > /named/f; cat /anon/f",
    ]);
    assert_eq!(out, "hi\n");
    assert_eq!(volume_names(&env), ["kept", "named"]);
    // Also when --rm's container is removed in the background (-d).
    let id = env.run_d(
        &[
            "--rm",
            "--network",
            "none",
            "--mount",
            "type=volume,dst=/anon",
        ],
        &["sleep", "1000"],
    );
    assert_eq!(volume_names(&env).len(), 3);
    env.ok(&["rm", "-f", &id]);
    assert_eq!(volume_names(&env), ["kept", "named"]);
    // Without --rm, an anonymous volume stays until removed itself.
    let id = env.run_d(&["--network", "none", "-v", "/anon"], &["true"]);
    env.ok(&["wait", &id]);
    env.ok(&["rm", &id]);
    assert_eq!(volume_names(&env).len(), 3);
}

#[test]
fn cp_with_a_dash_is_a_tar_stream_both_ways() {
    let env = Env::new();
    env.run_d(
        &["--name", "box", "--network", "none"],
        &[
            "sh",
            "-c",
            "echo inside > /tmp/f; mkdir /tmp/in; sleep 1000",
        ],
    );
    wait_for("the file", || {
        env.berth(&["exec", "box", "sh", "-c", "test -e /tmp/in"])
            .status
            .success()
    });
    // Out: a tar of the file on stdout, no file named "-" anywhere.
    let out = env
        .cmd()
        .current_dir(env.sb.path())
        .args(["cp", "box:/tmp/f", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut a = tar::Archive::new(&out.stdout[..]);
    let mut e = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.path().unwrap().to_str(), Some("f"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut e, &mut text).unwrap();
    assert_eq!(text, "inside\n");
    assert!(
        !env.sb.path().join("-").exists(),
        "a file named - was written"
    );

    // In: a tar on stdin unpacks into the container's directory.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "from-tar", &b"hello"[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    let input = env.sb.path().join("in.tar");
    std::fs::write(&input, &tar).unwrap();
    let out = env
        .cmd()
        .args(["cp", "-", "box:/tmp/in"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.ok(&["exec", "box", "cat", "/tmp/in/from-tar"]), "hello");
}

/// iptables rules (no counters) that mention `needle`.
fn rules_with(needle: &str) -> Vec<String> {
    let out = Command::new("iptables-save").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A") && l.contains(needle))
        .map(String::from)
        .collect()
}

/// A TCP listener of this test on `ip`, on a port free now.
fn host_listener(ip: &str) -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Asserts that running with `-p publish` is refused as podman refuses
/// it, and that the refusal leaves nothing: no container, no netns pin,
/// no rule for the port beyond those there before.
fn refused(env: &Env, publish: &str, port: u16) {
    let dport = format!("--dport {port}");
    let (rules, ids, pins) = (rules_with(&dport), env.ids(), netns_pins(env));
    let (_, err) = env.code(126, &["run", "--rm", "-p", publish, &env.image, "true"]);
    assert!(err.contains("address already in use"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (_, err) = env.code(
        126,
        &[
            "run", "-d", "--name", "late", "-p", publish, &env.image, "sleep", "1",
        ],
    );
    assert!(err.contains("address already in use"), "{err}");
    assert_eq!(env.ids(), ids, "a record remains");
    assert_eq!(rules_with(&dport), rules, "rules remain");
    assert_eq!(netns_pins(env), pins, "a netns pin remains");
}

fn netns_pins(env: &Env) -> usize {
    std::fs::read_dir(env.runroot().join("netns"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_published_port_in_use_is_refused_and_leaves_nothing() {
    let env = Env::new();
    // A host server on 127.0.0.1 and one on every address: neither is
    // shadowed, whichever address the container asks for.
    let (local, port) = host_listener("127.0.0.1");
    refused(&env, &format!("{port}:80"), port);
    refused(&env, &format!("127.0.0.1:{port}:80"), port);
    drop(local);
    let (any, port) = host_listener("0.0.0.0");
    refused(&env, &format!("127.0.0.1:{port}:80"), port);
    refused(&env, &format!("{port}:80"), port);
    drop(any);
    assert_eq!(netns_pins(&env), 0, "a netns pin remains");

    // Two containers on one port: the second is refused, the first keeps
    // it, and once the first is gone the port is free again.
    let (probe, port) = host_listener("0.0.0.0");
    drop(probe);
    let publish = format!("{port}:80");
    let first = env.run_d(&["--name", "first", "-p", &publish], &["sleep", "1000"]);
    refused(&env, &publish, port);
    assert_eq!(env.ids(), std::slice::from_ref(&first));
    assert_eq!(env.status("first"), "running");
    assert_eq!(netns_pins(&env), 1);
    // The host cannot take it from the container either.
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_err());
    // Nor does the container's process hold the reservation.
    let pid = env.inspect("first")["State"]["Pid"].as_i64().unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(fds <= 3, "the container has {fds} fds");
    env.ok(&["rm", "-f", "first"]);
    assert_gone(&env, &first);
    assert_eq!(netns_pins(&env), 0);
    let again = env.run_d(&["--rm", "-p", &publish], &["sleep", "1000"]);
    env.ok(&["rm", "-f", &again]);
    let l = std::net::TcpListener::bind(("0.0.0.0", port));
    assert!(l.is_ok(), "the port stays taken after rm: {l:?}");
}
