//! The defaults a container gets (podman's), and the flags that change
//! them, seen from inside.

use crate::env::*;

fn status_field(out: &str, f: &str) -> u64 {
    let l = out
        .lines()
        .find(|l| l.starts_with(f))
        .unwrap_or_else(|| panic!("{f} in {out}"));
    u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn defaults_are_podmans_and_flags_change_them() {
    let env = Env::new();
    let img = env.image.clone();
    // podman's eleven default capabilities: chown(0) dac_override(1)
    // fowner(3) fsetid(4) kill(5) setgid(6) setuid(7) setpcap(8)
    // net_bind_service(10) sys_chroot(18) setfcap(31).
    let want: u64 = [0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 31]
        .iter()
        .map(|b| 1u64 << b)
        .sum();
    let out = env.ok(&["run", "--rm", &img, "cat", "/proc/self/status"]);
    assert_eq!(status_field(&out, "CapEff:"), want, "{out}");
    assert!(out.contains("Seccomp:\t2"), "a seccomp filter is on: {out}");
    let out = env.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "all",
        "--cap-add",
        "net_raw",
        &img,
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(status_field(&out, "CapEff:"), 1 << 13);
    // The profile refuses what the capabilities do not cover.
    let (out, _) = env.code(
        0,
        &[
            "run",
            "--rm",
            &img,
            "sh",
            "-c",
            "mkdir /m; mount -t tmpfs t /m 2>&1; echo rc=$?",
        ],
    );
    assert!(out.contains("rc=1") || out.contains("rc=255"), "{out}");
    // Masked and read-only paths, a private /dev/shm, no new privileges.
    let out = env.ok(&["run", "--rm", "--security-opt", "no-new-privileges", &img, "sh", "-c",
        "cat /proc/kcore 2>/dev/null | wc -c; grep ' /proc/sys ' /proc/self/mountinfo | grep -c ' ro,'; grep -c ' /dev/shm ' /proc/self/mountinfo; grep NoNewPrivs /proc/self/status"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim(), "0", "{out}");
    assert_eq!(lines[1].trim(), "1", "{out}");
    assert_eq!(lines[2].trim(), "1", "{out}");
    assert!(lines[3].ends_with('1'), "{out}");
    // --read-only, resources.
    let (out, _) = env.code(
        0,
        &[
            "run",
            "--rm",
            "--read-only",
            &img,
            "sh",
            "-c",
            "touch /x 2>/dev/null; echo rc=$?",
        ],
    );
    assert_eq!(out.trim(), "rc=1");
    let out = env.ok(&["run", "--rm", "-m", "64m", "--pids-limit", "50", &img, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max"]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["67108864", "50"],
        "{out}"
    );
    // --privileged: every capability this host has, no filter, no masks.
    let out = env.ok(&[
        "run",
        "--rm",
        "--privileged",
        &img,
        "sh",
        "-c",
        "cat /proc/self/status; mkdir /m && mount -t tmpfs t /m && echo mounted",
    ]);
    assert!(
        out.contains("Seccomp:\t0") && out.contains("mounted"),
        "{out}"
    );
    // Labels and env reach the container and its record.
    let id = env.run_d(
        &["-l", "app=web", "-e", "GREETING=hi", "--name", "lab"],
        &["sleep", "1000"],
    );
    assert!(env.ok(&["exec", "lab", "env"]).contains("GREETING=hi"));
    let ps: serde_json::Value = serde_json::from_str(&env.ok(&["ps", "--format", "json"])).unwrap();
    assert_eq!(ps[0]["Labels"]["app"], "web");
    assert_eq!(ps[0]["Id"], id.as_str());
}

#[test]
fn exec_with_a_terminal() {
    require!("script");
    let env = Env::new();
    env.run_d(&["--name", "t"], &["sleep", "1000"]);
    // script(1) gives berth a terminal; inside, the process has one too.
    let cmd = format!("{} exec -t t sh -c 'tty; stty size'", env.cmd_line());
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(out.status.success(), "{text}");
}

/// fixtures/syscalls.c built static into a directory of the env's
/// sandbox (removed with it), to bind into containers at /probe.
fn syscall_prober(env: &Env) -> Option<String> {
    let dir = env.sb.path().join("prober");
    std::fs::create_dir_all(&dir).unwrap();
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/containers/fixtures/syscalls.c"
    );
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.join("probe"))
        .arg(src)
        .output()
        .unwrap();
    if !out.status.success() {
        // gcc without a static libc (libc6-dev) cannot make it.
        eprintln!(
            "SKIPPED: gcc -static failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(format!("{}:/probe:ro", dir.display()))
}

/// The probes' answers, NAME -> ok or an errno name.
fn probe(env: &Env, flags: &[&str], probes: &[&str]) -> std::collections::BTreeMap<String, String> {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend(flags);
    args.push(&env.image);
    args.push("/probe/probe");
    args.extend(probes);
    env.ok(&args)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_default_seccomp_profile_allows_a_list() {
    require!("gcc");
    let env = Env::new();
    let Some(bind) = syscall_prober(&env) else {
        return;
    };
    let v = ["-v", bind.as_str()];
    // Calls the profile does not name look absent (ENOSYS, as
    // containers-common answers); calls a missing capability covers get
    // EPERM; audit sockets look unsupported without CAP_AUDIT_WRITE.
    let got = probe(
        &env,
        &v,
        &[
            "io_uring_setup",
            "memfd_secret",
            "keyctl",
            "unshare",
            "clone_newns",
            "vsock",
            "audit",
            "inet",
            "thread",
        ],
    );
    let want = [
        ("io_uring_setup", "ENOSYS"),
        ("memfd_secret", "ENOSYS"),
        ("keyctl", "ENOSYS"),
        ("unshare", "EPERM"),
        ("clone_newns", "EPERM"),
        ("vsock", "EPERM"),
        ("audit", "EINVAL"),
        ("inet", "ok"),
        // glibc's clone3 gets ENOSYS and it falls back to clone.
        ("thread", "ok"),
    ];
    for (k, w) in want {
        assert_eq!(got.get(k).map(String::as_str), Some(w), "{k}: {got:?}");
    }
    // Everyday work still runs under the filter: files, processes, pipes,
    // sleeping, addresses, a server and a client over loopback.
    let out = env.ok(&[
        "run",
        "--rm",
        &env.image,
        "sh",
        "-c",
        "ls / >/dev/null && cat /etc/passwd >/dev/null && sleep 0.1 && id -u && seq 3 | wc -l \
         && ip addr show lo | grep -c 127.0.0.1 && ps >/dev/null \
         && httpd -p 127.0.0.1:8080 -h /www && wget -qO- http://127.0.0.1:8080/index.html",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "3", "1", "hello from berth"],
        "{out}"
    );
    // CAP_SYS_ADMIN opens mounts and namespaces; io_uring stays shut.
    let out = env.ok(&[
        "run", "--rm", "--network", "none", "--cap-add", "SYS_ADMIN", v[0], v[1], &env.image, "sh", "-c",
        "mkdir /m && mount -t tmpfs t /m && echo mounted; /probe/probe io_uring_setup unshare clone_newns",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "mounted",
            "io_uring_setup=ENOSYS",
            "unshare=ok",
            "clone_newns=ok"
        ],
        "{out}"
    );
    // Unconfined, the kernel answers: io_uring works unless the host's
    // kernel.io_uring_disabled shuts it (2: for all; 1: for those without
    // CAP_SYS_ADMIN outside io_uring_group, as this container's root is).
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "0".into());
    let want = if disabled == "0" { "ok" } else { "EPERM" };
    let got = probe(
        &env,
        &["--security-opt", "seccomp=unconfined", v[0], v[1]],
        &["io_uring_setup"],
    );
    assert_eq!(
        got["io_uring_setup"], want,
        "kernel.io_uring_disabled={disabled}"
    );
}

#[test]
fn the_settings_a_cri_request_carries_are_seen_from_inside() {
    let env = Env::new();
    let img = env.image.clone();
    let out = env.ok(&[
        "run",
        "--rm",
        "--sysctl",
        "net.ipv4.ip_unprivileged_port_start=80",
        "--cpu-shares",
        "512",
        "--ulimit",
        "nofile=100:200",
        "--group-add",
        "nobody",
        "--group-add",
        "1234",
        "--shm-size",
        "1m",
        "--oom-score-adj",
        "500",
        &img,
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; \
         cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight; \
         ulimit -n; ulimit -Hn; id -G; df -k /dev/shm | tail -1; cat /proc/self/oom_score_adj",
    ]);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "80", "{out}");
    assert!(l[1] == "512" || l[1] == "20", "{out}");
    assert_eq!((l[2], l[3]), ("100", "200"), "{out}");
    let mut groups: Vec<&str> = l[4].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["0", "1234", "65534"], "{out}");
    assert!(l[5].split_whitespace().nth(1) == Some("1024"), "{out}");
    assert_eq!(l[6], "500", "{out}");

    for (flag, value, want) in [
        ("--ulimit", "bogus=1", "bogus"),
        ("--ulimit", "nofile=20:10", "above the hard"),
        ("--group-add", "nogroup", "nogroup"),
        ("--oom-score-adj", "5000", "-1000 to 1000"),
        ("--uidmap", "0:1", "CONTAINER_ID:HOST_ID:SIZE"),
        ("--sysctl", "novalue", "KEY=VALUE"),
    ] {
        let (_, err) = env.code(125, &["run", "--rm", flag, value, &img, "true"]);
        assert!(err.contains(want), "{flag} {value}: {err}");
    }
    assert!(env.ids().is_empty());
}

#[test]
fn a_user_namespace_maps_the_containers_root_and_its_files_follow() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let img = env.image.clone();
    let vol = env.sb.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), "x").unwrap();
    let id = env.run_d(
        &[
            "--uidmap",
            "0:100000:65536",
            "-v",
            &format!("{}:/data:idmap", vol.display()),
        ],
        &["sleep", "1000"],
    );
    // Inside, root is root and owns the image's files and the volume's,
    // and can change them; on the host it is 100000.
    let out = env.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; echo more >> /etc/passwd && touch /made /data/new && stat -c %u /etc/passwd /made /data/f /data/new",
    ]);
    let l: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(l[0], "0", "{out}");
    assert_eq!(
        l[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"],
        "{out}"
    );
    assert_eq!(&l[2..], ["0", "0", "0", "0"], "{out}");
    let pid = env.inspect(&id)["State"]["Pid"].as_u64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().nth(1), Some("100000"), "{status}");
    // What it wrote: in its upper dir with the host's ids, through the
    // id-mapped volume with the volume's own.
    let upper = env.sb.root().join("containers").join(&id).join("upper");
    assert_eq!(std::fs::metadata(upper.join("made")).unwrap().uid(), 100000);
    assert_eq!(
        std::fs::metadata(upper.join("etc/passwd")).unwrap().uid(),
        100000
    );
    assert_eq!(std::fs::metadata(vol.join("new")).unwrap().uid(), 0);
    // Its changes cannot be committed as a layer yet: a clear refusal.
    let (_, err) = env.code(125, &["commit", &id, "localhost/userns-commit"]);
    assert!(err.contains("user namespace"), "{err}");
    env.ok(&["rm", "-f", &id]);
    let left = mounts_under(&env.sb.root());
    assert!(left.is_empty(), "{left:?}");

    for (flags, want) in [
        (&["--uidmap", "1:100000:10"][..], "container's root"),
        (
            &["--uidmap", "0:100000:10", "--uidmap", "5:200000:10"][..],
            "overlaps",
        ),
        (&["--uidmap", "0:4294967290:65536"][..], "not a range"),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend([img.as_str(), "true"]);
        let (_, err) = env.code(125, &args);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    assert!(env.ids().is_empty());
}
