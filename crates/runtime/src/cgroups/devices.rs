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

/// The devices every container may use whatever its rules say: the default
/// devices of the runtime-spec plus the pty devices.
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
        c(5, Some(1)), // console
        c(5, Some(2)), // ptmx
        c(136, None),  // pts/*
    ]
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

/// The full rule list: the spec's rules, with the default devices allowed
/// after a leading deny-all (so a later spec rule can still deny them).
pub fn rules(spec_rules: &[LinuxDeviceCgroup], extra: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    for (i, d) in spec_rules.iter().enumerate() {
        let r = Rule::from_spec(d, &format!("linux.resources.devices[{i}]"))?;
        out.push(r);
        if i == 0 && r.is_wildcard_all() && !r.allow {
            out.extend(default_allowed());
        }
    }
    for (i, d) in extra.iter().enumerate() {
        out.push(Rule::from_spec(d, &format!("linux.devices[{i}]"))?);
    }
    Ok(out)
}

pub fn apply(
    cg: &Cgroup,
    spec_rules: &[LinuxDeviceCgroup],
    extra: &[LinuxDeviceCgroup],
) -> Result<()> {
    if spec_rules.is_empty() && extra.is_empty() {
        return Ok(());
    }
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
    if cg.is_pure_v2()
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
    fn v1_lines() {
        assert_eq!(
            r(true, 'c', Some(136), None, ACC_ALL).v1_line(),
            "c 136:* rwm"
        );
        assert_eq!(r(false, 'a', None, None, ACC_READ).v1_line(), "a *:* r");
    }
}
