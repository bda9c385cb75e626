use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::json;

use crate::support::*;

/// The container's directory in the v1 hierarchy of `controller`.
fn host_dir(id: &str, controller: &str) -> std::path::PathBuf {
    cgroup_dirs(id)
        .into_iter()
        .find(|d| d.starts_with(format!("/sys/fs/cgroup/{controller}/")))
        .unwrap_or_else(|| panic!("no {controller} cgroup for {id}"))
}

/// These tests read v1 files; v2 is covered in the guest (v2_guest.rs).
fn v1_host() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory").is_dir()
}

fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

#[test]
fn resources_land_in_the_cgroup_files() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sleep", "1000"]);
    b.set(
        "/linux/resources/memory",
        json!({"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10}),
    );
    b.set(
        "/linux/resources/cpu",
        json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}),
    );
    b.set("/linux/resources/pids", json!({"limit": 50}));
    b.set(
        "/linux/resources/hugepageLimits",
        json!([{"pageSize": "2MB", "limit": 4194304}]),
    );
    let id = sb.id("res");
    sb.start(&b, &id);
    if v1_host() {
        let mem = host_dir(&id, "memory");
        assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&mem, "memory.soft_limit_in_bytes"), "33554432");
        assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "134217728");
        assert_eq!(read(&mem, "memory.swappiness"), "10");
        let cpu = host_dir(&id, "cpu");
        assert_eq!(read(&cpu, "cpu.shares"), "512");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&host_dir(&id, "cpuset"), "cpuset.cpus"), "0");
        assert_eq!(read(&host_dir(&id, "pids"), "pids.max"), "50");
    }
    // hugetlb lives in the unified hierarchy on this hybrid host.
    let huge = cgroup_dirs(&id).into_iter().find(|d| {
        d.join("hugetlb.2MB.max").exists() || d.join("hugetlb.2MB.limit_in_bytes").exists()
    });
    let huge = huge.expect("a hugetlb cgroup");
    let v = std::fs::read_to_string(huge.join("hugetlb.2MB.max"))
        .or_else(|_| std::fs::read_to_string(huge.join("hugetlb.2MB.limit_in_bytes")))
        .unwrap();
    assert_eq!(v.trim(), "4194304");
    // And the container is in all of them.
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in own.lines() {
        assert!(
            line.ends_with(&format!("/{id}")),
            "not in its cgroup: {line}"
        );
    }
    sb.ok(&["delete", "--force", &id]);
    assert_gone(&sb, &id);
}

#[test]
fn absolute_cgroups_path_and_cleanup_of_made_parents() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["cat", "/proc/self/cgroup"]);
    let parent = format!("berth-abs-{}", std::process::id());
    b.set("/linux/cgroupsPath", json!(format!("/{parent}/inner")));
    let out = sb.output(&b, "abs");
    for line in out.lines() {
        assert!(line.ends_with(&format!("/{parent}/inner")), "{line}");
    }
    assert!(
        cgroup_dirs(&parent).is_empty(),
        "the parents made for it remain"
    );
}

#[test]
fn bad_cgroups_path_is_refused() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    b.set("/linux/cgroupsPath", json!("/../../escape"));
    b.save();
    let id = sb.id("cgbad");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("linux.cgroupsPath"));
    assert_gone(&sb, &id);
}

#[test]
fn a_cgroups_path_naming_the_root_is_refused() {
    let sb = Sandbox::new();
    for path in ["/", ".", "/./"] {
        let mut b = sb.bundle(&["true"]);
        b.set("/linux/cgroupsPath", json!(path));
        b.save();
        let id = sb.id("cgroot");
        let out = sb.rt(&["create", "--bundle", b.path(), &id]);
        assert!(!out.status.success(), "{path} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("linux.cgroupsPath"), "{path}: {err}");
        assert_gone(&sb, &id);
    }
}

#[test]
fn a_cgroup_with_processes_is_not_taken_over() {
    require!(v1_host(), "needs the v1 pids hierarchy");
    let sb = Sandbox::new();
    let name = format!("berth-busy-{}", std::process::id());
    let dir = std::path::Path::new("/sys/fs/cgroup/pids").join(&name);
    std::fs::create_dir(&dir).unwrap();
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    std::fs::write(dir.join("cgroup.procs"), other.id().to_string()).unwrap();
    let mut b = sb.bundle(&["true"]);
    b.set("/linux/cgroupsPath", json!(format!("/{name}")));
    b.save();
    let id = sb.id("cgbusy");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    let still_running = other.try_wait().unwrap().is_none();
    let _ = other.kill();
    let _ = other.wait();
    let _ = std::fs::remove_dir(&dir);
    assert!(!out.status.success(), "create took a busy cgroup");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already has 1 process"), "{err}");
    assert!(still_running, "the cgroup's process was killed");
    assert!(!sb.root.join(&id).exists());
    // The other hierarchies' directories, made by the failed create, are gone.
    let left: Vec<_> = cgroup_dirs(&name)
        .into_iter()
        .filter(|d| *d != dir)
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn delete_removes_cgroups_made_below_the_containers() {
    require!(v1_host(), "needs the v1 memory hierarchy");
    let sb = Sandbox::new();
    let b = sb.bundle(&["sleep", "60"]);
    let id = sb.id("nested");
    sb.start(&b, &id);
    let mem = host_dir(&id, "memory");
    std::fs::create_dir_all(mem.join("sub/deeper")).unwrap();
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    std::fs::write(mem.join("sub/deeper/cgroup.procs"), pid.to_string()).unwrap();
    sb.ok(&["delete", "--force", &id]);
    assert!(!mem.exists(), "{} remains", mem.display());
    assert_gone(&sb, &id);
}

#[test]
fn pids_limit_is_enforced() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 10 & done 2>&1; wait",
    ]);
    b.set("/linux/resources/pids", json!({"limit": 4}));
    let id = sb.id("pids");
    let (_, out, err) = sb.run(&b, &id);
    assert!(
        format!("{out}{err}").contains("Resource temporarily unavailable")
            || format!("{out}{err}").contains("can't fork"),
        "{out}{err}"
    );
}

#[test]
fn device_rules_deny_and_allow() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", "mknod /tmp/mem c 1 1 2>&1; echo mem=$?; mknod /tmp/null c 1 3 && echo null-ok; head -c1 /dev/full >/dev/null && echo full-read; (echo x > /dev/full) 2>&1; true"]);
    b.set(
        "/linux/resources/devices",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 7, "access": "w"}
        ]),
    );
    // mknod needs the capability; the device rules decide the rest.
    b.add_cap("CAP_MKNOD");
    let out = sb.output(&b, "devices");
    assert!(out.contains("mem=1"), "mknod of /dev/mem allowed: {out}");
    assert!(out.contains("null-ok"), "{out}");
    assert!(out.contains("full-read"), "{out}");
    assert!(
        out.contains("Operation not permitted"),
        "writing /dev/full allowed: {out}"
    );
}

#[test]
fn stats_and_oom_events() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        // Out of memory only once the test watches: it makes /tmp/go.
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; x=$(head -c 200000000 /dev/zero | tr '\\0' a); sleep 1000",
    ]);
    b.set(
        "/linux/resources/memory",
        json!({"limit": 33554432, "swap": 33554432}),
    );
    let id = sb.id("oom");
    sb.start(&b, &id);
    let stats: serde_json::Value =
        serde_json::from_str(&sb.ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["data"]["memory"]["usage"]["limit"], 33554432);
    assert!(stats["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    assert!(stats["data"]["pids"]["current"].as_u64().unwrap() >= 1);

    let mut events = sb
        .cmd()
        .args(["events", "--interval", "100ms", &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    // The stream is live once its first event is out.
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("\"stats\""), "{first}");
    std::fs::write(b.rootfs().join("tmp/go"), "").unwrap();
    let mut saw_oom = false;
    for line in lines.take(200) {
        let line = line.unwrap();
        let e: serde_json::Value = serde_json::from_str(&line).unwrap();
        if e["type"] == "oom" {
            assert_eq!(e["id"], id.as_str());
            saw_oom = true;
            break;
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(saw_oom, "no oom event");
}

#[test]
fn update_changes_limits_of_a_running_container() {
    require!(v1_host(), "not a cgroup v1 host");
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sleep", "1000"]);
    b.set("/linux/resources/pids", json!({"limit": 10}));
    b.set("/linux/resources/memory", json!({"limit": 67108864}));
    let id = sb.id("update");
    sb.start(&b, &id);
    sb.ok(&[
        "update",
        "--pids-limit",
        "20",
        "--memory",
        "128m",
        "--cpu-share",
        "256",
        &id,
    ]);
    assert_eq!(read(&host_dir(&id, "pids"), "pids.max"), "20");
    assert_eq!(
        read(&host_dir(&id, "memory"), "memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(read(&host_dir(&id, "cpu"), "cpu.shares"), "256");

    let res = sb.dir.path().join("res.json");
    std::fs::write(&res, r#"{"pids": {"limit": 30}}"#).unwrap();
    sb.ok(&["update", "--resources", res.to_str().unwrap(), &id]);
    assert_eq!(read(&host_dir(&id, "pids"), "pids.max"), "30");
    // The memory limit set before is kept.
    assert_eq!(
        read(&host_dir(&id, "memory"), "memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );

    std::fs::write(&res, r#"{"pids": {"limit": "many"}}"#).unwrap();
    let out = sb.rt(&["update", "--resources", res.to_str().unwrap(), &id]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pids.limit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sb.rt(&["update", "--memory", "lots", &id]);
    assert!(!out.status.success());
}
