//! Resource files of the unified (v2) hierarchy, with the conversions from
//! the spec's v1-shaped values that runc uses.

use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{Cgroup, read, write};
use crate::error::{Error, Result};

/// The v2 directory, when `controller` is served by the unified hierarchy.
fn dir_for<'a>(cg: &'a Cgroup, controller: &str) -> Option<&'a Path> {
    cg.dir_of(controller)
        .filter(|d| d.v2)
        .map(|d| d.path.as_path())
}

pub fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    if let (Some(m), Some(dir)) = (r.memory(), dir_for(cg, "memory")) {
        memory(dir, m)?;
    }
    if let Some(c) = r.cpu() {
        if let Some(dir) = dir_for(cg, "cpu") {
            cpu(dir, c)?;
        }
        if let Some(dir) = dir_for(cg, "cpuset") {
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                write(dir, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                write(dir, "cpuset.mems", mems)?;
            }
        }
    }
    if let (Some(p), Some(dir)) = (r.pids(), dir_for(cg, "pids")) {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        write(dir, "pids.max", &v)?;
    }
    if let (Some(b), Some(dir)) = (r.block_io(), dir_for(cg, "io")) {
        io(dir, b)?;
    }
    if let Some(dir) = dir_for(cg, "hugetlb") {
        for h in r.hugepage_limits().iter().flatten() {
            let file = format!("hugetlb.{}.max", h.page_size());
            write(dir, &file, &max_or(h.limit()))?;
        }
    }
    if let Some(dir) = dir_for(cg, "rdma") {
        for (dev, limit) in r.rdma().iter().flatten() {
            write(dir, "rdma.max", &super::v1::rdma_line(dev, limit))?;
        }
    }
    if let Some(unified) = r.unified()
        && let Some(dir) = cg.v2_dir().map(|d| d.path.as_path())
    {
        for (key, value) in unified {
            unified_key(dir, key, value)?;
        }
    }
    Ok(())
}

/// -1 means no limit, written as "max".
fn max_or(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// The spec's cpu shares (2..262144) on v2's weight scale (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262144) - 2) * 9999 / 262142
}

/// The spec's blkio weight (10..1000) on v2's io.weight scale (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w.clamp(10, 1000)) - 10) * 9999 / 990
}

/// v1's swap limit counts memory plus swap; v2's counts swap alone.
pub fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>> {
    let field = "linux.resources.memory.swap";
    match (limit, swap) {
        (_, None) | (_, Some(0)) => Ok(None),
        (_, Some(-1)) => Ok(Some("max".into())),
        (None | Some(0) | Some(-1), Some(_)) => Err(Error::config(
            field,
            "a swap limit needs a memory limit on cgroup v2",
        )),
        (Some(l), Some(s)) if s < l => Err(Error::config(
            field,
            format!("{s} is below the memory limit {l}; it counts memory plus swap"),
        )),
        (Some(l), Some(s)) => Ok(Some((s - l).to_string())),
    }
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().filter(|v| *v != 0);
    if let Some(swap) = swap_max(limit, m.swap())? {
        write(dir, "memory.swap.max", &swap)?;
    }
    if let Some(l) = limit {
        write(dir, "memory.max", &max_or(l))?;
    }
    if let Some(r) = m.reservation().filter(|v| *v != 0) {
        write(dir, "memory.low", &max_or(r))?;
    }
    Ok(())
}

fn cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    let weight = c.shares().map(shares_to_weight).filter(|w| *w != 0);
    if let Some(w) = weight {
        write(dir, "cpu.weight", &w.to_string())?;
    }
    if c.quota().is_some() || c.period().is_some() {
        let quota = match c.quota() {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".into(),
        };
        let period = c.period().filter(|p| *p != 0).unwrap_or(100_000);
        write(dir, "cpu.max", &format!("{quota} {period}"))?;
    }
    if let Some(b) = c.burst() {
        write(dir, "cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        write(dir, "cpu.idle", &i.to_string())?;
    }
    if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
        return Err(Error::config(
            "linux.resources.cpu.realtimeRuntime",
            "realtime scheduling limits do not exist on cgroup v2",
        ));
    }
    Ok(())
}

fn io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(w) = b.weight().filter(|v| *v != 0) {
        if bfq {
            write(dir, "io.bfq.weight", &w.to_string())?;
        } else {
            write(
                dir,
                "io.weight",
                &format!("default {}", blkio_to_io_weight(w)),
            )?;
        }
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let (file, v) = if bfq {
                ("io.bfq.weight", u64::from(w))
            } else {
                ("io.weight", blkio_to_io_weight(w))
            };
            write(dir, file, &format!("{}:{} {v}", d.major(), d.minor()))?;
        }
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for d in list.iter().flatten() {
            let rate = if d.rate() == 0 {
                "max".into()
            } else {
                d.rate().to_string()
            };
            write(
                dir,
                "io.max",
                &format!("{}:{} {key}={rate}", d.major(), d.minor()),
            )?;
        }
    }
    Ok(())
}

/// A key of `linux.resources.unified` names a file in the container's own
/// cgroup directory, and nothing else.
fn unified_key(dir: &Path, key: &str, value: &str) -> Result<()> {
    let field = format!("linux.resources.unified.{key}");
    if key.is_empty() || key.contains('/') || key.starts_with('.') {
        return Err(Error::config(field, "is not a cgroup file name"));
    }
    if key.starts_with("cgroup.")
        && key != "cgroup.type"
        && key != "cgroup.max.depth"
        && key != "cgroup.max.descendants"
    {
        return Err(Error::config(
            field,
            "core cgroup files are the runtime's to write",
        ));
    }
    if !dir.join(key).exists() {
        let controller = key.split('.').next().unwrap_or(key);
        return Err(Error::config(
            field,
            format!("no such file: is the {controller} controller enabled?"),
        ));
    }
    write(dir, key, value)
}

/// Lets the container's directory use every controller its parent offers:
/// each ancestor must list them in cgroup.subtree_control.
pub fn enable_controllers(leaf: &Path, available: &[String]) {
    let mut chain: Vec<&Path> = leaf.ancestors().skip(1).collect();
    chain.reverse();
    for dir in chain {
        let Ok(ctrls) = read(dir, "cgroup.controllers") else {
            continue; // above the mount point
        };
        let enabled = read(dir, "cgroup.subtree_control").unwrap_or_default();
        let missing: Vec<&str> = ctrls
            .split_whitespace()
            .filter(|c| available.iter().any(|a| a == c))
            .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let all = missing
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        if write(dir, "cgroup.subtree_control", &all).is_err() {
            // One refusal (a controller busy with members, say) must not
            // cost the others.
            for c in missing {
                let _ = write(dir, "cgroup.subtree_control", &format!("+{c}"));
            }
        }
    }
}

pub fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = read(dir, "cgroup.events")?;
        if events.lines().any(|l| l == want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Cgroup(format!(
                "{}: freezing did not settle",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_like_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
        assert_eq!(blkio_to_io_weight(500), 4950);
    }

    #[test]
    fn swap_is_counted_apart_from_memory() {
        assert_eq!(
            swap_max(Some(100), Some(300)).unwrap().as_deref(),
            Some("200")
        );
        assert_eq!(
            swap_max(Some(100), Some(100)).unwrap().as_deref(),
            Some("0")
        );
        assert_eq!(
            swap_max(Some(100), Some(-1)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(swap_max(Some(100), None).unwrap(), None);
        assert!(swap_max(Some(100), Some(50)).is_err());
        assert!(swap_max(None, Some(50)).is_err());
    }
}
