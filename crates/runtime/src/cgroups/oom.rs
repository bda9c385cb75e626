//! How many times the kernel's OOM killer struck in a process's memory
//! cgroup: for a monitor that must say, when the container's init has
//! exited, whether it was killed for memory.

use std::path::{Path, PathBuf};

use super::layout::Layout;
use crate::fsutil::read_kernel_file;

/// The file that counts a cgroup's OOM kills (v1 memory.oom_control, v2
/// memory.events: both have an `oom_kill N` line).
#[derive(Debug, Clone)]
pub struct OomCounter {
    file: PathBuf,
}

impl OomCounter {
    /// The counter of the memory cgroup `pid` is in now, seen through this
    /// process's mounts; None when there is no memory controller.
    pub fn of_pid(pid: i32) -> Option<OomCounter> {
        let mountinfo = read_kernel_file(Path::new("/proc/self/mountinfo")).ok()?;
        let cgroup = read_kernel_file(Path::new(&format!("/proc/{pid}/cgroup"))).ok()?;
        let layout = Layout::parse(&mountinfo, &cgroup);
        let (h, name) = match layout
            .hierarchies
            .iter()
            .find(|h| !h.v2 && h.controllers.iter().any(|c| c == "memory"))
        {
            Some(h) => (h, "memory.oom_control"),
            None => (layout.v2()?, "memory.events"),
        };
        let rel = layout.own_path(h);
        let file = h
            .mountpoint
            .join(rel.strip_prefix("/").unwrap_or(&rel))
            .join(name);
        file.exists().then_some(OomCounter { file })
    }

    /// The kills so far (0 when the cgroup is gone).
    pub fn kills(&self) -> u64 {
        read_kernel_file(&self.file)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}
