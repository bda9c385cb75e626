//! Pull + unpack of one multi-layer image from a local registry: berth,
//! podman, skopeo + umoci, and ctr (containerd). The image is built here
//! from Debian's own files (one layer per /usr tree), pushed with skopeo
//! to Debian's docker-registry on 127.0.0.1, and every tool's store is on
//! tmpfs. Each run starts from an empty store; figures are medians.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::stats::{Sample, measure, median, ms};

const TREES: &[&str] = &["usr/lib/python3.11", "usr/lib/python3", "usr/libexec"];

pub(crate) fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sha256(path: &Path) -> Result<String> {
    let out = sh(Command::new("sha256sum").arg(path))?;
    Ok(format!(
        "sha256:{}",
        out.split_whitespace().next().unwrap_or("")
    ))
}

pub(crate) fn blob(layout: &Path, file: &Path) -> Result<(String, u64)> {
    let d = sha256(file)?;
    let len = std::fs::metadata(file)?.len();
    std::fs::rename(file, layout.join("blobs/sha256").join(&d[7..]))?;
    Ok((d, len))
}

pub(crate) fn write_blob(layout: &Path, data: &[u8]) -> Result<(String, u64)> {
    let tmp = layout.join("tmp.json");
    std::fs::write(&tmp, data)?;
    blob(layout, &tmp)
}

/// An OCI layout of TREES as gzip layers; returns the layer blob paths.
fn build_image(layout: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let (mut layers, mut diff_ids, mut paths) = (Vec::new(), Vec::new(), Vec::new());
    for (i, t) in TREES.iter().enumerate() {
        let tar = layout.join(format!("layer{i}.tar"));
        sh(Command::new("tar")
            .args(["-C", "/", "--numeric-owner", "-cf"])
            .arg(&tar)
            .arg(t))?;
        diff_ids.push(sha256(&tar)?);
        sh(Command::new("gzip").arg("-6").arg(&tar))?;
        let (d, len) = blob(layout, &tar.with_extension("tar.gz"))?;
        paths.push(layout.join("blobs/sha256").join(&d[7..]));
        layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len}));
    }
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, clen) = write_blob(layout, &serde_json::to_vec(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": clen},
        "layers": layers,
    });
    let (md, mlen) = write_blob(layout, &serde_json::to_vec(&manifest)?)?;
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mlen,
        "annotations": {"org.opencontainers.image.ref.name": "bench"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(paths)
}

/// What the pull image is, for a row's name.
pub(crate) const BENCH_IMAGE_NOTE: &str =
    "3 gzip layers of Debian's /usr/lib/python3*, /usr/libexec";

/// Builds the pull image (a layout in `base`) and pushes it to the
/// registry on `port`; returns its reference and its layer blobs.
pub(crate) fn push_bench_image(base: &Path, port: u16) -> Result<(String, Vec<PathBuf>)> {
    eprintln!("building the image from {TREES:?}...");
    let layout = base.join("layout");
    let layers = build_image(&layout)?;
    let image = format!("127.0.0.1:{port}/bench/usr:1");
    sh(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bench", layout.display()))
        .arg(format!("docker://{image}")))?;
    Ok((image, layers))
}

pub(crate) struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) -> Result<()> {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("port {port} never opened")
}

pub(crate) fn start_registry(dir: &Path) -> Result<(Killed, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("registry").display()
        ),
    )?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start docker-registry")?;
    let k = Killed(child);
    wait_port(port)?;
    Ok((k, port))
}

pub(crate) fn start_containerd(dir: &Path) -> Result<(Killed, PathBuf)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let sock = dir.join("containerd.sock");
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[grpc]\n  address = \"{1}\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable = true\n",
            dir.display(),
            sock.display()
        ),
    )?;
    let child = Command::new("containerd")
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start containerd")?;
    let k = Killed(child);
    for _ in 0..500 {
        if Command::new("ctr")
            .arg("-a")
            .arg(&sock)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok((k, sock));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("containerd did not start")
}

fn umount_under(dir: &Path) {
    let p = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&p))
        .collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in points {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
    }
}

pub(crate) fn clean(dir: &Path) {
    umount_under(dir);
    let _ = std::fs::remove_dir_all(dir);
}

pub fn run(runs: usize, berth: Option<PathBuf>) -> Result<()> {
    let berth = crate::binary(berth, "berth")?;
    let base = PathBuf::from("/dev/shm/berth-bench-pull");
    clean(&base);
    std::fs::create_dir_all(&base)?;
    let (_registry, port) = start_registry(&base)?;
    let (image, layers) = push_bench_image(&base, port)?;
    let unpacked: u64 = TREES
        .iter()
        .map(|t| {
            sh(Command::new("du").args(["-sb", &format!("/{t}")]))
                .ok()
                .and_then(|o| o.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    let compressed: u64 = layers
        .iter()
        .map(|l| std::fs::metadata(l).map(|m| m.len()).unwrap_or(0))
        .sum();

    let stores = base.join("stores");
    let mut rows: Vec<(String, Vec<Sample>, String)> = Vec::new();
    let version = |c: &str, a: &str| {
        sh(Command::new(c).arg(a))
            .map(|s| s.lines().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };

    let mut samples = Vec::new();
    for _ in 0..runs {
        clean(&stores);
        std::fs::create_dir_all(&stores)?;
        samples.push(measure(|| {
            sh(Command::new(&berth)
                .arg("--root")
                .arg(stores.join("berth"))
                .args(["pull", "-q", "--tls-verify=false", &image]))
            .map(|_| ())
        })?);
    }
    rows.push((
        "berth pull".into(),
        samples,
        version(berth.to_str().unwrap_or("berth"), "--version"),
    ));

    let mut samples = Vec::new();
    for _ in 0..runs {
        clean(&stores);
        std::fs::create_dir_all(&stores)?;
        samples.push(measure(|| {
            sh(Command::new("podman")
                .arg("--root")
                .arg(stores.join("podman"))
                .arg("--runroot")
                .arg(stores.join("podman-run"))
                .args([
                    "--storage-driver",
                    "overlay",
                    "pull",
                    "-q",
                    "--tls-verify=false",
                    &image,
                ]))
            .map(|_| ())
        })?);
    }
    rows.push((
        "podman pull".into(),
        samples,
        version("podman", "--version"),
    ));

    let mut samples = Vec::new();
    for _ in 0..runs {
        clean(&stores);
        std::fs::create_dir_all(&stores)?;
        samples.push(measure(|| {
            let oci = stores.join("oci");
            sh(Command::new("skopeo")
                .args(["copy", "--quiet", "--src-tls-verify=false"])
                .arg(format!("docker://{image}"))
                .arg(format!("oci:{}:bench", oci.display())))?;
            sh(Command::new("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:bench", oci.display()))
                .arg(stores.join("bundle")))
            .map(|_| ())
        })?);
    }
    rows.push((
        "skopeo copy + umoci unpack".into(),
        samples,
        format!(
            "{}; {}",
            version("skopeo", "--version"),
            version("umoci", "--version")
        ),
    ));

    let mut samples = Vec::new();
    for _ in 0..runs {
        clean(&stores);
        std::fs::create_dir_all(&stores)?;
        let (_c, sock) = start_containerd(&stores.join("containerd"))?;
        samples.push(measure(|| {
            sh(Command::new("ctr").arg("-a").arg(&sock).args([
                "-n",
                "bench",
                "image",
                "pull",
                "--plain-http",
                &image,
            ]))
            .map(|_| ())
        })?);
    }
    clean(&stores);
    rows.push((
        "ctr image pull (containerd, unpacks)".into(),
        samples,
        version("containerd", "--version"),
    ));

    // The decompression floor: zcat of the same layers to /dev/null.
    let mut samples = Vec::new();
    for _ in 0..runs {
        samples.push(measure(|| {
            sh(Command::new("sh").arg("-c").arg(format!(
                "zcat {} >/dev/null",
                layers
                    .iter()
                    .map(|l| l.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )))
            .map(|_| ())
        })?);
    }
    rows.push((
        "zcat of the layers > /dev/null".into(),
        samples,
        version("gzip", "--version"),
    ));

    let berth_wall = median(rows[0].1.iter().map(|s| s.wall).collect());
    println!(
        "pull + unpack of a {}-layer image ({:.1} MB compressed, {:.1} MB unpacked) from a local registry, stores on tmpfs, {runs} runs each (median)\n",
        TREES.len(),
        compressed as f64 / 1e6,
        unpacked as f64 / 1e6
    );
    println!(
        "| tool | wall ms | CPU ms | wall vs berth | MB/s (compressed) | version |\n|---|---:|---:|---:|---:|---|"
    );
    for (name, s, v) in &rows {
        let wall = median(s.iter().map(|x| x.wall).collect());
        let cpu = median(s.iter().map(|x| x.cpu).collect());
        println!(
            "| {name} | {} | {} | {:.2}x | {:.0} | {v} |",
            ms(wall),
            ms(cpu),
            wall.as_secs_f64() / berth_wall.as_secs_f64(),
            compressed as f64 / 1e6 / wall.as_secs_f64()
        );
    }
    clean(&base);
    Ok(())
}
