//! The runtime-spec's config-linux.md: the MUST/SHOULD rules that the other
//! files do not already cover (namespaces new, joined and inherited:
//! namespaces.rs; default devices and /dev links, masked and read-only
//! paths, rootfsPropagation: mounts.rs; the device allow list in order:
//! devices.rs and cgroups.rs; cgroupsPath and a cgroup in use: cgroups.rs;
//! sysctls only where namespaced: hostile.rs).

use serde_json::json;

use crate::support::*;

#[test]
fn namespace_entries_the_spec_refuses() {
    let sb = Sandbox::new();
    let uts = format!("/proc/{}/ns/uts", std::process::id());
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        // path "MUST be an absolute path".
        (
            json!({"type": "network", "path": "proc/1/ns/net"}),
            "linux.namespaces[",
            "absolute",
        ),
        // "MUST generate an error if path is not associated with a
        // namespace of type type".
        (
            json!({"type": "network", "path": uts}),
            "linux.namespaces[net].path",
            "not a net namespace",
        ),
        // "duplicated namespaces with same type ... MUST generate an error".
        (json!({"type": "ipc"}), "linux.namespaces[", "listed twice"),
    ];
    for (entry, field, why) in cases {
        let mut b = sb.bundle(&["true"]);
        if entry["type"] == "ipc" {
            b.push("/linux/namespaces", entry);
        } else {
            b.join_ns("network", entry["path"].as_str().unwrap());
        }
        let err = create_fails(&sb, &b, "badns");
        assert!(err.contains(field) && err.contains(why), "{err}");
    }
}

#[test]
fn a_device_path_that_holds_a_different_file_is_an_error() {
    // "If a file already exists at path that does not match the requested
    // device, the runtime MUST generate an error"; one that matches is the
    // device.
    let sb = Sandbox::new();
    let pre = sb.dir.path().join("pre");
    std::fs::create_dir(&pre).unwrap();
    std::fs::write(pre.join("plain"), "not a device").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        pre.join("null2"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let bundle = |path: &str| {
        let mut b = sb.bundle(&["sh", "-c", "echo x > /dev/pre/null2 && echo ok"]);
        b.push(
            "/mounts",
            json!({"destination": "/dev/pre", "type": "bind", "source": pre, "options": ["bind"]}),
        );
        b.set(
            "/linux/devices",
            json!([{"path": path, "type": "c", "major": 1, "minor": 3, "fileMode": 438}]),
        );
        b
    };
    let err = create_fails(&sb, &bundle("/dev/pre/plain"), "devexists");
    assert!(
        err.contains("linux.devices[0].path") && err.contains("not the requested device"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(pre.join("plain")).unwrap(),
        "not a device"
    );
    assert_eq!(sb.output(&bundle("/dev/pre/null2"), "devmatch"), "ok\n");
}

#[test]
fn masked_readonly_paths_and_seccomp_values_the_spec_refuses() {
    let sb = Sandbox::new();
    let seccomp = |rules: serde_json::Value| {
        let mut s = json!({"defaultAction": "SCMP_ACT_ALLOW"});
        s.as_object_mut()
            .unwrap()
            .extend(rules.as_object().unwrap().clone());
        s
    };
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        // maskedPaths and readonlyPaths "MUST be absolute paths".
        (
            "/linux/maskedPaths",
            json!(["proc/kcore"]),
            "linux.maskedPaths[0]",
        ),
        (
            "/linux/readonlyPaths",
            json!(["proc/sys"]),
            "linux.readonlyPaths[0]",
        ),
        // errnoRet with an action that returns no errno: "the runtime MUST
        // print and error and fail".
        (
            "/linux/seccomp",
            seccomp(
                json!({"syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}),
            ),
            "linux.seccomp.syscalls[0].errnoRet",
        ),
        (
            "/linux/seccomp",
            seccomp(json!({"defaultErrnoRet": 1})),
            "linux.seccomp.defaultErrnoRet",
        ),
        // names "MUST contain at least one entry".
        (
            "/linux/seccomp",
            seccomp(json!({"syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]})),
            "linux.seccomp.syscalls[0].names",
        ),
        // listenerMetadata "MUST NOT be set if listenerPath is not set".
        (
            "/linux/seccomp",
            seccomp(json!({"listenerMetadata": "x"})),
            "linux.seccomp.listenerMetadata",
        ),
    ];
    for (pointer, value, field) in cases {
        let mut b = sb.bundle(&["true"]);
        b.set(pointer, value);
        let err = create_fails(&sb, &b, "refused");
        assert!(
            err.contains(field),
            "{pointer}: error does not name {field}: {err}"
        );
    }
}
