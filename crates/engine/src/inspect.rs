//! A container as `docker inspect` shows one: docker's (and podman's) key
//! names and shapes, so that scripts written for them (`{{.State.Status}}`,
//! `{{.NetworkSettings.IPAddress}}`, `{{.HostConfig.RestartPolicy.Name}}`)
//! read berth's too. berth's own record is kept whole under `Berth`.

use serde_json::{Map, Value, json};

use crate::engine::Engine;
use crate::model::{Container, RestartPolicy, Status};

impl Engine {
    /// The container, docker-shaped.
    pub fn inspect(&self, c: &Container) -> Value {
        let cfg = &c.config;
        // What the container runs, as its last spec says (image defaults
        // and the request merged); the request alone before a first start.
        let spec = self.written_spec(&c.id);
        let process = spec.as_ref().and_then(|s| s.process().clone());
        let env = process
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_else(|| cfg.env.clone());
        let workdir = process
            .as_ref()
            .map(|p| p.cwd().display().to_string())
            .or_else(|| cfg.workdir.clone())
            .unwrap_or_default();
        let first = c.networks.first();
        let ip = |a: Option<&crate::model::Attached>| {
            a.and_then(|a| a.ips.first())
                .map(|ip| ip.split_once('/').unwrap_or((ip, "")))
                .map(|(addr, len)| (addr.to_string(), len.parse::<u32>().unwrap_or(0)))
                .unwrap_or_default()
        };
        let mut networks = Map::new();
        for a in &c.networks {
            let (addr, len) = ip(Some(a));
            networks.insert(
                a.network.clone(),
                json!({
                    "IPAddress": addr,
                    "IPPrefixLen": len,
                    "Gateway": a.gateway.clone().unwrap_or_default(),
                    "MacAddress": a.mac.clone().unwrap_or_default(),
                    "InterfaceName": a.interface,
                }),
            );
        }
        let (addr, len) = ip(first);
        let ports = ports(c);
        let health = self.health(c);
        json!({
            "Id": c.id,
            "Created": c.created,
            "Path": c.command.first(),
            "Args": c.command.iter().skip(1).collect::<Vec<_>>(),
            "State": {
                "Status": c.state.status.name(),
                "Running": c.state.status == Status::Running,
                "Paused": c.state.status == Status::Paused,
                "Restarting": false,
                "OOMKilled": c.state.oom_killed,
                "Dead": false,
                "Pid": c.state.pid,
                "ExitCode": c.state.exit_code.unwrap_or(0),
                "Error": "",
                "StartedAt": c.state.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
                "FinishedAt": c.state.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
                "Health": health,
            },
            "Image": c.image_id,
            "ImageName": cfg.image,
            "Name": c.name,
            "RestartCount": c.state.restart_count,
            "LogPath": self.log_path(c),
            "Pod": cfg.pod.clone().unwrap_or_default(),
            "Config": {
                "Hostname": cfg.hostname.clone().unwrap_or_else(|| crate::ids::short(&c.id).to_string()),
                "User": cfg.user.clone().unwrap_or_default(),
                "Env": env,
                "Cmd": cfg.cmd,
                "Entrypoint": cfg.entrypoint,
                "Image": cfg.image,
                "WorkingDir": workdir,
                "Labels": cfg.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "Tty": cfg.tty,
                "OpenStdin": cfg.stdin,
                "StopSignal": cfg.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
                "StopTimeout": cfg.stop_timeout.unwrap_or(10),
                "Healthcheck": cfg.healthcheck.as_ref().map(|h| json!({
                    "Test": h.test,
                    "Interval": h.interval_ms * 1_000_000,
                    "Timeout": h.timeout_ms * 1_000_000,
                    "StartPeriod": h.start_period_ms * 1_000_000,
                    "Retries": h.retries,
                })),
            },
            "HostConfig": {
                "Binds": cfg.volumes.iter().filter(|v| v.kind != "tmpfs").map(|v| {
                    let mut b = format!("{}:{}", v.source, v.destination);
                    if !v.options.is_empty() {
                        b.push(':');
                        b.push_str(&v.options.join(","));
                    }
                    b
                }).collect::<Vec<_>>(),
                "NetworkMode": network_mode(c),
                "PortBindings": ports,
                "RestartPolicy": {
                    "Name": cfg.restart.name(),
                    "MaximumRetryCount": match cfg.restart {
                        RestartPolicy::OnFailure { max_retries } => max_retries,
                        _ => 0,
                    },
                },
                "AutoRemove": cfg.auto_remove,
                "Privileged": cfg.privileged,
                "ReadonlyRootfs": cfg.read_only,
                "CapAdd": cfg.cap_add,
                "CapDrop": cfg.cap_drop,
                "Memory": cfg.memory.unwrap_or(0),
                "NanoCpus": cfg.cpus.map_or(0, |c| (c * 1e9) as i64),
                "PidsLimit": cfg.pids_limit,
                "CgroupParent": cfg.extra.cgroup_parent.clone().unwrap_or_default(),
                "Runtime": cfg.runtime,
                "Init": cfg.init,
                "Devices": cfg.devices.iter().map(|d| json!({
                    "PathOnHost": d.host,
                    "PathInContainer": d.container,
                    "CgroupPermissions": d.access,
                })).collect::<Vec<_>>(),
                "Dns": cfg.extra.dns.as_ref().map(|d| d.servers.clone()).unwrap_or_default(),
                "DnsSearch": cfg.extra.dns.as_ref().map(|d| d.searches.clone()).unwrap_or_default(),
                "DnsOptions": cfg.extra.dns.as_ref().map(|d| d.options.clone()).unwrap_or_default(),
                "ExtraHosts": cfg.extra.extra_hosts.iter().map(|(h, i)| format!("{h}:{i}")).collect::<Vec<_>>(),
                "Sysctls": cfg.extra.sysctls,
                "ShmSize": cfg.extra.shm_size.unwrap_or(64 << 20),
                "LogConfig": {
                    "Type": "k8s-file",
                    "Config": {
                        "max-size": cfg.extra.log_max_size.unwrap_or(10 << 20).to_string(),
                        "max-file": cfg.extra.log_max_files.unwrap_or(1).to_string(),
                    },
                },
            },
            "Mounts": cfg.volumes.iter().map(|v| {
                let ro = v.options.iter().any(|o| o == "ro" || o == "rro");
                // A volume's directory, as its record says (inspect makes none).
                let source = match v.kind.as_str() {
                    "volume" => self.volume(&v.source).map(|v| v.mountpoint).unwrap_or_default(),
                    _ => v.source.clone(),
                };
                json!({
                    "Type": v.kind,
                    "Name": if v.kind == "volume" { v.source.as_str() } else { "" },
                    "Source": source,
                    "Destination": v.destination,
                    "Mode": v.options.join(","),
                    "RW": !ro,
                    "Propagation": v.options.iter()
                        .find(|o| o.ends_with("private") || o.ends_with("slave") || o.ends_with("shared"))
                        .cloned()
                        .unwrap_or_else(|| "rprivate".into()),
                })
            }).collect::<Vec<_>>(),
            "NetworkSettings": {
                "IPAddress": addr,
                "IPPrefixLen": len,
                "Gateway": first.and_then(|a| a.gateway.clone()).unwrap_or_default(),
                "MacAddress": first.and_then(|a| a.mac.clone()).unwrap_or_default(),
                "SandboxKey": c.netns.clone().unwrap_or_default(),
                "Ports": ports,
                "Networks": networks,
            },
            "BundlePath": self.bundle_dir(&c.id),
            "MonitorPid": c.monitor_pid,
        })
    }

    /// The spec the container last ran with, if it has one.
    fn written_spec(&self, id: &str) -> Option<oci_spec::runtime::Spec> {
        let raw = std::fs::read(self.bundle_dir(id).join("config.json")).ok()?;
        serde_json::from_slice(&raw).ok()
    }
}

/// docker's "never": what a time that has not happened reads as.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Published ports as docker keys them: `80/tcp` to its host bindings.
fn ports(c: &Container) -> Value {
    let mut m = Map::new();
    for p in &c.config.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let binding = json!({
            "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
            "HostPort": p.host_port.to_string(),
        });
        m.entry(key)
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("made an array")
            .push(binding);
    }
    Value::Object(m)
}

fn network_mode(c: &Container) -> String {
    use crate::model::NetworkMode as N;
    match &c.config.network {
        N::Default => "bridge".into(),
        N::Bridge(names) => names.join(","),
        N::Host => "host".into(),
        N::None => "none".into(),
        N::Pod => format!("pod:{}", c.config.pod.clone().unwrap_or_default()),
        N::Container(other) => format!("container:{other}"),
        N::Pasta => "pasta".into(),
        N::Slirp4netns => "slirp4netns".into(),
    }
}

/// A volume as `docker volume inspect` shows one.
pub fn volume(v: &crate::model::Volume) -> Value {
    json!({
        "Name": v.name,
        "Driver": "local",
        "Mountpoint": v.mountpoint,
        "CreatedAt": v.created,
        "Labels": v.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "Scope": "local",
        "Options": {},
    })
}

/// A network as `docker network inspect` (and podman's) shows one.
pub fn network(n: &berth_network::Network) -> Value {
    let subnet = json!({"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()});
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Driver": n.driver,
        "NetworkInterface": n.bridge,
        "Subnets": [subnet.clone()],
        "IPAM": {"Driver": "default", "Config": [subnet]},
        "Internal": n.internal,
        "Labels": n.labels,
        "Scope": "local",
    })
}
