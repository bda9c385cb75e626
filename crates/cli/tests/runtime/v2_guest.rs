//! cgroup v2 (and systemd) code paths, in a throw-away guest booted with
//! cgroup_no_v1=all. The host test boots the guest and runs this test
//! binary's `guest_*` tests there; they are #[ignore]d on the host.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use crate::lifecycle::wait_for;
use crate::support::*;

/// The guest run of this binary's `filter` tests, with the runtime's
/// directory shared.
fn run_in_vm(systemd: bool, filter: &str) -> Option<(i32, String)> {
    let target = PathBuf::from(bin()).parent().unwrap().to_path_buf();
    crate::vm::run_in_vm(systemd, filter, &target)
}

#[test]
fn cgroup_v2_paths_in_a_guest() {
    let Some((code, out)) = run_in_vm(false, "guest_v2_") else {
        return;
    };
    assert_eq!(code, 0, "guest tests failed:\n{out}");
    assert!(out.contains("test result: ok"), "{out}");
    let passed = out
        .lines()
        .filter(|l| l.starts_with("test ") && l.ends_with(" ok"))
        .count();
    assert!(passed >= 4, "too few guest tests ran:\n{out}");
}

#[test]
fn systemd_driver_in_a_guest() {
    let Some((code, out)) = run_in_vm(true, "guest_systemd_") else {
        return;
    };
    assert_eq!(code, 0, "guest tests failed:\n{out}");
    assert!(out.contains("test result: ok. 1 passed"), "{out}");
}

#[test]
fn systemd_driver_without_systemd_is_a_clear_error() {
    if std::path::Path::new("/run/systemd/system").exists() {
        eprintln!("SKIPPED: systemd runs here");
        return;
    }
    let sb = Sandbox::new();
    let b = sb.bundle(&["true"]);
    b.save();
    let id = sb.id("nosystemd");
    let out = sb.rt(&["--systemd-cgroup", "create", "--bundle", b.path(), &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs systemd"));
    assert_gone(&sb, &id);
}

fn guest_only() {
    assert!(
        std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        "guest tests run on a pure cgroup v2 host (run them through cgroup_v2_paths_in_a_guest)"
    );
}

fn cg_file(id: &str, file: &str) -> String {
    let dir = cgroup_dirs(id)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no cgroup for {id}"));
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .trim()
        .to_string()
}

#[test]
#[ignore]
fn guest_v2_resources() {
    guest_only();
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sleep", "1000"]);
    b.set(
        "/linux/resources/memory",
        json!({"limit": 67108864, "reservation": 33554432, "swap": 100663296}),
    );
    b.set(
        "/linux/resources/cpu",
        json!({"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}),
    );
    b.set("/linux/resources/pids", json!({"limit": 40}));
    b.set("/linux/resources/blockIO", json!({"weight": 500}));
    b.set(
        "/linux/resources/unified",
        json!({"memory.high": "61440000"}),
    );
    let id = sb.id("v2res");
    sb.start(&b, &id);
    assert_eq!(cg_file(&id, "memory.max"), "67108864");
    assert_eq!(cg_file(&id, "memory.low"), "33554432");
    assert_eq!(cg_file(&id, "memory.swap.max"), "33554432");
    assert_eq!(cg_file(&id, "memory.high"), "61440000");
    assert_eq!(cg_file(&id, "cpu.weight"), "39");
    assert_eq!(cg_file(&id, "cpu.max"), "50000 100000");
    assert_eq!(cg_file(&id, "cpuset.cpus"), "0");
    assert_eq!(cg_file(&id, "pids.max"), "40");
    let stats: serde_json::Value =
        serde_json::from_str(&sb.ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(stats["data"]["memory"]["usage"]["limit"], 67108864);
    assert!(stats["data"]["pids"]["current"].as_u64().unwrap() >= 1);
    sb.ok(&["update", "--pids-limit", "41", "--memory", "96m", &id]);
    assert_eq!(cg_file(&id, "pids.max"), "41");
    assert_eq!(cg_file(&id, "memory.max"), (96u64 << 20).to_string());
    sb.ok(&["delete", "--force", &id]);
    assert_gone(&sb, &id);
}

#[test]
#[ignore]
fn guest_v2_device_filter() {
    guest_only();
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", "mknod /tmp/mem c 1 1 2>&1; echo mem=$?; head -c1 /dev/full >/dev/null && echo full-read; (echo x > /dev/full) 2>&1; echo x > /dev/null && echo null-ok"]);
    b.set(
        "/linux/resources/devices",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 7, "access": "w"}
        ]),
    );
    b.add_cap("CAP_MKNOD");
    let out = sb.output(&b, "v2dev");
    assert!(out.contains("mem=1"), "{out}");
    assert!(
        out.contains("full-read") && out.contains("null-ok"),
        "{out}"
    );
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
#[ignore]
fn guest_v2_freezer_cgroupns_and_oom() {
    guest_only();
    let sb = Sandbox::new();
    // The template has a cgroup namespace on a v2 host.
    let b = sb.bundle(&[
        "sh",
        "-c",
        "cat /proc/self/cgroup; ls /sys/fs/cgroup/memory.max && echo own-cgroup",
    ]);
    assert!(
        b.config["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "cgroup"}))
    );
    let out = sb.output(&b, "v2ns");
    assert!(
        out.starts_with("0::/\n") && out.contains("own-cgroup"),
        "{out}"
    );

    let b = sb.bundle(&[
        "sh",
        "-c",
        "while :; do date +%s%N > /tmp/t; sleep 0.01; done",
    ]);
    let id = sb.id("v2freeze");
    sb.start(&b, &id);
    wait_for(|| b.rootfs().join("tmp/t").exists());
    sb.ok(&["pause", &id]);
    assert_eq!(sb.state(&id)["status"], "paused");
    assert_eq!(cg_file(&id, "cgroup.freeze"), "1");
    sb.ok(&["resume", &id]);
    assert_eq!(sb.state(&id)["status"], "running");

    let mut b = sb.bundle(&["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a)"]);
    b.set("/linux/resources/memory", json!({"limit": 16777216}));
    let id = sb.id("v2oom");
    let (code, _, _) = sb.run(&b, &id);
    assert_ne!(code, 0);
}

#[test]
#[ignore]
fn guest_v2_exec_and_relative_paths() {
    guest_only();
    let sb = Sandbox::new();
    let b = sb.bundle(&["sleep", "1000"]);
    let id = sb.id("v2exec");
    sb.start(&b, &id);
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
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    // Seen from the host, the exec'd process is in the container's cgroup,
    // which sits beside the runtime's own (a relative cgroupsPath).
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.trim().ends_with(&format!("/{id}")), "{cg}");
    assert_eq!(cgroup_dirs(&id).len(), 1);
}

#[test]
#[ignore]
fn guest_systemd_scope() {
    assert!(
        std::path::Path::new("/run/systemd/system").exists(),
        "systemd is not PID 1"
    );
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sleep", "1000"]);
    let id = sb.id("sd");
    b.set(
        "/linux/cgroupsPath",
        json!(format!("system.slice:berth:{id}")),
    );
    b.set("/linux/resources/pids", json!({"limit": 33}));
    b.save();
    let out = sb.rt(&["--systemd-cgroup", "run", "-d", "--bundle", b.path(), &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(cg.trim(), format!("0::/system.slice/berth-{id}.scope"));
    let unit = format!("berth-{id}.scope");
    let active = Command::new("systemctl")
        .args(["is-active", &unit])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&active.stdout).trim(), "active");
    let max =
        std::fs::read_to_string(format!("/sys/fs/cgroup/system.slice/{unit}/pids.max")).unwrap();
    assert_eq!(max.trim(), "33");
    let t = std::time::Instant::now();
    sb.ok(&["delete", "--force", &id]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "delete took {:?}",
        t.elapsed()
    );
    let active = Command::new("systemctl")
        .args(["is-active", &unit])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&active.stdout).trim(), "active");
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/system.slice/{unit}")).exists());
}
