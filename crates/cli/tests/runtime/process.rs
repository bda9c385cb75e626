use serde_json::json;

use crate::support::*;

fn status_field(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {out}"))
        .trim()
        .to_string()
}

#[test]
fn user_groups_umask_env_and_cwd() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; umask; pwd; echo $FOO; echo $HOME; touch /tmp/f; stat -c %a /tmp/f",
    ]);
    b.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 65534], "umask": 23}),
    );
    b.set("/process/cwd", json!("/tmp"));
    b.push("/process/env", json!("FOO=bar baz"));
    let out = sb.output(&b, "user");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1000");
    let groups: Vec<&str> = lines[2].split(' ').collect();
    assert!(
        groups.contains(&"5") && groups.contains(&"65534"),
        "{groups:?}"
    );
    assert!(!groups.contains(&"0"), "root's group leaked: {groups:?}");
    assert_eq!(lines[3], "0027");
    assert_eq!(lines[4], "/tmp");
    assert_eq!(lines[5], "bar baz");
    assert_eq!(
        lines[6], "/home/tester",
        "HOME comes from the container's /etc/passwd"
    );
    assert_eq!(lines[7], "640");
}

#[test]
fn capabilities_all_five_sets() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["cat", "/proc/self/status"]);
    let caps = json!(["CAP_CHOWN", "CAP_NET_RAW"]);
    b.set(
        "/process/capabilities",
        json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_TIME"],
            "effective": caps, "permitted": caps, "inheritable": caps, "ambient": ["CAP_NET_RAW"]
        }),
    );
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let out = sb.output(&b, "caps");
    // CAP_CHOWN = bit 0, CAP_NET_RAW = bit 13, CAP_SYS_TIME = bit 25.
    assert_eq!(
        status_field(&out, "CapBnd"),
        format!("{:016x}", 1u64 | 1 << 13 | 1 << 25)
    );
    // A non-root user keeps only what is ambient across exec.
    assert_eq!(status_field(&out, "CapAmb"), format!("{:016x}", 1u64 << 13));
    assert_eq!(status_field(&out, "CapEff"), format!("{:016x}", 1u64 << 13));
    assert_eq!(
        status_field(&out, "CapInh"),
        format!("{:016x}", 1u64 | 1 << 13)
    );
}

#[test]
fn a_config_without_capabilities_gets_none() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["cat", "/proc/self/status"]);
    b.config["process"]
        .as_object_mut()
        .unwrap()
        .remove("capabilities");
    let out = sb.output(&b, "nocaps");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&out, set), "0000000000000000", "{set}");
    }
}

#[test]
fn no_new_privileges_and_rlimits() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "grep NoNewPrivs /proc/self/status; ulimit -n; ulimit -Hn; ulimit -c",
    ]);
    b.set("/process/noNewPrivileges", json!(true));
    b.set(
        "/process/rlimits",
        json!([
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 800},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]),
    );
    let out = sb.output(&b, "nnp");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].split_whitespace().last(), Some("1"));
    assert_eq!(&lines[1..], ["512", "800", "0"]);

    let mut b = sb.bundle(&["true"]);
    b.set("/process/noNewPrivileges", json!(false));
    let out = sb.output(&b, "nnp0");
    assert!(out.is_empty());
}

#[test]
fn raising_a_hard_rlimit_beyond_ours_fails_clearly() {
    let sb = Sandbox::new();
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: cur is a valid out-pointer for the call.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) };
    let mut b = sb.bundle(&["true"]);
    b.set(
        "/process/rlimits",
        json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": cur.rlim_max.saturating_add(1)}]),
    );
    b.save();
    let id = sb.id("rlimit");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    let can_raise = caps_has_sys_resource();
    if can_raise {
        assert!(out.status.success());
    } else {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("RlimitNofile") && err.contains("CAP_SYS_RESOURCE"),
            "{err}"
        );
        assert_gone(&sb, &id);
    }
}

fn caps_has_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = u64::from_str_radix(&status_field(&status, "CapEff"), 16).unwrap();
    eff & (1 << 24) != 0
}

#[test]
fn oom_score_adj_is_set_or_refused_clearly() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["cat", "/proc/self/oom_score_adj"]);
    b.set("/process/oomScoreAdj", json!(500));
    assert_eq!(sb.output(&b, "oom").trim(), "500");

    let mut b = sb.bundle(&["true"]);
    b.set("/process/oomScoreAdj", json!(-999));
    b.save();
    let id = sb.id("oomneg");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    if !caps_has_sys_resource() {
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("oom_score_adj -999"));
        assert_gone(&sb, &id);
    }
}

#[test]
fn seccomp_profile_denies_with_errno_and_filters_arguments() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; echo mkdir=$?; ls /tmp",
    ]);
    b.set("/linux/seccomp", json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            // getdents64 with a fd of 9999 only: harmless, checks argument rules load.
            {"names": ["getdents64"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 9999, "op": "SCMP_CMP_EQ"}]}
        ]
    }));
    let out = sb.output(&b, "seccomp");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(
        out.contains("Operation not permitted") && out.contains("mkdir=1"),
        "{out}"
    );
}

#[test]
fn seccomp_with_and_without_no_new_privileges() {
    // Without no_new_privs the filter is loaded while the runtime still
    // holds CAP_SYS_ADMIN; the container must not keep it.
    let sb = Sandbox::new();
    for nnp in [true, false] {
        let mut b = sb.bundle(&[
            "sh",
            "-c",
            "grep -E 'Seccomp:|NoNewPrivs' /proc/self/status",
        ]);
        b.set("/process/noNewPrivileges", json!(nnp));
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["reboot"], "action": "SCMP_ACT_KILL"}]}),
        );
        let out = sb.output(&b, "seccompnnp");
        assert!(out.contains("Seccomp:\t2"), "{out}");
        assert!(
            out.contains(&format!("NoNewPrivs:\t{}", u8::from(nnp))),
            "{out}"
        );
    }
}

#[test]
fn preserve_fds_passes_extra_descriptors() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sh", "-c", "ls /proc/self/fd; cat <&3"]);
    b.save();
    let id = sb.id("fds");
    let data = sb.dir.path().join("data");
    std::fs::write(&data, "through fd 3\n").unwrap();
    let f = std::fs::File::open(&data).unwrap();
    use std::os::fd::AsRawFd;
    // Put the file at fd 3 in the child.
    let fd = f.as_raw_fd();
    let mut cmd = sb.cmd();
    cmd.args(["run", "--preserve-fds", "1", "--bundle", b.path(), &id]);
    // SAFETY: between fork and exec the closure only calls fcntl and dup2
    // and reads errno, all async-signal-safe; fd stays open in `f` until
    // output() has returned.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear it instead.
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("through fd 3"), "{text}");
    let fds: Vec<&str> = text
        .lines()
        .take_while(|l| l.parse::<u32>().is_ok())
        .collect();
    // stdio, fd 3, and the fd ls uses for the directory; nothing else leaks.
    assert!(fds.len() <= 5, "leaked fds: {fds:?}");
}

#[test]
fn no_host_fds_reach_the_container() {
    let sb = Sandbox::new();
    // ls holds one fd of its own for the directory it lists.
    let b = sb.bundle(&["ls", "/proc/self/fd"]);
    let out = sb.output(&b, "nofds");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "fds beyond stdio leaked"
    );
}

#[test]
fn missing_program_fails_create_with_a_clear_error() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["no-such-program"]);
    b.save();
    let id = sb.id("noprog");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found in $PATH"));
    assert_gone(&sb, &id);
}

#[test]
fn personality_io_priority_scheduler_and_memory_policy() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", "cat /proc/self/personality; uname -m; ionice -p $$; awk '{print $41}' /proc/self/stat; grep -m1 -o 'bind:[0-9]*' /proc/self/numa_maps"]);
    b.set("/linux/personality", json!({"domain": "LINUX32"}));
    b.set(
        "/process/ioPriority",
        json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0}),
    );
    b.set(
        "/process/scheduler",
        json!({"policy": "SCHED_BATCH", "nice": 5}),
    );
    b.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_BIND", "nodes": "0"}),
    );
    let out = sb.output(&b, "attrs");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "00000008", "{out}");
    assert_eq!(lines[1], "i686");
    assert!(lines[2].contains("idle"), "{out}");
    assert_eq!(lines[3], "3", "SCHED_BATCH is policy 3: {out}");
    assert_eq!(lines[4], "bind:0", "{out}");
}

#[test]
fn bad_process_attributes_are_refused() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    b.set(
        "/process/ioPriority",
        json!({"class": "IOPRIO_CLASS_BE", "priority": 9}),
    );
    b.save();
    let id = sb.id("badio");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("process.ioPriority.priority"));
    assert_gone(&sb, &id);
    let mut b = sb.bundle(&["true"]);
    b.set("/linux/intelRdt", json!({"closID": "x"}));
    b.save();
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("linux.intelRdt"));
    assert_gone(&sb, &id);
}

#[test]
fn exec_cpu_affinity() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sleep", "1000"]);
    let id = sb.id("affinity");
    sb.start(&b, &id);
    let proc_file = sb.dir.path().join("p.json");
    std::fs::write(&proc_file, serde_json::to_vec(&json!({
        "user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["grep", "Cpus_allowed_list", "/proc/self/status"],
        "execCPUAffinity": {"initial": "0-1", "final": "1"}
    })).unwrap()).unwrap();
    let out = sb.ok(&["exec", "--process", proc_file.to_str().unwrap(), &id]);
    assert_eq!(out.split_whitespace().last(), Some("1"), "{out}");
}

#[test]
fn seccomp_notify_hands_the_fd_to_the_listener() {
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    let sb = Sandbox::new();
    let sock = sb.dir.path().join("listener.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // The listener answers every mkdir with "done" without doing it.
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 8192];
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let n = rustix::net::recvmsg(
            conn.as_fd(),
            &mut iov,
            &mut control,
            rustix::net::RecvFlags::empty(),
        )
        .unwrap()
        .bytes;
        let mut notify_fd: Option<OwnedFd> = None;
        for m in control.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = m {
                notify_fd = fds.next();
            }
        }
        let state: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
        let fd = notify_fd.expect("a notify fd");
        let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).unwrap();
        libseccomp::ScmpNotifResp::new_val(req.id, 0, libseccomp::ScmpNotifRespFlags::empty())
            .respond(fd.as_raw_fd())
            .unwrap();
        state
    });
    let mut b = sb.bundle(&["sh", "-c", "mkdir /tmp/made && echo mkdir-ok; ls /tmp"]);
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "test-agent",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        }),
    );
    let out = sb.output(&b, "notify");
    let state = agent.join().unwrap();
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "test-agent");
    assert!(state["pid"].as_i64().unwrap() > 0);
    assert!(state["state"]["id"].as_str().unwrap().starts_with("notify"));
    assert_eq!(
        out.trim(),
        "mkdir-ok",
        "mkdir answered by the agent, not done: {out}"
    );
}
