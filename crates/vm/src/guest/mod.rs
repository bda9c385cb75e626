//! The guest agent: PID 1 of the VM.

pub mod agent;
pub mod boot;
pub mod net;

use std::fs::File;

/// The agent's life: boot, serve the host, end the VM (a reboot, which
/// QEMU, started with -no-reboot, takes as its exit). Errors go to the
/// console (the host keeps it as console.log).
pub fn main() -> ! {
    if let Err(e) = run() {
        eprintln!("berth-vm-agent: {e:#}");
    }
    rustix::fs::sync();
    // SAFETY: reboot(2) with the restart command; nothing of this process
    // runs after it.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    std::process::exit(1)
}

fn run() -> anyhow::Result<()> {
    let init_ms = boot::uptime_ms();
    if std::process::id() != 1 {
        anyhow::bail!("berth-vm-agent runs as the guest's init (PID 1) only");
    }
    boot::prepare()?;
    let port = boot::find_port(boot::PORT_NAME)?;
    let port = File::options().read(true).write(true).open(&port)?;
    agent::Agent::new(port)?.serve(init_ms)
}
