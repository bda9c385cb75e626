//! Containers: a CRI container config checked and turned into the
//! engine's container config, and an engine container shown as CRI's
//! container and container status.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use berth_engine::model::{
    Container, ContainerConfig, DeviceMapping, Extra, NetworkMode, Pod, Status as EngineStatus,
    VolumeMount,
};
use tonic::Status;

use crate::api;
use crate::config::Config;
use crate::meta::{self, ContainerData, OWNER, SandboxData};
use crate::service::Cri;
use crate::status::{invalid, required};
use crate::time;

/// What CreateContainer makes: the store's name and the engine config.
pub struct Request {
    pub name: String,
    pub config: ContainerConfig,
    /// What was adjusted to what this host allows, for the log.
    pub warnings: Vec<String>,
}

/// The engine's config for a CreateContainer in `pod`, checked field by
/// field before anything is made. `image_ref` is the image's id.
pub fn request(
    cfg: &Config,
    pod: &Pod,
    sandbox: &SandboxData,
    r: &api::CreateContainerRequest,
    image_ref: &str,
) -> Result<Request, Status> {
    let c = r.config.as_ref().ok_or_else(|| required("config"))?;
    let md = c
        .metadata
        .as_ref()
        .ok_or_else(|| required("config.metadata"))?;
    crate::sandbox::check_word("config.metadata.name", &md.name)?;
    let pod_md = sandbox
        .config
        .metadata
        .as_ref()
        .ok_or_else(|| Status::data_loss(format!("pod {}: its metadata is lost", pod.id)))?;
    let image = c.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    if image.is_empty() {
        return Err(required("config.image.image"));
    }
    let mut warnings = Vec::new();
    let mut out = ContainerConfig {
        image: image.to_string(),
        pod: Some(pod.id.clone()),
        network: NetworkMode::Pod,
        runtime: sandbox.runtime.clone(),
        runtime_flags: sandbox.runtime_flags.clone(),
        tty: c.tty,
        stdin: c.stdin,
        owner: Some(OWNER.into()),
        labels: meta::labels_in(&c.labels),
        ..ContainerConfig::default()
    };
    // Kubernetes' command is the entrypoint and its args the cmd; a
    // command without args drops the image's cmd.
    if !c.command.is_empty() {
        out.entrypoint = Some(c.command.clone());
        out.cmd = Some(c.args.clone());
    } else if !c.args.is_empty() {
        out.cmd = Some(c.args.clone());
    }
    for (i, kv) in c.envs.iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains(['=', '\0']) || kv.value.contains('\0') {
            return Err(invalid(
                &format!("config.envs[{i}]"),
                format!("{:?} is not a variable name", kv.key),
            ));
        }
        out.env.push(format!("{}={}", kv.key, kv.value));
    }
    if !c.working_dir.is_empty() {
        if !c.working_dir.starts_with('/') {
            return Err(invalid(
                "config.working_dir",
                format!("{:?} is not absolute", c.working_dir),
            ));
        }
        out.workdir = Some(c.working_dir.clone());
    }
    for (i, m) in c.mounts.iter().enumerate() {
        out.volumes.push(mount(cfg, i, m)?);
    }
    for (i, d) in c.devices.iter().enumerate() {
        out.devices.push(device(i, d)?);
    }
    cdi_devices(cfg, c, &mut out)?;
    out.extra.annotations = c.annotations.clone().into_iter().collect();
    out.log_path = log_path(sandbox, c)?;
    let linux = c.linux.clone().unwrap_or_default();
    if let Some(res) = &linux.resources {
        resources(res, &mut out, &mut warnings)?;
    }
    security(cfg, linux.security_context.as_ref(), &mut out)?;
    idmapped_mounts(c, &out)?;
    let data = ContainerData {
        config: c.clone(),
        pod_sandbox_id: pod.id.clone(),
        image_ref: image_ref.to_string(),
        user: None,
    };
    out.manager_data = Some(serde_json::to_value(&data).expect("a container config serializes"));
    Ok(Request {
        name: meta::container_name(md, pod_md),
        config: out,
        warnings,
    })
}

/// Annotations through which kubelet's device plugins name CDI devices
/// (values: comma-separated names).
const CDI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// The CDI devices of `config.cdi_devices` and of the `cdi.k8s.io/*`
/// annotations, resolved against the spec files now: an unknown one is
/// refused with its field named.
fn cdi_devices(
    cfg: &Config,
    c: &api::ContainerConfig,
    out: &mut ContainerConfig,
) -> Result<(), Status> {
    let mut named: Vec<(String, String)> = c
        .cdi_devices
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("config.cdi_devices[{i}].name"), d.name.clone()))
        .collect();
    let mut keys: Vec<&String> = c
        .annotations
        .keys()
        .filter(|k| k.starts_with(CDI_ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    for k in keys {
        for name in c.annotations[k].split(',').map(str::trim) {
            if !name.is_empty() {
                named.push((format!("config.annotations[{k:?}]"), name.to_string()));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    named.retain(|(_, n)| seen.insert(n.clone()));
    if named.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = named.iter().map(|(_, n)| n.clone()).collect();
    let registry = berth_engine::cdi::Registry::load(&cfg.cdi_spec_dirs);
    let edits = registry
        .resolve(&names)
        .map_err(|u| invalid(&named[u.index].0, format!("CDI device {}", u.why)))?;
    out.extra.cdi_devices = names;
    out.extra.cdi = Some(edits);
    Ok(())
}

/// The container whose pid namespace a new container of `pod` joins
/// (TARGET): one of berthd's, running, in the same pod.
pub fn check_pid_target(cri: &Cri, pod: &Pod, target: &str) -> Result<(), Status> {
    const F: &str = "config.linux.security_context.namespace_options.target_id";
    let (t, d) = cri.container(target).map_err(|s| match s.code() {
        tonic::Code::NotFound => Status::not_found(format!("{F}: container {target} not found")),
        _ => s,
    })?;
    if d.pod_sandbox_id != pod.id {
        return Err(invalid(
            F,
            format!(
                "container {} is in pod sandbox {}, not in {}",
                t.id, d.pod_sandbox_id, pod.id
            ),
        ));
    }
    if t.state.status != EngineStatus::Running {
        return Err(Status::failed_precondition(format!(
            "{F}: container {} is {}, not running: it has no pid namespace to join",
            t.id,
            t.state.status.name()
        )));
    }
    Ok(())
}

/// `path` with the symlinks of its longest existing prefix resolved and
/// the missing rest appended.
fn resolve_existing(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return missing.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Refuses a host path outside `allowed_host_paths` (when any are set).
fn allowed(cfg: &Config, field: &str, host: &Path, resolved: &Path) -> Result<(), Status> {
    if cfg.allowed_host_paths.is_empty()
        || cfg
            .allowed_host_paths
            .iter()
            .any(|a| resolved.starts_with(a))
    {
        return Ok(());
    }
    Err(invalid(
        field,
        format!(
            "{} (as {}) is outside the allowed host paths ({})",
            host.display(),
            resolved.display(),
            cfg.allowed_host_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// A host path bind: absolute on both sides; the host path with its
/// symlinks resolved (so what is mounted is what was checked), made as a
/// directory when missing (as kubelet's hostPath DirectoryOrCreate and
/// other runtimes do), and within `allowed_host_paths`.
fn mount(cfg: &Config, i: usize, m: &api::Mount) -> Result<VolumeMount, Status> {
    let field = |f: &str| format!("config.mounts[{i}].{f}");
    if !m.container_path.starts_with('/') {
        return Err(invalid(
            &field("container_path"),
            format!("{:?} is not an absolute path", m.container_path),
        ));
    }
    if let Some(image) = &m.image {
        // The image's id is put in by `resolve_image_volumes`.
        if image.image.is_empty() {
            return Err(required(&field("image.image")));
        }
        if !m.host_path.is_empty() {
            return Err(invalid(
                &field("host_path"),
                "an image volume has no host path",
            ));
        }
        return Ok(VolumeMount {
            kind: berth_engine::imagevol::KIND.into(),
            source: image.image.clone(),
            destination: m.container_path.clone(),
            options: vec!["ro".into()],
            ..Default::default()
        });
    }
    let host = Path::new(&m.host_path);
    if !host.is_absolute() || host.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(
            &field("host_path"),
            format!("{:?} is not an absolute path without ..", m.host_path),
        ));
    }
    // Checked before a missing directory is made (nothing is created
    // outside the allowed paths), and again once it exists.
    allowed(cfg, &field("host_path"), host, &resolve_existing(host))?;
    if std::fs::symlink_metadata(host).is_err() {
        std::fs::create_dir_all(host).map_err(|e| {
            invalid(
                &field("host_path"),
                format!("{}: cannot create it: {e}", host.display()),
            )
        })?;
    }
    let resolved = std::fs::canonicalize(host)
        .map_err(|e| invalid(&field("host_path"), format!("{}: {e}", host.display())))?;
    allowed(cfg, &field("host_path"), host, &resolved)?;
    let mut options = Vec::new();
    if m.readonly {
        options.push("ro".to_string());
    }
    let propagation = api::MountPropagation::try_from(m.propagation).map_err(|_| {
        invalid(
            &field("propagation"),
            format!("{} is not a propagation", m.propagation),
        )
    })?;
    options.push(
        match propagation {
            api::MountPropagation::PropagationPrivate => "rprivate",
            api::MountPropagation::PropagationHostToContainer => "rslave",
            api::MountPropagation::PropagationBidirectional => "rshared",
        }
        .to_string(),
    );
    if m.recursive_read_only {
        if !m.readonly || propagation != api::MountPropagation::PropagationPrivate {
            return Err(invalid(
                &field("recursive_read_only"),
                "needs readonly and private propagation",
            ));
        }
        options.push("rro".into());
    }
    if m.selinux_relabel && selinux_enabled() {
        options.push("Z".into());
    }
    // kubelet maps a volume of a pod in its own user namespace with the
    // pod's maps (checked against the container's in `idmapped_mounts`).
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        options.push("idmap".into());
    }
    Ok(VolumeMount {
        kind: "bind".into(),
        source: resolved.to_string_lossy().into_owned(),
        destination: m.container_path.clone(),
        options,
        ..Default::default()
    })
}

/// An id-mapped mount takes the container's own maps: the runtime maps it
/// through the container's user namespace.
fn idmapped_mounts(c: &api::ContainerConfig, out: &ContainerConfig) -> Result<(), Status> {
    for (i, m) in c.mounts.iter().enumerate() {
        if m.uid_mappings.is_empty() && m.gid_mappings.is_empty() {
            continue;
        }
        let field = |f: &str| format!("config.mounts[{i}].{f}");
        if out.extra.uid_map.is_empty() {
            return Err(invalid(
                &field("uid_mappings"),
                "an id-mapped mount needs the container in a user namespace of its own (userns_options POD)",
            ));
        }
        let uids = crate::userns::map(&field("uid_mappings"), &m.uid_mappings)?;
        let gids = crate::userns::map(&field("gid_mappings"), &m.gid_mappings)?;
        if uids != out.extra.uid_map || gids != out.extra.gid_map {
            return Err(invalid(
                &field("uid_mappings"),
                "a mount's maps must be the container's user namespace's",
            ));
        }
    }
    Ok(())
}

fn device(i: usize, d: &api::Device) -> Result<DeviceMapping, Status> {
    let field = format!("config.devices[{i}]");
    let perms = if d.permissions.is_empty() {
        "rwm"
    } else {
        d.permissions.as_str()
    };
    let container = if d.container_path.is_empty() {
        &d.host_path
    } else {
        &d.container_path
    };
    DeviceMapping::parse(&format!("{}:{container}:{perms}", d.host_path))
        .map_err(|e| invalid(&field, e))
}

/// The log file: the sandbox's log directory joined with the container's
/// relative log path, which may not climb out of it.
fn log_path(sandbox: &SandboxData, c: &api::ContainerConfig) -> Result<Option<PathBuf>, Status> {
    if c.log_path.is_empty() {
        return Ok(None);
    }
    let rel = Path::new(&c.log_path);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(invalid(
            "config.log_path",
            format!(
                "{:?} is not a path inside the sandbox's log directory",
                c.log_path
            ),
        ));
    }
    if sandbox.config.log_directory.is_empty() {
        return Err(invalid(
            "config.log_path",
            "the sandbox has no log_directory to put it in",
        ));
    }
    Ok(Some(Path::new(&sandbox.config.log_directory).join(rel)))
}

/// CRI's resources: 0 is "not set" for each of them.
fn resources(
    r: &api::LinuxContainerResources,
    c: &mut ContainerConfig,
    warnings: &mut Vec<String>,
) -> Result<(), Status> {
    let field = |f: &str| format!("config.linux.resources.{f}");
    let x: &mut Extra = &mut c.extra;
    let nonneg = |f: &str, v: i64| -> Result<Option<i64>, Status> {
        match v {
            0 => Ok(None),
            v if v < 0 => Err(invalid(&field(f), format!("{v} is negative"))),
            v => Ok(Some(v)),
        }
    };
    c.memory = nonneg("memory_limit_in_bytes", r.memory_limit_in_bytes)?;
    if let Some(m) = c.memory
        && m < MIN_MEMORY
    {
        return Err(invalid(
            &field("memory_limit_in_bytes"),
            format!("{m} bytes is below the least a container can start with ({MIN_MEMORY})"),
        ));
    }
    x.memory_swap = match r.memory_swap_limit_in_bytes {
        -1 => Some(-1),
        v => nonneg("memory_swap_limit_in_bytes", v)?,
    };
    if let (Some(swap), Some(mem)) = (x.memory_swap, c.memory)
        && swap != -1
        && swap < mem
    {
        return Err(invalid(
            &field("memory_swap_limit_in_bytes"),
            format!("{swap} is below the memory limit {mem} (it counts memory plus swap)"),
        ));
    }
    x.cpu_shares = match nonneg("cpu_shares", r.cpu_shares)? {
        Some(s) if !(2..=262_144).contains(&s) => {
            return Err(invalid(
                &field("cpu_shares"),
                format!("{s} is outside 2..=262144"),
            ));
        }
        s => s.map(|s| s as u64),
    };
    x.cpu_period = match nonneg("cpu_period", r.cpu_period)? {
        Some(p) if !(1_000..=1_000_000).contains(&p) => {
            return Err(invalid(
                &field("cpu_period"),
                format!("{p} µs is outside 1000..=1000000"),
            ));
        }
        p => p.map(|p| p as u64),
    };
    x.cpu_quota = match r.cpu_quota {
        0 | -1 => None,
        q if q < 1_000 => {
            return Err(invalid(
                &field("cpu_quota"),
                format!("{q} µs: -1 (none) or at least 1000"),
            ));
        }
        q => Some(q),
    };
    for (f, v, slot) in [
        ("cpuset_cpus", &r.cpuset_cpus, &mut x.cpuset_cpus),
        ("cpuset_mems", &r.cpuset_mems, &mut x.cpuset_mems),
    ] {
        if !v.is_empty() {
            check_cpuset(v).map_err(|why| invalid(&field(f), why))?;
            *slot = Some(v.clone());
        }
    }
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        let ok = h
            .page_size
            .strip_suffix("KB")
            .or_else(|| h.page_size.strip_suffix("MB"))
            .or_else(|| h.page_size.strip_suffix("GB"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(invalid(
                &field(&format!("hugepage_limits[{i}].page_size")),
                format!("{:?}: a size such as 2MB or 1GB", h.page_size),
            ));
        }
        x.hugepages.push((h.page_size.clone(), h.limit));
    }
    for (k, v) in &r.unified {
        if k.is_empty() || k.contains(['/', '\0']) || k.starts_with('.') || !k.contains('.') {
            return Err(invalid(
                &field(&format!("unified[{k:?}]")),
                "not a cgroup v2 file name",
            ));
        }
        x.unified.insert(k.clone(), v.clone());
    }
    if r.oom_score_adj != 0 {
        if !(-1000..=1000).contains(&r.oom_score_adj) {
            return Err(invalid(
                &field("oom_score_adj"),
                format!("{} is outside -1000..=1000", r.oom_score_adj),
            ));
        }
        let asked = r.oom_score_adj as i32;
        let floor = oom_score_adj_floor();
        x.oom_score_adj = Some(match floor {
            Some(f) if asked < f => {
                warnings.push(format!(
                    "oom_score_adj {asked} raised to {f}: this host does not let berthd lower it (no CAP_SYS_RESOURCE)"
                ));
                f
            }
            _ => asked,
        });
    }
    Ok(())
}

/// Below this the runtime cannot even start the container's process.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// "0-3,5,7-8": numbers and ranges.
fn check_cpuset(s: &str) -> Result<(), String> {
    let ok = s.split(',').all(|part| {
        let mut it = part.splitn(2, '-');
        let num = |x: Option<&str>| {
            x.is_some_and(|n| {
                !n.is_empty() && n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit())
            })
        };
        let a = it.next();
        match it.next() {
            None => num(a),
            Some(b) => {
                num(a)
                    && num(Some(b))
                    && a.unwrap().parse::<u32>().unwrap_or(u32::MAX)
                        <= b.parse::<u32>().unwrap_or(0)
            }
        }
    });
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a list of CPUs or ranges (0-3,5)"))
    }
}

/// Without CAP_SYS_RESOURCE a process may not lower its children's
/// oom_score_adj below its own: that value, if so.
fn oom_score_adj_floor() -> Option<i32> {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
    if eff & (1 << CAP_SYS_RESOURCE) != 0 {
        return None;
    }
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn security(
    cfg: &Config,
    s: Option<&api::LinuxContainerSecurityContext>,
    c: &mut ContainerConfig,
) -> Result<(), Status> {
    const F: &str = "config.linux.security_context";
    let Some(s) = s else {
        c.seccomp = seccomp_default(cfg);
        return Ok(());
    };
    c.privileged = s.privileged;
    c.read_only = s.readonly_rootfs;
    c.no_new_privileges = s.no_new_privs;
    if let Some(caps) = &s.capabilities {
        c.extra.cap_ambient = caps.add_ambient_capabilities.clone();
        c.cap_add = caps.add_capabilities.clone();
        c.cap_drop = caps.drop_capabilities.clone();
    }
    c.user = match (&s.run_as_user, s.run_as_username.as_str(), &s.run_as_group) {
        (Some(u), _, g) => {
            if u.value < 0 || u.value > u32::MAX as i64 {
                return Err(invalid(
                    &format!("{F}.run_as_user"),
                    format!("{} is not a uid", u.value),
                ));
            }
            Some(with_group(u.value.to_string(), g)?)
        }
        (None, "", Some(_)) => {
            return Err(invalid(
                &format!("{F}.run_as_group"),
                "needs run_as_user or run_as_username",
            ));
        }
        (None, "", None) => None,
        (None, name, g) => {
            if name.contains([':', '\0', '/']) {
                return Err(invalid(
                    &format!("{F}.run_as_username"),
                    format!("{name:?}"),
                ));
            }
            Some(with_group(name.to_string(), g)?)
        }
    };
    for g in &s.supplemental_groups {
        if *g < 0 || *g > u32::MAX as i64 {
            return Err(invalid(
                &format!("{F}.supplemental_groups"),
                format!("{g} is not a gid"),
            ));
        }
        c.extra.group_add.push(g.to_string());
    }
    if !s.masked_paths.is_empty() {
        c.extra.masked_paths = Some(absolute(&format!("{F}.masked_paths"), &s.masked_paths)?);
    }
    if !s.readonly_paths.is_empty() {
        c.extra.readonly_paths = Some(absolute(&format!("{F}.readonly_paths"), &s.readonly_paths)?);
    }
    c.seccomp = seccomp(cfg, s)?;
    c.extra.apparmor = apparmor(s)?;
    if let Some(o) = &s.selinux_options
        && selinux_enabled()
        && !(o.user.is_empty() && o.role.is_empty() && o.level.is_empty())
    {
        c.extra.selinux_label = Some(format!("{}:{}:{}:{}", o.user, o.role, o.r#type, o.level));
    }
    if let Some(ns) = &s.namespace_options {
        if api::NamespaceMode::try_from(ns.pid) == Ok(api::NamespaceMode::Target) {
            // Checked against the store by `check_pid_target`.
            crate::service::check_id(&format!("{F}.namespace_options.target_id"), &ns.target_id)?;
            c.extra.pid_target = Some(ns.target_id.clone());
        }
        let field = format!("{F}.namespace_options.userns_options");
        if let Some((uids, gids)) = crate::userns::maps(&field, ns.userns_options.as_ref())? {
            c.extra.uid_map = uids;
            c.extra.gid_map = gids;
        }
    }
    Ok(())
}

fn with_group(user: String, g: &Option<api::Int64Value>) -> Result<String, Status> {
    match g {
        None => Ok(user),
        Some(g) if g.value >= 0 && g.value <= u32::MAX as i64 => Ok(format!("{user}:{}", g.value)),
        Some(g) => Err(invalid(
            "config.linux.security_context.run_as_group",
            format!("{} is not a gid", g.value),
        )),
    }
}

fn absolute(field: &str, paths: &[String]) -> Result<Vec<String>, Status> {
    for p in paths {
        if !p.starts_with('/') {
            return Err(invalid(field, format!("{p:?} is not absolute")));
        }
    }
    Ok(paths.to_vec())
}

fn seccomp_default(cfg: &Config) -> Option<String> {
    match cfg.seccomp_default.as_str() {
        "runtime/default" => None,
        _ => Some("unconfined".into()),
    }
}

/// The engine's seccomp setting: None is berth's default profile.
fn seccomp(cfg: &Config, s: &api::LinuxContainerSecurityContext) -> Result<Option<String>, Status> {
    const F: &str = "config.linux.security_context.seccomp";
    if s.privileged {
        return Ok(Some("unconfined".into()));
    }
    let (kind, local) = match &s.seccomp {
        Some(p) => (
            api::security_profile::ProfileType::try_from(p.profile_type)
                .map_err(|_| invalid(&format!("{F}.profile_type"), p.profile_type))?,
            p.localhost_ref.clone(),
        ),
        // The field before SecurityProfile: "runtime/default",
        // "unconfined" or "localhost/<path>".
        #[allow(deprecated)] // kubelets before 1.25 send only this field
        None => match s.seccomp_profile_path.as_str() {
            "" => return Ok(seccomp_default(cfg)),
            "runtime/default" | "docker/default" => (
                api::security_profile::ProfileType::RuntimeDefault,
                String::new(),
            ),
            "unconfined" => (
                api::security_profile::ProfileType::Unconfined,
                String::new(),
            ),
            p => match p.strip_prefix("localhost/") {
                Some(path) => (
                    api::security_profile::ProfileType::Localhost,
                    path.to_string(),
                ),
                None => {
                    return Err(invalid(
                        "config.linux.security_context.seccomp_profile_path",
                        format!("{p:?}: runtime/default, unconfined or localhost/<path>"),
                    ));
                }
            },
        },
    };
    match kind {
        api::security_profile::ProfileType::RuntimeDefault => Ok(None),
        api::security_profile::ProfileType::Unconfined => Ok(Some("unconfined".into())),
        api::security_profile::ProfileType::Localhost => {
            let p = Path::new(&local);
            if !p.is_absolute() {
                return Err(invalid(
                    &format!("{F}.localhost_ref"),
                    format!("{local:?} is not an absolute path"),
                ));
            }
            match std::fs::metadata(p) {
                Ok(m) if m.is_file() => Ok(Some(local)),
                Ok(_) => Err(invalid(
                    &format!("{F}.localhost_ref"),
                    format!("{local} is not a file"),
                )),
                Err(e) => Err(invalid(
                    &format!("{F}.localhost_ref"),
                    format!("{local}: {e}"),
                )),
            }
        }
    }
}

fn apparmor(s: &api::LinuxContainerSecurityContext) -> Result<Option<String>, Status> {
    const F: &str = "config.linux.security_context.apparmor";
    let (kind, name) = match &s.apparmor {
        Some(p) => (
            api::security_profile::ProfileType::try_from(p.profile_type)
                .map_err(|_| invalid(&format!("{F}.profile_type"), p.profile_type))?,
            p.localhost_ref.clone(),
        ),
        #[allow(deprecated)] // kubelets before 1.30 send only this field
        None => match s.apparmor_profile.as_str() {
            "" | "runtime/default" => return Ok(None),
            "unconfined" => return Ok(None),
            p => (
                api::security_profile::ProfileType::Localhost,
                p.strip_prefix("localhost/").unwrap_or(p).to_string(),
            ),
        },
    };
    match kind {
        // berth loads no AppArmor profile of its own: the default and
        // unconfined are the same here.
        api::security_profile::ProfileType::RuntimeDefault
        | api::security_profile::ProfileType::Unconfined => Ok(None),
        api::security_profile::ProfileType::Localhost => {
            if !apparmor_enabled() {
                return Err(invalid(
                    &format!("{F}.localhost_ref"),
                    format!("profile {name:?} asked for, but AppArmor is not enabled on this host"),
                ));
            }
            if name.is_empty() {
                return Err(required(&format!("{F}.localhost_ref")));
            }
            Ok(Some(name))
        }
    }
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// CRI's state of an engine container.
pub fn state(c: &Container) -> api::ContainerState {
    match c.state.status {
        EngineStatus::Created => api::ContainerState::ContainerCreated,
        EngineStatus::Running | EngineStatus::Paused => api::ContainerState::ContainerRunning,
        EngineStatus::Exited => api::ContainerState::ContainerExited,
    }
}

fn image_spec(d: &ContainerData) -> api::ImageSpec {
    d.config.image.clone().unwrap_or_default()
}

/// The container as ListContainers shows it.
pub fn summary(c: &Container) -> Option<api::Container> {
    let d = meta::container_data(c)?;
    Some(api::Container {
        id: c.id.clone(),
        pod_sandbox_id: d.pod_sandbox_id.clone(),
        metadata: d.config.metadata.clone(),
        image: Some(image_spec(&d)),
        image_ref: d.image_ref.clone(),
        state: state(c) as i32,
        created_at: time::nanos(&c.created),
        labels: d.config.labels.clone(),
        annotations: d.config.annotations.clone(),
        image_id: c.image_id.clone(),
    })
}

/// ContainerStatus: times, exit, reason, mounts, log path, resources.
pub fn status(
    c: &Container,
    log_path: &Path,
    user: Option<api::ContainerUser>,
) -> Option<api::ContainerStatus> {
    let d = meta::container_data(c)?;
    let st = state(c);
    let exited = st == api::ContainerState::ContainerExited;
    let exit_code = c.state.exit_code.unwrap_or(0);
    let reason = match () {
        _ if !exited => "",
        _ if c.state.oom_killed => "OOMKilled",
        _ if exit_code == 0 => "Completed",
        _ => "Error",
    };
    Some(api::ContainerStatus {
        id: c.id.clone(),
        metadata: d.config.metadata.clone(),
        state: st as i32,
        created_at: time::nanos(&c.created),
        started_at: time::nanos_opt(c.state.started_at.as_ref()),
        finished_at: if exited {
            time::nanos_opt(c.state.finished_at.as_ref())
        } else {
            0
        },
        exit_code: if exited { exit_code } else { 0 },
        image: Some(image_spec(&d)),
        image_ref: d.image_ref.clone(),
        reason: reason.into(),
        message: String::new(),
        labels: d.config.labels.clone(),
        annotations: d.config.annotations.clone(),
        mounts: d.config.mounts.clone(),
        log_path: log_path.to_string_lossy().into_owned(),
        resources: Some(api::ContainerResources {
            linux: Some(resources_of(&c.config)),
            windows: None,
        }),
        image_id: c.image_id.clone(),
        user,
    })
}

/// The container's current limits as CRI spells them (0: not set).
pub fn resources_of(c: &ContainerConfig) -> api::LinuxContainerResources {
    let x = &c.extra;
    api::LinuxContainerResources {
        cpu_period: x.cpu_period.unwrap_or(0) as i64,
        cpu_quota: x.cpu_quota.unwrap_or(0),
        cpu_shares: x.cpu_shares.unwrap_or(0) as i64,
        memory_limit_in_bytes: c.memory.unwrap_or(0),
        oom_score_adj: x.oom_score_adj.unwrap_or(0) as i64,
        cpuset_cpus: x.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: x.cpuset_mems.clone().unwrap_or_default(),
        hugepage_limits: x
            .hugepages
            .iter()
            .map(|(page_size, limit)| api::HugepageLimit {
                page_size: page_size.clone(),
                limit: *limit,
            })
            .collect(),
        unified: x.unified.clone().into_iter().collect(),
        memory_swap_limit_in_bytes: x.memory_swap.unwrap_or(0),
    }
}

/// UpdateContainerResources' request as the engine's update (checked as
/// CreateContainer checks them).
pub fn resource_update(
    r: &api::LinuxContainerResources,
) -> Result<(berth_engine::ResourceUpdate, Vec<String>), Status> {
    let mut scratch = ContainerConfig::default();
    let mut warnings = Vec::new();
    resources(r, &mut scratch, &mut warnings)
        .map_err(|s| Status::invalid_argument(s.message().replace("config.linux.", "linux.")))?;
    let x = scratch.extra;
    Ok((
        berth_engine::ResourceUpdate {
            memory: scratch.memory,
            memory_swap: x.memory_swap,
            cpu_shares: x.cpu_shares,
            cpu_quota: x.cpu_quota,
            cpu_period: x.cpu_period,
            cpuset_cpus: x.cpuset_cpus,
            cpuset_mems: x.cpuset_mems,
            hugepages: (!x.hugepages.is_empty()).then_some(x.hugepages),
            unified: (!x.unified.is_empty()).then_some(x.unified),
            ..Default::default()
        },
        warnings,
    ))
}

/// The verbose part of ContainerStatus.
pub fn info(c: &Container) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert(
        "info".to_string(),
        serde_json::json!({ "container": c }).to_string(),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpusets_parse() {
        assert!(check_cpuset("0-3,5").is_ok());
        assert!(check_cpuset("1").is_ok());
        for bad in ["", "a", "3-1", "1,,2", "0-", "-1"] {
            assert!(check_cpuset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn absurd_resources_are_refused_with_the_field_named() {
        let mut c = ContainerConfig::default();
        let mut w = Vec::new();
        let r = api::LinuxContainerResources {
            memory_limit_in_bytes: -5,
            ..Default::default()
        };
        let e = resources(&r, &mut c, &mut w).unwrap_err();
        assert!(e.message().contains("memory_limit_in_bytes"), "{e}");
        let r = api::LinuxContainerResources {
            cpu_shares: 10_000_000,
            ..Default::default()
        };
        assert!(
            resources(&r, &mut c, &mut w)
                .unwrap_err()
                .message()
                .contains("cpu_shares")
        );
        let r = api::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 32 << 20,
            ..Default::default()
        };
        assert!(
            resources(&r, &mut c, &mut w)
                .unwrap_err()
                .message()
                .contains("memory_swap_limit_in_bytes")
        );
        let r = api::LinuxContainerResources {
            oom_score_adj: 5000,
            ..Default::default()
        };
        assert!(
            resources(&r, &mut c, &mut w)
                .unwrap_err()
                .message()
                .contains("oom_score_adj")
        );
    }
}
