//! QEMU's command line for one container's VM: the guest kernel and
//! initramfs, the agent's virtio-serial port on a socket the keeper holds,
//! the shared directory over virtio-9p, one virtio NIC per tap, and the
//! vCPUs and memory the container's limits ask for.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::guest::boot::{PORT_NAME, SHARE_TAG};
use crate::host::assets::Assets;

/// Memory the guest's kernel and agent need beside the container's own.
const OVERHEAD_MIB: u64 = 160;
/// A container without a memory limit gets this much guest memory (only
/// what the guest touches is ever allocated on the host).
const DEFAULT_MIB: u64 = 1024;

/// The guest kernel's command line: the console on the first serial port
/// (console.log), a reboot (QEMU's exit, -no-reboot) on panic, cgroup2
/// only, and nothing probed, checked or calibrated that this VM does not
/// need. Without ACPI (its tables and interrupt routing cost a third of a
/// second under emulation) the CPUs come from the MP table and a reboot
/// is a triple fault. Measured one by one in docs/benchmarks.md.
const KERNEL_ARGS: &str = "console=ttyS0 quiet loglevel=1 panic=-1 reboot=t rdinit=/init \
     cgroup_no_v1=all acpi=off pci=lastbus=0 mitigations=off 8250.nr_uarts=1 \
     i8042.noaux i8042.nokbd i8042.nopnp tsc=reliable no_timer_check random.trust_cpu=on \
     audit=0 selinux=0 apparmor=0 nowatchdog nmi_watchdog=0 cryptomgr.notests noresume";

/// Debian's qemu-system-data ships it.
const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// The fds the QEMU process finds open: the agent's socket first, then one
/// tap per NIC.
pub const AGENT_FD: i32 = 3;

pub struct Machine<'a> {
    pub assets: &'a Assets,
    pub accel: &'a str,
    pub share: &'a Path,
    pub console_log: &'a Path,
    /// One MAC per tap, in fd order after the agent's.
    pub nics: Vec<[u8; 6]>,
    pub cpus: u32,
    pub memory_mib: u64,
}

/// vCPUs from the CPU quota (rounded up; 1 without one) and memory from
/// the limit plus the guest's own overhead.
pub fn size(spec: &Value) -> (u32, u64) {
    let res = &spec["linux"]["resources"];
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let cpus = match (res["cpu"]["quota"].as_i64(), res["cpu"]["period"].as_u64()) {
        (Some(q), Some(p)) if q > 0 && p > 0 => (q as u64).div_ceil(p) as u32,
        _ => 1,
    }
    .clamp(1, host_cpus);
    let memory = match res["memory"]["limit"].as_i64() {
        Some(l) if l > 0 => (l as u64).div_ceil(1 << 20) + OVERHEAD_MIB,
        _ => DEFAULT_MIB,
    };
    (cpus, memory)
}

impl Machine<'_> {
    pub fn command(&self) -> Command {
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        // qboot, QEMU's minimal firmware, jumps straight to the kernel
        // where SeaBIOS first runs its whole POST under emulation.
        if Path::new(QBOOT).is_file() {
            c.args(["-bios", QBOOT]);
        }
        // The pc machine: microvm stalls in timer calibration under TCG.
        c.args(["-M", "pc,hpet=off"]);
        match self.accel {
            "kvm" => c.args(["-accel", "kvm", "-cpu", "host"]),
            _ => c.args(["-accel", "tcg,thread=multi,tb-size=128", "-cpu", "max"]),
        };
        c.arg("-smp").arg(self.cpus.to_string());
        c.arg("-m").arg(format!("{}M", self.memory_mib));
        c.arg("-kernel").arg(&self.assets.kernel);
        c.arg("-initrd").arg(&self.assets.initramfs);
        let mut append = String::from(KERNEL_ARGS);
        // More for the guest's kernel (`loglevel=7` to see its boot in
        // console.log), from the environment.
        if let Ok(extra) = std::env::var("BERTH_VM_KERNEL_ARGS") {
            append.push(' ');
            append.push_str(&extra);
        }
        c.arg("-append").arg(append);
        c.arg("-serial")
            .arg(format!("file:{}", qemu_path(self.console_log)));
        c.args(["-device", "virtio-serial-pci,id=ser0"]);
        c.arg("-chardev")
            .arg(format!("socket,id=agent,fd={AGENT_FD},server=off"));
        c.arg("-device").arg(format!(
            "virtserialport,bus=ser0.0,chardev=agent,name={PORT_NAME}"
        ));
        c.arg("-fsdev").arg(format!(
            "local,id=share,path={},security_model=passthrough,multidevs=remap",
            qemu_path(self.share)
        ));
        c.arg("-device")
            .arg(format!("virtio-9p-pci,fsdev=share,mount_tag={SHARE_TAG}"));
        for (i, mac) in self.nics.iter().enumerate() {
            let fd = AGENT_FD + 1 + i as i32;
            c.arg("-netdev").arg(format!("tap,id=net{i},fd={fd}"));
            c.arg("-device").arg(format!(
                "virtio-net-pci,netdev=net{i},mac={}",
                crate::sys::mac_text(mac)
            ));
        }
        c
    }
}

/// A path inside a QEMU option, where a comma must be doubled.
fn qemu_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_size_the_vm() {
        let none = serde_json::json!({});
        assert_eq!(size(&none), (1, DEFAULT_MIB));
        let s = serde_json::json!({"linux": {"resources": {
            "cpu": {"quota": 150000, "period": 100000},
            "memory": {"limit": 64 * 1024 * 1024}
        }}});
        let (cpus, mib) = size(&s);
        assert_eq!(mib, 64 + OVERHEAD_MIB);
        let host = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(cpus, 2.min(host));
    }

    #[test]
    fn commas_in_paths_are_escaped_for_qemu() {
        assert_eq!(qemu_path(Path::new("/a,b/c")), "/a,,b/c");
    }
}
