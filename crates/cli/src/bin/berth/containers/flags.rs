//! What `run`, `create` and `exec` take, and the parsers that turn those
//! flags (-v, --mount, -p, --env-file, --ulimit, sizes, network modes,
//! --security-opt) into the engine's ContainerConfig.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use berth_engine::berth_network::PortMapping;
use berth_engine::model::{ContainerConfig, HealthCheck, NetworkMode, RestartPolicy, VolumeMount};

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
    /// Publish a port: [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp].
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes, each on a free host port.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// HOST:IP in the container's /etc/hosts (IP `host-gateway`: the
    /// network's gateway, the host).
    #[arg(long)]
    pub add_host: Vec<String>,
    /// A nameserver for the container's resolv.conf (replaces the host's).
    #[arg(long)]
    pub dns: Vec<String>,
    /// A search domain for its resolv.conf (replaces the host's).
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// A resolv.conf option (ndots:2, ...; replaces the host's).
    #[arg(long)]
    pub dns_option: Vec<String>,
    /// bridge, host, none, container:NAME, or network names.
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// The container's host name (default: its short ID).
    #[arg(long)]
    pub hostname: Option<String>,
    /// USER[:GROUP], by name or number.
    #[arg(short, long)]
    pub user: Option<String>,
    /// The working directory of the command.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Memory limit (e.g. 512m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// How many CPUs' time the container may use (e.g. 1.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Most processes the container may have (-1: no limit).
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// A capability to add (e.g. NET_ADMIN, or ALL).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// A capability to drop (e.g. CHOWN, or ALL).
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Every capability and device, no seccomp filter, no masked or
    /// read-only paths.
    #[arg(long)]
    pub privileged: bool,
    /// HOST[:CONTAINER][:PERMISSIONS]: a host device for the container.
    #[arg(long)]
    pub device: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// seccomp=unconfined|PROFILE.json, no-new-privileges.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// KEY=VALUE
    #[arg(short, long)]
    pub label: Vec<String>,
    /// A file of labels, KEY=VALUE a line (# comments).
    #[arg(long)]
    pub label_file: Vec<std::path::PathBuf>,
    /// Write the container's ID to this file (which must not exist).
    #[arg(long)]
    pub cidfile: Option<std::path::PathBuf>,
    /// The cgroup the container's goes under.
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// The image's platform, OS/ARCH: only this host's runs here.
    #[arg(long)]
    pub platform: Option<String>,
    /// Log options: max-size=SIZE (rotate at it), max-file=N (rotated
    /// files kept).
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// The user namespace: host (the default), or use --uidmap.
    #[arg(long)]
    pub userns: Option<String>,
    /// Join this pod (its network, ipc and uts namespaces).
    #[arg(long)]
    pub pod: Option<String>,
    /// berth (builtin, the default), runc, crun, a runtime binary, or a
    /// name in $CONTAINERS_CONF's [engine.runtimes].
    #[arg(long)]
    pub runtime: Option<String>,
    /// A global flag for the runtime, as podman's --runtime-flag:
    /// `platform=ptrace` reaches runsc as `--platform=ptrace`.
    #[arg(long = "runtime-flag", value_name = "FLAG")]
    pub runtime_flag: Vec<String>,
    /// Run an init as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// When to pull the image: always, missing (not in the store) or never.
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// When pulling: require HTTPS with a verified certificate (false: any
    /// certificate, plain HTTP allowed), as pull's own flag.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    pub tls_verify: Option<bool>,
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
    /// The signal `stop` sends first (default: the image's, else TERM).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL.
    #[arg(long)]
    pub stop_timeout: Option<u64>,
    /// When the container's process ends: no, always, on-failure[:N]
    /// (at most N restarts) or unless-stopped.
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// A command the container's monitor runs in it to check its health
    /// (as HEALTHCHECK CMD-SHELL); over the image's.
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between checks (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub health_interval: Option<std::time::Duration>,
    /// Longest a check may run before it counts as failed (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub health_timeout: Option<std::time::Duration>,
    /// Failures in a row that make the container unhealthy (default 3).
    #[arg(long)]
    pub health_retries: Option<u32>,
    /// A first stretch in which failures do not count (default 0s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub health_start_period: Option<std::time::Duration>,
    /// No healthcheck, not even the image's.
    #[arg(long, conflicts_with = "health_cmd")]
    pub no_healthcheck: bool,
    /// Keys that detach from `run -it`, leaving the container running:
    /// comma-separated characters or ctrl-X ("" turns detaching off).
    #[arg(long, default_value = crate::attach::DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
    /// The image, by name or ID; pulled when missing (see --pull).
    pub image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(clap::Args, Clone, Debug)]
pub struct ExecFlags {
    /// Keep stdin open and hand it to the process.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// KEY=VALUE for the process's environment.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// USER[:GROUP], by name or number.
    #[arg(short, long)]
    pub user: Option<String>,
    /// The working directory of the process.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Every capability for the process.
    #[arg(long)]
    pub privileged: bool,
    /// Keys that detach from the process, leaving it running (with -it).
    #[arg(long, default_value = crate::attach::DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
    /// The container, by name or ID.
    pub container: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// "512m" -> bytes.
fn parse_bytes(s: &str) -> Result<i64> {
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

/// KEY=VALUE (no '=': the whole as the key, an empty value).
pub fn parse_label(l: &str) -> (String, String) {
    let (k, v) = l.split_once('=').unwrap_or((l, ""));
    (k.to_string(), v.to_string())
}

/// -v SOURCE:DEST[:OPTIONS]
fn parse_volume(v: &str) -> Result<VolumeMount> {
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
    let anonymous = source.is_empty();
    let source = if anonymous {
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
        anonymous,
        ..Default::default()
    })
}

/// --mount type=..,source=..,destination=..,readonly
fn parse_mount(m: &str) -> Result<VolumeMount> {
    let mut v = VolumeMount {
        kind: "volume".into(),
        ..Default::default()
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
        v.anonymous = true;
    }
    Ok(v)
}

/// --network: bridge, host, none, pasta, slirp4netns, container:NAME, or
/// network names.
pub fn parse_network(n: Option<&str>) -> NetworkMode {
    match n {
        None | Some("") | Some("default") => NetworkMode::Default,
        Some("bridge") => NetworkMode::Bridge(Vec::new()),
        Some("host") => NetworkMode::Host,
        Some("none") => NetworkMode::None,
        Some("pasta") => NetworkMode::Pasta,
        Some("slirp4netns") => NetworkMode::Slirp4netns,
        Some(x) if x.starts_with("container:") => {
            NetworkMode::Container(x["container:".len()..].into())
        }
        Some(names) => NetworkMode::Bridge(names.split(',').map(String::from).collect()),
    }
}

/// An env or label file larger than this is not one (`--env-file
/// /dev/zero` would otherwise be read until memory runs out).
const MAX_ENV_FILE: u64 = 1 << 20;

/// The entries of an env or label file (a pipe, `<(...)`, too), as
/// docker's parser reads them: leading white space dropped, blank lines
/// and `#` comments skipped, the rest kept as it is (trailing spaces and
/// quotes are part of the value, as in docker and podman).
fn key_value_file(flag: &str, file: &std::path::Path) -> Result<Vec<String>> {
    use std::io::Read;
    let what = || format!("{flag} {}", file.display());
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
    let text = String::from_utf8(raw).map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", what()))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

fn env_lines(f: &CreateFlags) -> Result<Vec<String>> {
    let mut env = Vec::new();
    for file in &f.env_file {
        env.extend(key_value_file("--env-file", file)?);
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
        cgroup_parent: f.cgroup_parent.clone(),
        publish_all: f.publish_all,
        extra_hosts: f
            .add_host
            .iter()
            .map(|h| parse_add_host(h))
            .collect::<Result<_>>()?,
        dns: dns(f)?,
        log_max_size: log_opt(f, "max-size")?
            .map(|v| parse_bytes(&v))
            .transpose()?
            .map(|n| n.max(0) as u64),
        log_max_files: log_opt(f, "max-file")?
            .map(|v| {
                v.parse()
                    .with_context(|| format!("--log-opt max-file={v}: not a number"))
            })
            .transpose()?,
        ..Default::default()
    })
}

/// --add-host HOST:IP (docker's; `HOST=IP` too, as podman takes it).
fn parse_add_host(h: &str) -> Result<(String, String)> {
    let (host, ip) = h
        .split_once([':', '='])
        .with_context(|| format!("--add-host {h}: expected HOST:IP"))?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        bail!("--add-host {h}: {host:?} is not a host name");
    }
    if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
        bail!("--add-host {h}: {ip:?} is not an IP address (or host-gateway)");
    }
    Ok((host.to_string(), ip.to_string()))
}

/// --dns, --dns-search, --dns-option; None when none is given (the host's
/// resolv.conf, as docker's).
fn dns(f: &CreateFlags) -> Result<Option<berth_engine::model::Dns>> {
    for d in &f.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            bail!("--dns {d}: not an IP address");
        }
    }
    if f.dns.is_empty() && f.dns_search.is_empty() && f.dns_option.is_empty() {
        return Ok(None);
    }
    Ok(Some(berth_engine::model::Dns {
        servers: f.dns.clone(),
        searches: f.dns_search.clone(),
        options: f.dns_option.clone(),
    }))
}

/// The value of one --log-opt key; unknown keys are refused.
fn log_opt(f: &CreateFlags, key: &str) -> Result<Option<String>> {
    let mut found = None;
    for o in &f.log_opt {
        match o.split_once('=') {
            Some((k, v)) if k == key => found = Some(v.to_string()),
            Some(("max-size" | "max-file", _)) => {}
            _ => bail!("--log-opt {o}: expected max-size=SIZE or max-file=N"),
        }
    }
    Ok(found)
}

/// --platform: this host's (OS/ARCH[/VARIANT]) or a clear refusal; berth
/// runs no emulator.
fn check_platform(p: &str) -> Result<()> {
    let here = berth_image::Platform::host();
    let mut parts = p.split('/');
    let (os, arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if os == here.os && (arch.is_empty() || arch == here.architecture) {
        return Ok(());
    }
    bail!(
        "--platform {p}: this host runs {}/{} only (no emulation)",
        here.os,
        here.architecture
    )
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

/// The flags over the defaults of the containers.conf that
/// `$CONTAINERS_CONF` names, as podman applies them: a flag wins over the
/// file for the same ulimit type, sysctl key or variable; DNS settings
/// come from the file only when no DNS flag is given.
fn with_conf(
    f: &CreateFlags,
    conf: &berth_engine::podman_conf::ContainersConf,
) -> Result<CreateFlags> {
    let c = &conf.containers;
    let mut out = f.clone();
    let key = |s: &str| s.split('=').next().unwrap_or(s).to_string();
    let given: Vec<String> = f.ulimit.iter().map(|u| key(u)).collect();
    out.ulimit = c
        .default_ulimits
        .iter()
        .filter(|u| !given.contains(&key(u)))
        .chain(&f.ulimit)
        .cloned()
        .collect();
    let given: Vec<String> = f.sysctl.iter().map(|s| key(s)).collect();
    out.sysctl = c
        .default_sysctls
        .iter()
        .filter(|s| !given.contains(&key(s)))
        .chain(&f.sysctl)
        .cloned()
        .collect();
    if f.dns.is_empty() && f.dns_search.is_empty() && f.dns_option.is_empty() {
        out.dns = c.dns_servers.clone();
        out.dns_search = c.dns_searches.clone();
        out.dns_option = c.dns_options.clone();
    }
    out.env = c.env.iter().chain(&f.env).cloned().collect();
    out.pids_limit = f.pids_limit.or(c.pids_limit);
    out.shm_size = f.shm_size.clone().or_else(|| c.shm_size.clone());
    out.init = f.init || c.init.unwrap_or(false);
    let name = f
        .runtime
        .clone()
        .or_else(|| conf.engine.runtime.clone())
        .unwrap_or_else(|| "berth".into());
    out.runtime = Some(conf.runtime_path(&name)?);
    Ok(out)
}

/// The container the flags describe (over $CONTAINERS_CONF's defaults),
/// for the engine to create.
pub fn config(f: &CreateFlags) -> Result<ContainerConfig> {
    let conf = berth_engine::podman_conf::ContainersConf::from_env()?;
    let f = &with_conf(f, &conf)?;
    let mut ports = Vec::new();
    for p in &f.publish {
        ports.extend(PortMapping::parse(p)?);
    }
    if let Some(sig) = &f.stop_signal {
        berth_engine::signals::parse(sig)?;
    }
    // A CDI name (vendor.com/class=name) is no path: podman's rule.
    let (cdi, nodes): (Vec<&String>, Vec<&String>) = f
        .device
        .iter()
        .partition(|d| !d.starts_with('/') && d.contains('='));
    let devices = nodes
        .into_iter()
        .map(|d| berth_engine::model::DeviceMapping::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let cdi_devices: Vec<String> = cdi.into_iter().cloned().collect();
    let cdi_edits = if cdi_devices.is_empty() {
        None
    } else {
        let dirs: Vec<std::path::PathBuf> = berth_engine::cdi::DEFAULT_DIRS
            .iter()
            .map(std::path::PathBuf::from)
            .collect();
        let edits = berth_engine::cdi::Registry::load(&dirs)
            .resolve(&cdi_devices)
            .map_err(|u| {
                berth_engine::Error::invalid("--device", format!("CDI device {}", u.why))
            })?;
        Some(edits)
    };
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
    extra.cdi_devices = cdi_devices;
    extra.cdi = cdi_edits;
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
    // A JSON array is the exec form (docker's); anything else one path.
    let entrypoint = match f.entrypoint.as_deref() {
        None => None,
        Some("") => Some(Vec::new()),
        Some(e) if e.trim_start().starts_with('[') => Some(
            serde_json::from_str::<Vec<String>>(e)
                .with_context(|| format!("--entrypoint {e}: not a JSON array of strings"))?,
        ),
        Some(e) => Some(vec![e.to_string()]),
    };
    if let Some(p) = &f.platform {
        check_platform(p)?;
    }
    match f.userns.as_deref() {
        None | Some("" | "host") => {}
        Some(u) => bail!("--userns {u}: only host is supported; map ids with --uidmap/--gidmap"),
    }
    let mut label_lines = Vec::new();
    for path in &f.label_file {
        label_lines.extend(key_value_file("--label-file", path)?);
    }
    label_lines.extend(f.label.iter().cloned());
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
        labels: label_lines.iter().map(|l| parse_label(l)).collect(),
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
        runtime: f.runtime.clone().unwrap_or_default(),
        runtime_flags: f.runtime_flag.clone(),
        init: f.init,
        stop_signal: f.stop_signal.clone(),
        stop_timeout: f.stop_timeout,
        devices,
        extra,
        restart: RestartPolicy::parse(&f.restart).map_err(|e| anyhow!("--restart {e}"))?,
        healthcheck: healthcheck(f),
        ..Default::default()
    })
}

/// --time: seconds to wait before SIGKILL.
pub fn stop_timeout(t: Option<u64>) -> Option<Duration> {
    t.map(Duration::from_secs)
}

/// The --health-* flags, to go over the image's HEALTHCHECK (the engine
/// merges them); None when none is given.
fn healthcheck(f: &CreateFlags) -> Option<HealthCheck> {
    let ms = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_millis() as u64);
    let test = match (&f.health_cmd, f.no_healthcheck) {
        (_, true) => vec!["NONE".to_string()],
        (Some(cmd), _) => vec!["CMD-SHELL".to_string(), cmd.clone()],
        (None, _) => Vec::new(),
    };
    let h = HealthCheck {
        test,
        interval_ms: ms(f.health_interval),
        timeout_ms: ms(f.health_timeout),
        start_period_ms: ms(f.health_start_period),
        retries: f.health_retries.unwrap_or(0),
    };
    (h != HealthCheck::default()).then_some(h)
}

#[cfg(test)]
mod tests {
    #[test]
    fn env_and_label_files_keep_values_as_docker_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(
            &f,
            "# comment\n\n   # indented comment\n  LEAD=x\nTRAIL=a b  \nTAB=\tx\t\nQ=\"q\"\nBARE\n   \nEMPTY=\n",
        )
        .unwrap();
        assert_eq!(
            super::key_value_file("--env-file", &f).unwrap(),
            [
                "LEAD=x",
                "TRAIL=a b  ",
                "TAB=\tx\t",
                "Q=\"q\"",
                "BARE",
                "EMPTY="
            ]
        );
    }
}
