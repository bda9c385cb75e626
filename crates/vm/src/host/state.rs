//! What berth-vm keeps under its root: a directory per container (its
//! record) and a directory per VM (`.vm-NAME`: its record, control socket,
//! console log and shared directory). A VM holds one container, or the
//! containers of one pod.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use berth_base::process::ProcessId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A container, as the host sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    /// The container's process as the host sees it: its keeper.
    pub keeper: ProcessId,
    /// The VM it runs in (its directory's name without `.vm-`).
    pub vm: String,
    pub created: String,
    pub started: bool,
    pub annotations: serde_json::Value,
}

/// A VM and what it was made with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    pub name: String,
    /// The process that owns QEMU and routes every channel to the agent.
    pub holder: ProcessId,
    pub qemu: ProcessId,
    /// The guest's kernel release.
    pub kernel: String,
    pub accel: String,
    /// The pod (CRI sandbox) whose containers this VM runs, if any.
    pub sandbox: Option<String>,
    /// The namespace whose interfaces the guest took over.
    pub netns: Option<PathBuf>,
    pub interfaces: Vec<String>,
    pub boot: Boot,
    /// Booted ahead of any container, and not claimed yet.
    #[serde(default)]
    pub warm: bool,
    /// What it booted: a claim takes only a VM of the initramfs and size
    /// the container would get.
    #[serde(default)]
    pub initramfs: PathBuf,
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub memory_mib: u64,
}

/// Where a VM's start went, in milliseconds: QEMU and its firmware until
/// the guest's kernel ran, the kernel until the agent (its init), the
/// agent until it answered, the network's takeover in the guest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Boot {
    pub qemu_ms: u64,
    pub kernel_ms: u64,
    pub agent_ms: u64,
    pub network_ms: u64,
}

pub struct Dirs {
    pub dir: PathBuf,
}

impl Dirs {
    pub fn new(root: &Path, id: &str) -> Result<Dirs> {
        berth_runtime::id::validate(id).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Dirs { dir: root.join(id) })
    }

    pub fn record(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn load(&self) -> Result<Record> {
        let id = self.dir.file_name().unwrap_or_default().to_string_lossy();
        load(&self.record(), &format!("container \"{id}\""))
    }

    pub fn save(&self, r: &Record) -> Result<()> {
        save(&self.record(), r)
    }
}

pub struct VmDirs {
    pub dir: PathBuf,
}

impl VmDirs {
    pub fn new(root: &Path, name: &str) -> VmDirs {
        VmDirs {
            dir: root.join(format!(".vm-{name}")),
        }
    }

    pub fn record(&self) -> PathBuf {
        self.dir.join("vm.json")
    }
    pub fn ctl(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }
    /// Exported to the guest; each container's rootfs and bind sources
    /// in a directory named after it.
    pub fn share(&self) -> PathBuf {
        self.dir.join("share")
    }
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }

    pub fn load(&self) -> Result<VmRecord> {
        load(&self.record(), &format!("VM {}", self.dir.display()))
    }

    pub fn save(&self, r: &VmRecord) -> Result<()> {
        save(&self.record(), r)
    }
}

fn load<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let raw = match std::fs::read(path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{what} does not exist"),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    serde_json::from_slice(&raw).with_context(|| format!("{}", path.display()))
}

fn save<T: Serialize>(path: &Path, r: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(r).expect("a record serializes");
    berth_base::fs::atomic_write(path, &json, 0o600)
        .with_context(|| format!("write {}", path.display()))
}

/// runc's status words, from the record and whether the keeper lives.
pub fn status(r: &Record) -> &'static str {
    match (r.keeper.is_alive(), r.started) {
        (false, _) => "stopped",
        (true, false) => "created",
        (true, true) => "running",
    }
}

/// The live VMs under `root`.
pub fn vms(root: &Path) -> Vec<(VmDirs, VmRecord)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let name = name.strip_prefix(".vm-")?.to_string();
            let dirs = VmDirs::new(root, &name);
            let r = dirs.load().ok()?;
            r.holder.is_alive().then_some((dirs, r))
        })
        .collect()
}
