//! The guest's first second: the agent is PID 1 of a kernel that has
//! nothing mounted. It loads the drivers the host listed, leaves the
//! initramfs for a tmpfs root (pivot_root, which every container start
//! needs, cannot leave the initramfs itself), mounts what a container
//! runtime expects and finds the shared directory and the host's port.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustix::mount::{MountFlags, MountPropagationFlags};

/// Where the host's shared directory (rootfs and bind sources) appears.
pub const SHARE: &str = "/run/berth-vm/share";
/// The 9p tag the host exports the shared directory under.
pub const SHARE_TAG: &str = "berth";
/// The virtio-serial port the host's keeper listens on.
pub const PORT_NAME: &str = "berth.agent";
/// In the initramfs: the module files to load, in order, one per line.
pub const MODULE_LIST: &str = "/modules";

pub fn prepare() -> Result<()> {
    mount_fs("proc", "/proc", "proc", MountFlags::empty(), "")?;
    mount_fs("sysfs", "/sys", "sysfs", MountFlags::empty(), "")?;
    mount_fs(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MountFlags::empty(),
        "mode=0755",
    )?;
    load_modules()?;
    leave_initramfs()?;
    mount_fs(
        "devpts",
        "/dev/pts",
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )?;
    mount_fs(
        "shm",
        "/dev/shm",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        "mode=1777",
    )?;
    mount_fs(
        "cgroup2",
        "/sys/fs/cgroup",
        "cgroup2",
        MountFlags::empty(),
        "nsdelegate",
    )?;
    enable_controllers();
    mount_fs(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        "mode=1777",
    )?;
    let _ = std::os::unix::fs::symlink("/proc/self/fd", "/dev/fd");
    let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    mount_share()?;
    berth_network::link::set_up("lo").context("bring lo up")?;
    // The guest's network is the container's: unprivileged ICMP sockets
    // for every group, as berth gives a container's namespace on the host.
    let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
    Ok(())
}

/// Mounts `fstype` at `target` (made if missing).
fn mount_fs(source: &str, target: &str, fstype: &str, flags: MountFlags, data: &str) -> Result<()> {
    std::fs::create_dir_all(target).with_context(|| format!("create {target}"))?;
    let data = CString::new(data)?;
    rustix::mount::mount(source, target, fstype, flags, Some(data.as_c_str()))
        .with_context(|| format!("mount {fstype} on {target}"))
}

fn load_modules() -> Result<()> {
    let Ok(list) = std::fs::read_to_string(MODULE_LIST) else {
        return Ok(());
    };
    for path in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let file = File::open(path).with_context(|| format!("open module {path}"))?;
        let params = CString::default();
        // SAFETY: finit_module(2) takes an open fd, a NUL-terminated
        // parameter string that outlives the call, and integer flags.
        let rc =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e).with_context(|| format!("load module {path}"));
            }
        }
    }
    Ok(())
}

/// switch_root's work: a tmpfs becomes `/`, the initramfs's files go (they
/// would hold memory for nothing), proc, sys and dev move along.
fn leave_initramfs() -> Result<()> {
    let new = Path::new("/newroot");
    mount_fs(
        "root",
        "/newroot",
        "tmpfs",
        MountFlags::empty(),
        "mode=0755",
    )?;
    for dir in ["proc", "sys", "dev"] {
        let to = new.join(dir);
        std::fs::create_dir_all(&to)?;
        rustix::mount::mount_move(Path::new("/").join(dir), &to)
            .with_context(|| format!("move /{dir}"))?;
    }
    for dir in ["run", "tmp", "etc"] {
        std::fs::create_dir_all(new.join(dir))?;
    }
    remove_initramfs_files(Path::new("/"))?;
    std::env::set_current_dir(new)?;
    rustix::mount::mount_move(".", "/").context("move the new root onto /")?;
    rustix::process::chroot(".").context("chroot into the new root")?;
    std::env::set_current_dir("/")?;
    // Containers' mounts are their own; nothing propagates back.
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .context("make / private")?;
    Ok(())
}

/// Everything on the initramfs but the mount points in use.
fn remove_initramfs_files(root: &Path) -> Result<()> {
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        if ["proc", "sys", "dev", "newroot"].iter().any(|k| name == *k) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("remove {} from the initramfs", path.display()))?;
    }
    Ok(())
}

fn enable_controllers() {
    let Ok(all) = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers") else {
        return;
    };
    for c in all.split_whitespace() {
        // A controller the kernel will not delegate is simply not offered.
        let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", format!("+{c}"));
    }
}

fn mount_share() -> Result<()> {
    std::fs::create_dir_all(SHARE)?;
    // 9p's virtio transport may register a moment after its module loads.
    let opts = c"trans=virtio,version=9p2000.L,msize=262144,cache=mmap";
    let mut last = None;
    for _ in 0..100 {
        match rustix::mount::mount(SHARE_TAG, SHARE, "9p", MountFlags::empty(), Some(opts)) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(last.expect("tried")).context("mount the host's shared directory (9p)")
}

/// The device of the virtio-serial port named `name`.
pub fn find_port(name: &str) -> Result<PathBuf> {
    for _ in 0..200 {
        if let Ok(dir) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in dir.flatten() {
                let named = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if named.trim() == name {
                    return Ok(Path::new("/dev").join(e.file_name()));
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    bail!("no virtio-serial port named {name}")
}

/// The kernel's release, as `uname -r` says it.
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Milliseconds since the guest's kernel started (CLOCK_BOOTTIME: no
/// /proc needed, so it can be read before anything is mounted).
pub fn uptime_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}
