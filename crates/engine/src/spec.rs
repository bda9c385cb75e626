//! The engine's adjustments to the runtime spec the image produced:
//! namespaces, mounts, resources and security options from `berth run`'s
//! flags. The spec is edited as JSON, the form it is stored in.

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::model::{ContainerConfig, DeviceMapping, VolumeMount};

/// Every capability the kernel may know (the runtime drops the ones this
/// kernel lacks).
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Every capability this process may hand on: its bounding set. ("All
/// capabilities" means these; asking for more fails in capset.)
pub fn all_caps_here() -> Vec<String> {
    let bnd = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("CapBnd:"))?;
            u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok()
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bnd & (1u64 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// "net_admin", "NET_ADMIN", "CAP_NET_ADMIN" -> "CAP_NET_ADMIN"; "all" kept.
pub fn cap_name(raw: &str) -> Result<String> {
    let up = raw.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPS.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(Error::invalid(
            format!("capability {raw:?}"),
            "no such capability",
        ))
    }
}

/// The capability set after --cap-add and --cap-drop (drop first, as
/// docker does, so `--cap-drop all --cap-add x` leaves x).
pub fn capabilities(
    base: &[&str],
    add: &[String],
    drop: &[String],
    privileged: bool,
) -> Result<Vec<String>> {
    if privileged {
        return Ok(all_caps_here());
    }
    let add: Vec<String> = add.iter().map(|c| cap_name(c)).collect::<Result<_>>()?;
    let drop: Vec<String> = drop.iter().map(|c| cap_name(c)).collect::<Result<_>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        base.iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        return Ok(all_caps_here());
    }
    for c in add {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

fn set_caps(spec: &mut Value, caps: &[String]) {
    let list = json!(caps);
    let p = &mut spec["process"]["capabilities"];
    *p = json!({"bounding": list, "effective": list, "permitted": list});
}

/// How the network namespace is set up.
pub enum NetNs<'a> {
    /// The host's: no namespace entry.
    Host,
    /// A new, empty one made by the runtime.
    New,
    /// An existing one, by path.
    Join(&'a str),
}

fn set_namespace(spec: &mut Value, typ: &str, how: NetNs) {
    let list = spec["linux"]["namespaces"].as_array_mut();
    let Some(list) = list else {
        spec["linux"]["namespaces"] = json!([]);
        return set_namespace(spec, typ, how);
    };
    list.retain(|n| n["type"] != typ);
    match how {
        NetNs::Host => {}
        NetNs::New => list.push(json!({"type": typ})),
        NetNs::Join(path) => list.push(json!({"type": typ, "path": path})),
    }
}

pub fn set_network(spec: &mut Value, how: NetNs) {
    set_namespace(spec, "network", how);
}

/// Joins the pod's ipc and uts namespaces (by path).
pub fn join_pod(spec: &mut Value, ipc: &str, uts: &str) {
    set_namespace(spec, "ipc", NetNs::Join(ipc));
    set_namespace(spec, "uts", NetNs::Join(uts));
    // The pod's hostname is set by the pod; a container joining the uts
    // namespace must not set its own.
    if let Some(o) = spec.as_object_mut() {
        o.remove("hostname");
    }
}

fn mounts(spec: &mut Value) -> &mut Vec<Value> {
    if !spec["mounts"].is_array() {
        spec["mounts"] = json!([]);
    }
    spec["mounts"].as_array_mut().expect("array")
}

/// Adds a mount, replacing any at the same destination.
pub fn add_mount(spec: &mut Value, destination: &str, typ: &str, source: &str, options: &[&str]) {
    let m = mounts(spec);
    m.retain(|x| x["destination"] != destination);
    m.push(json!({"destination": destination, "type": typ, "source": source, "options": options}));
}

/// A bind mount of a host file from the container's userdata.
pub fn bind_file(spec: &mut Value, destination: &str, source: &str, read_only: bool) {
    let mut o = vec!["rbind", "rprivate", "nosuid", "noexec", "nodev"];
    if read_only {
        o.push("ro");
    }
    add_mount(spec, destination, "bind", source, &o);
}

/// -v / --mount entries, with their sources resolved (volume paths).
pub fn add_volume(spec: &mut Value, v: &VolumeMount, source: &str) -> Result<()> {
    match v.kind.as_str() {
        "bind" | "volume" => {
            let mut o: Vec<&str> = vec!["rbind"];
            let mut prop = "rprivate";
            for x in &v.options {
                match x.as_str() {
                    "ro" | "rw" | "nosuid" | "nodev" | "noexec" | "suid" | "dev" | "exec" => {
                        o.push(x)
                    }
                    "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => prop = x,
                    "z" | "Z" => {} // SELinux relabelling: nothing to do without SELinux.
                    other => {
                        return Err(Error::invalid(
                            format!("volume {}", v.destination),
                            format!("unknown option {other:?}"),
                        ));
                    }
                }
            }
            o.push(prop);
            add_mount(spec, &v.destination, "bind", source, &o);
        }
        "tmpfs" => {
            let mut o: Vec<&str> = vec!["nosuid", "nodev"];
            o.extend(v.options.iter().map(String::as_str));
            add_mount(spec, &v.destination, "tmpfs", "tmpfs", &o);
        }
        other => {
            return Err(Error::invalid(
                format!("mount {}", v.destination),
                format!("unknown type {other:?} (bind, volume or tmpfs)"),
            ));
        }
    }
    Ok(())
}

/// Where --init's binary appears in the container.
pub const INIT_PATH: &str = "/run/berth-init";

/// --init: a minimal init (tini, statically linked) as PID 1, bound in
/// read-only, that reaps zombies and passes signals on to the command.
pub fn add_init(spec: &mut Value) -> Result<()> {
    let host = [
        "/usr/bin/tini-static",
        "/usr/libexec/podman/catatonit",
        "/usr/bin/catatonit",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).is_file())
    .ok_or_else(|| Error::invalid("--init", "no init binary here (install Debian's tini)"))?;
    add_mount(
        spec,
        INIT_PATH,
        "bind",
        host,
        &["rbind", "ro", "nosuid", "nodev", "rprivate"],
    );
    let args = spec["process"]["args"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut with_init = vec![json!(INIT_PATH), json!("--")];
    with_init.extend(args);
    spec["process"]["args"] = json!(with_init);
    Ok(())
}

/// Memory, CPU and pids limits.
pub fn set_resources(spec: &mut Value, c: &ContainerConfig) {
    let r = &mut spec["linux"]["resources"];
    if let Some(m) = c.memory {
        r["memory"]["limit"] = json!(m);
    }
    if let Some(cpus) = c.cpus {
        let period: u64 = 100_000;
        r["cpu"]["period"] = json!(period);
        r["cpu"]["quota"] = json!((cpus * period as f64).round() as i64);
    }
    if let Some(p) = c.pids_limit {
        r["pids"]["limit"] = json!(p);
    }
}

/// The devices every container may open, as podman allows them: null,
/// zero, full, random, urandom, tty, ptmx and the ptys. (type, major,
/// minor; None is any minor.)
const DEFAULT_DEVICES: &[(&str, i64, Option<i64>)] = &[
    ("c", 1, Some(3)),
    ("c", 1, Some(5)),
    ("c", 1, Some(7)),
    ("c", 1, Some(8)),
    ("c", 1, Some(9)),
    ("c", 5, Some(0)),
    ("c", 5, Some(2)),
    ("c", 136, None),
];

/// The device cgroup rules: every device denied, then mknod of any node
/// (as docker and podman with runc allow it: making a node opens nothing),
/// the defaults, then each `--device` with its permissions. A node in the
/// image, or one made with CAP_MKNOD, opens nothing else of the host's.
pub fn set_devices(spec: &mut Value, devices: &[DeviceMapping]) -> Result<()> {
    let mut rules = vec![
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": true, "type": "c", "access": "m"}),
        json!({"allow": true, "type": "b", "access": "m"}),
    ];
    for (typ, major, minor) in DEFAULT_DEVICES {
        let mut r = json!({"allow": true, "type": typ, "major": major, "access": "rwm"});
        if let Some(m) = minor {
            r["minor"] = json!(m);
        }
        rules.push(r);
    }
    let mut nodes = Vec::new();
    for d in devices {
        let node = DeviceNode::of(&d.host)?;
        nodes.push(json!({
            "path": d.container, "type": node.typ, "major": node.major, "minor": node.minor,
            "fileMode": node.mode, "uid": 0, "gid": 0,
        }));
        rules.push(json!({
            "allow": true, "type": node.typ, "major": node.major, "minor": node.minor,
            "access": d.access,
        }));
    }
    spec["linux"]["resources"]["devices"] = json!(rules);
    if !nodes.is_empty() {
        spec["linux"]["devices"] = json!(nodes);
    }
    Ok(())
}

/// A host device node, as `--device` names it (symlinks such as
/// /dev/disk/by-id/... followed, as docker does).
struct DeviceNode {
    typ: &'static str,
    major: u32,
    minor: u32,
    mode: u32,
}

impl DeviceNode {
    fn of(host: &str) -> Result<DeviceNode> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let bad = |why: String| Error::invalid(format!("--device {host}"), why);
        let m = std::fs::metadata(host).map_err(|e| bad(e.to_string()))?;
        let typ = if m.file_type().is_char_device() {
            "c"
        } else if m.file_type().is_block_device() {
            "b"
        } else {
            return Err(bad("not a character or block device".into()));
        };
        let rdev = m.rdev();
        Ok(DeviceNode {
            typ,
            major: libc::major(rdev),
            minor: libc::minor(rdev),
            mode: m.mode() & 0o7777,
        })
    }
}

/// Capabilities, privileged mode, no-new-privileges and seccomp.
pub fn set_security(spec: &mut Value, c: &ContainerConfig) -> Result<()> {
    let caps = capabilities(
        berth_image::spec::CAPS,
        &c.cap_add,
        &c.cap_drop,
        c.privileged,
    )?;
    set_caps(spec, &caps);
    if c.no_new_privileges {
        spec["process"]["noNewPrivileges"] = json!(true);
    }
    if c.privileged {
        // As docker's --privileged: every device cgroup permission, no
        // masked or read-only paths, no seccomp filter, /sys writable.
        let linux = &mut spec["linux"];
        if let Some(o) = linux.as_object_mut() {
            o.remove("maskedPaths");
            o.remove("readonlyPaths");
            o.remove("seccomp");
        }
        linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
        for m in mounts(spec).iter_mut() {
            if m["type"] == "sysfs"
                && let Some(o) = m["options"].as_array_mut()
            {
                o.retain(|x| x != "ro");
            }
        }
        return Ok(());
    }
    set_devices(spec, &c.devices)?;
    match c.seccomp.as_deref() {
        Some("unconfined") => {
            if let Some(o) = spec["linux"].as_object_mut() {
                o.remove("seccomp");
            }
        }
        Some(path) => {
            let raw = std::fs::read(path).map_err(|e| {
                Error::invalid(format!("--security-opt seccomp={path}"), e.to_string())
            })?;
            let profile: Value = serde_json::from_slice(&raw).map_err(|e| {
                Error::invalid(format!("--security-opt seccomp={path}"), e.to_string())
            })?;
            spec["linux"]["seccomp"] = profile;
        }
        None => spec["linux"]["seccomp"] = crate::seccomp::default_profile(&caps),
    }
    Ok(())
}

pub fn set_annotations(spec: &mut Value, labels: &[(String, String)]) {
    for (k, v) in labels {
        spec["annotations"][k] = json!(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_add_and_drop() {
        let base = ["CAP_CHOWN", "CAP_KILL"];
        let c = capabilities(&base, &["net_admin".into()], &["kill".into()], false).unwrap();
        assert_eq!(c, ["CAP_CHOWN", "CAP_NET_ADMIN"]);
        let c = capabilities(&base, &["CAP_KILL".into()], &["ALL".into()], false).unwrap();
        assert_eq!(c, ["CAP_KILL"]);
        assert!(capabilities(&base, &["bogus".into()], &[], false).is_err());
        assert_eq!(
            capabilities(&base, &[], &[], true).unwrap(),
            all_caps_here()
        );
        assert!(all_caps_here().len() <= ALL_CAPS.len());
    }

    #[test]
    fn namespaces_and_mounts_are_replaced_not_doubled() {
        let mut s =
            json!({"linux": {"namespaces": [{"type": "network"}, {"type": "pid"}]}, "mounts": []});
        set_network(&mut s, NetNs::Join("/run/x"));
        set_network(&mut s, NetNs::Join("/run/y"));
        let ns = s["linux"]["namespaces"].as_array().unwrap();
        assert_eq!(ns.iter().filter(|n| n["type"] == "network").count(), 1);
        assert!(ns.iter().any(|n| n["path"] == "/run/y"));
        set_network(&mut s, NetNs::Host);
        assert!(
            !s["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "network")
        );
        bind_file(&mut s, "/etc/hosts", "/a", false);
        bind_file(&mut s, "/etc/hosts", "/b", false);
        assert_eq!(s["mounts"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn bad_volume_options_are_refused() {
        let mut s = json!({});
        let v = VolumeMount {
            kind: "bind".into(),
            source: "/x".into(),
            destination: "/d".into(),
            options: vec!["bogus".into()],
        };
        assert!(add_volume(&mut s, &v, "/x").is_err());
    }
}
