//! The default profile checked three ways: the data itself (it parses, and
//! no call gets two rules libseccomp would have to choose between), the
//! filter berth-runtime compiles from it (run here on a small classic-BPF
//! interpreter, so argument rules are checked as the kernel will see them,
//! not as the JSON reads), and the system's containers-common profile,
//! when it is installed, for the calls each allows.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek};

use libseccomp::{ScmpArch, ScmpSyscall};

use super::*;

fn caps(extra: &[&str]) -> Vec<String> {
    berth_image::spec::CAPS
        .iter()
        .chain(extra)
        .map(|c| c.to_string())
        .collect()
}

// ---------------------------------------------------------------------
// The data.

#[test]
fn the_data_parses() {
    let p = parse(DATA).unwrap();
    assert!(p.rules.len() > 30);
}

#[test]
fn bad_data_is_refused_with_the_rule() {
    let one = |body: &str| parse(&format!("[arches]\nx86_64 = []\n[[rule]]\n{body}"));
    assert!(one("about = \"x\"\nnames = [\"read\"]").is_ok());
    for (body, want) in [
        (
            "about = \"x\"\nnames = [\"read\"]\naction = \"EBOGUS\"",
            "action",
        ),
        (
            "about = \"x\"\nnames = [\"read\"]\nargs = [\"a6 == 0\"]",
            "condition",
        ),
        (
            "about = \"x\"\nnames = [\"read\"]\nargs = [\"a0 =~ 0\"]",
            "condition",
        ),
        (
            "about = \"x\"\nnames = [\"read\"]\nargs = [\"a0 & 1 != 0\"]",
            "condition",
        ),
        (
            "about = \"x\"\nnames = [\"read\"]\nneeds = [\"CAP_BOGUS\"]",
            "capability",
        ),
        (
            "about = \"x\"\nnames = [\"read\"]\narches = [\"vax\"]",
            "architecture",
        ),
        (
            "about = \"x\"\nnames = [\"read\"]\nneeds = [\"CAP_KILL\"]\naction = \"EPERM\"",
            "needs",
        ),
        ("about = \"\"\nnames = [\"read\"]", "about"),
        ("about = \"x\"\nnames = [\"read\"]\nbogus = 1", "bogus"),
    ] {
        let e = one(body).unwrap_err();
        assert!(e.contains(want), "{body}: {e}");
    }
}

/// Every set of capabilities a test could pick: none, podman's default,
/// the default plus each capability, all of them.
fn cap_sets() -> Vec<Vec<String>> {
    let mut sets = vec![vec![], caps(&[])];
    for c in crate::spec::ALL_CAPS {
        sets.push(caps(&[c]));
    }
    sets.push(
        crate::spec::ALL_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect(),
    );
    sets
}

#[test]
fn no_call_gets_an_unconditional_rule_and_another() {
    // libseccomp keeps an unconditional rule and silently drops every
    // argument rule with another action for the same call (and refuses a
    // second unconditional one), so such a pair would not mean what it says.
    let p = profile();
    for arch in p.arches.keys().map(String::as_str).chain(["mips64"]) {
        for set in cap_sets() {
            let mut plain: BTreeMap<&str, Action> = BTreeMap::new();
            let mut with_args: BTreeSet<&str> = BTreeSet::new();
            for r in p.rules.iter().filter(|r| r.applies(&set, arch)) {
                for n in &r.names {
                    if r.args.is_empty() {
                        let old = plain.insert(n, r.action);
                        assert!(old.is_none(), "{n}: two rules on {arch} with {set:?}");
                    } else {
                        with_args.insert(n);
                    }
                }
            }
            let both: Vec<_> = with_args
                .iter()
                .filter(|n| plain.contains_key(*n))
                .collect();
            assert!(both.is_empty(), "{both:?} on {arch} with {set:?}");
        }
    }
}

#[test]
fn the_spec_has_the_hosts_architectures_and_leaves_out_what_the_default_says() {
    let p = profile();
    let x = build(p, &caps(&[]), "x86_64");
    assert_eq!(x["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(x["defaultErrnoRet"], 38);
    assert_eq!(
        x["architectures"],
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
    );
    let rules = x["syscalls"].as_array().unwrap();
    assert!(
        rules.iter().all(|r| r["errnoRet"] != 38),
        "ENOSYS rules are left out"
    );
    let named = |v: &Value, n: &str| {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["names"].as_array().unwrap().iter().any(|x| x == n))
    };
    assert!(named(&x, "arch_prctl") && !named(&x, "set_tls"));
    assert!(!named(&x, "io_uring_setup") && !named(&x, "keyctl"));
    let a = build(p, &caps(&[]), "aarch64");
    assert_eq!(
        a["architectures"],
        json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
    );
    assert!(named(&a, "set_tls") && !named(&a, "arch_prctl"));
    // clone's flags are its second argument on s390, its first elsewhere,
    // including on architectures the data does not list.
    let clone_index = |v: &Value| -> BTreeSet<u64> {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"] == json!(["clone"]))
            .map(|r| r["args"][0]["index"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        clone_index(&build(p, &caps(&[]), "s390x")),
        BTreeSet::from([1])
    );
    let m = build(p, &caps(&[]), "mips64");
    assert_eq!(clone_index(&m), BTreeSet::from([0]));
    assert!(m.get("architectures").is_none());
    // With CAP_SYS_ADMIN clone is not checked at all.
    let admin = build(p, &caps(&["CAP_SYS_ADMIN"]), "x86_64");
    assert!(clone_index(&admin).is_empty() && named(&admin, "clone"));
}

// ---------------------------------------------------------------------
// The compiled filter.

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Verdict {
    Allow,
    Errno(i32),
    Other(u32),
}

/// The filter berth-runtime would load for `profile`, as classic BPF.
struct Filter(Vec<[u8; 8]>);

impl Filter {
    fn of(profile: &Value) -> Filter {
        let s: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(profile.clone()).unwrap();
        let ctx = berth_runtime::compile_seccomp(&s, true).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        ctx.export_bpf(&f).unwrap();
        f.rewind().unwrap();
        let mut raw = Vec::new();
        f.read_to_end(&mut raw).unwrap();
        assert_eq!(raw.len() % 8, 0);
        Filter(raw.chunks(8).map(|c| c.try_into().unwrap()).collect())
    }

    /// Runs the program on a seccomp_data, as the kernel does.
    fn run(&self, arch: u32, nr: i64, args: &[u64]) -> Verdict {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as i32).to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let word = |k: u32| {
            let k = k as usize;
            u32::from_ne_bytes(data[k..k + 4].try_into().unwrap())
        };
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0usize;
        let ret = loop {
            let i = self.0[pc];
            let code = u16::from_ne_bytes([i[0], i[1]]);
            let (jt, jf) = (i[2] as usize, i[3] as usize);
            let k = u32::from_ne_bytes([i[4], i[5], i[6], i[7]]);
            pc += 1;
            let jump = |cond: bool| if cond { jt } else { jf };
            match code {
                0x20 => a = word(k),            // ld [k]
                0x00 => a = k,                  // ld #k
                0x60 => a = mem[k as usize],    // ld M[k]
                0x01 => x = k,                  // ldx #k
                0x61 => x = mem[k as usize],    // ldx M[k]
                0x02 => mem[k as usize] = a,    // st M[k]
                0x03 => mem[k as usize] = x,    // stx M[k]
                0x04 => a = a.wrapping_add(k),  // add #k
                0x14 => a = a.wrapping_sub(k),  // sub #k
                0x44 => a |= k,                 // or #k
                0x54 => a &= k,                 // and #k
                0x64 => a <<= k,                // lsh #k
                0x74 => a >>= k,                // rsh #k
                0x07 => x = a,                  // tax
                0x87 => a = x,                  // txa
                0x05 => pc += k as usize,       // ja
                0x15 => pc += jump(a == k),     // jeq #k
                0x25 => pc += jump(a > k),      // jgt #k
                0x35 => pc += jump(a >= k),     // jge #k
                0x45 => pc += jump(a & k != 0), // jset #k
                0x1d => pc += jump(a == x),     // jeq x
                0x2d => pc += jump(a > x),      // jgt x
                0x3d => pc += jump(a >= x),     // jge x
                0x4d => pc += jump(a & x != 0), // jset x
                0x06 => break k,                // ret #k
                0x16 => break a,                // ret a
                _ => panic!("BPF opcode {code:#x} at {} is not interpreted", pc - 1),
            }
        };
        match ret & 0xffff_0000 {
            RET_ALLOW => Verdict::Allow,
            RET_ERRNO => Verdict::Errno((ret & 0xffff) as i32),
            _ => Verdict::Other(ret),
        }
    }

    fn call(&self, nr: i64, args: &[u64]) -> Verdict {
        self.run(AUDIT_ARCH_X86_64, nr, args)
    }

    fn named(&self, name: &str) -> Option<Verdict> {
        let nr = x86_64_nr(name)?;
        Some(self.call(nr, &[]))
    }
}

/// The call's number on x86_64, if libseccomp knows it there.
fn x86_64_nr(name: &str) -> Option<i64> {
    let n = i32::from(ScmpSyscall::from_name_by_arch(name, ScmpArch::X8664).ok()?);
    (n >= 0).then_some(n as i64)
}

fn filter(extra: &[&str]) -> Filter {
    Filter::of(&build(profile(), &caps(extra), "x86_64"))
}

use Verdict::{Allow, Errno};
const EPERM: Verdict = Errno(libc::EPERM);
const ENOSYS: Verdict = Errno(libc::ENOSYS);

const SIGCHLD: u64 = libc::SIGCHLD as u64;
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

#[cfg(target_arch = "x86_64")]
#[test]
fn a_default_container_gets_the_everyday_calls_and_not_the_dangerous_ones() {
    let f = filter(&[]);
    // Refused without a word on why: as if this kernel had no such call.
    for nr in [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_memfd_secret,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_clone3,
        1000, // no call has this number (yet)
    ] {
        assert_eq!(f.call(nr, &[]), ENOSYS, "syscall {nr}");
    }
    // Refused as the kernel would refuse them without the capability.
    for nr in [
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_open_by_handle_at,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_fsopen,
        libc::SYS_move_mount,
        libc::SYS_userfaultfd,
        libc::SYS_syslog,
        libc::SYS_reboot,
        libc::SYS_init_module,
        libc::SYS_settimeofday,
        libc::SYS_acct,
        libc::SYS_iopl,
        libc::SYS_vhangup,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
        libc::SYS_mbind,
        libc::SYS_swapon,
    ] {
        assert_eq!(f.call(nr, &[]), EPERM, "syscall {nr}");
    }
    for nr in [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_openat,
        libc::SYS_close,
        libc::SYS_close_range,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_futex,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        libc::SYS_statx,
        libc::SYS_getdents64,
        libc::SYS_mmap,
        libc::SYS_rt_sigaction,
        libc::SYS_clock_nanosleep,
        libc::SYS_arch_prctl,
        libc::SYS_rseq,
        libc::SYS_membarrier,
        libc::SYS_pidfd_open,
        libc::SYS_prctl,
        libc::SYS_wait4,
        libc::SYS_ptrace,
        libc::SYS_chroot, // CAP_SYS_CHROOT is one of podman's defaults
        libc::SYS_name_to_handle_at,
        libc::SYS_io_submit,
    ] {
        assert_eq!(f.call(nr, &[]), Allow, "syscall {nr}");
    }
    // The 32-bit ABI is filtered too.
    assert_eq!(
        f.run(AUDIT_ARCH_I386, 425, &[]),
        ENOSYS,
        "i386 io_uring_setup"
    );
    assert_eq!(f.run(AUDIT_ARCH_I386, 3, &[]), Allow, "i386 read");
    // The x32 ABI (x86_64's arch with bit 30 in the number) is not in the
    // filter: libseccomp kills such calls, even read.
    const X32: i64 = 0x4000_0000;
    assert!(
        matches!(f.call(X32 | libc::SYS_read, &[]), Verdict::Other(_)),
        "x32 read"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn argument_rules_hold_in_the_compiled_filter() {
    let f = filter(&[]);
    let clone = |flags: u64| f.call(libc::SYS_clone, &[flags]);
    assert_eq!(clone(SIGCHLD), Allow, "fork");
    assert_eq!(clone(THREAD_FLAGS), Allow, "a thread");
    for ns in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
    ] {
        assert_eq!(clone(ns as u64 | SIGCHLD), EPERM, "clone {ns:#x}");
    }
    let pers = |p: u64| f.call(libc::SYS_personality, &[p]);
    for p in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(pers(p), Allow, "personality {p:#x}");
    }
    assert_eq!(pers(0x0040000), ENOSYS, "ADDR_NO_RANDOMIZE");
    let socket = |f: &Filter, d: i32, t: i32, p: i32| {
        f.call(libc::SYS_socket, &[d as u64, t as u64, p as u64])
    };
    let (raw, stream) = (libc::SOCK_RAW, libc::SOCK_STREAM);
    assert_eq!(socket(&f, libc::AF_INET, stream, 0), Allow);
    assert_eq!(socket(&f, libc::AF_UNIX, stream, 0), Allow);
    assert_eq!(
        socket(&f, libc::AF_INET, raw, 9),
        Allow,
        "protocol 9 elsewhere"
    );
    assert_eq!(socket(&f, libc::AF_NETLINK, raw, 0), Allow, "rtnetlink");
    assert_eq!(socket(&f, libc::AF_PACKET, raw, 9), Allow);
    assert_eq!(socket(&f, libc::AF_VSOCK, stream, 0), EPERM, "vsock");
    assert_eq!(
        socket(&f, libc::AF_NETLINK, raw, libc::NETLINK_AUDIT),
        Errno(libc::EINVAL),
        "audit without CAP_AUDIT_WRITE"
    );
    // Every family, with and without protocol 9, against what the rules
    // say, since libseccomp's trees are where such rules go wrong.
    let audit = filter(&["CAP_AUDIT_WRITE"]);
    for d in 0..64 {
        for p in [0, 9] {
            let without = match (d, p) {
                (libc::AF_VSOCK, _) => EPERM,
                (libc::AF_NETLINK, 9) => Errno(libc::EINVAL),
                _ => Allow,
            };
            assert_eq!(socket(&f, d, raw, p), without, "socket({d}, raw, {p})");
            let with = if d == libc::AF_VSOCK { EPERM } else { Allow };
            assert_eq!(
                socket(&audit, d, raw, p),
                with,
                "with CAP_AUDIT_WRITE: ({d}, {p})"
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn sys_admin_opens_mounts_and_namespaces_but_not_io_uring() {
    let f = filter(&["CAP_SYS_ADMIN"]);
    for nr in [
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_clone3,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_syslog,
        libc::SYS_fsopen,
    ] {
        assert_eq!(f.call(nr, &[]), Allow, "syscall {nr}");
    }
    let newuser = (libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as u64 | SIGCHLD;
    assert_eq!(f.call(libc::SYS_clone, &[newuser]), Allow);
    assert_eq!(f.call(libc::SYS_io_uring_setup, &[]), ENOSYS);
    assert_eq!(f.call(libc::SYS_keyctl, &[]), ENOSYS);
    assert_eq!(f.call(libc::SYS_kexec_load, &[]), EPERM);
    assert_eq!(
        f.call(libc::SYS_pidfd_getfd, &[]),
        EPERM,
        "that is CAP_SYS_PTRACE's"
    );
    let p = filter(&["CAP_SYS_PTRACE"]);
    assert_eq!(p.call(libc::SYS_pidfd_getfd, &[]), Allow);
    assert_eq!(p.call(libc::SYS_mount, &[]), EPERM);
    let none = Filter::of(&build(profile(), &[], "x86_64"));
    assert_eq!(none.call(libc::SYS_chroot, &[]), EPERM);
    assert_eq!(none.call(libc::SYS_read, &[]), Allow);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn each_capability_opens_exactly_its_calls() {
    // For every capability some rule needs: with it added to the default
    // set, its calls are allowed; without it, EPERM; and nothing else
    // moves (apart from what the other capabilities of that rule cover).
    let p = profile();
    let base = filter(&[]);
    let gated: BTreeSet<&str> = p
        .rules
        .iter()
        .filter(|r| r.action == Action::Allow && r.args.is_empty())
        .flat_map(|r| r.when.iter().map(String::as_str))
        .collect();
    assert!(gated.len() >= 13, "{gated:?}");
    let every: BTreeSet<&str> = p
        .rules
        .iter()
        .flat_map(|r| r.names.iter())
        .map(String::as_str)
        .collect();
    for cap in gated {
        if berth_image::spec::CAPS.contains(&cap) {
            continue;
        }
        let with = filter(&[cap]);
        let opened: BTreeSet<&str> = p
            .rules
            .iter()
            .filter(|r| r.action == Action::Allow && r.when.iter().any(|c| c == cap))
            .flat_map(|r| r.names.iter().map(String::as_str))
            .filter(|n| x86_64_nr(n).is_some())
            .collect();
        assert!(!opened.is_empty(), "{cap}");
        for n in &opened {
            assert_eq!(with.named(n), Some(Allow), "{n} with {cap}");
            // clone is never refused outright: without CAP_SYS_ADMIN its
            // flags are checked (above).
            if *n != "clone" {
                assert_ne!(base.named(n), Some(Allow), "{n} without {cap}");
            }
        }
        for n in every.iter().filter(|n| !opened.contains(*n)) {
            assert_eq!(with.named(n), base.named(n), "{n} moved with {cap}");
        }
    }
}

// ---------------------------------------------------------------------
// containers-common.

const CONTAINERS_COMMON: &str = "/usr/share/containers/seccomp.json";

/// What a profile allows on x86_64 for `caps`, resolving docker-style
/// includes and excludes: calls allowed outright, and calls allowed for
/// some arguments. The first rule that applies to a call unconditionally
/// decides it (libseccomp keeps the first and refuses the rest); calls
/// libseccomp here cannot place on x86_64 are left out of both.
fn allowed(profile: &Value, caps: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let arch = "amd64"; // containers-common uses Go's names
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let mut decided: BTreeMap<String, bool> = BTreeMap::new();
    let mut some_args = BTreeSet::new();
    for r in profile["syscalls"].as_array().unwrap() {
        let (inc, exc) = (&r["includes"], &r["excludes"]);
        let applies = list(&inc["caps"]).iter().all(|c| caps.contains(c))
            && !list(&exc["caps"]).iter().any(|c| caps.contains(c))
            && (list(&inc["arches"]).is_empty() || list(&inc["arches"]).iter().any(|a| a == arch))
            && !list(&exc["arches"]).iter().any(|a| a == arch);
        if !applies {
            continue;
        }
        let allow = r["action"] == "SCMP_ACT_ALLOW";
        let names = if r["names"].is_array() {
            list(&r["names"])
        } else {
            list(&json!([r["name"]]))
        };
        for n in names.into_iter().filter(|n| x86_64_nr(n).is_some()) {
            if r["args"].as_array().is_none_or(|a| a.is_empty()) {
                decided.entry(n).or_insert(allow);
            } else if allow {
                some_args.insert(n);
            }
        }
    }
    let outright: BTreeSet<String> = decided
        .iter()
        .filter(|(_, a)| **a)
        .map(|(n, _)| n.clone())
        .collect();
    let some_args = some_args
        .into_iter()
        .filter(|n| !decided.contains_key(n))
        .collect();
    (outright, some_args)
}

/// Calls containers-common allows outright and berth does not. Written
/// against Debian 12's containers-common 0.50.1; newer releases narrow
/// some of these gaps, so each may be absent.
const BERTH_REFUSES: &[(&str, &str)] = &[
    // docker keeps mounts and namespaces behind CAP_SYS_ADMIN;
    // containers-common lets them through to the kernel's own checks.
    ("mount", "CAP_SYS_ADMIN"),
    ("umount2", "CAP_SYS_ADMIN"),
    ("pivot_root", "CAP_SYS_ADMIN"),
    ("fsopen", "CAP_SYS_ADMIN"),
    ("fsconfig", "CAP_SYS_ADMIN"),
    ("fsmount", "CAP_SYS_ADMIN"),
    ("fspick", "CAP_SYS_ADMIN"),
    ("open_tree", "CAP_SYS_ADMIN"),
    ("move_mount", "CAP_SYS_ADMIN"),
    ("mount_setattr", "CAP_SYS_ADMIN"),
    ("unshare", "CAP_SYS_ADMIN"),
    ("setns", "CAP_SYS_ADMIN"),
    // clone's flags are checked instead (it is in the by-argument set),
    // clone3 says ENOSYS so libc uses clone.
    ("clone", "CAP_SYS_ADMIN"),
    ("clone3", "CAP_SYS_ADMIN"),
    // The host's kernel log, reboot, NUMA placement, another process's
    // fds: behind their capabilities, as docker has them.
    ("syslog", "CAP_SYSLOG"),
    ("reboot", "CAP_SYS_BOOT"),
    ("get_mempolicy", "CAP_SYS_NICE"),
    ("mbind", "CAP_SYS_NICE"),
    ("set_mempolicy", "CAP_SYS_NICE"),
    ("pidfd_getfd", "CAP_SYS_PTRACE"),
    // Shut for everyone (see default.toml).
    ("keyctl", ""),
    ("memfd_secret", ""),
];

/// Calls berth allows outright and containers-common does not.
const BERTH_ADDS: &[(&str, &str)] = &[
    // quotactl's fd-based twin, newer than containers-common 0.50.1, for
    // the same capability as quotactl.
    ("quotactl_fd", "CAP_SYS_ADMIN"),
];

#[test]
fn matches_containers_common_but_for_the_listed_differences() {
    let Ok(raw) = std::fs::read(CONTAINERS_COMMON) else {
        println!("skipped: {CONTAINERS_COMMON} is not installed (containers-common)");
        return;
    };
    let cc: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        cc["defaultErrnoRet"], 38,
        "its unknown calls get ENOSYS too"
    );
    let mut seen = BTreeSet::new();
    for extra in [
        None,
        Some("CAP_SYS_ADMIN"),
        Some("CAP_SYS_PTRACE"),
        Some("none"),
    ] {
        let set = match extra {
            Some("none") => vec![],
            Some(c) => caps(&[c]),
            None => caps(&[]),
        };
        let ours = build(profile(), &set, "x86_64");
        let (b, b_args) = allowed(&ours, &set);
        let (c, c_args) = allowed(&cc, &set);
        for n in c.difference(&b) {
            let known = BERTH_REFUSES.iter().find(|(k, _)| k == n);
            assert!(
                known.is_some(),
                "{n}: containers-common allows it, berth does not ({extra:?})"
            );
            let cap = known.unwrap().1;
            assert!(
                cap.is_empty() || !set.iter().any(|c| c == cap),
                "{n} refused with {cap}"
            );
            seen.insert(n.clone());
        }
        for n in b.difference(&c) {
            let known = BERTH_ADDS.iter().find(|(k, _)| k == n);
            assert!(
                known.is_some(),
                "{n}: berth allows it, containers-common does not ({extra:?})"
            );
            seen.insert(n.clone());
        }
        // By argument: personality and socket in both; clone in berth's
        // without CAP_SYS_ADMIN (listed above).
        let b_args: BTreeSet<_> = b_args.into_iter().filter(|n| n != "clone").collect();
        assert_eq!(b_args, c_args, "calls allowed by argument ({extra:?})");
        println!(
            "{extra:?}: {} calls allowed outright, as containers-common but for {:?} / {:?}",
            b.len(),
            c.difference(&b).collect::<Vec<_>>(),
            b.difference(&c).collect::<Vec<_>>()
        );
    }
    let stale: Vec<_> = BERTH_REFUSES
        .iter()
        .chain(BERTH_ADDS)
        .filter(|(n, _)| !seen.contains(*n))
        .collect();
    if !stale.is_empty() {
        println!("no longer differing from this containers-common: {stale:?}");
    }
}
