//! The iptables rules berth keeps itself rather than through a plugin: one
//! masquerade rule per network (the bridge plugin's ipMasq runs iptables
//! nine times per container to make and unmake a per-container chain), and
//! the look at the FORWARD policy that decides whether the firewall plugin
//! is needed at all.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cni::CniError;
use crate::network::Network;

fn iptables(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
}

/// How long what this process learnt of the host's iptables is taken as
/// still true. Each look is an iptables run (4 ms here); a daemon starting
/// a burst of pods looks once per burst. A rule flushed by hand comes back
/// on the first attachment after this long, where a CLI run notices at
/// once (every run is a new process).
const FRESH: Duration = Duration::from_secs(10);

/// The looks taken, by what was looked at, with their answer.
static SEEN: Mutex<Option<HashMap<String, (bool, Instant)>>> = Mutex::new(None);

fn seen(key: &str) -> Option<bool> {
    let seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    match seen.as_ref()?.get(key) {
        Some((v, at)) if at.elapsed() < FRESH => Some(*v),
        _ => None,
    }
}

fn remember(key: &str, value: Option<bool>) {
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let map = seen.get_or_insert_with(HashMap::new);
    match value {
        Some(v) => map.insert(key.to_string(), (v, Instant::now())),
        None => map.remove(key),
    };
}

/// True when the host forwards by default (FORWARD policy ACCEPT): then the
/// containers' traffic passes without the firewall plugin's rules.
pub fn forward_accepts() -> bool {
    const KEY: &str = "FORWARD policy";
    if let Some(v) = seen(KEY) {
        return v;
    }
    let accepts = forward_policy_accepts();
    remember(KEY, Some(accepts));
    accepts
}

fn forward_policy_accepts() -> bool {
    match iptables(&["-S", "FORWARD"]) {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .is_some_and(|l| l.trim() == "-P FORWARD ACCEPT"),
        // No iptables to ask: let the plugin decide (and fail clearly).
        _ => false,
    }
}

fn rule(net: &Network) -> Vec<String> {
    let s = net.subnet.to_string();
    [
        "POSTROUTING",
        "-s",
        &s,
        "!",
        "-d",
        &s,
        "-m",
        "comment",
        "--comment",
        &format!("berth network {}", net.name),
        "-j",
        "MASQUERADE",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

fn run(op: &str, net: &Network) -> Result<std::process::Output, CniError> {
    let r = rule(net);
    let mut args = vec!["-t", "nat", op];
    args.extend(r.iter().map(String::as_str));
    iptables(&args).map_err(|source| CniError::Io {
        what: "running iptables",
        path: "iptables".into(),
        source,
    })
}

fn failed(what: &str, net: &Network, out: &std::process::Output) -> CniError {
    CniError::Masquerade {
        network: net.name.clone(),
        why: format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim()),
    }
}

/// Makes the network's masquerade rule unless it is there (it goes with a
/// reboot, or an iptables flush).
pub fn ensure_masquerade(net: &Network) -> Result<(), CniError> {
    let key = rule(net).join(" ");
    if seen(&key) == Some(true) {
        return Ok(());
    }
    if !run("-C", net)?.status.success() {
        let out = run("-A", net)?;
        if !out.status.success() {
            return Err(failed("iptables -A", net, &out));
        }
    }
    remember(&key, Some(true));
    Ok(())
}

/// Removes the rule; absent is fine.
pub fn remove_masquerade(net: &Network) -> Result<(), CniError> {
    remember(&rule(net).join(" "), None);
    while run("-C", net)?.status.success() {
        let out = run("-D", net)?;
        if !out.status.success() {
            return Err(failed("iptables -D", net, &out));
        }
    }
    Ok(())
}
