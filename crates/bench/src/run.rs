//! Containers from images, end to end: `run --rm IMAGE true` with berth,
//! podman and ctr (containerd) on the same busybox image in each tool's
//! store on tmpfs; then N HTTP-serving containers (`run -d`, busybox
//! httpd) started one after another until every one answers, berth against
//! podman, with the private memory (USS) of each container's monitor
//! process (berth-monitor, conmon) while they all run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::pull::{clean, sh, start_containerd, start_registry, write_blob};
use crate::stats::{Sample, measure, median, ms};

/// A busybox image (static busybox, its applets, a web page) as an OCI
/// layout with one gzip layer.
pub(crate) fn busybox_layout(dir: &Path) -> Result<()> {
    let root = dir.join("rootfs");
    busybox_rootfs(&root)?;
    layout_of_rootfs(&root, &dir.join("layout"))
}

/// Static busybox, its applets, a web page, /etc/passwd and group.
pub(crate) fn busybox_rootfs(root: &Path) -> Result<()> {
    for d in ["bin", "etc", "tmp", "www", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    let list = sh(Command::new("/bin/busybox").arg("--list"))?;
    for a in list.lines().filter(|a| *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(root.join("www/index.html"), "hello\n")?;
    Ok(())
}

/// `root` as an OCI layout at `layout` with one gzip layer, tagged latest.
pub(crate) fn layout_of_rootfs(root: &Path, layout: &Path) -> Result<()> {
    let dir = layout.parent().context("a layout has a parent")?;
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let tar = dir.join("layer.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(&tar)
        .arg("."))?;
    let diff_id = sh(Command::new("sha256sum").arg(&tar))?;
    let diff_id = format!("sha256:{}", diff_id.split_whitespace().next().unwrap_or(""));
    sh(Command::new("gzip").arg("-f").arg(&tar))?;
    let gz = dir.join("layer.tar.gz");
    let (ld, ll) = crate::pull::blob(layout, &gz)?;
    let cfg = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        // As real images have (buildah refuses a base without it).
        "history": [{"created_by": "berth-bench"}],
    });
    let (cd, cl) = write_blob(layout, &serde_json::to_vec(&cfg)?)?;
    let m = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ll}],
    });
    let (md, ml) = write_blob(layout, &serde_json::to_vec(&m)?)?;
    let idx = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ml,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&idx)?)?;
    Ok(())
}

/// One tool's command line, with its stores under `base`.
pub(crate) struct Tool {
    pub(crate) name: &'static str,
    pub(crate) prefix: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
}

impl Tool {
    /// berth's containers and networks (their bridges and rules) gone.
    pub(crate) fn remove_all(&self) {
        for id in sh(&mut self.cmd(&["ps", "-aq"]))
            .unwrap_or_default()
            .lines()
        {
            let _ = sh(&mut self.cmd(&["rm", "-f", id]));
        }
        for n in sh(&mut self.cmd(&["network", "ls", "-q"]))
            .unwrap_or_default()
            .lines()
        {
            let _ = sh(&mut self.cmd(&["network", "rm", "-f", n]));
        }
    }

    /// berth with its store and run root under `base`.
    pub(crate) fn berth(berth: &Path, base: &Path) -> Tool {
        let s = |p: &str| base.join(p).display().to_string();
        Tool {
            name: "berth",
            prefix: vec![
                berth.display().to_string(),
                "--root".into(),
                s("berth"),
                "--runroot".into(),
                s("berth-run"),
            ],
            env: vec![],
        }
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.prefix[0]);
        c.args(&self.prefix[1..]).args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

fn uss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |f: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(f))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    Some(field("Private_Clean:") + field("Private_Dirty:"))
}

/// Pids of processes whose executable's name is `comm`.
fn pids_named(comm: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

fn answers(ip: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(addr) = format!("{ip}:80").parse::<std::net::SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("hello")
}

/// Starts `n` serving containers one after another; returns the time until
/// all answer, and the monitors' median USS.
fn serve(tool: &Tool, image: &str, n: usize, monitor: &str) -> Result<(Duration, u64)> {
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let out = sh(&mut tool.cmd(&[
            "run",
            "-d",
            "--name",
            &format!("web{i}"),
            image,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ]))?;
        ids.push(out.trim().to_string());
    }
    let mut ips = Vec::new();
    for id in &ids {
        let v: serde_json::Value = serde_json::from_str(&sh(&mut tool.cmd(&["inspect", id]))?)?;
        let ip = v[0]["NetworkSettings"]["IPAddress"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or_else(|| v[0]["NetworkSettings"]["Networks"][0]["ips"][0].as_str())
            .map(|s| s.split('/').next().unwrap_or(s).to_string())
            .with_context(|| format!("{} {id}: no address in inspect", tool.name))?;
        ips.push(ip);
    }
    let mut pending: Vec<&String> = ips.iter().collect();
    while !pending.is_empty() {
        pending.retain(|ip| !answers(ip));
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("{}: {} containers never answered", tool.name, pending.len());
        }
    }
    let took = t0.elapsed();
    let mut uss: Vec<u64> = pids_named(monitor)
        .into_iter()
        .filter_map(uss_kib)
        .collect();
    uss.sort();
    let med = uss.get(uss.len() / 2).copied().unwrap_or(0);
    for id in &ids {
        let _ = sh(&mut tool.cmd(&["rm", "-f", id]));
    }
    Ok((took, med))
}

pub fn run(runs: usize, serving: usize, berth: Option<PathBuf>) -> Result<()> {
    let berth = crate::binary(berth, "berth")?;
    let base = PathBuf::from("/dev/shm/berth-bench-run");
    clean(&base);
    std::fs::create_dir_all(&base)?;
    busybox_layout(&base)?;
    let (_registry, port) = start_registry(&base)?;
    let image = format!("127.0.0.1:{port}/bench/busybox:latest");
    sh(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", base.join("layout").display()))
        .arg(format!("docker://{image}")))?;

    let conf = base.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )?;
    let s = |p: &str| base.join(p).display().to_string();
    let berth_tool = Tool::berth(&berth, &base);
    let podman = Tool {
        name: "podman",
        prefix: vec![
            "podman".into(),
            "--root".into(),
            s("podman"),
            "--runroot".into(),
            s("podman-run"),
            "--storage-driver".into(),
            "overlay".into(),
        ],
        env: vec![("CONTAINERS_CONF".into(), conf.display().to_string())],
    };
    let result = measure_all(&berth, &berth_tool, &podman, &base, &image, runs, serving);
    // Whatever happened: no containers, networks (bridges, rules) or
    // stores left behind.
    berth_tool.remove_all();
    let _ = sh(&mut podman.cmd(&["rm", "-af"]));
    let _ = sh(&mut podman.cmd(&["system", "reset", "-f"]));
    clean(&base);
    result
}

fn measure_all(
    berth: &Path,
    berth_tool: &Tool,
    podman: &Tool,
    base: &Path,
    image: &str,
    runs: usize,
    serving: usize,
) -> Result<()> {
    let image = image.to_string();
    sh(&mut berth_tool.cmd(&["pull", "-q", "--tls-verify=false", &image]))?;
    sh(&mut podman.cmd(&["pull", "-q", "--tls-verify=false", &image]))?;
    let (_containerd, sock) = start_containerd(&base.join("containerd"))?;
    let ctr = Tool {
        name: "ctr",
        prefix: vec![
            "ctr".into(),
            "-a".into(),
            sock.display().to_string(),
            "-n".into(),
            "bench".into(),
        ],
        env: vec![],
    };
    sh(&mut ctr.cmd(&["image", "pull", "--plain-http", &image]))?;

    let mut rows: Vec<(String, Vec<Sample>)> = Vec::new();
    let cases: Vec<(String, &Tool, Vec<&str>)> = vec![
        (
            "berth run --rm (bridge network)".into(),
            berth_tool,
            vec!["run", "--rm"],
        ),
        (
            "berth run --rm --network none".into(),
            berth_tool,
            vec!["run", "--rm", "--network", "none"],
        ),
        (
            "podman run --rm (bridge network)".into(),
            podman,
            vec!["run", "--rm"],
        ),
        (
            "podman run --rm --network none".into(),
            podman,
            vec!["run", "--rm", "--network", "none"],
        ),
    ];
    for (name, tool, args) in &cases {
        let mut samples = Vec::new();
        for i in 0..=runs {
            let mut a = args.clone();
            a.extend([image.as_str(), "true"]);
            let s = measure(|| sh(&mut tool.cmd(&a)).map(drop))?;
            // The first run warms caches (and makes the default network).
            if i > 0 {
                samples.push(s);
            }
        }
        rows.push((name.clone(), samples));
    }
    let mut samples = Vec::new();
    for i in 0..=runs {
        let id = format!("bench{i}");
        let s = measure(|| sh(&mut ctr.cmd(&["run", "--rm", &image, &id, "true"])).map(drop))?;
        if i > 0 {
            samples.push(s);
        }
    }
    rows.push((
        "ctr run --rm (no network; containerd's CPU not counted)".into(),
        samples,
    ));

    let version = |c: &mut Command| {
        sh(c)
            .map(|s| s.lines().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    println!(
        "`run --rm IMAGE true` of a busybox image in each tool's store on tmpfs, {runs} runs each (median)\n"
    );
    println!("| command | wall ms | CPU ms | wall vs berth |\n|---|---:|---:|---:|");
    let base_wall = median(rows[0].1.iter().map(|s| s.wall).collect());
    for (name, s) in &rows {
        let wall = median(s.iter().map(|x| x.wall).collect());
        let cpu = median(s.iter().map(|x| x.cpu).collect());
        println!(
            "| {name} | {} | {} | {:.2}x |",
            ms(wall),
            ms(cpu),
            wall.as_secs_f64() / base_wall.as_secs_f64()
        );
    }
    println!(
        "\nversions: {}; {}; {}",
        version(Command::new(berth).arg("--version")),
        version(Command::new("podman").arg("--version")),
        version(Command::new("containerd").arg("--version"))
    );

    if serving > 0 {
        let (bt, bu) = serve(berth_tool, &image, serving, "berth-monitor")?;
        let (pt, pu) = serve(podman, &image, serving, "conmon")?;
        println!(
            "\n{serving} busybox httpd containers (`run -d`, one after another) until every one answers on its address\n"
        );
        println!(
            "| tool | until all answer, s | vs berth | monitor USS, median KiB |\n|---|---:|---:|---:|"
        );
        println!(
            "| berth (berth-monitor) | {:.2} | 1.00x | {bu} |",
            bt.as_secs_f64()
        );
        println!(
            "| podman (conmon) | {:.2} | {:.2}x | {pu} |",
            pt.as_secs_f64(),
            pt.as_secs_f64() / bt.as_secs_f64()
        );
    }
    drop(_containerd);
    Ok(())
}
