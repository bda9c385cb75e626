//! Real clients drive berth-runtime in place of runc: podman (through
//! conmon) and containerd's runc shim.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::*;

fn sh(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A podman with its own storage, run root and containers.conf.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(sb: &Sandbox) -> Podman {
        let dir = sb.dir.path().join("podman");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        let p = Podman { dir };
        // The image: the busybox rootfs, committed with buildah.
        let rootfs = sb.dir.path().join("image-rootfs");
        make_rootfs(&rootfs);
        let ctr = String::from_utf8(sh(p.buildah().args(["from", "scratch"])).stdout).unwrap();
        let ctr = ctr.trim();
        sh(p.buildah().args(["copy", ctr]).arg(&rootfs).arg("/"));
        sh(p.buildah().args(["config", "--cmd", "sh", ctr]));
        sh(p.buildah()
            .args(["commit", "-q", ctr, "localhost/berth-busybox:test"]));
        sh(p.buildah().args(["rm", ctr]));
        p
    }

    fn storage_args(&self, c: &mut Command) {
        c.arg("--root").arg(self.dir.join("storage"));
        c.arg("--runroot").arg(self.dir.join("run"));
        c.args(["--storage-driver", "overlay"]);
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        c.env("TMPDIR", &self.dir);
    }

    fn buildah(&self) -> Command {
        let mut c = Command::new("buildah");
        self.storage_args(&mut c);
        c
    }

    fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        self.storage_args(&mut c);
        c.arg("--runtime").arg(bin());
        c.arg("--tmpdir").arg(self.dir.join("libpod-tmp"));
        c
    }

    fn run(&self, args: &[&str]) -> String {
        String::from_utf8(sh(self.podman().args(args)).stdout).unwrap()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman().args(["rm", "-af", "-t", "0"]).output();
        let _ = self.buildah().args(["rm", "-a"]).output();
        umount_under(&self.dir);
        // podman's cgroupfs manager leaves its parent cgroups behind.
        for d in cgroup_dirs("libpod_parent") {
            let _ = std::fs::remove_dir(d.join("conmon"));
            let _ = std::fs::remove_dir(&d);
        }
    }
}

#[test]
fn podman_runs_execs_stops_and_removes() {
    require!(
        have("podman") && have("buildah") && have("conmon"),
        "podman, buildah and conmon are needed"
    );
    let sb = Sandbox::new();
    let p = Podman::new(&sb);
    let img = "localhost/berth-busybox:test";

    let out = p.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        img,
        "sh",
        "-c",
        "echo hi from podman; grep -E 'Seccomp:|NoNewPrivs' /proc/self/status",
    ]);
    assert!(out.starts_with("hi from podman\n"), "{out}");
    assert!(
        out.contains("Seccomp:\t2"),
        "podman's seccomp profile applies: {out}"
    );

    let out = p
        .podman()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            img,
            "sh",
            "-c",
            "exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let out = p
        .podman()
        .args(["run", "--rm", "--network", "none", img, "no-such-cmd"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    p.run(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--network",
        "none",
        "--memory",
        "64m",
        img,
        "sleep",
        "1000",
    ]);
    let ps = p.run(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("svc Up"), "{ps}");
    let out = p.run(&["exec", "svc", "sh", "-c", "echo exec $((1+1)); cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]);
    assert_eq!(out, format!("exec 2\n{}\n", 64 << 20));
    let out = String::from_utf8(
        sh(Command::new("script")
            .args(["-qec"])
            .arg(format!("{} exec -t svc tty", command_line(&p.podman())))
            .arg("/dev/null"))
        .stdout,
    )
    .unwrap();
    assert!(out.contains("/dev/pts/"), "{out}");
    p.run(&["pause", "svc"]);
    assert!(
        p.run(&["ps", "-a", "--format", "{{.Status}}"])
            .contains("Paused")
    );
    p.run(&["unpause", "svc"]);
    let top = p.run(&["top", "svc"]);
    assert!(top.contains("sleep 1000"), "{top}");
    p.run(&["stop", "-t", "1", "svc"]);
    let ps = p.run(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("svc Exited (137)"), "{ps}");
    p.run(&["rm", "svc"]);
    assert_eq!(p.run(&["ps", "-aq"]).trim(), "");
}

/// The shell form of a command, for `script -c`.
fn command_line(c: &Command) -> String {
    let mut parts = vec![c.get_program().to_string_lossy().into_owned()];
    parts.extend(c.get_args().map(|a| a.to_string_lossy().into_owned()));
    let env: Vec<String> = c
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    format!("env {} {}", env.join(" "), parts.join(" "))
}

/// A containerd of the test's own, without its CRI plugin.
struct Containerd {
    dir: PathBuf,
    child: std::process::Child,
}

impl Containerd {
    fn start(sb: &Sandbox) -> Containerd {
        let dir = sb.dir.path().join("containerd");
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
                 [debug]\n  address = \"{d}/debug.sock\"\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd { dir, child };
        for _ in 0..200 {
            if c.ctr()
                .args(["version"])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return c;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("containerd did not come up");
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.dir.join("c.sock"));
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self
            .ctr()
            .args(["task", "kill", "-s", "KILL", "c1"])
            .output();
        // SAFETY: integer arguments; the child is not waited for yet, so its
        // pid cannot be recycled.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        // Shims outlive containerd by design; ours must not outlive the test.
        for pid in processes_with(&self.dir.display().to_string()) {
            // SAFETY: kill takes integers only.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        umount_under(&self.dir);
    }
}

fn oci_archive(sb: &Sandbox, path: &Path) {
    let p = Podman::new(sb);
    sh(p.buildah()
        .args(["push", "-q", "localhost/berth-busybox:test"])
        .arg(format!("oci-archive:{}:berth/busybox:test", path.display())));
}

#[test]
fn containerd_runs_through_berth_runtime() {
    require!(
        have("containerd") && have("ctr") && have("buildah"),
        "containerd, ctr and buildah are needed"
    );
    let sb = Sandbox::new();
    let archive = sb.dir.path().join("busybox.tar");
    oci_archive(&sb, &archive);
    let c = Containerd::start(&sb);
    sh(c.ctr()
        .args(["image", "import", "--all-platforms"])
        .arg(&archive));
    let image = "berth/busybox:test";
    let out = sh(c.ctr().args([
        "run",
        "--rm",
        "--runc-binary",
        bin(),
        image,
        "c0",
        "sh",
        "-c",
        "echo hi from ctr; echo $$",
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from ctr\n1\n");

    sh(c.ctr().args([
        "run",
        "-d",
        "--runc-binary",
        bin(),
        image,
        "c1",
        "sleep",
        "1000",
    ]));
    let tasks = String::from_utf8(sh(c.ctr().args(["task", "ls"])).stdout).unwrap();
    assert!(tasks.contains("c1") && tasks.contains("RUNNING"), "{tasks}");
    let out = sh(c.ctr().args([
        "task",
        "exec",
        "--exec-id",
        "e1",
        "c1",
        "sh",
        "-c",
        "echo in c1",
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in c1\n");
    let ps = String::from_utf8(sh(c.ctr().args(["task", "ps", "c1"])).stdout).unwrap();
    assert!(ps.lines().count() >= 2, "{ps}");
    sh(c.ctr().args(["task", "pause", "c1"]));
    assert!(
        String::from_utf8(sh(c.ctr().args(["task", "ls"])).stdout)
            .unwrap()
            .contains("PAUSED")
    );
    sh(c.ctr().args(["task", "resume", "c1"]));
    sh(c.ctr().args(["task", "kill", "-s", "KILL", "c1"]));
    for _ in 0..200 {
        let tasks = String::from_utf8(sh(c.ctr().args(["task", "ls"])).stdout).unwrap();
        if tasks.contains("STOPPED") {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    sh(c.ctr().args(["task", "rm", "c1"]));
    sh(c.ctr().args(["container", "rm", "c1"]));
    assert!(cgroup_dirs("c1").is_empty());
}

/// What a container of podman's or containerd's makes with CAP_MKNOD opens
/// nothing of the host's under berth-runtime either.
#[test]
fn peers_containers_cannot_open_host_devices_through_berth_runtime() {
    require!(
        have("podman") && have("buildah") && have("conmon") && have("containerd") && have("ctr"),
        "podman, buildah, conmon, containerd and ctr are needed"
    );
    let probe = "mknod /tmp/l b 7 0 && head -c1 /tmp/l; echo rc=$?";
    let sb = Sandbox::new();
    let p = Podman::new(&sb);
    let out = p
        .podman()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--cap-add",
            "MKNOD",
            "localhost/berth-busybox:test",
            "sh",
            "-c",
            probe,
        ])
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        o.contains("rc=1") && e.contains("Operation not permitted"),
        "{o}\n{e}"
    );

    let archive = sb.dir.path().join("busybox.tar");
    sh(p.buildah()
        .args(["push", "-q", "localhost/berth-busybox:test"])
        .arg(format!(
            "oci-archive:{}:berth/busybox:test",
            archive.display()
        )));
    let c = Containerd::start(&sb);
    sh(c.ctr()
        .args(["image", "import", "--all-platforms"])
        .arg(&archive));
    let out = c
        .ctr()
        .args([
            "run",
            "--rm",
            "--cap-add",
            "CAP_MKNOD",
            "--runc-binary",
            bin(),
            "berth/busybox:test",
            "dev1",
            "sh",
            "-c",
            probe,
        ])
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(o.contains("rc=1"), "{o}\n{e}");
    assert!(
        o.contains("Operation not permitted") || e.contains("Operation not permitted"),
        "{o}\n{e}"
    );
}
