//! Memory of the per-container monitor beside its peers: N `sleep`
//! containers each through berth-monitor (builtin and runc handlers),
//! conmon (+runc) and containerd-shim-runc-v2 (under a private
//! containerd), and the median USS (Private_Clean + Private_Dirty from
//! smaps_rollup) of the monitor processes. Ignored by default; run with
//!
//!   BERTH_MONITOR=target/release/berth-monitor \
//!     cargo nextest run -p berth-monitor --run-ignored only --no-capture uss
//!
//! (BERTH_USS_HOLD=<secs> keeps everything running that long after the
//! figures, to look at the processes.) On the 2-core Debian 12 test host
//! (kernel with cgroup v1 hybrid), release build, N = 10:
//!
//!   berth-monitor (builtin)       460 KiB
//!   berth-monitor (runc)          376 KiB
//!   conmon 2.1.6 (runc)           336 KiB
//!   containerd-shim-runc-v2      2480 KiB
//!
//! Of berth-monitor's, 248 KiB are the binary's RELRO pages (pointers in
//! the runtime library's static data, relocated at load because the
//! binary is position-independent); the builtin handler adds ~50 KiB of
//! stack and heap touched by create.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Kind, RUNC, Sandbox, monitors_of, wait_for};

const N: usize = 10;

fn uss_kib(pid: i32) -> u64 {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    rollup
        .lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The mappings holding most of a process's private memory, for the
/// report: where the kilobytes are.
fn top_private(pid: i32) -> String {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    for l in smaps.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = f.get(5).copied().unwrap_or("[anon]");
            maps.push((0, format!("{} {}", f[1], name.rsplit('/').next().unwrap())));
        } else if (l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
            && let Some(m) = maps.last_mut()
        {
            m.0 += l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    maps.iter()
        .take(5)
        .map(|(k, n)| format!("{n} {k}K"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn median(mut v: Vec<u64>) -> u64 {
    assert!(!v.is_empty());
    v.sort_unstable();
    v[v.len() / 2]
}

fn berth(sb: &Sandbox, kind: Kind) -> Vec<u64> {
    let mut pids = Vec::new();
    for _ in 0..N {
        let (cfg, path) = sb.config(kind, &sb.bundle(&["sleep", "1000"], false));
        sb.launch(&cfg, &path).expect("launch");
        sb.start(&cfg);
        let m = monitors_of(&path);
        assert_eq!(m.len(), 1);
        pids.push(m[0]);
    }
    std::thread::sleep(Duration::from_millis(300));
    println!("  berth-monitor {kind:?}: {}", top_private(pids[0]));
    pids.into_iter().map(uss_kib).collect()
}

/// conmon as podman runs it (k8s-file log, exit dir, attach socket dir).
fn conmon(sb: &Sandbox) -> Vec<u64> {
    let mut pids = Vec::new();
    for i in 0..N {
        let bundle = sb.bundle(&["sleep", "1000"], false);
        let id = format!("conmon{}-{i}", std::process::id());
        sb.track(&id);
        let ud = sb.dir.path().join(&id);
        for d in ["exits", "sock", "persist"] {
            fs::create_dir_all(ud.join(d)).unwrap();
        }
        let status = Command::new("conmon")
            .args(["--api-version", "1", "-c", &id, "-u", &id, "-n", &id])
            .args(["-r", RUNC, "--runtime-arg", "--root", "--runtime-arg"])
            .arg(sb.runc_root())
            .arg("-b")
            .arg(&bundle)
            .arg("-p")
            .arg(ud.join("pid"))
            .arg("-P")
            .arg(ud.join("conmon.pid"))
            .arg("-l")
            .arg(format!("k8s-file:{}", ud.join("ctr.log").display()))
            .arg("--exit-dir")
            .arg(ud.join("exits"))
            .arg("--persist-dir")
            .arg(ud.join("persist"))
            .arg("--socket-dir-path")
            .arg(ud.join("sock"))
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run conmon");
        assert!(status.success(), "conmon: {status}");
        // conmon creates in its daemonized child: the pid file says done.
        wait_for("conmon's container", 20, || ud.join("pid").exists());
        let out = Command::new(RUNC)
            .arg("--root")
            .arg(sb.runc_root())
            .args(["start", &id])
            .output()
            .unwrap();
        assert!(out.status.success(), "runc start: {out:?}");
        let pid: i32 = fs::read_to_string(ud.join("conmon.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        pids.push(pid);
    }
    std::thread::sleep(Duration::from_millis(300));
    println!("  conmon: {}", top_private(pids[0]));
    pids.into_iter().map(uss_kib).collect()
}

/// A private containerd; stopped, with its containers, when dropped.
struct Containerd {
    child: Child,
    sock: String,
    ids: Vec<String>,
}

impl Containerd {
    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .args(["-a", &self.sock, "-n", "berthbench"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
            std::thread::sleep(Duration::from_millis(100));
            let _ = self.ctr(&["task", "delete", "-f", id]);
            let _ = self.ctr(&["container", "delete", id]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // runc made the namespace's parent cgroup (/berthbench/<id>); it
        // is empty now.
        if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = fs::remove_dir(h.path().join("berthbench"));
            }
        }
    }
}

fn containerd(sb: &Sandbox) -> Vec<u64> {
    let d = sb.dir.path().join("cd");
    fs::create_dir_all(&d).unwrap();
    let sock = d.join("c.sock").display().to_string();
    let config = format!(
        "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
        r = d.display()
    );
    fs::write(d.join("config.toml"), config).unwrap();
    let child = Command::new("containerd")
        .arg("--config")
        .arg(d.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(d.join("containerd.err")).unwrap())
        .spawn()
        .expect("start containerd");
    let mut cd = Containerd {
        child,
        sock: sock.clone(),
        ids: Vec::new(),
    };
    wait_for("containerd's socket", 20, || Path::new(&sock).exists());
    for i in 0..N {
        let bundle = sb.bundle(&["sleep", "1000"], false);
        let id = format!("shim{}-{i}", std::process::id());
        let rootfs = bundle.join("rootfs").display().to_string();
        cd.ids.push(id.clone());
        let out = cd.ctr(&[
            "run",
            "-d",
            "--runtime",
            "io.containerd.runc.v2",
            "--rootfs",
            &rootfs,
            &id,
            // No image config, so no PATH.
            "/bin/sleep",
            "1000",
        ]);
        assert!(out.status.success(), "ctr run: {out:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let shims: Vec<i32> = support_pids("containerd-shim-runc-v2", "berthbench");
    assert_eq!(shims.len(), N, "one shim per container");
    let uss = shims.into_iter().map(uss_kib).collect();
    drop(cd);
    uss
}

/// Pids whose argv[0] ends with `prog` and whose command line has `arg`.
fn support_pids(prog: &str, arg: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args[0].ends_with(prog) && args.iter().any(|a| a == arg) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
#[ignore = "a measurement: run on demand with the release binary"]
fn uss_side_by_side() {
    let sb = Sandbox::new();
    let mut rows = vec![
        ("berth-monitor (builtin)", berth(&sb, Kind::Builtin)),
        ("berth-monitor (runc)", berth(&sb, Kind::Runc)),
        ("conmon 2.1.6 (runc)", conmon(&sb)),
    ];
    if support::have("containerd") && support::have("ctr") {
        rows.push(("containerd-shim-runc-v2", containerd(&sb)));
    }
    println!(
        "median USS of {N} monitors of `sleep` containers ({})",
        support::monitor_bin().display()
    );
    for (name, v) in &rows {
        println!(
            "  {name:<26} {:>6} KiB  (min {}, max {})",
            median(v.clone()),
            v.iter().min().unwrap(),
            v.iter().max().unwrap()
        );
    }
    if let Some(secs) = std::env::var_os("BERTH_USS_HOLD") {
        std::thread::sleep(Duration::from_secs(secs.to_str().unwrap().parse().unwrap()));
    }
    let berth = median(rows[0].1.clone());
    assert!(berth < 1024, "berth-monitor uses {berth} KiB, over 1 MiB");
}
