//! How records are shown: `ps`'s table and JSON, `inspect`'s JSON, and the
//! -q / json / table choice every `ls` shares.

use anyhow::{Result, bail};
use berth_engine::Engine;
use berth_engine::model::{Container, Status};

use crate::human::{ago, since, table};

/// The STATUS column: "Up 3 minutes (healthy)", "Exited (0) 2 hours ago".
fn status_text(e: &Engine, c: &Container) -> String {
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let up = format!("Up {}", since(c.state.started_at.as_deref()));
            match e.health(c).map(|h| h.status) {
                Some(s) if s == "starting" => format!("{up} (health: starting)"),
                Some(s) => format!("{up} ({s})"),
                None => up,
            }
        }
        Status::Paused => format!("Up {} (paused)", since(c.state.started_at.as_deref())),
        Status::Exited => match c.state.exit_code {
            Some(code) => format!("Exited ({code}) {}", ago(c.state.finished_at.as_deref())),
            None => format!("Exited (unknown) {}", ago(c.state.finished_at.as_deref())),
        },
    }
}

/// The PORTS column: HOST_IP:HOST_PORT->PORT/PROTO, comma-separated.
fn ports_text(c: &Container) -> String {
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

/// `ps`: running containers (all with -a), as IDs, a table or JSON.
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
            let v: Vec<serde_json::Value> = list.iter().map(|c| ps_json(e, c)).collect();
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
                        ago(Some(&c.created)),
                        status_text(e, c),
                        ports_text(c),
                        c.name.clone(),
                    ]
                })
                .collect();
            table(
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

fn ps_json(e: &Engine, c: &Container) -> serde_json::Value {
    serde_json::json!({
        "Id": c.id,
        "Names": [c.name],
        "Image": c.config.image,
        "ImageID": c.image_id,
        "Command": c.command,
        "Created": c.created,
        "State": c.state.status.name(),
        "Status": status_text(e, c),
        "ExitCode": c.state.exit_code,
        "Pid": c.state.pid,
        "Ports": c.config.ports,
        "Networks": c.networks.iter().map(|n| n.network.clone()).collect::<Vec<_>>(),
        "Pod": c.config.pod,
        "Labels": c.config.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    })
}

/// `inspect`: the records as a JSON array. Each name is looked up as a
/// container, then as an image, as docker does.
pub fn inspect(ctx: &crate::Ctx, e: &Engine, names: &[String]) -> Result<()> {
    let mut out = Vec::new();
    super::batch::each(names, |c| {
        match e.container(c) {
            Ok(found) => out.push(inspect_json(e, &found)),
            Err(berth_engine::Error::NotFound(_)) => {
                let store = ctx.store()?;
                let rec =
                    berth_image::images::resolve(&store, c, &ctx.conf).map_err(
                        |err| match err {
                            berth_image::Error::NotFound(_) => {
                                anyhow::anyhow!(
                                    "no such object: {c:?} (neither a container nor an image)"
                                )
                            }
                            other => other.into(),
                        },
                    )?;
                out.push(crate::inspect(&store, &rec)?);
            }
            Err(err) => return Err(err.into()),
        }
        Ok(())
    })?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn inspect_json(e: &Engine, c: &Container) -> serde_json::Value {
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
            "Health": e.health(c),
        },
        "RestartCount": c.state.restart_count,
        "HostConfig": {
            "RestartPolicy": {
                "Name": c.config.restart.name(),
                "MaximumRetryCount": match c.config.restart {
                    berth_engine::model::RestartPolicy::OnFailure { max_retries } => max_retries,
                    _ => 0,
                },
            },
        },
        "Config": c.config,
        "NetworkSettings": {
            "SandboxKey": c.netns,
            "Networks": c.networks,
            "Ports": c.config.ports,
        },
        "LogPath": e.log_path(c),
        "BundlePath": e.bundle_dir(&c.id),
        "MonitorPid": c.monitor_pid,
    })
}

/// `ls` output as every kind has it: names only with -q, the records as
/// JSON with --format json, else `table`.
pub fn ls<T: serde::Serialize>(
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
