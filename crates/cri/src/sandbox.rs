//! Pod sandboxes: a CRI sandbox config checked and turned into the
//! engine's pod request, and an engine pod shown as CRI's sandbox status.

use std::collections::HashMap;
use std::net::IpAddr;

use berth_engine::model::{Dns, NetworkMode, Pod, PodOptions};
use berth_engine::pods::PodRequest;
use tonic::Status;

use crate::api;
use crate::config::{CgroupDriver, Config};
use crate::meta::{self, OWNER, SandboxData};
use crate::status::{invalid, required};
use crate::time;

/// The engine's pod request for a RunPodSandbox, checked field by field
/// before anything is made.
pub fn request(
    cfg: &Config,
    r: &api::RunPodSandboxRequest,
) -> Result<(PodRequest, String), Status> {
    let c = r.config.as_ref().ok_or_else(|| required("config"))?;
    let md = check_metadata(c.metadata.as_ref())?;
    let runtime = cfg.runtime(&r.runtime_handler).ok_or_else(|| {
        invalid(
            "runtime_handler",
            format!(
                "no handler named {:?} (configured: {})",
                r.runtime_handler,
                cfg.handler_names().join(", ")
            ),
        )
    })?;
    let linux = c.linux.clone().unwrap_or_default();
    let ns = linux
        .security_context
        .as_ref()
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let mode = |v: i32| api::NamespaceMode::try_from(v).ok();
    let host_network = mode(ns.network) == Some(api::NamespaceMode::Node);
    let mut options = PodOptions {
        owner: Some(OWNER.into()),
        ..PodOptions::default()
    };
    match mode(ns.pid) {
        Some(api::NamespaceMode::Pod) => options.share_pid = true,
        Some(api::NamespaceMode::Node) => options.host_pid = true,
        Some(api::NamespaceMode::Container) => {}
        _ => {
            return Err(invalid(
                "config.linux.security_context.namespace_options.pid",
                "a pod's pid namespace is POD, CONTAINER or NODE",
            ));
        }
    }
    match mode(ns.ipc) {
        Some(api::NamespaceMode::Node) => options.host_ipc = true,
        Some(api::NamespaceMode::Pod) => {}
        _ => {
            return Err(invalid(
                "config.linux.security_context.namespace_options.ipc",
                "a pod's ipc namespace is POD or NODE",
            ));
        }
    }
    if !matches!(
        mode(ns.network),
        Some(api::NamespaceMode::Pod | api::NamespaceMode::Node)
    ) {
        return Err(invalid(
            "config.linux.security_context.namespace_options.network",
            "a pod's network namespace is POD or NODE",
        ));
    }
    const USERNS: &str = "config.linux.security_context.namespace_options.userns_options";
    if crate::userns::maps(USERNS, ns.userns_options.as_ref())?.is_some() {
        if options.share_pid {
            // The shared pid namespace is the infra process's, made in the
            // host's user namespace: /proc could not be mounted in a
            // container's own.
            return Err(invalid(
                USERNS,
                "a pod sharing one pid namespace (shareProcessNamespace) cannot have its own user namespace",
            ));
        }
        if ns.network == api::NamespaceMode::Node as i32 || options.host_ipc {
            return Err(invalid(
                USERNS,
                "a pod with hostNetwork or hostIPC cannot have its own user namespace",
            ));
        }
    }
    if let Some(d) = &c.dns_config {
        options.dns = Some(check_dns(d)?);
    }
    options.cgroup_parent = cgroup_parent(cfg.cgroup_driver, &linux.cgroup_parent)?;
    for (k, v) in &linux.sysctls {
        check_sysctl(k, v)?;
        options.sysctls.insert(k.clone(), v.clone());
    }
    options.annotations = c.annotations.clone().into_iter().collect();
    let hostname = check_hostname(&c.hostname)?;
    if !c.log_directory.is_empty() && !c.log_directory.starts_with('/') {
        return Err(invalid(
            "config.log_directory",
            format!("{:?} is not an absolute path", c.log_directory),
        ));
    }
    let ports = ports(&c.port_mappings)?;
    if host_network && !ports.is_empty() {
        // kubelet lists the host network pod's ports for information only:
        // they are the host's already.
        tracing::debug!("host network pod {}: port mappings ignored", md.name);
    }
    let data = SandboxData {
        config: c.clone(),
        runtime_handler: r.runtime_handler.clone(),
        runtime: runtime.clone(),
        runtime_flags: cfg.runtime_flags(&r.runtime_handler),
    };
    options.manager_data = Some(serde_json::to_value(&data).expect("a sandbox config serializes"));
    let network = if host_network {
        NetworkMode::Host
    } else if cfg.network == berth_engine::berth_network::network::DEFAULT_NAME {
        NetworkMode::Default
    } else {
        NetworkMode::Bridge(vec![cfg.network.clone()])
    };
    Ok((
        PodRequest {
            name: Some(meta::sandbox_name(md)),
            hostname: Some(hostname.unwrap_or_else(|| {
                if host_network {
                    host_hostname()
                } else {
                    md.name.clone()
                }
            })),
            ports: if host_network { Vec::new() } else { ports },
            network,
            labels: meta::labels_in(&c.labels),
            options,
        },
        runtime,
    ))
}

pub fn check_metadata(
    md: Option<&api::PodSandboxMetadata>,
) -> Result<&api::PodSandboxMetadata, Status> {
    let md = md.ok_or_else(|| required("config.metadata"))?;
    for (field, v) in [
        ("config.metadata.name", &md.name),
        ("config.metadata.namespace", &md.namespace),
        ("config.metadata.uid", &md.uid),
    ] {
        check_word(field, v)?;
    }
    Ok(md)
}

/// Kubernetes names and uids: DNS labels and subdomains, UUIDs.
pub fn check_word(field: &str, v: &str) -> Result<(), Status> {
    if v.is_empty() {
        return Err(required(field));
    }
    if v.len() > 253 {
        return Err(invalid(
            field,
            format!("{} bytes long, more than 253", v.len()),
        ));
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(invalid(
            field,
            format!("{v:?}: only letters, digits, '-', '.' and '_'"),
        ));
    }
    Ok(())
}

fn check_hostname(h: &str) -> Result<Option<String>, Status> {
    if h.is_empty() {
        return Ok(None);
    }
    let ok = h.len() <= 64
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        });
    if !ok {
        return Err(invalid(
            "config.hostname",
            format!("{h:?} is not a hostname of at most 64 characters"),
        ));
    }
    Ok(Some(h.to_string()))
}

fn host_hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// resolv.conf lines: nothing that would start another line.
fn check_dns(d: &api::DnsConfig) -> Result<Dns, Status> {
    for (i, s) in d.servers.iter().enumerate() {
        s.parse::<IpAddr>().map_err(|_| {
            invalid(
                &format!("config.dns_config.servers[{i}]"),
                format!("{s:?} is not an IP address"),
            )
        })?;
    }
    for (field, list) in [("searches", &d.searches), ("options", &d.options)] {
        for (i, s) in list.iter().enumerate() {
            if s.is_empty()
                || s.len() > 253
                || s.contains(|c: char| c.is_whitespace() || c.is_control())
            {
                return Err(invalid(
                    &format!("config.dns_config.{field}[{i}]"),
                    format!("{s:?}: one word of at most 253 bytes"),
                ));
            }
        }
    }
    if d.searches.len() > 32 {
        return Err(invalid(
            "config.dns_config.searches",
            format!("{} domains, more than resolv.conf's 32", d.searches.len()),
        ));
    }
    Ok(Dns {
        servers: d.servers.clone(),
        searches: d.searches.clone(),
        options: d.options.clone(),
    })
}

/// The published ports: those with a host port (kubelet lists every
/// declared container port; only hostPort ones are mapped).
fn ports(
    list: &[api::PortMapping],
) -> Result<Vec<berth_engine::berth_network::PortMapping>, Status> {
    use berth_engine::berth_network::ports::{PortMapping, Protocol};
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let field = |f: &str| format!("config.port_mappings[{i}].{f}");
        let protocol = match api::Protocol::try_from(p.protocol) {
            Ok(api::Protocol::Tcp) => Protocol::Tcp,
            Ok(api::Protocol::Udp) => Protocol::Udp,
            _ => {
                return Err(invalid(
                    &field("protocol"),
                    "TCP or UDP (SCTP is not supported)",
                ));
            }
        };
        let port = |f: &str, v: i32, zero: bool| -> Result<u16, Status> {
            match u16::try_from(v) {
                Ok(0) if zero => Ok(0),
                Ok(n) if n > 0 => Ok(n),
                _ => Err(invalid(&field(f), format!("{v} is not a port"))),
            }
        };
        let container_port = port("container_port", p.container_port, false)?;
        let host_port = port("host_port", p.host_port, true)?;
        if host_port == 0 {
            continue;
        }
        let host_ip =
            match p.host_ip.as_str() {
                "" | "0.0.0.0" => None,
                s => Some(s.parse::<IpAddr>().map_err(|_| {
                    invalid(&field("host_ip"), format!("{s:?} is not an IP address"))
                })?),
            };
        out.push(PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        });
    }
    Ok(out)
}

/// kubelet's cgroup parent as a cgroupfs path: as given for the cgroupfs
/// driver; for the systemd driver, a slice name expanded as systemd
/// nests slices (`a-b.slice` is `a.slice/a-b.slice`).
pub fn cgroup_parent(driver: CgroupDriver, parent: &str) -> Result<Option<String>, Status> {
    const FIELD: &str = "config.linux.cgroup_parent";
    if parent.is_empty() {
        return Ok(None);
    }
    let path = match driver {
        CgroupDriver::Cgroupfs => parent.to_string(),
        CgroupDriver::Systemd => {
            let Some(stem) = parent.strip_suffix(".slice") else {
                return Err(invalid(
                    FIELD,
                    format!(
                        "{parent:?} is not a systemd slice name (the systemd cgroup driver is configured)"
                    ),
                ));
            };
            if stem.is_empty() || stem.contains('/') || stem.split('-').any(str::is_empty) {
                return Err(invalid(FIELD, format!("{parent:?} is not a slice name")));
            }
            let parts: Vec<&str> = stem.split('-').collect();
            (1..=parts.len())
                .map(|n| format!("{}.slice", parts[..n].join("-")))
                .collect::<Vec<_>>()
                .join("/")
        }
    };
    if path
        .split('/')
        .any(|c| c == ".." || c == "." || c.contains('\0'))
    {
        return Err(invalid(FIELD, format!("{parent:?} leaves the cgroup tree")));
    }
    Ok(Some(path.trim_matches('/').to_string()))
}

fn check_sysctl(k: &str, v: &str) -> Result<(), Status> {
    let ok = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !k.split(['.', '/']).any(|c| c.is_empty() || c == "..");
    if !ok {
        return Err(invalid(
            &format!("config.linux.sysctls[{k:?}]"),
            "not a sysctl name",
        ));
    }
    if v.contains(['\n', '\0']) {
        return Err(invalid(
            &format!("config.linux.sysctls[{k:?}]"),
            "the value holds a newline or NUL",
        ));
    }
    Ok(())
}

/// The sandbox as ListPodSandbox shows it.
pub fn summary(p: &Pod) -> Option<api::PodSandbox> {
    let d = meta::sandbox_data(p)?;
    Some(api::PodSandbox {
        id: p.id.clone(),
        metadata: d.config.metadata.clone(),
        state: state(p) as i32,
        created_at: time::nanos(&p.created),
        labels: d.config.labels.clone(),
        annotations: d.config.annotations.clone(),
        runtime_handler: d.runtime_handler.clone(),
    })
}

pub fn state(p: &Pod) -> api::PodSandboxState {
    if p.running() {
        api::PodSandboxState::SandboxReady
    } else {
        api::PodSandboxState::SandboxNotready
    }
}

/// PodSandboxStatus: with its network and namespaces.
pub fn status(p: &Pod) -> Option<api::PodSandboxStatus> {
    let d = meta::sandbox_data(p)?;
    let ready = p.running();
    let mut ips = p
        .networks
        .iter()
        .flat_map(|n| n.ips.iter())
        .map(|ip| ip.split('/').next().unwrap_or(ip).to_string());
    let network = if ready && p.network != NetworkMode::Host {
        let ip = ips.next().unwrap_or_default();
        Some(api::PodSandboxNetworkStatus {
            ip,
            additional_ips: ips.map(|ip| api::PodIp { ip }).collect(),
        })
    } else {
        None
    };
    let ns = d
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    Some(api::PodSandboxStatus {
        id: p.id.clone(),
        metadata: d.config.metadata.clone(),
        state: state(p) as i32,
        created_at: time::nanos(&p.created),
        network,
        linux: Some(api::LinuxPodSandboxStatus {
            namespaces: Some(api::Namespace { options: ns }),
        }),
        labels: d.config.labels.clone(),
        annotations: d.config.annotations.clone(),
        runtime_handler: d.runtime_handler,
    })
}

/// The verbose part of PodSandboxStatus: the record as the engine keeps
/// it.
pub fn info(p: &Pod) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert(
        "info".to_string(),
        serde_json::json!({
            "pod": p,
            "running": p.running(),
            "namespaces": {
                "network": p.netns,
                "uts": p.namespace("uts"),
                "ipc": p.namespace("ipc"),
                "pid": p.options.share_pid.then(|| p.namespace("pid")),
            },
        })
        .to_string(),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_slices_expand_as_systemd_nests_them() {
        let p = cgroup_parent(CgroupDriver::Systemd, "kubepods-besteffort-pod12.slice").unwrap();
        assert_eq!(
            p.as_deref(),
            Some("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice")
        );
        assert!(cgroup_parent(CgroupDriver::Systemd, "/kubepods/x").is_err());
        assert!(cgroup_parent(CgroupDriver::Systemd, "a--b.slice").is_err());
        let p = cgroup_parent(CgroupDriver::Cgroupfs, "/kubepods/besteffort/pod12").unwrap();
        assert_eq!(p.as_deref(), Some("kubepods/besteffort/pod12"));
        let e = cgroup_parent(CgroupDriver::Cgroupfs, "/kubepods/../../etc").unwrap_err();
        assert!(e.message().contains("cgroup_parent"), "{e}");
    }

    #[test]
    fn dns_lines_cannot_inject_others() {
        let bad = api::DnsConfig {
            searches: vec!["a.example\nnameserver 6.6.6.6".into()],
            ..Default::default()
        };
        let e = check_dns(&bad).unwrap_err();
        assert!(e.message().contains("searches[0]"), "{e}");
        let bad = api::DnsConfig {
            servers: vec!["dns.example".into()],
            ..Default::default()
        };
        assert!(
            check_dns(&bad)
                .unwrap_err()
                .message()
                .contains("servers[0]")
        );
    }
}
