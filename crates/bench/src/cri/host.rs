//! What the benchmark sets up on the host and takes down again: its cgroup
//! subtree (to find every process a runtime started), the CNI network
//! configuration every runtime gets, the bridge the plugins make, mounts
//! under its directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

/// The benchmark's cgroup subtree, in every hierarchy: each runtime's
/// daemon runs in `<CGROUP>/<name>/daemon` and is asked to put each pod
/// under `/<CGROUP>/<name>/<pod>`.
pub const CGROUP: &str = "berth-bench-cri";

/// The bridge of the pod network. One name per host: an earlier run's
/// bridge is ours to delete.
pub const BRIDGE: &str = "bbcri0";

/// Debian's CNI plugins (containernetworking-plugins).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The hierarchy processes are tracked in: the pids controller on cgroup
/// v1 (and hybrid) hosts, the unified hierarchy on v2 ones.
pub struct Hierarchy {
    pub mount: PathBuf,
    /// The controller's name in /proc/PID/cgroup; empty for v2 ("0::").
    pub controller: &'static str,
}

pub fn hierarchy() -> Hierarchy {
    if Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() {
        Hierarchy {
            mount: "/sys/fs/cgroup/pids".into(),
            controller: "pids",
        }
    } else {
        Hierarchy {
            mount: "/sys/fs/cgroup".into(),
            controller: "",
        }
    }
}

impl Hierarchy {
    /// The cgroup of `pid` in this hierarchy, as a path from its root.
    pub fn cgroup_of(&self, pid: i32) -> Option<String> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        s.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            let hit = if self.controller.is_empty() {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == self.controller)
            };
            hit.then(|| path.to_string())
        })
    }

    /// Every process in the cgroup at `rel` (from the hierarchy's root) and
    /// its descendants' cgroups.
    pub fn procs_under(&self, rel: &str) -> Vec<i32> {
        let mut out = Vec::new();
        let mut stack = vec![self.mount.join(rel.trim_start_matches('/'))];
        while let Some(dir) = stack.pop() {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out
    }
}

/// Creates the cgroup a daemon is started in; returns its cgroup.procs.
pub fn daemon_cgroup(target: &str) -> Result<PathBuf> {
    let dir = hierarchy().mount.join(CGROUP).join(target).join("daemon");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir.join("cgroup.procs"))
}

/// Kills every process left in the benchmark's cgroups (a runtime's
/// daemon, its shims or monitors, its pods' processes), then removes the
/// cgroups in every hierarchy. After a clean run there is nothing to kill:
/// this is for runs that failed or were interrupted, and for the leftovers
/// of one killed outright.
pub fn sweep_cgroups(sub: &str) {
    let h = hierarchy();
    let rel = format!("{CGROUP}/{sub}");
    let t0 = Instant::now();
    loop {
        let pids = h.procs_under(&rel);
        if pids.is_empty() || t0.elapsed() > Duration::from_secs(10) {
            break;
        }
        for p in pids {
            // SAFETY: kill(2) takes plain integers.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        rmdir_tree(&e.path().join(&rel));
    }
    // A v2 host has the subtree at the top.
    rmdir_tree(&Path::new("/sys/fs/cgroup").join(&rel));
}

/// Removes a cgroup directory and the ones below it, deepest first
/// (cgroup directories go with rmdir(2), not unlink of their files).
fn rmdir_tree(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Unmounts everything under `dir` (netns pins, overlay roots, shm of
/// sandboxes) and removes it.
pub fn remove_dir(dir: &Path) {
    crate::pull::clean(dir);
}

pub fn delete_bridge() {
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        let _ = Command::new("ip")
            .args(["link", "del", BRIDGE])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The CNI configuration every runtime gets, in `cni/net.d` under `base`:
/// a bridge with host-local IPAM (its data under `cni/ipam`), the bridge
/// carrying the gateway address so the host reaches the pods directly. No
/// masquerading and no portmap: the plugins add no iptables rules.
/// Returns the configuration directory.
pub fn write_cni(base: &Path, subnet: &str) -> Result<PathBuf> {
    // Routes that cover the subnet (but the default one) or lie in it:
    // pods there would not be reachable, or would hide the host's hosts.
    let mut taken: Vec<String> = Vec::new();
    for how in ["match", "root"] {
        let out = Command::new("ip")
            .args(["-4", "route", "show", how, subnet])
            .output()?;
        taken.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.starts_with("default"))
                .map(String::from),
        );
    }
    if !taken.is_empty() {
        bail!(
            "the pod subnet {subnet} is already routed on this host ({}); pick another with --subnet",
            taken.join("; ")
        );
    }
    let conf_dir = base.join("cni/net.d");
    std::fs::create_dir_all(&conf_dir)?;
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "berth-bench-cri",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "dataDir": base.join("cni/ipam"),
                "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            }
        }]
    });
    std::fs::write(
        conf_dir.join("10-berth-bench.conflist"),
        serde_json::to_vec_pretty(&list)?,
    )?;
    Ok(conf_dir)
}
