//! Container and pod statistics as CRI reports them, from the runtime's
//! cgroup figures (runc's `events --stats` shape), the container's
//! writable layer and the pod's network namespace.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;

use crate::api;
use crate::time;

/// One reading of a container's cgroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub at: i64,
    pub cpu_ns: u64,
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub swap_usage: u64,
    pub pids: u64,
}

/// From the runtime's stats. Working set is usage less inactive file
/// pages, as kubelet computes it for eviction.
pub fn sample(v: &Value) -> Sample {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let raw = |k: &str| n(&format!("/memory/raw/total_{k}")).max(n(&format!("/memory/raw/{k}")));
    let usage = n("/memory/usage/usage");
    let inactive = raw("inactive_file");
    Sample {
        at: time::now(),
        cpu_ns: n("/cpu/usage/total"),
        memory_usage: usage,
        memory_limit: n("/memory/usage/limit"),
        working_set: usage.saturating_sub(inactive),
        rss: raw("rss").max(raw("anon")),
        page_faults: raw("pgfault"),
        major_page_faults: raw("pgmajfault"),
        swap_usage: n("/memory/swap/usage").saturating_sub(usage),
        pids: n("/pids/current"),
    }
}

fn u(v: u64) -> Option<api::UInt64Value> {
    Some(api::UInt64Value { value: v })
}

/// Remembers each container's last CPU reading, for the rate CRI reports
/// as nano-cores (kubelet asks every few seconds).
#[derive(Default)]
pub struct CpuRates {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuRates {
    pub fn nano_cores(&self, id: &str, s: &Sample) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let before = last.insert(id.to_string(), (s.at, s.cpu_ns));
        let (t0, c0) = before?;
        let dt = s.at.checked_sub(t0).filter(|d| *d > 0)? as u128;
        let dc = s.cpu_ns.checked_sub(c0)? as u128;
        Some((dc * 1_000_000_000 / dt).min(u64::MAX as u128) as u64)
    }

    /// Forgets containers that are gone.
    pub fn retain(&self, live: &dyn Fn(&str) -> bool) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.retain(|id, _| live(id));
    }
}

pub fn cpu(s: &Sample, nano_cores: Option<u64>) -> api::CpuUsage {
    api::CpuUsage {
        timestamp: s.at,
        usage_core_nano_seconds: u(s.cpu_ns),
        usage_nano_cores: nano_cores.and_then(u),
    }
}

pub fn memory(s: &Sample) -> api::MemoryUsage {
    // A limit of "unlimited" reads as a huge number: no available bytes then.
    let available = (s.memory_limit > 0 && s.memory_limit < (1 << 62))
        .then(|| s.memory_limit.saturating_sub(s.working_set));
    api::MemoryUsage {
        timestamp: s.at,
        working_set_bytes: u(s.working_set),
        available_bytes: available.and_then(u),
        usage_bytes: u(s.memory_usage),
        rss_bytes: u(s.rss),
        page_faults: u(s.page_faults),
        major_page_faults: u(s.major_page_faults),
    }
}

pub fn swap(s: &Sample) -> api::SwapUsage {
    api::SwapUsage {
        timestamp: s.at,
        swap_available_bytes: None,
        swap_usage_bytes: u(s.swap_usage),
    }
}

pub use berth_base::fs::disk_usage;

pub fn writable_layer(dir: &Path) -> api::FilesystemUsage {
    let (bytes, inodes) = disk_usage(dir);
    api::FilesystemUsage {
        timestamp: time::now(),
        fs_id: Some(api::FilesystemIdentifier {
            mountpoint: dir.to_string_lossy().into_owned(),
        }),
        used_bytes: u(bytes),
        inodes_used: u(inodes),
    }
}

/// The interfaces of a network namespace, from its /proc/net/dev (read by
/// a thread that joined it).
pub fn network(netns: &Path) -> Option<api::NetworkUsage> {
    let text = berth_engine::berth_network::netns::run_in(netns, || {
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })
    .ok()?
    .ok()?;
    let interfaces = parse_net_dev(&text);
    Some(api::NetworkUsage {
        timestamp: time::now(),
        default_interface: interfaces.iter().find(|i| i.name == "eth0").cloned(),
        interfaces,
    })
}

fn parse_net_dev(text: &str) -> Vec<api::NetworkInterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            (f.len() >= 11).then(|| api::NetworkInterfaceUsage {
                name: name.to_string(),
                rx_bytes: u(f[0]),
                rx_errors: u(f[2]),
                tx_bytes: u(f[8]),
                tx_errors: u(f[10]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_set_leaves_out_inactive_file_pages() {
        let v = serde_json::json!({
            "cpu": {"usage": {"total": 5000}},
            "memory": {"usage": {"usage": 1000, "limit": 4000},
                       "raw": {"total_inactive_file": 300, "total_rss": 600}},
            "pids": {"current": 3}
        });
        let s = sample(&v);
        assert_eq!(
            (s.working_set, s.rss, s.pids, s.cpu_ns),
            (700, 600, 3, 5000)
        );
        assert_eq!(memory(&s).available_bytes.unwrap().value, 3300);
    }

    #[test]
    fn nano_cores_come_from_two_readings() {
        let r = CpuRates::default();
        let a = Sample {
            at: 1_000_000_000,
            cpu_ns: 0,
            ..Default::default()
        };
        assert_eq!(r.nano_cores("c", &a), None);
        let b = Sample {
            at: 2_000_000_000,
            cpu_ns: 500_000_000,
            ..Default::default()
        };
        assert_eq!(r.nano_cores("c", &b), Some(500_000_000));
    }

    #[test]
    fn net_dev_parses() {
        let t = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n  eth0: 100 2 1 0 0 0 0 0 200 3 0 4 0 0 0 0\n";
        let v = parse_net_dev(t);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "eth0");
        assert_eq!(v[0].rx_bytes.as_ref().unwrap().value, 100);
        assert_eq!(v[0].tx_bytes.as_ref().unwrap().value, 200);
        assert_eq!(v[0].rx_errors.as_ref().unwrap().value, 1);
    }
}
