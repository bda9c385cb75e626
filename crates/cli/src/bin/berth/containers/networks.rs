//! `berth network`: create, ls, inspect and rm of networks (CNI bridges).

use anyhow::Result;
use berth_engine::Engine;
use clap::Subcommand;

use super::batch::each;
use super::flags::parse_label;
use super::listing::{Rows, ls};
use crate::format::print_inspect;
use crate::human::table;

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Create a network: a bridge with a subnet.
    Create {
        /// The network's name.
        name: String,
        /// e.g. 10.77.42.0/24 (default: the next free /24 of 10.77.0.0/16).
        #[arg(long)]
        subnet: Option<ipnet::Ipv4Net>,
        /// The gateway address (default: the subnet's first).
        #[arg(long)]
        gateway: Option<std::net::Ipv4Addr>,
        /// No route out: containers reach each other and the host only.
        #[arg(long)]
        internal: bool,
        /// KEY=VALUE
        #[arg(short, long)]
        label: Vec<String>,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
        /// table, json, or a Go template: '{{.Name}} {{.Driver}}'.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Show networks' records as JSON.
    Inspect {
        /// A Go template over each record.
        #[arg(short, long)]
        format: Option<String>,
        /// Networks to show, by name.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks.
    Rm {
        /// Remove it with the containers that use it.
        #[arg(short, long)]
        force: bool,
        /// Networks to remove, by name.
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Connect a container to a network (a running one at once, on a new
    /// interface).
    Connect {
        /// The network, by name.
        network: String,
        /// The container, by name or ID.
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// The network, by name.
        network: String,
        /// The container, by name or ID.
        container: String,
    },
}

pub fn run(e: &Engine, cmd: NetworkCmd) -> Result<()> {
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
        NetworkCmd::Ls { quiet, format } => ls(
            &e.networks()?,
            quiet,
            &format,
            |n| &n.name,
            Rows {
                row: &network_row,
                headers: &[("ID", "NETWORK ID")],
            },
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
                table(&["NETWORK ID", "NAME", "DRIVER", "SUBNET", "BRIDGE"], &rows);
            },
        )?,
        NetworkCmd::Inspect { networks, format } => {
            let mut out = Vec::new();
            each(&networks, |n| {
                out.push(berth_engine::inspect::network(&e.network(n)?));
                Ok(())
            })?;
            print_inspect(format.as_deref(), &out)?;
        }
        NetworkCmd::Rm { force, networks } => super::batch::removals(&networks, force, |n| {
            e.network_remove(n, force)?;
            println!("{n}");
            Ok(())
        })?,
        NetworkCmd::Connect { network, container } => {
            e.network_connect(&network, &container)?;
        }
        NetworkCmd::Disconnect { network, container } => {
            e.network_disconnect(&network, &container)?;
        }
    }
    Ok(())
}

/// A network under docker's template names (network ls's NetworkContext),
/// with berth's subnet, gateway and bridge besides.
fn network_row(n: &berth_engine::berth_network::Network) -> serde_json::Value {
    serde_json::json!({
        "ID": berth_engine::ids::short(&n.id),
        "Name": n.name,
        "Driver": n.driver,
        "Scope": "local",
        "IPv6": false,
        "Internal": n.internal,
        "Labels": n.labels,
        "CreatedAt": crate::human::docker_time(&n.created),
        "Subnet": n.subnet.to_string(),
        "Gateway": n.gateway.to_string(),
        "Bridge": n.bridge,
    })
}
