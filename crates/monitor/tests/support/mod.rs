//! Test support: a sandbox per test (runtime roots, bundles and the
//! container's userdata under one temp dir), busybox bundles, monitors
//! started through `start_monitor`, and cleanup of everything a test made
//! (containers, monitors, mounts, the temp dir), pass or fail.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_monitor::{Config, Handler};
use serde_json::{Value, json};

pub fn monitor_bin() -> PathBuf {
    std::env::var_os("BERTH_MONITOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth-monitor")))
}

pub const RUNC: &str = "/usr/sbin/runc";

static SEQ: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Builtin,
    Runc,
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    containers: std::cell::RefCell<Vec<(Kind, String, PathBuf)>>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("berth-mon-test-")
            .tempdir()
            .expect("tempdir");
        Sandbox {
            dir,
            containers: Default::default(),
        }
    }

    pub fn builtin_root(&self) -> PathBuf {
        self.dir.path().join("rt")
    }

    pub fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    /// A busybox bundle running `args`.
    pub fn bundle(&self, args: &[&str], tty: bool) -> PathBuf {
        self.bundle_with(args, tty, |_| {})
    }

    /// A busybox bundle running `args`, its config edited by `edit`.
    pub fn bundle_with(&self, args: &[&str], tty: bool, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.dir.path().join(format!("bundle{}", seq()));
        make_rootfs(&dir.join("rootfs"));
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let mut config = berth_runtime::template::spec(false, v2);
        config["process"]["terminal"] = json!(tty);
        config["process"]["args"] = json!(args);
        config["root"]["readonly"] = json!(false);
        edit(&mut config);
        write_json(&dir.join("config.json"), &config);
        dir
    }

    /// A monitor config for a new container of `bundle`, registered for
    /// cleanup.
    pub fn config(&self, kind: Kind, bundle: &Path) -> (Config, PathBuf) {
        let n = seq();
        let id = format!("mon{}-{n}", std::process::id());
        let ud = self.dir.path().join(format!("userdata{n}"));
        fs::create_dir_all(&ud).unwrap();
        let runtime = match kind {
            Kind::Builtin => Handler::Builtin {
                root: self.builtin_root(),
                systemd_cgroup: false,
            },
            Kind::Runc => Handler::External {
                path: RUNC.into(),
                root: self.runc_root(),
                systemd_cgroup: false,
                options: Vec::new(),
            },
        };
        let cfg = Config {
            id: id.clone(),
            bundle: bundle.to_path_buf(),
            runtime,
            tty: false,
            stdin: false,
            log_path: ud.join("ctr.log"),
            log_max_size: 10 << 20,
            log_max_files: 1,
            exit_file: ud.join("exit.json"),
            attach_socket: ud.join("attach"),
            pid_file: ud.join("pid"),
            exit_command: None,
            events_dir: None,
            name: String::new(),
            image: String::new(),
            event_attributes: Default::default(),
            health: None,
        };
        let path = ud.join("monitor.json");
        self.containers.borrow_mut().push((kind, id, path.clone()));
        (cfg, path)
    }

    /// Registers a container made by other means (runc under the
    /// sandbox's runc root) for deletion.
    pub fn track(&self, id: &str) {
        self.containers.borrow_mut().push((
            Kind::Runc,
            id.to_string(),
            self.dir.path().join(format!("none-{id}")),
        ));
    }

    /// Writes the config and starts its monitor; the container's pid.
    pub fn launch(&self, cfg: &Config, path: &Path) -> berth_monitor::Result<i32> {
        cfg.save(path).unwrap();
        berth_monitor::start_monitor(&monitor_bin(), path).map(|s| s.pid)
    }

    pub fn start(&self, cfg: &Config) {
        match &cfg.runtime {
            Handler::Builtin { root, .. } => berth_runtime::Runtime::new(root, false)
                .start(&cfg.id)
                .expect("start"),
            Handler::External { path, root, .. } => {
                let out = Command::new(path)
                    .arg("--root")
                    .arg(root)
                    .args(["start", &cfg.id])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "runc start: {out:?}");
            }
        }
    }

    fn delete(&self, kind: Kind, id: &str) {
        match kind {
            Kind::Builtin => {
                let _ = berth_runtime::Runtime::new(self.builtin_root(), false).delete(id, true);
            }
            Kind::Runc => {
                let _ = Command::new(RUNC)
                    .arg("--root")
                    .arg(self.runc_root())
                    .args(["delete", "--force", id])
                    .output();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for (kind, id, config) in self.containers.borrow().iter() {
            self.delete(*kind, id);
            for pid in monitors_of(config) {
                // SAFETY: kill takes integers only.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        umount_under(self.dir.path());
    }
}

fn seq() -> usize {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

pub fn write_json(path: &Path, v: &Value) {
    fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// Live monitor processes started with `config`.
pub fn monitors_of(config: &Path) -> Vec<i32> {
    let needle = config.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(&needle)
            && !is_zombie(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

pub fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

pub fn alive(pid: i32) -> bool {
    // SAFETY: kill takes integers only; signal 0 just probes.
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    exists && !is_zombie(pid)
}

/// Waits for `cond`, failing the test after `secs`.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the monitor of `config` to have exited.
pub fn wait_monitor_gone(config: &Path) {
    wait_for("the monitor to exit", 20, || monitors_of(config).is_empty());
}

pub fn make_rootfs(dir: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is installed");
    for applet in [
        "sh", "cat", "echo", "sleep", "stty", "printf", "seq", "head", "yes", "true",
    ] {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// Unmounts everything below `dir`, deepest first.
pub fn umount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let c = std::ffi::CString::new(p).unwrap();
        // SAFETY: c is a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
