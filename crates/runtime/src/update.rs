//! Merging an update into the resources a container was created with, so
//! the saved config always says what is in force.

use oci_spec::runtime::LinuxResources;

/// Takes every field `new` sets and keeps the rest of `old`.
pub fn merge(mut old: LinuxResources, new: &LinuxResources) -> LinuxResources {
    if let Some(n) = new.memory() {
        let mut m = old.memory().unwrap_or_default();
        macro_rules! take {
            ($get:ident, $set:ident) => {
                if n.$get().is_some() {
                    m.$set(n.$get());
                }
            };
        }
        take!(limit, set_limit);
        take!(reservation, set_reservation);
        take!(swap, set_swap);
        take!(kernel_tcp, set_kernel_tcp);
        take!(swappiness, set_swappiness);
        take!(disable_oom_killer, set_disable_oom_killer);
        old.set_memory(Some(m));
    }
    if let Some(n) = new.cpu() {
        let mut c = old.cpu().clone().unwrap_or_default();
        macro_rules! take {
            ($get:ident, $set:ident) => {
                if n.$get().is_some() {
                    c.$set(n.$get().clone());
                }
            };
        }
        take!(shares, set_shares);
        take!(quota, set_quota);
        take!(burst, set_burst);
        take!(period, set_period);
        take!(realtime_runtime, set_realtime_runtime);
        take!(realtime_period, set_realtime_period);
        take!(cpus, set_cpus);
        take!(mems, set_mems);
        take!(idle, set_idle);
        old.set_cpu(Some(c));
    }
    if new.pids().is_some() {
        old.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        old.set_block_io(new.block_io().clone());
    }
    if new.hugepage_limits().is_some() {
        old.set_hugepage_limits(new.hugepage_limits().clone());
    }
    if new.network().is_some() {
        old.set_network(new.network().clone());
    }
    if new.rdma().is_some() {
        old.set_rdma(new.rdma().clone());
    }
    if let Some(u) = new.unified() {
        let mut all = old.unified().clone().unwrap_or_default();
        all.extend(u.clone());
        old.set_unified(Some(all));
    }
    old
}

/// `update`'s flags, as runc has them.
#[derive(Debug, Default, Clone)]
pub struct UpdateFlags {
    pub blkio_weight: Option<u16>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_share: Option<u64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpu_burst: Option<u64>,
    pub cpu_idle: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    pub memory_swap: Option<String>,
    pub pids_limit: Option<i64>,
}

impl UpdateFlags {
    pub fn to_resources(&self) -> crate::Result<LinuxResources> {
        use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids};
        let mut r = LinuxResources::default();
        let mem = |flag: &str, v: &Option<String>| -> crate::Result<Option<i64>> {
            v.as_deref()
                .map(|s| {
                    parse_bytes(s).ok_or_else(|| {
                        crate::Error::Other(format!(
                            "--{flag}: {s:?} is not a size (e.g. 512m, 1g, -1)"
                        ))
                    })
                })
                .transpose()
        };
        let limit = mem("memory", &self.memory)?;
        let reservation = mem("memory-reservation", &self.memory_reservation)?;
        let mut swap = mem("memory-swap", &self.memory_swap)?;
        if limit == Some(-1) && swap.is_none() {
            // Unlimited memory with a swap cap would make no sense.
            swap = Some(-1);
        }
        if limit.is_some() || reservation.is_some() || swap.is_some() {
            let mut m = LinuxMemory::default();
            m.set_limit(limit);
            m.set_reservation(reservation);
            m.set_swap(swap);
            r.set_memory(Some(m));
        }
        let cpu_set = self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpu_share.is_some()
            || self.cpu_rt_period.is_some()
            || self.cpu_rt_runtime.is_some()
            || self.cpu_burst.is_some()
            || self.cpu_idle.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some();
        if cpu_set {
            let mut c = LinuxCpu::default();
            c.set_period(self.cpu_period);
            c.set_quota(self.cpu_quota);
            c.set_shares(self.cpu_share);
            c.set_realtime_period(self.cpu_rt_period);
            c.set_realtime_runtime(self.cpu_rt_runtime);
            c.set_burst(self.cpu_burst);
            c.set_idle(self.cpu_idle);
            c.set_cpus(self.cpuset_cpus.clone());
            c.set_mems(self.cpuset_mems.clone());
            r.set_cpu(Some(c));
        }
        if let Some(w) = self.blkio_weight {
            if !(10..=1000).contains(&w) && w != 0 {
                return Err(crate::Error::Other(format!(
                    "--blkio-weight: {w} is outside 10..1000"
                )));
            }
            let mut b = LinuxBlockIo::default();
            b.set_weight(Some(w));
            r.set_block_io(Some(b));
        }
        if let Some(p) = self.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(p);
            r.set_pids(Some(pids));
        }
        Ok(r)
    }
}

/// Sizes as docker writes them: "1024", "512k", "512m", "1.5g", "2GB",
/// "-1" (no limit). Units are powers of 1024.
pub fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "-1" {
        return Some(-1);
    }
    let lower = s.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let value: f64 = num.parse().ok()?;
    let unit = unit.trim().trim_end_matches('b').trim_end_matches('i');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    let bytes = value * mult;
    (bytes.is_finite() && bytes >= 0.0 && bytes < i64::MAX as f64).then_some(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("1.5GB"), Some(3 << 29));
        assert_eq!(parse_bytes("2KiB"), Some(2048));
        assert_eq!(parse_bytes("-1"), Some(-1));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes("5q"), None);
    }

    #[test]
    fn merge_keeps_what_is_not_updated() {
        let old: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":100,"reservation":50},"pids":{"limit":10}}"#,
        )
        .unwrap();
        let new: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":200}}"#).unwrap();
        let m = merge(old, &new);
        assert_eq!(m.memory().unwrap().limit(), Some(200));
        assert_eq!(m.memory().unwrap().reservation(), Some(50));
        assert_eq!(m.pids().unwrap().limit(), 10);
    }
}
