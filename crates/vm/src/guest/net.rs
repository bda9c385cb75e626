//! The guest's side of the container's network: each NIC came up with the
//! MAC of the container's interface on the host; it takes that
//! interface's MTU, addresses and routes too.

use anyhow::{Context, Result, bail};
use berth_network::link::{self, LinkConfig};

pub fn take_over(links: &[LinkConfig]) -> Result<()> {
    for cfg in links {
        let name = nic_with_mac(&cfg.mac)?;
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
/// interface's).
fn nic_with_mac(mac: &[u8; 6]) -> Result<String> {
    let want = crate::sys::mac_text(mac);
    for e in std::fs::read_dir("/sys/class/net")
        .context("list the guest's interfaces")?
        .flatten()
    {
        let addr = std::fs::read_to_string(e.path().join("address")).unwrap_or_default();
        if addr.trim() == want {
            return Ok(e.file_name().to_string_lossy().into_owned());
        }
    }
    bail!("the guest has no NIC with MAC {want}")
}
