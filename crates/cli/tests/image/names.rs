//! Hostile image names: bytes that are neither name characters nor
//! separators (`a b`, `a:b:c`) once made the reference parser spin forever
//! with the store lock held. Every command that parses a name, and every
//! file format that carries one, must refuse them at once and store
//! nothing.

use std::time::Duration;

use crate::support::*;

/// Far above what a refusal takes; a parser loop never ends.
const PROMPT: Duration = Duration::from_secs(20);

const NAMES: [&str; 2] = ["a b", "a:b:c"];

fn assert_refused(err: &str, name: &str) {
    assert!(
        err.contains("invalid reference") && err.contains(&format!("{name:?}")),
        "the error names the reference {name:?}: {err}"
    );
}

#[test]
fn hostile_names_are_refused_promptly_by_every_command() {
    let sb = Sandbox::new();
    // An image to tag: imported from a one-file tarball.
    let tarball = sb.path().join("rootfs.tar");
    std::fs::write(
        &tarball,
        layer_tar(&[E::File("hello", 0o644, b"hi\n".to_vec())]),
    )
    .unwrap();
    sb.ok(&["import", tarball.to_str().unwrap(), "good:1"]);
    for name in NAMES {
        for args in [
            vec!["tag", name, "other:1"],
            vec!["tag", "good:1", name],
            vec!["pull", "--tls-verify=false", name],
            vec!["rmi", name],
            vec!["image", "inspect", name],
        ] {
            let err = sb.fails_within(&args, PROMPT);
            assert_refused(&err, name);
        }
    }
    let list = image_list(&sb);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["Names"], serde_json::json!(["localhost/good:1"]));
}

#[test]
fn hostile_names_in_loaded_images_are_refused_and_store_nothing() {
    let sb = Sandbox::new();
    // A store that exists, so its contents before and after compare.
    sb.ok(&["images"]);
    let before = sb.store_contents();
    for (fixture_name, name) in [
        ("names/space.docker.tar", "a b"),
        ("names/colons.docker.tar", "a:b:c"),
        ("names/space.oci", "a b"),
        ("names/colons.oci", "a:b:c"),
    ] {
        let input = fixture(fixture_name);
        let err = sb.fails_within(&["load", "-i", input.to_str().unwrap()], PROMPT);
        assert_refused(&err, name);
        assert_eq!(sb.store_contents(), before, "{fixture_name} left data");
    }
    assert!(image_list(&sb).is_empty());
}
