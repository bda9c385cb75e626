//! `image prune` and `volume prune` delete only when meant: on a terminal
//! they ask ("[y/N]", and "n" keeps everything), `-f` skips the question,
//! and without a terminal or `-f` they refuse.

use std::time::Duration;

use crate::support::*;

/// berth on the sandbox's roots (its own run root too: volumes are the
/// engine's), as a shell command line for script(1).
fn line(sb: &Sandbox, args: &[&str]) -> String {
    let mut c = sb.cmd();
    c.arg("--runroot").arg(sb.path().join("run")).args(args);
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let mut c = sb.cmd();
    c.arg("--runroot").arg(sb.path().join("run")).args(args);
    c.output().unwrap()
}

/// What the terminal showed of berth, `answer` typed.
fn asked(sb: &Sandbox, args: &[&str], answer: &str) -> String {
    let out = on_a_terminal(&line(sb, args), answer.as_bytes(), Duration::ZERO);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn volumes(sb: &Sandbox) -> String {
    String::from_utf8_lossy(&run(sb, &["volume", "ls", "-q"]).stdout).into_owned()
}

#[test]
fn prune_asks_on_a_terminal_refuses_without_one_and_f_skips_the_question() {
    let sb = Sandbox::new();
    sb.ok(&["load", "-i", fixture("oci/base").to_str().unwrap()]);
    assert!(run(&sb, &["volume", "create", "v1"]).status.success());

    // No terminal, no -f: refused, nothing removed.
    for args in [&["image", "prune", "-a"][..], &["volume", "prune"][..]] {
        let out = run(&sb, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains("--force"), "{args:?}: {err}");
    }
    assert_eq!(sb.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(volumes(&sb), "v1\n");

    if have("script") {
        // On a terminal: asked; "n" keeps, "y" removes.
        let shown = asked(&sb, &["volume", "prune"], "n\n");
        assert!(shown.contains("[y/N]"), "{shown}");
        assert_eq!(volumes(&sb), "v1\n");
        let shown = asked(&sb, &["image", "prune", "-a"], "n\n");
        assert!(shown.contains("[y/N]"), "{shown}");
        assert_eq!(sb.ok(&["images", "-q"]).lines().count(), 1);
        let shown = asked(&sb, &["volume", "prune"], "y\n");
        assert!(shown.contains("v1"), "{shown}");
        assert_eq!(volumes(&sb), "");
        assert!(run(&sb, &["volume", "create", "v1"]).status.success());
    } else {
        eprintln!("SKIPPED (in part): script is not installed");
    }

    // -f: no question, removed.
    let out = run(&sb, &["volume", "prune", "-f"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v1\n");
    assert_eq!(volumes(&sb), "");
    sb.ok(&["image", "prune", "-a", "--force"]);
    assert_eq!(sb.ok(&["images", "-q"]), "");
}
