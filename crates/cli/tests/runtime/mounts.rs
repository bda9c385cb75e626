use std::process::Command;

use serde_json::json;

use crate::support::*;

/// mountinfo line of the mount at `dest`, as the container sees it.
fn mount_line<'a>(mountinfo: &'a str, dest: &str) -> &'a str {
    mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(dest))
        .unwrap_or_else(|| panic!("{dest} is not mounted:\n{mountinfo}"))
}

fn opts(line: &str) -> Vec<&str> {
    line.split(' ').nth(5).unwrap().split(',').collect()
}

#[test]
fn bind_mounts_with_options() {
    let sb = Sandbox::new();
    let src = sb.dir.path().join("data");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("file"), "on the host\n").unwrap();
    let file_src = sb.dir.path().join("single");
    std::fs::write(&file_src, "one file\n").unwrap();
    let mut b = sb.bundle(&["sh", "-c", "cat /mnt/ro/file /etc/single; touch /mnt/ro/x 2>&1; touch /mnt/rw/y && echo rw ok; cat /proc/self/mountinfo"]);
    b.push("/mounts", json!({"destination": "/mnt/ro", "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}));
    b.push(
        "/mounts",
        json!({"destination": "/mnt/rw", "type": "none", "source": src, "options": ["bind", "rw"]}),
    );
    b.push("/mounts", json!({"destination": "/etc/single", "type": "bind", "source": file_src, "options": ["bind", "ro"]}));
    let out = sb.output(&b, "bind");
    assert!(
        out.contains("on the host") && out.contains("one file"),
        "{out}"
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("rw ok"));
    assert!(
        src.join("y").exists(),
        "writes through the rw bind reach the host"
    );
    let ro = opts(mount_line(&out, "/mnt/ro"));
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(ro.contains(&o), "/mnt/ro lacks {o}: {ro:?}");
    }
    assert!(opts(mount_line(&out, "/mnt/rw")).contains(&"rw"));
    assert!(opts(mount_line(&out, "/etc/single")).contains(&"ro"));
}

#[test]
fn recursive_read_only_reaches_submounts() {
    let sb = Sandbox::new();
    let src = sb.dir.path().join("tree");
    std::fs::create_dir_all(src.join("inner")).unwrap();
    // A mount below the bind source: "ro" leaves it writable, "rro" not.
    let c = std::ffi::CString::new(src.join("inner").to_str().unwrap()).unwrap();
    // SAFETY: the strings are NUL-terminated and outlive the call; tmpfs
    // takes no data.
    assert_eq!(
        unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        },
        0
    );
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "touch /a/inner/x 2>&1 && echo a-writable; touch /b/inner/x 2>&1 || echo b-readonly",
    ]);
    b.push(
        "/mounts",
        json!({"destination": "/a", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/b", "type": "bind", "source": src, "options": ["rbind", "rro"]}),
    );
    let out = sb.output(&b, "rro");
    assert!(
        out.contains("a-writable") && out.contains("b-readonly"),
        "{out}"
    );
}

#[test]
fn filesystem_mounts_and_tmpcopyup() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "cat /opt/keep; stat -c %a /scratch; cat /proc/self/mountinfo",
    ]);
    std::fs::create_dir_all(b.rootfs().join("opt")).unwrap();
    std::fs::write(b.rootfs().join("opt/keep"), "copied up\n").unwrap();
    b.push("/mounts", json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "mode=1770", "size=1m"]}));
    b.push("/mounts", json!({"destination": "/opt", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}));
    let out = sb.output(&b, "fs");
    assert!(out.starts_with("copied up\n1770\n"), "{out}");
    let scratch = mount_line(&out, "/scratch");
    assert!(
        scratch.contains(" - tmpfs ") && scratch.contains("size=1024k"),
        "{scratch}"
    );
    assert!(opts(scratch).contains(&"noexec"));
    assert!(mount_line(&out, "/opt").contains(" - tmpfs "));
    // The image's copy is untouched.
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("opt/keep")).unwrap(),
        "copied up\n"
    );
}

#[test]
fn propagation_and_rootfs_propagation() {
    let sb = Sandbox::new();
    let src = sb.dir.path().join("prop");
    std::fs::create_dir_all(&src).unwrap();
    let mut b = sb.bundle(&["cat", "/proc/self/mountinfo"]);
    b.push("/mounts", json!({"destination": "/p", "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    b.push(
        "/mounts",
        json!({"destination": "/u", "type": "tmpfs", "source": "tmpfs", "options": ["unbindable"]}),
    );
    b.set("/linux/rootfsPropagation", json!("private"));
    let out = sb.output(&b, "prop");
    let u = mount_line(&out, "/u");
    assert!(u.contains("unbindable"), "{u}");
    let p = mount_line(&out, "/p");
    assert!(!p.contains("shared:") && !p.contains("master:"), "{p}");
}

#[test]
fn dev_has_default_devices_and_links() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", "ls -l /dev; echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1; readlink /dev/fd; readlink /dev/ptmx"]);
    b.set("/linux/devices", json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}]));
    b.set("/linux/resources/devices", json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]));
    let out = sb.output(&b, "dev");
    for d in ["null", "zero", "full", "random", "urandom", "tty", "fuse"] {
        let line = out
            .lines()
            .find(|l| l.ends_with(&format!(" {d}")))
            .unwrap_or_else(|| panic!("no /dev/{d}:\n{out}"));
        assert!(line.starts_with("crw-rw-rw-"), "{line}");
    }
    assert!(out.contains("null-ok"));
    assert!(out.contains(" 00 00 00 00"));
    assert!(out.contains("/proc/self/fd\npts/ptmx"), "{out}");
}

#[test]
fn masked_and_readonly_paths() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", "cat /proc/version | wc -c; ls /sys/firmware | wc -l; (echo 1 > /proc/sys/kernel/domainname) 2>&1; cat /proc/self/mountinfo"]);
    b.set(
        "/linux/maskedPaths",
        json!(["/proc/version", "/sys/firmware", "/no/such/path"]),
    );
    b.set(
        "/linux/readonlyPaths",
        json!(["/proc/sys", "/proc/sysrq-trigger"]),
    );
    let out = sb.output(&b, "masked");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim(), "0", "/proc/version readable");
    assert_eq!(lines[1].trim(), "0", "/sys/firmware visible");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(opts(mount_line(&out, "/proc/sys")).contains(&"ro"));
}

#[test]
fn readonly_root_and_sysctls() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", "touch /x 2>&1; touch /tmp/y 2>&1; cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni"]);
    b.set("/root/readonly", json!(true));
    b.set(
        "/linux/sysctl",
        json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}),
    );
    let out = sb.output(&b, "rootro");
    assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
    assert!(out.ends_with("1\n1234\n"), "{out}");
    // The host's values did not change.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni")
            .unwrap()
            .trim(),
        "1234"
    );
}

#[test]
fn cgroup_mount_shows_the_containers_own_cgroup() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", "ls /sys/fs/cgroup; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; touch /sys/fs/cgroup/x 2>&1; true"]);
    b.set("/linux/resources/pids", json!({"limit": 77}));
    let out = sb.output(&b, "cgmount");
    assert!(
        out.contains("77"),
        "the container sees its own limits: {out}"
    );
    assert!(out.contains("Read-only file system"), "{out}");
}

#[test]
fn idmapped_bind_mount() {
    let sb = Sandbox::new();
    let src = sb.dir.path().join("owned");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    // On disk the file is root's; through the mapping (disk id 0 shown as
    // 1000, as a container's user namespace would map it) it is 1000's.
    let mut b = sb.bundle(&["sh", "-c", "stat -c '%u:%g' /plain/f /mapped/f"]);
    b.push(
        "/mounts",
        json!({"destination": "/plain", "type": "bind", "source": src, "options": ["bind"]}),
    );
    b.push(
        "/mounts",
        json!({
            "destination": "/mapped", "type": "bind", "source": src, "options": ["bind", "idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
        }),
    );
    let out = sb.output(&b, "idmap");
    assert_eq!(out, "0:0\n1000:1000\n");
}

#[test]
fn shared_root_propagation_survives_pivot_root() {
    let sb = Sandbox::new();
    for prop in ["shared", "rshared"] {
        let mut b = sb.bundle(&["head", "-1", "/proc/self/mountinfo"]);
        b.set("/linux/rootfsPropagation", json!(prop));
        let out = sb.output(&b, "shared");
        assert!(
            out.contains(" / ") && out.contains("shared:"),
            "{prop}: {out}"
        );
    }
}

#[test]
fn no_pivot_uses_move_and_chroot() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sh", "-c", "ls /; readlink /proc/1/root"]);
    b.save();
    let id = sb.id("nopivot");
    let out = sb.rt(&["run", "--no-pivot", "--bundle", b.path(), &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("bin\n") && text.contains("etc\n"), "{text}");
    assert_eq!(text.lines().last(), Some("/"));
}

/// Runs mount(8), failing the test if it fails.
fn mount_cmd(args: &[&str]) {
    let out = Command::new("mount").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn umount(path: &std::path::Path) {
    let ok = Command::new("umount").arg("-l").arg(path).status().unwrap();
    assert!(ok.success(), "umount {}", path.display());
}

/// Mounts a tmpfs over the sandbox's directory and makes it shared, as a
/// systemd host's mounts are; bundles made afterwards live on it. The
/// sandbox unmounts it (and whatever propagated under it) when it drops.
fn share_sandbox(sb: &Sandbox) {
    let dir = sb.dir.path().to_str().unwrap();
    mount_cmd(&["-t", "tmpfs", "tmpfs", dir]);
    mount_cmd(&["--make-shared", dir]);
}

/// Makes the bundle's rootfs a mount point of its own, as CRI runtimes
/// give it: an overlay whose lower layer is the busybox tree.
fn overlay_rootfs(b: &Bundle) {
    let lower = b.dir.join("lower");
    std::fs::rename(b.rootfs(), &lower).unwrap();
    for d in ["upper", "work", "rootfs"] {
        std::fs::create_dir(b.dir.join(d)).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        b.dir.join("upper").display(),
        b.dir.join("work").display()
    );
    mount_cmd(&[
        "-t",
        "overlay",
        "overlay",
        "-o",
        &opts,
        b.rootfs().to_str().unwrap(),
    ]);
}

/// Mount points of the host's mount table under `dir`.
fn host_mounts_under(dir: &std::path::Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = format!("{}/", dir.display());
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix) || *p == prefix.trim_end_matches('/'))
        .map(String::from)
        .collect()
}

/// The propagation tags ("shared:N", "master:N", "unbindable") of the
/// mount at `dest` in a mountinfo text.
fn tags<'a>(mountinfo: &'a str, dest: &str) -> Vec<&'a str> {
    let line = mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(dest))
        .unwrap_or_else(|| panic!("no mount at {dest}:\n{mountinfo}"));
    line.split(" - ")
        .next()
        .unwrap()
        .split(' ')
        .skip(6)
        .collect()
}

#[test]
fn rootfs_propagation_with_a_directory_and_a_mount_point_rootfs() {
    let sb = Sandbox::new();
    share_sandbox(&sb);
    for overlay in [false, true] {
        for prop in [
            "private",
            "rprivate",
            "slave",
            "rslave",
            "shared",
            "rshared",
            "unbindable",
            "runbindable",
        ] {
            let case = format!(
                "{prop} with the rootfs a {}",
                if overlay { "mount point" } else { "directory" }
            );
            let mut b = sb.bundle(&["true"]);
            if overlay {
                overlay_rootfs(&b);
            }
            b.set("/linux/rootfsPropagation", json!(prop));
            b.save();
            let before = host_mounts_under(&b.dir);
            let id = sb.id("rprop");
            let out = sb.rt(&["create", "--bundle", b.path(), &id]);
            assert!(
                out.status.success(),
                "{case}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Nothing the runtime mounted for the container (the rootfs's
            // self-bind, /proc, /dev, /sys...) reached the host.
            assert_eq!(host_mounts_under(&b.dir), before, "{case}");
            let pid = sb.state(&id)["pid"].as_i64().unwrap();
            let inside = || std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
            let root = inside();
            let root = tags(&root, "/");
            let has = |t: &str| root.iter().any(|x| x.starts_with(t));
            match prop.trim_start_matches('r') {
                "private" => assert!(!has("shared:") && !has("master:"), "{case}: {root:?}"),
                "slave" => assert!(has("master:") && !has("shared:"), "{case}: {root:?}"),
                "shared" => assert!(has("shared:"), "{case}: {root:?}"),
                "unbindable" => assert!(has("unbindable"), "{case}: {root:?}"),
                _ => unreachable!(),
            }
            // A mount made on the host under the rootfs reaches a slave (or
            // shared) root, never a private or unbindable one.
            let from_host = b.rootfs().join("mnt");
            std::fs::create_dir_all(&from_host).unwrap();
            mount_cmd(&["-t", "tmpfs", "tmpfs", from_host.to_str().unwrap()]);
            let seen = inside()
                .lines()
                .any(|l| l.split(' ').nth(4) == Some("/mnt"));
            let expected = prop.contains("slave") || prop.contains("shared");
            assert_eq!(seen, expected, "{case}: host mount seen inside");
            umount(&from_host);
            sb.ok(&["start", &id]);
            sb.ok(&["delete", "--force", &id]);
        }
    }
}

#[test]
fn rshared_propagates_both_ways_through_a_shared_volume() {
    // Kubernetes' Bidirectional mount propagation: rootfsPropagation
    // rshared, a volume bound rshared, the rootfs an overlay.
    let sb = Sandbox::new();
    share_sandbox(&sb);
    // The volume lives on a shared mount of its own, as kubelet's do: the
    // mount that holds a rootfs directory stops propagating into the
    // container (docs/runtime.md).
    let vols = sb.dir.path().join("vols");
    std::fs::create_dir(&vols).unwrap();
    mount_cmd(&["-t", "tmpfs", "tmpfs", vols.to_str().unwrap()]);
    for overlay in [false, true] {
        let vol = vols.join(format!("vol{}", overlay as u8));
        std::fs::create_dir(&vol).unwrap();
        let mut b = sb.bundle(&["sleep", "1000"]);
        if overlay {
            overlay_rootfs(&b);
        }
        b.set("/linux/rootfsPropagation", json!("rshared"));
        b.push(
            "/mounts",
            json!({"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "rshared"]}),
        );
        b.add_cap("CAP_SYS_ADMIN");
        let id = sb.id("bidir");
        sb.start(&b, &id);
        assert!(
            host_mounts_under(&b.dir)
                .iter()
                .all(|m| overlay && *m == b.rootfs().display().to_string()),
            "the container's mounts reached the host: {:?}",
            host_mounts_under(&b.dir)
        );
        // Host to container.
        let from_host = vol.join("from-host");
        std::fs::create_dir(&from_host).unwrap();
        mount_cmd(&["-t", "tmpfs", "tmpfs", from_host.to_str().unwrap()]);
        std::fs::write(from_host.join("f"), "host\n").unwrap();
        assert_eq!(sb.ok(&["exec", &id, "cat", "/vol/from-host/f"]), "host\n");
        // Container to host.
        sb.ok(&[
            "exec",
            &id,
            "sh",
            "-c",
            "mkdir /vol/from-ctr && mount -t tmpfs none /vol/from-ctr && echo ctr > /vol/from-ctr/f",
        ]);
        let from_ctr = vol.join("from-ctr");
        assert!(
            host_mounts_under(&vol).contains(&from_ctr.display().to_string()),
            "{:?}",
            host_mounts_under(&vol)
        );
        assert_eq!(
            std::fs::read_to_string(from_ctr.join("f")).unwrap(),
            "ctr\n"
        );
        sb.ok(&["delete", "--force", &id]);
        umount(&from_ctr);
        umount(&from_host);
    }
}
