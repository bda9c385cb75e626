//! `berth run`, `ps`, `rm` and the other container commands: flags in,
//! tables and JSON out; the engine does the work.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_engine::Engine;
use berth_engine::berth_network::PortMapping;
use berth_engine::model::{Container, ContainerConfig, NetworkMode, Status, VolumeMount};
use clap::Subcommand;

#[derive(clap::Args, Clone, Debug)]
pub struct CreateFlags {
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// KEY=VALUE (or KEY: taken from this environment).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read KEY=VALUE lines from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// SOURCE:DEST[:OPTIONS]: a host path or a named volume.
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// type=bind|volume|tmpfs,source=..,destination=..[,readonly]
    #[arg(long)]
    pub mount: Vec<String>,
    /// DEST[:OPTIONS]: a tmpfs.
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// bridge, host, none, container:NAME, or network names.
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// USER[:GROUP], by name or number.
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Memory limit (e.g. 512m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub cpus: Option<f64>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    #[arg(long)]
    pub cap_add: Vec<String>,
    #[arg(long)]
    pub cap_drop: Vec<String>,
    #[arg(long)]
    pub privileged: bool,
    /// HOST[:CONTAINER][:PERMISSIONS]: a host device for the container.
    #[arg(long)]
    pub device: Vec<String>,
    #[arg(long)]
    pub read_only: bool,
    /// seccomp=unconfined|PROFILE.json, no-new-privileges.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// KEY=VALUE
    #[arg(short, long)]
    pub label: Vec<String>,
    #[arg(long)]
    pub pod: Option<String>,
    /// berth (builtin), runc, crun or a runtime binary.
    #[arg(long, default_value = "berth")]
    pub runtime: String,
    /// Run an init as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// When to pull the image: always, missing (not in the store) or never.
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// NAME=VALUE: a namespaced kernel parameter.
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// KEY=VALUE: an annotation for the runtime.
    #[arg(long)]
    pub annotation: Vec<String>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CFS quota in microseconds.
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CPUs the container may run on (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory plus swap (e.g. 1g; -1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Soft memory limit.
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// The process's OOM score adjustment (-1000 to 1000).
    #[arg(long, allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
    /// TYPE=SOFT[:HARD], e.g. nofile=1024:2048.
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// A supplementary group, by name or number.
    #[arg(long)]
    pub group_add: Vec<String>,
    /// Size of /dev/shm (e.g. 64m).
    #[arg(long)]
    pub shm_size: Option<String>,
    /// CONTAINER_ID:HOST_ID:SIZE: a user namespace with this uid mapping.
    #[arg(long)]
    pub uidmap: Vec<String>,
    /// CONTAINER_ID:HOST_ID:SIZE: its gid mapping (the uid map's if none).
    #[arg(long)]
    pub gidmap: Vec<String>,
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL.
    #[arg(long)]
    pub stop_timeout: Option<u64>,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a container from an image and start it.
    Run {
        /// Run in the background and print the container's ID.
        #[arg(short, long)]
        detach: bool,
        #[command(flatten)]
        flags: CreateFlags,
    },
    /// Create a container from an image, without starting it.
    Create {
        #[command(flatten)]
        flags: CreateFlags,
    },
    /// Start containers.
    Start {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: their stop signal, then SIGKILL after the timeout.
    Stop {
        #[arg(short, long)]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps {
        /// Also stopped ones.
        #[arg(short, long)]
        all: bool,
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
        #[arg(long)]
        no_trunc: bool,
    },
    /// Show containers' records as JSON.
    Inspect {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to exit; print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    Rename {
        container: String,
        name: String,
    },
    /// Run a command in a running container.
    Exec {
        #[arg(short, long)]
        interactive: bool,
        #[arg(short, long)]
        tty: bool,
        #[arg(short, long)]
        detach: bool,
        #[arg(short, long = "env")]
        env: Vec<String>,
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short, long)]
        workdir: Option<String>,
        #[arg(long)]
        privileged: bool,
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Container management.
    Container {
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// Named volumes.
    Volume {
        #[command(subcommand)]
        cmd: VolumeCmd,
    },
    /// Networks (CNI bridges).
    Network {
        #[command(subcommand)]
        cmd: NetworkCmd,
    },
    /// Pods: containers sharing network, ipc and uts namespaces.
    Pod {
        #[command(subcommand)]
        cmd: PodCmd,
    },
    /// Attach this terminal to a running container.
    Attach {
        container: String,
    },
    /// Show a container's output.
    Logs {
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Only since a time (RFC 3339) or a duration ago (10m).
        #[arg(long)]
        since: Option<String>,
        #[arg(short, long)]
        timestamps: bool,
        container: String,
    },
    /// Copy files between a container and the host: CONTAINER:PATH HOSTPATH
    /// or HOSTPATH CONTAINER:PATH.
    Cp {
        src: String,
        dest: String,
    },
    /// A container's published ports.
    Port {
        container: String,
    },
    /// A container's processes.
    Top {
        container: String,
    },
    /// Lifecycle events: past ones (--since) and, as they happen, new ones.
    Events(crate::events::Args),
    /// System-wide upkeep.
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
    /// Resource usage (once: --no-stream is the only mode).
    Stats {
        #[arg(long)]
        no_stream: bool,
        containers: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum ContainerCmd {
    /// Release a stopped container's resources (the monitor runs this).
    #[command(hide = true)]
    Cleanup { container: String },
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        all: bool,
    },
}

#[derive(Subcommand)]
pub enum SystemCmd {
    /// Remove stopped containers, unused networks and dangling images, and
    /// what crashes left behind that nothing owns.
    Prune {
        /// Also every image no container uses.
        #[arg(short, long)]
        all: bool,
        /// Also volumes no container uses.
        #[arg(long)]
        volumes: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
    /// Move a damaged state database aside and rebuild the records from
    /// the containers, pods, volumes and networks on disk.
    Repair,
}

#[derive(Subcommand)]
pub enum VolumeCmd {
    Create {
        name: Option<String>,
        #[arg(short, long)]
        label: Vec<String>,
    },
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, default_value = "table")]
        format: String,
    },
    Inspect {
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    Prune {
        #[arg(short, long)]
        force: bool,
    },
}

/// "512m" -> bytes.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| *n > 0.0)
        .with_context(|| format!("{s:?} is not a size (e.g. 512m, 1g)"))?;
    Ok((n * mult as f64) as i64)
}

fn parse_label(l: &str) -> (String, String) {
    let (k, v) = l.split_once('=').unwrap_or((l, ""));
    (k.to_string(), v.to_string())
}

/// -v SOURCE:DEST[:OPTIONS]
pub fn parse_volume(v: &str) -> Result<VolumeMount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (source, dest, opts) = match parts[..] {
        [dest] => ("", dest, ""),
        [s, d] => (s, d, ""),
        [s, d, o] => (s, d, o),
        _ => bail!("-v {v}: expected SOURCE:DEST[:OPTIONS]"),
    };
    if !dest.starts_with('/') {
        bail!("-v {v}: the destination must be an absolute path");
    }
    let kind = if source.is_empty() || !source.starts_with('/') {
        "volume"
    } else {
        "bind"
    };
    if kind == "bind" && !std::path::Path::new(source).exists() {
        bail!("-v {v}: {source} does not exist");
    }
    let source = if source.is_empty() {
        berth_engine::ids::new_id()
    } else {
        source.to_string()
    };
    Ok(VolumeMount {
        kind: kind.into(),
        source,
        destination: dest.into(),
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// --mount type=..,source=..,destination=..,readonly
pub fn parse_mount(m: &str) -> Result<VolumeMount> {
    let mut v = VolumeMount {
        kind: "volume".into(),
        source: String::new(),
        destination: String::new(),
        options: Vec::new(),
    };
    for kv in m.split(',') {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => v.kind = val.into(),
            "source" | "src" => v.source = val.into(),
            "destination" | "dst" | "target" => v.destination = val.into(),
            "readonly" | "ro" if val.is_empty() || val == "true" => v.options.push("ro".into()),
            "readonly" | "ro" if val == "false" => {}
            "bind-propagation" => v.options.push(val.into()),
            "tmpfs-size" => v.options.push(format!("size={val}")),
            "tmpfs-mode" => v.options.push(format!("mode={val}")),
            _ => bail!("--mount {m}: unknown key {k:?}"),
        }
    }
    if !v.destination.starts_with('/') {
        bail!("--mount {m}: a destination (absolute path) is needed");
    }
    if !matches!(v.kind.as_str(), "bind" | "volume" | "tmpfs") {
        bail!("--mount {m}: type must be bind, volume or tmpfs");
    }
    if v.kind == "bind" && !std::path::Path::new(&v.source).is_absolute() {
        bail!("--mount {m}: a bind mount needs an absolute source");
    }
    if v.kind == "volume" && v.source.is_empty() {
        v.source = berth_engine::ids::new_id();
    }
    Ok(v)
}

pub fn parse_network(n: Option<&str>) -> NetworkMode {
    match n {
        None | Some("") | Some("default") => NetworkMode::Default,
        Some("bridge") => NetworkMode::Bridge(Vec::new()),
        Some("host") => NetworkMode::Host,
        Some("none") => NetworkMode::None,
        Some(x) if x.starts_with("container:") => {
            NetworkMode::Container(x["container:".len()..].into())
        }
        Some(names) => NetworkMode::Bridge(names.split(',').map(String::from).collect()),
    }
}

/// An env file larger than this is not one (`--env-file /dev/zero`
/// would otherwise be read until memory runs out).
const MAX_ENV_FILE: u64 = 1 << 20;

/// Reads an env file, a pipe (`<(...)`) too, up to MAX_ENV_FILE bytes.
fn read_env_file(file: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let what = || format!("--env-file {}", file.display());
    let mut raw = Vec::new();
    std::fs::File::open(file)
        .with_context(what)?
        .take(MAX_ENV_FILE + 1)
        .read_to_end(&mut raw)
        .with_context(what)?;
    if raw.len() as u64 > MAX_ENV_FILE {
        bail!("{}: larger than {MAX_ENV_FILE} bytes", what());
    }
    if raw.contains(&0) {
        bail!("{}: holds a NUL byte: not a text file", what());
    }
    String::from_utf8(raw).map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", what()))
}

fn env_lines(f: &CreateFlags) -> Result<Vec<String>> {
    let mut env = Vec::new();
    for file in &f.env_file {
        let raw = read_env_file(file)?;
        for l in raw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            env.push(l.to_string());
        }
    }
    env.extend(f.env.iter().cloned());
    // KEY alone: the value from this environment, or nothing.
    Ok(env
        .into_iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e)
            } else {
                std::env::var(&e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect())
}

/// KEY=VALUE flags into a map; a flag without '=' is refused.
fn key_values(flag: &str, list: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{flag} {kv}: expected KEY=VALUE"),
        })
        .collect()
}

/// CONTAINER:HOST:SIZE.
fn id_map(flag: &str, s: &str) -> Result<(u32, u32, u32)> {
    let p: Vec<Option<u32>> = s.split(':').map(|x| x.parse().ok()).collect();
    match p[..] {
        [Some(c), Some(h), Some(n)] if n > 0 => Ok((c, h, n)),
        _ => bail!("{flag} {s}: expected CONTAINER_ID:HOST_ID:SIZE"),
    }
}

/// The flags that fill `Extra`.
fn extra(f: &CreateFlags) -> Result<berth_engine::model::Extra> {
    let bytes = |flag: &str, v: &Option<String>| -> Result<Option<i64>> {
        match v.as_deref() {
            None => Ok(None),
            Some("-1") => Ok(Some(-1)),
            Some(s) => parse_bytes(s)
                .map(Some)
                .with_context(|| format!("{flag} {s}")),
        }
    };
    let mut ulimits = Vec::new();
    for u in &f.ulimit {
        let (name, vals) = u
            .split_once('=')
            .with_context(|| format!("--ulimit {u}: expected TYPE=SOFT[:HARD]"))?;
        let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
        let num = |v: &str| -> Result<u64> {
            if v == "-1" || v == "unlimited" {
                return Ok(u64::MAX);
            }
            v.parse()
                .with_context(|| format!("--ulimit {u}: {v:?} is not a number"))
        };
        ulimits.push((name.to_string(), num(soft)?, num(hard)?));
    }
    if let Some(adj) = f.oom_score_adj
        && !(-1000..=1000).contains(&adj)
    {
        bail!("--oom-score-adj {adj}: the range is -1000 to 1000");
    }
    let uid_map: Vec<_> = f
        .uidmap
        .iter()
        .map(|m| id_map("--uidmap", m))
        .collect::<Result<_>>()?;
    let mut gid_map: Vec<_> = f
        .gidmap
        .iter()
        .map(|m| id_map("--gidmap", m))
        .collect::<Result<_>>()?;
    if gid_map.is_empty() {
        gid_map = uid_map.clone();
    }
    Ok(berth_engine::model::Extra {
        sysctls: key_values("--sysctl", &f.sysctl)?,
        annotations: key_values("--annotation", &f.annotation)?,
        cpu_shares: f.cpu_shares,
        cpu_quota: f.cpu_quota,
        cpu_period: f.cpu_period,
        cpuset_cpus: f.cpuset_cpus.clone(),
        cpuset_mems: f.cpuset_mems.clone(),
        memory_swap: bytes("--memory-swap", &f.memory_swap)?,
        memory_reservation: bytes("--memory-reservation", &f.memory_reservation)?,
        oom_score_adj: f.oom_score_adj,
        ulimits,
        group_add: f.group_add.clone(),
        shm_size: bytes("--shm-size", &f.shm_size)?.map(|n| n.max(0) as u64),
        uid_map,
        gid_map,
        ..Default::default()
    })
}

/// --cpus: a positive number no larger than this host's CPUs, as docker
/// checks it.
fn parse_cpus(cpus: Option<f64>) -> Result<Option<f64>> {
    let Some(c) = cpus else {
        return Ok(None);
    };
    let here = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if !c.is_finite() || c < 0.01 || c > here {
        bail!("--cpus {c}: the range is 0.01 to {here:.2}, the CPUs of this host");
    }
    Ok(Some(c))
}

pub fn config(f: &CreateFlags) -> Result<ContainerConfig> {
    let mut ports = Vec::new();
    for p in &f.publish {
        ports.extend(PortMapping::parse(p)?);
    }
    if let Some(sig) = &f.stop_signal {
        berth_engine::signals::parse(sig)?;
    }
    let devices = f
        .device
        .iter()
        .map(|d| berth_engine::model::DeviceMapping::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut volumes = Vec::new();
    for v in &f.volume {
        volumes.push(parse_volume(v)?);
    }
    for m in &f.mount {
        volumes.push(parse_mount(m)?);
    }
    let mut seccomp = None;
    let mut nnp = false;
    let mut extra = extra(f)?;
    for o in &f.security_opt {
        match o.split_once(['=', ':']) {
            Some(("seccomp", p)) => seccomp = Some(p.to_string()),
            None if o == "no-new-privileges" => nnp = true,
            Some(("no-new-privileges", v)) => nnp = v == "true",
            Some(("apparmor", p)) => extra.apparmor = Some(p.to_string()),
            Some(("label", "disable")) => {}
            Some(("label", l)) => {
                extra.selinux_label = Some(l.trim_start_matches("type:").to_string())
            }
            Some(("mask", p)) => extra
                .masked_paths
                .get_or_insert_with(|| {
                    berth_image::spec::MASKED
                        .iter()
                        .map(|s| s.to_string())
                        .collect()
                })
                .extend(p.split(':').map(String::from)),
            Some(("unmask", "ALL")) => extra.masked_paths = Some(Vec::new()),
            _ => bail!(
                "--security-opt {o}: expected seccomp=..., no-new-privileges, apparmor=..., label=..., mask=..., unmask=ALL"
            ),
        }
    }
    let entrypoint = f.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            Vec::new()
        } else {
            vec![e.clone()]
        }
    });
    Ok(ContainerConfig {
        image: f.image.clone(),
        entrypoint,
        cmd: (!f.command.is_empty()).then(|| f.command.clone()),
        env: env_lines(f)?,
        workdir: f.workdir.clone(),
        user: f.user.clone(),
        hostname: f.hostname.clone(),
        tty: f.tty,
        stdin: f.interactive,
        auto_remove: f.rm,
        read_only: f.read_only,
        privileged: f.privileged,
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        no_new_privileges: nnp,
        seccomp,
        labels: f.label.iter().map(|l| parse_label(l)).collect(),
        memory: f.memory.as_deref().map(parse_bytes).transpose()?,
        cpus: parse_cpus(f.cpus)?,
        pids_limit: f.pids_limit,
        network: match (&f.pod, f.network.as_deref()) {
            (Some(_), None) => NetworkMode::Pod,
            (_, n) => parse_network(n),
        },
        ports,
        volumes,
        tmpfs: f.tmpfs.clone(),
        pod: f.pod.clone(),
        runtime: f.runtime.clone(),
        init: f.init,
        stop_signal: f.stop_signal.clone(),
        stop_timeout: f.stop_timeout,
        devices,
        extra,
    })
}

pub fn status_text(c: &Container) -> String {
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", crate::since(c.state.started_at.as_deref())),
        Status::Paused => format!(
            "Up {} (paused)",
            crate::since(c.state.started_at.as_deref())
        ),
        Status::Exited => match c.state.exit_code {
            Some(code) => format!(
                "Exited ({code}) {}",
                crate::ago(c.state.finished_at.as_deref())
            ),
            None => format!(
                "Exited (unknown) {}",
                crate::ago(c.state.finished_at.as_deref())
            ),
        },
    }
}

pub fn ports_text(c: &Container) -> String {
    c.config
        .ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                p.host_port,
                p.container_port,
                p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn ps(e: &Engine, all: bool, quiet: bool, format: &str, no_trunc: bool) -> Result<()> {
    let list: Vec<Container> = e
        .containers()?
        .into_iter()
        .filter(|c| all || matches!(c.state.status, Status::Running | Status::Paused))
        .collect();
    if quiet {
        for c in &list {
            println!(
                "{}",
                if no_trunc {
                    &c.id
                } else {
                    berth_engine::ids::short(&c.id)
                }
            );
        }
        return Ok(());
    }
    match format {
        "json" => {
            let v: Vec<serde_json::Value> = list.iter().map(ps_json).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        "table" => {
            let rows: Vec<[String; 7]> = list
                .iter()
                .map(|c| {
                    let id = if no_trunc {
                        c.id.clone()
                    } else {
                        berth_engine::ids::short(&c.id).to_string()
                    };
                    let mut cmd = c.command.join(" ");
                    if !no_trunc && cmd.len() > 20 {
                        cmd.truncate(
                            cmd.char_indices()
                                .nth(19)
                                .map(|(i, _)| i)
                                .unwrap_or(cmd.len()),
                        );
                        cmd.push('…');
                    }
                    [
                        id,
                        c.config.image.clone(),
                        cmd,
                        crate::ago(Some(&c.created)),
                        status_text(c),
                        ports_text(c),
                        c.name.clone(),
                    ]
                })
                .collect();
            crate::table(
                &[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "PORTS",
                    "NAMES",
                ],
                &rows,
            );
        }
        other => bail!("--format {other}: expected table or json"),
    }
    Ok(())
}

fn ps_json(c: &Container) -> serde_json::Value {
    serde_json::json!({
        "Id": c.id,
        "Names": [c.name],
        "Image": c.config.image,
        "ImageID": c.image_id,
        "Command": c.command,
        "Created": c.created,
        "State": c.state.status.name(),
        "Status": status_text(c),
        "ExitCode": c.state.exit_code,
        "Pid": c.state.pid,
        "Ports": c.config.ports,
        "Networks": c.networks.iter().map(|n| n.network.clone()).collect::<Vec<_>>(),
        "Pod": c.config.pod,
        "Labels": c.config.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    })
}

pub fn inspect_json(e: &Engine, c: &Container) -> serde_json::Value {
    serde_json::json!({
        "Id": c.id,
        "Name": c.name,
        "Created": c.created,
        "Image": c.image_id,
        "ImageName": c.config.image,
        "Path": c.command.first(),
        "Args": c.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": c.state.status.name(),
            "Running": c.state.status == Status::Running,
            "Paused": c.state.status == Status::Paused,
            "Pid": c.state.pid,
            "ExitCode": c.state.exit_code,
            "StartedAt": c.state.started_at,
            "FinishedAt": c.state.finished_at,
        },
        "Config": c.config,
        "NetworkSettings": {
            "SandboxKey": c.netns,
            "Networks": c.networks,
            "Ports": c.config.ports,
        },
        "LogPath": e.log_path(&c.id),
        "BundlePath": e.bundle_dir(&c.id),
        "MonitorPid": c.monitor_pid,
    })
}

pub fn stop_timeout(t: Option<u64>) -> Option<Duration> {
    t.map(Duration::from_secs)
}

pub(crate) fn engine(ctx: &crate::Ctx) -> Result<Engine> {
    Ok(Engine::open(engine_options(ctx)?)?)
}

fn engine_options(ctx: &crate::Ctx) -> Result<berth_engine::Options> {
    let me = std::env::current_exe().context("find the berth binary")?;
    let monitor = std::env::var_os("BERTH_MONITOR")
        .map(PathBuf::from)
        .or_else(|| {
            let sibling = me.with_file_name("berth-monitor");
            sibling.is_file().then_some(sibling)
        })
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/berth-monitor"));
    Ok(berth_engine::Options {
        paths: berth_base::paths::HostPaths::with_roots(&ctx.root, &ctx.runroot),
        monitor,
        berth: me,
    })
}

fn create(ctx: &crate::Ctx, e: &Engine, f: &CreateFlags) -> Result<Container> {
    let cfg = config(f)?;
    let policy = berth_engine::PullPolicy::parse(&f.pull)?;
    let image = e.image_for(&f.image, policy, &crate::pull_options(ctx)?, &mut |name| {
        eprintln!("Pulling {name}")
    })?;
    Ok(e.create(&image, f.name.as_deref(), cfg)?)
}

fn each(list: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut failed = None;
    for x in list {
        if let Err(err) = f(x) {
            eprintln!("Error: {err:#}");
            failed = Some(err);
        }
    }
    match failed {
        Some(_) if list.len() > 1 => bail!("some of them failed"),
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Runs the command; returns the exit code for the process.
pub fn run(ctx: &crate::Ctx, cmd: Cmd) -> Result<i32> {
    if let Cmd::Pod {
        cmd: PodCmd::Infra { hostname, netns },
    } = &cmd
    {
        // Holds namespaces and nothing else: no store, no database.
        berth_engine::pods::infra_main(netns.as_deref(), hostname)?;
        return Ok(0);
    }
    if let Cmd::System {
        cmd: SystemCmd::Repair,
    } = &cmd
    {
        let (e, moved) = Engine::repair(engine_options(ctx)?)?;
        if let Some(m) = moved {
            println!("The old database is at {}", m.display());
        }
        println!(
            "{} containers, {} pods, {} volumes, {} networks",
            e.db.containers()?.len(),
            e.db.pods()?.len(),
            e.volumes()?.len(),
            e.networks()?.len()
        );
        return Ok(0);
    }
    let e = engine(ctx)?;
    match cmd {
        Cmd::Exec {
            interactive,
            tty,
            detach,
            env,
            user,
            workdir,
            privileged,
            container,
            command,
        } => {
            let session = e.exec_start(
                &container,
                &berth_engine::ExecRequest {
                    args: command,
                    env,
                    user,
                    workdir,
                    tty,
                    interactive,
                    detach,
                    privileged,
                    timeout: None,
                    size: if tty {
                        crate::attach::terminal_size()
                    } else {
                        None
                    },
                },
            )?;
            let Some(client) = session.client else {
                return Ok(0);
            };
            return match crate::attach::relay(client, interactive, tty, None)? {
                Some(code) => Ok(code),
                None => bail!("the container's monitor went away before the process ended"),
            };
        }
        Cmd::Run { detach, flags } => {
            let c = create(ctx, &e, &flags)?;
            if detach {
                match e.start(&c.id) {
                    Ok(c) => println!("{}", c.id),
                    Err(err) => {
                        if flags.rm {
                            let _ = e.remove(&c.id, true);
                        }
                        return Err(err.into());
                    }
                }
                return Ok(0);
            }
            let mut client = None;
            let started = e.start_with(&c.id, &mut |c| {
                let sock = e.attach_socket(&c.id);
                client = Some(berth_monitor::client::Client::attach(&sock).map_err(|err| {
                    berth_engine::Error::Monitor(format!("attach to {}: {err}", c.name))
                })?);
                Ok(())
            });
            let c = match started {
                Ok(c) => c,
                Err(err) => {
                    if flags.rm {
                        let _ = e.remove(&c.id, true);
                    }
                    return Err(err.into());
                }
            };
            let code = relay_container(&e, &c, client.expect("attached"))?;
            if flags.rm {
                // The monitor's cleanup removes it too; whoever comes first.
                e.cleanup(&c.id)?;
            }
            return Ok(code);
        }
        Cmd::Attach { container } => {
            let c = e.container(&container)?;
            if c.state.status != Status::Running {
                bail!("container {} is not running", c.name);
            }
            let client = berth_monitor::client::Client::attach(&e.attach_socket(&c.id))?;
            return relay_container(&e, &c, client);
        }
        Cmd::Logs {
            follow,
            tail,
            since,
            timestamps,
            container,
        } => logs(&e, &container, follow, tail, since.as_deref(), timestamps)?,
        Cmd::Create { flags } => println!("{}", create(ctx, &e, &flags)?.id),
        Cmd::Start { containers } => each(&containers, |c| {
            e.start(c)?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Stop { time, containers } => each(&containers, |c| {
            e.stop(c, stop_timeout(time))?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Kill { signal, containers } => {
            let sig = berth_engine::signals::parse(&signal)?;
            each(&containers, |c| {
                e.kill(c, sig)?;
                println!("{c}");
                Ok(())
            })?
        }
        Cmd::Rm { force, containers } => each(&containers, |c| {
            e.remove(c, force)?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Ps {
            all,
            quiet,
            format,
            no_trunc,
        } => ps(&e, all, quiet, &format, no_trunc)?,
        Cmd::Container {
            cmd: ContainerCmd::Ls { all },
        } => ps(&e, all, false, "table", false)?,
        Cmd::Inspect { containers } => {
            let mut out = Vec::new();
            each(&containers, |c| {
                out.push(inspect_json(&e, &e.container(c)?));
                Ok(())
            })?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Cmd::Wait { containers } => each(&containers, |c| {
            println!("{}", e.wait(c, None)?);
            Ok(())
        })?,
        Cmd::Pause { containers } => each(&containers, |c| {
            e.pause(c)?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Unpause { containers } => each(&containers, |c| {
            e.unpause(c)?;
            println!("{c}");
            Ok(())
        })?,
        Cmd::Rename { container, name } => {
            e.rename(&container, &name)?;
        }
        Cmd::Container {
            cmd: ContainerCmd::Cleanup { container },
        } => e.cleanup(&container)?,
        Cmd::Volume { cmd } => volume(&e, cmd)?,
        Cmd::Network { cmd } => network_cmd(&e, cmd)?,
        Cmd::Pod { cmd } => pod_cmd(&e, cmd)?,
        Cmd::Port { container } => port(&e, &container)?,
        Cmd::Cp { src, dest } => {
            // A colon before any slash names a container.
            let split = |s: &str| {
                let (c, p) = s.split_once(':')?;
                (!c.contains('/') && !c.is_empty()).then(|| (c.to_string(), p.to_string()))
            };
            // `-` is a tar stream on stdout or stdin, as with docker.
            match (split(&src), split(&dest)) {
                (Some((c, p)), None) if dest == "-" => {
                    e.copy_out_tar(&c, &p, std::io::stdout().lock())?
                }
                (Some((c, p)), None) => e.copy_out(&c, &p, std::path::Path::new(&dest))?,
                (None, Some((c, p))) if src == "-" => {
                    e.copy_in_tar(&c, std::io::stdin().lock(), &p)?
                }
                (None, Some((c, p))) => e.copy_in(&c, std::path::Path::new(&src), &p)?,
                _ => bail!("cp: exactly one of the two paths must be CONTAINER:PATH"),
            }
        }
        Cmd::Top { container } => top(&e, &container)?,
        Cmd::Events(a) => crate::events::run(&e, a)?,
        Cmd::System {
            cmd:
                SystemCmd::Prune {
                    all,
                    volumes,
                    force,
                },
        } => system_prune(ctx, &e, all, volumes, force)?,
        Cmd::System {
            cmd: SystemCmd::Repair,
        } => unreachable!("handled before the engine is opened"),
        Cmd::Stats {
            no_stream: _,
            containers,
        } => stats(&e, &containers)?,
    }
    Ok(0)
}

fn volume(e: &Engine, cmd: VolumeCmd) -> Result<()> {
    match cmd {
        VolumeCmd::Create { name, label } => {
            let (v, _) = e.volume_create(
                name.as_deref(),
                label.iter().map(|l| parse_label(l)).collect(),
            )?;
            println!("{}", v.name);
        }
        VolumeCmd::Ls { quiet, format } => listing(
            &e.volumes()?,
            quiet,
            &format,
            |v| &v.name,
            |vs| {
                let rows: Vec<[String; 2]> = vs
                    .iter()
                    .map(|v| ["local".to_string(), v.name.clone()])
                    .collect();
                crate::table(&["DRIVER", "VOLUME NAME"], &rows);
            },
        )?,
        VolumeCmd::Inspect { volumes } => {
            let mut out = Vec::new();
            each(&volumes, |v| {
                out.push(e.volume(v)?);
                Ok(())
            })?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        VolumeCmd::Rm { force, volumes } => each(&volumes, |v| {
            e.volume_remove(v, force)?;
            println!("{v}");
            Ok(())
        })?,
        VolumeCmd::Prune { force: _ } => {
            for v in e.volume_prune()? {
                println!("{v}");
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum NetworkCmd {
    Create {
        name: String,
        /// e.g. 10.77.42.0/24 (default: the next free /24 of 10.77.0.0/16).
        #[arg(long)]
        subnet: Option<ipnet::Ipv4Net>,
        #[arg(long)]
        gateway: Option<std::net::Ipv4Addr>,
        /// No route out: containers reach each other and the host only.
        #[arg(long)]
        internal: bool,
        #[arg(short, long)]
        label: Vec<String>,
    },
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, default_value = "table")]
        format: String,
    },
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum PodCmd {
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        #[arg(short, long = "publish")]
        publish: Vec<String>,
        #[arg(long, alias = "net")]
        network: Option<String>,
        #[arg(short, long)]
        label: Vec<String>,
    },
    Start {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    Stop {
        #[arg(short, long)]
        time: Option<u64>,
        #[arg(required = true)]
        pods: Vec<String>,
    },
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        pods: Vec<String>,
    },
    #[command(alias = "ls", alias = "list")]
    Ps {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, default_value = "table")]
        format: String,
    },
    Inspect {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// The process that holds a pod's namespaces (berth runs it).
    #[command(hide = true)]
    Infra {
        #[arg(long)]
        hostname: String,
        #[arg(long)]
        netns: Option<PathBuf>,
    },
}

fn network_cmd(e: &Engine, cmd: NetworkCmd) -> Result<()> {
    match cmd {
        NetworkCmd::Create {
            name,
            subnet,
            gateway,
            internal,
            label,
        } => {
            let n = e.network_create(
                &name,
                subnet,
                gateway,
                internal,
                label.iter().map(|l| parse_label(l)).collect(),
            )?;
            println!("{}", n.name);
        }
        NetworkCmd::Ls { quiet, format } => listing(
            &e.networks()?,
            quiet,
            &format,
            |n| &n.name,
            |list| {
                let rows: Vec<[String; 5]> = list
                    .iter()
                    .map(|n| {
                        [
                            berth_engine::ids::short(&n.id).to_string(),
                            n.name.clone(),
                            n.driver.clone(),
                            n.subnet.to_string(),
                            n.bridge.clone(),
                        ]
                    })
                    .collect();
                crate::table(&["NETWORK ID", "NAME", "DRIVER", "SUBNET", "BRIDGE"], &rows);
            },
        )?,
        NetworkCmd::Inspect { networks } => {
            let mut out = Vec::new();
            each(&networks, |n| {
                out.push(e.network(n)?);
                Ok(())
            })?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        NetworkCmd::Rm { force, networks } => each(&networks, |n| {
            e.network_remove(n, force)?;
            println!("{n}");
            Ok(())
        })?,
    }
    Ok(())
}

fn pod_status(e: &Engine, p: &berth_engine::model::Pod, cs: &[Container]) -> &'static str {
    let running = cs
        .iter()
        .filter(|c| c.state.status == Status::Running)
        .count();
    match (e.pod_running(p), running) {
        (true, n) if n == cs.len() => "Running",
        (true, 0) if !cs.is_empty() => "Degraded",
        (true, _) if cs.is_empty() => "Running",
        (true, _) => "Degraded",
        (false, _) if cs.iter().all(|c| c.state.status == Status::Created) => "Created",
        (false, _) => "Exited",
    }
}

fn pod_cmd(e: &Engine, cmd: PodCmd) -> Result<()> {
    match cmd {
        PodCmd::Create {
            name,
            hostname,
            publish,
            network,
            label,
        } => {
            let mut ports = Vec::new();
            for p in &publish {
                ports.extend(PortMapping::parse(p)?);
            }
            let p = e.pod_create(berth_engine::pods::PodRequest {
                name,
                hostname,
                network: parse_network(network.as_deref()),
                ports,
                labels: label.iter().map(|l| parse_label(l)).collect(),
            })?;
            println!("{}", p.id);
        }
        PodCmd::Start { pods } => each(&pods, |p| {
            e.pod_start(p)?;
            println!("{p}");
            Ok(())
        })?,
        PodCmd::Stop { time, pods } => each(&pods, |p| {
            e.pod_stop(p, stop_timeout(time))?;
            println!("{p}");
            Ok(())
        })?,
        PodCmd::Rm { force, pods } => each(&pods, |p| {
            e.pod_remove(p, force)?;
            println!("{p}");
            Ok(())
        })?,
        PodCmd::Ps { quiet, format } => {
            let pods = e.pods()?;
            if quiet {
                for (p, _) in &pods {
                    println!("{}", berth_engine::ids::short(&p.id));
                }
            } else if format == "json" {
                let v: Vec<serde_json::Value> = pods
                    .iter()
                    .map(|(p, cs)| {
                        serde_json::json!({
                            "Id": p.id, "Name": p.name, "Status": pod_status(e, p, cs),
                            "Created": p.created, "Containers": cs.iter().map(|c| &c.name).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let rows: Vec<[String; 5]> = pods
                    .iter()
                    .map(|(p, cs)| {
                        [
                            berth_engine::ids::short(&p.id).to_string(),
                            p.name.clone(),
                            pod_status(e, p, cs).to_string(),
                            crate::ago(Some(&p.created)),
                            cs.len().to_string(),
                        ]
                    })
                    .collect();
                crate::table(
                    &["POD ID", "NAME", "STATUS", "CREATED", "# OF CONTAINERS"],
                    &rows,
                );
            }
        }
        PodCmd::Inspect { pods } => {
            let mut out = Vec::new();
            each(&pods, |key| {
                let p = e.pod(key)?;
                let cs: Vec<String> = e
                    .pods()?
                    .into_iter()
                    .find(|(x, _)| x.id == p.id)
                    .map(|(_, cs)| cs.into_iter().map(|c| c.name).collect())
                    .unwrap_or_default();
                out.push(
                    serde_json::json!({"Pod": p, "Running": e.pod_running(&p), "Containers": cs}),
                );
                Ok(())
            })?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        PodCmd::Infra { .. } => unreachable!("handled before the engine opens"),
    }
    Ok(())
}

fn port(e: &Engine, key: &str) -> Result<()> {
    let c = e.container(key)?;
    let ports = match &c.config.pod {
        Some(p) => e.pod(p)?.ports,
        None => c.config.ports.clone(),
    };
    for p in ports {
        let ip = p
            .host_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        println!(
            "{}/{} -> {ip}:{}",
            p.container_port, p.protocol, p.host_port
        );
    }
    Ok(())
}

fn top(e: &Engine, key: &str) -> Result<()> {
    let c = e.container(key)?;
    if c.state.status != Status::Running && c.state.status != Status::Paused {
        bail!("container {} is not running", c.name);
    }
    let pids = e.handler(&c)?.pids(&c.id)?;
    let rows: Vec<[String; 4]> = pids
        .iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let uid = status
                .lines()
                .find(|l| l.starts_with("Uid:"))?
                .split_whitespace()
                .nth(1)?
                .to_string();
            let after = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            // SAFETY: sysconf takes an integer only.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            let secs = ticks / hz;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .trim()
                .to_string();
            Some([
                pid.to_string(),
                uid,
                format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
                cmd,
            ])
        })
        .collect();
    crate::table(&["PID", "USER", "TIME", "COMMAND"], &rows);
    Ok(())
}

fn stats(e: &Engine, keys: &[String]) -> Result<()> {
    let cs: Vec<Container> = if keys.is_empty() {
        e.containers()?
            .into_iter()
            .filter(|c| c.state.status == Status::Running)
            .collect()
    } else {
        keys.iter()
            .map(|k| Ok(e.container(k)?))
            .collect::<Result<_>>()?
    };
    let sample = |c: &Container| -> Result<serde_json::Value> { Ok(e.handler(c)?.stats(&c.id)?) };
    let first: Vec<serde_json::Value> = cs.iter().map(sample).collect::<Result<_>>()?;
    let t0 = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let mut rows = Vec::new();
    for (c, a) in cs.iter().zip(first) {
        let b = sample(c)?;
        let cpu = |v: &serde_json::Value| v["cpu"]["usage"]["total"].as_u64().unwrap_or(0);
        let pct = (cpu(&b).saturating_sub(cpu(&a))) as f64 / t0.elapsed().as_nanos() as f64 * 100.0;
        let used = b["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
        let limit = b["memory"]["usage"]["limit"].as_u64().unwrap_or(0);
        let host = host_memory();
        let limit = if limit == 0 || limit > host {
            host
        } else {
            limit
        };
        rows.push([
            berth_engine::ids::short(&c.id).to_string(),
            c.name.clone(),
            format!("{pct:.2}%"),
            format!("{} / {}", crate::human_size(used), crate::human_size(limit)),
            format!("{:.2}%", used as f64 / limit.max(1) as f64 * 100.0),
            b["pids"]["current"].as_u64().unwrap_or(0).to_string(),
        ]);
    }
    crate::table(
        &["ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"],
        &rows,
    );
    Ok(())
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(u64::MAX)
}

fn logs(
    e: &Engine,
    key: &str,
    follow: bool,
    tail: Option<usize>,
    since: Option<&str>,
    stamps: bool,
) -> Result<()> {
    use berth_monitor::logs::Reader;
    let c = e.container(key)?;
    let path = e.log_path(&c.id);
    let live = matches!(
        c.state.status,
        Status::Running | Status::Paused | Status::Created
    );
    let mut reader = if follow && live {
        Reader::follow(&path)?.until_exists(&e.exit_file(&c.id))
    } else {
        match Reader::open(&path) {
            Ok(r) => r,
            // Never started: nothing was logged.
            Err(_) if !path.exists() => return Ok(()),
            Err(err) => return Err(err.into()),
        }
    };
    if let Some(s) = since {
        let t = humantime::parse_rfc3339_weak(s)
            .or_else(|_| humantime::parse_duration(s).map(|d| std::time::SystemTime::now() - d))
            .with_context(|| format!("--since {s}: a time (RFC 3339) or a duration (10m)"))?;
        reader = reader.since(t);
    }
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let mut print = |r: berth_monitor::logs::Record| {
        use std::io::Write;
        let w: &mut dyn Write = match r.stream {
            berth_monitor::Stream::Stdout => &mut out,
            berth_monitor::Stream::Stderr => &mut err,
        };
        if stamps {
            let _ = write!(w, "{} ", humantime::format_rfc3339_nanos(r.time));
        }
        let _ = w.write_all(&r.msg);
        if !r.partial {
            let _ = w.write_all(b"\n");
        }
        let _ = w.flush();
    };
    if let Some(n) = tail {
        for r in reader.tail(n)? {
            print(r);
        }
        if !follow || !live {
            return Ok(());
        }
    }
    for r in reader {
        print(r?);
    }
    Ok(())
}

/// `ls` output as every kind has it: names only with -q, the records as
/// JSON with --format json, else `table`.
fn listing<T: serde::Serialize>(
    items: &[T],
    quiet: bool,
    format: &str,
    name: impl Fn(&T) -> &String,
    table: impl FnOnce(&[T]),
) -> Result<()> {
    if quiet {
        for i in items {
            println!("{}", name(i));
        }
    } else if format == "json" {
        println!("{}", serde_json::to_string_pretty(items)?);
    } else if format == "table" {
        table(items);
    } else {
        bail!("--format {format}: expected table or json");
    }
    Ok(())
}

/// Relays this terminal to the container's stdio (signals forwarded to
/// it) until it exits; its exit code.
fn relay_container(
    e: &Engine,
    c: &Container,
    client: berth_monitor::client::Client,
) -> Result<i32> {
    let handler = e.handler(c)?;
    let id = c.id.clone();
    let forward: Box<dyn Fn(i32) + Send> = Box::new(move |sig| {
        let _ = handler.kill(&id, sig, false);
    });
    match crate::attach::relay(client, c.config.stdin, c.config.tty, Some(forward))? {
        Some(code) => Ok(code),
        // The monitor went away without a word: ask the records.
        None => Ok(e.wait(&c.id, None)?),
    }
}

/// `system prune`: stopped containers, unused networks, dangling (with
/// `all`, unused) images, with `volumes` unused volumes, and the recovery
/// sweep's leftovers.
fn system_prune(ctx: &crate::Ctx, e: &Engine, all: bool, volumes: bool, force: bool) -> Result<()> {
    let mut what = vec![
        "all stopped containers",
        "all networks not used by at least one container",
    ];
    if volumes {
        what.push("all volumes not used by at least one container");
    }
    what.push(if all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    });
    what.push("what crashes left behind that no container, pod or network owns");
    if !force
        && !crate::confirm(&format!(
            "WARNING! This will remove:\n{}",
            what.iter()
                .map(|w| format!("  - {w}\n"))
                .collect::<String>()
        ))?
    {
        return Ok(());
    }
    let mut stopped = Vec::new();
    for c in e.containers()? {
        if matches!(c.state.status, Status::Exited | Status::Created) && c.state.pid == 0 {
            match e.remove(&c.id, false) {
                Ok(()) => stopped.push(c.id),
                Err(err) => eprintln!("Error: {}: {err}", c.name),
            }
        }
    }
    let swept = e.recover()?;
    let mut networks = Vec::new();
    for n in e.networks()? {
        // The default network stays, as docker's bridge does.
        if n.name != berth_engine::berth_network::network::DEFAULT_NAME
            && e.network_remove(&n.name, false).is_ok()
        {
            networks.push(n.name);
        }
    }
    let volumes = if volumes {
        e.volume_prune()?
    } else {
        Vec::new()
    };
    let images = berth_image::images::prune(&ctx.store()?, all)?;
    if !stopped.is_empty() {
        println!("Deleted Containers:");
        stopped.iter().for_each(|id| println!("{id}"));
    }
    if !networks.is_empty() {
        println!("Deleted Networks:");
        networks.iter().for_each(|n| println!("{n}"));
    }
    if !volumes.is_empty() {
        println!("Deleted Volumes:");
        volumes.iter().for_each(|v| println!("{v}"));
    }
    if !images.is_empty() {
        println!("Deleted Images:");
        images.iter().for_each(|d| println!("{}", d.hex()));
    }
    let left = swept.orphans.len() + swept.half_made.len() + swept.leftovers;
    if left + swept.released.len() > 0 {
        println!(
            "Recovered: {} orphaned containers, {} half-made, {} released, {} other leftovers",
            swept.orphans.len(),
            swept.half_made.len(),
            swept.released.len(),
            swept.leftovers
        );
    }
    Ok(())
}
