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

/// How long what was learnt of the host's iptables is taken as still
/// true. Each look is an iptables run (4 ms here); a daemon starting a
/// burst of pods looks once per burst. A rule flushed by hand comes back
/// on the first attachment after this long, where a CLI run notices at
/// once (every run is a new process, with a new memo).
const FRESH: Duration = Duration::from_secs(10);

/// What iptables said, by what was looked at, for `FRESH`: the memo of
/// one `Cni` and its clones (the engine's, in berthd the daemon's
/// lifetime), so that two engines or two tests in one process never take
/// each other's answers for their own.
#[derive(Debug, Default)]
pub struct Memo {
    seen: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Memo {
    fn seen(&self, key: &str) -> Option<bool> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(key) {
            Some((v, at)) if at.elapsed() < FRESH => Some(*v),
            _ => None,
        }
    }

    fn remember(&self, key: &str, value: Option<bool>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match value {
            Some(v) => seen.insert(key.to_string(), (v, Instant::now())),
            None => seen.remove(key),
        };
    }

    /// True when the host forwards by default (FORWARD policy ACCEPT):
    /// then the containers' traffic passes without the firewall plugin's
    /// rules.
    pub fn forward_accepts(&self) -> bool {
        const KEY: &str = "FORWARD policy";
        if let Some(v) = self.seen(KEY) {
            return v;
        }
        let accepts = forward_policy_accepts();
        self.remember(KEY, Some(accepts));
        accepts
    }

    /// Makes the network's masquerade rule unless it is there (it goes
    /// with a reboot, or an iptables flush).
    pub fn ensure_masquerade(&self, net: &Network) -> Result<(), CniError> {
        let key = rule(net).join(" ");
        if self.seen(&key) == Some(true) {
            return Ok(());
        }
        if !run("-C", net)?.status.success() {
            let out = run("-A", net)?;
            if !out.status.success() {
                return Err(failed("iptables -A", net, &out));
            }
        }
        self.remember(&key, Some(true));
        Ok(())
    }

    /// Removes the rule; absent is fine.
    pub fn remove_masquerade(&self, net: &Network) -> Result<(), CniError> {
        self.remember(&rule(net).join(" "), None);
        while run("-C", net)?.status.success() {
            let out = run("-D", net)?;
            if !out.status.success() {
                return Err(failed("iptables -D", net, &out));
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::Memo;

    #[test]
    fn a_memo_is_its_owners_alone_and_forgets_what_is_removed() {
        let (a, b) = (Memo::default(), Memo::default());
        a.remember("rule", Some(true));
        assert_eq!(a.seen("rule"), Some(true));
        assert_eq!(b.seen("rule"), None, "another Cni's memo");
        a.remember("rule", None);
        assert_eq!(a.seen("rule"), None);
    }
}
