//! The container commands (`berth run`, `ps`, `rm`, volumes, networks,
//! pods, ...): their declaration, the engine they use, and the dispatch
//! of each to the module that handles it.

pub(crate) mod batch;
mod cp;
mod flags;
mod lifecycle;
mod listing;
mod logs;
mod networks;
mod pods;
mod run;
mod stats;
mod system;
mod volumes;

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_engine::Engine;
use clap::Subcommand;

use flags::{CreateFlags, ExecFlags};
use networks::NetworkCmd;
use pods::PodCmd;
use system::SystemCmd;
use volumes::VolumeCmd;

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a container from an image and start it.
    Run {
        /// Run in the background and print the container's ID.
        #[arg(short, long)]
        detach: bool,
        #[command(flatten)]
        flags: CreateFlags,
    },
    /// Create a container from an image, without starting it.
    Create {
        #[command(flatten)]
        flags: CreateFlags,
    },
    /// Start containers.
    Start {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: their stop signal, then SIGKILL after the timeout.
    Stop {
        #[arg(short, long)]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps(listing::PsFlags),
    /// Show containers' records as JSON.
    Inspect {
        /// A Go template over each record: '{{.State.Status}}'.
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to exit; print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    Rename {
        container: String,
        name: String,
    },
    /// Run a command in a running container.
    Exec {
        #[command(flatten)]
        flags: ExecFlags,
    },
    /// Container management.
    Container {
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// Named volumes.
    Volume {
        #[command(subcommand)]
        cmd: VolumeCmd,
    },
    /// Networks (CNI bridges).
    Network {
        #[command(subcommand)]
        cmd: NetworkCmd,
    },
    /// Pods: containers sharing network, ipc and uts namespaces.
    Pod {
        #[command(subcommand)]
        cmd: PodCmd,
    },
    /// Attach this terminal to a running container.
    Attach {
        container: String,
    },
    /// Show a container's output.
    Logs {
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Only since a time (RFC 3339) or a duration ago (10m).
        #[arg(long)]
        since: Option<String>,
        #[arg(short, long)]
        timestamps: bool,
        container: String,
    },
    /// Copy files between a container and the host: CONTAINER:PATH HOSTPATH
    /// or HOSTPATH CONTAINER:PATH.
    Cp {
        src: String,
        dest: String,
    },
    /// A container's published ports.
    Port {
        container: String,
    },
    /// A container's processes.
    Top {
        container: String,
    },
    /// Lifecycle events: past ones (--since) and, as they happen, new ones.
    Events(crate::events::Args),
    /// System-wide upkeep.
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
    /// Resource usage (once: --no-stream is the only mode).
    Stats {
        #[arg(long)]
        no_stream: bool,
        /// table, json, or a Go template: '{{.Name}} {{.CPUPerc}}'.
        #[arg(long, default_value = "table")]
        format: String,
        containers: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum ContainerCmd {
    /// Release a stopped container's resources (the monitor runs this).
    #[command(hide = true)]
    Cleanup { container: String },
    /// List containers (as `ps`).
    #[command(alias = "list", alias = "ps")]
    Ls(listing::PsFlags),
}

/// The engine, on the roots the global flags name.
pub(crate) fn engine(ctx: &crate::Ctx) -> Result<Engine> {
    Ok(Engine::open(engine_options(ctx)?)?)
}

/// Where the engine keeps its state, and the berth-monitor it starts
/// ($BERTH_MONITOR, else beside this binary, else /usr/local/bin).
fn engine_options(ctx: &crate::Ctx) -> Result<berth_engine::Options> {
    let me = std::env::current_exe().context("find the berth binary")?;
    let monitor = std::env::var_os("BERTH_MONITOR")
        .map(PathBuf::from)
        .or_else(|| {
            let sibling = me.with_file_name("berth-monitor");
            sibling.is_file().then_some(sibling)
        })
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/berth-monitor"));
    Ok(berth_engine::Options {
        paths: berth_base::paths::HostPaths::with_roots(&ctx.root, &ctx.runroot),
        monitor,
        berth: me,
        exit_command: true,
    })
}

/// Runs the command; returns the exit code for the process.
pub fn run(ctx: &crate::Ctx, cmd: Cmd) -> Result<i32> {
    if let Cmd::Pod {
        cmd:
            PodCmd::Infra {
                hostname,
                netns,
                share_pid,
                host_ipc,
            },
    } = &cmd
    {
        // Holds namespaces and nothing else: no store, no database.
        berth_engine::pods::infra_main(&berth_engine::pods::Infra {
            netns: netns.as_deref(),
            hostname,
            share_pid: *share_pid,
            host_ipc: *host_ipc,
        })?;
        return Ok(0);
    }
    if let Cmd::System {
        cmd: SystemCmd::Repair,
    } = &cmd
    {
        system::repair(ctx)?;
        return Ok(0);
    }
    let e = engine(ctx)?;
    match cmd {
        Cmd::Exec { flags } => return run::exec(&e, flags),
        Cmd::Run { detach, flags } => return run::run(ctx, &e, detach, &flags),
        Cmd::Attach { container } => return run::attach(&e, &container),
        Cmd::Logs {
            follow,
            tail,
            since,
            timestamps,
            container,
        } => logs::logs(&e, &container, follow, tail, since.as_deref(), timestamps)?,
        Cmd::Create { flags } => run::create(ctx, &e, &flags)?,
        Cmd::Start { containers } => lifecycle::start(&e, &containers)?,
        Cmd::Stop { time, containers } => lifecycle::stop(&e, time, &containers)?,
        Cmd::Kill { signal, containers } => lifecycle::kill(&e, &signal, &containers)?,
        Cmd::Rm { force, containers } => lifecycle::rm(&e, force, &containers)?,
        Cmd::Ps(flags)
        | Cmd::Container {
            cmd: ContainerCmd::Ls(flags),
        } => listing::ps(&e, &flags)?,
        Cmd::Inspect { containers, format } => {
            listing::inspect(&e, &containers, format.as_deref())?
        }
        Cmd::Wait { containers } => lifecycle::wait(&e, &containers)?,
        Cmd::Pause { containers } => lifecycle::pause(&e, &containers)?,
        Cmd::Unpause { containers } => lifecycle::unpause(&e, &containers)?,
        Cmd::Rename { container, name } => {
            e.rename(&container, &name)?;
        }
        Cmd::Container {
            cmd: ContainerCmd::Cleanup { container },
        } => e.cleanup(&container)?,
        Cmd::Volume { cmd } => volumes::run(&e, cmd)?,
        Cmd::Network { cmd } => networks::run(&e, cmd)?,
        Cmd::Pod { cmd } => pods::run(&e, cmd)?,
        Cmd::Port { container } => stats::port(&e, &container)?,
        Cmd::Cp { src, dest } => cp::cp(&e, &src, &dest)?,
        Cmd::Top { container } => stats::top(&e, &container)?,
        Cmd::Events(a) => crate::events::run(&e, a)?,
        Cmd::System {
            cmd:
                SystemCmd::Prune {
                    all,
                    volumes,
                    force,
                },
        } => system::prune(ctx, &e, all, volumes, force)?,
        Cmd::System {
            cmd: SystemCmd::Repair,
        } => unreachable!("handled before the engine is opened"),
        Cmd::Stats {
            no_stream: _,
            format,
            containers,
        } => stats::stats(&e, &containers, &format)?,
    }
    Ok(0)
}
