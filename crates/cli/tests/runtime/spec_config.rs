//! The runtime-spec's config.md: the MUST/SHOULD rules that the other files
//! do not already cover (root.readonly, sysctls: mounts.rs; process fields:
//! process.rs; hooks: hooks.rs; hostname: namespaces.rs; fields that do not
//! parse: hostile.rs).

use serde_json::json;

use crate::support::*;

#[test]
fn unknown_properties_and_annotations_are_ignored() {
    // "Runtimes ... MUST NOT generate an error if they encounter an
    // unknown property. Instead they MUST ignore unknown properties", and
    // the same for unknown annotation keys.
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["true"]);
    b.set("/x-future", json!({"nested": [1, 2]}));
    b.set("/process/x-future", json!("value"));
    b.set("/linux/x-future", json!(true));
    b.set("/root/x-future", json!(1));
    b.set("/mounts/0/x-future", json!(null));
    b.set(
        "/annotations",
        json!({"org.example.unknown": "kept", "x": ""}),
    );
    b.save();
    let id = sb.id("unknown");
    sb.ok(&["create", "--bundle", b.path(), &id]);
    assert_eq!(sb.state(&id)["annotations"]["org.example.unknown"], "kept");
    sb.ok(&["delete", "--force", &id]);
}

#[test]
fn values_the_spec_forbids_are_refused_by_field() {
    // "Runtimes ... MUST generate an error when invalid or unsupported
    // values are encountered"; each refused before anything is made.
    let sb = Sandbox::new();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        // ociVersion MUST be SemVer.
        ("/ociVersion", json!("1.0"), "ociVersion"),
        // A directory MUST exist at root.path.
        ("/root/path", json!("no-such-dir"), "root.path"),
        // A hook's path MUST be absolute; its timeout MUST be above zero.
        (
            "/hooks",
            json!({"prestart": [{"path": "true"}]}),
            "hooks.prestart[0].path",
        ),
        (
            "/hooks",
            json!({"poststop": [{"path": "/bin/true", "timeout": 0}]}),
            "hooks.poststop[0].timeout",
        ),
        // Annotation keys MUST be non-empty.
        ("/annotations", json!({"": "x"}), "annotations"),
        // process.args: at least one entry is REQUIRED.
        ("/process/args", json!([]), "process.args"),
        // rlimits: a duplicated type MUST be an error.
        (
            "/process/rlimits",
            json!([
                {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10},
                {"type": "RLIMIT_NOFILE", "soft": 20, "hard": 20}
            ]),
            "process.rlimits[1].type",
        ),
    ];
    for (pointer, value, field) in cases {
        let mut b = sb.bundle(&["true"]);
        b.set(pointer, value);
        let err = create_fails(&sb, &b, "forbidden");
        assert!(
            err.contains(field),
            "{pointer}: error does not name {field}: {err}"
        );
    }
}

#[test]
fn mounts_are_made_in_listed_order_and_relative_destinations_are_under_root() {
    // "The runtime MUST mount entries in the listed order"; a relative
    // destination (deprecated) "MUST be interpreted as relative to /".
    let sb = Sandbox::new();
    let upper = sb.dir.path().join("upper");
    std::fs::create_dir(&upper).unwrap();
    std::fs::write(upper.join("marker"), "upper\n").unwrap();
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "cat /m/inner/marker /stack/marker; grep -c ' /m ' /proc/self/mountinfo; grep ' /rel ' /proc/self/mountinfo | wc -l",
    ]);
    // /m/inner exists only in the tmpfs of the first entry: the second one
    // can only be made after it.
    b.push(
        "/mounts",
        json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/m/inner", "type": "bind", "source": upper, "options": ["bind"]}),
    );
    // Two entries on one destination: the later one is on top.
    b.push(
        "/mounts",
        json!({"destination": "/stack", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/stack", "type": "bind", "source": upper, "options": ["bind"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "rel", "type": "tmpfs", "source": "tmpfs"}),
    );
    assert_eq!(sb.output(&b, "order"), "upper\nupper\n1\n1\n");
}

#[test]
fn console_size_is_ignored_without_a_terminal() {
    // "Runtimes MUST ignore consoleSize if terminal is false or unset."
    let sb = Sandbox::new();
    let mut b = sb.bundle(&["sh", "-c", "tty; true"]);
    b.set("/process/consoleSize", json!({"height": 10, "width": 20}));
    let out = sb.output(&b, "nosize");
    assert_eq!(out, "not a tty\n");
}
