//! The local store: removal keeps what is referenced, save/load/import,
//! push, bundles with overlay (many layers) and copy snapshots, run by
//! berth-runtime.

use std::fs;
use std::os::unix::fs::MetadataExt;

use serde_json::json;

use crate::support::*;

fn blobs(sb: &Sandbox) -> usize {
    fs::read_dir(sb.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn rmi_and_prune_remove_only_unreferenced_data() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let base = layer_tar(&[E::File("base", 0o644, b"base".to_vec())]);
    let a = layer_tar(&[E::File("a", 0o644, b"a".to_vec())]);
    let b = layer_tar(&[E::File("b", 0o644, b"b".to_vec())]);
    push_image(&sb, &reg, "t/a:1", &[base.clone(), a], json!({}));
    let idb = push_image(&sb, &reg, "t/b:1", &[base, b], json!({}));
    let (na, nb) = (
        format!("{}/t/a:1", reg.host()),
        format!("{}/t/b:1", reg.host()),
    );
    sb.ok(&["pull", "-q", "--tls-verify=false", &na]);
    sb.ok(&["pull", "-q", "--tls-verify=false", &nb]);
    assert_eq!(layer_dirs(&sb.root()).len(), 3, "the base layer is shared");
    // tag: a second name only untags on rmi.
    sb.ok(&["tag", &nb, "extra:2"]);
    assert!(
        sb.ok(&["rmi", "extra:2"])
            .contains("Untagged: localhost/extra:2")
    );
    assert_eq!(image_list(&sb).len(), 2);

    sb.ok(&["rmi", &na]);
    assert_eq!(layer_dirs(&sb.root()).len(), 2, "base and b stay");
    assert!(find_in_layers(&sb.root(), "base").is_some());
    assert!(find_in_layers(&sb.root(), "a").is_none());
    assert_eq!(blobs(&sb), 4, "b's manifest, config and two layers");

    // An image a container uses is kept.
    sb.ok(&[
        "bundle",
        "create",
        "--snapshotter",
        "copy",
        &nb,
        "c1",
        "--",
        "true",
    ]);
    let err = sb.fails_with(2, &["rmi", &nb]);
    assert!(err.contains("in use by container c1"), "{err}");
    sb.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(image_list(&sb).len(), 1);
    sb.ok(&["bundle", "rm", "c1"]);
    let out = sb.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains(idb.hex()));
    assert!(image_list(&sb).is_empty());
    assert_eq!(blobs(&sb), 0);
    assert!(layer_dirs(&sb.root()).is_empty());
    let err = sb.fails_with(1, &["rmi", "nothing-here"]);
    assert!(
        err.contains("nothing-here") && err.contains("not known"),
        "{err}"
    );
}

#[test]
fn save_load_import_and_push_round_trip() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let layers = vec![
        layer_tar(&[
            E::Dir("etc", 0o755),
            E::File("etc/os", 0o644, b"one".to_vec()),
        ]),
        layer_tar(&[
            E::File("etc/.wh.os", 0o644, vec![]),
            E::File("two", 0o644, b"two".to_vec()),
        ]),
    ];
    let id = push_image(&sb, &reg, "t/rt:1", &layers, json!({"Cmd": ["sh"]}));
    let name = format!("{}/t/rt:1", reg.host());
    sb.ok(&["pull", "-q", "--tls-verify=false", &name]);

    for format in ["docker-archive", "oci-dir"] {
        let out = sb.path().join(format!("saved-{format}"));
        sb.ok(&[
            "save",
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
            &name,
        ]);
        let other = sb.path().join(format!("root-{format}"));
        let o = sb
            .cmd_root(&other)
            .args(["load", "-i", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&name),
            "{format}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let list = sb
            .cmd_root(&other)
            .args(["images", "--format", "json"])
            .output()
            .unwrap();
        let list: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
        assert_eq!(
            list[0]["Id"],
            id.hex(),
            "{format}: same image ID after load"
        );
        let whiteouts = layer_dirs(&other)
            .iter()
            .filter_map(|d| fs::symlink_metadata(d.join("diff/etc/os")).ok())
            .filter(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()))
            .count();
        assert_eq!(
            whiteouts, 1,
            "{format}: the whiteout survives the round trip"
        );
    }

    // Push to another repository of the same registry: blobs are mounted,
    // not uploaded, then read back by skopeo.
    let proxy = Proxy::start(reg.port);
    let dest = format!("{}/t/copy:2", proxy.host());
    sb.ok(&["tag", &name, &format!("{}/t/rt:1", proxy.host())]);
    sb.ok(&["push", "--tls-verify=false", &name, &dest]);
    let reqs = proxy.requests();
    assert!(
        reqs.iter().any(|r| r.contains("mount=sha256:")),
        "{reqs:#?}"
    );
    let o = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{dest}"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sb2 = Sandbox::new();
    assert_eq!(
        sb2.ok(&["pull", "-q", "--tls-verify=false", &dest]).trim(),
        id.hex()
    );

    // import: a rootfs tarball becomes a one-layer image named localhost/.
    let tarball = sb.path().join("rootfs.tar.gz");
    fs::write(
        &tarball,
        gzip(&layer_tar(&[
            E::Dir("bin", 0o755),
            E::File("bin/hello", 0o755, b"hi".to_vec()),
        ])),
    )
    .unwrap();
    let id = sb.ok(&["import", tarball.to_str().unwrap(), "imported:v1"]);
    let i = inspect(&sb, "imported:v1");
    assert_eq!(i["Id"], id.trim());
    assert_eq!(i["RepoTags"][0], "localhost/imported:v1");
    assert_eq!(
        fs::read(find_in_layers(&sb.root(), "bin/hello").unwrap()).unwrap(),
        b"hi"
    );
}

#[test]
fn bundles_mount_many_layers_and_run_with_berth_runtime() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    // A busybox rootfs layer, then 80 small layers: more lowerdirs than one
    // page of mount options holds with absolute paths.
    let mut base = vec![
        E::Dir("bin", 0o755),
        E::File("bin/busybox", 0o755, fs::read("/bin/busybox").unwrap()),
    ];
    for a in ["sh", "cat", "id", "ls"] {
        base.push(E::Symlink(
            Box::leak(format!("bin/{a}").into_boxed_str()),
            "busybox",
        ));
    }
    base.push(E::Dir("etc", 0o755));
    base.push(E::File(
        "etc/passwd",
        0o644,
        b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n".to_vec(),
    ));
    base.push(E::File(
        "etc/group",
        0o644,
        b"root:x:0:\napp:x:1000:\nextra:x:2000:app\n".to_vec(),
    ));
    base.push(E::File("gone", 0o644, b"x".to_vec()));
    for d in ["proc", "sys", "dev", "tmp"] {
        base.push(E::Dir(d, 0o755));
    }
    let mut layers = vec![layer_tar(&base)];
    for i in 0..80 {
        let name: &'static str = Box::leak(format!("l{i}").into_boxed_str());
        layers.push(layer_tar(&[E::File(
            name,
            0o644,
            format!("{i}").into_bytes(),
        )]));
    }
    layers.push(layer_tar(&[E::File(".wh.gone", 0o644, vec![])]));
    push_image(
        &sb,
        &reg,
        "t/many:1",
        &layers,
        json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["id"], "User": "app", "Env": ["GREETING=hi"], "WorkingDir": "/tmp", "Labels": {"x": "y"}, "ExposedPorts": {"80/tcp": {}}}),
    );
    let name = format!("{}/t/many:1", reg.host());
    sb.ok(&["pull", "-q", "--tls-verify=false", &name]);

    for snap in ["overlay", "copy"] {
        let id = format!("many-{snap}");
        let dir = sb.ok(&["bundle", "create", "--snapshotter", snap, &name, &id, "--", "cat /l0 /l79; echo \" $GREETING $(id -u):$(id -G) $PWD\"; test -e /gone && echo still-there; exit 0"]);
        let dir = std::path::PathBuf::from(dir.trim());
        let rootfs = dir.join("rootfs");
        assert_eq!(fs::read(rootfs.join("l0")).unwrap(), b"0", "{snap}");
        assert_eq!(fs::read(rootfs.join("l79")).unwrap(), b"79", "{snap}");
        assert!(!rootfs.join("gone").exists(), "{snap}: whiteout hides gone");
        let spec: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(
            spec["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [2000]})
        );
        assert_eq!(spec["process"]["cwd"], "/tmp");
        assert_eq!(spec["annotations"]["x"], "y");
        assert_eq!(
            spec["annotations"]["org.opencontainers.image.exposedPorts"],
            "80/tcp"
        );
        assert!(
            spec["process"]["env"]
                .as_array()
                .unwrap()
                .contains(&json!("GREETING=hi"))
        );
        assert_eq!(spec["process"]["args"][0], "/bin/sh");

        // berth-runtime runs it.
        let state = sb.path().join("rt-state");
        let rt = std::path::Path::new(env!("CARGO_BIN_EXE_berth")).with_file_name("berth-runtime");
        let out = std::process::Command::new(&rt)
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle", dir.to_str().unwrap(), &id])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let _ = std::process::Command::new(rt)
            .arg("--root")
            .arg(&state)
            .args(["delete", "--force", &id])
            .output();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{snap}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), "079 hi 1000:1000 2000 /tmp", "{snap}");
        sb.ok(&["bundle", "rm", &id]);
        assert!(!dir.exists());
        assert!(
            !fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .contains(&id)
        );
    }
}

#[test]
fn digest_names_keep_images_and_rmi_takes_one_name_at_a_time() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let dir = sb.path().join("layout");
    let mut l = Layout::new(&dir);
    let (desc, id) = l.image(
        &[layer_tar(&[E::File("d", 0o644, b"d".to_vec())])],
        true,
        "amd64",
        json!({}),
    );
    let digest = desc["digest"].as_str().unwrap().to_string();
    l.tag(desc, "t");
    reg.push_layout(&dir, "t", "t/d:1", "oci", false);
    let other = push_image(
        &sb,
        &reg,
        "t/e:1",
        &[layer_tar(&[E::File("e", 0o644, b"e".to_vec())])],
        json!({}),
    );
    let by_digest = format!("{}/t/d@{digest}", reg.host());
    let tagged = format!("{}/t/d:1", reg.host());
    let e = format!("{}/t/e:1", reg.host());

    // Pulled by digest only: no tag, but not dangling.
    assert_eq!(
        sb.ok(&["pull", "-q", "--tls-verify=false", &by_digest])
            .trim(),
        id.hex()
    );
    assert_eq!(inspect(&sb, &by_digest)["RepoTags"], json!([]));
    sb.ok(&["pull", "-q", "--tls-verify=false", &e]);
    sb.ok(&["image", "prune", "-f"]);
    assert_eq!(
        image_list(&sb).len(),
        2,
        "prune keeps the digest-pulled image"
    );

    // Its tag is another name: rmi of the tag leaves the digest name.
    sb.ok(&["pull", "-q", "--tls-verify=false", &tagged]);
    let out = sb.ok(&["rmi", &tagged]);
    assert!(out.contains(&format!("Untagged: {tagged}")), "{out}");
    assert!(!out.contains("Deleted"), "{out}");
    assert_eq!(inspect(&sb, &by_digest)["Id"], id.hex());
    sb.fails(&["image", "inspect", &tagged]);
    // The last name goes with the image.
    let out = sb.ok(&["rmi", &by_digest]);
    assert!(out.contains(&format!("Deleted: {}", id.hex())), "{out}");
    assert_eq!(image_list(&sb).len(), 1);

    // A tag moved to another image leaves the first one dangling.
    sb.ok(&["pull", "-q", "--tls-verify=false", &tagged]);
    sb.ok(&["tag", &tagged, &e]);
    let listed: Vec<String> = image_list(&sb)
        .iter()
        .map(|i| i["Id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        listed.contains(&other.hex().to_string()),
        "e is dangling now: {listed:?}"
    );
    let out = sb.ok(&["image", "prune", "-f"]);
    assert!(out.contains(other.hex()), "{out}");
    let listed: Vec<String> = image_list(&sb)
        .iter()
        .map(|i| i["Id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, [id.hex().to_string()]);
}

/// Holds the store's lock exclusively (as removal does) until dropped.
fn hold_store_lock(sb: &Sandbox) -> fs::File {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(sb.root().join("store.lock"))
        .unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
    f
}

/// Runs berth while the store is locked: it must wait, then succeed.
fn waits_for_the_lock(sb: &Sandbox, args: &[&str]) {
    let lock = hold_store_lock(sb);
    let mut child = sb
        .cmd()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let early = child.try_wait().unwrap();
    drop(lock);
    if early.is_some() {
        let _ = child.wait();
    }
    assert!(
        early.is_none(),
        "berth {args:?} ran while removal held the store"
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn save_copies_blobs_of_the_right_size_and_save_and_push_wait_for_removal() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let layer = layer_tar(&[E::File("s", 0o644, noise(64 << 10, 3))]);
    push_image(&sb, &reg, "t/s:1", std::slice::from_ref(&layer), json!({}));
    let name = format!("{}/t/s:1", reg.host());
    sb.ok(&["pull", "-q", "--tls-verify=false", &name]);

    let out = sb.path().join("saved");
    sb.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        out.to_str().unwrap(),
        &name,
    ]);
    let store_blobs = sb.root().join("blobs/sha256");
    let mut n = 0;
    for e in fs::read_dir(out.join("blobs/sha256")).unwrap().flatten() {
        let md = e.metadata().unwrap();
        let sm = fs::metadata(store_blobs.join(e.file_name())).unwrap();
        assert_eq!(md.nlink(), 1, "{:?} is a link", e.file_name());
        assert_ne!(md.ino(), sm.ino());
        assert_eq!(md.len(), sm.len());
        n += 1;
    }
    assert_eq!(n, 3, "manifest, config, layer");
    // Changing the output leaves the store alone.
    let layer_hex = berth_image::Digest::of(&gzip(&layer)).hex().to_string();
    fs::write(out.join("blobs/sha256").join(&layer_hex), b"changed").unwrap();
    assert_eq!(
        fs::read(store_blobs.join(&layer_hex)).unwrap(),
        gzip(&layer)
    );

    // A store blob of the wrong size is named, not saved.
    let blob = store_blobs.join(&layer_hex);
    let good = fs::read(&blob).unwrap();
    let mut longer = good.clone();
    longer.push(0);
    fs::write(&blob, &longer).unwrap();
    let out2 = sb.path().join("saved2");
    let err = sb.fails(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        out2.to_str().unwrap(),
        &name,
    ]);
    assert!(
        err.contains(&layer_hex) && err.contains(&format!("{} bytes", longer.len())),
        "{err}"
    );
    fs::write(&blob, &good).unwrap();

    // save and push hold the store: removal cannot take blobs meanwhile.
    let out3 = sb.path().join("saved3");
    waits_for_the_lock(
        &sb,
        &[
            "save",
            "--format",
            "oci-dir",
            "-o",
            out3.to_str().unwrap(),
            &name,
        ],
    );
    assert!(out3.join("index.json").exists());
    waits_for_the_lock(
        &sb,
        &[
            "push",
            "-q",
            "--tls-verify=false",
            &name,
            &format!("{}/t/pushed:1", reg.host()),
        ],
    );
}
