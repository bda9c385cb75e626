//! Resource usage read from the container's cgroup, in the shape of runc's
//! `events --stats` data so tools written for runc can read it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{Cgroup, read};

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: BTreeMap<String, u64>,
    pub network_interfaces: Option<Vec<u64>>,
}

#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Default, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn num(dir: &Path, file: &str) -> u64 {
    read(dir, file)
        .ok()
        .and_then(|s| {
            if s == "max" {
                Some(u64::MAX)
            } else {
                s.parse().ok()
            }
        })
        .unwrap_or(0)
}

/// "key value" lines, as in memory.stat and cpu.stat.
fn kv(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

pub fn collect(cg: &Cgroup) -> Stats {
    let mut s = Stats::default();
    let v1 = |c: &str| cg.dir_of(c).filter(|d| !d.v2).map(|d| d.path.clone());
    let v2 = |c: &str| cg.dir_of(c).filter(|d| d.v2).map(|d| d.path.clone());

    if let Some(dir) = v1("cpuacct") {
        s.cpu.usage.total = num(&dir, "cpuacct.usage");
        s.cpu.usage.percpu = read(&dir, "cpuacct.usage_percpu")
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // cpuacct.stat counts USER_HZ ticks; runc reports nanoseconds.
        let ticks = kv(&dir, "cpuacct.stat");
        // SAFETY: sysconf takes an integer only.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        s.cpu.usage.user = ticks.get("user").copied().unwrap_or(0) * 1_000_000_000 / hz;
        s.cpu.usage.kernel = ticks.get("system").copied().unwrap_or(0) * 1_000_000_000 / hz;
    }
    if let Some(dir) = v1("cpu") {
        let t = kv(&dir, "cpu.stat");
        s.cpu.throttling.periods = t.get("nr_periods").copied().unwrap_or(0);
        s.cpu.throttling.throttled_periods = t.get("nr_throttled").copied().unwrap_or(0);
        s.cpu.throttling.throttled_time = t.get("throttled_time").copied().unwrap_or(0);
    }
    if let Some(dir) = cg
        .v2_dir()
        .map(|d| d.path.clone())
        .filter(|_| v1("cpuacct").is_none())
    {
        let t = kv(&dir, "cpu.stat");
        let us = |k: &str| t.get(k).copied().unwrap_or(0) * 1000;
        s.cpu.usage.total = us("usage_usec");
        s.cpu.usage.user = us("user_usec");
        s.cpu.usage.kernel = us("system_usec");
        s.cpu.throttling.periods = t.get("nr_periods").copied().unwrap_or(0);
        s.cpu.throttling.throttled_periods = t.get("nr_throttled").copied().unwrap_or(0);
        s.cpu.throttling.throttled_time = us("throttled_usec");
    }

    if let Some(dir) = v1("memory") {
        let entry = |prefix: &str| MemoryEntry {
            limit: num(&dir, &format!("{prefix}limit_in_bytes")),
            usage: num(&dir, &format!("{prefix}usage_in_bytes")),
            max: num(&dir, &format!("{prefix}max_usage_in_bytes")),
            failcnt: num(&dir, &format!("{prefix}failcnt")),
        };
        s.memory.usage = entry("memory.");
        s.memory.swap = entry("memory.memsw.");
        s.memory.kernel = entry("memory.kmem.");
        s.memory.kernel_tcp = entry("memory.kmem.tcp.");
        s.memory.raw = kv(&dir, "memory.stat");
        s.memory.cache = s.memory.raw.get("total_cache").copied().unwrap_or(0);
    } else if let Some(dir) = v2("memory") {
        let events = kv(&dir, "memory.events");
        s.memory.usage = MemoryEntry {
            limit: num(&dir, "memory.max"),
            usage: num(&dir, "memory.current"),
            max: num(&dir, "memory.peak"),
            failcnt: events.get("max").copied().unwrap_or(0),
        };
        // runc reports v2 swap as memory plus swap, as v1 counts it.
        s.memory.swap = MemoryEntry {
            limit: num(&dir, "memory.swap.max").saturating_add(s.memory.usage.limit),
            usage: num(&dir, "memory.swap.current") + s.memory.usage.usage,
            max: 0,
            failcnt: 0,
        };
        s.memory.raw = kv(&dir, "memory.stat");
        s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
    }

    if let Some(d) = cg.dir_of("pids") {
        s.pids.current = num(&d.path, "pids.current");
        s.pids.limit = num(&d.path, "pids.max");
    }

    if let Some(dir) = v1("blkio") {
        s.blkio.io_service_bytes_recursive =
            blkio_entries(&dir, "blkio.throttle.io_service_bytes_recursive");
        s.blkio.io_serviced_recursive = blkio_entries(&dir, "blkio.throttle.io_serviced_recursive");
    } else if let Some(dir) = v2("io") {
        let (bytes, ios) = io_stat(&dir);
        s.blkio.io_service_bytes_recursive = bytes;
        s.blkio.io_serviced_recursive = ios;
    }

    if let Some(d) = cg.dir_of("hugetlb") {
        for size in hugepage_sizes() {
            let h = if d.v2 {
                Hugetlb {
                    usage: num(&d.path, &format!("hugetlb.{size}.current")),
                    max: num(&d.path, &format!("hugetlb.{size}.max")),
                    failcnt: kv(&d.path, &format!("hugetlb.{size}.events"))
                        .get("max")
                        .copied()
                        .unwrap_or(0),
                }
            } else {
                Hugetlb {
                    usage: num(&d.path, &format!("hugetlb.{size}.usage_in_bytes")),
                    max: num(&d.path, &format!("hugetlb.{size}.max_usage_in_bytes")),
                    failcnt: num(&d.path, &format!("hugetlb.{size}.failcnt")),
                }
            };
            s.hugetlb.insert(size, h);
        }
    }
    s
}

/// v1 blkio files: "maj:min Op value" lines.
fn blkio_entries(dir: &Path, file: &str) -> Vec<BlkioEntry> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (major, minor) = f.next()?.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: f.next()?.to_string(),
                value: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// v2 io.stat: "maj:min rbytes=.. wbytes=.. rios=.. wios=.." lines.
fn io_stat(dir: &Path) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for line in read(dir, "io.stat").unwrap_or_default().lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let value = v.parse().unwrap_or(0);
            let entry = |op: &str| BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            };
            match k {
                "rbytes" => bytes.push(entry("Read")),
                "wbytes" => bytes.push(entry("Write")),
                "rios" => ios.push(entry("Read")),
                "wios" => ios.push(entry("Write")),
                _ => {}
            }
        }
    }
    (bytes, ios)
}

/// Huge page sizes of the host in the cgroup file naming ("2MB", "1GB").
pub fn hugepage_sizes() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            let kb: u64 = n
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            })
        })
        .collect();
    sizes.sort();
    sizes
}
