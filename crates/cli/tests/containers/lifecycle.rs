//! run, ps, stop, kill, rm, logs, exec, wait: the life of a container.

use std::time::{Duration, Instant};

use crate::env::*;

#[test]
fn run_in_the_foreground_prints_and_passes_the_exit_code_on() {
    let env = Env::new();
    let (out, _) = env.code(
        3,
        &[
            "run",
            "--rm",
            &env.image,
            "sh",
            "-c",
            "echo hello; echo oops >&2; exit 3",
        ],
    );
    assert_eq!(out, "hello\n");
    assert!(env.ids().is_empty(), "--rm left the container");
}

#[test]
fn detached_container_lives_stops_and_is_removed_without_a_trace() {
    let env = Env::new();
    // With --init: sleep as PID 1 would ignore SIGTERM (no handler).
    let id = env.run_d(&["--name", "web", "--init"], &["sleep", "1000"]);
    assert_eq!(id.len(), 64);
    assert_eq!(env.status("web"), "running");
    let table = env.ok(&["ps"]);
    assert!(table.contains("web") && table.contains("Up "), "{table}");
    let pid = env.inspect("web")["State"]["Pid"].as_i64().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        cmdline.contains("berth-init") && cmdline.contains("sleep"),
        "{cmdline}"
    );
    // The monitor runs apart from this process.
    let monitor = env.inspect("web")["MonitorPid"].as_i64().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{monitor}")).exists());

    let t = Instant::now();
    env.ok(&["stop", "web"]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "sleep ignores nothing: SIGTERM ends it"
    );
    let i = env.inspect("web");
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 143);
    assert!(!env.ok(&["ps"]).contains("web"));
    assert!(env.ok(&["ps", "-a"]).contains("Exited (143)"));
    env.ok(&["rm", "web"]);
    assert_gone(&env, &id);
    wait_for("the monitor to leave", || {
        !std::path::Path::new(&format!("/proc/{monitor}")).exists()
    });
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout() {
    let env = Env::new();
    env.run_d(
        &["--name", "stubborn"],
        &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
    );
    let t = Instant::now();
    env.ok(&["stop", "-t", "1", "stubborn"]);
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(1), "took {took:?}");
    assert_eq!(env.inspect("stubborn")["State"]["ExitCode"], 137);
}

#[test]
fn kill_sends_the_named_signal() {
    let env = Env::new();
    env.run_d(&["--name", "k", "--init"], &["sleep", "1000"]);
    env.ok(&["kill", "-s", "USR1", "k"]);
    assert_eq!(env.ok(&["wait", "k"]).trim(), "138");
    env.code(125, &["kill", "k"]);
}

#[test]
fn logs_hold_both_streams() {
    let env = Env::new();
    env.run_d(
        &["--name", "talker"],
        &["sh", "-c", "echo to-out; echo to-err >&2; echo again"],
    );
    assert_eq!(env.ok(&["wait", "talker"]).trim(), "0");
    let out = env.berth(&["logs", "talker"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\nagain\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");
    env.run_d(&["--name", "counter"], &["seq", "1", "5"]);
    env.ok(&["wait", "counter"]);
    assert_eq!(env.ok(&["logs", "--tail", "2", "counter"]), "4\n5\n");
    let stamped = env.ok(&["logs", "-t", "talker"]);
    assert!(stamped.lines().all(|l| l.contains("Z ")), "{stamped}");
}

#[test]
fn logs_follow_streams_until_the_container_exits() {
    let env = Env::new();
    env.run_d(
        &["--name", "ticker"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do echo tick$i; sleep 0.3; done",
        ],
    );
    let out = env.cmd().args(["logs", "-f", "ticker"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tick1\ntick2\ntick3\n"
    );
}

#[test]
fn exec_runs_in_the_container_and_passes_codes_on() {
    let env = Env::new();
    env.run_d(&["--name", "host", "--hostname", "box"], &["sleep", "1000"]);
    assert_eq!(env.ok(&["exec", "host", "hostname"]).trim(), "box");
    let (out, _) = env.code(
        4,
        &[
            "exec",
            "-e",
            "X=7",
            "-w",
            "/tmp",
            "host",
            "sh",
            "-c",
            "echo $X $(pwd); exit 4",
        ],
    );
    assert_eq!(out, "7 /tmp\n");
    assert_eq!(
        env.ok(&["exec", "-u", "nobody", "host", "id", "-u"]).trim(),
        "65534"
    );
    env.code(127, &["exec", "host", "no-such-command"]);
    env.ok(&["stop", "-t", "0", "host"]);
    env.code(125, &["exec", "host", "true"]);
}

#[test]
fn bad_input_gets_one_clear_error() {
    let env = Env::new();
    let (_, err) = env.code(125, &["run", "--name", "a/b", &env.image, "true"]);
    assert!(err.contains("a/b"), "{err}");
    let (_, err) = env.code(125, &["run", "-v", "relative:dest", &env.image, "true"]);
    assert!(err.contains("absolute"), "{err}");
    let (_, err) = env.code(125, &["run", "-m", "lots", &env.image, "true"]);
    assert!(err.contains("lots"), "{err}");
    let (_, err) = env.code(125, &["run", "--cap-add", "CAP_BOGUS", &env.image, "true"]);
    assert!(err.contains("CAP_BOGUS"), "{err}");
    env.code(127, &["run", "--rm", &env.image, "no-such-command"]);
    env.ok(&["create", "--name", "dup", &env.image, "true"]);
    let (_, err) = env.code(125, &["create", "--name", "dup", &env.image, "true"]);
    assert!(err.contains("already in use"), "{err}");
    let (_, err) = env.code(1, &["rm", "no-such-container"]);
    assert!(err.contains("no-such-container"), "{err}");
    assert_eq!(env.ids().len(), 1, "a failed create left a record");
}

#[test]
fn a_killed_monitor_or_cli_leaves_a_state_that_tells_the_truth() {
    let env = Env::new();
    let id = env.run_d(&["--name", "orphan"], &["sleep", "1000"]);
    let monitor = env.inspect("orphan")["MonitorPid"].as_i64().unwrap() as i32;
    // SAFETY: kill takes integers only.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    wait_for("the monitor to die", || {
        !std::path::Path::new(&format!("/proc/{monitor}/stat")).exists()
            || std::fs::read_to_string(format!("/proc/{monitor}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    });
    assert_eq!(
        env.status("orphan"),
        "running",
        "the container outlives its monitor"
    );
    env.ok(&["stop", "-t", "1", "orphan"]);
    assert_eq!(env.status("orphan"), "exited");
    env.ok(&["rm", "orphan"]);
    assert_gone(&env, &id);

    // The CLI killed while a foreground run goes on.
    let mut child = env
        .cmd()
        .args(["run", "--name", "fg", &env.image, "sleep", "1000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the container to run", || {
        env.berth(&["inspect", "fg"]).status.success() && env.status("fg") == "running"
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(env.status("fg"), "running");
    env.ok(&["rm", "-f", "fg"]);
    assert!(env.ids().is_empty());
}

#[test]
fn twenty_concurrent_runs_then_removals_leave_nothing() {
    let env = Env::new();
    let env = &env;
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|i| s.spawn(move || env.run_d(&["--name", &format!("c{i}")], &["sleep", "1000"])))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(env.ok(&["ps", "-q"]).lines().count(), 20);
    std::thread::scope(|s| {
        for id in &ids {
            s.spawn(move || env.ok(&["rm", "-f", id]));
        }
    });
    assert!(env.ids().is_empty());
    for id in &ids {
        assert_gone(env, id);
    }
}

#[test]
fn named_volumes_keep_data_and_are_removed_only_when_unused() {
    let env = Env::new();
    env.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        &env.image,
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let out = env.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        &env.image,
        "sh",
        "-c",
        "cat /data/f; touch /data/g 2>/dev/null || echo ro",
    ]);
    assert_eq!(out, "kept\nro\n");
    assert!(env.ok(&["volume", "ls"]).contains("data"));
    env.ok(&[
        "create",
        "--name",
        "user",
        "-v",
        "data:/data",
        &env.image,
        "true",
    ]);
    let (_, err) = env.code(2, &["volume", "rm", "data"]);
    assert!(err.contains("in use") && err.contains("user"), "{err}");
    env.ok(&["rm", "user"]);
    env.ok(&["volume", "rm", "data"]);
    assert!(!env.ok(&["volume", "ls", "-q"]).contains("data"));
    // A bind mount of a host directory.
    let host = env.sb.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from host").unwrap();
    let spec = format!("{}:/mnt", host.display());
    assert_eq!(
        env.ok(&["run", "--rm", "-v", &spec, &env.image, "cat", "/mnt/in"]),
        "from host"
    );
}

#[test]
fn cp_copies_both_ways_and_stays_inside_the_container() {
    let env = Env::new();
    let id = env.run_d(&["--name", "box"], &["sh", "-c", "mkdir -p /data/sub; echo inside > /data/sub/f; ln -s /etc /data/escape; ln -s ../../../../../../etc/hostname /data/up; sleep 1000"]);
    // (A link itself is copied as a link, as docker cp does.)
    wait_for("the files", || {
        env.berth(&["exec", "box", "sh", "-c", "test -e /data/up"])
            .status
            .success()
    });
    let host = env.sb.path().join("out");
    std::fs::create_dir(&host).unwrap();
    env.ok(&["cp", "box:/data", host.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(host.join("data/sub/f")).unwrap(),
        "inside\n"
    );
    // Links come out as links, not as what they point to on the host.
    assert_eq!(
        std::fs::read_link(host.join("data/escape")).unwrap(),
        std::path::Path::new("/etc")
    );
    assert!(
        std::fs::symlink_metadata(host.join("data/up"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A path through a link resolves inside the container: /data/escape
    // is /etc there, and /etc/hostname is the container's.
    env.ok(&[
        "cp",
        "box:/data/escape/hostname",
        host.join("hostname-of-box").to_str().unwrap(),
    ]);
    let got = std::fs::read_to_string(host.join("hostname-of-box")).unwrap();
    assert_eq!(
        got.trim(),
        &id[..12],
        "the container's /etc/hostname, not the host's"
    );
    // In: a file lands in the container's directory.
    let f = env.sb.path().join("note.txt");
    std::fs::write(&f, "from host").unwrap();
    env.ok(&["cp", f.to_str().unwrap(), "box:/tmp"]);
    assert_eq!(
        env.ok(&["exec", "box", "cat", "/tmp/note.txt"]),
        "from host"
    );
    // Into a symlinked directory: it resolves in the container, not on the host.
    env.ok(&["cp", f.to_str().unwrap(), "box:/data/escape"]);
    assert!(
        !std::path::Path::new("/etc/note.txt").exists(),
        "cp wrote the host's /etc"
    );
    assert_eq!(
        env.ok(&["exec", "box", "cat", "/etc/note.txt"]),
        "from host"
    );
    env.code(125, &["cp", "box:/no/such", host.to_str().unwrap()]);
    env.code(125, &["cp", "a", "b"]);
}

#[test]
fn after_a_reboot_records_remain_and_containers_start_again() {
    let env = Env::new();
    let id = env.run_d(&["--name", "survivor"], &["sleep", "1000"]);
    let i = env.inspect("survivor");
    let (pid, monitor) = (
        i["State"]["Pid"].as_i64().unwrap() as i32,
        i["MonitorPid"].as_i64().unwrap() as i32,
    );
    // A reboot, as far as berth can tell: every process gone, every mount
    // and cgroup gone, the volatile run root empty.
    for p in [monitor, pid] {
        // SAFETY: kill takes integers only.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    wait_for("the processes to go", || {
        [monitor, pid].iter().all(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |s| s.contains(") Z"))
        })
    });
    crate::support::umount_under(&env.runroot());
    crate::support::umount_under(&env.sb.root().join("containers").join(&id));
    std::fs::remove_dir_all(env.runroot()).unwrap();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(h.path().join(format!("berth-{id}")));
    }

    let i = env.inspect("survivor");
    assert_eq!(i["State"]["Status"], "exited", "{i}");
    assert!(env.ok(&["ps", "-a"]).contains("survivor"));
    env.ok(&["start", "survivor"]);
    assert_eq!(env.status("survivor"), "running");
    assert_eq!(env.ok(&["exec", "survivor", "echo", "back"]).trim(), "back");
    env.ok(&["rm", "-f", "survivor"]);
    assert_gone(&env, &id);
}

#[test]
fn an_external_runtime_runs_the_container_when_asked() {
    require!("runc");
    let env = Env::new();
    let (out, _) = env.code(
        3,
        &[
            "run",
            "--rm",
            "--runtime",
            "runc",
            &env.image,
            "sh",
            "-c",
            "echo via runc; exit 3",
        ],
    );
    assert_eq!(out, "via runc\n");
    let id = env.run_d(&["--runtime", "runc", "--name", "r"], &["sleep", "1000"]);
    assert!(
        env.runroot().join("runtime-runc").join(&id).exists(),
        "runc keeps its state under berth's run root"
    );
    assert_eq!(env.ok(&["exec", "r", "echo", "exec'd"]).trim(), "exec'd");
    env.ok(&["stop", "-t", "1", "r"]);
    assert_eq!(env.inspect("r")["State"]["ExitCode"], 137);
    env.ok(&["rm", "r"]);
    assert_gone(&env, &id);
    let (_, err) = env.code(
        125,
        &[
            "run",
            "--rm",
            "--runtime",
            "no-such-runtime",
            &env.image,
            "true",
        ],
    );
    assert!(err.contains("no-such-runtime"), "{err}");
}

/// rm, rmi, volume rm and network rm exit as podman's do (and docker's
/// for a missing name): 1 when a name is missing and nothing else failed,
/// 2 when one is running or in use, 0 for a missing name with -f (the
/// `rm -f web; run --name web` of scripts), the others still removed.
#[test]
fn removals_exit_with_podmans_codes() {
    let env = Env::new();
    let img = env.image.clone();
    env.run_d(
        &["--network", "none", "--name", "busy", "-v", "held:/data"],
        &["sleep", "1000"],
    );
    env.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "idle",
        &img,
        "true",
    ]);
    env.ok(&["network", "create", "rmcodes"]);
    env.ok(&[
        "create",
        "--network",
        "rmcodes",
        "--name",
        "netuser",
        &img,
        "true",
    ]);
    for (code, args) in [
        (1, &["rm", "gone"][..]),
        (0, &["rm", "-f", "gone"][..]),
        (2, &["rm", "busy"][..]),
        (1, &["rmi", "gone"][..]),
        (0, &["rmi", "-f", "gone"][..]),
        (2, &["rmi", &img][..]),
        (1, &["volume", "rm", "gone"][..]),
        (0, &["volume", "rm", "-f", "gone"][..]),
        (2, &["volume", "rm", "held"][..]),
        (1, &["network", "rm", "gone"][..]),
        (0, &["network", "rm", "-f", "gone"][..]),
        (2, &["network", "rm", "rmcodes"][..]),
    ] {
        let (_, err) = env.code(code, args);
        match code {
            0 => assert!(err.is_empty(), "{args:?}: {err}"),
            _ => assert!(
                err.starts_with("Error: ") && err.lines().count() == 1,
                "{args:?}: {err}"
            ),
        }
    }
    // Several names: each tried; "in use" outranks "missing".
    let (out, err) = env.code(2, &["rm", "gone", "idle", "busy"]);
    assert_eq!(out, "idle\n");
    assert_eq!(err.lines().count(), 2, "{err}");
    let (out, _) = env.code(0, &["rm", "-f", "gone", "busy"]);
    assert_eq!(out, "busy\n");
    assert!(
        env.ids()
            .iter()
            .all(|id| env.inspect(id)["Name"] == "netuser")
    );
}
