//! The spec's seccomp profile compiled with libseccomp and loaded into the
//! calling process.

use std::collections::HashMap;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterAttr, ScmpFilterContext,
    ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::error::{Context, Error, Result};
use crate::state::OciState;

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Seccomp(format!("{what}: {e}"))
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    }
}

fn arch(a: Arch) -> Option<ScmpArch> {
    // The spec's names are libseccomp's.
    a.to_string().parse().ok()
}

fn op(o: LinuxSeccompOperator, mask: u64) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(mask),
    }
}

/// Whether the profile hands syscalls to a notify listener.
pub fn uses_notify(s: &LinuxSeccomp) -> bool {
    s.default_action() == LinuxSeccompAction::ScmpActNotify
        || s.syscalls()
            .iter()
            .flatten()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
}

/// What the runtime-spec (config-linux.md, "Seccomp") requires of a
/// profile beyond its types: an errno only with an action that returns one,
/// at least one name per rule, metadata only with a listener.
fn check_spec_rules(s: &LinuxSeccomp) -> Result<()> {
    let takes_errno = |a: LinuxSeccompAction| {
        matches!(
            a,
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
        )
    };
    if s.default_errno_ret().is_some() && !takes_errno(s.default_action()) {
        return Err(Error::config(
            "linux.seccomp.defaultErrnoRet",
            format!("{:?} returns no errno", s.default_action()),
        ));
    }
    for (i, rule) in s.syscalls().iter().flatten().enumerate() {
        if rule.errno_ret().is_some() && !takes_errno(rule.action()) {
            return Err(Error::config(
                format!("linux.seccomp.syscalls[{i}].errnoRet"),
                format!("{:?} returns no errno", rule.action()),
            ));
        }
        if rule.names().is_empty() {
            return Err(Error::config(
                format!("linux.seccomp.syscalls[{i}].names"),
                "must name at least one system call",
            ));
        }
    }
    if s.listener_metadata()
        .as_ref()
        .is_some_and(|m| !m.is_empty())
        && s.listener_path()
            .as_ref()
            .is_none_or(|p| p.as_os_str().is_empty())
    {
        return Err(Error::config(
            "linux.seccomp.listenerMetadata",
            "is set without a listenerPath",
        ));
    }
    Ok(())
}

/// Builds the filter; the runtime does this before it forks, so a bad
/// profile is reported before anything exists, and the child only loads it.
///
/// libseccomp sets no_new_privs on load unless told otherwise; the process
/// gets it only when its config asks (`nnp`).
pub fn compile(s: &LinuxSeccomp, nnp: bool) -> Result<ScmpFilterContext> {
    if uses_notify(s)
        && s.listener_path()
            .as_ref()
            .is_none_or(|p| p.as_os_str().is_empty())
    {
        return Err(Error::config(
            "linux.seccomp.listenerPath",
            "SCMP_ACT_NOTIFY needs a listener to hand the notify fd to",
        ));
    }
    check_spec_rules(s)?;
    let default = action(s.default_action(), s.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("create filter", e))?;
    ctx.set_ctl_nnp(nnp)
        .map_err(|e| err("set the no_new_privs attribute", e))?;

    for (i, a) in s.architectures().iter().flatten().enumerate() {
        let Some(arch) = arch(*a) else {
            return Err(Error::config(
                format!("linux.seccomp.architectures[{i}]"),
                format!("{a:?} is unknown"),
            ));
        };
        if !ctx.is_arch_present(arch).unwrap_or(false) {
            ctx.add_arch(arch)
                .map_err(|e| err(format!("add architecture {a:?}"), e))?;
        }
    }
    for f in s.flags().iter().flatten() {
        let attr = match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ScmpFilterAttr::CtlLog,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ScmpFilterAttr::CtlTsync,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ScmpFilterAttr::CtlSsb,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => continue,
        };
        ctx.set_filter_attr(attr, 1)
            .map_err(|e| err(format!("set flag {f:?}"), e))?;
    }
    for (i, rule) in s.syscalls().iter().flatten().enumerate() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            // libseccomp refuses rules that repeat the default action.
            continue;
        }
        let mut conds = Vec::new();
        for (j, a) in rule.args().iter().flatten().enumerate() {
            if a.index() > 5 {
                return Err(Error::config(
                    format!("linux.seccomp.syscalls[{i}].args[{j}].index"),
                    format!("{} is above 5", a.index()),
                ));
            }
            let value = if a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq {
                a.value_two().unwrap_or(0)
            } else {
                a.value()
            };
            conds.push(ScmpArgCompare::new(
                a.index() as u32,
                op(a.op(), a.value()),
                value,
            ));
        }
        // libseccomp cannot AND two conditions on one argument; runc
        // applies each as a rule of its own (OR), and so do we.
        let mut per_index: HashMap<u32, usize> = HashMap::new();
        for c in rule.args().iter().flatten() {
            *per_index.entry(c.index() as u32).or_default() += 1;
        }
        let split = per_index.values().any(|&n| n > 1);
        for name in rule.names() {
            let Ok(sys) = ScmpSyscall::from_name(name) else {
                continue; // unknown to this libseccomp: nothing to filter
            };
            let r = if conds.is_empty() {
                ctx.add_rule(act, sys).map(|_| ())
            } else if split {
                conds.iter().try_for_each(|c| {
                    ctx.add_rule_conditional(act, sys, std::slice::from_ref(c))
                        .map(|_| ())
                })
            } else {
                ctx.add_rule_conditional(act, sys, &conds).map(|_| ())
            };
            r.map_err(|e| err(format!("linux.seccomp.syscalls[{i}] ({name})"), e))?;
        }
    }
    Ok(ctx)
}

/// A filter ready to load in the container's process: libseccomp's own
/// (for a notify profile, whose listener fd libseccomp hands out), or the
/// BPF program it compiles to, from a cache when this profile was compiled
/// before.
pub enum Filter {
    Context(ScmpFilterContext),
    Bpf(Bpf),
}

/// A compiled program and how to load it.
pub struct Bpf {
    insns: Vec<libc::sock_filter>,
    /// SECCOMP_FILTER_FLAG_* from the profile's flags.
    flags: libc::c_uint,
    nnp: bool,
}

impl Filter {
    /// Turns the calling process's filter on (seccomp(2) directly for a
    /// program, as libseccomp would load it).
    pub fn load(&self) -> Result<()> {
        match self {
            Filter::Context(ctx) => ctx.load().map_err(|e| err("load filter", e)),
            Filter::Bpf(b) => b.load(),
        }
    }
}

impl Bpf {
    fn load(&self) -> Result<()> {
        if self.nnp {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(err("set no_new_privs", std::io::Error::last_os_error()));
            }
        }
        let prog = libc::sock_fprog {
            len: self.insns.len() as u16,
            filter: self.insns.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prog points at insns, which outlive the call; the kernel
        // copies the program.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(err("load filter", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn from_bytes(raw: &[u8], flags: libc::c_uint, nnp: bool) -> Option<Bpf> {
        const INSN: usize = std::mem::size_of::<libc::sock_filter>();
        if raw.is_empty() || !raw.len().is_multiple_of(INSN) || raw.len() / INSN > u16::MAX as usize
        {
            return None;
        }
        let insns = raw
            .chunks_exact(INSN)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Some(Bpf { insns, flags, nnp })
    }
}

fn load_flags(s: &LinuxSeccomp) -> libc::c_uint {
    let mut f = 0;
    for flag in s.flags().iter().flatten() {
        f |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        } as libc::c_uint;
    }
    f
}

/// Compiles the profile, or takes its program from `cache` (a directory
/// only the runtime writes) where this very profile was compiled before
/// by this libseccomp: compiling a few hundred rules takes milliseconds
/// on every container start, loading a program microseconds. Entries hold
/// their whole key and are used only on an exact match.
pub fn prepare(s: &LinuxSeccomp, nnp: bool, cache: Option<&std::path::Path>) -> Result<Filter> {
    // A cached program must not let a profile past these checks either.
    check_spec_rules(s)?;
    if uses_notify(s) {
        return compile(s, nnp).map(Filter::Context);
    }
    let flags = load_flags(s);
    let key = {
        let v = libseccomp::ScmpVersion::current().map_err(|e| err("libseccomp version", e))?;
        let mut k = format!("{}.{}.{} {nnp} ", v.major, v.minor, v.micro).into_bytes();
        k.extend(serde_json::to_vec(s).expect("a profile serializes"));
        k
    };
    let file = cache.map(|dir| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        dir.join(format!("{:016x}.bpf", h.finish()))
    });
    if let Some(f) = &file
        && let Ok(raw) = std::fs::read(f)
        && let Some(prog) = raw
            .strip_prefix(&key[..])
            .and_then(|r| r.strip_prefix(b"\0"))
        && let Some(bpf) = Bpf::from_bytes(prog, flags, nnp)
    {
        return Ok(Filter::Bpf(bpf));
    }
    let ctx = compile(s, nnp)?;
    let prog = export(&ctx)?;
    let bpf = Bpf::from_bytes(&prog, flags, nnp)
        .ok_or_else(|| Error::Seccomp("libseccomp exported an empty program".into()))?;
    if let (Some(dir), Some(f)) = (cache, &file) {
        // A cache that cannot be written costs speed, nothing else.
        let _ = std::fs::create_dir_all(dir);
        let mut entry = key;
        entry.push(0);
        entry.extend_from_slice(&prog);
        let _ = crate::fsutil::atomic_write(f, &entry, 0o600);
    }
    Ok(Filter::Bpf(bpf))
}

/// The program libseccomp compiled, through a memfd (its export to
/// memory needs libseccomp 2.6).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>> {
    use std::io::{Read, Seek};
    let fd = rustix::fs::memfd_create("berth-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| err("memfd for the filter", e))?;
    let mut f = std::fs::File::from(fd);
    ctx.export_bpf(&f).map_err(|e| err("export filter", e))?;
    let mut prog = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut prog))
        .map_err(|e| err("read filter", e))?;
    Ok(prog)
}

/// The profile's notify listener: a connected socket to its host path,
/// made before the container's process exists.
pub struct Listener {
    sock: std::os::fd::OwnedFd,
    metadata: String,
}

impl Listener {
    pub fn connect(linux: &oci_spec::runtime::Linux) -> Result<Option<Listener>> {
        let Some(s) = linux.seccomp().as_ref().filter(|s| uses_notify(s)) else {
            return Ok(None);
        };
        let Some(path) = s.listener_path() else {
            return Ok(None);
        };
        let sock = std::os::unix::net::UnixStream::connect(path)
            .ctx(|| format!("connect to seccomp listener {}", path.display()))?;
        Ok(Some(Listener {
            sock: sock.into(),
            metadata: s.listener_metadata().clone().unwrap_or_default(),
        }))
    }

    /// Takes the notify fd that came with the last message on `chan` and
    /// hands it to the listener with the process state, as the
    /// runtime-spec describes.
    pub fn forward(&self, chan: &crate::sync::Channel, pid: i32, state: &OciState) -> Result<()> {
        use std::os::fd::AsFd;
        let fd = chan
            .take_fd()
            .ok_or_else(|| Error::Other("the seccomp notify fd did not arrive".into()))?;
        let payload = serde_json::json!({
            "ociVersion": crate::state::OCI_VERSION,
            "fds": ["seccompFd"],
            "pid": pid,
            "metadata": self.metadata,
            "state": state,
        });
        crate::console::send_fd(self.sock.as_fd(), fd.as_fd(), &payload.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_a_docker_like_profile() {
        let raw = br#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ]
        }"#;
        let s: LinuxSeccomp = serde_json::from_slice(raw).unwrap();
        compile(&s, true).unwrap();
    }

    fn program(f: &Filter) -> Vec<(u16, u8, u8, u32)> {
        match f {
            Filter::Bpf(b) => b.insns.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect(),
            Filter::Context(_) => panic!("a program was expected"),
        }
    }

    #[test]
    fn compiled_programs_are_cached_by_their_whole_profile() {
        let d = tempfile::tempdir().unwrap();
        let raw = br#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}"#;
        let s: LinuxSeccomp = serde_json::from_slice(raw).unwrap();
        let fresh = program(&prepare(&s, false, Some(d.path())).unwrap());
        let files: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let cached = program(&prepare(&s, false, Some(d.path())).unwrap());
        assert_eq!(fresh, cached);
        // The same profile without no_new_privs, or another profile, is
        // another entry.
        prepare(&s, true, Some(d.path())).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
        // An entry whose key does not match exactly is not used: a program
        // planted under a profile's file name is compiled over.
        let f = files[0].path();
        let mut planted = b"other profile\0".to_vec();
        planted.extend_from_slice(&[0u8; 8]);
        std::fs::write(&f, &planted).unwrap();
        assert_eq!(program(&prepare(&s, false, Some(d.path())).unwrap()), fresh);
        assert_ne!(std::fs::read(&f).unwrap(), planted, "rewritten");
    }

    #[test]
    fn rejects_bad_argument_index() {
        let raw = br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#;
        let s: LinuxSeccomp = serde_json::from_slice(raw).unwrap();
        let e = compile(&s, true).unwrap_err().to_string();
        assert!(e.contains("args[0].index"), "{e}");
    }
}
