//! Resource files of the v1 controllers. Each setter writes only when the
//! controller is mounted as v1; the unified hierarchy is v2.rs's business.

use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{Cgroup, read, write};
use crate::error::{Error, Result};

/// The v1 directory of `controller`; `None` when the unified hierarchy
/// hosts it (or its v2 successor, `v2_name`), which v2.rs writes; an error
/// when no hierarchy does.
fn need<'a>(cg: &'a Cgroup, controller: &str, what: &str) -> Result<Option<&'a Path>> {
    let v2_name = match controller {
        "blkio" => "io",
        "cpuacct" => "cpu",
        other => other,
    };
    match cg.dir_of(controller) {
        Some(d) if !d.v2 => return Ok(Some(d.path.as_path())),
        Some(_) => return Ok(None),
        None => {}
    }
    if cg.dir_of(v2_name).is_some_and(|d| d.v2) {
        return Ok(None);
    }
    Err(Error::Cgroup(format!(
        "{what} needs the {controller} controller, which is not available"
    )))
}

pub fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory()
        && let Some(dir) = need(cg, "memory", "linux.resources.memory")?
    {
        memory(dir, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(cg, c)?;
    }
    if let Some(p) = r.pids()
        && let Some(dir) = need(cg, "pids", "linux.resources.pids")?
    {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        write(dir, "pids.max", &v)?;
    }
    if let Some(b) = r.block_io()
        && let Some(dir) = need(cg, "blkio", "linux.resources.blockIO")?
    {
        blkio(dir, b)?;
    }
    for h in r.hugepage_limits().iter().flatten() {
        if let Some(dir) = need(cg, "hugetlb", "linux.resources.hugepageLimits")? {
            let file = format!("hugetlb.{}.limit_in_bytes", h.page_size());
            write(dir, &file, &h.limit().to_string())?;
        }
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id()
            && let Some(dir) = need(cg, "net_cls", "linux.resources.network.classID")?
        {
            write(dir, "net_cls.classid", &id.to_string())?;
        }
        for p in n.priorities().iter().flatten() {
            if let Some(dir) = need(cg, "net_prio", "linux.resources.network.priorities")? {
                write(
                    dir,
                    "net_prio.ifpriomap",
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
    }
    for (dev, limit) in r.rdma().iter().flatten() {
        if let Some(dir) = need(cg, "rdma", "linux.resources.rdma")? {
            write(dir, "rdma.max", &rdma_line(dev, limit))?;
        }
    }
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) && cg.v2_dir().is_none() {
        return Err(Error::config(
            "linux.resources.unified",
            "needs cgroup v2, and this host has only v1",
        ));
    }
    Ok(())
}

pub(super) fn rdma_line(dev: &str, l: &oci_spec::runtime::LinuxRdma) -> String {
    let mut line = dev.to_string();
    if let Some(h) = l.hca_handles() {
        line.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = l.hca_objects() {
        line.push_str(&format!(" hca_object={o}"));
    }
    line
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().filter(|v| *v != 0);
    let swap = m.swap().filter(|v| *v != 0);
    // memsw must stay >= limit at every step, so the order of the two
    // writes depends on whether the limits rise or fall.
    match (limit, swap) {
        (Some(l), Some(s)) => {
            let memsw = "memory.memsw.limit_in_bytes";
            if !dir.join(memsw).exists() {
                return Err(Error::Cgroup(
                    "linux.resources.memory.swap: swap accounting is not enabled on this host"
                        .into(),
                ));
            }
            let current: i64 = read(dir, memsw)?.parse().unwrap_or(i64::MAX);
            if s == -1 || s > current {
                write(dir, memsw, &s.to_string())?;
                write(dir, "memory.limit_in_bytes", &l.to_string())?;
            } else {
                write(dir, "memory.limit_in_bytes", &l.to_string())?;
                write(dir, memsw, &s.to_string())?;
            }
        }
        (Some(l), None) => write(dir, "memory.limit_in_bytes", &l.to_string())?,
        (None, Some(s)) => write(dir, "memory.memsw.limit_in_bytes", &s.to_string())?,
        (None, None) => {}
    }
    if let Some(r) = m.reservation().filter(|v| *v != 0) {
        write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(Error::config(
                "linux.resources.memory.swappiness",
                format!("{s} is above 100"),
            ));
        }
        write(dir, "memory.swappiness", &s.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        write(dir, "memory.oom_control", "1")?;
    }
    if let Some(t) = m.kernel_tcp().filter(|v| *v != 0) {
        write(dir, "memory.kmem.tcp.limit_in_bytes", &t.to_string())?;
    }
    Ok(())
}

fn cpu(cg: &Cgroup, c: &LinuxCpu) -> Result<()> {
    let wants_cpu = c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.realtime_runtime().is_some()
        || c.realtime_period().is_some()
        || c.burst().is_some()
        || c.idle().is_some();
    if wants_cpu && let Some(dir) = need(cg, "cpu", "linux.resources.cpu")? {
        if let Some(s) = c.shares().filter(|v| *v != 0) {
            write(dir, "cpu.shares", &s.to_string())?;
        }
        if let Some(p) = c.period().filter(|v| *v != 0) {
            write(dir, "cpu.cfs_period_us", &p.to_string())?;
        }
        if let Some(q) = c.quota().filter(|v| *v != 0) {
            write(dir, "cpu.cfs_quota_us", &q.to_string())?;
        }
        if let Some(b) = c.burst() {
            write(dir, "cpu.cfs_burst_us", &b.to_string())?;
        }
        if let Some(p) = c.realtime_period().filter(|v| *v != 0) {
            write(dir, "cpu.rt_period_us", &p.to_string())?;
        }
        if let Some(r) = c.realtime_runtime().filter(|v| *v != 0) {
            write(dir, "cpu.rt_runtime_us", &r.to_string())?;
        }
        if let Some(i) = c.idle() {
            write(dir, "cpu.idle", &i.to_string())?;
        }
    }
    if (c.cpus().is_some() || c.mems().is_some())
        && let Some(dir) = need(cg, "cpuset", "linux.resources.cpu.cpus")?
    {
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write(dir, "cpuset.mems", mems)?;
        }
    }
    Ok(())
}

fn blkio(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // Kernels with the BFQ scheduler but no CFQ expose only bfq files.
    let bfq = !dir.join("blkio.weight").exists() && dir.join("blkio.bfq.weight").exists();
    let prefix = if bfq { "blkio.bfq." } else { "blkio." };
    if let Some(w) = b.weight().filter(|v| *v != 0) {
        write(dir, &format!("{prefix}weight"), &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|v| *v != 0) {
        write(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let file = format!("{prefix}weight_device");
            write(dir, &file, &format!("{}:{} {w}", d.major(), d.minor()))?;
        }
        if let Some(w) = d.leaf_weight() {
            write(
                dir,
                "blkio.leaf_weight_device",
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (file, list) in throttles {
        for d in list.iter().flatten() {
            write(
                dir,
                file,
                &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

/// A new v1 cpuset cgroup starts with no cpus and no mems, and no task can
/// join it until both are set: inherit them from the parent.
pub fn init_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    if parent.join("cpuset.cpus").exists() && read(parent, "cpuset.cpus")?.is_empty() {
        init_cpuset(parent)?;
    }
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read(dir, file)?.is_empty() {
            write(dir, file, &read(parent, file)?)?;
        }
    }
    Ok(())
}

pub fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    write(dir, "freezer.state", want)?;
    // FREEZING means some tasks are still running: wait for the kernel.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = read(dir, "freezer.state")?;
        if state == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Cgroup(format!("freezer stuck in {state}")));
        }
        if frozen {
            // Re-writing FROZEN nudges tasks that were forking.
            write(dir, "freezer.state", want)?;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
