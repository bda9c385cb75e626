//! The container's network, handed to its VM as Kata does it: for each
//! interface in the container's namespace, a tap device beside it and a
//! redirect each way between the two, so every frame the interface
//! receives leaves through the tap into the guest's NIC and back. The
//! guest's NIC takes the interface's MAC, addresses and routes; CNI,
//! bridges and published ports see the same interface they made.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
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
            let tap = tap_name(i);
            let fd = link::create_tap(&tap).with_context(|| format!("create tap {tap}"))?;
            p.links.push(join(&name, &tap)?);
            p.taps.push(fd);
        }
        Ok(p)
    })
    .map_err(|e| anyhow!("{e}"))?
    .with_context(|| format!("plug the VM into {}", ns.display()))
}

/// Interface `name`'s configuration, after a redirect each way between it
/// and `tap` (both in the calling thread's namespace).
fn join(name: &str, tap: &str) -> Result<LinkConfig> {
    let cfg = link::config(name).with_context(|| format!("read interface {name}"))?;
    berth_network::tc::redirect(name, tap).with_context(|| format!("redirect {name} to {tap}"))?;
    berth_network::tc::redirect(tap, name).with_context(|| format!("redirect {tap} to {name}"))?;
    Ok(cfg)
}

/// The tap a pre-booted VM's NIC is born on, in its holder's own network
/// namespace until a container claims the VM.
pub const SPARE_TAP: &str = "vmtap0";

/// Makes the spare tap in the calling thread's namespace (the holder's
/// own) and a MAC of its own for the guest's NIC (locally administered,
/// unicast; the guest takes the container interface's when claimed).
pub fn spare() -> Result<(OwnedFd, [u8; 6])> {
    let fd = link::create_tap(SPARE_TAP).context("create the spare tap")?;
    let mut mac = [0u8; 6];
    berth_base::ids::fill_random(&mut mac[1..]);
    mac[0] = 0x02;
    Ok((fd, mac))
}

/// The one interface of `ns` a spare's NIC would take over (None: the
/// namespace has loopback only); an error where it has more than one, or
/// cannot be read. Nothing is changed.
pub fn spare_target(ns: &Path) -> Result<Option<String>> {
    let mut names = berth_network::netns::run_in(ns, interfaces)
        .map_err(|e| anyhow!("{e}"))?
        .with_context(|| format!("list the interfaces of {}", ns.display()))?;
    if names.len() > 1 {
        bail!(
            "the VM has one NIC, {} has {} interfaces",
            ns.display(),
            names.len()
        );
    }
    Ok(names.pop())
}

/// Moves the spare tap from the holder's namespace into `ns` and joins it
/// to interface `name` there (see [`spare_target`]); returns what the
/// guest takes over.
pub fn adopt(ns: &Path, name: &str) -> Result<LinkConfig> {
    let file = std::fs::File::open(ns).with_context(|| format!("open {}", ns.display()))?;
    link::move_to_netns(SPARE_TAP, file.as_fd())
        .with_context(|| format!("move the spare tap into {}", ns.display()))?;
    berth_network::netns::run_in(ns, || -> Result<LinkConfig> {
        link::set_up(SPARE_TAP).context("bring the tap up")?;
        join(name, SPARE_TAP)
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
