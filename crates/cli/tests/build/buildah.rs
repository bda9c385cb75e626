//! The corpus built by buildah from the same Dockerfiles, context and
//! base image, and the two images compared: the config fields a
//! Dockerfile sets, and every file's type, mode, owner and content.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::corpus::{build, case, image_config};
use crate::env::Env;
use crate::support::have;

/// buildah with its own store under the env's sandbox.
fn buildah(e: &Env, args: &[&str]) -> std::process::Output {
    let root = e.sb.path().join("buildah");
    Command::new("buildah")
        .arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("run"))
        .arg("--storage-driver")
        .arg("overlay")
        .env("CONTAINERS_REGISTRIES_CONF", e.sb.conf())
        .args(args)
        .output()
        .expect("run buildah")
}

/// Every file of a root as `path -> type mode uid:gid content-digest`.
pub(crate) fn tree_listing(root: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.is_dir() {
                todo.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else {
                let data = std::fs::read(&p).unwrap();
                format!("file {}", berth_image::digest::Digest::of(&data))
            };
            out.insert(
                rel,
                format!("{what} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()),
            );
        }
    }
    out
}

/// An image's files, exported by berth into a directory.
pub(crate) fn berth_files(e: &Env, image: &str, dir: &Path) -> BTreeMap<String, String> {
    let id = e.ok(&["create", image, "true"]).trim().to_string();
    let tar = e.sb.path().join("export.tar");
    e.ok(&["export", "-o", tar.to_str().unwrap(), &id]);
    e.ok(&["rm", &id]);
    unpack(&tar, dir)
}

fn unpack(tar: &Path, dir: &Path) -> BTreeMap<String, String> {
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("tar")
        .args([
            "-xpf",
            tar.to_str().unwrap(),
            "-C",
            dir.to_str().unwrap(),
            "--numeric-owner",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    tree_listing(dir)
}

/// Paths whose content the two builders may rightly differ in: the
/// runtime's mount points, and what a cache mount saw.
pub(crate) fn comparable(path: &str) -> bool {
    !matches!(
        path,
        "etc/hosts" | "etc/hostname" | "etc/resolv.conf" | "run" | "runs-seen"
    ) && !path.starts_with("run/")
        && !path.starts_with("proc")
        && !path.starts_with("sys")
        && !path.starts_with("dev")
}

/// Two trees' listings (tree_listing) are equal but for the paths that
/// may rightly differ (`comparable`); else every difference, labelled.
pub fn assert_same_files(
    name: &str,
    (a_label, a): (&str, &BTreeMap<String, String>),
    (b_label, b): (&str, &BTreeMap<String, String>),
) {
    let mut diffs: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| comparable(k))
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {a_label} {:?}, {b_label} {:?}", a.get(k), b.get(k)))
        .collect();
    diffs.sort();
    diffs.dedup();
    assert!(
        diffs.is_empty(),
        "{name}: the images differ:\n{}",
        diffs.join("\n")
    );
}

fn compare(name: &str, extra: &[&str]) {
    if !have("buildah") {
        eprintln!("buildah is not installed: skipping the comparison");
        return;
    }
    let e = Env::new();
    let dir = case(&e, name);
    let tag = format!("cmp-{name}");
    build(&e, &dir, &tag, extra);
    let base = format!("BASE={}", e.image);
    let mut args = vec![
        "bud",
        "--layers",
        // crun refuses this host's hybrid cgroups.
        "--runtime",
        "runc",
        // buildah's default network is podman's host-wide bridge, which
        // the test could not take back; no RUN of the corpus needs one.
        "--network",
        "none",
        "--tls-verify=false",
        "--build-arg",
        &base,
        "-t",
        &tag,
    ];
    args.extend(extra);
    args.push(dir.to_str().unwrap());
    let out = buildah(&e, &args);
    assert!(
        out.status.success(),
        "buildah: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Configs: what the Dockerfile set must match.
    let out = buildah(&e, &["inspect", "--type", "image", &tag]);
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs = &theirs["OCIv1"]["config"];
    let ours = image_config(&e, &tag);
    for key in [
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "User",
        "Labels",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
    ] {
        let norm = |v: &Value| match v {
            Value::Null => Value::Null,
            Value::Object(m) if m.is_empty() => Value::Null,
            Value::Array(a) if a.is_empty() => Value::Null,
            v => v.clone(),
        };
        let mut t = theirs[key].clone();
        if key == "Labels"
            && let Value::Object(m) = &mut t
        {
            // buildah labels its images with itself.
            m.remove("io.buildah.version");
        }
        assert_eq!(norm(&ours[key]), norm(&t), "{name}: {key}");
    }
    // Files.
    let archive = e.sb.path().join("buildah.tar");
    let out = buildah(&e, &["from", "--name", "cmp", &tag]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = buildah(&e, &["mount", "cmp"]);
    let mnt = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let st = Command::new("tar")
        .args([
            "-cpf",
            archive.to_str().unwrap(),
            "--numeric-owner",
            "-C",
            &mnt,
            ".",
        ])
        .status()
        .unwrap();
    buildah(&e, &["umount", "cmp"]);
    buildah(&e, &["rm", "cmp"]);
    buildah(&e, &["rmi", "-a", "-f"]);
    assert!(st.success());
    let theirs = unpack(&archive, &e.sb.path().join("theirs"));
    let ours = berth_files(&e, &tag, &e.sb.path().join("ours"));
    assert_same_files(name, ("berth", &ours), ("buildah", &theirs));
}

#[test]
fn buildah_makes_the_same_basics() {
    compare("basics", &[]);
}

#[test]
fn buildah_makes_the_same_copies() {
    compare("copy", &[]);
}

#[test]
fn buildah_makes_the_same_multistage() {
    compare("multistage", &[]);
}

// Not compared, where Debian's buildah (1.28) is the one that departs
// from the Dockerfile reference: heredoc/ (it predates heredocs), mounts/
// (it has no `env=` for secrets), escape/
// (under `# escape=`` it still takes `\` in `C:\Windows` as an escape,
// where the reference keeps it) and shell/ (a shell-form CMD ignores its
// SHELL, which the reference says it takes).
