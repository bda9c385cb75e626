//! Shared fixtures: a network of the test's own (bridge, subnet, state dir),
//! netns pins, and the checks that nothing is left on the host afterwards.
//! Everything is torn down in Drop, so a failing assertion still cleans up.
#![allow(dead_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_network::{Cni, Network, link, netns};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cni: Cni,
    pub net: Network,
    pins: Vec<PathBuf>,
    attached: Vec<(String, String)>,
}

impl Fixture {
    /// `n` picks the subnet 10.77.(200+n).0/24 and bridge `bt<n>`, so tests
    /// can run side by side.
    pub fn new(name: &str, n: u8) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut cni = Cni::new(dir.path().join("state"));
        // The whole chain, whatever this host's FORWARD policy.
        cni.firewall = Some(true);
        let subnet = format!("10.77.{}.0/24", 200 + u32::from(n))
            .parse()
            .unwrap();
        let net = Network::new(name, &format!("bt{n}"), subnet, None, false).unwrap();
        // A leftover from an earlier, killed run would make results lie.
        link::delete(&net.bridge).unwrap();
        Fixture {
            dir,
            cni,
            net,
            pins: Vec::new(),
            attached: Vec::new(),
        }
    }

    pub fn netns_dir(&self) -> PathBuf {
        self.dir.path().join("netns")
    }

    pub fn netns(&mut self, name: &str) -> PathBuf {
        let p = netns::create(&self.netns_dir(), name).unwrap();
        self.pins.push(p.clone());
        p
    }

    /// Container ids carry the pid so leftovers of other runs never match.
    pub fn cid(&self, name: &str) -> String {
        format!("{}-{name}-{}", self.net.name, std::process::id())
    }

    /// Records an attachment for Drop to undo if the test does not.
    pub fn track(&mut self, cid: &str, ifname: &str) {
        self.attached.push((cid.to_string(), ifname.to_string()));
    }

    pub fn ipam_leases(&self) -> Vec<String> {
        let dir = self.cni.ipam_dir().join(&self.net.name);
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// iptables lines that belong to this fixture's network: its name (in
    /// every CNI comment), subnet and bridge.
    pub fn our_rules(&self) -> Vec<String> {
        let prefix = self.net.subnet.to_string();
        let prefix = prefix.trim_end_matches("0/24");
        let name = format!("\\\"{}\\\"", self.net.name);
        iptables_save()
            .into_iter()
            .filter(|l| l.contains(&name) || l.contains(prefix) || l.contains(&self.net.bridge))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for (cid, ifname) in &self.attached {
            let _ = self
                .cni
                .detach(&self.net.name, cid, Path::new(""), ifname, None);
        }
        for p in &self.pins {
            let _ = netns::remove(p);
        }
        // The bridge and the network's masquerade rule.
        let _ = self.cni.remove_network(&self.net);
        let _ = link::delete(&self.net.bridge);
        unmount_all(&self.netns_dir());
    }
}

/// Undoes the self bind mount netns::create puts on its directory.
pub fn unmount_all(dir: &Path) {
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c is a valid path; stops at EINVAL (not a mount point).
    while unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {}
}

pub fn mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(p))
}

/// All iptables (v4) rules and chains, counters stripped.
pub fn iptables_save() -> Vec<String> {
    let out = Command::new("iptables-save").output().unwrap();
    assert!(out.status.success(), "iptables-save: {:?}", out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.strip_prefix(':') {
            // ":CHAIN POLICY [p:b]" -> ":CHAIN POLICY"
            Some(_) => l.rsplit_once(' ').map_or(l, |(a, _)| a).to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// Non-global CNI chains the given lines jump to or define.
pub fn private_chains(lines: &[String]) -> Vec<String> {
    let global = ["CNI-HOSTPORT-", "CNI-FORWARD", "CNI-ADMIN"];
    let mut v: Vec<String> = lines
        .iter()
        .flat_map(|l| l.split([' ', ':']))
        .filter(|w| w.starts_with("CNI-") && !global.iter().any(|g| w.starts_with(g)))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Runs `cmd` in the netns at `ns` through nsenter; returns success.
pub fn in_netns(ns: &Path, cmd: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(cmd)
        .output()
        .unwrap()
}
