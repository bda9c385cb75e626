//! Which processes a runtime started and how much memory they hold.
//!
//! A runtime's processes are its daemon, what the daemon forked (shims,
//! monitors, even when they daemonize: they stay in the daemon's cgroup
//! unless they move themselves), and its pods' infra processes (pause).
//! They are found three ways, so a runtime the benchmark did not start is
//! covered too: the processes in the daemon's cgroup, the descendants of
//! the process listening on its socket, and every process in the pods'
//! cgroups (the benchmark names each pod's cgroup parent). The pods'
//! containers' own processes (the workload, the same for every runtime) are
//! set apart by their container IDs in their cgroup paths.

use std::collections::BTreeSet;
use std::path::Path;

use super::host::Hierarchy;

#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// Rss and Pss of one process (kernel threads and gone processes: none).
pub fn usage(pid: i32) -> Option<Usage> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |f: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(f))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    Some(Usage {
        rss_kib: field("Rss:"),
        pss_kib: field("Pss:"),
    })
}

/// The process listening on the unix socket at `path`: its inode from
/// /proc/net/unix, then the process holding that socket. When several do
/// (a fork that kept the descriptor), the one whose parent is not among
/// them.
pub fn listener_pid(path: &Path) -> Option<i32> {
    let want = path.to_str()?;
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    // Num RefCount Protocol Flags Type St Inode Path; St 01 is listening.
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 8 && f[7] == want && f[5] == "01").then(|| f[6].to_string())
    })?;
    let link = format!("socket:[{inode}]");
    let holders: Vec<i32> = all_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_dir(format!("/proc/{p}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == link.as_str())
                })
        })
        .collect();
    holders
        .iter()
        .copied()
        .find(|p| !ppid(*p).is_some_and(|pp| holders.contains(&pp)))
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

fn ppid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start
    // after the last ')'.
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `root` and every process below it by parent links.
fn descendants(root: i32) -> BTreeSet<i32> {
    let links: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, ppid(p)?)))
        .collect();
    let mut out = BTreeSet::from([root]);
    loop {
        let before = out.len();
        for (p, pp) in &links {
            if out.contains(pp) {
                out.insert(*p);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// What a runtime's processes hold at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The daemon alone.
    pub daemon: Usage,
    /// Every process the runtime started, the workload's excepted,
    /// the daemon included.
    pub runtime: Usage,
    /// How many processes that is, the daemon included.
    pub runtime_procs: usize,
    /// The pods' containers' own processes.
    pub workload_procs: usize,
}

/// Reads the memory of the runtime whose daemon is `daemon`, whose daemon
/// cgroup is `daemon_cg` (if the benchmark started it) and whose pods'
/// cgroups are below `pods_cg`; `containers` are the IDs of the workload
/// containers.
pub fn snapshot(
    h: &Hierarchy,
    daemon: Option<i32>,
    daemon_cg: Option<&str>,
    pods_cg: &str,
    containers: &[String],
) -> Snapshot {
    let mut pids: BTreeSet<i32> = BTreeSet::new();
    if let Some(cg) = daemon_cg {
        pids.extend(h.procs_under(cg));
    }
    if let Some(d) = daemon {
        pids.extend(descendants(d));
    }
    pids.extend(h.procs_under(pods_cg));
    let mut snap = Snapshot {
        daemon: daemon.and_then(usage).unwrap_or_default(),
        ..Default::default()
    };
    for p in pids {
        let workload = h
            .cgroup_of(p)
            .is_some_and(|cg| containers.iter().any(|id| cg.contains(id.as_str())));
        if workload {
            snap.workload_procs += 1;
            continue;
        }
        // Kernel threads have no smaps; nothing to count.
        if let Some(u) = usage(p) {
            snap.runtime.rss_kib += u.rss_kib;
            snap.runtime.pss_kib += u.pss_kib;
            snap.runtime_procs += 1;
        }
    }
    snap
}
