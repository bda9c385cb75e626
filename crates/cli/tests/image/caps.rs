//! Unpacked-size caps and the layer-count cap. A 33 KB zstd layer of
//! 1 GiB of zeros (fixtures/bomb) must stop at the configured cap, by
//! pull, load (OCI layout and docker archive) and import alike, quickly
//! and leaving nothing half-made; a manifest of 501 layers is refused
//! before a blob is fetched.

use std::time::{Duration, Instant};

use crate::support::*;

/// Refusing at 16 MiB takes well under a second; unpacking the whole GiB
/// (what happened without a cap) takes many.
const CAP: &str = "16M";
const QUICK: Duration = Duration::from_secs(20);

fn bomb_digest() -> String {
    let zst = std::fs::read(fixture("bomb/zeros-1g.tar.zst")).unwrap();
    berth_image::Digest::of(&zst).to_string()
}

/// Nothing temporary is left and no image was recorded.
fn assert_nothing_half_made(sb: &Sandbox) {
    for e in sb.store_contents() {
        assert!(
            !e.starts_with("tmp/") && !e.contains(".tmp-"),
            "left behind: {e}"
        );
    }
    assert!(image_list(sb).is_empty());
}

#[test]
fn hostile_zstd_bomb_stops_at_the_layer_cap_on_pull() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    reg.push_layout(
        &fixture("bomb/zeros.oci"),
        "t",
        "bomb/zeros:1",
        "oci",
        false,
    );
    let image = format!("{}/bomb/zeros:1", reg.host());
    let start = Instant::now();
    let err = sb.fails_within(
        &[
            "--max-layer-size",
            CAP,
            "pull",
            "--tls-verify=false",
            &image,
        ],
        QUICK,
    );
    let took = start.elapsed();
    assert!(
        err.contains(&bomb_digest()) && err.contains("16 MiB") && err.contains("--max-layer-size"),
        "names the layer and the limit: {err}"
    );
    eprintln!("pull of the bomb refused after {took:?}");
    assert_nothing_half_made(&sb);
    // The image cap stops it too, with its own name.
    let err = sb.fails_within(
        &[
            "--max-image-size",
            CAP,
            "pull",
            "--tls-verify=false",
            &image,
        ],
        QUICK,
    );
    assert!(
        err.contains(&bomb_digest()) && err.contains("--max-image-size"),
        "{err}"
    );
    assert_nothing_half_made(&sb);
}

#[test]
fn hostile_zstd_bomb_stops_at_the_layer_cap_on_load_and_import() {
    let sb = Sandbox::new();
    sb.ok(&["images"]);
    let before = sb.store_contents();
    for (what, args) in [
        ("OCI layout", vec!["load", "-i", "bomb/zeros.oci"]),
        (
            "docker archive",
            vec!["load", "-i", "bomb/zeros.docker.tar"],
        ),
        ("import", vec!["import", "bomb/zeros-1g.tar.zst", "bomb:1"]),
    ] {
        let mut full: Vec<String> = vec!["--max-layer-size".into(), CAP.into()];
        for a in args {
            full.push(if a.starts_with("bomb/") {
                fixture(a).to_string_lossy().into_owned()
            } else {
                a.to_string()
            });
        }
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let start = Instant::now();
        let err = sb.fails_within(&full, QUICK);
        eprintln!("{what}: refused after {:?}", start.elapsed());
        assert!(
            err.contains(&bomb_digest()) && err.contains("16 MiB"),
            "{what}: names the layer and the limit: {err}"
        );
        assert_eq!(sb.store_contents(), before, "{what} left data");
    }
    assert!(image_list(&sb).is_empty());
}

#[test]
fn hostile_manifest_of_501_layers_is_refused_before_any_blob() {
    require!("docker-registry");
    let sb = Sandbox::new();
    let reg = Registry::start();
    // skopeo takes a minute over 501 layers; the API takes the one blob
    // once.
    reg.put_layout(&fixture("bomb/501-layers.oci"), "bomb/layers", "1");
    let proxy = Proxy::start(reg.port);
    let err = sb.fails_within(
        &[
            "pull",
            "--tls-verify=false",
            &format!("{}/bomb/layers:1", proxy.host()),
        ],
        QUICK,
    );
    assert!(err.contains("501 layers") && err.contains("500"), "{err}");
    let reqs = proxy.requests();
    assert!(
        reqs.iter().any(|r| r.contains("/manifests/")),
        "the manifest came through the proxy: {reqs:#?}"
    );
    assert!(
        !reqs.iter().any(|r| r.contains("/blobs/")),
        "no blob is fetched: {reqs:#?}"
    );
    assert!(sb.store_contents().iter().all(|e| !e.starts_with("blobs/")));
    // load refuses it the same way, storing nothing.
    let before = sb.store_contents();
    let layout = fixture("bomb/501-layers.oci");
    let err = sb.fails_within(&["load", "-i", layout.to_str().unwrap()], QUICK);
    assert!(err.contains("501 layers"), "{err}");
    assert_eq!(sb.store_contents(), before);
    assert!(image_list(&sb).is_empty());
}
