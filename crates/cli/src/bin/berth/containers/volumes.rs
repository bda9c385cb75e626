//! `berth volume`: create, ls, inspect, rm and prune of named volumes.

use anyhow::Result;
use berth_engine::Engine;
use clap::Subcommand;

use super::batch::each;
use super::flags::parse_label;
use super::listing::{Rows, label_map, ls};
use crate::format::print_inspect;
use crate::human::table;

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a named volume.
    Create {
        /// The volume's name (default: a generated one).
        name: Option<String>,
        /// KEY=VALUE
        #[arg(short, long)]
        label: Vec<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
        /// table, json, or a Go template: '{{.Name}} {{.Mountpoint}}'.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Show volumes' records as JSON.
    Inspect {
        /// A Go template over each record.
        #[arg(short, long)]
        format: Option<String>,
        /// Volumes to show, by name.
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes.
    Rm {
        /// Remove them with the containers that use them.
        #[arg(short, long)]
        force: bool,
        /// Volumes to remove, by name.
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove every volume no container uses.
    Prune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
}

pub fn run(e: &Engine, cmd: VolumeCmd) -> Result<()> {
    match cmd {
        VolumeCmd::Create { name, label } => {
            let (v, _) = e.volume_create(
                name.as_deref(),
                label.iter().map(|l| parse_label(l)).collect(),
            )?;
            println!("{}", v.name);
        }
        VolumeCmd::Ls { quiet, format } => ls(
            &e.volumes()?,
            quiet,
            &format,
            |v| &v.name,
            Rows {
                row: &volume_row,
                headers: &[("Name", "VOLUME NAME")],
            },
            |vs| {
                let rows: Vec<[String; 2]> = vs
                    .iter()
                    .map(|v| ["local".to_string(), v.name.clone()])
                    .collect();
                table(&["DRIVER", "VOLUME NAME"], &rows);
            },
        )?,
        VolumeCmd::Inspect { volumes, format } => {
            let mut out = Vec::new();
            each(&volumes, |v| {
                out.push(berth_engine::inspect::volume(&e.volume(v)?));
                Ok(())
            })?;
            print_inspect(format.as_deref(), &out)?;
        }
        VolumeCmd::Rm { force, volumes } => super::batch::removals(&volumes, force, |v| {
            e.volume_remove(v, force)?;
            println!("{v}");
            Ok(())
        })?,
        VolumeCmd::Prune { force } => {
            if !force
                && !crate::confirm(
                    "WARNING! This will remove all volumes not used by at least one container.\n",
                )?
            {
                return Ok(());
            }
            for v in e.volume_prune()? {
                println!("{v}");
            }
        }
    }
    Ok(())
}

/// A volume under docker's template names (volume ls's VolumeContext).
fn volume_row(v: &berth_engine::model::Volume) -> serde_json::Value {
    serde_json::json!({
        "Name": v.name,
        "Driver": "local",
        "Scope": "local",
        "Mountpoint": v.mountpoint,
        "Labels": label_map(&v.labels),
        "CreatedAt": crate::human::docker_time(&v.created),
    })
}
