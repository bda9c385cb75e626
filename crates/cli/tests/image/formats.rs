//! `save --format oci-archive` and `load` of oci-archives and docker dirs
//! (skopeo's `dir:`), round-tripped through berth and checked by skopeo.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::*;

/// An OCI layout with one two-layer image tagged `t`; its config digest.
fn layout(dir: &Path) -> berth_image::Digest {
    let mut l = Layout::new(dir);
    let layers = [
        layer_tar(&[E::File("a", 0o644, b"one\n".to_vec())]),
        layer_tar(&[E::File("b", 0o644, noise(50_000, 7))]),
    ];
    let (desc, cd) = l.image(&layers, true, "amd64", json!({"Cmd": ["sh"]}));
    l.tag(desc, "t");
    cd
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn oci_archives_round_trip_and_skopeo_reads_them() {
    require!("skopeo");
    let sb = Sandbox::new();
    let src = sb.path().join("src");
    let id = layout(&src);
    sb.ok(&["load", "-q", "-i", src.to_str().unwrap()]);
    sb.ok(&["tag", id.hex(), "app:1"]);
    let tar = sb.path().join("app.tar");
    sb.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        tar.to_str().unwrap(),
        "app:1",
    ]);
    // skopeo reads it as an oci-archive, and its copy into a docker dir
    // keeps the image's config (its ID).
    let via = sb.path().join("via-skopeo");
    skopeo(&[
        "copy",
        "-q",
        &format!("oci-archive:{}", tar.display()),
        &format!("dir:{}", via.display()),
    ]);
    assert!(via.join(id.hex()).is_file());
    // Loaded into another store: the same ID, the saved name.
    let sb2 = Sandbox::new();
    let out = sb2.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: localhost/app:1");
    assert_eq!(inspect(&sb2, "app:1")["Id"], json!(id.hex()));
    // Through stdin too.
    let sb3 = Sandbox::new();
    let out = sb3
        .cmd()
        .args(["load", "-q"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id.hex());
    // And the docker dir skopeo made loads as the same image, unnamed.
    let sb4 = Sandbox::new();
    let out = sb4.ok(&["load", "-i", via.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("Loaded image: {}", id.hex()));
    let list = image_list(&sb4);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["Id"], json!(id.hex()));
}

#[test]
fn a_docker_dir_from_skopeo_loads_with_docker_schema2_manifests() {
    require!("skopeo");
    let sb = Sandbox::new();
    let src = sb.path().join("src");
    let id = layout(&src);
    let dir = sb.path().join("d2");
    // skopeo converts to a docker schema 2 manifest on the way.
    skopeo(&[
        "copy",
        "-q",
        "--format",
        "v2s2",
        &format!("oci:{}:t", src.display()),
        &format!("dir:{}", dir.display()),
    ]);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        m["mediaType"],
        json!("application/vnd.docker.distribution.manifest.v2+json")
    );
    sb.ok(&["load", "-q", "-i", dir.to_str().unwrap()]);
    let img = image_list(&sb);
    assert_eq!(img.len(), 1);
    // The conversion keeps the config's bytes, so the image's ID.
    assert_eq!(m["config"]["digest"], json!(id.to_string()));
    assert_eq!(img[0]["Id"], json!(id.hex()));
    // A blob that does not match its digest is refused, naming it.
    let sb2 = Sandbox::new();
    let layer = m["layers"][1]["digest"].as_str().unwrap();
    let f = dir.join(layer.trim_start_matches("sha256:"));
    let mut data = std::fs::read(&f).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    std::fs::write(&f, data).unwrap();
    let err = sb2.fails(&["load", "-i", dir.to_str().unwrap()]);
    assert!(err.contains(layer) && err.contains("docker dir"), "{err}");
    assert!(image_list(&sb2).is_empty());
}

#[test]
fn an_oci_archive_with_a_blob_missing_is_refused_naming_it() {
    let sb = Sandbox::new();
    let src = sb.path().join("src");
    layout(&src);
    // A tar of the layout without its largest blob.
    let mut blobs: Vec<_> = std::fs::read_dir(src.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blobs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let gone = blobs.pop().unwrap();
    std::fs::remove_file(&gone).unwrap();
    let tar = sb.path().join("broken.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let err = sb.fails(&["load", "-i", tar.to_str().unwrap()]);
    let hex = gone.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(hex) && err.contains("not in the archive"),
        "{err}"
    );
    assert!(image_list(&sb).is_empty());
}

#[test]
fn podman_loads_berths_oci_archive_and_berth_loads_podmans() {
    require!("podman");
    let sb = Sandbox::new();
    let src = sb.path().join("src");
    let id = layout(&src);
    sb.ok(&["load", "-q", "-i", src.to_str().unwrap()]);
    sb.ok(&["tag", id.hex(), "app:1"]);
    let ours = sb.path().join("berth.tar");
    sb.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        ours.to_str().unwrap(),
        "app:1",
    ]);
    // A podman of its own under the sandbox (vfs: nothing to mount).
    let podman = |args: &[&str]| {
        let out = Command::new("podman")
            .arg("--root")
            .arg(sb.path().join("podman-root"))
            .arg("--runroot")
            .arg(sb.path().join("podman-run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_REGISTRIES_CONF", sb.conf())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    podman(&["load", "-q", "-i", ours.to_str().unwrap()]);
    let pid = podman(&["image", "inspect", "--format", "{{.Id}}", "localhost/app:1"]);
    assert_eq!(pid.trim(), id.hex());
    let theirs = sb.path().join("podman.tar");
    podman(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        theirs.to_str().unwrap(),
        "localhost/app:1",
    ]);
    let sb2 = Sandbox::new();
    sb2.ok(&["load", "-q", "-i", theirs.to_str().unwrap()]);
    let list = image_list(&sb2);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["Id"], json!(id.hex()));
    // podman's index names the image whole in ref.name.
    assert_eq!(list[0]["Names"], json!(["localhost/app:1"]), "{list:?}");
}

/// `org.opencontainers.image.ref.name` is a tag for some writers and the
/// whole name for others (podman, skopeo): a tag goes with the layout
/// directory's name, a whole name is taken as it is.
#[test]
fn an_oci_ref_name_is_a_tag_or_a_whole_name() {
    let sb = Sandbox::new();
    for (dir, ref_name, want) in [
        ("whole", "localhost/whole:2", "localhost/whole:2"),
        (
            "registry",
            "127.0.0.1:5000/team/app:3",
            "127.0.0.1:5000/team/app:3",
        ),
        ("bydir", "4", "localhost/bydir:4"),
    ] {
        let dir = sb.path().join(dir);
        let mut l = Layout::new(&dir);
        let layers = [layer_tar(&[E::File(
            "f",
            0o644,
            ref_name.as_bytes().to_vec(),
        )])];
        let (desc, _) = l.image(&layers, true, "amd64", json!({"Cmd": ["sh"]}));
        l.tag(desc, ref_name);
        let out = sb.ok(&["load", "-i", dir.to_str().unwrap()]);
        assert_eq!(out, format!("Loaded image: {want}\n"));
    }
}
