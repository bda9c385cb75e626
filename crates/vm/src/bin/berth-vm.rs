//! berth-vm: runc's command line for containers that each run in a VM of
//! their own. It parses, calls berth_vm::host::ops and prints.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use berth_vm::host::ops::{self, Vm};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth-vm",
    about = "A runc-compatible runtime that runs each container in its own QEMU VM"
)]
struct Cli {
    /// Directory for container state (default /run/berth-vm).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// The guest kernel's directory (Debian's linux-image, unpacked);
    /// default $BERTH_VM_KERNEL or /usr/local/lib/berth-vm/kernel.
    #[arg(long, global = true)]
    kernel: Option<PathBuf>,
    /// The static guest agent; default $BERTH_VM_AGENT or
    /// /usr/local/lib/berth-vm/berth-vm-agent.
    #[arg(long, global = true)]
    agent: Option<PathBuf>,
    /// Keep this many VMs booted ahead of their containers: `create`
    /// takes one that fits and boots a replacement in the background
    /// (default $BERTH_VM_WARM or 0).
    #[arg(long, global = true)]
    warm: Option<usize>,
    /// Log file (runc's flag; messages go to stderr as well).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, hide = true)]
    log_format: Option<String>,
    #[arg(long, global = true, hide = true)]
    debug: bool,
    /// Accepted for runc compatibility: the guest has no systemd.
    #[arg(long = "systemd-cgroup", global = true, hide = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot the container's VM and create the container in it.
    Create {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "no-pivot", hide = true)]
        no_pivot: bool,
        #[arg(long = "no-new-keyring", hide = true)]
        no_new_keyring: bool,
        container_id: String,
    },
    /// Run the process of a created container.
    Start {
        container_id: String,
    },
    /// The container's state, as runc prints it.
    State {
        container_id: String,
    },
    /// Send a signal to the container's process (or all its processes).
    Kill {
        #[arg(short, long)]
        all: bool,
        container_id: String,
        signal: Option<String>,
    },
    /// End the container's VM and forget it.
    Delete {
        #[arg(short, long)]
        force: bool,
        container_id: String,
    },
    /// Run a process in the container.
    Exec {
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(short, long)]
        detach: bool,
        #[arg(short, long)]
        tty: bool,
        container_id: String,
        command: Vec<String>,
    },
    /// The host processes standing for the container (its keeper).
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        container_id: String,
    },
    /// The container's resource usage (`--stats`: once).
    Events {
        #[arg(long)]
        stats: bool,
        #[arg(long, default_value = "5s")]
        interval: String,
        container_id: String,
    },
    Pause {
        container_id: String,
    },
    Resume {
        container_id: String,
    },
    /// New limits for the container's cgroup in the guest.
    Update {
        #[arg(short, long)]
        resources: Option<PathBuf>,
        container_id: String,
    },
    /// The containers under --root.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// What this runtime supports, as runc's `features` says it.
    Features,
    /// Boot spare VMs until --warm of them are ready; with --warm 0, end
    /// every spare nobody has claimed.
    Warm,
}

fn main() {
    let cli = Cli::parse();
    let is_exec = matches!(cli.cmd, Cmd::Exec { .. });
    if let Err(e) = run(cli) {
        eprintln!("berth-vm: {e:#}");
        std::process::exit(if is_exec { 255 } else { 1 });
    }
}

fn print(s: &str) {
    let mut o = std::io::stdout();
    let _ = o.write_all(s.as_bytes()).and_then(|_| o.flush());
}

fn run(cli: Cli) -> Result<()> {
    let vm = Vm {
        root: cli
            .root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/berth-vm")),
        kernel: cli.kernel.clone(),
        agent: cli.agent.clone(),
        warm: match cli.warm {
            Some(n) => n,
            None => match std::env::var("BERTH_VM_WARM") {
                Ok(v) => v.parse().context("BERTH_VM_WARM: a number of VMs")?,
                Err(_) => 0,
            },
        },
    };
    match cli.cmd {
        Cmd::Create {
            bundle,
            console_socket,
            pid_file,
            container_id,
            ..
        } => vm.create(
            &container_id,
            &bundle,
            pid_file.as_deref(),
            console_socket.as_deref(),
        ),
        Cmd::Start { container_id } => vm.start(&container_id),
        Cmd::Warm if vm.warm == 0 => vm.drain_pool(),
        Cmd::Warm => vm.fill_pool(true),
        Cmd::State { container_id } => {
            print(&serde_json::to_string_pretty(&vm.state(&container_id)?)?);
            Ok(())
        }
        Cmd::Kill {
            all,
            container_id,
            signal,
        } => {
            let name = signal.as_deref().unwrap_or("SIGTERM");
            let sig = berth_runtime::signals::parse(name)
                .ok_or_else(|| anyhow!("unknown signal {name:?}"))?;
            vm.kill(&container_id, sig, all)
        }
        Cmd::Delete {
            force,
            container_id,
        } => vm.delete(&container_id, force),
        Cmd::Exec {
            process,
            console_socket,
            pid_file,
            detach,
            tty,
            container_id,
            command,
        } => {
            let process = process_of(process.as_deref(), command, tty)?;
            vm.exec(
                &container_id,
                process,
                console_socket.as_deref(),
                pid_file.as_deref(),
                detach,
            )
        }
        Cmd::Ps {
            format,
            container_id,
        } => {
            let pids = vm.ps(&container_id)?;
            if format == "json" {
                print(&serde_json::to_string(&pids)?);
            } else {
                print(&format!(
                    "PID\n{}",
                    pids.iter().map(|p| format!("{p}\n")).collect::<String>()
                ));
            }
            Ok(())
        }
        Cmd::Events { container_id, .. } => {
            print(&format!(
                "{}\n",
                serde_json::to_string(&vm.stats(&container_id)?)?
            ));
            Ok(())
        }
        Cmd::Pause { container_id } => vm.pause(&container_id),
        Cmd::Resume { container_id } => vm.resume(&container_id),
        Cmd::Update {
            resources,
            container_id,
        } => vm.update(&container_id, resources_of(resources.as_deref())?),
        Cmd::List { format, quiet } => {
            print(&list_text(&vm.list()?, &format, quiet)?);
            Ok(())
        }
        Cmd::Features => {
            print(&serde_json::to_string_pretty(&ops::features())?);
            Ok(())
        }
    }
}

/// The process `exec` runs: runc's --process file, or a command line.
fn process_of(
    file: Option<&std::path::Path>,
    command: Vec<String>,
    tty: bool,
) -> Result<serde_json::Value> {
    Ok(match file {
        Some(p) => {
            let raw = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
            serde_json::from_slice(&raw).with_context(|| format!("{}", p.display()))?
        }
        None if !command.is_empty() => serde_json::json!({
            "args": command, "cwd": "/", "terminal": tty,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "user": {"uid": 0, "gid": 0}
        }),
        None => anyhow::bail!("exec needs --process or a command"),
    })
}

/// `update`'s resources: a file, or stdin for `-`.
fn resources_of(path: Option<&std::path::Path>) -> Result<serde_json::Value> {
    let raw = match path {
        None => anyhow::bail!("update needs --resources (a file, or - for stdin)"),
        Some(p) if p.as_os_str() == "-" => {
            let mut raw = Vec::new();
            std::io::stdin().read_to_end(&mut raw)?;
            raw
        }
        Some(p) => std::fs::read(p).with_context(|| format!("read {}", p.display()))?,
    };
    serde_json::from_slice(&raw).context("--resources")
}

/// `list` as runc prints it: JSON, ids only, or a table.
fn list_text(all: &[serde_json::Value], format: &str, quiet: bool) -> Result<String> {
    if format == "json" {
        return Ok(serde_json::to_string(all)?);
    }
    let field = |s: &serde_json::Value, k: &str| s[k].as_str().unwrap_or("").to_string();
    if quiet {
        return Ok(all
            .iter()
            .map(|s| format!("{}\n", field(s, "id")))
            .collect());
    }
    let mut out = String::from("ID\tPID\tSTATUS\tBUNDLE\n");
    for s in all {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            field(s, "id"),
            s["pid"],
            field(s, "status"),
            field(s, "bundle")
        ));
    }
    Ok(out)
}
