//! `berth info` and `berth version`: what this host and store are, as
//! podman's info and docker's version say it.

use serde::Serialize;

use crate::engine::Engine;
use crate::error::Result;
use crate::model::Status;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    pub version: String,
    pub os_arch: String,
    pub kernel: String,
    /// The OCI runtime containers get unless --runtime says otherwise.
    pub default_runtime: String,
}

pub fn version() -> Version {
    Version {
        version: env!("CARGO_PKG_VERSION").into(),
        os_arch: format!("linux/{}", berth_image::Platform::host().architecture),
        kernel: kernel(),
        default_runtime: "berth (builtin)".into(),
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    pub host: Host,
    pub store: Store,
    pub registries: Vec<String>,
    pub version: Version,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Host {
    pub hostname: String,
    pub kernel: String,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
    pub mem_total: u64,
    /// v1, v2 or hybrid (v1 controllers beside a v2 mount).
    pub cgroup_version: String,
    pub cgroup_manager: String,
    pub network_backend: String,
    pub rootless: bool,
    /// The helper an ordinary user's default network goes through
    /// (podman's `rootlessNetworkCmd`); empty for root.
    pub rootless_network_cmd: String,
    /// A user's namespace maps (podman's `idMappings`): the user as 0 and
    /// its subordinate ranges; empty for root, or where the user has none.
    pub id_mappings: IdMappings,
    pub seccomp_enabled: bool,
    pub apparmor_enabled: bool,
    pub selinux_enabled: bool,
    /// Runtimes a container may name with --runtime, found on PATH.
    pub runtimes: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdMappings {
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
}

/// One range, podman's field names.
#[derive(Debug, Serialize)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// The maps of this user's namespace (none for root's berth).
fn id_mappings() -> IdMappings {
    let Some((uids, gids)) = berth_base::rootless::namespace_maps() else {
        return IdMappings::default();
    };
    let conv = |r: &[berth_base::userns::IdRange]| {
        r.iter()
            .map(|r| IdMap {
                container_id: r.inside,
                host_id: r.outside,
                size: r.size,
            })
            .collect()
    };
    IdMappings {
        uid_map: conv(&uids),
        gid_map: conv(&gids),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Store {
    pub graph_root: String,
    pub run_root: String,
    pub graph_driver: String,
    pub containers: usize,
    pub running: usize,
    pub paused: usize,
    pub stopped: usize,
    pub images: usize,
    pub volumes: usize,
}

impl Engine {
    pub fn info(&self, registries: Vec<String>) -> Result<Info> {
        let containers = self.containers()?;
        let count = |s: Status| containers.iter().filter(|c| c.state.status == s).count();
        let layout = berth_runtime::cgroups::layout::Layout::detect().ok();
        let cgroup_version = match &layout {
            Some(l) if l.hierarchies.iter().all(|h| h.v2) => "v2",
            Some(l) if l.hierarchies.iter().any(|h| h.v2) => "hybrid",
            Some(_) => "v1",
            None => "unknown",
        };
        let runtimes = ["runc", "crun", "runsc", "youki", "berth-vm"]
            .into_iter()
            .filter(|r| berth_base::paths::find_program(r).is_some())
            .map(String::from);
        Ok(Info {
            host: Host {
                hostname: rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned(),
                kernel: kernel(),
                os: "linux".into(),
                arch: berth_image::Platform::host().architecture,
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
                mem_total: mem_total(),
                cgroup_version: cgroup_version.into(),
                cgroup_manager: "cgroupfs".into(),
                network_backend: "cni".into(),
                rootless: berth_base::rootless::host_user().is_some(),
                rootless_network_cmd: match crate::net::for_this_user(
                    crate::model::NetworkMode::Default,
                )?
                .user_helper()
                {
                    Some(h) => h.name().into(),
                    None => String::new(),
                },
                id_mappings: id_mappings(),
                seccomp_enabled: std::path::Path::new("/proc/sys/kernel/seccomp").exists(),
                apparmor_enabled: std::fs::read_to_string(
                    "/sys/module/apparmor/parameters/enabled",
                )
                .is_ok_and(|s| s.trim() == "Y"),
                selinux_enabled: std::path::Path::new("/sys/fs/selinux/enforce").exists(),
                runtimes: std::iter::once("berth".to_string())
                    .chain(runtimes)
                    .collect(),
            },
            store: Store {
                graph_root: self.root.display().to_string(),
                run_root: self.run_root.display().to_string(),
                graph_driver: "overlay".into(),
                containers: containers.len(),
                running: count(Status::Running),
                paused: count(Status::Paused),
                stopped: count(Status::Exited) + count(Status::Created),
                images: self.images.images()?.len(),
                volumes: self.volumes()?.len(),
            },
            registries,
            version: version(),
        })
    }
}

/// The host's memory in bytes (MemTotal; 0 if /proc/meminfo cannot say).
pub fn mem_total() -> u64 {
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
        .map_or(0, |kb| kb * 1024)
}
