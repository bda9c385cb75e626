//! Bad input and attacks: every one gets one clear error, changes nothing
//! outside where it belongs and leaves nothing behind.

use std::os::unix::fs::symlink;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::support::*;

#[test]
fn malformed_configs_name_the_field() {
    let sb = Sandbox::new();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("/process/args", json!("sh"), "process.args"),
        (
            "/linux/namespaces/0/type",
            json!("bogus"),
            "linux.namespaces[0].type",
        ),
        ("/ociVersion", json!("2.0.0"), "ociVersion"),
        ("/process/cwd", json!("relative"), "process.cwd"),
        (
            "/process/rlimits",
            json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]),
            "process.rlimits[0]",
        ),
        (
            "/process/capabilities/bounding",
            json!(["CAP_BOGUS"]),
            "process.capabilities.bounding",
        ),
        ("/process/user/umask", json!(4096), "process.user.umask"),
        ("/process/oomScoreAdj", json!(5000), "process.oomScoreAdj"),
        (
            "/linux/sysctl",
            json!({"kernel.panic": "1"}),
            "linux.sysctl.kernel.panic",
        ),
        (
            "/linux/rootfsPropagation",
            json!("sideways"),
            "linux.rootfsPropagation",
        ),
        (
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_NOPE"}),
            "linux.seccomp.defaultAction",
        ),
        (
            "/linux/devices",
            json!([{"path": "/etc/passwd", "type": "c", "major": 1, "minor": 3}]),
            "linux.devices[0].path",
        ),
        (
            "/linux/resources/devices",
            json!([{"allow": true, "access": "rwx"}]),
            "linux.resources.devices[0].access",
        ),
        ("/mounts/0/destination", json!(""), "mounts[0].destination"),
    ];
    for (pointer, value, field) in cases {
        let mut b = sb.bundle(&["true"]);
        b.set(pointer, value);
        let err = create_fails(&sb, &b, "badcfg");
        assert!(
            err.contains(field),
            "{pointer}: error does not name {field}: {err}"
        );
    }
}

#[test]
fn hostname_without_uts_namespace_and_net_sysctl_without_netns() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    let ns: Vec<serde_json::Value> = b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "uts" && n["type"] != "network")
        .cloned()
        .collect();
    b.set("/linux/namespaces", json!(ns));
    let err = create_fails(&sb, &b, "nouts");
    assert!(err.contains("hostname"), "{err}");
    b.set("/hostname", serde_json::Value::Null);
    b.set("/linux/sysctl", json!({"net.ipv4.ip_forward": "1"}));
    let err = create_fails(&sb, &b, "nonet");
    assert!(
        err.contains("net.ipv4.ip_forward") && err.contains("net namespace"),
        "{err}"
    );
    // Joining the host's own network namespace by path is no better.
    let before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host = format!("/proc/{}/ns/net", std::process::id());
    b.push(
        "/linux/namespaces",
        json!({"type": "network", "path": host}),
    );
    let err = create_fails(&sb, &b, "hostnet");
    assert!(err.contains("net.ipv4.ip_forward"), "{err}");
    let after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(before, after);
}

#[test]
fn truncated_and_missing_configs() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["true"]);
    b.save();
    let raw = std::fs::read(b.dir.join("config.json")).unwrap();
    std::fs::write(b.dir.join("config.json"), &raw[..raw.len() / 2]).unwrap();
    let id = sb.id("trunc");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("config.json") && err.contains("EOF"),
        "{err}"
    );
    assert_gone(&sb, &id);

    let out = sb.rt(&["create", "--bundle", "/no/such/bundle", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/bundle"));
    assert_gone(&sb, &id);
}

#[test]
fn unsafe_and_duplicate_ids() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sleep", "100"]);
    b.save();
    for id in ["../escape", "a/b", ".", "..", "", ".hidden", "x y"] {
        let out = sb.rt(&["create", "--bundle", b.path(), id]);
        assert!(!out.status.success(), "{id:?} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid container id"),
            "{id:?}"
        );
    }
    assert!(!sb.dir.path().join("escape").exists());
    let entries: Vec<_> = std::fs::read_dir(&sb.root)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(entries.is_empty(), "state dirs were made: {entries:?}");

    let id = sb.id("dup");
    sb.ok(&["create", "--bundle", b.path(), &id]);
    let pid = sb.state(&id)["pid"].clone();
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(
        sb.state(&id)["pid"],
        pid,
        "the first container was disturbed"
    );
}

#[test]
fn symlinks_in_the_rootfs_cannot_reach_the_host() {
    let sb = Sandbox::new();
    let host = sb.dir.path().join("host-secret");
    std::fs::create_dir(&host).unwrap();
    let mut b = sb.bundle(&["sh", "-c", "ls /evil /up"]);
    symlink(&host, b.rootfs().join("evil")).unwrap();
    symlink("../../../../../../../..", b.rootfs().join("up")).unwrap();
    b.push(
        "/mounts",
        json!({"destination": "/evil/mnt", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/up/tmp/mnt2", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.set(
        "/linux/devices",
        json!([{"path": "/dev/../evil/dev", "type": "c", "major": 1, "minor": 3}]),
    );
    let id = sb.id("symlink");
    let (_code, _, _) = sb.run(&b, &id);
    assert_eq!(
        std::fs::read_dir(&host).unwrap().count(),
        0,
        "something was made in the host directory"
    );
    assert!(!std::path::Path::new("/tmp/mnt2").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("host-secret") && !mounts.contains("/tmp/mnt2"));
    assert_gone(&sb, &id);
}

#[test]
fn a_symlinked_proc_is_refused() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["true"]);
    std::fs::remove_dir(b.rootfs().join("proc")).unwrap();
    symlink("/tmp", b.rootfs().join("proc")).unwrap();
    let err = create_fails(&sb, &b, "procsym");
    assert!(err.contains("must not be a symlink"), "{err}");
}

#[test]
fn racing_symlink_swaps_do_not_escape() {
    // A process flips a path in the rootfs between a directory and a link
    // to the host while containers mount onto it.
    let sb = Sandbox::new();
    let host = sb.dir.path().join("host-target");
    std::fs::create_dir(&host).unwrap();
    let mut b = sb.bundle(&["true"]);
    b.push(
        "/mounts",
        json!({"destination": "/race/sub", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.save();
    let race = b.rootfs().join("race");
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (race, host, stop) = (race.clone(), host.clone(), stop.clone());
        std::thread::spawn(move || {
            let tmp = race.with_file_name("race.tmp");
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(&tmp);
                let _ = symlink(&host, &tmp);
                let _ = std::fs::rename(&tmp, &race);
                let _ = std::fs::remove_file(&race);
                let _ = std::fs::create_dir(&race);
                let _ = std::fs::remove_dir_all(&race);
            }
        })
    };
    for _ in 0..20 {
        let id = sb.id("race");
        let _ = sb.rt(&["run", "--bundle", b.path(), &id]);
        let _ = sb.rt(&["delete", "--force", &id]);
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    assert_eq!(
        std::fs::read_dir(&host).unwrap().count(),
        0,
        "a container wrote into the host directory"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("host-target"));
}

#[test]
fn a_failed_mount_leaves_nothing_behind() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    b.push("/mounts", json!({"destination": "/x", "type": "bind", "source": "/no/such/source", "options": ["bind"]}));
    let err = create_fails(&sb, &b, "badmount");
    assert!(
        err.contains("mounts[") && err.contains("/no/such/source"),
        "{err}"
    );
    let mut b = sb.bundle(&["true"]);
    b.push(
        "/mounts",
        json!({"destination": "/x", "type": "nosuchfs", "source": "x"}),
    );
    let err = create_fails(&sb, &b, "badfs");
    assert!(err.contains("mount nosuchfs"), "{err}");
    let mut b = sb.bundle(&["true"]);
    b.set("/linux/sysctl", json!({"net.ipv4.no_such_knob": "1"}));
    let err = create_fails(&sb, &b, "badsysctl");
    assert!(err.contains("net.ipv4.no_such_knob"), "{err}");
}

#[test]
fn the_container_starts_in_its_configured_cwd_with_no_host_cwd() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "readlink /proc/self/cwd; readlink /proc/self/root; ls /proc/1/cwd/ | head -1",
    ]);
    std::fs::create_dir_all(b.rootfs().join("work")).unwrap();
    b.set("/process/cwd", json!("/work"));
    let out = sb.output(&b, "cwd");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/work");
    assert_eq!(lines[1], "/");
}

#[test]
fn a_runtime_killed_mid_create_leaves_a_record_delete_can_clear() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sleep", "1000"]);
    // The hook runs as the runtime's child: it kills the runtime half-way.
    b.set(
        "/hooks/createRuntime",
        json!([{"path": "/bin/sh", "args": ["sh", "-c", "kill -9 $PPID"]}]),
    );
    b.save();
    let id = sb.id("crashed");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(!out.status.success());
    // The cgroup was made before the crash; the record says so.
    assert!(!cgroup_dirs(&id).is_empty());
    let st = sb.state(&id);
    assert_eq!(st["status"], "stopped");
    sb.ok(&["delete", &id]);
    assert_gone(&sb, &id);
    // The half-made container's process saw the runtime go and left too.
    crate::lifecycle::wait_for(|| {
        processes_with(&format!("create --bundle {}", b.path())).is_empty()
    });
}

#[test]
fn nul_bytes_and_oversized_configs_are_refused() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    b.set("/process/args", json!(["sh", "-c", "echo a\u{0}b"]));
    let err = create_fails(&sb, &b, "nul");
    assert!(
        err.contains("process.args[2]") && err.contains("NUL"),
        "{err}"
    );
    let mut b = sb.bundle(&["true"]);
    b.push("/process/env", json!("A=b\u{0}c"));
    let err = create_fails(&sb, &b, "nulenv");
    assert!(err.contains("process.env["), "{err}");

    let b = sb.bundle(&["true"]);
    b.save();
    // 65 MiB of whitespace is valid JSON framing but not a config to read.
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(b.dir.join("config.json"))
        .unwrap();
    f.set_len(65 << 20).unwrap();
    let id = sb.id("huge");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MiB is refused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_gone(&sb, &id);
}

#[test]
fn the_runtime_binary_and_host_fds_are_out_of_the_containers_reach() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["true"]);
    b.save();
    let id = sb.id("exe");
    // Created, not started: the init still runs the runtime's code.
    sb.ok(&["create", "--bundle", b.path(), &id]);
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    // Its /proc/<pid>/exe is a view of the binary that no write reaches
    // (without it, the host's root would get ETXTBSY, and later succeed).
    let e = std::fs::OpenOptions::new()
        .append(true)
        .open(format!("/proc/{pid}/exe"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    // It holds nothing of the host's beyond the fifo, /proc and its channel.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_link(e.path()).unwrap().display().to_string())
        .collect();
    assert!(fds.len() <= 6, "{fds:?}");
    assert!(
        !fds.iter().any(|f| f.starts_with("/sys/fs/cgroup")),
        "{fds:?}"
    );
    // And a process of the container cannot look into it (it may list
    // the fd numbers, but not follow them).
    let probe = "for f in /proc/1/exe /proc/1/fd/0 /proc/1/environ /proc/self/environ; do \
                 cat $f > /dev/null 2>&1 && echo \"read $f\"; done";
    let out = sb.ok(&["exec", &id, "sh", "-c", probe]);
    assert_eq!(out.trim(), "read /proc/self/environ");
}

#[test]
fn a_runtime_on_a_read_only_mount_runs_as_it_is_and_stays_out_of_reach() {
    // A binary no container can write needs no protective copy
    // (docs/runtime.md): from a read-only install, create runs without
    // re-executing itself, and the created init's exe, the installed file
    // itself, cannot be opened for writing. From a writable install the
    // init runs from the protective view instead.
    let sb = Sandbox::new();
    let dir = sb.dir.path().join("ro-install");
    std::fs::create_dir(&dir).unwrap();
    let sh = |cmd: &str| {
        let ok = std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .unwrap();
        assert!(ok.success(), "{cmd}");
    };
    let d = dir.display();
    sh(&format!(
        "mount -t tmpfs tmpfs {d} && cp {} {d}/ && mount -o remount,ro {d}",
        bin()
    ));
    let ro = dir.join("berth-runtime");
    let b = sb.bundle(&["true"]);
    b.save();
    let id = sb.id("roexe");
    // Not through pipes: the created init keeps the runtime's stdio.
    let err = sb.dir.path().join("ro-create.err");
    let status = std::process::Command::new(&ro)
        .arg("--root")
        .arg(&sb.root)
        .args(["create", "--bundle", b.path(), &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    let exe = format!("/proc/{pid}/exe");
    assert_eq!(std::fs::read_link(&exe).unwrap(), ro, "re-executed");
    let e = std::fs::OpenOptions::new()
        .append(true)
        .open(&exe)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");

    let id = sb.id("rwexe");
    sb.ok(&["create", "--bundle", b.path(), &id]);
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_ne!(exe, std::path::Path::new(bin()), "not re-executed");
}
