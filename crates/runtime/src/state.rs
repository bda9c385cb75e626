//! The runtime's record of each container, kept under its root directory
//! (one directory per container id), and the OCI state view built from it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupRecord;
use crate::error::{Context, Error, Result};
use crate::fsutil::atomic_write;
use crate::{id, procfs};

/// The runtime-spec version this runtime implements.
pub const OCI_VERSION: &str = "1.2.0";

pub const STATE_FILE: &str = "state.json";
/// A copy of the container's config.json, needed later by exec, update and
/// the poststop hooks after the bundle may be gone.
pub const CONFIG_FILE: &str = "config.json";
/// The fifo the init process blocks on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the runtime keeps about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub init_pid: i32,
    /// Start time of the init process (clock ticks since boot): tells our
    /// init apart from a later process that reused its pid.
    pub init_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 with nanoseconds, UTC.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup: CgroupRecord,
    /// While the container is being made (no init yet): the pid and start
    /// time of the runtime process making it. If that process dies
    /// half-way, the record still names the cgroups for `delete` to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<(i32, u64)>,
}

/// The OCI state document, shaped as runc prints it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: String,
    pub rootfs: String,
    pub created: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ContainerState {
    pub fn oci(&self, status: Status) -> OciState {
        OciState {
            oci_version: OCI_VERSION.into(),
            id: self.id.clone(),
            // A stopped container has no process to name.
            pid: if status == Status::Stopped {
                0
            } else {
                self.init_pid
            },
            status: status.as_str().into(),
            bundle: self.bundle.display().to_string(),
            rootfs: self.rootfs.display().to_string(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.annotations.clone(),
        }
    }

    pub fn init_alive(&self) -> bool {
        procfs::is_alive(self.init_pid, self.init_start_time)
    }
}

/// The directory tree under the runtime's `--root`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Claims the id: the directory's creation is the atomic test that no
    /// other container has it.
    pub fn create_dir(&self, id: &str) -> Result<PathBuf> {
        id::validate(id)?;
        // Only root looks into the state of every container.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .ctx(|| format!("create state root {}", self.root.display()))?;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists(id.to_string()))
            }
            Err(e) => Err(Error::os(format!("create {}", dir.display()), e)),
        }
    }

    pub fn load(&self, id: &str) -> Result<ContainerState> {
        id::validate(id)?;
        let path = self.dir(id).join(STATE_FILE);
        match fs::read(&path) {
            Ok(raw) => serde_json::from_slice(&raw)
                .map_err(|e| Error::Other(format!("{}: corrupt state: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotExist(id.to_string())),
            Err(e) => Err(Error::os(format!("read {}", path.display()), e)),
        }
    }

    pub fn save(&self, state: &ContainerState) -> Result<()> {
        let raw = serde_json::to_vec(state).expect("state serializes");
        atomic_write(&self.dir(&state.id).join(STATE_FILE), &raw, 0o600)
    }

    /// Ids of every container directory that holds a state file.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::os(format!("read {}", self.root.display()), e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::os(format!("remove {}", dir.display()), e)),
        }
    }

    /// Serialises operations that change one container (start, kill,
    /// delete...) between concurrent runtime invocations.
    pub fn lock(&self, id: &str) -> Result<DirLock> {
        id::validate(id)?;
        let dir = self.dir(id);
        let file = match File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotExist(id.to_string()));
            }
            Err(e) => return Err(Error::os(format!("open {}", dir.display()), e)),
        };
        // SAFETY: a valid fd; the lock goes with `file`, kept in DirLock.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::os(
                format!("lock {}", dir.display()),
                io::Error::last_os_error(),
            ));
        }
        Ok(DirLock { _file: file })
    }
}

/// Holds an exclusive flock until dropped.
pub struct DirLock {
    _file: File,
}

/// Now as RFC 3339 with nanoseconds in UTC, the form runc writes.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}
