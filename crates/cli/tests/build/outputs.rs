//! Where a build's result goes besides the store: `--output` (an image
//! archive, the files as a tar stream or in a directory), `--push`,
//! `--iidfile`, `-q`.

use std::process::Command;

use crate::corpus::{build, case};
use crate::env::Env;
use crate::support::have;

#[test]
fn output_writes_archives_files_and_the_iidfile() {
    let e = Env::new();
    let dir = case(&e, "multistage");
    let out = e.sb.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let oci = out.join("image.oci.tar");
    let iid = out.join("iid");
    let id = build(
        &e,
        &dir,
        "outs",
        &[
            "-q",
            "--output",
            &format!("type=oci,dest={}", oci.display()),
            "--iidfile",
            iid.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&iid).unwrap(),
        format!("sha256:{id}")
    );
    if have("skopeo") {
        let o = Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("oci-archive:{}", oci.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["config"]["Entrypoint"][0], "/usr/local/bin/app");
    }
    // The files, in a directory and as a tar stream on stdout.
    let files = out.join("files");
    build(&e, &dir, "outs", &["--output", files.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(files.join("usr/local/bin/app")).unwrap(),
        "compiled\n"
    );
    let base = format!("BASE={}", e.image);
    let o = e
        .cmd()
        .args([
            "build",
            "-q",
            "--build-arg",
            &base,
            "--output",
            "type=tar,dest=-",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut a = tar::Archive::new(&o.stdout[..]);
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("usr/local/bin/app")),
        "{names:?}"
    );
    // A docker archive loads into another store and runs there.
    let docker = out.join("image.docker.tar");
    build(
        &e,
        &dir,
        "outs",
        &[
            "--output",
            &format!("type=docker,dest={}", docker.display()),
        ],
    );
    let other = crate::support::Sandbox::new();
    other.ok(&["load", "-i", docker.to_str().unwrap()]);
    assert!(other.ok(&["images"]).contains("outs"));
}

#[test]
fn push_sends_the_image_to_its_registry() {
    let e = Env::new();
    let dir = case(&e, "escape");
    let name = format!("{}/built/escape:1", e.reg.host());
    build(&e, &dir, &name, &["--push"]);
    e.ok(&["rmi", &name]);
    e.ok(&["pull", "-q", "--tls-verify=false", &name]);
    let out = e.ok(&["run", "--rm", &name, "cat", "/joined"]);
    assert_eq!(out.trim(), "one two three");
    // A name without a registry cannot be pushed.
    let (_, err) = e.code(
        125,
        &["build", "--push", "-t", "plain", dir.to_str().unwrap()],
    );
    assert!(err.contains("which registry"), "{err}");
}

#[test]
fn progress_plain_tty_and_quiet() {
    let e = Env::new();
    let dir = case(&e, "escape");
    let base = format!("BASE={}", e.image);
    let run = |mode: &str| {
        let out = e
            .cmd()
            .args(["build", "--progress", mode, "--build-arg", &base])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // plain: numbered lines, the RUN's output, DONE with a time.
    let plain = run("plain");
    assert!(
        plain.contains(&format!("#1 [stage-0 1/4] FROM {}", e.image)),
        "{plain}"
    );
    assert!(plain.contains("#2 [stage-0 2/4] RUN echo one"), "{plain}");
    assert!(plain.lines().any(|l| l.starts_with("#2 DONE ")), "{plain}");
    // Again: cached steps say CACHED and nothing else.
    let plain = run("plain");
    assert!(plain.contains("#2 CACHED"), "{plain}");
    assert!(!plain.contains("#2 DONE"), "{plain}");
    // tty: a line per step, ended in place.
    std::fs::write(
        dir.join("Dockerfile"),
        "ARG BASE\nFROM $BASE\nRUN echo fresh-output\n",
    )
    .unwrap();
    let tty = run("tty");
    assert!(
        tty.contains("fresh-output") && tty.contains("\x1b[J"),
        "{tty:?}"
    );
    // The step's lines folded and its line written again with its time.
    let ended = tty
        .lines()
        .find(|l| l.contains("=> [stage-0 2/2] RUN echo fresh-output  "))
        .unwrap_or_else(|| panic!("no ended line: {tty:?}"));
    assert!(ended.ends_with('s'), "{ended:?}");
    let tty = run("tty");
    assert!(
        tty.contains("=> CACHED [stage-0 2/2] RUN echo fresh-output"),
        "{tty:?}"
    );
    assert!(run("quiet").trim().is_empty());
    let o = e.berth(&["build", "--progress", "fancy", dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--progress fancy"));
}

#[test]
fn format_docker_makes_a_schema_2_image() {
    let e = Env::new();
    let dir = case(&e, "escape");
    build(&e, &dir, "fmt-docker", &["--format", "docker"]);
    let types = |name: &str| -> (String, String) {
        let v: serde_json::Value =
            serde_json::from_str(&e.ok(&["image", "inspect", name])).unwrap();
        let m = v[0]["ManifestType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let l = v[0]["Layers"][1]["media_type"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (m, l)
    };
    assert_eq!(
        types("fmt-docker"),
        (
            "application/vnd.docker.distribution.manifest.v2+json".to_string(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip".to_string()
        )
    );
    // Another context, so another image (the same config would be the
    // same image ID, one record).
    std::fs::write(dir.join("extra"), "x").unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "ARG BASE\nFROM $BASE\nCOPY extra /extra\n",
    )
    .unwrap();
    build(&e, &dir, "fmt-oci", &[]);
    assert_eq!(
        types("fmt-oci").0,
        "application/vnd.oci.image.manifest.v1+json"
    );
}
