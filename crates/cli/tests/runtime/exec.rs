use serde_json::json;

use crate::lifecycle::wait_for;
use crate::support::*;

fn running(sb: &Sandbox, name: &str) -> (Bundle, String) {
    let mut b = sb.bundle(&["sleep", "1000"]);
    b.push("/process/env", json!("FROM_CONFIG=yes"));
    let id = sb.id(name);
    sb.start(&b, &id);
    wait_for(|| sb.state(&id)["status"] == "running");
    (b, id)
}

#[test]
fn exec_flags_shape_the_process() {
    let sb = Sandbox::new();
    let (_b, id) = running(&sb, "execflags");
    let out = sb.ok(&[
        "exec",
        "--cwd",
        "/tmp",
        "-e",
        "EXTRA=1",
        "-u",
        "1000:1000",
        "-g",
        "7",
        "--cap",
        "CAP_SYS_TIME",
        &id,
        "sh",
        "-c",
        "pwd; echo $FROM_CONFIG $EXTRA; id -u; id -g; id -G; grep CapBnd /proc/self/status",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/tmp");
    assert_eq!(lines[1], "yes 1");
    assert_eq!(lines[2], "1000");
    assert_eq!(lines[3], "1000");
    assert!(lines[4].split(' ').any(|g| g == "7"), "{}", lines[4]);
    let bnd = u64::from_str_radix(lines[5].split_whitespace().last().unwrap(), 16).unwrap();
    assert!(bnd & (1 << 25) != 0, "CAP_SYS_TIME was not added");
}

#[test]
fn exec_process_file_and_exit_codes() {
    let sb = Sandbox::new();
    let (_b, id) = running(&sb, "execproc");
    let proc_file = sb.dir.path().join("process.json");
    std::fs::write(&proc_file, serde_json::to_vec(&json!({
        "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["sh", "-c", "echo from file; exit 42"],
        "env": ["PATH=/bin"]
    })).unwrap()).unwrap();
    let out = sb.rt(&["exec", "--process", proc_file.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from file\n");

    std::fs::write(
        &proc_file,
        r#"{"cwd": "relative", "user": {"uid": 0, "gid": 0}, "args": ["true"]}"#,
    )
    .unwrap();
    let out = sb.rt(&["exec", "--process", proc_file.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cwd"));

    std::fs::write(
        &proc_file,
        r#"{"cwd": "/", "user": {"uid": "root"}, "args": ["true"]}"#,
    )
    .unwrap();
    let out = sb.rt(&["exec", "--process", proc_file.to_str().unwrap(), &id]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("user.uid"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = sb.rt(&["exec", &id, "no-such-binary"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found"));

    let out = sb.rt(&["exec", &id, "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn exec_detached_writes_a_pid_file() {
    let sb = Sandbox::new();
    let (_b, id) = running(&sb, "execdetach");
    let pid_file = sb.dir.path().join("exec.pid");
    sb.ok(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "999",
    ]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmd.starts_with("sleep"), "{cmd}");
    let pids: Vec<i32> = serde_json::from_str(&sb.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(
        pids.contains(&pid),
        "exec'd process is not in the container's cgroup"
    );
}

#[test]
fn exec_is_refused_in_paused_and_stopped_containers() {
    let sb = Sandbox::new();
    let (_b, id) = running(&sb, "execpaused");
    sb.ok(&["pause", &id]);
    let out = sb.rt(&["exec", &id, "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("paused"));
    sb.ok(&["resume", &id]);
    sb.ok(&["kill", &id, "KILL"]);
    wait_for(|| sb.state(&id)["status"] == "stopped");
    let out = sb.rt(&["exec", &id, "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
}

#[test]
fn exec_takes_the_containers_seccomp_and_no_new_privs() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sleep", "1000"]);
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}),
    );
    let id = sb.id("execsec");
    sb.start(&b, &id);
    let out = sb.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "grep -E 'Seccomp:|NoNewPrivs' /proc/self/status; mkdir /tmp/d 2>&1 || true",
    ]);
    assert!(
        out.contains("Seccomp:\t2") && out.contains("NoNewPrivs:\t1"),
        "{out}"
    );
    assert!(out.contains("Permission denied"), "{out}");
}

#[test]
fn exec_in_a_user_namespace_container() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sleep", "1000"]);
    b.push("/linux/namespaces", json!({"type": "user"}));
    b.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
    );
    b.set(
        "/linux/gidMappings",
        json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
    );
    assert!(
        std::process::Command::new("chown")
            .args(["-R", "200000:200000"])
            .arg(b.rootfs())
            .status()
            .unwrap()
            .success()
    );
    let id = sb.id("execuserns");
    sb.start(&b, &id);
    let out = sb.ok(&[
        "exec",
        "-u",
        "1000",
        &id,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["1000", "0", "200000", "65536"], "{out}");
    let pids: Vec<i32> = serde_json::from_str(&sb.ok(&["ps", "--format", "json", &id])).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pids[0])).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("200000")),
        "host view: {status}"
    );
}
