//! What a running container is doing: `stats` (CPU, memory, pids), `top`
//! (its processes) and `port` (its published ports).

use std::time::Duration;

use anyhow::{Result, bail};
use berth_engine::Engine;
use berth_engine::model::{Container, Status};

use crate::format::{Format, print_rows};
use crate::human::{human_size, table};

/// `port`: CONTAINER_PORT/PROTO -> HOST_IP:HOST_PORT lines (the pod's,
/// for a container in one).
pub fn port(e: &Engine, key: &str) -> Result<()> {
    let c = e.container(key)?;
    let ports = match &c.config.pod {
        Some(p) => e.pod(p)?.ports,
        None => c.config.ports.clone(),
    };
    for p in ports {
        let ip = p
            .host_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        println!(
            "{}/{} -> {ip}:{}",
            p.container_port, p.protocol, p.host_port
        );
    }
    Ok(())
}

/// `top`: a table of the container's processes from /proc.
pub fn top(e: &Engine, key: &str) -> Result<()> {
    let c = e.container(key)?;
    if c.state.status != Status::Running && c.state.status != Status::Paused {
        bail!("container {} is not running", c.name);
    }
    let pids = e.handler(&c)?.pids(&c.id)?;
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

/// `stats`: CPU over half a second, memory and pids of the containers
/// named (of every running one if none is).
pub fn stats(e: &Engine, keys: &[String], format: &str) -> Result<()> {
    let format = Format::parse(format)?;
    let cs: Vec<Container> = if keys.is_empty() {
        e.containers()?
            .into_iter()
            .filter(|c| c.state.status == Status::Running)
            .collect()
    } else {
        keys.iter()
            .map(|k| Ok(e.container(k)?))
            .collect::<Result<_>>()?
    };
    let sample = |c: &Container| -> Result<serde_json::Value> { Ok(e.handler(c)?.stats(&c.id)?) };
    let first: Vec<serde_json::Value> = cs.iter().map(sample).collect::<Result<_>>()?;
    let t0 = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let mut rows = Vec::new();
    for (c, a) in cs.iter().zip(first) {
        let b = sample(c)?;
        let cpu = |v: &serde_json::Value| v["cpu"]["usage"]["total"].as_u64().unwrap_or(0);
        let pct = (cpu(&b).saturating_sub(cpu(&a))) as f64 / t0.elapsed().as_nanos() as f64 * 100.0;
        let used = b["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
        let limit = b["memory"]["usage"]["limit"].as_u64().unwrap_or(0);
        let host = host_memory();
        let limit = if limit == 0 || limit > host {
            host
        } else {
            limit
        };
        rows.push(serde_json::json!({
            "Container": berth_engine::ids::short(&c.id),
            "ID": c.id,
            "Name": c.name,
            "CPUPerc": format!("{pct:.2}%"),
            "MemUsage": format!("{} / {}", human_size(used), human_size(limit)),
            "MemPerc": format!("{:.2}%", used as f64 / limit.max(1) as f64 * 100.0),
            "PIDs": b["pids"]["current"].as_u64().unwrap_or(0).to_string(),
        }));
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Template(t) => print_rows(&t, &rows, &STATS_OPTIONS)?,
        Format::Table => {
            let text =
                |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
            let cells: Vec<[String; 6]> = rows
                .iter()
                .map(|r| {
                    [
                        "Container",
                        "Name",
                        "CPUPerc",
                        "MemUsage",
                        "MemPerc",
                        "PIDs",
                    ]
                    .map(|k| text(r, k))
                })
                .collect();
            table(
                &["ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"],
                &cells,
            );
        }
    }
    Ok(())
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
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(u64::MAX)
}
