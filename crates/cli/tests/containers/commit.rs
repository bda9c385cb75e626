//! `berth diff` and `berth commit`: a container's changes as docker lists
//! them, and as a new image that runs, pushes and pulls; the same changes
//! made in podman give the same diff lines and the same layer entries.

use std::path::Path;

use serde_json::{Value, json};

use crate::env::*;
use crate::support::{E, layer_tar};

/// Files, a tree to delete and one to empty and refill, a file whose mode
/// changes.
fn base_layer() -> Vec<u8> {
    layer_tar(&[
        E::Dir("d1", 0o755),
        E::Dir("d1/sub", 0o755),
        E::File("d1/sub/f", 0o644, b"a\n".to_vec()),
        E::Dir("d2", 0o755),
        E::File("d2/g", 0o644, b"b\n".to_vec()),
        E::Dir("d3", 0o755),
        E::File("d3/keep", 0o644, b"x\n".to_vec()),
        E::File("etc/conf", 0o644, b"c\n".to_vec()),
    ])
}

/// Adds, changes and deletes: a file, a changed file, a deleted tree, a
/// directory made opaque (rm -rf; mkdir), a new tree, a hardlink, a FIFO,
/// a device node, a symlink pointing out of the root, a mode change.
const CHANGES: &str = "B=/bin/busybox; \
    echo new > /newfile && echo changed > /etc/conf && $B rm -rf /d1 && $B rm -rf /d2 && \
    $B mkdir /d2 && echo n > /d2/n && $B mkdir -p /a/b && echo z > /a/b/z && \
    $B ln /newfile /hl && $B mkfifo /fifo && $B chmod 600 /d3/keep && \
    $B mknod /null2 c 1 3 && $B ln -s /etc/shadow /link-out";

const EXPECTED_DIFF: &str = "A /a\nA /a/b\nA /a/b/z\nD /d1\nD /d2\nA /d2/n\nC /d3/keep\n\
    C /etc\nC /etc/conf\nA /fifo\nA /hl\nA /link-out\nA /newfile\nA /null2\n";

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn diff_and_commit_of_a_running_and_a_stopped_container() {
    let env = Env::new();
    let base = env.image_with("base", base_layer());
    // Running: the changes, then it waits.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "ch",
        "--cap-add",
        "MKNOD",
        &base,
        "sh",
        "-c",
        &format!("{CHANGES} && echo ready > /tmp/ready; sleep 1000"),
    ]);
    wait_for("the changes", || {
        env.ok(&["diff", "ch"]).contains("A /tmp/ready")
    });
    let running = env.ok(&["diff", "ch"]);
    assert_eq!(
        running,
        format!("{EXPECTED_DIFF}C /tmp\nA /tmp/ready\n"),
        "diff of the running container"
    );
    // A commit pauses it, and leaves it running.
    let id = env.ok(&["commit", "ch", "running-snap"]).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(env.status("ch"), "running");
    env.ok(&["rm", "-f", "ch"]);

    // Stopped: the same changes, committed with config changes.
    env.ok(&[
        "run",
        "--name",
        "stopped",
        "--cap-add",
        "MKNOD",
        &base,
        "sh",
        "-c",
        CHANGES,
    ]);
    assert_eq!(env.status("stopped"), "exited");
    assert_eq!(env.ok(&["diff", "stopped"]), EXPECTED_DIFF);
    let id = env
        .ok(&[
            "commit",
            "-a",
            "tester <t@example.com>",
            "-m",
            "made by a test",
            "-c",
            r#"CMD ["cat", "/newfile"]"#,
            "-c",
            "ENV FOO=bar",
            "-c",
            "WORKDIR /d2",
            "-c",
            "LABEL team=berth",
            "-c",
            "EXPOSE 8080",
            "stopped",
            "committed:v1",
        ])
        .trim()
        .to_string();
    let img = "localhost/committed:v1";
    let i = &json(&env.ok(&["image", "inspect", img]))[0];
    assert_eq!(i["Id"], id.as_str());
    let base_i = &json(&env.ok(&["image", "inspect", &base]))[0];
    let base_layers = base_i["RootFS"]["Layers"].as_array().unwrap().len();
    assert_eq!(
        i["RootFS"]["Layers"].as_array().unwrap().len(),
        base_layers + 1
    );
    let base_history = base_i["History"].as_array().map_or(0, |h| h.len());
    let history = i["History"].as_array().unwrap();
    assert_eq!(history.len(), base_history + 1, "{history:?}");
    assert_eq!(history.last().unwrap()["comment"], "made by a test");
    assert_eq!(i["Author"], "tester <t@example.com>");
    let cfg = &i["Config"];
    assert_eq!(cfg["Cmd"], serde_json::json!(["cat", "/newfile"]));
    assert!(
        cfg["Env"]
            .as_array()
            .unwrap()
            .contains(&Value::from("FOO=bar"))
    );
    assert_eq!(cfg["WorkingDir"], "/d2");
    assert_eq!(cfg["Labels"]["team"], "berth");
    assert!(cfg["ExposedPorts"]["8080/tcp"].is_object());

    // A container of the new image has the changes and the config.
    assert_eq!(env.ok(&["run", "--rm", img]), "new\n");
    let check = "B=/bin/busybox; $B pwd; echo $FOO; cat /etc/conf; \
        $B test -e /d1 && echo d1 is back; ls /d2; cat /a/b/z; \
        $B test -p /fifo && echo fifo; stat -c %a /d3/keep; \
        [ $(stat -c %i /hl) = $(stat -c %i /newfile) ] && echo linked; cat /d3/keep; \
        $B readlink /link-out; stat -c '%F %t:%T' /null2";
    let expected =
        "/d2\nbar\nchanged\nn\nz\nfifo\n600\nlinked\nx\n/etc/shadow\ncharacter special file 1:3\n";
    assert_eq!(env.ok(&["run", "--rm", img, "sh", "-c", check]), expected);
    // No mount point of the runtime's went into the layer.
    let saved = env.sb.path().join("saved");
    env.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        saved.to_str().unwrap(),
        img,
    ]);
    let paths: Vec<String> = top_layer_entries(&saved)
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert!(paths.contains(&"etc/conf".to_string()), "{paths:?}");
    for m in ["etc/hosts", "etc/hostname", "etc/resolv.conf", "tmp/ready"] {
        assert!(!paths.iter().any(|p| p == m), "{m} in {paths:?}");
    }

    // Pushed and pulled into a fresh root, it runs the same.
    let dest = format!("{}/committed:v1", env.reg.host());
    env.ok(&["push", "-q", "--tls-verify=false", img, &dest]);
    let fresh = env.sb.path().join("fresh");
    let berth = |args: &[&str]| {
        let out = env
            .sb
            .cmd_root(&fresh.join("root"))
            .arg("--runroot")
            .arg(fresh.join("run"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        berth(&["pull", "-q", "--tls-verify=false", &dest]).trim(),
        id
    );
    // No network: the fresh root's own default network would outlive the
    // test (the env removes only its own root's).
    assert_eq!(
        berth(&["run", "--rm", "--network", "none", &dest, "sh", "-c", check]),
        expected
    );
    assert!(berth(&["ps", "-a", "-q"]).is_empty());
}

fn have(cmd: &str) -> bool {
    crate::support::have(cmd)
}

/// One entry of a layer tar, as compared: no times, owners by number.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    path: String,
    kind: u8,
    mode: u32,
    owner: (u64, u64),
    link: Option<String>,
}

/// The entries of the top layer of the image saved as an OCI layout in
/// `dir`.
fn top_layer_entries(dir: &Path) -> Vec<Entry> {
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index: Value = json(&std::fs::read_to_string(dir.join("index.json")).unwrap());
    let m: Value = json(
        &std::fs::read_to_string(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    );
    let top = m["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let raw = std::fs::read(blob(&top)).unwrap();
    let data = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out).unwrap();
        out
    } else {
        raw
    };
    let mut out = Vec::new();
    for e in tar::Archive::new(&data[..]).entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let path = String::from_utf8_lossy(&e.path_bytes())
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        out.push(Entry {
            path,
            kind: h.entry_type().as_byte(),
            mode: h.mode().unwrap() & 0o7777,
            owner: (h.uid().unwrap(), h.gid().unwrap()),
            link: e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned()),
        });
    }
    out.sort();
    out
}

/// What podman itself puts in a container's root (its /run/.containerenv,
/// /etc/mtab link and the mount points of the files it binds in): podman's
/// doing, not the container's.
const PODMAN_OWN: &[&str] = &[
    "etc/hostname",
    "etc/hosts",
    "etc/mtab",
    "etc/resolv.conf",
    "run",
    "run/.containerenv",
];

#[test]
fn diff_and_commit_match_podman() {
    if !(have("podman") && have("conmon")) {
        eprintln!("SKIPPED: podman and conmon are needed");
        return;
    }
    let env = Env::new();
    let base = env.image_with("base", base_layer());
    // podman's crun refuses this host's hybrid cgroups: berth-runtime runs
    // its containers.
    let runtime = std::path::Path::new(env!("CARGO_BIN_EXE_berth")).with_file_name("berth-runtime");
    let p = Podman::new(env.sb.path().join("podman"), runtime.to_str().unwrap());
    p.ok(&["pull", "-q", "--tls-verify=false", &base]);
    p.ok(&[
        "run",
        "--name",
        "pc",
        "--network",
        "none",
        "--cap-add",
        "MKNOD",
        &base,
        "sh",
        "-c",
        CHANGES,
    ]);
    env.ok(&[
        "run",
        "--name",
        "bc",
        "--network",
        "none",
        "--cap-add",
        "MKNOD",
        &base,
        "sh",
        "-c",
        CHANGES,
    ]);
    let podman_diff = p.ok(&["diff", "pc"]);
    assert_eq!(env.ok(&["diff", "bc"]), podman_diff);
    assert_eq!(podman_diff, EXPECTED_DIFF);

    p.ok(&["commit", "-q", "pc", "localhost/pc:t"]);
    env.ok(&["commit", "bc", "localhost/bc:t"]);
    let (pdir, bdir) = (env.sb.path().join("p-oci"), env.sb.path().join("b-oci"));
    p.ok(&[
        "save",
        "-q",
        "--format",
        "oci-dir",
        "-o",
        pdir.to_str().unwrap(),
        "localhost/pc:t",
    ]);
    env.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        bdir.to_str().unwrap(),
        "localhost/bc:t",
    ]);
    // The container's command is the new image's, in both.
    let cmd_of = |dir: &std::path::Path| -> serde_json::Value {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let blob = |d: &str| {
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let c: serde_json::Value = serde_json::from_slice(
            &std::fs::read(blob(m["config"]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        json!([c["config"]["Entrypoint"], c["config"]["Cmd"]])
    };
    assert_eq!(cmd_of(&bdir), cmd_of(&pdir));
    assert_eq!(cmd_of(&bdir)[1], json!(["sh", "-c", CHANGES]));
    let podman: Vec<Entry> = top_layer_entries(&pdir)
        .into_iter()
        .filter(|e| !PODMAN_OWN.contains(&e.path.as_str()))
        .collect();
    let berth = top_layer_entries(&bdir);
    assert_eq!(berth, podman);
    // The entries the changes had to give, whiteouts as tar files.
    let paths: Vec<&str> = berth.iter().map(|e| e.path.as_str()).collect();
    for want in [
        ".wh.d1",
        "d2/.wh..wh..opq",
        "d2/n",
        "hl",
        "newfile",
        "fifo",
        "null2",
        "link-out",
    ] {
        assert!(paths.contains(&want), "{want} in {paths:?}");
    }
}
