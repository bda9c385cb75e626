//! The records the engine keeps, as stored (JSON in the state database)
//! and as `inspect` shows them.

use serde::{Deserialize, Serialize};

/// What the user asked for when creating a container: everything needed
/// to make it again (after a reboot) and to show it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerConfig {
    /// The image as the user named it.
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    /// Remove the container when it exits.
    pub auto_remove: bool,
    pub read_only: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
    /// None: the default profile; "unconfined"; or a profile file's path.
    pub seccomp: Option<String>,
    pub labels: Vec<(String, String)>,
    pub memory: Option<i64>,
    /// CPUs as a fraction (quota/period).
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub network: NetworkMode,
    pub ports: Vec<berth_network::PortMapping>,
    pub volumes: Vec<VolumeMount>,
    pub tmpfs: Vec<String>,
    pub pod: Option<String>,
    /// "berth" (builtin), "runc", "crun" or a runtime binary's path.
    pub runtime: String,
    /// Global flags for an external runtime (podman's --runtime-flag:
    /// `platform=ptrace` is given as `--platform=ptrace`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_flags: Vec<String>,
    pub init: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u64>,
    /// --device: host devices given to the container.
    #[serde(default)]
    pub devices: Vec<DeviceMapping>,
    /// What else a request may set (all that CRI's container config
    /// carries): kept apart, defaulted for records made before it.
    #[serde(default)]
    pub extra: Extra,
    /// Where the monitor writes the container's log (CRI's log path);
    /// None: in its userdata.
    #[serde(default)]
    pub log_path: Option<std::path::PathBuf>,
    /// Who manages the container ("kubernetes" for berthd's): `berth rm`
    /// leaves it alone without --force.
    #[serde(default)]
    pub owner: Option<String>,
    /// What the manager keeps with the container (CRI's metadata, its
    /// config as given), opaque to the engine.
    #[serde(default)]
    pub manager_data: Option<serde_json::Value>,
    /// What happens when the container's process ends (--restart).
    #[serde(default)]
    pub restart: RestartPolicy,
    /// The healthcheck: the flags' over the image's (health.rs); a test
    /// of `["NONE"]` turns the image's off.
    #[serde(default)]
    pub healthcheck: Option<HealthCheck>,
}

/// docker's HEALTHCHECK: `test` is `["CMD", args..]`, `["CMD-SHELL",
/// command]` or `["NONE"]`; a zero duration or count is the default's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HealthCheck {
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub start_period_ms: u64,
    pub retries: u32,
}

/// docker's restart policies, run without a daemon: the monitor's exit
/// command (`container cleanup`) starts the container again after the
/// backoff, and the first use of berth after a boot starts those that
/// `always` (and `unless-stopped`) come back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    /// Restart after a non-zero exit, at most `max_retries` times (0: no
    /// limit).
    OnFailure {
        #[serde(rename = "maximumRetryCount", default)]
        max_retries: u32,
    },
    UnlessStopped,
}

impl RestartPolicy {
    /// `no`, `always`, `on-failure[:N]` or `unless-stopped`.
    pub fn parse(s: &str) -> Result<RestartPolicy, String> {
        match s.split_once(':') {
            None => match s {
                "no" | "" => Ok(RestartPolicy::No),
                "always" => Ok(RestartPolicy::Always),
                "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: 0 }),
                "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
                other => Err(format!(
                    "{other:?}: expected no, always, on-failure[:N] or unless-stopped"
                )),
            },
            Some(("on-failure", n)) => n
                .parse()
                .map(|max_retries| RestartPolicy::OnFailure { max_retries })
                .map_err(|_| format!("{n:?} is not a number of retries")),
            Some(_) => Err(format!("{s:?}: only on-failure takes a count")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }
}

/// Resource, kernel and security settings beyond docker's everyday flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Extra {
    /// Namespaced sysctls (--sysctl).
    pub sysctls: std::collections::BTreeMap<String, String>,
    /// Annotations (CRI's), apart from labels.
    pub annotations: std::collections::BTreeMap<String, String>,
    pub cpu_shares: Option<u64>,
    /// Raw CFS quota and period (CRI gives these, not --cpus).
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// Memory plus swap, bytes (-1: unlimited).
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// (page size such as "2MB", limit in bytes).
    pub hugepages: Vec<(String, u64)>,
    /// cgroup v2 files and values.
    pub unified: std::collections::BTreeMap<String, String>,
    pub oom_score_adj: Option<i32>,
    /// RLIMIT_* name (or docker's short form), soft, hard.
    pub ulimits: Vec<(String, u64, u64)>,
    /// Supplementary groups, by number or by name in the image's
    /// /etc/group.
    pub group_add: Vec<String>,
    /// /dev/shm's size in bytes.
    pub shm_size: Option<u64>,
    pub apparmor: Option<String>,
    pub selinux_label: Option<String>,
    /// -P: every port the image exposes published on a free host port
    /// (resolved into `ports` at create).
    pub publish_all: bool,
    /// --add-host: (name, IP or `host-gateway`) lines of /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
    /// --dns*: the parts given replace the host's resolv.conf's.
    pub dns: Option<Dns>,
    /// --log-opt max-size / max-file (default 10 MiB, one file).
    pub log_max_size: Option<u64>,
    pub log_max_files: Option<u32>,
    /// Capabilities kept across an exec of a non-root user's program
    /// (CRI's add_ambient_capabilities): also inheritable and permitted.
    pub cap_ambient: Vec<String>,
    /// Replace the default masked and read-only paths.
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    /// A user namespace with these id mappings (container, host, size).
    pub uid_map: Vec<(u32, u32, u32)>,
    pub gid_map: Vec<(u32, u32, u32)>,
    /// The cgroup the container's goes under (CRI's cgroup parent, a pod's);
    /// None: a top-level cgroup of its own.
    pub cgroup_parent: Option<String>,
    /// Join the pid namespace of this container (its id), which runs in
    /// the same pod: CRI's TARGET, what `kubectl debug --target` asks for.
    pub pid_target: Option<String>,
    /// CDI devices by name, and the edits they resolved to when the
    /// container was made (applied at every start).
    pub cdi_devices: Vec<String>,
    pub cdi: Option<crate::cdi::Edits>,
}

/// --device HOST[:CONTAINER][:PERMISSIONS].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMapping {
    pub host: String,
    pub container: String,
    /// A subset of "rwm".
    pub access: String,
}

impl DeviceMapping {
    pub fn parse(s: &str) -> crate::Result<DeviceMapping> {
        let bad = |why: &str| crate::Error::invalid(format!("--device {s}"), why.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        let perms = |p: &str| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| "rwm".contains(c));
        let (host, container, access) = match parts[..] {
            [h] => (h, h, "rwm"),
            [h, x] if perms(x) && !x.starts_with('/') => (h, h, x),
            [h, c] => (h, c, "rwm"),
            [h, c, a] => (h, c, a),
            _ => return Err(bad("expected HOST[:CONTAINER][:PERMISSIONS]")),
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(bad("device paths must be absolute"));
        }
        if !perms(access) {
            return Err(bad("permissions are a combination of r, w and m"));
        }
        Ok(DeviceMapping {
            host: host.into(),
            container: container.into(),
            access: access.into(),
        })
    }
}

/// --network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "mode", content = "value")]
pub enum NetworkMode {
    /// The default network, or the named ones.
    #[default]
    Default,
    Bridge(Vec<String>),
    Host,
    None,
    /// Another container's network namespace.
    Container(String),
    /// The pod's.
    Pod,
    /// A namespace of its own joined to the host by pasta's user-mode
    /// stack (an ordinary user's default).
    Pasta,
    /// The same through slirp4netns.
    Slirp4netns,
}

impl NetworkMode {
    /// The user-mode helper that connects this mode's namespace.
    pub fn user_helper(&self) -> Option<berth_network::usernet::Helper> {
        match self {
            NetworkMode::Pasta => Some(berth_network::usernet::Helper::Pasta),
            NetworkMode::Slirp4netns => Some(berth_network::usernet::Helper::Slirp4netns),
            _ => None,
        }
    }

    /// A namespace made for the container (or pod) by the engine, with
    /// the attachments its mode names.
    pub fn has_own_namespace(&self) -> bool {
        matches!(
            self,
            NetworkMode::None
                | NetworkMode::Default
                | NetworkMode::Bridge(_)
                | NetworkMode::Pasta
                | NetworkMode::Slirp4netns
        )
    }
}

/// -v / --mount.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// "bind", "volume" or "tmpfs".
    pub kind: String,
    /// Host path (bind) or volume name (volume); empty for tmpfs.
    pub source: String,
    pub destination: String,
    pub options: Vec<String>,
    /// An anonymous volume (`-v /path`): its name is made up, and it goes
    /// with its container when --rm removes that (docker's rule).
    #[serde(default)]
    pub anonymous: bool,
    /// Set by the engine: the volume did not exist before this container
    /// was created, and goes with it if the container's run fails.
    #[serde(default)]
    pub made: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Exited,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited => "exited",
        }
    }
}

/// What happened to the container so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    /// Resources made for the current run (netns, mounts) are still there
    /// and must be released by cleanup.
    #[serde(default)]
    pub needs_cleanup: bool,
    /// The kernel's OOM killer struck in the container's cgroup during the
    /// last run.
    #[serde(default)]
    pub oom_killed: bool,
    /// Starts made by the restart policy since the user's last start.
    #[serde(default)]
    pub restart_count: u32,
    /// The wait before the next start by the policy (docker's: doubling
    /// from 100 ms to a minute, back to 100 ms after a run of 10 s).
    #[serde(default)]
    pub restart_backoff_ms: u64,
    /// Stopped by `stop`: no policy starts it again (`unless-stopped` not
    /// even after a boot).
    #[serde(default)]
    pub stopped_by_user: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            started_at: None,
            finished_at: None,
            exit_code: None,
            needs_cleanup: false,
            oom_killed: false,
            restart_count: 0,
            restart_backoff_ms: 0,
            stopped_by_user: false,
        }
    }
}

/// A network the container is attached to, as CNI reported it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attached {
    pub network: String,
    pub interface: String,
    pub ips: Vec<String>,
    pub gateway: Option<String>,
    pub mac: Option<String>,
    /// The user-mode helper (pasta, slirp4netns) that serves this
    /// attachment; stopped when it is detached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper: Option<berth_base::process::ProcessId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image's config digest.
    pub image_id: String,
    pub created: String,
    pub config: ContainerConfig,
    /// The command it runs (entrypoint + cmd, resolved from the image).
    pub command: Vec<String>,
    pub state: State,
    /// The pinned network namespace of the current run, if it has its own.
    pub netns: Option<String>,
    pub networks: Vec<Attached>,
    /// Its monitor: pid and start time (a pid alone may name another
    /// process after the monitor is gone).
    pub monitor_pid: i32,
    #[serde(default)]
    pub monitor_start: u64,
    /// The record's version when it was read: a state change succeeds only
    /// against this version.
    #[serde(skip)]
    pub version: i64,
}

/// What a container was created as: never changes (but for its name,
/// which is kept apart).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    pub image_id: String,
    pub created: String,
    pub config: ContainerConfig,
    pub command: Vec<String>,
}

/// What changes as a container runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRun {
    pub state: State,
    pub netns: Option<String>,
    pub networks: Vec<Attached>,
    pub monitor_pid: i32,
    #[serde(default)]
    pub monitor_start: u64,
}

impl Container {
    pub fn assemble(
        id: String,
        name: String,
        spec: ContainerSpec,
        run: ContainerRun,
        version: i64,
    ) -> Container {
        Container {
            id,
            name,
            image_id: spec.image_id,
            created: spec.created,
            config: spec.config,
            command: spec.command,
            state: run.state,
            netns: run.netns,
            networks: run.networks,
            monitor_pid: run.monitor_pid,
            monitor_start: run.monitor_start,
            version,
        }
    }

    /// Its monitor, if it has one.
    pub fn monitor(&self) -> Option<berth_base::process::ProcessId> {
        (self.monitor_pid > 0).then_some(berth_base::process::ProcessId {
            pid: self.monitor_pid,
            start_time: self.monitor_start,
        })
    }

    pub fn spec(&self) -> ContainerSpec {
        ContainerSpec {
            image_id: self.image_id.clone(),
            created: self.created.clone(),
            config: self.config.clone(),
            command: self.command.clone(),
        }
    }

    pub fn run(&self) -> ContainerRun {
        ContainerRun {
            state: self.state.clone(),
            netns: self.netns.clone(),
            networks: self.networks.clone(),
            monitor_pid: self.monitor_pid,
            monitor_start: self.monitor_start,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub created: String,
    pub mountpoint: String,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub id: String,
    pub name: String,
    pub created: String,
    pub hostname: String,
    pub network: NetworkMode,
    pub ports: Vec<berth_network::PortMapping>,
    pub labels: Vec<(String, String)>,
    /// The infra process holding the namespaces, while the pod runs: pid
    /// and start time.
    pub infra_pid: i32,
    #[serde(default)]
    pub infra_start: u64,
    pub netns: Option<String>,
    /// The pod's pinned uts and ipc namespaces while it runs (a pod that
    /// shares its pid namespace has its infra process hold them instead).
    #[serde(default)]
    pub uts_ns: Option<String>,
    #[serde(default)]
    pub ipc_ns: Option<String>,
    pub networks: Vec<Attached>,
    /// What else the pod was asked for (CRI's sandbox config).
    #[serde(default)]
    pub options: PodOptions,
    /// The record's version when it was read (see Container::version).
    #[serde(skip)]
    pub version: i64,
}

/// A pod's namespaces, DNS and cgroup beyond `pod create`'s flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodOptions {
    /// The pod's containers share one pid namespace, held by its infra
    /// process (which is its pid 1).
    pub share_pid: bool,
    /// The pod's containers are in the host's pid namespace.
    pub host_pid: bool,
    /// The pod's containers are in the host's ipc namespace.
    pub host_ipc: bool,
    /// The resolv.conf of the pod's containers; None: the host's.
    pub dns: Option<Dns>,
    /// The cgroup the pod's containers' cgroups go under.
    pub cgroup_parent: Option<String>,
    /// Namespaced sysctls for every container of the pod.
    pub sysctls: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Who manages the pod (see ContainerConfig::owner).
    pub owner: Option<String>,
    /// What the manager keeps with the pod, opaque to the engine.
    pub manager_data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl Dns {
    /// As resolv.conf says it.
    pub fn resolv_conf(&self) -> String {
        let mut s = String::new();
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for n in &self.servers {
            s.push_str(&format!("nameserver {n}\n"));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

impl Pod {
    /// Its infra process, if it has one.
    pub fn infra(&self) -> Option<berth_base::process::ProcessId> {
        (self.infra_pid > 0).then_some(berth_base::process::ProcessId {
            pid: self.infra_pid,
            start_time: self.infra_start,
        })
    }

    /// Its namespaces are there: held by the infra process the record
    /// names (the very one), or pinned.
    pub fn running(&self) -> bool {
        if self.options.share_pid {
            return self.infra().is_some_and(|p| p.is_alive());
        }
        self.uts_ns
            .as_deref()
            .is_some_and(|u| berth_network::netns::exists(std::path::Path::new(u)))
    }

    /// The path of one of its namespaces ("uts", "ipc", "pid") for a
    /// container to join.
    pub fn namespace(&self, kind: &str) -> Option<String> {
        let pinned = match kind {
            "uts" => self.uts_ns.clone(),
            "ipc" => self.ipc_ns.clone(),
            _ => None,
        };
        pinned.or_else(|| self.infra().map(|i| format!("/proc/{}/ns/{kind}", i.pid)))
    }
}
