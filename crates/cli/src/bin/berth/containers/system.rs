//! `berth system`: prune (stopped containers, unused networks, volumes and
//! images, crash leftovers) and repair (a state database rebuilt from disk).

use anyhow::Result;
use berth_engine::Engine;
use clap::Subcommand;

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
    /// Disk space used by images, containers and volumes, and what
    /// removing the unused would free.
    Df {
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
}

/// `system df`.
pub fn df(e: &Engine, format: &str) -> Result<()> {
    let u = e.disk_usage()?;
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&u)?);
        return Ok(());
    }
    if format != "table" {
        anyhow::bail!("--format {format}: expected table or json");
    }
    let row = |kind: &str, d: &berth_engine::usage::DiskUsage| {
        let pct = (d.reclaimable * 100).checked_div(d.size).unwrap_or(0);
        [
            kind.to_string(),
            d.total.to_string(),
            d.active.to_string(),
            crate::human::human_size(d.size),
            format!("{} ({pct}%)", crate::human::human_size(d.reclaimable)),
        ]
    };
    crate::human::table(
        &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        &[
            row("Images", &u.images),
            row("Containers", &u.containers),
            row("Local Volumes", &u.volumes),
        ],
    );
    Ok(())
}

/// `container prune`: stopped containers, after asking (or with -f).
pub fn container_prune(e: &Engine, force: bool) -> Result<()> {
    if !force && !crate::confirm("WARNING! This will remove all stopped containers.\n")? {
        return Ok(());
    }
    let (removed, failed) = e.container_prune()?;
    removed.iter().for_each(|id| println!("{id}"));
    for (name, err) in &failed {
        eprintln!("Error: {name}: {err}");
    }
    if !failed.is_empty() {
        anyhow::bail!("{} containers could not be removed", failed.len());
    }
    Ok(())
}

/// `system repair`, run before the engine is opened (its database may be
/// what is damaged): where the old database went, and what was rebuilt.
pub fn repair(ctx: &crate::Ctx) -> Result<()> {
    let (e, moved) = Engine::repair(super::engine_options(ctx)?)?;
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
    Ok(())
}

/// `system prune`: stopped containers, unused networks, dangling (with
/// `all`, unused) images, with `volumes` unused volumes, and the recovery
/// sweep's leftovers.
pub fn prune(ctx: &crate::Ctx, e: &Engine, all: bool, volumes: bool, force: bool) -> Result<()> {
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
    let (stopped, failed) = e.container_prune()?;
    for (name, err) in failed {
        eprintln!("Error: {name}: {err}");
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
