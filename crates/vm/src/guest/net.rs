//! The guest's side of the container's network: each NIC came up with the
//! MAC of the container's interface on the host; it takes that
//! interface's MTU, addresses and routes too.

use anyhow::{Context, Result, anyhow};
use berth_network::link::{self, LinkConfig};

pub fn take_over(links: &[LinkConfig]) -> Result<()> {
    for cfg in links {
        let name = match nic_with_mac(&cfg.mac)? {
            Some(name) => name,
            // A VM booted ahead of its container has NICs of MACs of their
            // own: the first one not yet up takes the interface's.
            None => {
                let name = idle_nic()?;
                link::set_mac(&name, cfg.mac).with_context(|| format!("set {name}'s MAC"))?;
                name
            }
        };
        link::set_mtu(&name, cfg.mtu).with_context(|| format!("set {name}'s MTU"))?;
        link::set_up(&name).with_context(|| format!("bring {name} up"))?;
        for a in &cfg.addrs {
            link::add_address(&name, *a).with_context(|| format!("add {a} to {name}"))?;
        }
        for r in &cfg.routes {
            link::add_route(&name, r)
                .with_context(|| format!("add the route to {} on {name}", r.dst))?;
        }
    }
    Ok(())
}

/// The guest's interface with this MAC (QEMU gave each NIC its host
/// interface's when it knew it at boot).
fn nic_with_mac(mac: &[u8; 6]) -> Result<Option<String>> {
    let want = crate::sys::mac_text(mac);
    Ok(nics()?.into_iter().find(|n| read(n, "address") == want))
}

/// The first NIC (by name) that is not up yet.
fn idle_nic() -> Result<String> {
    let down = |n: &String| {
        let flags = read(n, "flags");
        u32::from_str_radix(flags.trim_start_matches("0x"), 16)
            .is_ok_and(|f| f & libc::IFF_UP as u32 == 0)
    };
    nics()?
        .into_iter()
        .find(down)
        .ok_or_else(|| anyhow!("the guest has no NIC left for the container's interface"))
}

/// The guest's interfaces but loopback, by name.
fn nics() -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .context("list the guest's interfaces")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    Ok(names)
}

fn read(nic: &str, what: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{nic}/{what}"))
        .unwrap_or_default()
        .trim()
        .to_string()
}
