//! berth-runtime: the OCI runtime's command line, flag for flag runc's, so
//! podman, containerd and CRI-O can drive it unchanged. It parses, calls
//! the runtime library and prints; nothing else lives here.

mod log;

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use berth_runtime::{CreateOptions, ExecFlags, ExecOptions, Runtime, foreground};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    about = "An OCI runtime (runtime-spec 1.2) with runc's command line",
    disable_version_flag = true
)]
struct Cli {
    /// Directory for container state (tmpfs recommended).
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log debug messages too.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd (transient scopes) for cgroups; cgroupsPath is then
    /// "slice:prefix:name".
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility; checkpointing is not supported.
    #[arg(long, hide = true)]
    criu: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    rootless: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Args, Clone)]
struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket to send the pty master to.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the container process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass this many fds after stdio (3, 4, ...) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Accepted for compatibility: passing the pidfd is not supported.
    #[arg(long = "pidfd-socket", hide = true)]
    pidfd_socket: Option<PathBuf>,
    container_id: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Run the process of a created container.
    Start { container_id: String },
    /// Create and start a container (in the foreground unless --detach).
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
        /// Do not become a subreaper for the container's orphans.
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
    },
    /// Print a container's state as JSON.
    State { container_id: String },
    /// List containers.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Send a signal (default SIGTERM) to the container's process.
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        container_id: String,
        signal: Option<String>,
    },
    /// Delete a container; --force kills it first if it still runs.
    Delete {
        #[arg(short, long)]
        force: bool,
        container_id: String,
    },
    /// List the container's processes.
    Ps {
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        container_id: String,
        /// Options for ps(1) (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Run a new process in a running container.
    Exec(Box<ExecArgs>),
    /// Freeze the container's processes.
    Pause { container_id: String },
    /// Thaw a paused container.
    Resume { container_id: String },
    /// Print resource usage and OOM events as JSON lines.
    Events {
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between stats events (e.g. 5s, 500ms).
        #[arg(long, default_value = "5s")]
        interval: String,
        container_id: String,
    },
    /// Change a running container's resource limits.
    Update(Box<UpdateArgs>),
    /// Print the runtime-spec features document.
    Features,
    /// Write a starting config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A config for an unprivileged user (user namespace, no netns).
        #[arg(long)]
        rootless: bool,
    },
}

#[derive(Args)]
struct ExecArgs {
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    #[arg(short, long = "env")]
    env: Vec<String>,
    #[arg(short, long)]
    tty: bool,
    /// uid[:gid]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// A process.json instead of the flags.
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "process-label")]
    process_label: Option<String>,
    #[arg(long)]
    apparmor: Option<String>,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(short, long = "cap")]
    cap: Vec<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Accepted for runc compatibility; the process joins the container's cgroup.
    #[arg(long, hide = true)]
    cgroup: Vec<String>,
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    #[arg(long = "no-subreaper", hide = true)]
    no_subreaper: bool,
    #[arg(long = "pidfd-socket", hide = true)]
    pidfd_socket: Option<PathBuf>,
    container_id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct UpdateArgs {
    /// LinuxResources JSON file ("-" for stdin); other flags are ignored.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpu-burst")]
    cpu_burst: Option<u64>,
    #[arg(long = "cpu-idle", allow_hyphen_values = true)]
    cpu_idle: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(short, long, allow_hyphen_values = true)]
    memory: Option<String>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Ignored, as in runc: kernel memory limits are gone from the kernel.
    #[arg(long = "kernel-memory", hide = true)]
    kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", hide = true)]
    kernel_memory_tcp: Option<String>,
    #[arg(long = "l3-cache-schema", hide = true)]
    l3_cache_schema: Option<String>,
    #[arg(long = "mem-bw-schema", hide = true)]
    mem_bw_schema: Option<String>,
    container_id: String,
}

/// Go's flag package, which runc's CLI uses, takes "-flag" like "--flag";
/// some callers (containerd's restore) rely on it.
fn normalize_args(args: impl Iterator<Item = String>) -> Vec<String> {
    const LONG: &[&str] = &[
        "root",
        "log",
        "log-format",
        "debug",
        "systemd-cgroup",
        "criu",
        "rootless",
        "bundle",
        "console-socket",
        "pid-file",
        "no-pivot",
        "no-new-keyring",
        "preserve-fds",
        "detach",
        "keep",
        "no-subreaper",
        "format",
        "quiet",
        "all",
        "force",
        "stats",
        "interval",
        "cwd",
        "env",
        "tty",
        "user",
        "additional-gids",
        "process",
        "process-label",
        "apparmor",
        "no-new-privs",
        "cap",
        "ignore-paused",
        "resources",
        "memory",
        "pids-limit",
        "version",
    ];
    let mut out = Vec::new();
    let mut rest = false;
    for a in args {
        if rest || a == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        if let Some(body) = a
            .strip_prefix('-')
            .filter(|b| !b.starts_with('-') && b.len() > 1)
        {
            let name = body.split('=').next().unwrap_or(body);
            if LONG.contains(&name) {
                out.push(format!("-{a}"));
                continue;
            }
        }
        out.push(a);
    }
    out
}

fn main() {
    let args = normalize_args(std::env::args());
    let cli = Cli::parse_from(&args);
    if let Err(e) = log::init(cli.log.as_deref(), cli.log_format == "json", cli.debug) {
        eprintln!("berth-runtime: open log file: {e}");
        std::process::exit(1);
    }
    log::debug(&format!("invoked as {args:?}"));
    let is_exec = matches!(cli.cmd, Some(Cmd::Exec(_)));
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            log::error(&format!("{e:#}"));
            // runc's exit code for a failed exec.
            std::process::exit(if is_exec { 255 } else { 1 });
        }
    }
}

fn print_version() {
    let libseccomp =
        berth_runtime::features::document()["annotations"]["io.github.seccomp.libseccomp.version"]
            .as_str()
            .unwrap_or("")
            .to_string();
    println!("berth-runtime version {}", env!("CARGO_PKG_VERSION"));
    println!("spec: {}", berth_runtime::state::OCI_VERSION);
    println!("libseccomp: {libseccomp}");
}

fn run(cli: Cli) -> Result<i32> {
    if cli.version {
        print_version();
        return Ok(0);
    }
    let Some(cmd) = cli.cmd else {
        bail!("no command given; see --help");
    };
    let root = std::path::absolute(&cli.root).context("--root")?;
    if root == std::path::Path::new("/") {
        bail!("--root must not be /");
    }
    let rt = Runtime::new(root, cli.systemd_cgroup);
    match cmd {
        Cmd::Create(a) => {
            rt.create(&a.container_id, &create_options(&a, false))?;
            Ok(0)
        }
        Cmd::Start { container_id } => {
            rt.start(&container_id)?;
            Ok(0)
        }
        Cmd::Run {
            create,
            detach,
            keep,
            no_subreaper,
        } => run_container(&rt, &create, detach, keep, no_subreaper),
        Cmd::State { container_id } => {
            let st = rt.state(&container_id)?;
            print!("{}", serde_json::to_string_pretty(&st)?);
            Ok(0)
        }
        Cmd::List { format, quiet } => list(&rt, &format, quiet),
        Cmd::Kill {
            all,
            container_id,
            signal,
        } => {
            let name = signal.as_deref().unwrap_or("SIGTERM");
            let sig = berth_runtime::signals::parse(name)
                .ok_or_else(|| anyhow!("unknown signal {name:?}"))?;
            rt.kill(&container_id, sig, all)?;
            Ok(0)
        }
        Cmd::Delete {
            force,
            container_id,
        } => {
            rt.delete(&container_id, force)?;
            Ok(0)
        }
        Cmd::Ps {
            format,
            container_id,
            ps_args,
        } => ps(&rt, &container_id, &format, &ps_args),
        Cmd::Exec(a) => exec(&rt, *a),
        Cmd::Pause { container_id } => {
            rt.pause(&container_id)?;
            Ok(0)
        }
        Cmd::Resume { container_id } => {
            rt.resume(&container_id)?;
            Ok(0)
        }
        Cmd::Events {
            stats,
            interval,
            container_id,
        } => {
            let interval = humantime::parse_duration(&interval)
                .map_err(|e| anyhow!("--interval {interval:?}: {e}"))?;
            if interval.is_zero() {
                bail!("--interval must be greater than 0");
            }
            let mut out = std::io::stdout();
            rt.events(&container_id, interval, stats, &mut |line| {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            })?;
            Ok(0)
        }
        Cmd::Update(a) => update(&rt, &a),
        Cmd::Features => {
            let doc = berth_runtime::features::document();
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&doc, &mut ser)?;
            println!("{}", String::from_utf8_lossy(&buf));
            Ok(0)
        }
        Cmd::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let host_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
            let doc = berth_runtime::template::spec(rootless, host_v2);
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&doc, &mut ser)?;
            std::fs::write(&path, buf).with_context(|| format!("write {}", path.display()))?;
            Ok(0)
        }
    }
}

fn create_options(a: &CreateArgs, want_pty: bool) -> CreateOptions {
    CreateOptions {
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        want_pty,
    }
}

fn run_container(
    rt: &Runtime,
    a: &CreateArgs,
    detach: bool,
    keep: bool,
    no_subreaper: bool,
) -> Result<i32> {
    if detach {
        rt.create(&a.container_id, &create_options(a, false))?;
        if let Err(e) = rt.start(&a.container_id) {
            let _ = rt.delete(&a.container_id, true);
            return Err(e.into());
        }
        return Ok(0);
    }
    if !no_subreaper {
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    let relay = foreground::SignalRelay::new()?;
    let created = rt.create(
        &a.container_id,
        &create_options(a, a.console_socket.is_none()),
    )?;
    let result = rt
        .start(&a.container_id)
        .map_err(anyhow::Error::from)
        .and_then(|_| Ok(foreground::wait(&relay, created.pid, created.pty_master)?));
    if !keep && let Err(e) = rt.delete(&a.container_id, true) {
        log::error(&format!("delete {}: {e}", a.container_id));
    }
    result
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> Result<i32> {
    let entries = rt.list()?;
    let mut ok = Vec::new();
    for (st, r) in entries {
        match r {
            Ok(()) => ok.push(st),
            Err(e) => log::error(&format!("load container {}: {e}", st.id)),
        }
    }
    if quiet {
        for st in &ok {
            println!("{}", st.id);
        }
        return Ok(0);
    }
    if format == "json" {
        println!(
            "{}",
            if ok.is_empty() {
                "null".into()
            } else {
                serde_json::to_string(&ok)?
            }
        );
        return Ok(0);
    }
    let rows: Vec<[String; 6]> = ok
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.pid.to_string(),
                s.status.clone(),
                s.bundle.clone(),
                s.created.clone(),
                s.owner.clone(),
            ]
        })
        .collect();
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(rows.iter()) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len()).max(12 - 3);
        }
    }
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
            if i == 5 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}", width = w + 3));
            }
        }
        println!("{}", line.trim_end());
    }
    Ok(0)
}

fn ps(rt: &Runtime, id: &str, format: &str, args: &[String]) -> Result<i32> {
    let pids = rt.pids(id)?;
    if format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow!("couldn't find PID field in ps output"))?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}

fn exec(rt: &Runtime, a: ExecArgs) -> Result<i32> {
    let process = match &a.process {
        Some(path) => {
            let raw = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            berth_runtime::config::parse::<berth_runtime::config::Process>(&raw, "process.json")?
        }
        None => rt.exec_process(
            &a.container_id,
            &ExecFlags {
                args: a.command.clone(),
                cwd: a.cwd.clone(),
                env: a.env.clone(),
                tty: a.tty,
                user: a.user.clone(),
                additional_gids: a.additional_gids.clone(),
                caps: a.cap.clone(),
                no_new_privs: a.no_new_privs,
                apparmor: a.apparmor.clone(),
                process_label: a.process_label.clone(),
            },
        )?,
    };
    let terminal = process.terminal() == Some(true);
    if terminal && a.detach && a.console_socket.is_none() {
        bail!("cannot allocate tty if berth-runtime will detach without setting console socket");
    }
    let relay = if a.detach {
        None
    } else {
        Some(foreground::SignalRelay::new()?)
    };
    let execed = rt.exec(
        &a.container_id,
        &ExecOptions {
            process,
            console_socket: a.console_socket.clone(),
            pid_file: a.pid_file.clone(),
            preserve_fds: a.preserve_fds,
            want_pty: !a.detach && a.console_socket.is_none(),
            ignore_paused: a.ignore_paused,
        },
    )?;
    match relay {
        None => Ok(0),
        Some(relay) => Ok(foreground::wait(&relay, execed.pid, execed.pty_master)?),
    }
}

fn update(rt: &Runtime, a: &UpdateArgs) -> Result<i32> {
    let resources = match &a.resources {
        Some(path) => {
            let mut raw = Vec::new();
            if path.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_end(&mut raw)
                    .context("read resources from stdin")?;
            } else {
                raw = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            }
            berth_runtime::config::parse::<berth_runtime::config::LinuxResources>(
                &raw,
                "resources",
            )?
        }
        None => {
            if a.kernel_memory.is_some() || a.kernel_memory_tcp.is_some() {
                log::error(
                    "--kernel-memory and --kernel-memory-tcp are ignored: the kernel dropped those limits",
                );
            }
            if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
                bail!("Intel RDT is not supported");
            }
            berth_runtime::update::UpdateFlags {
                blkio_weight: a.blkio_weight,
                cpu_period: a.cpu_period,
                cpu_quota: a.cpu_quota,
                cpu_share: a.cpu_share,
                cpu_rt_period: a.cpu_rt_period,
                cpu_rt_runtime: a.cpu_rt_runtime,
                cpu_burst: a.cpu_burst,
                cpu_idle: a.cpu_idle,
                cpuset_cpus: a.cpuset_cpus.clone(),
                cpuset_mems: a.cpuset_mems.clone(),
                memory: a.memory.clone(),
                memory_reservation: a.memory_reservation.clone(),
                memory_swap: a.memory_swap.clone(),
                pids_limit: a.pids_limit,
            }
            .to_resources()?
        }
    };
    rt.update(&a.container_id, &resources)?;
    Ok(0)
}
