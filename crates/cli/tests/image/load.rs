//! Hostile inputs to `load`: OCI layouts whose blobs are symlinks (to
//! /dev/zero, to a host file), FIFOs, or lie about their size, and docker
//! archives whose layer.tar is a link out of the archive. Each is refused
//! promptly with an error naming the blob, and the store is left as it
//! was: no blob, no temporary file.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A refusal is immediate; reading /dev/zero or waiting on a FIFO never
/// ends.
const PROMPT: Duration = Duration::from_secs(20);

/// The manifest of a single-image layout.
fn manifest_of(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"].as_str().unwrap();
    serde_json::from_slice(&fs::read(blob_path(layout, md)).unwrap()).unwrap()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(&digest[7..])
}

/// A copy of the base layout whose layer blob `replace` turns into
/// something else; returns the layout and the layer's digest.
fn base_with_layer(sb: &Sandbox, name: &str, replace: impl FnOnce(&Path)) -> (PathBuf, String) {
    let dir = sb.path().join(name);
    copy_fixture("oci/base", &dir);
    let layer = manifest_of(&dir)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let p = blob_path(&dir, &layer);
    fs::remove_file(&p).unwrap();
    replace(&p);
    (dir, layer)
}

fn load_fails(sb: &Sandbox, input: &Path, needles: &[&str]) {
    let before = sb.store_contents();
    let err = sb.fails_within(&["load", "-i", input.to_str().unwrap()], PROMPT);
    for n in needles {
        assert!(
            err.contains(n),
            "{}: error should say {n:?}: {err}",
            input.display()
        );
    }
    assert_eq!(
        sb.store_contents(),
        before,
        "{}: the store changed",
        input.display()
    );
}

#[test]
fn hostile_oci_blobs_are_refused_before_they_are_copied() {
    let sb = Sandbox::new();
    sb.ok(&["images"]);
    let secret = sb.path().join("secret");
    fs::write(&secret, b"host secret\n").unwrap();

    let (dir, layer) = base_with_layer(&sb, "zero", |p| {
        std::os::unix::fs::symlink("/dev/zero", p).unwrap()
    });
    load_fails(&sb, &dir, &[&layer, "symlink"]);

    let (dir, layer) = base_with_layer(&sb, "host-file", |p| {
        std::os::unix::fs::symlink(&secret, p).unwrap()
    });
    load_fails(&sb, &dir, &[&layer, "symlink"]);

    let (dir, layer) = base_with_layer(&sb, "fifo", |p| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap()
    });
    load_fails(&sb, &dir, &[&layer, "not a regular file", "FIFO"]);

    // A symlinked blobs/ directory is not followed either.
    let dir = sb.path().join("linked-dir");
    copy_fixture("oci/base", &dir);
    let real = sb.path().join("elsewhere");
    fs::rename(dir.join("blobs"), &real).unwrap();
    std::os::unix::fs::symlink(&real, dir.join("blobs")).unwrap();
    load_fails(&sb, &dir, &["symlink"]);

    let dir = fixture("oci/config-declared-2p62");
    let config = manifest_of(&dir)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    load_fails(&sb, &dir, &[&config, &(1u64 << 62).to_string(), "4 MiB"]);

    let dir = fixture("oci/layer-shorter-than-declared");
    let m = manifest_of(&dir);
    let (layer, size) = (
        m["layers"][0]["digest"].as_str().unwrap().to_string(),
        m["layers"][0]["size"].as_u64().unwrap(),
    );
    load_fails(
        &sb,
        &dir,
        &[
            &layer,
            &format!("shorter than the {size} bytes its manifest declares"),
        ],
    );

    let dir = fixture("oci/layer-longer-than-declared");
    let m = manifest_of(&dir);
    let (layer, size) = (
        m["layers"][0]["digest"].as_str().unwrap().to_string(),
        m["layers"][0]["size"].as_u64().unwrap(),
    );
    load_fails(
        &sb,
        &dir,
        &[
            &layer,
            &format!("longer than the {size} bytes its manifest declares"),
        ],
    );

    assert!(image_list(&sb).is_empty());
    // The base itself loads: the refusals were about the changes.
    let base = fixture("oci/base");
    sb.ok(&["load", "-i", base.to_str().unwrap()]);
    assert_eq!(image_list(&sb).len(), 1);
}

#[test]
fn hostile_docker_archive_links_are_only_followed_inside_the_archive() {
    let sb = Sandbox::new();
    sb.ok(&["images"]);
    for f in ["symlink-out", "symlink-up", "hardlink-out"] {
        let input = fixture(&format!("docker/{f}.tar"));
        load_fails(&sb, &input, &["l0/layer.tar is not in the archive"]);
    }
    assert!(image_list(&sb).is_empty());
    // docker 25 links layer.tar to the blob in the same archive.
    let input = fixture("docker/symlink-in.tar");
    let out = sb.ok(&["load", "-i", input.to_str().unwrap()]);
    assert!(out.contains("localhost/links:1"), "{out}");
}
