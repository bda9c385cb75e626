//! The default seccomp profile: an allow list kept as data in
//! seccomp/default.toml (see its header for the format and the policy),
//! read once, and turned into the OCI `linux.seccomp` value for a
//! container's capabilities on this host's architecture.
//!
//! A call the profile does not name fails with ENOSYS, as containers-common
//! has it: to a program it looks like a kernel without that call, and libc
//! and language runtimes have fallbacks for exactly that (glibc's clone3
//! -> clone, libuv's io_uring -> epoll). Calls refused for a missing
//! capability fail with EPERM, the kernel's own answer.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Value, json};

const DATA: &str = include_str!("seccomp/default.toml");

/// The answer for every call no rule allows.
const DEFAULT_ERRNO: u32 = libc::ENOSYS as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Errno(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Arg {
    pub index: u32,
    /// The OCI operator name (SCMP_CMP_...).
    pub op: &'static str,
    pub value: u64,
    /// The value a masked comparison wants (`value` is then the mask).
    pub value_two: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    pub when: Vec<String>,
    pub unless: Vec<String>,
    pub arches: Vec<String>,
    pub not_arches: Vec<String>,
    /// Alternatives, each a list of conditions that must all hold; empty:
    /// unconditional.
    pub args: Vec<Vec<Arg>>,
}

impl Rule {
    pub fn applies(&self, caps: &[String], arch: &str) -> bool {
        let has = |c: &String| caps.contains(c);
        (self.when.is_empty() || self.when.iter().any(has))
            && !self.unless.iter().any(has)
            && (self.arches.is_empty() || self.arches.iter().any(|a| a == arch))
            && !self.not_arches.iter().any(|a| a == arch)
    }
}

#[derive(Debug)]
pub(crate) struct Profile {
    /// Host architecture (Rust's name) -> the libseccomp architectures
    /// its filter covers.
    pub arches: std::collections::BTreeMap<String, Vec<String>>,
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    arches: std::collections::BTreeMap<String, Vec<String>>,
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    about: String,
    names: Vec<String>,
    action: Option<String>,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    when: Vec<String>,
    #[serde(default)]
    unless: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    not_arches: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    one_of: Vec<String>,
}

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// "aN OP VALUE" or "aN & MASK == VALUE".
fn parse_arg(s: &str) -> Result<Arg, String> {
    let bad = || format!("condition {s:?}: want \"aN OP VALUE\" or \"aN & MASK == VALUE\"");
    let t: Vec<&str> = s.split_whitespace().collect();
    let index = t
        .first()
        .and_then(|a| a.strip_prefix('a'))
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|&n| n <= 5)
        .ok_or_else(bad)?;
    match t[1..] {
        ["&", mask, "==", v] => Ok(Arg {
            index,
            op: "SCMP_CMP_MASKED_EQ",
            value: number(mask).ok_or_else(bad)?,
            value_two: Some(number(v).ok_or_else(bad)?),
        }),
        [op, v] => Ok(Arg {
            index,
            op: match op {
                "==" => "SCMP_CMP_EQ",
                "!=" => "SCMP_CMP_NE",
                "<" => "SCMP_CMP_LT",
                "<=" => "SCMP_CMP_LE",
                ">" => "SCMP_CMP_GT",
                ">=" => "SCMP_CMP_GE",
                _ => return Err(bad()),
            },
            value: number(v).ok_or_else(bad)?,
            value_two: None,
        }),
        _ => Err(bad()),
    }
}

fn parse_action(s: &str) -> Result<Action, String> {
    Ok(match s {
        "allow" => Action::Allow,
        "EPERM" => Action::Errno(libc::EPERM as u32),
        "ENOSYS" => Action::Errno(libc::ENOSYS as u32),
        "EINVAL" => Action::Errno(libc::EINVAL as u32),
        _ => return Err(format!("action {s:?}: want allow, EPERM, ENOSYS or EINVAL")),
    })
}

pub(crate) fn parse(text: &str) -> Result<Profile, String> {
    let raw: RawProfile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut rules = Vec::new();
    for (i, r) in raw.rule.into_iter().enumerate() {
        let at = |e: String| format!("rule {} ({:?}): {e}", i + 1, r.about);
        if r.about.trim().is_empty() || r.names.is_empty() {
            return Err(at("needs an about and names".into()));
        }
        for c in r.needs.iter().chain(&r.when).chain(&r.unless) {
            if !crate::spec::ALL_CAPS.contains(&c.as_str()) {
                return Err(at(format!("unknown capability {c}")));
            }
        }
        for a in r.arches.iter().chain(&r.not_arches) {
            if !raw.arches.contains_key(a) {
                return Err(at(format!("architecture {a} is not in [arches]")));
            }
        }
        if !r.args.is_empty() && !r.one_of.is_empty() {
            return Err(at("args and one_of are exclusive".into()));
        }
        let args = if r.one_of.is_empty() {
            let all = r
                .args
                .iter()
                .map(|a| parse_arg(a))
                .collect::<Result<Vec<_>, _>>();
            let all = all.map_err(at)?;
            if all.is_empty() { vec![] } else { vec![all] }
        } else {
            let any = r.one_of.iter().map(|a| parse_arg(a).map(|x| vec![x]));
            any.collect::<Result<Vec<_>, _>>().map_err(at)?
        };
        let base = Rule {
            names: r.names.clone(),
            action: Action::Allow,
            when: r.when.clone(),
            unless: r.unless.clone(),
            arches: r.arches.clone(),
            not_arches: r.not_arches.clone(),
            args,
        };
        if r.needs.is_empty() {
            let action = parse_action(r.action.as_deref().unwrap_or("allow")).map_err(at)?;
            rules.push(Rule { action, ..base });
        } else {
            // "needs" is the usual pair: open with the capability, EPERM
            // (what the kernel itself says without it) otherwise.
            if r.action.is_some() || !r.when.is_empty() || !r.unless.is_empty() {
                return Err(at("needs replaces action, when and unless".into()));
            }
            rules.push(Rule {
                when: r.needs.clone(),
                ..base.clone()
            });
            rules.push(Rule {
                action: Action::Errno(libc::EPERM as u32),
                unless: r.needs,
                ..base
            });
        }
    }
    Ok(Profile {
        arches: raw.arches,
        rules,
    })
}

pub(crate) fn profile() -> &'static Profile {
    static P: OnceLock<Profile> = OnceLock::new();
    P.get_or_init(|| {
        parse(DATA).unwrap_or_else(|e| panic!("seccomp/default.toml: {e} (the tests check it)"))
    })
}

fn arg_json(a: &Arg) -> Value {
    let mut v = json!({"index": a.index, "value": a.value, "op": a.op});
    if let Some(two) = a.value_two {
        v["valueTwo"] = json!(two);
    }
    v
}

/// The OCI profile for a container with `caps` on host architecture
/// `arch` (Rust's name).
pub(crate) fn build(p: &Profile, caps: &[String], arch: &str) -> Value {
    let mut syscalls = Vec::new();
    for r in p.rules.iter().filter(|r| r.applies(caps, arch)) {
        let mut base = match r.action {
            // The default already says so; runtimes drop such rules
            // (libseccomp refuses them) and the spec reads shorter.
            Action::Errno(DEFAULT_ERRNO) => continue,
            Action::Allow => json!({"names": r.names, "action": "SCMP_ACT_ALLOW"}),
            Action::Errno(e) => {
                json!({"names": r.names, "action": "SCMP_ACT_ERRNO", "errnoRet": e})
            }
        };
        if r.args.is_empty() {
            syscalls.push(base);
            continue;
        }
        for alt in &r.args {
            base["args"] = alt.iter().map(arg_json).collect();
            syscalls.push(base.clone());
        }
    }
    let mut v = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": DEFAULT_ERRNO,
        "syscalls": syscalls,
    });
    // An architecture the data does not know gets libseccomp's default:
    // the native one only.
    if let Some(a) = p.arches.get(arch) {
        v["architectures"] = json!(a);
    }
    v
}

pub fn default_profile(caps: &[String]) -> Value {
    build(profile(), caps, std::env::consts::ARCH)
}

#[cfg(test)]
mod tests;
