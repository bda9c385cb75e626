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

/// The container commands: each is both `berth X` and, as docker's and
/// podman's are, `berth container X`, so a command added here is both.
#[derive(Subcommand)]
pub enum Verb {
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
        /// Containers to start, by name or ID.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: their stop signal, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's
        /// --stop-timeout, else 10).
        #[arg(short, long)]
        time: Option<u64>,
        /// Containers to stop, by name or ID.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers, then start them again.
    Restart {
        /// Seconds to wait before SIGKILL (default: the container's
        /// --stop-timeout, else 10).
        #[arg(short, long)]
        time: Option<u64>,
        /// Containers to restart, by name or ID.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        /// The signal, by name (HUP, SIGTERM) or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Containers to signal, by name or ID.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Remove running containers too (killed).
        #[arg(short, long)]
        force: bool,
        /// Containers to remove, by name or ID.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps(listing::PsFlags),
    /// Show containers' (or, for a name no container has, images') records
    /// as JSON.
    Inspect {
        /// A Go template over each record: '{{.State.Status}}'.
        #[arg(short, long)]
        format: Option<String>,
        /// Containers or images to show, by name or ID.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to exit; print their exit codes.
    Wait {
        /// Containers to wait for, by name or ID.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Freeze every process of containers.
    Pause {
        /// Containers to pause, by name or ID.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        /// Containers to unpause, by name or ID.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Give a container a new name.
    Rename {
        /// The container, by name or ID.
        container: String,
        /// Its new name.
        name: String,
    },
    /// Run a command in a running container.
    Exec {
        #[command(flatten)]
        flags: ExecFlags,
    },
    /// Attach this terminal to a running container.
    Attach {
        /// Keys that detach, leaving the container running.
        #[arg(long, default_value = crate::attach::DEFAULT_DETACH_KEYS)]
        detach_keys: String,
        /// The container, by name or ID.
        container: String,
    },
    /// Show a container's output.
    Logs {
        /// Keep printing new output until the container exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Only since a time (RFC 3339) or a duration ago (10m).
        #[arg(long)]
        since: Option<String>,
        /// Only until a time (RFC 3339) or a duration ago (10m).
        #[arg(long)]
        until: Option<String>,
        /// Prefix each line with the time it was written.
        #[arg(short, long)]
        timestamps: bool,
        /// The container, by name or ID.
        container: String,
    },
    /// Copy files between a container and the host: CONTAINER:PATH HOSTPATH
    /// or HOSTPATH CONTAINER:PATH.
    Cp {
        /// CONTAINER:PATH, a host path, or - (a tar stream on stdin).
        src: String,
        /// CONTAINER:PATH, a host path, or - (a tar stream on stdout).
        dest: String,
    },
    /// A container's published ports.
    Port {
        /// The container, by name or ID.
        container: String,
        /// Only this container port: PORT[/tcp|udp].
        port: Option<String>,
    },
    /// A container's processes.
    Top {
        /// The container, by name or ID.
        container: String,
        /// ps(1) options (`-eo pid,user,args`): the host's ps, its rows
        /// kept to the container's processes, as docker's top.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_options: Vec<String>,
    },
    /// Resource usage (once: --no-stream is the only mode).
    Stats {
        /// Print once and exit (default: redraw every second until
        /// interrupted).
        #[arg(long)]
        no_stream: bool,
        /// table, json, or a Go template: '{{.Name}} {{.CPUPerc}}'.
        #[arg(long, default_value = "table")]
        format: String,
        /// Containers to show (default: every running one).
        containers: Vec<String>,
    },
    /// Make an image of a container's image and its changes; prints its ID.
    Commit(crate::commit::CommitArgs),
    /// Write a container's filesystem as a tar stream.
    Export {
        /// Where: a file (replaced whole), a FIFO or device (written to),
        /// `-` for stdout (the default).
        #[arg(short, long, default_value = "-")]
        output: PathBuf,
        /// The container, by name or ID.
        container: String,
    },
    /// Show what a container changed in its filesystem (A, C, D lines).
    Diff {
        /// The container, by name or ID.
        container: String,
    },
}

/// The commands of this module: the container commands, and the groups
/// (volumes, networks, pods, system) and events.
#[derive(Subcommand)]
pub enum Cmd {
    #[command(flatten)]
    Verb(Box<Verb>),
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
    /// Lifecycle events: past ones (--since) and, as they happen, new ones.
    Events(crate::events::Args),
    /// This host and store: kernel, cgroups, runtimes, counts, registries.
    Info {
        /// json, or a Go template: '{{.Host.CgroupVersion}}' (default: text).
        #[arg(short, long)]
        format: Option<String>,
    },
    /// berth's version, this host's platform and kernel.
    Version {
        /// json, or a Go template: '{{.Version}}' (default: text).
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Healthchecks (run by each container's monitor on its own timer).
    Healthcheck {
        #[command(subcommand)]
        cmd: HealthcheckCmd,
    },
    /// System-wide upkeep.
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
}

#[derive(Subcommand)]
pub enum HealthcheckCmd {
    /// Run a container's healthcheck once, now: prints healthy (exit 0)
    /// or unhealthy (exit 1) with the check's output.
    Run {
        /// The container, by name or ID.
        container: String,
    },
}

#[derive(Subcommand)]
pub enum ContainerCmd {
    /// List containers (`berth ps`).
    #[command(alias = "list")]
    Ls(listing::PsFlags),
    #[command(flatten)]
    Verb(Box<Verb>),
    /// Remove every stopped container (asks first; -f does not).
    Prune {
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
    /// Release a stopped container's resources (the monitor runs this).
    #[command(hide = true)]
    Cleanup { container: String },
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
    if let Cmd::Version { format } = &cmd {
        let v = serde_json::to_value(berth_engine::info::version())?;
        print_record(format.as_deref(), &v)?;
        return Ok(0);
    }
    let e = engine(ctx)?;
    match cmd {
        Cmd::Verb(v)
        | Cmd::Container {
            cmd: ContainerCmd::Verb(v),
        } => return verb(ctx, &e, *v),
        Cmd::Container {
            cmd: ContainerCmd::Ls(a),
        } => return verb(ctx, &e, Verb::Ps(a)),
        Cmd::Container {
            cmd: ContainerCmd::Cleanup { container },
        } => e.cleanup(&container)?,
        Cmd::Container {
            cmd: ContainerCmd::Prune { force },
        } => system::container_prune(&e, force)?,
        Cmd::Volume { cmd } => volumes::run(&e, cmd)?,
        Cmd::Network { cmd } => networks::run(&e, cmd)?,
        Cmd::Pod { cmd } => pods::run(&e, cmd)?,
        Cmd::Events(a) => crate::events::run(&e, a)?,
        Cmd::Info { format } => {
            let info = e.info(ctx.conf.search_registries())?;
            print_record(format.as_deref(), &serde_json::to_value(info)?)?;
        }
        Cmd::Version { format } => unreachable!("answered before the engine is opened: {format:?}"),
        Cmd::Healthcheck {
            cmd: HealthcheckCmd::Run { container },
        } => {
            let (healthy, output) = e.healthcheck_run(&container)?;
            print!("{output}");
            println!("{}", if healthy { "healthy" } else { "unhealthy" });
            return Ok(if healthy { 0 } else { 1 });
        }
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
        Cmd::System {
            cmd: SystemCmd::Df { format },
        } => system::df(&e, &format)?,
    }
    Ok(0)
}

/// Runs a container command, given as `berth X` or `berth container X`.
fn verb(ctx: &crate::Ctx, e: &Engine, v: Verb) -> Result<i32> {
    match v {
        Verb::Exec { flags } => return run::exec(e, flags),
        Verb::Run { detach, flags } => return run::run(ctx, e, detach, &flags),
        Verb::Attach {
            container,
            detach_keys,
        } => return run::attach(e, &container, &detach_keys),
        Verb::Logs {
            follow,
            tail,
            since,
            until,
            timestamps,
            container,
        } => logs::logs(
            e,
            &container,
            follow,
            tail,
            since.as_deref(),
            until.as_deref(),
            timestamps,
        )?,
        Verb::Create { flags } => run::create(ctx, e, &flags)?,
        Verb::Start { containers } => lifecycle::start(e, &containers)?,
        Verb::Stop { time, containers } => lifecycle::stop(e, time, &containers)?,
        Verb::Restart { time, containers } => lifecycle::restart(e, time, &containers)?,
        Verb::Kill { signal, containers } => lifecycle::kill(e, &signal, &containers)?,
        Verb::Rm { force, containers } => lifecycle::rm(e, force, &containers)?,
        Verb::Ps(flags) => listing::ps(ctx, e, &flags)?,
        Verb::Inspect { containers, format } => {
            listing::inspect(ctx, e, &containers, format.as_deref())?
        }
        Verb::Wait { containers } => lifecycle::wait(e, &containers)?,
        Verb::Pause { containers } => lifecycle::pause(e, &containers)?,
        Verb::Unpause { containers } => lifecycle::unpause(e, &containers)?,
        Verb::Rename { container, name } => {
            e.rename(&container, &name)?;
        }
        Verb::Port { container, port } => stats::port(e, &container, port.as_deref())?,
        Verb::Cp { src, dest } => cp::cp(e, &src, &dest)?,
        Verb::Top {
            container,
            ps_options,
        } => stats::top(e, &container, &ps_options)?,
        Verb::Stats {
            no_stream,
            format,
            containers,
        } => stats::stats(e, &containers, !no_stream, &format)?,
        Verb::Commit(a) => crate::commit::commit(e, a)?,
        Verb::Export { output, container } => cp::export(e, &container, &output)?,
        Verb::Diff { container } => crate::commit::diff(e, &container)?,
    }
    Ok(0)
}

/// One record (info, version): `Key: value` lines, nested ones indented
/// (podman's text), JSON, or a template.
fn print_record(format: Option<&str>, v: &serde_json::Value) -> Result<()> {
    match format {
        None => {
            let mut out = String::new();
            text_lines(v, 0, &mut out);
            print!("{out}");
            Ok(())
        }
        Some("json") => {
            println!("{}", serde_json::to_string_pretty(v)?);
            Ok(())
        }
        Some(_) => crate::format::print_inspect(format, std::slice::from_ref(v)),
    }
}

fn text_lines(v: &serde_json::Value, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match x {
                    serde_json::Value::Object(_) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        text_lines(x, depth + 1, out);
                    }
                    serde_json::Value::Array(items) => {
                        let items: Vec<String> = items
                            .iter()
                            .map(|i| i.as_str().map_or_else(|| i.to_string(), String::from))
                            .collect();
                        out.push_str(&format!("{pad}{k}: [{}]\n", items.join(", ")));
                    }
                    serde_json::Value::String(s) => out.push_str(&format!("{pad}{k}: {s}\n")),
                    other => out.push_str(&format!("{pad}{k}: {other}\n")),
                }
            }
        }
        other => out.push_str(&format!("{pad}{other}\n")),
    }
}
