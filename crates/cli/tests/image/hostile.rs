//! Hostile layers: each fails with an error naming the entry, no layer is
//! committed, and nothing outside the store changes.

use std::fs;

use serde_json::json;

use crate::support::*;

fn expect_refused(sb: &Sandbox, reg: &Registry, name: &str, layers: Vec<Vec<u8>>, needle: &str) {
    push_image(sb, reg, &format!("hostile/{name}:1"), &layers, json!({}));
    let err = sb.fails(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/hostile/{name}:1", reg.host()),
    ]);
    assert!(
        err.contains(needle),
        "{name}: error should mention {needle:?}: {err}"
    );
    assert!(err.contains("entry"), "{name}: names the entry: {err}");
}

#[test]
fn hostile_layers_are_refused_and_change_nothing_outside() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    // The canary: what a successful escape would touch.
    let outside = sb.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("target"), b"untouched").unwrap();
    let o = outside.to_str().unwrap().to_string();
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };

    let abs = format!("{o}/abs").into_bytes();
    expect_refused(
        &sb,
        &reg,
        "absolute",
        vec![layer_tar(&[E::Raw(
            abs,
            tar::EntryType::Regular,
            b"x".to_vec(),
            None,
        )])],
        "absolute path",
    );
    expect_refused(
        &sb,
        &reg,
        "dotdot",
        vec![layer_tar(&[E::Raw(
            b"a/../../../../../../../../tmp/berth-escape".to_vec(),
            tar::EntryType::Regular,
            b"x".to_vec(),
            None,
        )])],
        "'..'",
    );
    expect_refused(
        &sb,
        &reg,
        "symlink-follow",
        vec![layer_tar(&[
            E::Symlink("link", leak(&o)),
            E::File("link/target", 0o644, b"pwned".to_vec()),
        ])],
        "symlink",
    );
    expect_refused(
        &sb,
        &reg,
        "relative-symlink-follow",
        vec![layer_tar(&[
            E::Symlink("up", "../../../../../../../../../.."),
            E::File(leak(&format!("up{o}/target")), 0o644, b"pwned".to_vec()),
        ])],
        "symlink",
    );
    // A symlink from an earlier layer is never followed either: the next
    // layer's etc/ is its own directory, which overlay puts over the link.
    push_image(
        &sb,
        &reg,
        "hostile/across:1",
        &[
            layer_tar(&[E::Symlink("etc", leak(&o))]),
            layer_tar(&[E::Raw(
                b"etc/target".to_vec(),
                tar::EntryType::Regular,
                b"pwned".to_vec(),
                None,
            )]),
        ],
        json!({}),
    );
    sb.ok(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/hostile/across:1", reg.host()),
    ]);
    // (Looked up without following the first layer's link.)
    let inner: Vec<_> = layer_dirs(&sb.root())
        .into_iter()
        .filter(|d| {
            d.join("diff/etc")
                .symlink_metadata()
                .is_ok_and(|m| m.is_dir())
        })
        .collect();
    assert_eq!(inner.len(), 1, "the second layer has a real etc/");
    assert_eq!(
        fs::read(inner[0].join("diff/etc/target")).unwrap(),
        b"pwned"
    );
    expect_refused(
        &sb,
        &reg,
        "hardlink-out",
        vec![layer_tar(&[E::Raw(
            b"stolen".to_vec(),
            tar::EntryType::Link,
            vec![],
            Some(format!("{o}/target").into_bytes()),
        )])],
        "absolute path",
    );
    expect_refused(
        &sb,
        &reg,
        "hardlink-dotdot",
        vec![layer_tar(&[E::Raw(
            b"stolen".to_vec(),
            tar::EntryType::Link,
            vec![],
            Some(b"../../../../etc/shadow".to_vec()),
        )])],
        "'..'",
    );
    expect_refused(
        &sb,
        &reg,
        "absurd-size",
        vec![layer_tar(&[E::PaxSize("huge", 1 << 60)])],
        "absurd size",
    );
    expect_refused(
        &sb,
        &reg,
        "too-deep",
        vec![layer_tar(&[E::File(
            leak(&format!("{}f", "d/".repeat(1100))),
            0o644,
            b"deep".to_vec(),
        )])],
        "levels deep",
    );

    assert_eq!(fs::read(outside.join("target")).unwrap(), b"untouched");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    assert!(!std::path::Path::new("/tmp/berth-escape").exists());
    // No layer was committed; the only dirs left are from the good first
    // layer of the cross-layer case.
    for d in layer_dirs(&sb.root()) {
        let n = d.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!n.contains(".tmp-"), "temporary layer left: {n}");
    }
    assert_eq!(
        image_list(&sb).len(),
        1,
        "only the harmless cross-layer image"
    );
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    // The config's diffID says one thing, the layer is another.
    let dir = sb.path().join("layout");
    let mut l = Layout::new(&dir);
    let real = layer_tar(&[E::File("a", 0o644, b"real".to_vec())]);
    let (desc, _) = l.image(&[real], true, "amd64", json!({}));
    // Rewrite the config with a wrong diffID, and the manifest with it.
    let m: serde_json::Value = serde_json::from_slice(
        &fs::read(
            dir.join("blobs/sha256")
                .join(&desc["digest"].as_str().unwrap()[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    let cd = m["config"]["digest"].as_str().unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(&cd[7..])).unwrap())
            .unwrap();
    cfg["rootfs"]["diff_ids"][0] = json!(berth_image::Digest::of(b"other").to_string());
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let cd2 = l.blob(&cfg);
    let mut m2 = m.clone();
    m2["config"]["digest"] = json!(cd2.to_string());
    m2["config"]["size"] = json!(cfg.len());
    let m2 = serde_json::to_vec(&m2).unwrap();
    let md2 = l.blob(&m2);
    l.tag(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md2, "size": m2.len()}), "bad");
    reg.push_layout(&dir, "bad", "test/baddiff:1", "oci", false);
    let err = sb.fails(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/test/baddiff:1", reg.host()),
    ]);
    assert!(err.contains("diffID") && err.contains("mismatch"), "{err}");
    assert!(layer_dirs(&sb.root()).is_empty());
}
