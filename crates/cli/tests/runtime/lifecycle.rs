use serde_json::json;

use crate::support::*;

#[test]
fn runs_a_container_to_completion() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sh", "-c", "echo hello; echo oops >&2; exit 3"]);
    let id = sb.id("run");
    let (code, out, err) = sb.run(&b, &id);
    assert_eq!(code, 3);
    assert_eq!(out, "hello\n");
    assert_eq!(err, "oops\n");
    assert_gone(&sb, &id);
}

#[test]
fn create_start_state_kill_delete() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sleep", "1000"]);
    b.save();
    let id = sb.id("life");
    let pid_file = sb.dir.path().join("pid");
    sb.ok(&[
        "create",
        "--bundle",
        b.path(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);

    let st = sb.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["bundle"], b.path());
    let pid = st["pid"].as_i64().unwrap();
    // The pid file holds the number alone, as runc writes it.
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    // The user's program has not run yet: the init waits for start.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("sleep"));

    sb.ok(&["start", &id]);
    assert_eq!(sb.state(&id)["status"], "running");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).starts_with("sleep"));

    // A second start is refused.
    let out = sb.rt(&["start", &id]);
    assert!(!out.status.success());

    let out = sb.rt(&["delete", &id]);
    assert!(
        !out.status.success(),
        "delete of a running container must fail"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not stopped"));

    sb.ok(&["kill", &id, "KILL"]);
    wait_for(|| sb.state(&id)["status"] == "stopped");
    assert_eq!(sb.state(&id)["pid"], 0);
    let out = sb.rt(&["kill", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("container not running"));

    sb.ok(&["delete", &id]);
    assert_gone(&sb, &id);
    let out = sb.rt(&["state", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

pub fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("condition not met within 5s");
}

#[test]
fn kill_takes_names_and_numbers() {
    let sb = Sandbox::new();
    let b = sb.bundle(&[
        "sh",
        "-c",
        "trap 'echo got USR1 > /tmp/sig' USR1; touch /tmp/ready; while :; do sleep 0.05; done",
    ]);
    let id = sb.id("sig");
    sb.start(&b, &id);
    // The trap is set once the shell has written its marker.
    wait_for(|| b.rootfs().join("tmp/ready").exists());
    sb.ok(&["kill", &id, "usr1"]);
    // The redirect creates the file before echo writes it: wait for the words.
    let sig = b.rootfs().join("tmp/sig");
    wait_for(|| std::fs::read_to_string(&sig).is_ok_and(|s| s == "got USR1\n"));
    let out = sb.rt(&["kill", &id, "NOSUCHSIG"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown signal"));
    sb.ok(&["kill", &id, "9"]);
    wait_for(|| sb.state(&id)["status"] == "stopped");
}

#[test]
fn kill_all_reaches_every_process() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    let id = sb.id("killall");
    sb.start(&b, &id);
    wait_for(|| {
        serde_json::from_str::<Vec<i32>>(&sb.ok(&["ps", "--format", "json", &id]))
            .unwrap()
            .len()
            == 3
    });
    sb.ok(&["kill", "--all", &id, "KILL"]);
    wait_for(|| sb.ok(&["ps", "--format", "json", &id]).trim() == "[]");
    // --all on a stopped container is not an error (containerd relies on it).
    wait_for(|| sb.state(&id)["status"] == "stopped");
    sb.ok(&["kill", "--all", &id, "KILL"]);
}

#[test]
fn list_shows_containers_in_table_and_json() {
    let sb = Sandbox::new();
    assert_eq!(sb.ok(&["list", "--format", "json"]).trim(), "null");
    let b = sb.bundle(&["sleep", "1000"]);
    let id = sb.id("list");
    sb.start(&b, &id);
    let table = sb.ok(&["list"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&id) && row.contains("running") && row.contains("root"),
        "{row}"
    );
    let list: serde_json::Value =
        serde_json::from_str(&sb.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "running");
    assert_eq!(sb.ok(&["list", "-q"]).trim(), id);
}

#[test]
fn delete_force_stops_a_running_container() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sleep", "1000"]);
    let id = sb.id("force");
    sb.start(&b, &id);
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    sb.ok(&["delete", "--force", &id]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z")
        }
    );
    assert_gone(&sb, &id);
    // Deleting what is not there: an error, but not with --force.
    assert!(!sb.rt(&["delete", &id]).status.success());
    sb.ok(&["delete", "--force", &id]);
}

#[test]
fn delete_of_a_created_container_needs_force() {
    // The runtime-spec: deleting a container that is not stopped must fail
    // and have no effect; --force (what containerd and podman pass when
    // they mean it) kills its init and deletes it.
    let sb = Sandbox::new();
    let b = sb.bundle(&["true"]);
    b.save();
    let id = sb.id("created");
    sb.ok(&["create", "--bundle", b.path(), &id]);
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    let alive =
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"));
    let out = sb.rt(&["delete", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "deleted a created container");
    assert!(
        err.contains("not stopped") && err.contains("created"),
        "{err}"
    );
    assert_eq!(sb.state(&id)["status"], "created");
    assert!(alive(), "a refused delete killed the init");
    assert!(
        !cgroup_dirs(&id).is_empty(),
        "a refused delete removed the cgroups"
    );
    // Still startable: the refused delete had no effect.
    sb.ok(&["start", &id]);
    wait_for(|| sb.state(&id)["status"] == "stopped");
    sb.ok(&["delete", &id]);
    assert_gone(&sb, &id);

    let id = sb.id("created");
    sb.ok(&["create", "--bundle", b.path(), &id]);
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    sb.ok(&["delete", "--force", &id]);
    assert_gone(&sb, &id);
    let alive =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"));
    assert!(!alive, "the init of a deleted created container lives on");
}

#[test]
fn pause_and_resume_freeze_the_processes() {
    let sb = Sandbox::new();
    let b = sb.bundle(&[
        "sh",
        "-c",
        "while :; do date +%s%N > /tmp/tick; sleep 0.01; done",
    ]);
    let id = sb.id("pause");
    sb.start(&b, &id);
    let tick = b.rootfs().join("tmp/tick");
    wait_for(|| tick.exists());
    sb.ok(&["pause", &id]);
    assert_eq!(sb.state(&id)["status"], "paused");
    let before = std::fs::read_to_string(&tick).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert_eq!(
        std::fs::read_to_string(&tick).unwrap(),
        before,
        "a paused container ran"
    );
    assert!(!sb.rt(&["pause", &id]).status.success());
    sb.ok(&["resume", &id]);
    assert_eq!(sb.state(&id)["status"], "running");
    wait_for(|| std::fs::read_to_string(&tick).unwrap() != before);
    assert!(!sb.rt(&["resume", &id]).status.success());
}

#[test]
fn a_paused_created_container_starts_only_after_resume() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sh", "-c", "echo go > /tmp/started; sleep 60"]);
    b.save();
    let id = sb.id("pausecreated");
    sb.ok(&["create", "--bundle", b.path(), &id]);
    sb.ok(&["pause", &id]);
    assert_eq!(sb.state(&id)["status"], "paused");
    let out = sb.rt(&["start", &id]);
    assert!(!out.status.success(), "a frozen container was started");
    assert!(String::from_utf8_lossy(&out.stderr).contains("paused"));
    sb.ok(&["resume", &id]);
    assert_eq!(sb.state(&id)["status"], "created");
    sb.ok(&["start", &id]);
    wait_for(|| b.rootfs().join("tmp/started").exists());
    assert_eq!(sb.state(&id)["status"], "running");
}

#[test]
fn ps_lists_the_container_processes() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sh", "-c", "sleep 1000 & wait"]);
    let id = sb.id("ps");
    sb.start(&b, &id);
    wait_for(|| {
        serde_json::from_str::<Vec<i32>>(&sb.ok(&["ps", "-f", "json", &id]))
            .unwrap()
            .len()
            == 2
    });
    let table = sb.ok(&["ps", &id]);
    assert!(table.lines().next().unwrap().contains("PID"));
    assert!(table.contains("sleep 1000"), "{table}");
    let custom = sb.ok(&["ps", &id, "-o", "pid,comm"]);
    assert!(custom.contains("sleep"), "{custom}");
}

#[test]
fn features_are_truthful_json() {
    let sb = Sandbox::new();
    let f: serde_json::Value = serde_json::from_str(&sb.ok(&["features"])).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(
        f["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!("time"))
    );
    assert!(
        f["mountOptions"]
            .as_array()
            .unwrap()
            .contains(&json!("rro"))
    );
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert!(
        f["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("CAP_SYS_ADMIN"))
    );
    // Every mount option it claims is accepted in a real container.
    let opts: Vec<String> = f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .filter(|o| {
            !matches!(
                o.as_str(),
                "bind" | "rbind" | "tmpcopyup" | "mand" | "idmap" | "ridmap"
            )
        })
        .collect();
    let mut b = sb.bundle(&["true"]);
    b.push(
        "/mounts",
        json!({"destination": "/opts", "type": "tmpfs", "source": "tmpfs", "options": opts}),
    );
    sb.output(&b, "opts");
}

#[test]
fn spec_writes_a_runnable_template() {
    let sb = Sandbox::new();
    let dir = sb.dir.path().join("specdir");
    std::fs::create_dir(&dir).unwrap();
    sb.ok(&["spec", "--bundle", dir.to_str().unwrap()]);
    let out = sb.rt(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(!out.status.success(), "spec must not overwrite config.json");
    let rootless = sb.dir.path().join("rootless");
    std::fs::create_dir(&rootless).unwrap();
    sb.ok(&["spec", "--rootless", "--bundle", rootless.to_str().unwrap()]);
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rootless.join("config.json")).unwrap()).unwrap();
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"user") && !ns.contains(&"network"));
}

#[test]
fn version_and_go_style_single_dash_flags() {
    let out = std::process::Command::new(bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("berth-runtime version"));
    let sb = Sandbox::new();
    let b = sb.bundle(&["true"]);
    b.save();
    let id = sb.id("dash");
    // containerd's restore passes "-no-subreaper"; Go's flag package allows it.
    let out = sb.rt(&["run", "-bundle", b.path(), "-no-subreaper", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_log_records_errors_for_containerd() {
    let sb = Sandbox::new();
    let log = sb.dir.path().join("log.json");
    let out = sb
        .cmd()
        .args([
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "start",
            "no-such-ctr",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let line = std::fs::read_to_string(&log).unwrap();
    let entry: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(entry["level"], "error");
    assert!(entry["msg"].as_str().unwrap().contains("does not exist"));
    assert!(humantime::parse_rfc3339(entry["time"].as_str().unwrap()).is_ok());
    // And the plain message on stderr, which conmon passes to podman.
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn run_forwards_signals_to_the_container() {
    let sb = Sandbox::new();
    let b = sb.bundle(&[
        "sh",
        "-c",
        "trap 'echo caught TERM; exit 5' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    b.save();
    let id = sb.id("forward");
    let out_path = sb.dir.path().join("forward.out");
    let mut child = sb
        .cmd()
        .args(["run", "--bundle", b.path(), &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .spawn()
        .unwrap();
    wait_for(|| {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .contains("ready")
    });
    // SAFETY: integer arguments; the child is not waited for yet, so its
    // pid cannot be recycled.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5), "the container's exit code is run's");
    assert!(
        std::fs::read_to_string(&out_path)
            .unwrap()
            .contains("caught TERM")
    );
    assert_gone(&sb, &id);
}

#[test]
fn pidfd_socket_receives_a_pidfd_of_the_init() {
    use std::os::fd::{AsFd, AsRawFd};
    let sb = Sandbox::new();
    let b = sb.bundle(&["sleep", "1000"]);
    b.save();
    let sock = sb.dir.path().join("pidfd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let id = sb.id("pidfd");
    sb.ok(&[
        "create",
        "--pidfd-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.path(),
        &id,
    ]);
    let (conn, _) = listener.accept().unwrap();
    let fd = berth_runtime::recv_fd(conn.as_fd()).unwrap();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    assert!(info.lines().any(|l| l == format!("Pid:\t{pid}")), "{info}");
}

#[test]
fn a_start_whose_caller_died_after_the_release_is_finished_by_the_next() {
    // A caller of `start` (berthd, say) killed after it released the init
    // and before it recorded that: the next `start` must see the program
    // running, not wait for a release that already happened.
    let sb = Sandbox::new();
    let b = sb.bundle(&["sh", "-c", "echo go > /tmp/started; sleep 60"]);
    b.save();
    let id = sb.id("halfstarted");
    sb.ok(&["create", "--bundle", b.path(), &id]);
    let fifo = sb.root.join(&id).join("exec.fifo");
    {
        // What the dead caller did: open the fifo (which releases the
        // init), read its byte, and go.
        let f = std::fs::File::open(&fifo).unwrap();
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut &f, &mut byte).unwrap();
    }
    wait_for(|| b.rootfs().join("tmp/started").exists());
    let t0 = std::time::Instant::now();
    sb.ok(&["start", &id]);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(sb.state(&id)["status"], "running");
    assert!(!fifo.exists());
}
