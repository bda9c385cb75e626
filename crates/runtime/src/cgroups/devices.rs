//! Device access rules. v1 has the devices controller with allow/deny
//! lists; v2 has none, so the same rules are compiled to an eBPF program.
//! Both are fed from one normalised rule list, so the two hierarchies
//! enforce the same thing.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{Cgroup, ebpf, write};
use crate::error::{Error, Result};

/// One normalised rule: `kind` is 'a' (all), 'b' or 'c'; `None` for a
/// wildcard number; `access` a subset of "rwm" as bits r=2, w=4, m=1
/// (the kernel's BPF_DEVCG_ACC_* values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: u8,
}

pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;
pub const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

impl Rule {
    pub fn from_spec(d: &LinuxDeviceCgroup, field: &str) -> Result<Rule> {
        let kind = match d.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(LinuxDeviceType::B) => 'b',
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
            Some(LinuxDeviceType::P) => {
                return Err(Error::config(
                    format!("{field}.type"),
                    "fifos are not subject to device rules",
                ));
            }
        };
        let access = match d.access().as_deref() {
            None | Some("") => ACC_ALL,
            Some(s) => parse_access(s).ok_or_else(|| {
                Error::config(
                    format!("{field}.access"),
                    format!("{s:?} is not a subset of \"rwm\""),
                )
            })?,
        };
        Ok(Rule {
            allow: d.allow(),
            kind,
            major: d.major().filter(|m| *m >= 0),
            minor: d.minor().filter(|m| *m >= 0),
            access,
        })
    }

    /// The rule as v1's devices.allow/devices.deny line, e.g. "c 1:3 rwm".
    pub fn v1_line(&self) -> String {
        let num = |n: Option<i64>| n.map_or("*".to_string(), |v| v.to_string());
        let mut acc = String::new();
        if self.access & ACC_READ != 0 {
            acc.push('r');
        }
        if self.access & ACC_WRITE != 0 {
            acc.push('w');
        }
        if self.access & ACC_MKNOD != 0 {
            acc.push('m');
        }
        format!(
            "{} {}:{} {acc}",
            self.kind,
            num(self.major),
            num(self.minor)
        )
    }

    fn is_wildcard_all(&self) -> bool {
        self.kind == 'a' && self.major.is_none() && self.minor.is_none() && self.access == ACC_ALL
    }

    fn covers(&self, other: &Rule) -> bool {
        (self.kind == 'a' || self.kind == other.kind)
            && (self.major.is_none() || self.major == other.major)
            && (self.minor.is_none() || self.minor == other.minor)
            && (other.access & !self.access) == 0
    }
}

fn parse_access(s: &str) -> Option<u8> {
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
    }
    Some(bits)
}

/// The devices every container may use whatever its rules say: the
/// runtime-spec's default devices and the ptys. Not /dev/console (c 5:1):
/// a container's console is a pty (136:*), and 5:1 is the host's.
pub fn default_allowed() -> Vec<Rule> {
    let c = |major, minor| Rule {
        allow: true,
        kind: 'c',
        major: Some(major),
        minor,
        access: ACC_ALL,
    };
    vec![
        c(1, Some(3)), // null
        c(1, Some(5)), // zero
        c(1, Some(7)), // full
        c(1, Some(8)), // random
        c(1, Some(9)), // urandom
        c(5, Some(0)), // tty
        c(5, Some(2)), // ptmx
        c(136, None),  // pts/*
    ]
}

/// What a config without any device rule gets, as runc gives it: the
/// defaults, /dev/net/tun, and mknod of any node (opening one is what the
/// rules guard).
pub fn runc_defaults() -> Vec<Rule> {
    let rule = |kind, major, minor, access| Rule {
        allow: true,
        kind,
        major,
        minor,
        access,
    };
    let mut v = vec![
        rule('c', None, None, ACC_MKNOD),
        rule('b', None, None, ACC_MKNOD),
    ];
    v.extend(default_allowed());
    v.push(rule('c', Some(10), Some(200), ACC_ALL)); // net/tun
    v
}

fn deny_all() -> Rule {
    Rule {
        allow: false,
        kind: 'a',
        major: None,
        minor: None,
        access: ACC_ALL,
    }
}

/// What the rules amount to: a default verdict and the exceptions to it,
/// evaluated newest first. Processing the list in order reproduces v1's
/// semantics, where each write edits the current allow list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub default_allow: bool,
    /// Newest last.
    pub exceptions: Vec<Rule>,
}

pub fn compile(rules: &[Rule]) -> Program {
    // Without rules a container may use every device, as on v1 before any
    // write to devices.deny.
    let mut p = Program {
        default_allow: true,
        exceptions: Vec::new(),
    };
    for r in rules {
        if r.is_wildcard_all() {
            p.default_allow = r.allow;
            p.exceptions.clear();
        } else if r.allow == p.default_allow {
            // Back to the default for what this rule covers.
            p.exceptions.retain(|e| !r.covers(e));
            if p.exceptions.iter().any(|e| e.covers(r) || r.covers(e)) {
                p.exceptions.push(*r);
            }
        } else {
            p.exceptions.push(*r);
        }
    }
    p
}

/// The full rule list. A config without rules gets a deny-all and the
/// default list, as runc gives it: "no rules" must never mean "every host
/// device". A config whose rules start with a deny-all gets the default
/// list right after it (so a later rule can still deny one of them).
/// FIFOs among `linux.devices` are made in /dev but are not devices to the
/// cgroup: they get no rule.
pub fn rules(spec_rules: &[LinuxDeviceCgroup], extra: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    if spec_rules.is_empty() {
        out.push(deny_all());
        out.extend(runc_defaults());
    }
    for (i, d) in spec_rules.iter().enumerate() {
        let r = Rule::from_spec(d, &format!("linux.resources.devices[{i}]"))?;
        out.push(r);
        if i == 0 && r.is_wildcard_all() && !r.allow {
            out.extend(default_allowed());
        }
    }
    for (i, d) in extra.iter().enumerate() {
        if d.typ() == Some(LinuxDeviceType::P) {
            continue;
        }
        out.push(Rule::from_spec(d, &format!("linux.devices[{i}]"))?);
    }
    Ok(out)
}

/// Writes the rules: v1's devices controller, or v2's eBPF filter on a
/// pure v2 host. A hybrid host whose devices controller is not mounted
/// has nothing to enforce them with.
pub fn apply(
    cg: &Cgroup,
    spec_rules: &[LinuxDeviceCgroup],
    extra: &[LinuxDeviceCgroup],
) -> Result<()> {
    let rules = rules(spec_rules, extra)?;
    if let Some(d) = cg.dir_of("devices").filter(|d| !d.v2) {
        for r in &rules {
            let file = if r.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write(&d.path, file, &r.v1_line())?;
        }
        return Ok(());
    }
    // A BPF device filter needs CAP_BPF (or CAP_SYS_ADMIN) on the host:
    // not an ordinary user's, whose containers cannot make device nodes
    // in the first place and get only those bound from the host.
    if cg.is_pure_v2()
        && !berth_base::rootless::in_user_namespace()
        && let Some(d) = cg.v2_dir()
    {
        return ebpf::attach_device_filter(&d.path, &compile(&rules));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(allow: bool, kind: char, major: Option<i64>, minor: Option<i64>, access: u8) -> Rule {
        Rule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    #[test]
    fn deny_all_then_allow() {
        let p = compile(&[
            r(false, 'a', None, None, ACC_ALL),
            r(true, 'c', Some(1), Some(3), ACC_ALL),
        ]);
        assert!(!p.default_allow);
        assert_eq!(p.exceptions, vec![r(true, 'c', Some(1), Some(3), ACC_ALL)]);
    }

    #[test]
    fn later_rules_win() {
        let p = compile(&[
            r(false, 'a', None, None, ACC_ALL),
            r(true, 'c', Some(1), Some(3), ACC_ALL),
            r(false, 'c', Some(1), Some(3), ACC_ALL),
        ]);
        assert!(p.exceptions.is_empty());
        let p = compile(&[
            r(false, 'a', None, None, ACC_ALL),
            r(true, 'c', Some(1), None, ACC_ALL),
            r(false, 'c', Some(1), Some(3), ACC_WRITE),
        ]);
        assert_eq!(p.exceptions.len(), 2);
    }

    #[test]
    fn no_rules_is_runcs_default_list_not_every_device() {
        let p = compile(&rules(&[], &[]).unwrap());
        assert!(!p.default_allow);
        let allowed = |kind, major, minor, access| {
            let probe = r(true, kind, Some(major), Some(minor), access);
            p.exceptions
                .iter()
                .rev()
                .find(|e| e.covers(&probe))
                .is_some_and(|e| e.allow)
        };
        assert!(allowed('c', 1, 3, ACC_ALL), "/dev/null");
        assert!(allowed('c', 136, 4, ACC_READ | ACC_WRITE), "a pty");
        assert!(allowed('b', 7, 0, ACC_MKNOD), "mknod of any node");
        assert!(!allowed('b', 7, 0, ACC_READ), "a loop device");
        assert!(!allowed('b', 8, 0, ACC_WRITE), "a disk");
        assert!(!allowed('c', 5, 1, ACC_READ), "the host's console");
    }

    #[test]
    fn a_leading_deny_all_does_not_let_the_console_through() {
        let deny = LinuxDeviceCgroup::default();
        let mut deny = deny;
        deny.set_allow(false);
        deny.set_access(Some("rwm".into()));
        let p = compile(&rules(&[deny], &[]).unwrap());
        let console = r(true, 'c', Some(5), Some(1), ACC_READ);
        assert!(!p.exceptions.iter().any(|e| e.allow && e.covers(&console)));
    }

    #[test]
    fn fifos_get_no_rule() {
        let mut fifo = LinuxDeviceCgroup::default();
        fifo.set_typ(Some(LinuxDeviceType::P));
        fifo.set_allow(true);
        let with = rules(&[], &[fifo]).unwrap();
        assert_eq!(with, rules(&[], &[]).unwrap());
    }

    #[test]
    fn v1_lines() {
        assert_eq!(
            r(true, 'c', Some(136), None, ACC_ALL).v1_line(),
            "c 136:* rwm"
        );
        assert_eq!(r(false, 'a', None, None, ACC_READ).v1_line(), "a *:* r");
    }
}
