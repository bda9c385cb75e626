//! The engine's policy over the runtime spec the image's defaults make:
//! namespaces, mounts, resources, devices and security options from the
//! container's request. Typed (oci-spec): a spec is built in stages, image
//! defaults, then this policy, then what one run adds (its network, its
//! /etc files), and written once, when the container starts.

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResources,
    Mount, MountBuilder, Spec,
};

use crate::error::{Error, Result};
use crate::model::{ContainerConfig, DeviceMapping, Extra, VolumeMount};

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

fn linux(spec: &mut Spec) -> &mut oci_spec::runtime::Linux {
    spec.linux_mut()
        .get_or_insert_with(|| LinuxBuilder::default().build().expect("an empty linux"))
}

pub(crate) fn resources(spec: &mut Spec) -> &mut LinuxResources {
    linux(spec)
        .resources_mut()
        .get_or_insert_with(LinuxResources::default)
}

fn capability(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| Error::invalid(format!("capability {name:?}"), "not one this berth knows"))
}

fn set_caps(spec: &mut Spec, caps: &[String]) -> Result<()> {
    let set: oci_spec::runtime::Capabilities =
        caps.iter().map(|c| capability(c)).collect::<Result<_>>()?;
    let mut c = oci_spec::runtime::LinuxCapabilitiesBuilder::default()
        .build()
        .expect("empty sets");
    c.set_bounding(Some(set.clone()));
    c.set_effective(Some(set.clone()));
    c.set_permitted(Some(set));
    c.set_inheritable(None);
    c.set_ambient(None);
    if let Some(p) = spec.process_mut() {
        p.set_capabilities(Some(c));
    }
    Ok(())
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

fn set_namespace(spec: &mut Spec, typ: LinuxNamespaceType, how: NetNs) {
    let list = linux(spec).namespaces_mut().get_or_insert_with(Vec::new);
    list.retain(|n| n.typ() != typ);
    let ns = |path: Option<&str>| -> LinuxNamespace {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        match path {
            Some(p) => b.path(p),
            None => b,
        }
        .build()
        .expect("a namespace")
    };
    match how {
        NetNs::Host => {}
        NetNs::New => list.push(ns(None)),
        NetNs::Join(path) => list.push(ns(Some(path))),
    }
}

pub fn set_network(spec: &mut Spec, how: NetNs) {
    set_namespace(spec, LinuxNamespaceType::Network, how);
}

pub fn set_pid(spec: &mut Spec, how: NetNs) {
    set_namespace(spec, LinuxNamespaceType::Pid, how);
}

/// Joins the namespaces the pod's infra process `infra` holds: uts, ipc
/// (or the host's), pid when the pod shares one (or the host's), and the
/// pod's sysctls.
pub fn join_pod(spec: &mut Spec, pod: &crate::model::Pod) -> Result<()> {
    let o = &pod.options;
    let ns = |t: &str| {
        pod.namespace(t)
            .ok_or_else(|| Error::Conflict(format!("pod {}: its {t} namespace is gone", pod.name)))
    };
    set_namespace(spec, LinuxNamespaceType::Uts, NetNs::Join(&ns("uts")?));
    if o.host_ipc {
        set_namespace(spec, LinuxNamespaceType::Ipc, NetNs::Host);
    } else {
        set_namespace(spec, LinuxNamespaceType::Ipc, NetNs::Join(&ns("ipc")?));
    }
    if o.host_pid {
        set_namespace(spec, LinuxNamespaceType::Pid, NetNs::Host);
    } else if o.share_pid {
        set_namespace(spec, LinuxNamespaceType::Pid, NetNs::Join(&ns("pid")?));
    }
    if !o.sysctls.is_empty() {
        let l = linux(spec);
        let mut m = l.sysctl().clone().unwrap_or_default();
        for (k, v) in &o.sysctls {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        l.set_sysctl(Some(m));
    }
    // The pod's hostname is set by the pod; a container joining the uts
    // namespace must not set its own.
    spec.set_hostname(None);
    Ok(())
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .expect("a mount with every field")
}

/// Adds a mount, replacing any at the same destination.
pub fn add_mount(spec: &mut Spec, destination: &str, typ: &str, source: &str, options: &[&str]) {
    let m = spec.mounts_mut().get_or_insert_with(Vec::new);
    m.retain(|x| x.destination().as_os_str() != destination);
    m.push(mount(destination, typ, source, options));
}

/// A bind mount of a host file from the container's userdata.
pub fn bind_file(spec: &mut Spec, destination: &str, source: &str, read_only: bool) {
    let mut o = vec!["rbind", "rprivate", "nosuid", "noexec", "nodev"];
    if read_only {
        o.push("ro");
    }
    add_mount(spec, destination, "bind", source, &o);
}

/// -v / --mount entries, with their sources resolved (volume paths).
pub fn add_volume(spec: &mut Spec, v: &VolumeMount, source: &str) -> Result<()> {
    match v.kind.as_str() {
        "bind" | "volume" | crate::imagevol::KIND => {
            let mut o: Vec<&str> = vec!["rbind"];
            if v.kind == crate::imagevol::KIND {
                // An image's files are never the container's to change.
                o.extend(["ro", "nosuid", "nodev"]);
            }
            let mut prop = "rprivate";
            for x in &v.options {
                match x.as_str() {
                    "ro" | "rw" | "nosuid" | "nodev" | "noexec" | "suid" | "dev" | "exec" => {
                        o.push(x)
                    }
                    // Read-only all the way down, submounts too (CRI's
                    // recursive_read_only; mount_setattr(2)).
                    "rro" => o.extend(["ro", "rro"]),
                    "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => prop = x,
                    "z" | "Z" => {} // SELinux relabelling: nothing to do without SELinux.
                    // Files shown with ids mapped as the container's user
                    // namespace maps them (podman's `idmap`).
                    "idmap" => o.push("idmap"),
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
pub fn add_init(spec: &mut Spec) -> Result<()> {
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
    if let Some(p) = spec.process_mut() {
        let mut args = vec![INIT_PATH.to_string(), "--".to_string()];
        args.extend(p.args().clone().unwrap_or_default());
        p.set_args(Some(args));
    }
    Ok(())
}

/// Memory, CPU and pids limits.
/// Takes every limit out of the spec (device rules stay: they are not
/// limits, and without a cgroup they are not applied either); true if
/// there were any.
pub fn drop_limits(r: &mut LinuxResources) -> bool {
    let had = r.memory().is_some()
        || r.cpu().is_some()
        || r.pids().is_some()
        || r.block_io().is_some()
        || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
        || r.network().is_some()
        || r.unified().as_ref().is_some_and(|u| !u.is_empty());
    r.set_memory(None)
        .set_cpu(None)
        .set_pids(None)
        .set_block_io(None)
        .set_hugepage_limits(None)
        .set_network(None)
        .set_unified(None);
    had
}

pub fn set_resources(spec: &mut Spec, c: &ContainerConfig) {
    let r = resources(spec);
    if let Some(m) = c.memory {
        r.memory_mut()
            .get_or_insert_with(Default::default)
            .set_limit(Some(m));
    }
    if let Some(cpus) = c.cpus {
        let period: u64 = 100_000;
        let cpu = r.cpu_mut().get_or_insert_with(Default::default);
        cpu.set_period(Some(period));
        cpu.set_quota(Some((cpus * period as f64).round() as i64));
    }
    if let Some(p) = c.pids_limit {
        r.pids_mut()
            .get_or_insert_with(Default::default)
            .set_limit(p);
    }
}

/// The devices every container may open, as podman allows them: null,
/// zero, full, random, urandom, tty, ptmx and the ptys. (type, major,
/// minor; None is any minor.)
const DEFAULT_DEVICES: &[(LinuxDeviceType, i64, Option<i64>)] = &[
    (LinuxDeviceType::C, 1, Some(3)),
    (LinuxDeviceType::C, 1, Some(5)),
    (LinuxDeviceType::C, 1, Some(7)),
    (LinuxDeviceType::C, 1, Some(8)),
    (LinuxDeviceType::C, 1, Some(9)),
    (LinuxDeviceType::C, 5, Some(0)),
    (LinuxDeviceType::C, 5, Some(2)),
    (LinuxDeviceType::C, 136, None),
];

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access(access)
        .build()
        .expect("a rule");
    r.set_typ(typ);
    r.set_major(major);
    r.set_minor(minor);
    r
}

/// The device cgroup rules: every device denied, then mknod of any node
/// (as docker and podman with runc allow it: making a node opens nothing),
/// the defaults, then each `--device` with its permissions. A node in the
/// image, or one made with CAP_MKNOD, opens nothing else of the host's.
pub fn set_devices(spec: &mut Spec, devices: &[DeviceMapping]) -> Result<()> {
    let mut rules = vec![
        rule(false, None, None, None, "rwm"),
        rule(true, Some(LinuxDeviceType::C), None, None, "m"),
        rule(true, Some(LinuxDeviceType::B), None, None, "m"),
    ];
    for (typ, major, minor) in DEFAULT_DEVICES {
        rules.push(rule(true, Some(*typ), Some(*major), *minor, "rwm"));
    }
    resources(spec).set_devices(Some(rules));
    for d in devices {
        add_device(spec, d)?;
    }
    Ok(())
}

/// One host device node in the container, with its cgroup permission
/// appended to the rules already there.
pub fn add_device(spec: &mut Spec, d: &DeviceMapping) -> Result<()> {
    let node = DeviceNode::of(&d.host)?;
    let dev = node.at(&d.container);
    let l = linux(spec);
    let nodes = l.devices_mut().get_or_insert_with(Vec::new);
    nodes.retain(|n| n.path() != dev.path());
    nodes.push(dev);
    resources(spec)
        .devices_mut()
        .get_or_insert_with(Vec::new)
        .push(rule(
            true,
            Some(node.typ),
            Some(node.major as i64),
            Some(node.minor as i64),
            &d.access,
        ));
    Ok(())
}

/// Every device node under the host's `dir`, at the same path (podman's
/// --privileged): the runtime makes them (or binds them, in a user
/// namespace). The file systems /dev carries of its own (pts, shm,
/// mqueue) are the container's, not walked.
fn add_host_devices(spec: &mut Spec, dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !matches!(e.file_name().to_str(), Some("pts" | "shm" | "mqueue")) {
                add_host_devices(spec, &path);
            }
            continue;
        }
        let Some(p) = path.to_str() else { continue };
        let Ok(node) = DeviceNode::of(p) else {
            continue;
        };
        let dev = node.at(p);
        let nodes = linux(spec).devices_mut().get_or_insert_with(Vec::new);
        if !nodes.iter().any(|n| n.path() == dev.path()) {
            nodes.push(dev);
        }
    }
}

/// A host device node, as `--device` names it (symlinks such as
/// /dev/disk/by-id/... followed, as docker does).
struct DeviceNode {
    typ: LinuxDeviceType,
    major: u32,
    minor: u32,
    mode: u32,
}

impl DeviceNode {
    /// The node made at `path` in the container, root's.
    fn at(&self, path: &str) -> oci_spec::runtime::LinuxDevice {
        LinuxDeviceBuilder::default()
            .path(path)
            .typ(self.typ)
            .major(self.major as i64)
            .minor(self.minor as i64)
            .file_mode(self.mode)
            .uid(0u32)
            .gid(0u32)
            .build()
            .expect("a device")
    }

    fn of(host: &str) -> Result<DeviceNode> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let bad = |why: String| Error::invalid(format!("--device {host}"), why);
        let m = std::fs::metadata(host).map_err(|e| bad(e.to_string()))?;
        let typ = if m.file_type().is_char_device() {
            LinuxDeviceType::C
        } else if m.file_type().is_block_device() {
            LinuxDeviceType::B
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

/// Capabilities, privileged mode, devices, no-new-privileges and seccomp.
pub fn set_security(spec: &mut Spec, c: &ContainerConfig) -> Result<()> {
    let ambient = &c.extra.cap_ambient;
    let add: Vec<String> = c.cap_add.iter().chain(ambient).cloned().collect();
    let caps = capabilities(berth_image::spec::CAPS, &add, &c.cap_drop, c.privileged)?;
    set_caps(spec, &caps)?;
    if !ambient.is_empty() {
        // The kernel keeps an ambient capability only while it is also
        // permitted and inheritable: added above, inheritable here.
        let set: oci_spec::runtime::Capabilities = ambient
            .iter()
            .map(|a| capability(&cap_name(a)?))
            .collect::<Result<_>>()?;
        if let Some(p) = spec.process_mut()
            && let Some(mut caps) = p.capabilities().clone()
        {
            caps.set_inheritable(Some(set.clone()));
            caps.set_ambient(Some(set));
            p.set_capabilities(Some(caps));
        }
    }
    if c.no_new_privileges
        && let Some(p) = spec.process_mut()
    {
        p.set_no_new_privileges(Some(true));
    }
    if c.privileged {
        // As docker's --privileged: every device cgroup permission, no
        // masked or read-only paths, no seccomp filter, /sys writable.
        let l = linux(spec);
        l.set_masked_paths(None);
        l.set_readonly_paths(None);
        l.set_seccomp(None);
        resources(spec).set_devices(Some(vec![rule(true, None, None, None, "rwm")]));
        for m in spec.mounts_mut().iter_mut().flatten() {
            if m.typ().as_deref() == Some("sysfs")
                && let Some(o) = m.options_mut()
            {
                o.retain(|x| x != "ro");
            }
        }
        add_host_devices(spec, std::path::Path::new("/dev"));
        return Ok(());
    }
    set_devices(spec, &c.devices)?;
    let profile = match c.seccomp.as_deref() {
        Some("unconfined") => None,
        Some(path) => {
            let bad = |e: String| Error::invalid(format!("--security-opt seccomp={path}"), e);
            let raw = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            Some(serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?)
        }
        None => Some(
            serde_json::from_value(crate::seccomp::default_profile(&caps))
                .expect("the default profile is a profile"),
        ),
    };
    linux(spec).set_seccomp(profile);
    Ok(())
}

/// docker's short ulimit names (`nofile`) or the spec's (`RLIMIT_NOFILE`).
fn rlimit_type(name: &str) -> Result<oci_spec::runtime::PosixRlimitType> {
    let full = if name.to_ascii_uppercase().starts_with("RLIMIT_") {
        name.to_ascii_uppercase()
    } else {
        format!("RLIMIT_{}", name.to_ascii_uppercase())
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| Error::invalid(format!("ulimit {name:?}"), "no such limit"))
}

fn id_maps(maps: &[(u32, u32, u32)]) -> Vec<oci_spec::runtime::LinuxIdMapping> {
    maps.iter()
        .map(|&(container, host, size)| {
            oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(container)
                .host_id(host)
                .size(size)
                .build()
                .expect("a mapping")
        })
        .collect()
}

/// The resources of `Extra` (cpu, memory beyond the limit, hugepages,
/// cgroup v2 files).
fn set_extra_resources(r: &mut LinuxResources, x: &Extra) {
    if x.cpu_shares.is_some()
        || x.cpu_quota.is_some()
        || x.cpu_period.is_some()
        || x.cpuset_cpus.is_some()
        || x.cpuset_mems.is_some()
    {
        let cpu = r.cpu_mut().get_or_insert_with(Default::default);
        if let Some(v) = x.cpu_shares {
            cpu.set_shares(Some(v));
        }
        if let Some(v) = x.cpu_quota {
            cpu.set_quota(Some(v));
        }
        if let Some(v) = x.cpu_period {
            cpu.set_period(Some(v));
        }
        if x.cpuset_cpus.is_some() {
            cpu.set_cpus(x.cpuset_cpus.clone());
        }
        if x.cpuset_mems.is_some() {
            cpu.set_mems(x.cpuset_mems.clone());
        }
    }
    if x.memory_swap.is_some() || x.memory_reservation.is_some() {
        let m = r.memory_mut().get_or_insert_with(Default::default);
        if let Some(v) = x.memory_swap {
            m.set_swap(Some(v));
        }
        if let Some(v) = x.memory_reservation {
            m.set_reservation(Some(v));
        }
    }
    if !x.hugepages.is_empty() {
        r.set_hugepage_limits(Some(
            x.hugepages
                .iter()
                .map(|(size, limit)| {
                    oci_spec::runtime::LinuxHugepageLimitBuilder::default()
                        .page_size(size.clone())
                        .limit(*limit as i64)
                        .build()
                        .expect("a hugepage limit")
                })
                .collect(),
        ));
    }
    if !x.unified.is_empty() {
        r.set_unified(Some(x.unified.clone().into_iter().collect()));
    }
}

/// The cgroup resources a container config asks for, as the runtime's
/// `update` takes them.
pub fn resources_of(c: &ContainerConfig) -> LinuxResources {
    let mut s = Spec::default();
    set_resources(&mut s, c);
    set_extra_resources(resources(&mut s), &c.extra);
    let mut r = s
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    // The device rules are the container's for its life, not a resource
    // to update (Spec::default's deny-all would replace them).
    r.set_devices(None);
    r
}

/// Everything of `Extra`: kernel parameters, the rest of the resources,
/// limits, groups, LSM labels, paths and a user namespace. Groups by name
/// are looked up in the image's /etc/group under `rootfs`.
/// A sysctl the container gets unless something already set it.
pub fn set_extra(spec: &mut Spec, x: &Extra, rootfs: &std::path::Path) -> Result<()> {
    if !x.sysctls.is_empty() {
        let l = linux(spec);
        let mut m = l.sysctl().clone().unwrap_or_default();
        m.extend(x.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
        l.set_sysctl(Some(m));
    }
    if !x.annotations.is_empty() {
        let a = spec.annotations_mut().get_or_insert_with(Default::default);
        a.extend(x.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    set_extra_resources(resources(spec), x);
    if let Some(p) = spec.process_mut() {
        if let Some(adj) = x.oom_score_adj {
            p.set_oom_score_adj(Some(adj));
        }
        if !x.ulimits.is_empty() {
            let mut limits = p.rlimits().clone().unwrap_or_default();
            for (name, soft, hard) in &x.ulimits {
                let typ = rlimit_type(name)?;
                if soft > hard {
                    return Err(Error::invalid(
                        format!("ulimit {name}={soft}:{hard}"),
                        "the soft limit is above the hard one",
                    ));
                }
                limits.retain(|l| l.typ() != typ);
                limits.push(
                    oci_spec::runtime::PosixRlimitBuilder::default()
                        .typ(typ)
                        .soft(*soft)
                        .hard(*hard)
                        .build()
                        .expect("an rlimit"),
                );
            }
            p.set_rlimits(Some(limits));
        }
        if !x.group_add.is_empty() {
            let mut gids = p.user().additional_gids().clone().unwrap_or_default();
            for g in &x.group_add {
                let id = berth_image::spec::resolve_group(rootfs, g)?;
                if !gids.contains(&id) {
                    gids.push(id);
                }
            }
            p.user_mut().set_additional_gids(Some(gids));
        }
        if x.apparmor.is_some() {
            p.set_apparmor_profile(x.apparmor.clone());
        }
        if x.selinux_label.is_some() {
            p.set_selinux_label(x.selinux_label.clone());
        }
    }
    if let Some(size) = x.shm_size {
        for m in spec.mounts_mut().iter_mut().flatten() {
            if m.destination().as_os_str() == "/dev/shm"
                && let Some(o) = m.options_mut()
            {
                o.retain(|x| !x.starts_with("size="));
                o.push(format!("size={size}"));
            }
        }
    }
    let l = linux(spec);
    if x.masked_paths.is_some() {
        l.set_masked_paths(x.masked_paths.clone());
    }
    if x.readonly_paths.is_some() {
        l.set_readonly_paths(x.readonly_paths.clone());
    }
    if !x.uid_map.is_empty() || !x.gid_map.is_empty() {
        l.set_uid_mappings(Some(id_maps(&x.uid_map)));
        l.set_gid_mappings(Some(id_maps(&x.gid_map)));
        set_namespace(spec, LinuxNamespaceType::User, NetNs::New);
    }
    Ok(())
}

/// The annotation naming a pod member's pod, for runtimes that group a
/// pod's containers (berth-vm runs them in one VM). Not containerd's
/// sandbox-id: runsc reads that as an order to join a sandbox container,
/// and berth's pods have none in the runtime.
pub const POD_ID: &str = "io.github.berth.pod-id";

pub fn set_annotations(spec: &mut Spec, labels: &[(String, String)]) {
    let a = spec.annotations_mut().get_or_insert_with(Default::default);
    for (k, v) in labels {
        a.insert(k.clone(), v.clone());
    }
}

/// The container's cgroup: under `parent` (CRI's, a pod's) when given,
/// else a top-level one of its own: a parent shared by all containers
/// would outlive them (a runtime removes only the parents it made, and
/// with containers made side by side no one made it alone).
pub fn set_cgroup(spec: &mut Spec, id: &str, parent: Option<&str>) {
    let path = match parent {
        Some(p) => format!("/{}/berth-{id}", p.trim_matches('/')),
        None => format!("/berth-{id}"),
    };
    // An ordinary user's are relative: the runtime puts them beside its
    // own cgroup, in the subtree delegated to the user, where it may.
    let path = match berth_base::rootless::host_user() {
        Some(_) => path.trim_start_matches('/').to_string(),
        None => path,
    };
    linux(spec).set_cgroups_path(Some(path.into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "linux": {"namespaces": [{"type": "network"}, {"type": "pid"}]},
            "mounts": []
        }))
        .unwrap()
    }

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
        let mut s = spec();
        set_network(&mut s, NetNs::Join("/run/x"));
        set_network(&mut s, NetNs::Join("/run/y"));
        let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let net: Vec<_> = ns
            .iter()
            .filter(|n| n.typ() == LinuxNamespaceType::Network)
            .collect();
        assert_eq!(net.len(), 1);
        assert_eq!(
            net[0].path().as_deref(),
            Some(std::path::Path::new("/run/y"))
        );
        set_network(&mut s, NetNs::Host);
        let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        bind_file(&mut s, "/etc/hosts", "/a", false);
        bind_file(&mut s, "/etc/hosts", "/b", false);
        assert_eq!(s.mounts().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn bad_volume_options_are_refused() {
        let mut s = spec();
        let v = VolumeMount {
            kind: "bind".into(),
            source: "/x".into(),
            destination: "/d".into(),
            options: vec!["bogus".into()],
            ..Default::default()
        };
        assert!(add_volume(&mut s, &v, "/x").is_err());
    }

    #[test]
    fn the_extra_settings_land_where_runtimes_read_them() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nwheel:x:10:\n").unwrap();
        let mut s = spec();
        s.set_mounts(Some(vec![mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "size=65536k"],
        )]));
        let x = Extra {
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            memory_swap: Some(-1),
            hugepages: vec![("2MB".into(), 4 << 20)],
            unified: [("memory.high".to_string(), "1G".to_string())].into(),
            oom_score_adj: Some(500),
            ulimits: vec![("nofile".into(), 100, 200)],
            group_add: vec!["wheel".into(), "55".into()],
            shm_size: Some(1 << 20),
            masked_paths: Some(vec!["/proc/x".into()]),
            uid_map: vec![(0, 100000, 65536)],
            gid_map: vec![(0, 100000, 65536)],
            ..Default::default()
        };
        set_extra(&mut s, &x, d.path()).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
        assert_eq!(v["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(v["linux"]["resources"]["cpu"]["cpus"], "0");
        assert_eq!(v["linux"]["resources"]["memory"]["swap"], -1);
        assert_eq!(
            v["linux"]["resources"]["hugepageLimits"][0]["pageSize"],
            "2MB"
        );
        assert_eq!(v["linux"]["resources"]["unified"]["memory.high"], "1G");
        assert_eq!(v["process"]["oomScoreAdj"], 500);
        let nofile = v["process"]["rlimits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["type"] == "RLIMIT_NOFILE")
            .unwrap()
            .clone();
        assert_eq!(
            (nofile["soft"].as_u64(), nofile["hard"].as_u64()),
            (Some(100), Some(200))
        );
        assert_eq!(
            v["process"]["user"]["additionalGids"],
            serde_json::json!([10, 55])
        );
        assert!(
            v["mounts"][0]["options"]
                .as_array()
                .unwrap()
                .contains(&"size=1048576".into())
        );
        assert_eq!(v["linux"]["maskedPaths"], serde_json::json!(["/proc/x"]));
        assert_eq!(v["linux"]["uidMappings"][0]["hostID"], 100000);
        assert!(
            v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "user")
        );
        // Bad values are named.
        let bad = Extra {
            ulimits: vec![("bogus".into(), 1, 1)],
            ..Default::default()
        };
        assert!(
            set_extra(&mut spec(), &bad, d.path())
                .unwrap_err()
                .to_string()
                .contains("bogus")
        );
        let bad = Extra {
            group_add: vec!["nogroup".into()],
            ..Default::default()
        };
        assert!(set_extra(&mut spec(), &bad, d.path()).is_err());
    }

    #[test]
    fn policy_is_typed_and_serializes_as_runtimes_read_it() {
        let mut s = spec();
        let c = ContainerConfig {
            memory: Some(64 << 20),
            cpus: Some(1.5),
            pids_limit: Some(50),
            labels: vec![("k".into(), "v".into())],
            ..Default::default()
        };
        set_resources(&mut s, &c);
        set_security(&mut s, &c).unwrap();
        set_annotations(&mut s, &c.labels);
        set_cgroup(&mut s, "abc", None);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 150_000);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 50);
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
        assert_eq!(v["linux"]["cgroupsPath"], "/berth-abc");
        assert_eq!(v["annotations"]["k"], "v");
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        let caps = v["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), berth_image::spec::CAPS.len());
    }
}
