//! An ordinary user's containers and pulls: berth against rootless
//! podman, as the same user (made here with subordinate ranges, removed
//! after), same images from a local registry, each tool's store on tmpfs.
//! Rows: `run --rm IMAGE true` on each tool's default network (berth's
//! pasta, podman 4's slirp4netns) and with `--network none`, and a cold
//! pull of the multi-layer image of `berth-bench pull`. Each command runs
//! through setpriv (no PAM, unlike runuser), whose own cost is a row too.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::pull::{clean, sh, start_registry};
use crate::run::{Tool, busybox_layout};
use crate::stats::{Sample, measure, median, ms};

const USER: &str = "berthbench";

/// The benchmark's user, removed (with its processes and home) on drop.
struct BenchUser {
    uid: u32,
    gid: u32,
}

impl BenchUser {
    fn make() -> Result<BenchUser> {
        let _ = Command::new("pkill").args(["-KILL", "-u", USER]).output();
        let _ = Command::new("userdel").args(["-r", USER]).output();
        sh(Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]))?;
        if !std::fs::read_to_string("/etc/subuid")?.contains(&format!("{USER}:")) {
            bail!("useradd gave {USER} no subordinate ids");
        }
        let id = |flag: &str| -> Result<u32> {
            Ok(sh(Command::new("id").args([flag, USER]))?.trim().parse()?)
        };
        Ok(BenchUser {
            uid: id("-u")?,
            gid: id("-g")?,
        })
    }

    /// `program` as the user, with a login's bare environment.
    fn prefix(&self, program: &str) -> Vec<String> {
        vec![
            "setpriv".into(),
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            "--clear-groups".into(),
            "--".into(),
            "env".into(),
            "-i".into(),
            "PATH=/usr/bin:/bin:/usr/sbin:/sbin".into(),
            format!("HOME=/home/{USER}"),
            program.into(),
        ]
    }

    fn chown(&self, path: &Path) -> Result<()> {
        sh(Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path))
        .map(drop)
    }
}

impl Drop for BenchUser {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-KILL", "-u", USER]).status();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let _ = Command::new("userdel").args(["-r", USER]).output();
        let _ = std::fs::remove_dir_all(format!("/tmp/berth-run-{}", self.uid));
        let _ = std::fs::remove_dir_all(format!("/tmp/podman-run-{}", self.uid));
        let _ = std::fs::remove_dir_all(format!("/tmp/containers-user-{}", self.uid));
    }
}

/// podman as the user: the host's needs (cgroupfs, file events, limits
/// this host allows, runc: crun 1.8 refuses a hybrid host), its stores
/// under `stores`.
fn podman(u: &BenchUser, stores: &Path) -> Result<Tool> {
    let conf = PathBuf::from(format!("/home/{USER}/.config/containers"));
    std::fs::create_dir_all(&conf)?;
    std::fs::write(
        conf.join("containers.conf"),
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )?;
    u.chown(Path::new(&format!("/home/{USER}/.config")))?;
    let mut prefix = u.prefix("podman");
    prefix.extend([
        "--root".into(),
        stores.join("podman").display().to_string(),
        "--runroot".into(),
        stores.join("podman-run").display().to_string(),
        "--storage-driver".into(),
        "overlay".into(),
    ]);
    Ok(Tool {
        name: "podman",
        prefix,
        env: vec![],
    })
}

fn berth_tool(u: &BenchUser, berth: &Path, stores: &Path) -> Tool {
    let mut prefix = u.prefix(&berth.display().to_string());
    prefix.extend([
        "--root".into(),
        stores.join("berth").display().to_string(),
        "--runroot".into(),
        stores.join("berth-run").display().to_string(),
    ]);
    Tool {
        name: "berth",
        prefix,
        env: vec![],
    }
}

fn samples(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<Sample>> {
    f()?; // warm-up (the user's namespace, first start)
    (0..runs).map(|_| measure(&mut f)).collect()
}

/// Empties a store the user's tools made: as root, whatever ids its files
/// have (a rootless store holds the user's subordinate ids).
fn fresh(dir: &Path, u: &BenchUser) -> Result<()> {
    clean(dir);
    std::fs::create_dir_all(dir)?;
    u.chown(dir)
}

pub fn run(runs: usize, pulls: usize, berth: Option<PathBuf>) -> Result<()> {
    crate::require(&[
        "setpriv",
        "useradd",
        "podman",
        "pasta",
        "slirp4netns",
        "newuidmap",
    ])?;
    let berth = crate::binary(berth, "berth")?;
    let base = PathBuf::from("/dev/shm/berth-bench-rootless");
    clean(&base);
    std::fs::create_dir_all(&base)?;
    let u = BenchUser::make()?;
    let res = bench(&u, &berth, &base, runs, pulls);
    for t in [
        berth_tool(&u, &berth, &base.join("run")),
        podman(&u, &base.join("run"))?,
    ] {
        t.remove_all();
    }
    drop(u);
    clean(&base);
    res
}

fn bench(u: &BenchUser, berth: &Path, base: &Path, runs: usize, pulls: usize) -> Result<()> {
    busybox_layout(&base.join("busybox"))?;
    let (_registry, port) = start_registry(base)?;
    let busybox = format!("127.0.0.1:{port}/bench/busybox:latest");
    sh(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!(
            "oci:{}:latest",
            base.join("busybox/layout").display()
        ))
        .arg(format!("docker://{busybox}")))?;
    let (big, _) = crate::pull::push_bench_image(base, port)?;

    let stores = base.join("run");
    fresh(&stores, u)?;
    let tools = [berth_tool(u, berth, &stores), podman(u, &stores)?];
    let mut rows: Vec<(String, Vec<Sample>)> = Vec::new();
    rows.push((
        "setpriv + env (the floor of every row)".into(),
        samples(runs, || {
            sh(Command::new(&u.prefix("true")[0]).args(&u.prefix("true")[1..])).map(drop)
        })?,
    ));
    for t in &tools {
        sh(&mut t.cmd(&["pull", "-q", "--tls-verify=false", &busybox]))?;
    }
    for net in [None, Some("none")] {
        for t in &tools {
            let mut args = vec!["run", "--rm"];
            if let Some(n) = net {
                args.extend(["--network", n]);
            }
            args.extend([busybox.as_str(), "true"]);
            let label = match (net, t.name) {
                (None, "berth") => "berth run --rm (pasta)".to_string(),
                (None, _) => format!("{} run --rm (slirp4netns)", t.name),
                (Some(n), _) => format!("{} run --rm --network {n}", t.name),
            };
            rows.push((label, samples(runs, || sh(&mut t.cmd(&args)).map(drop))?));
        }
    }
    for t in &tools {
        t.remove_all();
    }
    for name in ["berth", "podman"] {
        let pull_stores = base.join("pull");
        let mut s = Vec::new();
        for _ in 0..pulls {
            fresh(&pull_stores, u)?;
            let t = if name == "berth" {
                berth_tool(u, berth, &pull_stores)
            } else {
                podman(u, &pull_stores)?
            };
            s.push(measure(|| {
                sh(&mut t.cmd(&["pull", "-q", "--tls-verify=false", &big])).map(drop)
            })?);
        }
        clean(&pull_stores);
        rows.push((
            format!("{name} pull (cold, {})", crate::pull::BENCH_IMAGE_NOTE),
            s,
        ));
    }

    println!(
        "rootless: one user ({USER}, subordinate ids from useradd), stores on tmpfs; run rows {runs} runs each after a warm-up, pulls {pulls} runs each from an empty store (median)\n"
    );
    println!("| command | wall ms | CPU ms | berth vs podman |\n|---|---:|---:|---:|");
    let wall = |s: &[Sample]| median(s.iter().map(|x| x.wall).collect());
    for (i, (name, s)) in rows.iter().enumerate() {
        let ratio = match rows.get(i + 1) {
            Some((next, p)) if name.starts_with("berth") && next.starts_with("podman") => {
                format!("{:.2}x", wall(s).as_secs_f64() / wall(p).as_secs_f64())
            }
            _ => String::new(),
        };
        println!(
            "| {name} | {} | {} | {ratio} |",
            ms(wall(s)),
            ms(median(s.iter().map(|x| x.cpu).collect()))
        );
    }
    Ok(())
}
