//! The everyday commands around containers: stats with network and block
//! I/O, logs --until, port CTR PORT, container prune, system df.

use crate::env::*;

#[test]
fn stats_show_network_and_block_io_once_or_streaming() {
    let env = Env::new();
    let id = env.run_d(
        &[],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/tmp/f bs=1k count=64 2>/dev/null; sync; sleep 1000",
        ],
    );
    // Some traffic on its interface: the gateway answers ARP at least.
    let _ = env.berth(&[
        "exec",
        &id,
        "sh",
        "-c",
        "wget -T 1 -qO- http://$(ip route | awk '/default/{print $3}')/ || true",
    ]);
    let out = env.ok(&["stats", "--no-stream", &id]);
    let header = out.lines().next().unwrap();
    for col in ["CPU %", "MEM USAGE / LIMIT", "NET I/O", "BLOCK I/O", "PIDS"] {
        assert!(header.contains(col), "{out}");
    }
    let row = out.lines().nth(1).unwrap();
    assert!(row.contains(&id[..12]), "{out}");
    // Received bytes: the interface saw its own traffic.
    assert!(!row.contains("0B / 0B"), "{out}");
    // Streaming redraws until stopped.
    let child = env
        .cmd()
        .args(["stats", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2300));
    // SAFETY: kill(2) of the child this test spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("NET I/O").count() >= 2, "{text}");
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn logs_until_port_filter_prune_and_df() {
    let env = Env::new();
    let img = env.image.clone();
    let talker = env.run_d(
        &[],
        &["sh", "-c", "echo early; sleep 2; echo late; sleep 1000"],
    );
    wait_for("the late line", || {
        env.ok(&["logs", &talker]).contains("late")
    });
    let early = env.ok(&["logs", "--until", "1s", &talker]);
    assert_eq!(early, "early\n");
    assert!(env.ok(&["logs", &talker]).contains("late"));

    let web = env.run_d(&["-p", "127.0.0.1::80", "-p", "53/udp"], &["sleep", "1000"]);
    let tcp = env.ok(&["port", &web, "80"]);
    assert!(tcp.starts_with("127.0.0.1:"), "{tcp}");
    assert!(env.ok(&["port", &web, "53/udp"]).starts_with("0.0.0.0:"));
    let (_, err) = env.code(125, &["port", &web, "8080"]);
    assert!(err.contains("no public port 8080"), "{err}");

    // Two stopped, one running: prune takes the stopped ones only, after
    // asking (refused without a terminal unless -f).
    let a = env.ok(&["create", &img, "true"]).trim().to_string();
    let b = env.ok(&["run", "-d", &img, "true"]).trim().to_string();
    wait_for("b exited", || env.status(&b) == "exited");
    let (_, err) = env.code(125, &["container", "prune"]);
    assert!(err.contains("--force"), "{err}");
    let out = env.ok(&["container", "prune", "-f"]);
    let mut gone: Vec<&str> = out.lines().collect();
    gone.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(gone, want);
    let left = env.ids();
    assert!(left.contains(&talker) && left.contains(&web), "{left:?}");

    let df: serde_json::Value =
        serde_json::from_str(&env.ok(&["system", "df", "--format", "json"])).unwrap();
    assert_eq!(df["Containers"]["Total"], 2, "{df}");
    assert_eq!(df["Containers"]["Active"], 2, "{df}");
    assert_eq!(df["Images"]["Total"], 1, "{df}");
    assert_eq!(df["Images"]["Active"], 1, "{df}");
    assert!(df["Images"]["Size"].as_u64().unwrap() > 1_000_000, "{df}");
    let table = env.ok(&["system", "df"]);
    assert!(table.contains("Local Volumes"), "{table}");
    for id in [&talker, &web] {
        env.ok(&["rm", "-f", id]);
    }
}

#[test]
fn cp_to_a_new_name_exec_term_and_top_with_ps_options() {
    let env = Env::new();
    let id = env.run_d(&["--network", "none"], &["sleep", "1000"]);
    let src = env.sb.path().join("note.txt");
    std::fs::write(&src, "hello\n").unwrap();
    // A new name in an existing directory, then over a file there.
    env.ok(&["cp", src.to_str().unwrap(), &format!("{id}:/tmp/renamed")]);
    assert_eq!(env.ok(&["exec", &id, "cat", "/tmp/renamed"]), "hello\n");
    std::fs::write(&src, "again\n").unwrap();
    env.ok(&["cp", src.to_str().unwrap(), &format!("{id}:/tmp/renamed")]);
    assert_eq!(env.ok(&["exec", &id, "cat", "/tmp/renamed"]), "again\n");
    // Into a directory it keeps its own name.
    env.ok(&["cp", src.to_str().unwrap(), &format!("{id}:/tmp")]);
    assert_eq!(env.ok(&["exec", &id, "cat", "/tmp/note.txt"]), "again\n");
    // A missing directory is named, once.
    let (_, err) = env.code(
        125,
        &["cp", src.to_str().unwrap(), &format!("{id}:/nodir/x")],
    );
    assert!(err.contains("/nodir"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");

    assert_eq!(
        env.ok(&["exec", "-t", &id, "sh", "-c", "echo $TERM"])
            .trim(),
        "xterm"
    );
    assert_eq!(
        env.ok(&["exec", &id, "sh", "-c", "echo ${TERM:-none}"])
            .trim(),
        "none"
    );

    let top = env.ok(&["top", &id, "-eo", "pid,args"]);
    let lines: Vec<&str> = top.lines().collect();
    assert!(lines[0].contains("PID"), "{top}");
    assert_eq!(lines.len(), 2, "only the container's process: {top}");
    assert!(lines[1].ends_with("sleep 1000"), "{top}");
    let (_, err) = env.code(125, &["top", &id, "-o", "comm"]);
    assert!(err.contains("PID column"), "{err}");
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn exec_detached_prints_its_session_id_and_leaves_the_process_running() {
    let env = Env::new();
    let id = env.run_d(&["--network", "none"], &["sleep", "1000"]);
    let started = std::time::Instant::now();
    let out = env.ok(&[
        "exec",
        "-d",
        &id,
        "sh",
        "-c",
        "echo $$ > /tmp/exec.pid; exec sleep 777",
    ]);
    // Back at once, the process not waited for.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let session = out.trim();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        session.len() == 64 && session.chars().all(|c| c.is_ascii_hexdigit()),
        "a session ID: {out:?}"
    );
    // Still running after exec returned: top lists it, under the pid it
    // wrote.
    wait_for("the exec'd sleep in top", || {
        env.ok(&["top", &id, "-eo", "pid,args"])
            .contains("sleep 777")
    });
    let pid = env.ok(&["exec", &id, "cat", "/tmp/exec.pid"]);
    let top = env.ok(&["top", &id, "-eo", "pid,args"]);
    assert!(top.lines().any(|l| l.ends_with("sleep 777")), "{top}");
    assert!(!pid.trim().is_empty(), "{pid:?}");
    // The ID is the session's: its exec_start event carries it, and a
    // second session has another.
    let other = env.ok(&["exec", "-d", &id, "true"]).trim().to_string();
    assert_ne!(other, session);
    let events = env.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "event=exec_start",
        "--format",
        "{{.Actor.Attributes.execID}} {{.Actor.Attributes.execCommand}}",
    ]);
    assert!(
        events.contains(&format!("{session} sh -c echo $$")),
        "{events}"
    );
    assert!(events.contains(&format!("{other} true")), "{events}");
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn info_and_version_say_what_this_host_and_store_are() {
    let env = Env::new();
    let id = env.run_d(&["--network", "none"], &["sleep", "1000"]);
    let info: serde_json::Value =
        serde_json::from_str(&env.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(info["Store"]["Containers"], 1, "{info}");
    assert_eq!(info["Store"]["Running"], 1, "{info}");
    assert_eq!(info["Store"]["Images"], 1, "{info}");
    assert_eq!(
        info["Store"]["GraphRoot"],
        env.sb.root().display().to_string()
    );
    let cg = info["Host"]["CgroupVersion"].as_str().unwrap();
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(cg == "v2", unified, "{info}");
    assert!(info["Host"]["Runtimes"][0] == "berth", "{info}");
    let text = env.ok(&["info"]);
    assert!(text.contains("GraphDriver: overlay"), "{text}");
    assert_eq!(env.ok(&["info", "-f", "{{.Store.Running}}"]), "1\n");

    let banner = env.ok(&["--version"]);
    let v = env.ok(&["version", "-f", "{{.Version}}"]);
    assert!(banner.contains(v.trim()), "{banner} vs {v}");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(env.ok(&["version"]).contains(kernel.trim()));
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn export_writes_the_containers_filesystem_as_tar() {
    let env = Env::new();
    let id = env.run_d(
        &["--network", "none"],
        &["sh", "-c", "echo made > /made; sleep 1000"],
    );
    wait_for("the file made", || {
        env.berth(&["exec", &id, "cat", "/made"]).status.success()
    });
    let out = env.sb.path().join("fs.tar");
    env.ok(&["export", "-o", out.to_str().unwrap(), &id]);
    let list = std::process::Command::new("tar")
        .arg("tf")
        .arg(&out)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    for want in ["made", "bin/busybox", "etc/passwd"] {
        assert!(names.lines().any(|l| l == want), "{want} in {names}");
    }
    // To stdout, and the same through `container export`.
    let piped = env.berth(&["container", "export", &id]);
    assert!(piped.status.success());
    assert_eq!(
        piped.stdout.len() as u64,
        std::fs::metadata(&out).unwrap().len()
    );
    let (_, err) = env.code(125, &["export", "-o", env.sb.path().to_str().unwrap(), &id]);
    assert!(err.contains("is a directory"), "{err}");
    env.ok(&["rm", "-f", &id]);
}

/// Runs berth on a terminal, typing `keys` once it is attached; its exit
/// status.
fn on_a_terminal(env: &Env, args: &[&str], keys: &[u8]) -> std::process::ExitStatus {
    let line = format!(
        "{} {}",
        env.cmd_line(),
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    crate::support::on_a_terminal(&line, keys, std::time::Duration::from_millis(1500)).status
}

#[test]
fn detach_keys_leave_the_container_running() {
    if !crate::support::have("script") {
        eprintln!("SKIPPED: script (bsdutils) is not installed");
        return;
    }
    let env = Env::new();
    let img = env.image.clone();
    // ctrl-p ctrl-q: run -it returns 0, the container runs on.
    let st = on_a_terminal(
        &env,
        &["run", "-it", "--name", "det", &img, "sh"],
        b"\x10\x11",
    );
    assert!(st.success(), "{st:?}");
    assert_eq!(env.status("det"), "running");
    // attach, then its own keys.
    let st = on_a_terminal(
        &env,
        &["attach", "--detach-keys", "ctrl-a,x", "det"],
        b"\x01x",
    );
    assert!(st.success(), "{st:?}");
    assert_eq!(env.status("det"), "running");
    // exec -it likewise, its process left running.
    let st = on_a_terminal(&env, &["exec", "-it", "det", "sleep", "300"], b"\x10\x11");
    assert!(st.success(), "{st:?}");
    let ps = env.ok(&["top", "det"]);
    assert!(ps.contains("sleep 300"), "{ps}");
    let (_, err) = env.code(125, &["attach", "--detach-keys", "ctrl-1", "det"]);
    assert!(err.contains("ctrl-1"), "{err}");
    env.ok(&["rm", "-f", "det"]);
}

#[test]
fn system_prune_all_with_volumes_and_userns_host() {
    let env = Env::new();
    let stopped = env.ok(&["create", "--name", "idle", &env.image, "true"]);
    env.ok(&["volume", "create", "unused"]);
    env.ok(&["volume", "create", "kept"]);
    let running = env.run_d(&["-v", "kept:/k"], &["sleep", "1000"]);
    let other = env.image_with(
        "other",
        crate::support::layer_tar(&[crate::support::E::File("other.txt", 0o644, b"x".to_vec())]),
    );
    env.ok(&["system", "prune", "-a", "--volumes", "-f"]);
    assert!(env.berth(&["inspect", stopped.trim()]).status.code() != Some(0));
    let ids = env.ids();
    assert_eq!(
        ids,
        vec![running.clone()],
        "only the running container stays"
    );
    let vols = env.ok(&["volume", "ls", "-q"]);
    assert_eq!(vols.trim(), "kept", "the used volume stays: {vols}");
    let images = env.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains("other"), "{images}");
    assert!(
        images.contains("busybox"),
        "the running container's image stays: {images}"
    );
    assert!(env.berth(&["image", "inspect", &other]).status.code() != Some(0));
    // --userns host: the host's user namespace, the whole id range.
    let map = env.ok(&[
        "run",
        "--rm",
        "--userns",
        "host",
        &env.image,
        "cat",
        "/proc/self/uid_map",
    ]);
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields, ["0", "0", "4294967295"], "{map}");
}

#[test]
fn inspect_times_are_rfc3339_with_nanoseconds_as_docker_writes_them() {
    let env = Env::new();
    let id = env.run_d(&[], &["sleep", "1000"]);
    let v = env.inspect(&id);
    for (what, t) in [
        ("Created", &v["Created"]),
        ("State.StartedAt", &v["State"]["StartedAt"]),
    ] {
        let t = t.as_str().unwrap_or_else(|| panic!("{what}: {v:#}"));
        // 2026-12-04T23:36:07.123456789Z: docker's time.RFC3339Nano.
        assert!(humantime::parse_rfc3339(t).is_ok(), "{what} {t:?}");
        assert!(t.ends_with('Z') && t.contains('.'), "{what} {t:?}");
    }
    let t = v["State"]["FinishedAt"].as_str().unwrap();
    assert_eq!(
        t, "0001-01-01T00:00:00Z",
        "docker's zero time while running"
    );
}

#[test]
fn a_missing_working_directory_is_made_as_docker_makes_it() {
    let env = Env::new();
    let out = env.ok(&[
        "run",
        "--rm",
        "-w",
        "/made/for/me",
        "--user",
        "65534",
        &env.image,
        "sh",
        "-c",
        "pwd; stat -c %u .",
    ]);
    assert_eq!(out, "/made/for/me\n65534\n");
}
