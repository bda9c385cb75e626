//! Pulls from a real registry: formats, layer contents, platforms, auth,
//! TLS, resume after an interrupted download, concurrent pulls.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::sync::atomic::Ordering;

use serde_json::json;

use crate::support::*;

/// A base layer with every kind of entry, and a second layer that deletes
/// and hides things with whiteouts.
fn rich_layers() -> Vec<Vec<u8>> {
    let base = layer_tar(&[
        E::Dir("etc", 0o755),
        E::File(
            "etc/passwd",
            0o644,
            b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n".to_vec(),
        ),
        E::File(
            "etc/group",
            0o644,
            b"root:x:0:\napp:x:1000:\nwheel:x:10:app\n".to_vec(),
        ),
        E::Dir("bin", 0o755),
        E::File("bin/tool", 0o4755, b"#!/bin/sh\n".to_vec()),
        E::FileX(
            "bin/ping",
            0o755,
            (0, 0),
            vec![(
                "security.capability",
                vec![
                    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            )],
            b"ping".to_vec(),
        ),
        E::FileX(
            "bin/owned",
            0o2750,
            (1000, 10),
            vec![("user.note", b"hello".to_vec())],
            b"x".to_vec(),
        ),
        E::Hardlink("bin/tool2", "bin/tool"),
        E::Symlink("bin/sh", "/bin/busybox"),
        E::Fifo("run.fifo"),
        E::Char("null", 1, 3),
        E::Dir("data", 0o755),
        E::File("data/old", 0o644, b"old".to_vec()),
        E::Dir("cache", 0o755),
        E::File("cache/x", 0o644, b"x".to_vec()),
        // No explicit parent entry: created implicitly.
        E::File("implicit/dir/file", 0o600, b"deep".to_vec()),
    ]);
    let top = layer_tar(&[
        E::Dir("data", 0o755),
        E::File("data/.wh.old", 0o644, vec![]),
        E::File("data/new", 0o644, b"new".to_vec()),
        E::Dir("cache", 0o755),
        E::File("cache/.wh..wh..opq", 0o644, vec![]),
        E::File("cache/fresh", 0o644, b"fresh".to_vec()),
    ]);
    vec![base, top]
}

fn check_rich_layers(root: &std::path::Path) {
    let f = |rel: &str| find_in_layers(root, rel).unwrap_or_else(|| panic!("{rel} is in no layer"));
    assert!(
        fs::read_to_string(f("etc/passwd"))
            .unwrap()
            .starts_with("root:x:0:0")
    );
    let tool = fs::metadata(f("bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(tool.mtime(), MTIME as i64);
    assert_eq!(
        fs::metadata(f("bin/tool2")).unwrap().ino(),
        tool.ino(),
        "hardlink"
    );
    let owned = fs::metadata(f("bin/owned")).unwrap();
    assert_eq!(
        (
            owned.uid(),
            owned.gid(),
            owned.permissions().mode() & 0o7777
        ),
        (1000, 10, 0o2750)
    );
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(f("bin/owned"), "user.note", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"hello");
    let n = rustix::fs::getxattr(f("bin/ping"), "security.capability", &mut buf[..])
        .expect("file capability set");
    assert_eq!(n, 20);
    assert_eq!(
        fs::read_link(f("bin/sh")).unwrap().to_str(),
        Some("/bin/busybox")
    );
    assert!(
        fs::symlink_metadata(f("run.fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let null = fs::symlink_metadata(f("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(fs::read(f("implicit/dir/file")).unwrap(), b"deep");
    // The whiteout is a 0/0 character device in the top layer.
    let wh = fs::symlink_metadata(f("data/new").parent().unwrap().join("old")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout for data/old"
    );
    let cache = f("cache/fresh").parent().unwrap().to_path_buf();
    let n =
        rustix::fs::getxattr(&cache, "trusted.overlay.opaque", &mut buf[..]).expect("opaque xattr");
    assert_eq!(&buf[..n], b"y");
}

#[test]
fn pulls_oci_and_docker_images_with_every_entry_kind() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let mut layout = Layout::new(&sb.path().join("layout"));
    let (desc, config) = layout.image(&rich_layers(), true, "amd64", json!({"Cmd": ["/bin/sh"]}));
    layout.tag(desc, "v1");
    reg.push_layout(&layout.dir, "v1", "test/rich:oci", "oci", false);
    reg.push_layout(&layout.dir, "v1", "test/rich:docker", "v2s2", false);

    let oci = format!("{}/test/rich:oci", reg.host());
    let id = sb.ok(&["pull", "-q", "--tls-verify=false", &oci]);
    assert_eq!(
        id.trim(),
        config.hex(),
        "pull prints the image ID (the config digest)"
    );
    check_rich_layers(&sb.root());
    let i = inspect(&sb, &oci);
    assert_eq!(
        i["ManifestType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    // The Docker v2s2 copy has the same config and layers: nothing to fetch.
    let docker = format!("{}/test/rich:docker", reg.host());
    let out = sb
        .cmd()
        .args(["pull", "--tls-verify=false", &docker])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), config.hex());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let i = inspect(&sb, &docker);
    assert_eq!(
        i["ManifestType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let list = image_list(&sb);
    assert_eq!(list.len(), 1, "one image, two names: {list:?}");
    let names = list[0]["Names"].as_array().unwrap();
    assert!(names.contains(&json!(format!("{oci}"))) && names.contains(&json!(docker)));
    assert_eq!(list[0]["RepoDigests"].as_array().unwrap().len(), 2);
    assert_eq!(fs::read_dir(sb.root().join("layers")).unwrap().count(), 2);
    let table = sb.ok(&["images", "--digests"]);
    let head = table.lines().next().unwrap();
    for col in ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(head.contains(col), "{head}");
    }
    assert!(table.contains(&config.short().to_string()));

    // By digest, and with tag and digest together.
    let digest = i["Digest"].as_str().unwrap().to_string();
    let sb2 = Sandbox::new();
    let by_digest = format!("{}/test/rich@{digest}", reg.host());
    assert_eq!(
        sb2.ok(&["pull", "-q", "--tls-verify=false", &by_digest])
            .trim(),
        config.hex()
    );
    let both = format!("{}/test/rich:docker@{digest}", reg.host());
    assert_eq!(
        sb2.ok(&["pull", "-q", "--tls-verify=false", &both]).trim(),
        config.hex()
    );
    // Unknown tags name what was missing.
    let err = sb2.fails(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/test/rich:nope", reg.host()),
    ]);
    assert!(
        err.contains("test/rich:nope") && err.contains("MANIFEST_UNKNOWN"),
        "{err}"
    );
}

#[test]
fn multi_arch_index_picks_the_platform() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let mut layout = Layout::new(&sb.path().join("layout"));
    let (amd, amd_cfg) = layout.image(
        &[layer_tar(&[E::File("arch", 0o644, b"amd64".to_vec())])],
        true,
        "amd64",
        json!({}),
    );
    let (arm, arm_cfg) = layout.image(
        &[layer_tar(&[E::File("arch", 0o644, b"arm64".to_vec())])],
        true,
        "arm64",
        json!({}),
    );
    layout.tag_index(vec![amd, arm], "multi");
    reg.push_layout(&layout.dir, "multi", "test/multi:1", "oci", true);
    let name = format!("{}/test/multi:1", reg.host());

    assert_eq!(
        sb.ok(&["pull", "-q", "--tls-verify=false", &name]).trim(),
        amd_cfg.hex()
    );
    let sb2 = Sandbox::new();
    let out = sb2.ok(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--platform",
        "linux/arm64",
        &name,
    ]);
    assert_eq!(out.trim(), arm_cfg.hex());
    assert_eq!(
        fs::read(find_in_layers(&sb2.root(), "arch").unwrap()).unwrap(),
        b"arm64"
    );
    // The index digest is a repo digest too, and its blob is kept.
    let i = inspect(&sb2, &name);
    assert_eq!(i["RepoDigests"].as_array().unwrap().len(), 2);
    let err = sb2.fails(&[
        "pull",
        "--tls-verify=false",
        "--platform",
        "linux/s390x",
        &name,
    ]);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );
}

#[test]
fn basic_auth_over_tls_with_login_and_certs_dir() {
    require!("docker-registry", "skopeo", "openssl", "htpasswd");
    let sb = Sandbox::new();
    let reg = Registry::start_with(RegistryOpts {
        auth: Some(("tester".into(), "secret".into())),
        tls: true,
    });
    // skopeo trusts nothing here: push with verification off.
    let cfg = push_image(
        &sb,
        &reg,
        "private/app:1",
        &[layer_tar(&[E::File("secret", 0o600, b"s".to_vec())])],
        json!({}),
    );
    let name = format!("{}/private/app:1", reg.host());

    // Without the CA the certificate is refused.
    let err = sb.fails(&["pull", &name]);
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    // The CA goes where podman looks for it.
    let certs = sb.path().join("certs.d").join(reg.host());
    fs::create_dir_all(&certs).unwrap();
    fs::copy(reg.ca.as_ref().unwrap(), certs.join("ca.crt")).unwrap();
    let err = sb.fails(&["pull", &name]);
    assert!(
        err.contains("login") || err.contains("401"),
        "anonymous pull: {err}"
    );
    let err = sb.fails(&["login", "-u", "tester", "-p", "wrong", &reg.host()]);
    assert!(err.contains("401") || err.contains("Unauthorized"), "{err}");
    assert!(!sb.path().join("auth.json").exists());
    sb.ok(&["login", "-u", "tester", "-p", "secret", &reg.host()]);
    let auth: serde_json::Value =
        serde_json::from_slice(&fs::read(sb.path().join("auth.json")).unwrap()).unwrap();
    assert_eq!(auth["auths"][reg.host()]["auth"], "dGVzdGVyOnNlY3JldA==");
    assert_eq!(
        fs::metadata(sb.path().join("auth.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(sb.ok(&["pull", "-q", &name]).trim(), cfg.hex());
    sb.ok(&["logout", &reg.host()]);

    // docker's config.json is read too.
    let sb2 = Sandbox::new();
    fs::create_dir_all(sb2.path().join("docker")).unwrap();
    fs::write(
        sb2.path().join("docker/config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"dGVzdGVyOnNlY3JldA=="}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let out = sb2.ok(&["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(out.trim(), cfg.hex());
}

#[test]
fn an_interrupted_pull_resumes_with_a_range_request() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let big = noise(3 << 20, 7);
    let layer = layer_tar(&[E::File("big", 0o644, big.clone())]);
    let compressed_len = gzip(&layer).len() as u64;
    push_image(&sb, &reg, "test/big:1", &[layer], json!({}));
    let proxy = Proxy::start(reg.port);
    let name = format!("{}/test/big:1", proxy.host());

    // The stream is cut after 1 MiB and the registry then goes away.
    *proxy.cut_after.lock().unwrap() = Some(1 << 20);
    let err = sb.fails(&["pull", "--tls-verify=false", &name]);
    assert!(err.contains("blob") || err.contains("registry"), "{err}");
    let partial: Vec<_> = fs::read_dir(sb.root().join("ingest"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(partial.len(), 1, "the partial download is kept");
    let kept = partial[0].metadata().unwrap().len();
    assert!(kept > 0 && kept <= 1 << 20, "kept {kept} bytes");
    assert!(
        super::support::layer_dirs(&sb.root()).is_empty(),
        "no half layer is visible"
    );
    assert!(image_list(&sb).is_empty());

    proxy.refuse.store(false, Ordering::Relaxed);
    let before = proxy.blob_bytes.load(Ordering::Relaxed);
    sb.ok(&["pull", "-q", "--tls-verify=false", &name]);
    let resumed = proxy.blob_bytes.load(Ordering::Relaxed) - before;
    let reqs = proxy.requests();
    assert!(
        reqs.iter()
            .any(|r| r.contains("/blobs/sha256:") && r.contains(&format!("range=bytes={kept}-"))),
        "a Range request from the kept offset: {reqs:#?}"
    );
    assert!(
        resumed < compressed_len,
        "only the rest came over the wire: {resumed} of {compressed_len}"
    );
    assert_eq!(
        fs::read(find_in_layers(&sb.root(), "big").unwrap()).unwrap(),
        big
    );
    assert_eq!(fs::read_dir(sb.root().join("ingest")).unwrap().count(), 0);
}

#[test]
fn concurrent_pulls_download_each_blob_once() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| layer_tar(&[E::File("f", 0o644, noise(512 << 10, i))]))
        .collect();
    let cfg = push_image(&sb, &reg, "test/conc:1", &layers, json!({}));
    let proxy = Proxy::start(reg.port);
    let name = format!("{}/test/conc:1", proxy.host());
    let children: Vec<_> = (0..2)
        .map(|_| {
            sb.cmd()
                .args(["pull", "-q", "--tls-verify=false", &name])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), cfg.hex());
    }
    let gets = count(
        proxy
            .requests()
            .into_iter()
            .filter(|r| r.starts_with("GET") && r.contains("/blobs/"))
            .map(|r| r.split(' ').nth(1).unwrap().to_string()),
    );
    // Three layers and a config; the config may be fetched by both.
    let layer_gets: Vec<_> = gets
        .iter()
        .filter(|(k, _)| !k.contains(cfg.hex()))
        .collect();
    assert_eq!(layer_gets.len(), 3, "{gets:?}");
    assert!(
        layer_gets.iter().all(|(_, n)| **n == 1),
        "each layer blob once: {gets:?}"
    );
    assert_eq!(image_list(&sb).len(), 1);
}

#[test]
fn registries_conf_mirrors_search_and_blocks() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let mirror = Registry::start();
    let cfg = push_image(
        &sb,
        &mirror,
        "library/tiny:latest",
        &[layer_tar(&[E::File("m", 0o644, b"m".to_vec())])],
        json!({}),
    );
    // "tiny" -> the search registry, whose mirror serves it; the registry
    // itself (an unused port) is never reached.
    let dead = free_port();
    sb.write_conf(&format!(
        "unqualified-search-registries = [\"127.0.0.1:{dead}\"]\n\
         [[registry]]\nlocation = \"127.0.0.1:{dead}\"\ninsecure = true\n\
         [[registry.mirror]]\nlocation = \"{}/library\"\ninsecure = true\n\
         [[registry]]\nprefix = \"blocked.example\"\nblocked = true\n",
        mirror.host()
    ));
    assert_eq!(sb.ok(&["pull", "-q", "tiny"]).trim(), cfg.hex());
    assert!(
        sb.ok(&["images"])
            .contains(&format!("127.0.0.1:{dead}/tiny"))
    );
    let err = sb.fails(&["pull", "blocked.example/x"]);
    assert!(err.contains("blocked"), "{err}");
}

#[test]
fn a_bad_partial_download_is_dropped_and_the_blob_fetched_whole() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let big = noise(2 << 20, 11);
    let layer = layer_tar(&[E::File("big", 0o644, big.clone())]);
    let blob = gzip(&layer);
    let digest = berth_image::Digest::of(&blob);
    push_image(&sb, &reg, "test/poison:1", &[layer], json!({}));
    let proxy = Proxy::start(reg.port);
    let name = format!("{}/test/poison:1", proxy.host());
    // A partial left by an earlier pull, with one byte wrong: resuming
    // after it can only give a blob that does not match its digest.
    sb.ok(&["images"]);
    let ingest = sb.root().join("ingest");
    let partial = ingest.join(format!("{}.partial", digest.hex()));
    let mut bad = blob[..1 << 20].to_vec();
    bad[600 << 10] ^= 0xff;
    fs::write(&partial, &bad).unwrap();

    sb.ok(&["pull", "-q", "--tls-verify=false", &name]);
    let blob_gets: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET") && r.contains(digest.hex()))
        .collect();
    assert_eq!(
        blob_gets.len(),
        2,
        "a resume, then from the start: {blob_gets:#?}"
    );
    assert!(
        blob_gets[0].contains(&format!("range=bytes={}-", 1 << 20)),
        "{blob_gets:#?}"
    );
    assert!(!blob_gets[1].contains("range="), "{blob_gets:#?}");
    assert_eq!(
        fs::read(find_in_layers(&sb.root(), "big").unwrap()).unwrap(),
        big
    );
    assert_eq!(fs::read_dir(&ingest).unwrap().count(), 0);
    assert_eq!(
        fs::read(sb.root().join("blobs/sha256").join(digest.hex())).unwrap(),
        blob
    );

    // Leftover partials: rmi's collection drops those untouched for a
    // day, prune drops all.
    let old = ingest.join(format!("{}.partial", berth_image::Digest::of(b"old").hex()));
    let fresh = ingest.join(format!("{}.partial", berth_image::Digest::of(b"new").hex()));
    fs::write(&old, b"old").unwrap();
    fs::write(&fresh, b"new").unwrap();
    let touched = std::process::Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(touched.success());
    sb.ok(&["rmi", &name]);
    assert!(!old.exists(), "a day-old partial is gone");
    assert!(fresh.exists(), "a recent one may still be resumed");
    sb.ok(&["image", "prune", "-f"]);
    assert_eq!(fs::read_dir(&ingest).unwrap().count(), 0);
}

/// A layout with image `a` (layer `real`) and image `b`, whose config
/// claims `real`'s diffID for a blob of other content.
fn known_diff_id_layout(dir: &std::path::Path) -> (Layout, serde_json::Value, berth_image::Digest) {
    let mut l = Layout::new(dir);
    let real = layer_tar(&[E::File("file", 0o644, b"real".to_vec())]);
    let (desc_a, _) = l.image(std::slice::from_ref(&real), true, "amd64", json!({}));
    l.tag(desc_a, "a");
    let other = gzip(&layer_tar(&[E::File("file", 0o644, b"swapped".to_vec())]));
    let od = l.blob(&other);
    let cfg = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [berth_image::Digest::of(&real)] },
    }))
    .unwrap();
    let cd = l.blob(&cfg);
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": od, "size": other.len() }],
    }))
    .unwrap();
    let md = l.blob(&m);
    let desc_b = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len()});
    (l, desc_b, od)
}

#[test]
fn a_blob_claiming_a_known_layer_is_checked_against_its_diff_id() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let dir = sb.path().join("layout");
    let (mut l, desc_b, other) = known_diff_id_layout(&dir);
    l.tag(desc_b.clone(), "b");
    reg.push_layout(&dir, "a", "t/known:a", "oci", false);
    reg.push_layout(&dir, "b", "t/known:b", "oci", false);
    sb.ok(&[
        "pull",
        "-q",
        "--tls-verify=false",
        &format!("{}/t/known:a", reg.host()),
    ]);

    // The layer is there already; the blob that claims to be it is not.
    let err = sb.fails(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/t/known:b", reg.host()),
    ]);
    assert!(err.contains("diffID") && err.contains("mismatch"), "{err}");
    assert!(
        !sb.root().join("blobs/sha256").join(other.hex()).exists(),
        "the swapped blob is not stored"
    );
    // Same through load, from a layout holding only b.
    let only_b = sb.path().join("only-b");
    let mut lb = Layout::new(&only_b);
    for e in fs::read_dir(dir.join("blobs/sha256")).unwrap().flatten() {
        fs::copy(e.path(), only_b.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    lb.tag(desc_b, "b");
    let err = sb.fails(&["load", "-i", only_b.to_str().unwrap()]);
    assert!(err.contains("diffID") && err.contains("mismatch"), "{err}");

    assert_eq!(image_list(&sb).len(), 1, "only a");
    let layers = layer_dirs(&sb.root());
    assert_eq!(layers.len(), 1);
    assert_eq!(fs::read(layers[0].join("diff/file")).unwrap(), b"real");
}
