//! What a VM boots: Debian's kernel (setup.sh unpacks linux-image's
//! package into the kernel directory and decompresses its image), an
//! initramfs holding the static agent as /init and the few drivers it
//! loads, and the accelerator this host offers.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Where setup.sh installs the kernel and the agent.
pub const DEFAULT_DIR: &str = "/usr/local/lib/berth-vm";

/// The drivers the agent needs before anything else (virtio's PCI
/// transport, its serial port, 9p over virtio, the NIC); Debian builds
/// them all as modules. Their dependencies come from modules.dep.
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_console",
    "9pnet_virtio",
    "9p",
    "virtio_net",
];

#[derive(Debug, Clone)]
pub struct Assets {
    /// An uncompressed vmlinux (booted straight through PVH, no
    /// decompression under emulation) or a bzImage.
    pub kernel: PathBuf,
    pub release: String,
    pub initramfs: PathBuf,
}

/// The kernel and agent named on the command line, in BERTH_VM_KERNEL /
/// BERTH_VM_AGENT, or installed in [`DEFAULT_DIR`]; the initramfs is made
/// once per agent and kernel, in `cache`.
pub fn find(kernel_dir: Option<&Path>, agent: Option<&Path>, cache: &Path) -> Result<Assets> {
    let from_env = |var: &str| std::env::var_os(var).map(PathBuf::from);
    let dir = kernel_dir
        .map(Path::to_path_buf)
        .or_else(|| from_env("BERTH_VM_KERNEL"))
        .unwrap_or_else(|| Path::new(DEFAULT_DIR).join("kernel"));
    let agent = agent
        .map(Path::to_path_buf)
        .or_else(|| from_env("BERTH_VM_AGENT"))
        .unwrap_or_else(|| Path::new(DEFAULT_DIR).join("berth-vm-agent"));
    let modules_root = dir.join("lib/modules");
    let release = std::fs::read_dir(&modules_root)
        .ok()
        .and_then(|mut d| d.find_map(|e| e.ok()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .with_context(|| {
            format!(
                "no guest kernel in {} (scripts/setup.sh installs Debian's; or set BERTH_VM_KERNEL)",
                dir.display()
            )
        })?;
    let kernel = [
        dir.join("vmlinux"),
        dir.join(format!("boot/vmlinuz-{release}")),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .with_context(|| format!("no kernel image in {}", dir.display()))?;
    let initramfs = initramfs(&agent, &modules_root.join(&release), cache)?;
    Ok(Assets {
        kernel,
        release,
        initramfs,
    })
}

/// The agent runs before anything else in the guest: no loader, no
/// libraries. An ELF that names an interpreter (PT_INTERP) would die there
/// silently.
fn check_static(agent: &Path, raw: &[u8]) -> Result<()> {
    let u16_at = |o: usize| {
        raw.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        raw.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    // A 64-bit little-endian ELF: e_phoff, e_phentsize, e_phnum.
    let headers = (raw.get(..6) == Some(b"\x7fELF\x02\x01"))
        .then(|| Some((u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?)))
        .flatten();
    let Some((phoff, size, count)) = headers else {
        bail!(
            "the guest agent {} is not a 64-bit ELF binary",
            agent.display()
        );
    };
    const PT_INTERP: u32 = 3;
    for n in 0..count {
        let at = phoff + n * size;
        let kind = raw
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
        match kind {
            None => bail!(
                "the guest agent {} is a truncated ELF binary",
                agent.display()
            ),
            Some(PT_INTERP) => bail!(
                "the guest agent {} is dynamically linked; it must be static",
                agent.display()
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The initramfs for this agent and kernel, made if the cache lacks it.
fn initramfs(agent: &Path, modules: &Path, cache: &Path) -> Result<PathBuf> {
    let files = module_files(modules)?;
    let meta = std::fs::metadata(agent).with_context(|| {
        format!(
            "the guest agent {} (scripts/setup.sh installs it, scripts/build-vm-agent.sh builds it; or set BERTH_VM_AGENT)",
            agent.display()
        )
    })?;
    let mut key = Sha256::new();
    key.update(format!(
        "{}\n{}\n{}\n{}\n{}\n",
        agent.display(),
        meta.len(),
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        meta.ino(),
        modules.display()
    ));
    for f in &files {
        key.update(f.as_os_str().as_encoded_bytes());
    }
    let key: String = key.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = cache.join(format!("initramfs-{key}.cpio"));
    if out.is_file() {
        return Ok(out);
    }
    // Checked once, when its initramfs is made, not at every boot.
    let raw = std::fs::read(agent).with_context(|| format!("read {}", agent.display()))?;
    check_static(agent, &raw)?;
    std::fs::create_dir_all(cache).with_context(|| format!("create {}", cache.display()))?;
    let mut cpio = Cpio::default();
    cpio.dir("dev");
    cpio.node("dev/console", libc::S_IFCHR | 0o600, (5, 1));
    cpio.dir("mod");
    let mut list = String::new();
    for f in &files {
        let name = format!("mod/{}", f.file_name().expect("a file").to_string_lossy());
        cpio.file(&name, 0o644, &std::fs::read(f)?);
        list.push_str(&format!("/{name}\n"));
    }
    cpio.file("modules", 0o644, list.as_bytes());
    cpio.file("init", 0o755, &raw);
    berth_base::fs::atomic_write(&out, &cpio.finish(), 0o644)
        .with_context(|| format!("write {}", out.display()))?;
    // Older agents' and kernels' initramfs go (QEMU reads the file whole
    // when it starts a VM).
    for e in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("initramfs-") && e.path() != out {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(out)
}

/// The module files to load, dependencies first, from modules.dep.
fn module_files(modules: &Path) -> Result<Vec<PathBuf>> {
    let dep_file = modules.join("modules.dep");
    let deps = std::fs::read_to_string(&dep_file)
        .with_context(|| format!("read {}", dep_file.display()))?;
    let table: Vec<(String, Vec<String>)> = deps
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| {
            (
                m.to_string(),
                d.split_whitespace().map(String::from).collect(),
            )
        })
        .collect();
    let name_of = |path: &str| {
        let base = path.rsplit('/').next().unwrap_or(path);
        base.split(".ko").next().unwrap_or(base).replace('-', "_")
    };
    let mut order: Vec<String> = Vec::new();
    fn visit(m: &str, table: &[(String, Vec<String>)], order: &mut Vec<String>) {
        if order.iter().any(|o| o == m) {
            return;
        }
        if let Some((_, deps)) = table.iter().find(|(p, _)| p == m) {
            for d in deps {
                visit(d, table, order);
            }
        }
        order.push(m.to_string());
    }
    for want in MODULES {
        let path = table
            .iter()
            .find(|(p, _)| name_of(p) == *want)
            .map(|(p, _)| p.clone())
            .with_context(|| {
                format!(
                    "the guest kernel has no module {want} ({})",
                    dep_file.display()
                )
            })?;
        visit(&path, &table, &mut order);
    }
    Ok(order.into_iter().map(|p| modules.join(p)).collect())
}

/// A newc cpio archive, as the kernel unpacks an initramfs.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        let _ = write!(self.out, "070701");
        for f in fields {
            let _ = write!(self.out, "{f:08x}");
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, libc::S_IFDIR | 0o755, (0, 0), &[]);
    }

    fn node(&mut self, name: &str, mode: u32, rdev: (u32, u32)) {
        self.entry(name, mode, rdev, &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, libc::S_IFREG | perm, (0, 0), data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

/// KVM where it can run a stock kernel, else TCG; BERTH_VM_ACCEL=kvm|tcg
/// decides instead. /dev/kvm alone is not enough: a nested host may offer
/// a KVM that runs a stock kernel far slower than emulation, and such a
/// CPU does not advertise vmx or svm.
pub fn accelerator() -> &'static str {
    match std::env::var("BERTH_VM_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        Ok("tcg") => "tcg",
        _ if kvm_usable() => "kvm",
        _ => "tcg",
    }
}

/// /dev/kvm opens and the CPU advertises vmx or svm.
pub fn kvm_usable() -> bool {
    let usable = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virt = cpu
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    usable && virt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"abc");
        let out = c.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        let name_at = 110;
        assert_eq!(&out[name_at..name_at + 5], b"init\0");
        // header + "init\0" padded to 116, then "abc" padded to 120
        assert_eq!(&out[116..119], b"abc");
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn only_a_static_agent_is_taken() {
        let p = Path::new("agent");
        let own = std::fs::read("/proc/self/exe").unwrap();
        // This test binary is dynamically linked: it names ld-linux.
        let e = check_static(p, &own).unwrap_err().to_string();
        assert!(e.contains("dynamically linked"), "{e}");
        let busybox = std::fs::read("/bin/busybox").unwrap();
        check_static(p, &busybox).unwrap();
        assert!(
            check_static(p, b"#!/bin/sh\n")
                .unwrap_err()
                .to_string()
                .contains("not a 64-bit ELF")
        );
        assert!(
            check_static(p, &own[..0x40])
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
    }

    #[test]
    fn modules_come_after_their_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let mut dep = String::new();
        for m in MODULES {
            dep.push_str(&format!("kernel/{m}.ko: kernel/virtio.ko\n"));
        }
        dep.push_str("kernel/virtio.ko: kernel/virtio_ring.ko\nkernel/virtio_ring.ko:\n");
        std::fs::write(dir.path().join("modules.dep"), dep).unwrap();
        let files = module_files(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            &names[..3],
            ["virtio_ring.ko", "virtio.ko", "virtio_pci.ko"]
        );
        assert_eq!(names.len(), MODULES.len() + 2);
        std::fs::write(dir.path().join("modules.dep"), "kernel/other.ko:\n").unwrap();
        let e = module_files(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no module virtio_pci"), "{e}");
    }
}
