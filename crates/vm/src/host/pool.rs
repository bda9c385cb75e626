//! Spare VMs, booted ahead of their containers (Kata's VM factory, in
//! small): with `--warm N` berth-vm keeps N of them; `create` claims one
//! that fits instead of booting, and starts a replacement in the
//! background. A spare boots with one NIC on a tap in its holder's own
//! network namespace; the claim moves that tap into the container's
//! namespace, redirects it to the container's interface, and the guest's
//! NIC takes that interface's MAC and addresses, as a cold boot's would.
//!
//! Each of the N slots is a lock under ROOT/.locks that a spare's holder
//! holds until claimed, so concurrent commands never boot more than N.

use std::os::fd::RawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use berth_base::lock::{Flock, Wait};
use serde_json::{Value, json};

use crate::host::client::Client;
use crate::host::ops::{REQUEST_TIMEOUT, Vm, boot_timeout};
use crate::host::state::{self, VmDirs, VmRecord};
use crate::host::{fork, qemu};
use crate::proto::Msg;

impl Vm {
    /// A spare VM that fits the container (its size, this initramfs; its
    /// holder refuses a namespace of more interfaces than its one NIC),
    /// claimed for it; None when there is none.
    pub(crate) fn claim_spare(
        &self,
        spec: &Value,
        netns: Option<&Path>,
        sandbox: Option<&str>,
    ) -> Result<Option<(VmDirs, VmRecord)>> {
        let size = qemu::size(spec);
        let spares: Vec<(VmDirs, VmRecord)> = state::vms(&self.root)
            .into_iter()
            .filter(|(_, r)| r.warm && (r.cpus, r.memory_mib) == size)
            .collect();
        if spares.is_empty() {
            return Ok(None);
        }
        let initramfs = self.assets()?.initramfs;
        let claim = Msg::Claim {
            netns: netns.map(Path::to_path_buf),
            sandbox: sandbox.map(String::from),
        };
        for (dirs, r) in spares {
            if r.initramfs != initramfs {
                // Booted before the kernel or agent changed: it would hold
                // its slot forever, so it ends and a current one boots.
                let _ = ask(&dirs, &Msg::Retire);
                continue;
            }
            // Another command's claim may come first: try the next.
            if ask(&dirs, &claim).is_ok() {
                let r = dirs.load()?;
                return Ok(Some((dirs, r)));
            }
        }
        Ok(None)
    }

    /// Boots spares into the pool's free slots: `wait`ing until the pool
    /// is full (the `warm` command: its own boots, and those other
    /// commands began), or in a process of their own that the caller
    /// does not wait for (after a claim).
    pub fn fill_pool(&self, wait: bool) -> Result<()> {
        let mut slots = Vec::new();
        for i in 0..self.warm {
            if let Some(slot) = self.lock(&format!("spare-{i}"), Wait::No)? {
                slots.push(slot);
            }
        }
        if wait {
            self.boot_spares(slots)?;
            let timeout = boot_timeout();
            let deadline = Instant::now() + timeout;
            while self.spares() < self.warm {
                if Instant::now() > deadline {
                    bail!(
                        "the pool's spares did not boot within {} s",
                        timeout.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            return Ok(());
        }
        if slots.is_empty() {
            return Ok(());
        }
        fork::fork_and_wait(&[], move |report| {
            fork::report(report, &Ok(()));
            fork::detach_stdio();
            let _ = self.boot_spares(slots);
            std::process::exit(0)
        })
        .map(drop)
    }

    /// How many spares are booted and unclaimed.
    fn spares(&self) -> usize {
        state::vms(&self.root)
            .iter()
            .filter(|(_, r)| r.warm)
            .count()
    }

    /// Ends every spare nobody has claimed, those still booting as they
    /// come up, and returns when no spare holds a slot (each holder has
    /// cleaned up and gone).
    pub fn drain_pool(&self) -> Result<()> {
        let timeout = boot_timeout();
        let deadline = Instant::now() + timeout;
        while self.slots_held()? {
            for (dirs, _) in state::vms(&self.root).into_iter().filter(|(_, r)| r.warm) {
                // One already ending may not answer: asked again next round.
                let _ = ask(&dirs, &Msg::Retire);
            }
            if Instant::now() > deadline {
                bail!("spares still run after {} s", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Whether a spare (booting, or booted and unclaimed) holds one of the
    /// pool's slots.
    fn slots_held(&self) -> Result<bool> {
        let Ok(entries) = std::fs::read_dir(self.root.join(".locks")) else {
            return Ok(false);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(slot) = name.strip_suffix(".lock") else {
                continue;
            };
            if slot.starts_with("spare-") && self.lock(slot, Wait::No)?.is_none() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One spare per slot, each holder holding its slot (and not the
    /// slots still to boot); of the size of a container without limits.
    fn boot_spares(&self, slots: Vec<Flock>) -> Result<()> {
        let fds: Vec<RawFd> = slots.iter().map(Flock::raw_fd).collect();
        for (i, slot) in slots.into_iter().enumerate() {
            let name = format!("spare-{}", berth_base::ids::random_hex(6));
            self.boot(&name, &json!({}), None, None, &fds[i + 1..], Some(slot))?;
        }
        Ok(())
    }
}

/// A spare's holder's answer to a command it takes itself.
fn ask(vm: &VmDirs, m: &Msg) -> Result<()> {
    Client::connect(&vm.ctl(), REQUEST_TIMEOUT)?
        .request(m)
        .map(drop)
}
