//! A test's own berth: store root, run root and registry, with a busybox
//! image pulled from the registry. Everything the test made is removed
//! when it drops, pass or fail: containers (through berth), mounts, the
//! registry.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{E, Layout, Registry, Sandbox, layer_tar};

/// busybox's applets the tests use, as symlinks.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "sleep", "ls", "id", "hostname", "ip", "ping", "wget", "nc", "httpd",
    "true", "false", "env", "ps", "kill", "grep", "head", "stty", "touch", "mkdir", "wc", "seq",
    "trap", "tr", "sed", "stat",
];

pub struct Env {
    pub sb: Sandbox,
    pub reg: Registry,
    /// The busybox image's name in this env's store.
    pub image: String,
}

pub fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let mut entries = vec![
        E::Dir("bin", 0o755),
        E::Dir("etc", 0o755),
        E::Dir("tmp", 0o1777),
        E::Dir("proc", 0o755),
        E::Dir("sys", 0o755),
        E::Dir("dev", 0o755),
        E::Dir("root", 0o700),
        E::Dir("www", 0o755),
        E::File("bin/busybox", 0o755, busybox),
        E::File(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".to_vec(),
        ),
        E::File("etc/group", 0o644, b"root:x:0:\nnobody:x:65534:\n".to_vec()),
        E::File("www/index.html", 0o644, b"hello from berth\n".to_vec()),
    ];
    for a in APPLETS {
        let path: &'static str = Box::leak(format!("bin/{a}").into_boxed_str());
        entries.push(E::Symlink(path, "busybox"));
    }
    layer_tar(&entries)
}

impl Env {
    pub fn new() -> Env {
        let sb = Sandbox::new();
        let reg = Registry::start();
        let dir = sb.path().join("layout");
        let mut l = Layout::new(&dir);
        let (desc, _) = l.image(
            &[busybox_layer()],
            true,
            "amd64",
            json!({"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}),
        );
        l.tag(desc, "latest");
        reg.push_layout(&dir, "latest", "busybox:latest", "oci", false);
        let image = format!("{}/busybox:latest", reg.host());
        let env = Env { sb, reg, image };
        env.ok(&["pull", "-q", "--tls-verify=false", &env.image]);
        env
    }

    /// An image of busybox and one more layer, pushed to this env's
    /// registry as `name` and pulled; returns its reference.
    pub fn image_with(&self, name: &str, layer: Vec<u8>) -> String {
        let dir = self.sb.path().join(format!("layout-{name}"));
        let mut l = Layout::new(&dir);
        let (desc, _) = l.image(
            &[busybox_layer(), layer],
            true,
            "amd64",
            json!({"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}),
        );
        l.tag(desc, "latest");
        self.reg
            .push_layout(&dir, "latest", &format!("{name}:latest"), "oci", false);
        let image = format!("{}/{name}:latest", self.reg.host());
        self.ok(&["pull", "-q", "--tls-verify=false", &image]);
        image
    }

    pub fn runroot(&self) -> PathBuf {
        self.sb.path().join("run")
    }

    pub fn cmd(&self) -> Command {
        let mut c = self.sb.cmd();
        c.arg("--runroot").arg(self.runroot());
        c
    }

    /// This env's berth as a shell command line (for script(1)).
    pub fn cmd_line(&self) -> String {
        let c = self.cmd();
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run berth")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs berth expecting exit code `code`; returns (stdout, stderr).
    pub fn code(&self, code: i32, args: &[&str]) -> (String, String) {
        let out = self.berth(args);
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "berth {args:?}: stdout: {o}\nstderr: {e}"
        );
        (o, e)
    }

    /// `run -d` with the env's image; returns the id.
    pub fn run_d(&self, flags: &[&str], command: &[&str]) -> String {
        let mut args = vec!["run", "-d"];
        args.extend(flags);
        args.push(&self.image);
        args.extend(command);
        self.ok(&args).trim().to_string()
    }

    pub fn inspect(&self, c: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", c])).unwrap();
        v[0].clone()
    }

    pub fn status(&self, c: &str) -> String {
        self.inspect(c)["State"]["Status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn ids(&self) -> Vec<String> {
        self.ok(&["ps", "-a", "-q", "--no-trunc"])
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in self.ids_quiet() {
            let _ = self.berth(&["rm", "-f", &id]);
        }
        for (what, list) in [("pod", "ps"), ("network", "ls")] {
            let out = self
                .cmd()
                .args([what, list, "-q"])
                .stderr(Stdio::null())
                .output();
            for name in out
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
                .lines()
            {
                let _ = self.berth(&[what, "rm", "-f", name]);
            }
        }
    }
}

impl Env {
    fn ids_quiet(&self) -> Vec<String> {
        self.cmd()
            .args(["ps", "-a", "-q", "--no-trunc"])
            .stderr(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Waits for `f` up to 10 s.
pub fn wait_for(what: &str, f: impl FnMut() -> bool) {
    wait_within(10, what, f)
}

/// `wait_for` with a deadline of `secs` (a VM under emulation on a loaded
/// host takes its time).
pub fn wait_within(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Processes whose command line holds `needle`.
pub fn processes_with(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Mount points under `dir`.
pub fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| p.starts_with(&prefix))
        .collect()
}

/// Asserts nothing of container `id` remains on the host.
pub fn assert_gone(env: &Env, id: &str) {
    // In every hierarchy, v1 and v2.
    let cg: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join(format!("berth-{id}")))
        .filter(|p| p.exists())
        .collect();
    assert!(cg.is_empty(), "cgroups remain: {cg:?}");
    let m: Vec<String> = mounts_under(env.sb.path())
        .into_iter()
        .filter(|m| m.contains(id))
        .collect();
    assert!(m.is_empty(), "mounts remain: {m:?}");
    let p = processes_with(id);
    assert!(p.is_empty(), "processes remain: {p:?}");
    assert!(
        !env.sb.root().join("containers").join(id).exists(),
        "its directory remains"
    );
}

/// A podman with its own storage, run root and containers.conf under
/// `dir` (cgroupfs, file events: no systemd here; rlimits a container may
/// set), running containers with `runtime`; removed with everything it
/// made.
pub struct Podman {
    dir: PathBuf,
    runtime: String,
}

impl Podman {
    pub fn new(dir: PathBuf, runtime: &str) -> Podman {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        Podman {
            dir,
            runtime: runtime.to_string(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root").arg(self.dir.join("storage"));
        c.arg("--runroot").arg(self.dir.join("run"));
        c.arg("--tmpdir").arg(self.dir.join("libpod-tmp"));
        c.args(["--storage-driver", "overlay", "--runtime", &self.runtime]);
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        c.env("TMPDIR", &self.dir);
        c.stdin(Stdio::null());
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run podman");
        assert!(
            out.status.success(),
            "podman {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Env {
    /// A podman of its own under this env's sandbox, on runc (crun
    /// refuses this host's hybrid cgroups), with the env's image pulled
    /// from the env's registry: the same image in both.
    pub fn podman_beside(&self) -> Podman {
        let p = Podman::new(self.sb.path().join("podman"), "runc");
        p.ok(&["pull", "-q", "--tls-verify=false", &self.image]);
        p
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "-af", "-t", "0"]).output();
        let _ = self.cmd().args(["rmi", "-af"]).output();
        crate::support::umount_under(&self.dir);
        // podman's cgroupfs manager leaves its parent cgroups behind; a
        // parent another test's podman still uses is not empty and stays.
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = h.path().join("libpod_parent");
            let _ = std::fs::remove_dir(parent.join("conmon"));
            let _ = std::fs::remove_dir(parent);
        }
    }
}
