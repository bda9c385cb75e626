//! Reading and checking config.json. Parsing names the JSON path of a bad
//! field; validation rejects what parses but cannot work, before anything is
//! created on the host.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
pub use oci_spec::runtime::{LinuxResources, Process};

use crate::error::{Error, Result};
use crate::namespaces::Namespaces;

/// The largest config.json read: real ones are kilobytes.
const MAX_CONFIG: u64 = 64 << 20;

/// A parsed and validated bundle.
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// config.json as read, kept beside the state for later operations.
    pub raw: Vec<u8>,
}

pub fn load_bundle(dir: &Path) -> Result<Bundle> {
    let dir =
        fs::canonicalize(dir).map_err(|e| Error::os(format!("bundle {}", dir.display()), e))?;
    let path = dir.join("config.json");
    let size = fs::metadata(&path)
        .map_err(|e| Error::os(format!("bundle {}: config.json", dir.display()), e))?
        .len();
    if size > MAX_CONFIG {
        return Err(Error::config(
            "(document)",
            format!(
                "is {size} bytes; more than {} MiB is refused",
                MAX_CONFIG >> 20
            ),
        ));
    }
    let raw = fs::read(&path)
        .map_err(|e| Error::os(format!("bundle {}: config.json", dir.display()), e))?;
    let mut spec: Spec = parse(&raw, "config.json")?;
    absolute_destinations(&mut spec);
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::config("root", "is required"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    let rootfs = fs::canonicalize(&rootfs)
        .map_err(|e| Error::config("root.path", format!("{}: {e}", rootfs.display())))?;
    if !rootfs.is_dir() {
        return Err(Error::config(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    validate(&spec)?;
    Ok(Bundle {
        dir,
        rootfs,
        spec,
        raw,
    })
}

/// The runtime-spec (config.md, "Mounts"): a relative destination, kept
/// for old configurations, is relative to "/".
fn absolute_destinations(spec: &mut Spec) {
    let Some(mounts) = spec.mounts().clone() else {
        return;
    };
    let relative = |m: &oci_spec::runtime::Mount| {
        !m.destination().is_absolute() && !m.destination().as_os_str().is_empty()
    };
    if !mounts.iter().any(relative) {
        return;
    }
    let mounts = mounts
        .into_iter()
        .map(|mut m| {
            if relative(&m) {
                let dest = Path::new("/").join(m.destination());
                m.set_destination(dest);
            }
            m
        })
        .collect();
    spec.set_mounts(Some(mounts));
}

/// Parses JSON into `T`, naming the path of the offending field on error.
pub fn parse<T: serde::de::DeserializeOwned>(raw: &[u8], file: &'static str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Error::Config {
            file,
            field: if path == "." {
                "(document)".into()
            } else {
                path
            },
            why: e.into_inner().to_string(),
        }
    })
}

/// Checks what the types alone cannot express.
pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::config("process", "is required"))?;
    validate_process(process, "config.json", "process.")?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::config("linux", "is required on Linux"))?;
    if linux.intel_rdt().is_some() {
        return Err(Error::config(
            "linux.intelRdt",
            "Intel RDT is not supported by berth-runtime",
        ));
    }
    if let Some(p) = linux.personality() {
        crate::procattrs::personality_value(p)?;
    }
    let ns = Namespaces::from_spec(linux)?;
    if !ns.is_new(LinuxNamespaceType::Mount) {
        let why = if ns.contains(LinuxNamespaceType::Mount) {
            "joins a mount namespace by path"
        } else {
            "lists no mount namespace, so under the runtime-spec's rule (config-linux.md, \"Namespaces\": a namespace type not listed is inherited from the runtime) the container would share the host's"
        };
        return Err(Error::config(
            "linux.namespaces",
            format!(
                "{why}; berth-runtime sets up the root filesystem only in a new mount namespace ({{\"type\": \"mount\"}} without a path), so that its /proc, /dev, /sys and bind mounts never land in the host's mount table (docs/runtime.md, \"Namespaces\")"
            ),
        ));
    }
    let user_ns = ns.contains(LinuxNamespaceType::User);
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if ns.is_new(LinuxNamespaceType::User) && !maps {
        return Err(Error::config(
            "linux.uidMappings",
            "a new user namespace needs uid and gid mappings",
        ));
    }
    if maps && !user_ns {
        return Err(Error::config(
            "linux.uidMappings",
            "mappings are given but there is no user namespace",
        ));
    }
    // The hostname and domainname are set in the container's UTS namespace,
    // a new one or one joined by path; never in the runtime's own (the
    // host's), whether inherited or joined through its path.
    for (field, set) in [
        (
            "hostname",
            spec.hostname().as_ref().is_some_and(|h| !h.is_empty()),
        ),
        (
            "domainname",
            spec.domainname().as_ref().is_some_and(|h| !h.is_empty()),
        ),
    ] {
        if set && !ns.contains(LinuxNamespaceType::Uts) {
            return Err(Error::config(
                field,
                "setting it needs a uts namespace of the container's own (new, or joined by path)",
            ));
        }
        if set && ns.joins_hosts(LinuxNamespaceType::Uts) {
            return Err(Error::config(
                field,
                "the uts namespace joined by path is the runtime's own: setting it would change the host's",
            ));
        }
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
        && !ns.is_new(LinuxNamespaceType::Time)
    {
        return Err(Error::config(
            "linux.timeOffsets",
            "need a new time namespace",
        ));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty())
        && !ns.contains(LinuxNamespaceType::Network)
    {
        return Err(Error::config(
            "linux.netDevices",
            "moving devices needs a network namespace of the container's own",
        ));
    }
    for key in linux.sysctl().iter().flatten().map(|(k, _)| k) {
        check_sysctl(key, &ns)?;
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.destination().as_os_str().is_empty() {
            return Err(Error::config(
                format!("mounts[{i}].destination"),
                "is empty",
            ));
        }
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if bind && m.source().is_none() {
            return Err(Error::config(
                format!("mounts[{i}].source"),
                "a bind mount needs a source",
            ));
        }
    }
    for (field, paths) in [
        ("maskedPaths", linux.masked_paths()),
        ("readonlyPaths", linux.readonly_paths()),
    ] {
        for (i, p) in paths.iter().flatten().enumerate() {
            if !p.starts_with('/') {
                return Err(Error::config(
                    format!("linux.{field}[{i}]"),
                    format!("{p:?} is not an absolute path"),
                ));
            }
        }
    }
    for (key, _) in spec.annotations().iter().flatten() {
        if key.is_empty() {
            return Err(Error::config("annotations", "a key is empty"));
        }
    }
    check_hooks(spec)?;
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        let dotdot = d
            .path()
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
        if !d.path().starts_with("/dev/") || dotdot {
            return Err(Error::config(
                format!("linux.devices[{i}].path"),
                format!("{:?} is not under /dev", d.path()),
            ));
        }
    }
    Ok(())
}

/// Checks a process description: the container's (config.json, fields
/// under "process.") or one given to exec (process.json, no prefix).
pub fn validate_process(
    process: &oci_spec::runtime::Process,
    file: &'static str,
    prefix: &str,
) -> Result<()> {
    let bad = |field: String, why: String| Error::Config {
        file,
        field: format!("{prefix}{field}"),
        why,
    };
    match process.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => return Err(bad("args".into(), "must name a program to run".into())),
    }
    for (i, a) in process.args().iter().flatten().enumerate() {
        if a.contains('\0') {
            return Err(bad(format!("args[{i}]"), "holds a NUL byte".into()));
        }
    }
    let cwd = process.cwd();
    if !cwd.is_absolute() || cwd.to_string_lossy().contains('\0') {
        return Err(bad(
            "cwd".into(),
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    if let Some(umask) = process.user().umask().filter(|u| *u > 0o777) {
        return Err(bad(
            "user.umask".into(),
            format!("{umask:#o} is above 0777"),
        ));
    }
    if let Some(adj) = process
        .oom_score_adj()
        .filter(|a| !(-1000..=1000).contains(a))
    {
        return Err(bad(
            "oomScoreAdj".into(),
            format!("{adj} is outside -1000..1000"),
        ));
    }
    let mut seen = Vec::new();
    for (i, r) in process.rlimits().iter().flatten().enumerate() {
        if seen.contains(&r.typ()) {
            return Err(bad(
                format!("rlimits[{i}].type"),
                format!("{:?} is given twice", r.typ()),
            ));
        }
        seen.push(r.typ());
        if r.soft() > r.hard() {
            return Err(bad(
                format!("rlimits[{i}]"),
                format!("soft limit {} is above hard limit {}", r.soft(), r.hard()),
            ));
        }
    }
    for (i, env) in process.env().iter().flatten().enumerate() {
        if !env.contains('=') || env.starts_with('=') || env.contains('\0') {
            return Err(bad(
                format!("env[{i}]"),
                format!("{env:?} is not KEY=value"),
            ));
        }
    }
    if let Some(io) = process
        .io_priority()
        .filter(|io| !(0..=7).contains(&io.priority()))
    {
        return Err(bad(
            "ioPriority.priority".into(),
            format!("{} is outside 0..7", io.priority()),
        ));
    }
    Ok(())
}

/// ociVersion is SemVer 2.0.0 (MAJOR.MINOR.PATCH, then an optional
/// -prerelease and +build), of major version 1.
fn check_version(v: &str) -> Result<()> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |p: &&str| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p.len() == 1 || !p.starts_with('0'))
    };
    if parts.len() != 3 || !parts.iter().all(numeric) {
        return Err(Error::config(
            "ociVersion",
            format!("{v:?} is not a SemVer version (MAJOR.MINOR.PATCH)"),
        ));
    }
    if parts[0] != "1" {
        return Err(Error::config(
            "ociVersion",
            format!("{v:?} is not a 1.x runtime-spec version"),
        ));
    }
    Ok(())
}

/// The runtime-spec (config.md, "POSIX-platform Hooks"): a hook's path is
/// absolute and its timeout, when set, above zero.
fn check_hooks(spec: &Spec) -> Result<()> {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    let kinds = [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ];
    for (kind, hooks) in kinds {
        for (i, hook) in hooks.iter().flatten().enumerate() {
            if !hook.path().is_absolute() {
                return Err(Error::config(
                    format!("hooks.{kind}[{i}].path"),
                    format!("{:?} is not an absolute path", hook.path()),
                ));
            }
            if let Some(t) = hook.timeout().filter(|t| *t <= 0) {
                return Err(Error::config(
                    format!("hooks.{kind}[{i}].timeout"),
                    format!("{t} is not above zero"),
                ));
            }
        }
    }
    Ok(())
}

/// Only namespaced sysctls may be set, and only when the container has its
/// own copy of that namespace; anything else would change the host.
fn check_sysctl(key: &str, ns: &Namespaces) -> Result<()> {
    let needs = if key.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if key.starts_with("fs.mqueue.")
        || matches!(
            key,
            "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
                | "kernel.shmall"
                | "kernel.shmmax"
                | "kernel.shmmni"
                | "kernel.shm_rmid_forced"
        )
    {
        LinuxNamespaceType::Ipc
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else {
        return Err(Error::config(
            format!("linux.sysctl.{key}"),
            "is not a namespaced sysctl; setting it would change the host",
        ));
    };
    if !ns.contains(needs) || ns.joins_hosts(needs) {
        return Err(Error::config(
            format!("linux.sysctl.{key}"),
            format!(
                "needs a {} namespace of the container's own",
                crate::namespaces::name(needs)
            ),
        ));
    }
    Ok(())
}
