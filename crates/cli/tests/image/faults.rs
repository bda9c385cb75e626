//! A registry that misbehaves mid-blob, through a proxy in front of the
//! real one: a blob that stalls after 10 bytes fails the pull within its
//! idle timeouts, naming the blob and the registry; a blob longer than
//! declared or with other bytes is reported as exactly that.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// Pushes a one-layer image (the layer gzipped unless `plain`); returns
/// the digests of its layer blob and config.
fn one_layer(sb: &Sandbox, reg: &Registry, repo_tag: &str, plain: bool) -> (String, String) {
    let layer = layer_tar(&[E::File("data", 0o644, noise(64 << 10, 7))]);
    let dir = sb.path().join(repo_tag.replace(['/', ':'], "_"));
    let mut l = Layout::new(&dir);
    let (desc, config) = l.image(std::slice::from_ref(&layer), !plain, "amd64", json!({}));
    l.tag(desc, "t");
    if plain {
        // skopeo would compress it on the way.
        let (repo, tag) = repo_tag.split_once(':').unwrap();
        reg.put_layout(&dir, repo, tag);
    } else {
        reg.push_layout(&dir, "t", repo_tag, "oci", false);
    }
    let blob = if plain { layer } else { gzip(&layer) };
    (
        berth_image::Digest::of(&blob).to_string(),
        config.to_string(),
    )
}

/// Only what a resumable download keeps: no temporary files or layers.
fn assert_no_debris(sb: &Sandbox, partial_of: &str) {
    for e in sb.store_contents() {
        let ok = e.starts_with("blobs/")
            || (!partial_of.is_empty() && e == format!("ingest/{}.partial", &partial_of[7..]))
            || (e.starts_with("layers/") && !e.contains(".tmp-"));
        assert!(ok, "left behind: {e}");
    }
}

#[test]
fn a_stalled_blob_fails_the_pull_within_its_idle_timeouts() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let (layer, _) = one_layer(&sb, &reg, "faults/stall:1", false);
    let proxy = Proxy::start(reg.port);
    *proxy.fault.lock().unwrap() = Some(Fault {
        digest: layer.clone(),
        kind: FaultKind::Stall { after: 10 },
    });
    let (out, took) = sb.berth_within(
        &[
            "--idle-timeout",
            "1s",
            "pull",
            "--tls-verify=false",
            &format!("{}/faults/stall:1", proxy.host()),
        ],
        Duration::from_secs(90),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains(&layer) && err.contains(&proxy.host()) && err.contains("stalled"),
        "names the blob, the registry and the stall: {err}"
    );
    eprintln!("a blob stalling every time failed the pull after {took:?}");
    // Six tries of one idle second each, and backoff between them.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let gets = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains(&layer))
        .count();
    assert!(gets >= 2, "the stall was retried ({gets} GETs)");
    assert_no_debris(&sb, &layer);
    assert!(image_list(&sb).is_empty());
}

#[test]
fn a_blob_longer_than_declared_or_with_other_bytes_is_named_so() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let (layer, config) = one_layer(&sb, &reg, "faults/long:1", false);
    let (plain_layer, _) = one_layer(&sb, &reg, "faults/flip:1", true);
    let proxy = Proxy::start(reg.port);
    // Each case pulls into a store of its own: a config stored by one
    // would not be fetched by the next.
    let pull = |name: &str| {
        let fresh = Sandbox::new();
        let err = fresh.fails_within(
            &[
                "pull",
                "--tls-verify=false",
                &format!("{}/{name}", proxy.host()),
            ],
            Duration::from_secs(60),
        );
        assert_no_debris(&fresh, "");
        assert!(image_list(&fresh).is_empty());
        err
    };
    let size_of = |d: &str| {
        std::fs::metadata(
            reg.dir
                .path()
                .join("data/docker/registry/v2/blobs/sha256")
                .join(&d[7..9])
                .join(&d[7..])
                .join("data"),
        )
        .unwrap()
        .len()
    };
    for d in [&layer, &config] {
        *proxy.fault.lock().unwrap() = Some(Fault {
            digest: d.clone(),
            kind: FaultKind::Append(b"and some more".to_vec()),
        });
        let err = pull("faults/long:1");
        let want = format!(
            "blob {d} is longer than the {} bytes its manifest declares",
            size_of(d)
        );
        assert!(err.contains(&want), "{want}: {err}");
        assert!(!err.contains("breaking off"), "{err}");
    }
    *proxy.fault.lock().unwrap() = Some(Fault {
        digest: plain_layer.clone(),
        kind: FaultKind::Flip(600),
    });
    let err = pull("faults/flip:1");
    assert!(
        err.contains(&plain_layer)
            && err.contains("digest mismatch")
            && err.contains("got sha256:"),
        "{err}"
    );
}
