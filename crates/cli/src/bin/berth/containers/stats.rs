//! What a running container is doing: `stats` (CPU, memory, pids), `top`
//! (its processes) and `port` (its published ports).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_engine::Engine;
use berth_engine::model::{Container, Status};

use crate::format::{Format, print_rows};
use crate::human::{human_size, table};

/// `port`: CONTAINER_PORT/PROTO -> HOST_IP:HOST_PORT lines (the pod's,
/// for a container in one).
pub fn port(e: &Engine, key: &str, only: Option<&str>) -> Result<()> {
    let c = e.container(key)?;
    let ports = match &c.config.pod {
        Some(p) => e.pod(p)?.ports,
        None => c.config.ports.clone(),
    };
    // docker's `port CTR 80[/tcp]`: that one, host side only.
    let wanted = match only {
        None => None,
        Some(o) => {
            let (num, proto) = o.split_once('/').unwrap_or((o, "tcp"));
            let num: u16 = num
                .parse()
                .with_context(|| format!("{o}: expected PORT[/tcp|udp]"))?;
            Some((num, proto.to_string()))
        }
    };
    let mut found = false;
    for p in ports {
        let ip = p
            .host_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        match &wanted {
            None => println!(
                "{}/{} -> {ip}:{}",
                p.container_port, p.protocol, p.host_port
            ),
            Some((n, proto)) if *n == p.container_port && *proto == p.protocol.to_string() => {
                found = true;
                println!("{ip}:{}", p.host_port);
            }
            Some(_) => {}
        }
    }
    if let (Some(o), false) = (only, found) {
        bail!("no public port {o} published for {}", c.name);
    }
    Ok(())
}

/// `top`: a table of the container's processes from /proc.
pub fn top(e: &Engine, key: &str, ps_options: &[String]) -> Result<()> {
    let c = e.container(key)?;
    if c.state.status != Status::Running && c.state.status != Status::Paused {
        bail!("container {} is not running", c.name);
    }
    let pids = e.handler(&c)?.pids(&c.id)?;
    if !ps_options.is_empty() {
        return top_with_ps(&pids, ps_options);
    }
    let rows: Vec<[String; 4]> = pids
        .iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let uid = status
                .lines()
                .find(|l| l.starts_with("Uid:"))?
                .split_whitespace()
                .nth(1)?
                .to_string();
            let after = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            // SAFETY: sysconf takes an integer only.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            let secs = ticks / hz;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .trim()
                .to_string();
            Some([
                pid.to_string(),
                uid,
                format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
                cmd,
            ])
        })
        .collect();
    table(&["PID", "USER", "TIME", "COMMAND"], &rows);
    Ok(())
}

/// `top CTR OPTIONS`: the host's ps with those options, its header and
/// the rows of the container's processes (found by the PID column, which
/// the options must show).
fn top_with_ps(pids: &[i32], options: &[String]) -> Result<()> {
    let out = std::process::Command::new("ps")
        .args(options)
        .stdin(std::process::Stdio::null())
        .output()
        .context("run ps (procps)")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            options.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(col) = header.split_whitespace().position(|h| h == "PID") else {
        bail!(
            "ps {}: the options must show the PID column",
            options.join(" ")
        );
    };
    println!("{header}");
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{l}");
        }
    }
    Ok(())
}

/// `stats`: CPU, memory, network and block I/O and pids of the containers
/// named (of every running one if none is): once, or redrawn every second
/// (docker's default) until interrupted.
pub fn stats(e: &Engine, keys: &[String], stream: bool, format: &str) -> Result<()> {
    let format = Format::parse(format)?;
    let pick = || -> Result<Vec<Container>> {
        Ok(if keys.is_empty() {
            e.containers()?
                .into_iter()
                .filter(|c| c.state.status == Status::Running)
                .collect()
        } else {
            keys.iter()
                .map(|k| Ok(e.container(k)?))
                .collect::<Result<_>>()?
        })
    };
    let sample = |c: &Container| -> Result<Sample> {
        Ok(Sample {
            cgroup: e.handler(c)?.stats(&c.id)?,
            net: net_bytes(c.state.pid),
            at: std::time::Instant::now(),
        })
    };
    let mut cs = pick()?;
    let mut before: Vec<Sample> = cs.iter().map(sample).collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_millis(500));
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let now: Vec<Sample> = cs.iter().map(sample).collect::<Result<_>>()?;
        let rows: Vec<serde_json::Value> = cs
            .iter()
            .zip(before.iter().zip(&now))
            .map(|(c, (a, b))| row(c, a, b))
            .collect();
        if stream && tty {
            // Home and clear, as docker's redraw.
            print!("\x1b[H\x1b[2J");
        }
        print_stats(&format, &rows)?;
        if !stream {
            return Ok(());
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        std::thread::sleep(Duration::from_secs(1));
        if keys.is_empty() {
            // Containers come and go while it streams.
            let fresh = pick()?;
            before = fresh
                .iter()
                .map(|c| match cs.iter().position(|o| o.id == c.id) {
                    Some(i) => Ok(now[i].clone()),
                    None => sample(c),
                })
                .collect::<Result<_>>()?;
            cs = fresh;
        } else {
            before = now;
        }
    }
}

#[derive(Clone)]
struct Sample {
    cgroup: serde_json::Value,
    /// Received and sent bytes of the container's network namespace.
    net: (u64, u64),
    at: std::time::Instant,
}

/// One container's row, under docker's template field names.
fn row(c: &Container, a: &Sample, b: &Sample) -> serde_json::Value {
    let cpu = |v: &serde_json::Value| v["cpu"]["usage"]["total"].as_u64().unwrap_or(0);
    let span = b.at.duration_since(a.at).as_nanos().max(1) as f64;
    let pct = cpu(&b.cgroup).saturating_sub(cpu(&a.cgroup)) as f64 / span * 100.0;
    let used = b.cgroup["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    let limit = b.cgroup["memory"]["usage"]["limit"].as_u64().unwrap_or(0);
    let host = host_memory();
    let limit = if limit == 0 || limit > host {
        host
    } else {
        limit
    };
    let (read, write) = block_bytes(&b.cgroup);
    serde_json::json!({
        "Container": berth_engine::ids::short(&c.id),
        "ID": c.id,
        "Name": c.name,
        "CPUPerc": format!("{pct:.2}%"),
        "MemUsage": format!("{} / {}", human_size(used), human_size(limit)),
        "MemPerc": format!("{:.2}%", used as f64 / limit.max(1) as f64 * 100.0),
        "NetIO": format!("{} / {}", human_size(b.net.0), human_size(b.net.1)),
        "BlockIO": format!("{} / {}", human_size(read), human_size(write)),
        "PIDs": b.cgroup["pids"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

fn print_stats(format: &Format, rows: &[serde_json::Value]) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        Format::Template(t) => print_rows(t, rows, &STATS_OPTIONS)?,
        Format::Table => {
            const KEYS: [&str; 8] = [
                "Container",
                "Name",
                "CPUPerc",
                "MemUsage",
                "MemPerc",
                "NetIO",
                "BlockIO",
                "PIDs",
            ];
            let cells: Vec<[String; 8]> = rows
                .iter()
                .map(|r| KEYS.map(|k| r[k].as_str().unwrap_or_default().to_string()))
                .collect();
            table(
                &[
                    "CONTAINER ID",
                    "NAME",
                    "CPU %",
                    "MEM USAGE / LIMIT",
                    "MEM %",
                    "NET I/O",
                    "BLOCK I/O",
                    "PIDS",
                ],
                &cells,
            );
        }
    }
    Ok(())
}

/// Bytes received and sent on every interface but lo of the network
/// namespace `pid` is in (zeros when it is gone).
fn net_bytes(pid: i32) -> (u64, u64) {
    if pid <= 0 {
        return (0, 0);
    }
    let Ok(dev) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return (0, 0);
    };
    dev.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((*f.first()?, *f.get(8)?))
        })
        .fold((0, 0), |(r, t), (a, b)| (r + a, t + b))
}

/// Bytes read and written by the container's cgroup, from its blkio (or
/// io) counters.
fn block_bytes(stats: &serde_json::Value) -> (u64, u64) {
    let mut out = (0, 0);
    for e in stats["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let v = e["value"].as_u64().unwrap_or(0);
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => out.0 += v,
            Some("write") => out.1 += v,
            _ => {}
        }
    }
    out
}

/// docker stats' column names (its StatsContext headers). Network and
/// block I/O are not measured yet, so NetIO and BlockIO are absent.
const STATS_OPTIONS: berth_template::Options = berth_template::Options {
    methods: &[],
    headers: &[
        ("Container", "CONTAINER"),
        ("ID", "CONTAINER ID"),
        ("CPUPerc", "CPU %"),
        ("MemUsage", "MEM USAGE / LIMIT"),
        ("MemPerc", "MEM %"),
        ("PIDs", "PIDS"),
    ],
};

/// MemTotal in bytes (u64::MAX if /proc/meminfo cannot say).
fn host_memory() -> u64 {
    match berth_engine::info::mem_total() {
        0 => u64::MAX,
        n => n,
    }
}
