//! `berth pod`: create, start, stop, rm, ps and inspect of pods, containers
//! sharing network, ipc and uts namespaces.

use std::path::PathBuf;

use anyhow::{Result, bail};
use berth_engine::Engine;
use berth_engine::berth_network::PortMapping;
use berth_engine::model::{Container, Status};
use clap::Subcommand;

use super::batch::each;
use super::flags::{parse_label, parse_network, stop_timeout};
use crate::format::{Format, print_inspect, print_rows};
use crate::human::{ago, docker_time, table};

#[derive(Subcommand)]
pub enum PodCmd {
    /// Create a pod.
    Create {
        /// The pod's name (default: a generated one).
        #[arg(long)]
        name: Option<String>,
        /// The host name of the pod's containers.
        #[arg(long)]
        hostname: Option<String>,
        /// Publish a port for the pod: [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp].
        #[arg(short, long = "publish")]
        publish: Vec<String>,
        /// bridge, host, none, or network names.
        #[arg(long, alias = "net")]
        network: Option<String>,
        /// KEY=VALUE
        #[arg(short, long)]
        label: Vec<String>,
        /// Namespaces the pod's containers share: net, ipc and uts always;
        /// `pid` (or `+pid`) adds a shared pid namespace.
        #[arg(long)]
        share: Option<String>,
    },
    /// Start pods' containers.
    Start {
        /// Pods to start, by name or ID.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Stop pods' containers.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long)]
        time: Option<u64>,
        /// Pods to stop, by name or ID.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Remove pods.
    Rm {
        /// Remove it even with running containers (killed).
        #[arg(short, long)]
        force: bool,
        /// Pods to remove, by name or ID.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// List pods.
    #[command(alias = "ls", alias = "list")]
    Ps {
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
        /// table, json, or a Go template: '{{.Name}} {{.Status}}'.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Show pods' records as JSON.
    Inspect {
        /// A Go template over each record.
        #[arg(short, long)]
        format: Option<String>,
        /// Pods to show, by name or ID.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// The process that holds a pod's namespaces (berth runs it).
    #[command(hide = true)]
    Infra {
        /// The pod's host name.
        #[arg(long)]
        hostname: String,
        /// The network namespace to join.
        #[arg(long)]
        netns: Option<PathBuf>,
        /// Hold a pid namespace too.
        #[arg(long)]
        share_pid: bool,
        /// Keep the host's ipc namespace.
        #[arg(long)]
        host_ipc: bool,
    },
}

/// A pod's STATUS: Running, Degraded (some containers down), Created or
/// Exited.
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

pub fn run(e: &Engine, cmd: PodCmd) -> Result<()> {
    match cmd {
        PodCmd::Create {
            name,
            hostname,
            publish,
            network,
            label,
            share,
        } => {
            let mut options = berth_engine::model::PodOptions::default();
            if let Some(share) = &share {
                for ns in share.trim_start_matches('+').split(',') {
                    match ns {
                        "pid" => options.share_pid = true,
                        "net" | "ipc" | "uts" | "" => {}
                        other => bail!(
                            "--share {share}: unknown namespace {other:?} (pid, net, ipc, uts)"
                        ),
                    }
                }
            }
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
                options,
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
        PodCmd::Ps { quiet, format } => pod_ps(e, quiet, &format)?,
        PodCmd::Inspect { pods, format } => {
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
            print_inspect(format.as_deref(), &out)?;
        }
        PodCmd::Infra { .. } => unreachable!("handled before the engine opens"),
    }
    Ok(())
}

/// `pod ps`: IDs, JSON, a table or a template's rows.
fn pod_ps(e: &Engine, quiet: bool, format: &str) -> Result<()> {
    let format = Format::parse(format)?;
    let pods = e.pods()?;
    if quiet {
        for (p, _) in &pods {
            println!("{}", berth_engine::ids::short(&p.id));
        }
        return Ok(());
    }
    match format {
        Format::Json => {
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
        }
        Format::Template(t) => {
            let rows: Vec<serde_json::Value> =
                pods.iter().map(|(p, cs)| pod_row(e, p, cs)).collect();
            let opts = berth_template::Options {
                methods: &[],
                headers: &[("ID", "POD ID"), ("NumberOfContainers", "# OF CONTAINERS")],
            };
            print_rows(&t, &rows, &opts)?;
        }
        Format::Table => {
            let rows: Vec<[String; 5]> = pods
                .iter()
                .map(|(p, cs)| {
                    [
                        berth_engine::ids::short(&p.id).to_string(),
                        p.name.clone(),
                        pod_status(e, p, cs).to_string(),
                        ago(Some(&p.created)),
                        cs.len().to_string(),
                    ]
                })
                .collect();
            table(
                &["POD ID", "NAME", "STATUS", "CREATED", "# OF CONTAINERS"],
                &rows,
            );
        }
    }
    Ok(())
}

/// A pod under podman's `pod ps` template names.
fn pod_row(e: &Engine, p: &berth_engine::model::Pod, cs: &[Container]) -> serde_json::Value {
    serde_json::json!({
        "ID": berth_engine::ids::short(&p.id),
        "Name": p.name,
        "Status": pod_status(e, p, cs),
        "Created": ago(Some(&p.created)),
        "CreatedAt": docker_time(&p.created),
        "NumberOfContainers": cs.len(),
        "ContainerNames": cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","),
        "Labels": super::listing::label_map(&p.labels),
    })
}
