//! Where the cgroup hierarchies are mounted and where this process sits in
//! them: v1 (one mount per controller group), v2 (one unified mount) or the
//! hybrid of both.

use std::path::{Path, PathBuf};

use crate::fsutil::read_kernel_file;

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// True for the cgroup2 (unified) hierarchy.
    pub v2: bool,
    /// v1: the controllers bound to this mount (including `name=...` for
    /// named hierarchies). v2: the controllers available at its root.
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
    /// The cgroup path that the mountpoint shows (not "/" inside a cgroup
    /// namespace or a container that bind-mounted a subtree).
    pub mount_root: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
    /// This process's cgroup path in each hierarchy, from /proc/self/cgroup.
    own: Vec<(Vec<String>, PathBuf)>,
}

impl Layout {
    pub fn detect() -> std::io::Result<Layout> {
        let mountinfo = read_kernel_file(Path::new("/proc/self/mountinfo"))?;
        let own = read_kernel_file(Path::new("/proc/self/cgroup"))?;
        let mut layout = Layout::parse(&mountinfo, &own);
        for h in layout.hierarchies.iter_mut().filter(|h| h.v2) {
            h.controllers = read_kernel_file(&h.mountpoint.join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect();
        }
        Ok(layout)
    }

    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Layout {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            let (fstype, super_opts) = (post[0], post[2]);
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => continue,
            };
            let controllers = if v2 {
                Vec::new()
            } else {
                super_opts
                    .split(',')
                    .filter(|o| is_v1_controller_opt(o))
                    .map(String::from)
                    .collect()
            };
            let h = Hierarchy {
                v2,
                controllers,
                mountpoint: PathBuf::from(berth_base::mountinfo::unescape(pre[4])),
                mount_root: PathBuf::from(berth_base::mountinfo::unescape(pre[3])),
            };
            // A hierarchy mounted twice: the first mount serves.
            if !hierarchies
                .iter()
                .any(|x| x.v2 == h.v2 && x.controllers == h.controllers)
            {
                hierarchies.push(h);
            }
        }
        let own = proc_cgroup
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ':');
                let _id = parts.next()?;
                let ctrls = parts.next()?;
                let path = parts.next()?;
                let ctrls = ctrls
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect();
                Some((ctrls, PathBuf::from(path)))
            })
            .collect();
        Layout { hierarchies, own }
    }

    pub fn v2(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.v2)
    }

    pub fn is_pure_v2(&self) -> bool {
        self.hierarchies.iter().all(|h| h.v2) && self.v2().is_some()
    }

    /// Whether this process may make containers' cgroups with limits: as
    /// root, or, for an ordinary user, on a pure v2 host that delegated
    /// it the cgroup above its own (systemd's user instance does), where
    /// a relative cgroups path goes.
    pub fn allows_limits(&self) -> bool {
        if !berth_base::rootless::in_user_namespace() && rustix::process::geteuid().is_root() {
            return true;
        }
        let Some(h) = self.v2().filter(|_| self.is_pure_v2()) else {
            return false;
        };
        let own = self.own_path(h);
        let base = own.parent().unwrap_or(&own);
        let dir = h.mountpoint.join(base.strip_prefix("/").unwrap_or(base));
        rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK).is_ok()
    }

    /// This process's cgroup in hierarchy `h`, relative to the mount.
    pub fn own_path(&self, h: &Hierarchy) -> PathBuf {
        let own = self
            .own
            .iter()
            .find(|(ctrls, _)| {
                if h.v2 {
                    ctrls.is_empty()
                } else {
                    ctrls == &h.controllers
                }
            })
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| PathBuf::from("/"));
        // /proc/self/cgroup paths are relative to the cgroup namespace root;
        // the mount may show a subtree of it.
        let rel = own.strip_prefix(&h.mount_root).unwrap_or(&own);
        Path::new("/").join(rel.strip_prefix("/").unwrap_or(rel))
    }
}

fn is_v1_controller_opt(o: &str) -> bool {
    o.starts_with("name=")
        || matches!(
            o,
            "cpu"
                | "cpuacct"
                | "cpuset"
                | "memory"
                | "devices"
                | "freezer"
                | "net_cls"
                | "net_prio"
                | "blkio"
                | "perf_event"
                | "hugetlb"
                | "pids"
                | "rdma"
                | "misc"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const OWN: &str = "9:name=systemd:/\n4:memory:/a/b\n1:cpu:/\n0::/\n";

    #[test]
    fn parses_hybrid() {
        let l = Layout::parse(HYBRID, OWN);
        assert_eq!(l.hierarchies.len(), 4);
        let mem = l
            .hierarchies
            .iter()
            .find(|h| h.controllers == ["memory"])
            .unwrap();
        assert_eq!(mem.mountpoint, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(l.own_path(mem), Path::new("/a/b"));
        assert!(!l.is_pure_v2());
        assert_eq!(
            l.v2().unwrap().mountpoint,
            Path::new("/sys/fs/cgroup/unified")
        );
        let named = l
            .hierarchies
            .iter()
            .find(|h| h.controllers == ["name=systemd"]);
        assert!(named.is_some());
    }

    #[test]
    fn parses_pure_v2_and_subtree_mounts() {
        let mi = "30 23 0:26 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = Layout::parse(mi, "0::/ctr/sub\n");
        assert!(l.is_pure_v2());
        assert_eq!(l.own_path(l.v2().unwrap()), Path::new("/sub"));
    }
}
