//! The container's network, handed to its VM as Kata does it: for each
//! interface in the container's namespace, a tap device beside it and a
//! redirect each way between the two, so every frame the interface
//! receives leaves through the tap into the guest's NIC and back. The
//! guest's NIC takes the interface's MAC, addresses and routes; CNI,
//! bridges and published ports see the same interface they made.

use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use berth_network::link::{self, LinkConfig};

#[derive(Default)]
pub struct Plugged {
    pub links: Vec<LinkConfig>,
    /// The taps' fds, in the order of `links`, for QEMU.
    pub taps: Vec<OwnedFd>,
}

fn tap_name(i: usize) -> String {
    format!("vmtap{i}")
}

pub fn plug(ns: &Path) -> Result<Plugged> {
    berth_network::netns::run_in(ns, || -> Result<Plugged> {
        let mut p = Plugged::default();
        for (i, name) in interfaces()?.into_iter().enumerate() {
            let cfg = link::config(&name).with_context(|| format!("read interface {name}"))?;
            let tap = tap_name(i);
            let fd = link::create_tap(&tap).with_context(|| format!("create tap {tap}"))?;
            berth_network::tc::redirect(&name, &tap)
                .with_context(|| format!("redirect {name} to {tap}"))?;
            berth_network::tc::redirect(&tap, &name)
                .with_context(|| format!("redirect {tap} to {name}"))?;
            p.links.push(cfg);
            p.taps.push(fd);
        }
        Ok(p)
    })
    .map_err(|e| anyhow!("{e}"))?
    .with_context(|| format!("plug the VM into {}", ns.display()))
}

/// Undoes [`plug`] as far as the namespace still exists: the taps went
/// with QEMU's fds, the redirects on the interfaces go here.
pub fn release(ns: &Path, interfaces: &[String]) {
    let _ = berth_network::netns::run_in(ns, || {
        for name in interfaces {
            let _ = berth_network::tc::clear_redirect(name);
        }
    });
}

/// The namespace's interfaces but loopback and taps of an earlier VM.
fn interfaces() -> Result<Vec<String>> {
    // SAFETY: if_nameindex(3) returns an array ended by a zero entry (or
    // null), freed below with if_freenameindex and not used after.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Err(std::io::Error::last_os_error()).context("list interfaces");
        }
        let mut names = Vec::new();
        let mut at = list;
        while (*at).if_index != 0 {
            let name = CStr::from_ptr((*at).if_name).to_string_lossy().into_owned();
            if name != "lo" && !name.starts_with("vmtap") {
                names.push(name);
            }
            at = at.add(1);
        }
        libc::if_freenameindex(list);
        Ok(names)
    }
}
