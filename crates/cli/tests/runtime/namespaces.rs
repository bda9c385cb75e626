use std::process::Command;

use serde_json::json;

use crate::lifecycle::wait_for;
use crate::support::*;

fn ns_of(pid: i64, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn new_namespaces_are_private() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", "echo $$; hostname; cat /proc/sys/kernel/domainname; ip -o link 2>/dev/null | wc -l; cat /proc/net/dev | tail -n +3 | wc -l"]);
    b.set("/hostname", json!("box"));
    b.set("/domainname", json!("example.test"));
    let out = sb.output(&b, "ns");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "the process is pid 1 of its pid namespace");
    assert_eq!(lines[1], "box");
    assert_eq!(lines[2], "example.test");
    assert_eq!(lines[4], "1", "only lo in a new network namespace");
}

#[test]
fn namespaces_differ_from_the_hosts_and_can_be_shared() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sleep", "1000"]);
    b.push("/linux/namespaces", json!({"type": "cgroup"}));
    let first = sb.id("nsa");
    sb.start(&b, &first);
    let pid = sb.state(&first)["pid"].as_i64().unwrap();
    let me = std::process::id() as i64;
    for ns in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
        assert_ne!(
            ns_of(pid, ns),
            ns_of(me, ns),
            "{ns} is shared with the host"
        );
    }
    // A second container joins the first one's network, ipc and uts
    // namespaces by path (as in a pod).
    let mut b2 = sb.bundle(&["sleep", "1000"]);
    for (typ, name) in [("network", "net"), ("ipc", "ipc"), ("uts", "uts")] {
        b2.join_ns(typ, &format!("/proc/{pid}/ns/{name}"));
    }
    b2.set("/hostname", serde_json::Value::Null);
    let second = sb.id("nsb");
    sb.start(&b2, &second);
    let pid2 = sb.state(&second)["pid"].as_i64().unwrap();
    for ns in ["net", "ipc", "uts"] {
        assert_eq!(ns_of(pid, ns), ns_of(pid2, ns), "{ns} was not joined");
    }
    for ns in ["pid", "mnt"] {
        assert_ne!(ns_of(pid, ns), ns_of(pid2, ns), "{ns} must stay private");
    }
}

#[test]
fn joins_a_pid_namespace_by_path() {
    let sb = Sandbox::new();
    let b = sb.bundle(&["sleep", "1000"]);
    let first = sb.id("pida");
    sb.start(&b, &first);
    let pid = sb.state(&first)["pid"].as_i64().unwrap();
    let mut b2 = sb.bundle(&["sh", "-c", "ps -o pid,comm"]);
    b2.join_ns("pid", &format!("/proc/{pid}/ns/pid"));
    let out = sb.output(&b2, "pidb");
    // The first container's sleep is pid 1 of the shared namespace.
    assert!(out.lines().any(|l| l.trim() == "1 sleep"), "{out}");
}

#[test]
fn user_namespace_maps_ids() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox",
    ]);
    b.push("/linux/namespaces", json!({"type": "user"}));
    b.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
    );
    b.set(
        "/linux/gidMappings",
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
    );
    // The rootfs must belong to the mapped root.
    let status = Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(b.rootfs())
        .status()
        .unwrap();
    assert!(status.success());
    let out = sb.output(&b, "userns");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        &words[..6],
        ["0", "100000", "65536", "0", "100000", "65536"]
    );
    assert_eq!(words[6], "0");
    assert_eq!(words[7], "0", "files of host uid 100000 appear as root's");
}

#[test]
fn user_and_time_namespaces_with_an_oom_score_adj() {
    // The process cannot be dumped until it execs, so its /proc files
    // belong to the host's root: oom_score_adj and the time offsets must
    // still be set.
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "cat /proc/self/oom_score_adj; grep monotonic /proc/self/timens_offsets",
    ]);
    b.push("/linux/namespaces", json!({"type": "user"}));
    b.push("/linux/namespaces", json!({"type": "time"}));
    b.set(
        "/linux/timeOffsets",
        json!({"monotonic": {"secs": 77, "nanosecs": 0}}),
    );
    b.set("/process/oomScoreAdj", json!(321));
    for key in ["/linux/uidMappings", "/linux/gidMappings"] {
        b.set(
            key,
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        );
    }
    let status = Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(b.rootfs())
        .status()
        .unwrap();
    assert!(status.success());
    let out = sb.output(&b, "usertime");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "321");
    assert!(lines[1].split_whitespace().nth(1) == Some("77"), "{out}");
}

#[test]
fn user_namespace_with_a_joined_network_namespace() {
    // The slow path: join first (as the host's root), then create the user
    // namespace, then fork into the new pid namespace.
    let sb = Sandbox::new();
    let netns = format!("berth-t-{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .unwrap()
            .success()
    );
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = Del(netns.clone());
    let mut b = sb.bundle(&["sh", "-c", "echo $$; readlink /proc/self/ns/net; id -u"]);
    b.join_ns("network", &format!("/run/netns/{netns}"));
    b.push("/linux/namespaces", json!({"type": "user"}));
    b.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": 0, "size": 65536}]),
    );
    b.set(
        "/linux/gidMappings",
        json!([{"containerID": 0, "hostID": 0, "size": 65536}]),
    );
    // sysfs cannot be mounted without owning the network namespace.
    let out = sb.output(&b, "usernet");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1");
    let expected = std::fs::metadata(format!("/run/netns/{netns}")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(lines[1], format!("net:[{}]", expected.ino()));
    assert_eq!(lines[2], "0");
}

#[test]
fn cgroup_namespace_hides_the_host_path() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["cat", "/proc/self/cgroup"]);
    b.push("/linux/namespaces", json!({"type": "cgroup"}));
    let out = sb.output(&b, "cgns");
    for l in out.lines() {
        assert!(l.ends_with(":/"), "cgroup path visible: {l}");
    }
}

#[test]
fn time_namespace_offsets_the_clocks() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime",
    ]);
    b.push("/linux/namespaces", json!({"type": "time"}));
    b.set("/linux/timeOffsets", json!({"boottime": {"secs": 86400, "nanosecs": 0}, "monotonic": {"secs": 3600, "nanosecs": 5}}));
    let out = sb.output(&b, "timens");
    assert!(out.contains("monotonic") && out.contains("3600"), "{out}");
    let uptime: u64 = out.lines().last().unwrap().parse().unwrap();
    let host: u64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(uptime >= host + 86400 - 5, "uptime {uptime} vs host {host}");
}

#[test]
fn exec_joins_the_same_namespaces() {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sleep", "1000"]);
    b.set("/hostname", json!("joined"));
    let id = sb.id("execns");
    sb.start(&b, &id);
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    wait_for(|| sb.state(&id)["status"] == "running");
    let out = sb.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; for n in pid net ipc uts mnt; do readlink /proc/self/ns/$n; done",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "joined");
    for (i, ns) in ["pid", "net", "ipc", "uts", "mnt"].iter().enumerate() {
        assert_eq!(lines[i + 1], ns_of(pid, ns));
    }
}

#[test]
fn net_devices_move_into_the_container() {
    let sb = Sandbox::new();
    let host_name = format!("bveth{}", std::process::id() % 100000);
    let peer = format!("{host_name}p");
    assert!(
        Command::new("ip")
            .args([
                "link", "add", &host_name, "type", "veth", "peer", "name", &peer
            ])
            .status()
            .unwrap()
            .success()
    );
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).output();
        }
    }
    let _del = Del(peer.clone());
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "ip -o link show eth7 | cut -d: -f2 | cut -d@ -f1",
    ]);
    b.set("/linux/netDevices", json!({ &host_name: {"name": "eth7"} }));
    let out = sb.output(&b, "netdev");
    assert_eq!(out.trim(), "eth7");
    let on_host = Command::new("ip")
        .args(["link", "show", &host_name])
        .output()
        .unwrap();
    assert!(!on_host.status.success(), "the device is still on the host");

    let mut b = sb.bundle(&["true"]);
    b.set(
        "/linux/netDevices",
        json!({"no-such-dev0": {"name": "eth0"}}),
    );
    b.save();
    let id = sb.id("nodev");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("linux.netDevices.no-such-dev0"));
    assert_gone(&sb, &id);
}

/// A process holding namespaces of its own (`unshare` flags), killed when
/// dropped.
struct Holder(std::process::Child);

impl Holder {
    fn new(flags: &[&str]) -> Holder {
        let child = Command::new("unshare")
            .args(flags)
            .args(["sleep", "1000"])
            .spawn()
            .unwrap();
        let pid = child.id() as i64;
        let me = std::process::id() as i64;
        wait_for(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
                && ns_of(pid, "uts") != ns_of(me, "uts")
        });
        Holder(child)
    }

    fn ns(&self, name: &str) -> String {
        format!("/proc/{}/ns/{name}", self.0.id())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hostname_and_domainname_are_set_in_a_joined_uts_namespace() {
    let sb = Sandbox::new();
    let holder = Holder::new(&["--uts"]);
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host_domain = std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let mut b = sb.bundle(&[
        "cat",
        "/proc/sys/kernel/hostname",
        "/proc/sys/kernel/domainname",
    ]);
    b.join_ns("uts", &holder.ns("uts"));
    b.set("/hostname", json!("joined-host"));
    b.set("/domainname", json!("joined.test"));
    assert_eq!(sb.output(&b, "utsjoin"), "joined-host\njoined.test\n");
    // They were set in the joined namespace, which keeps them...
    let seen = Command::new("nsenter")
        .arg(format!("--uts={}", holder.ns("uts")))
        .args([
            "cat",
            "/proc/sys/kernel/hostname",
            "/proc/sys/kernel/domainname",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout),
        "joined-host\njoined.test\n"
    );
    // ...and not in the host's.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap(),
        host_domain
    );
    // Joining the runtime's own uts namespace by path would rename the
    // host: refused, by field.
    let mut b = sb.bundle(&["true"]);
    b.join_ns("uts", &format!("/proc/{}/ns/uts", std::process::id()));
    b.set("/hostname", json!("renamed-host"));
    b.save();
    let id = sb.id("utshost");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("hostname") && err.contains("runtime's own"),
        "{err}"
    );
    assert_gone(&sb, &id);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name
    );
}

#[test]
fn a_config_without_a_mount_namespace_is_refused_citing_the_spec() {
    // Decision (docs/runtime.md, "Namespaces"): the spec says an unlisted
    // namespace is inherited; berth-runtime refuses to set a rootfs up in
    // the host's mount namespace, says why, and `features` says so.
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    let ns: Vec<serde_json::Value> = b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "mount")
        .cloned()
        .collect();
    b.set("/linux/namespaces", json!(ns));
    b.save();
    // The host's mount table, less what the tests running beside this one
    // mount in their own sandboxes meanwhile.
    let host_mounts = || {
        let own = b.path().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| {
                let point = l.split(' ').nth(4).unwrap_or("");
                !point.starts_with("/tmp/berth-") || point.starts_with(&own)
            })
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let mounts_before = host_mounts();
    let id = sb.id("nomnt");
    let out = sb.rt(&["create", "--bundle", b.path(), &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("linux.namespaces")
            && err.contains("config-linux.md")
            && err.contains("\"Namespaces\"")
            && err.contains("inherited"),
        "{err}"
    );
    assert_gone(&sb, &id);
    assert_eq!(host_mounts(), mounts_before);
    // Every other namespace may be left out: inherited from the runtime.
    let me = std::process::id() as i64;
    let mut b = sb.bundle(&["sleep", "1000"]);
    b.set("/linux/namespaces", json!([{"type": "mount"}]));
    b.set("/hostname", serde_json::Value::Null);
    let id = sb.id("onlymnt");
    sb.start(&b, &id);
    let pid = sb.state(&id)["pid"].as_i64().unwrap();
    for ns in ["pid", "net", "ipc", "uts", "cgroup"] {
        assert_eq!(ns_of(pid, ns), ns_of(me, ns), "{ns} was not inherited");
    }
    assert_ne!(ns_of(pid, "mnt"), ns_of(me, "mnt"));
    // features tells callers before they try.
    let features: serde_json::Value = serde_json::from_str(&sb.ok(&["features"])).unwrap();
    assert_eq!(
        features["annotations"]["run.berth.linux.namespaces.requiredNew"],
        "mount"
    );
    assert!(
        features["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!("mount"))
    );
}
