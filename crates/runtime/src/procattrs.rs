//! Per-process kernel attributes from the spec: personality, I/O priority,
//! scheduler, CPU affinity and NUMA memory policy.

use std::io;

use oci_spec::runtime::{
    IOPriorityClass, LinuxMemoryPolicy, LinuxPersonality, LinuxPersonalityDomain,
    LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType, MemoryPolicyModeType, Process,
    Scheduler,
};

use crate::error::{Error, Result};

fn last_err(what: impl Into<String>) -> Error {
    Error::os(what, io::Error::last_os_error())
}

pub fn personality_value(p: &LinuxPersonality) -> Result<libc::c_ulong> {
    let mut v: libc::c_ulong = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    for (i, f) in p.flags().iter().flatten().enumerate() {
        v |= match f.as_str() {
            "UNAME26" => 0x0020000,
            "ADDR_NO_RANDOMIZE" => 0x0040000,
            "FDPIC_FUNCPTRS" => 0x0080000,
            "MMAP_PAGE_ZERO" => 0x0100000,
            "ADDR_COMPAT_LAYOUT" => 0x0200000,
            "READ_IMPLIES_EXEC" => 0x0400000,
            "ADDR_LIMIT_32BIT" => 0x0800000,
            "SHORT_INODE" => 0x1000000,
            "WHOLE_SECONDS" => 0x2000000,
            "STICKY_TIMEOUTS" => 0x4000000,
            "ADDR_LIMIT_3GB" => 0x8000000,
            other => {
                return Err(Error::config(
                    format!("linux.personality.flags[{i}]"),
                    format!("{other:?} is not a personality flag"),
                ));
            }
        };
    }
    Ok(v)
}

pub fn set_personality(p: &LinuxPersonality) -> Result<()> {
    let v = personality_value(p)?;
    // SAFETY: personality takes an integer only.
    if unsafe { libc::personality(v) } == -1 {
        return Err(last_err("set the personality"));
    }
    Ok(())
}

pub fn set_io_priority(p: &Process) -> Result<()> {
    let Some(io) = p.io_priority() else {
        return Ok(());
    };
    let class: i64 = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let value = (class << 13) | io.priority();
    // SAFETY: ioprio_set takes integers only.
    if unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) } != 0 {
        return Err(last_err(format!(
            "set the I/O priority {:?}/{}",
            io.class(),
            io.priority()
        )));
    }
    Ok(())
}

/// `struct sched_attr` of sched_setattr(2), without the util-clamp tail.
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

pub fn set_scheduler(s: &Scheduler) -> Result<()> {
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let flags = s.flags().iter().flatten().fold(0u64, |acc, f| {
        acc | match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        }
    });
    let mut attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0).max(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: attr is a sched_attr whose `size` is its own (the kernel may
    // write a size back on E2BIG: it is mutable and outlives the call).
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &mut attr as *mut SchedAttr, 0) } != 0 {
        return Err(last_err(format!(
            "set the scheduler policy {:?}",
            s.policy()
        )));
    }
    Ok(())
}

/// Parses a CPU or node list such as "0-3,7" into indexes.
pub fn parse_list(s: &str, field: &str) -> Result<Vec<usize>> {
    let bad = || Error::config(field, format!("{s:?} is not a list like \"0-3,7\""));
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => {
                let n: usize = part.parse().map_err(|_| bad())?;
                (n, n)
            }
        };
        if a > b || b >= 4096 {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

pub fn set_cpu_affinity(list: &str, field: &str) -> Result<()> {
    let cpus = parse_list(list, field)?;
    // A cpu_set_t holds CPU_SETSIZE (1024) bits; parse_list allows more.
    let size = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if let Some(c) = cpus.iter().find(|&&c| c >= size) {
        return Err(Error::config(
            field,
            format!("CPU {c} is out of range (a CPU set holds {size})"),
        ));
    }
    // SAFETY: cpu_set_t is a bit array, for which all zeroes is valid.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus {
        // SAFETY: c < CPU_SETSIZE (checked above): the bit is inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: set is a valid cpu_set_t of the size given.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(last_err(format!("set the CPU affinity {list}")));
    }
    Ok(())
}

pub fn set_memory_policy(m: &LinuxMemoryPolicy) -> Result<()> {
    let mode: libc::c_int = match m.mode() {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    };
    let flags = m.flags().iter().flatten().fold(0, |acc, f| {
        acc | match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        }
    });
    let nodes = match m.nodes().as_deref().filter(|n| !n.is_empty()) {
        Some(n) => parse_list(n, "linux.memoryPolicy.nodes")?,
        None => Vec::new(),
    };
    let mut mask = [0u64; 16];
    for n in &nodes {
        if *n >= 1024 {
            return Err(Error::config(
                "linux.memoryPolicy.nodes",
                format!("node {n} is out of range"),
            ));
        }
        mask[n / 64] |= 1 << (n % 64);
    }
    let (ptr, max) = if nodes.is_empty() {
        (std::ptr::null(), 0)
    } else {
        (mask.as_ptr(), 1024 + 1)
    };
    // SAFETY: ptr is null (with max 0) or mask, whose 1024 bits are exactly
    // the max - 1 the kernel reads.
    if unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            mode | flags,
            ptr,
            max as libc::c_ulong,
        )
    } != 0
    {
        return Err(last_err(format!("set the memory policy {:?}", m.mode())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("0-2,5", "f").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_list("3", "f").unwrap(), vec![3]);
        assert!(parse_list("2-1", "f").is_err());
        assert!(parse_list("x", "f").is_err());
        assert!(parse_list("0-99999", "f").is_err());
    }

    #[test]
    fn cpus_beyond_a_cpu_set_are_refused() {
        let err = set_cpu_affinity("0,2000", "f").unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn personality_flags() {
        let p: LinuxPersonality =
            serde_json::from_str(r#"{"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE"]}"#)
                .unwrap();
        assert_eq!(personality_value(&p).unwrap(), 0x0040008);
        let p: LinuxPersonality =
            serde_json::from_str(r#"{"domain": "LINUX", "flags": ["NOPE"]}"#).unwrap();
        assert!(personality_value(&p).is_err());
    }
}
