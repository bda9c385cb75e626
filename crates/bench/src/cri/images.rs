//! The two images every runtime pulls from the same local registry: the
//! workload (Debian's static busybox with a web page, as the `run`
//! benchmark uses; `httpd` stands in for nginx) and a pause image for the
//! pod sandboxes of runtimes that run one (containerd needs its
//! `sandbox_image` to exist; there is no internet to fetch
//! registry.k8s.io/pause).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::pull::{sh, write_blob};

/// References of the images, as pushed to the registry on 127.0.0.1.
pub struct Images {
    pub app: String,
    pub pause: String,
}

/// Builds the busybox layout, adds a pause manifest that shares its layer,
/// and pushes both to the registry listening on `port`.
pub fn build_and_push(dir: &Path, port: u16) -> Result<Images> {
    crate::run::busybox_layout(dir)?;
    let layout = dir.join("layout");
    add_pause(&layout)?;
    let registry = format!("127.0.0.1:{port}");
    let images = Images {
        app: format!("{registry}/bench/busybox:latest"),
        pause: format!("{registry}/bench/pause:1"),
    };
    for (tag, image) in [("latest", &images.app), ("pause", &images.pause)] {
        sh(Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{image}")))
        .with_context(|| format!("push {image}"))?;
    }
    Ok(images)
}

fn read_blob(layout: &Path, digest: &str) -> Result<Value> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// A second manifest in the layout, tagged `pause`: the busybox layer with
/// `sleep` as its entrypoint. Like the real pause it only waits; it has no
/// SIGTERM handler, which does not matter since runtimes SIGKILL a
/// sandbox's process.
fn add_pause(layout: &Path) -> Result<()> {
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path)?)?;
    let app = index["manifests"][0].clone();
    let manifest = read_blob(
        layout,
        app["digest"].as_str().context("index without a digest")?,
    )?;
    let config = read_blob(
        layout,
        manifest["config"]["digest"]
            .as_str()
            .context("manifest without a config")?,
    )?;
    let cfg = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"]},
        "rootfs": config["rootfs"],
    });
    let (cd, cl) = write_blob(layout, &serde_json::to_vec(&cfg)?)?;
    let m = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
        "layers": manifest["layers"],
    });
    let (md, ml) = write_blob(layout, &serde_json::to_vec(&m)?)?;
    let entry = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ml,
        "annotations": {"org.opencontainers.image.ref.name": "pause"}});
    index["manifests"]
        .as_array_mut()
        .context("index without manifests")?
        .push(entry);
    std::fs::write(&index_path, serde_json::to_vec(&index)?)?;
    Ok(())
}
