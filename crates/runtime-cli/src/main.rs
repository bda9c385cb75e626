//! berth-runtime: the OCI runtime's command line, flag for flag runc's, so
//! podman, containerd and CRI-O can drive it unchanged. It parses, calls
//! the runtime library and prints; nothing else lives here.

mod args;
mod log;

use std::io::{Read, Write};

use anyhow::{Context, Result, anyhow, bail};
use args::{Cli, Cmd, CreateArgs, ExecArgs, UpdateArgs, normalize_args};
use berth_runtime::{CreateOptions, ExecFlags, ExecOptions, Runtime, foreground};
use clap::Parser;

/// println! that ends the program quietly when stdout is closed
/// (`| head`) instead of panicking. SIGPIPE itself stays ignored: hooks that
/// do not read their stdin must not kill the runtime.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// `out!` without the newline (runc prints `state` without one).
fn out_raw(s: &str) {
    use std::io::Write;
    let mut o = std::io::stdout();
    if o.write_all(s.as_bytes()).and_then(|_| o.flush()).is_err() {
        std::process::exit(0);
    }
}

fn main() {
    // Commands that fork container processes first make sure those cannot
    // reach this binary for writing (see berth_runtime::selfexe).
    let spawns = std::env::args().any(|a| matches!(a.as_str(), "create" | "run" | "exec"));
    if spawns && let Err(e) = berth_runtime::selfexe::ensure_protected() {
        eprintln!("berth-runtime: {e}");
        std::process::exit(1);
    }
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
    out!("berth-runtime version {}", env!("CARGO_PKG_VERSION"));
    out!("spec: {}", berth_runtime::state::OCI_VERSION);
    out!("libseccomp: {libseccomp}");
}

fn run(cli: Cli) -> Result<i32> {
    if cli.version {
        print_version();
        return Ok(0);
    }
    let Some(cmd) = cli.cmd else {
        bail!("no command given; see --help");
    };
    let root = match &cli.root {
        Some(r) => std::path::absolute(r).context("--root")?,
        None => berth_base::rootless::runtime_root("berth-runtime", "/run/berth-runtime"),
    };
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
            out_raw(&serde_json::to_string_pretty(&st)?);
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
            out!("{}", String::from_utf8_lossy(&buf));
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
        pidfd_socket: a.pidfd_socket.clone(),
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
        // SAFETY: prctl with integer arguments only.
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
        .and_then(|_| {
            Ok(foreground::wait(
                &relay,
                created.pid,
                created.pty_master,
                true,
            )?)
        });
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
            out!("{}", st.id);
        }
        return Ok(0);
    }
    if format == "json" {
        out!(
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
        out!("{}", line.trim_end());
    }
    Ok(0)
}

fn ps(rt: &Runtime, id: &str, format: &str, args: &[String]) -> Result<i32> {
    let pids = rt.pids(id)?;
    if format == "json" {
        out!("{}", serde_json::to_string(&pids)?);
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
    out!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out!("{line}");
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
            stdio: None,
            pidfd_socket: a.pidfd_socket.clone(),
        },
    )?;
    match relay {
        None => Ok(0),
        Some(relay) => Ok(foreground::wait(
            &relay,
            execed.pid,
            execed.pty_master,
            true,
        )?),
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
