//! The default seccomp profile: the effect of docker's and podman's
//! default (containers-common) profiles for a container with the given
//! capabilities, written as a deny list: system calls that act on the
//! whole host (modules, clocks, reboot, swap, accounting, keyrings, new
//! namespaces and mounts...) fail with EPERM unless the capability that
//! would make them meaningful was granted. A deny list lets system calls
//! newer than the profile through, where the allow lists refuse them;
//! the capability checks in the kernel still stand behind it.

use serde_json::{Value, json};

/// (syscalls, the capability that allows them; None: always denied).
const RULES: &[(&[&str], Option<&str>)] = &[
    (
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "setns",
            "unshare",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "open_tree",
            "move_mount",
            "mount_setattr",
            "quotactl",
            "quotactl_fd",
            "swapon",
            "swapoff",
            "sethostname",
            "setdomainname",
            "lookup_dcookie",
            "fanotify_init",
            "name_to_handle_at",
        ],
        Some("CAP_SYS_ADMIN"),
    ),
    (&["bpf"], Some("CAP_BPF")),
    (&["perf_event_open"], Some("CAP_PERFMON")),
    (
        &["init_module", "finit_module", "delete_module"],
        Some("CAP_SYS_MODULE"),
    ),
    (
        &["reboot", "kexec_load", "kexec_file_load"],
        Some("CAP_SYS_BOOT"),
    ),
    (
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "clock_adjtime",
            "clock_adjtime64",
        ],
        Some("CAP_SYS_TIME"),
    ),
    (&["acct"], Some("CAP_SYS_PACCT")),
    (&["iopl", "ioperm"], Some("CAP_SYS_RAWIO")),
    (
        &["mbind", "set_mempolicy", "move_pages", "migrate_pages"],
        Some("CAP_SYS_NICE"),
    ),
    (&["syslog"], Some("CAP_SYSLOG")),
    (&["vhangup"], Some("CAP_SYS_TTY_CONFIG")),
    (&["open_by_handle_at"], Some("CAP_DAC_READ_SEARCH")),
    (
        &[
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "pidfd_getfd",
            "userfaultfd",
        ],
        Some("CAP_SYS_PTRACE"),
    ),
    (
        &[
            "keyctl",
            "add_key",
            "request_key",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "vm86",
            "vm86old",
            "create_module",
            "get_kernel_syms",
            "query_module",
            "nfsservctl",
        ],
        None,
    ),
];

/// Namespace flags of clone(2): refused without CAP_SYS_ADMIN.
const CLONE_NEW: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

pub fn default_profile(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let admin = has("CAP_SYS_ADMIN");
    let mut denied: Vec<&str> = Vec::new();
    for (names, cap) in RULES {
        let allowed = match cap {
            Some(c) => has(c) || (admin && matches!(*c, "CAP_BPF" | "CAP_PERFMON")),
            None => false,
        };
        if !allowed {
            denied.extend(names.iter());
        }
    }
    let mut syscalls =
        vec![json!({"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM})];
    if !admin {
        for flag in CLONE_NEW {
            syscalls.push(json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]
            }));
        }
        // clone3 passes its flags in memory a filter cannot read: say it
        // does not exist, and libc falls back to clone, which is checked.
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(p: &Value) -> Vec<String> {
        p["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn capabilities_open_what_they_cover() {
        let base = denied(&default_profile(&[]));
        assert!(base.contains(&"mount".to_string()) && base.contains(&"keyctl".to_string()));
        let admin = default_profile(&["CAP_SYS_ADMIN".into()]);
        let d = denied(&admin);
        assert!(!d.contains(&"mount".to_string()) && d.contains(&"keyctl".to_string()));
        assert!(!d.contains(&"bpf".to_string()));
        assert_eq!(
            admin["syscalls"].as_array().unwrap().len(),
            1,
            "no clone rules"
        );
        let p = denied(&default_profile(&["CAP_SYS_PTRACE".into()]));
        assert!(!p.contains(&"ptrace".to_string()) && p.contains(&"mount".to_string()));
    }
}
