//! A container's directory under berth-vm's root and the record in it.
//! The keeper writes the record (it is its only writer while it lives);
//! `delete` removes the directory once the keeper is gone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use berth_base::process::ProcessId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    /// The container's process as the host sees it: the keeper.
    pub keeper: ProcessId,
    pub qemu: ProcessId,
    pub created: String,
    pub started: bool,
    /// The guest's kernel release.
    pub kernel: String,
    pub accel: String,
    /// The namespace whose interfaces the guest took over.
    pub netns: Option<PathBuf>,
    pub interfaces: Vec<String>,
    pub annotations: serde_json::Value,
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
    pub fn ctl(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }
    pub fn share(&self) -> PathBuf {
        self.dir.join("share")
    }
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    /// Why the VM ended other than by its container's exit.
    pub fn reason(&self) -> PathBuf {
        self.dir.join("reason")
    }

    pub fn load(&self) -> Result<Record> {
        let raw = match std::fs::read(self.record()) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = self.dir.file_name().unwrap_or_default().to_string_lossy();
                bail!("container \"{id}\" does not exist")
            }
            Err(e) => return Err(e).with_context(|| format!("read {}", self.record().display())),
        };
        serde_json::from_slice(&raw).with_context(|| format!("{}", self.record().display()))
    }

    pub fn save(&self, r: &Record) -> Result<()> {
        let json = serde_json::to_vec_pretty(r).expect("a record serializes");
        berth_base::fs::atomic_write(&self.record(), &json, 0o600)
            .with_context(|| format!("write {}", self.record().display()))
    }
}

/// runc's status words, from the record and whether the keeper lives.
pub fn status(r: &Record) -> &'static str {
    match (r.keeper.is_alive(), r.started) {
        (false, _) => "stopped",
        (true, false) => "created",
        (true, true) => "running",
    }
}
