//! Device access from a container: a node in its rootfs, or one made with
//! CAP_MKNOD, opens none of the host's devices unless the config's rules
//! allow it. A config without rules gets runc's default list, never "every
//! device"; a leading deny-all keeps the host's console (c 5:1) out.

use serde_json::json;

use crate::support::*;

/// Host device nodes at the rootfs's top (its /dev is a tmpfs).
fn add_nodes(b: &Bundle) {
    let root = b.rootfs();
    for (name, kind, major, minor) in [
        ("hostloop", rustix::fs::FileType::BlockDevice, 7, 0),
        ("hostconsole", rustix::fs::FileType::CharacterDevice, 5, 1),
    ] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join(name),
            kind,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        )
        .unwrap();
    }
}

const PROBE: &str = "head -c1 /hostloop; echo loop=$?; head -c0 /hostconsole; echo console=$?; \
                     mknod /tmp/made b 7 0 && head -c1 /tmp/made; echo made=$?; \
                     head -c1 /dev/zero >/dev/null; echo zero=$?";

fn probe(rules: Option<serde_json::Value>) -> (String, String) {
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", PROBE]);
    match rules {
        Some(r) => b.set("/linux/resources/devices", r),
        None => b.set("/linux/resources", json!({})),
    };
    b.add_cap("CAP_MKNOD");
    b.save();
    add_nodes(&b);
    let id = sb.id("dev");
    let (code, out, err) = sb.run(&b, &id);
    assert_eq!(code, 0, "{out}\n{err}");
    (out, err)
}

#[test]
fn a_config_without_device_rules_opens_no_host_device() {
    let (out, err) = probe(None);
    for want in ["loop=1", "console=1", "made=1", "zero=0"] {
        assert!(out.contains(want), "{want}: {out}\n{err}");
    }
    assert_eq!(err.matches("Operation not permitted").count(), 3, "{err}");
}

#[test]
fn a_deny_all_rule_keeps_the_hosts_console_out() {
    let (out, err) = probe(Some(json!([{"allow": false, "access": "rwm"}])));
    for want in ["loop=1", "console=1", "made=1", "zero=0"] {
        assert!(out.contains(want), "{want}: {out}\n{err}");
    }
    // An explicit rule still opens a device (and, with "m", makes one).
    let (out, _) = probe(Some(json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "b", "major": 7, "minor": 0, "access": "rm"}
    ])));
    assert!(out.contains("loop=0") && out.contains("made=0"), "{out}");
    assert!(out.contains("console=1"), "{out}");
}

#[test]
fn fifo_devices_are_made_in_dev_and_get_no_device_rule() {
    // A FIFO among linux.devices is made with its mode and owner, works as
    // a pipe, and does not turn into a cgroup device rule (there is no "p"
    // rule to write), in the container's own namespaces and in a user
    // namespace (where mknod of a FIFO, unlike a device, is allowed).
    let sb = Sandbox::new();
    for userns in [false, true] {
        let mut b = sb.bundle(&[
            "sh",
            "-c",
            "stat -c '%F %a %u:%g' /dev/pipe0 /dev/sub/pipe1; (echo through > /dev/sub/pipe1 &); cat /dev/sub/pipe1",
        ]);
        b.set(
            "/linux/devices",
            json!([
                {"path": "/dev/pipe0", "type": "p", "fileMode": 0o620, "uid": 1000, "gid": 1000},
                {"path": "/dev/sub/pipe1", "type": "p", "major": 0, "minor": 0}
            ]),
        );
        b.set(
            "/linux/resources/devices",
            json!([{"allow": false, "access": "rwm"}]),
        );
        if userns {
            b.push("/linux/namespaces", json!({"type": "user"}));
            let map = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
            b.set("/linux/uidMappings", map.clone());
            b.set("/linux/gidMappings", map);
        }
        let out = sb.output(&b, "fifo");
        assert_eq!(
            out, "fifo 620 1000:1000\nfifo 666 0:0\nthrough\n",
            "user namespace: {userns}"
        );
    }
}
