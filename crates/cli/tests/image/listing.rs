//! `history`, `inspect` without the `image` word, and `images --filter`,
//! on images loaded from OCI layouts made here.

use berth_image::Digest;
use serde_json::{Value, json};

use crate::support::*;

/// Loads a one-manifest OCI layout of `layers` whose config carries
/// `history`, `labels` and `created`, tagged `name`. Returns the image ID.
fn load_image(
    sb: &Sandbox,
    name: &str,
    layers: &[Vec<u8>],
    history: Value,
    labels: Value,
    created: &str,
) -> Digest {
    let dir = sb
        .path()
        .join(format!("layout-{}", name.replace([':', '/'], "_")));
    let l = Layout::new(&dir);
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        diff_ids.push(Digest::of(layer).to_string());
        let d = l.blob(layer);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": layer.len()}));
    }
    let cfg = serde_json::to_vec(&json!({
        "created": created, "architecture": "amd64", "os": "linux",
        "config": { "Labels": labels },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    }))
    .unwrap();
    let cd = l.blob(&cfg);
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len() },
        "layers": descs,
    }))
    .unwrap();
    let md = l.blob(&m);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
        "annotations": { "io.containerd.image.name": name },
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    sb.ok(&["load", "-q", "-i", dir.to_str().unwrap()]);
    cd
}

fn layer(n: usize) -> Vec<u8> {
    layer_tar(&[E::File("f", 0o644, vec![b'x'; n])])
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn history_prints_the_configs_steps_newest_first_with_layer_sizes() {
    let sb = Sandbox::new();
    let long = format!("/bin/sh -c echo {}", "y".repeat(80));
    let history = json!([
        {"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in /"},
        {"created": "2024-01-02T00:00:00Z", "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true},
        {"created": "2024-01-03T00:00:00Z", "created_by": long, "comment": "second layer"},
    ]);
    let (a, b) = (layer(3000), layer(70_000));
    let id = load_image(
        &sb,
        "hist:1",
        &[a.clone(), b.clone()],
        history,
        json!({}),
        "2024-01-03T00:00:00Z",
    );
    let out = sb.ok(&["history", "hist:1"]);
    let rows = lines(&out);
    assert_eq!(rows.len(), 4, "{out}");
    for col in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(rows[0].contains(col), "{out}");
    }
    assert!(rows[1].starts_with(&id.hex()[..12]), "{out}");
    assert!(rows[1].contains(&format!("{}...", &long[..42])), "{out}");
    assert!(rows[1].contains("second layer"), "{out}");
    assert!(
        rows[2].starts_with("<missing>") && rows[2].contains("0 B"),
        "{out}"
    );
    assert!(
        rows[3].starts_with("<missing>") && rows[3].contains("ADD file:abc"),
        "{out}"
    );
    // Sizes are the layers' unpacked tar sizes, as JSON says exactly.
    let v: Value =
        serde_json::from_str(&sb.ok(&["history", "--format", "json", "hist:1"])).unwrap();
    let sizes: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [b.len() as u64, 0, a.len() as u64]);
    assert_eq!(v[0]["createdBy"], json!(long));
    assert_eq!(v[0]["id"], json!(id.hex()));
    let q = sb.ok(&["history", "-q", "--no-trunc", "hist:1"]);
    assert_eq!(
        lines(&q),
        [id.to_string().as_str(), "<missing>", "<missing>"]
    );
    let full = sb.ok(&["image", "history", "--no-trunc", "hist:1"]);
    assert!(full.contains(&long), "{full}");
    // A history naming more layers than the image has is refused.
    let bad = json!([{"created_by": "a"}, {"created_by": "b"}]);
    load_image(
        &sb,
        "bad:1",
        &[layer(10)],
        bad,
        json!({}),
        "2024-01-03T00:00:00Z",
    );
    let err = sb.fails(&["history", "bad:1"]);
    assert!(err.contains("more layers than the image has"), "{err}");
}

#[test]
fn inspect_without_the_image_word_finds_images() {
    let sb = Sandbox::new();
    let id = load_image(
        &sb,
        "insp:1",
        &[layer(10)],
        json!([]),
        json!({"a": "b"}),
        "2024-01-03T00:00:00Z",
    );
    let v: Value = serde_json::from_str(&sb.ok(&["inspect", "insp:1"])).unwrap();
    assert_eq!(v[0]["Id"], json!(id.hex()));
    assert_eq!(v[0]["Config"]["Labels"]["a"], json!("b"));
    // docker's and podman's shape: RootFS.Type and RootFS.Layers.
    let out = sb.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.RootFS.Type}} {{len .RootFS.Layers}} {{index .RootFS.Layers 0}}",
        "insp:1",
    ]);
    let diff_id = Digest::of(&layer(10));
    assert_eq!(out, format!("layers 1 {diff_id}\n"));
    // The full ID, with its algorithm, as docker and podman list it.
    assert_eq!(sb.ok(&["images", "-q", "--no-trunc"]), format!("{id}\n"));
    assert_eq!(sb.ok(&["images", "-q"]), format!("{}\n", id.short()));
    let err = sb.fails(&["inspect", "nothing-here"]);
    assert!(
        err.contains("nothing-here") && err.contains("neither a container nor an image"),
        "{err}"
    );
}

fn names(sb: &Sandbox, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["images", "--format", "json"];
    for f in filters {
        args.extend(["--filter", f]);
    }
    let v: Vec<Value> = serde_json::from_str(&sb.ok(&args)).unwrap();
    let mut out: Vec<String> = v
        .iter()
        .map(|i| match i["Names"].as_array().and_then(|n| n.first()) {
            Some(n) => n.as_str().unwrap().to_string(),
            None => "<none>".into(),
        })
        .collect();
    out.sort();
    out
}

#[test]
fn images_filter_by_dangling_reference_label_before_and_since() {
    let sb = Sandbox::new();
    load_image(
        &sb,
        "docker.io/library/alpha:1",
        &[layer(1)],
        json!([]),
        json!({"tier": "web", "x": "1"}),
        "2024-01-01T00:00:00Z",
    );
    load_image(
        &sb,
        "team/beta:2",
        &[layer(2)],
        json!([]),
        json!({"tier": "db"}),
        "2024-02-01T00:00:00Z",
    );
    load_image(
        &sb,
        "gamma:3",
        &[layer(3)],
        json!([]),
        json!({}),
        "2024-03-01T00:00:00Z",
    );
    // A dangling one: loaded, then its only name removed by another load.
    load_image(
        &sb,
        "gamma:old",
        &[layer(4)],
        json!([]),
        json!({}),
        "2024-04-01T00:00:00Z",
    );
    sb.ok(&["tag", "gamma:3", "gamma:old"]);
    assert_eq!(names(&sb, &["dangling=true"]), ["<none>"]);
    assert_eq!(names(&sb, &["dangling=false"]).len(), 3);
    assert_eq!(
        names(&sb, &["reference=alpha"]),
        ["docker.io/library/alpha:1"]
    );
    assert_eq!(
        names(&sb, &["reference=*/beta:*"]),
        ["localhost/team/beta:2"]
    );
    assert_eq!(
        names(&sb, &["reference=g?mma:[0-9]"]),
        ["localhost/gamma:3"]
    );
    // Several of one key: any; different keys: all.
    assert_eq!(
        names(&sb, &["reference=alpha", "reference=gamma"]),
        ["docker.io/library/alpha:1", "localhost/gamma:3"]
    );
    assert_eq!(names(&sb, &["label=tier"]).len(), 2);
    assert_eq!(names(&sb, &["label=tier=db"]), ["localhost/team/beta:2"]);
    assert_eq!(names(&sb, &["label=tier", "label=x=1"]).len(), 2);
    assert_eq!(
        names(&sb, &["label=tier", "reference=gamma"]),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&sb, &["before=team/beta:2"]),
        ["docker.io/library/alpha:1"]
    );
    assert_eq!(
        names(&sb, &["since=team/beta:2"]),
        ["<none>", "localhost/gamma:3"]
    );
    let err = sb.fails(&["images", "--filter", "colour=red"]);
    assert!(err.contains("--filter colour=red"), "{err}");
    let err = sb.fails(&["images", "--filter", "before=nothing"]);
    assert!(
        err.contains("--filter before=nothing") && err.contains("nothing"),
        "{err}"
    );
    // The table prints the same selection.
    let t = sb.ok(&["images", "-f", "reference=alpha"]);
    assert_eq!(lines(&t).len(), 2, "{t}");
}
