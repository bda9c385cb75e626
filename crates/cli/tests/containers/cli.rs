//! The command line itself, as a user meets it: completion scripts and man
//! pages made from the same definitions that parse it, help text for every
//! command and flag, podman's exit code for usage errors, and `berth
//! container X` / `berth image X` as the same commands as `berth X`. Only
//! the last test needs containers; the rest run no container and no
//! registry.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use crate::env::Env;
use crate::support::{Sandbox, have};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// berth with a throw-away root, so that nothing here can touch the
/// host's store even if a parse that should fail does not.
fn berth(sb: &Sandbox, args: &[&str]) -> Output {
    sb.cmd().args(args).output().expect("run berth")
}

/// Runs `shell` with `script` on stdin and `args`; panics unless it exits 0.
fn shell_ok(shell: &str, args: &[&str], script: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(shell)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {shell}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{shell} {args:?} failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn completion_scripts_parse_and_complete() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = sb.ok(&["completion", shell]);
        // Every shell's script names the commands it completes, the
        // aliases' group and the flags of `run` among them.
        for word in ["run", "container", "image", "publish"] {
            assert!(
                script.contains(word),
                "the {shell} script does not mention {word}"
            );
        }
        if have(shell) {
            // -n: read and check the syntax without running anything.
            shell_ok(shell, &["-n"], &script);
        } else {
            eprintln!("{shell} is not installed: its script is not parsed");
        }
    }
    // bash's script, loaded, completes subcommands and flags as a user's
    // TAB would: COMP_WORDS is the line, and the function is called as
    // bash calls it (command, current word, previous word).
    let script = sb.ok(&["completion", "bash"]);
    let probe = format!(
        "{script}\n\
         COMP_WORDS=(berth container l); COMP_CWORD=2; _berth berth l container\n\
         printf 'container:%s\\n' \"${{COMPREPLY[@]}}\"\n\
         COMP_WORDS=(berth run --pub); COMP_CWORD=2; _berth berth --pub run\n\
         printf 'run:%s\\n' \"${{COMPREPLY[@]}}\"\n"
    );
    let out = shell_ok("bash", &[], &probe);
    let got: BTreeSet<&str> = out.lines().collect();
    for want in ["container:ls", "container:logs", "run:--publish"] {
        assert!(got.contains(want), "bash completion gave {got:?}");
    }
    // An unknown shell is a usage error.
    let out = berth(&sb, &["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
}

#[test]
fn man_pages_for_every_command() {
    let sb = Sandbox::new();
    let dir = sb.path().join("man1");
    sb.ok(&["generate-man", dir.to_str().unwrap()]);
    for page in [
        "berth.1",
        "berth-run.1",
        "berth-ps.1",
        "berth-container.1",
        "berth-container-ls.1",
        "berth-container-run.1",
        "berth-image-pull.1",
        "berth-volume-create.1",
        "berth-completion.1",
    ] {
        assert!(dir.join(page).is_file(), "no {page}");
    }
    // Hidden plumbing gets no page.
    for page in ["berth-generate-man.1", "berth-container-cleanup.1"] {
        assert!(!dir.join(page).exists(), "{page} should not exist");
    }
    let run = std::fs::read_to_string(dir.join("berth-run.1")).unwrap();
    assert!(
        run.starts_with(".ie") || run.contains(".TH"),
        "not roff: {run}"
    );
    // roff writes a hyphen as \-.
    assert!(run.contains(r"\-\-publish"), "berth-run.1: {run}");
    assert!(run.contains("Create a container from an image and start it"));
    if have("man") {
        // man renders it: the page is well-formed enough to read.
        let out = Command::new("man")
            .arg("-l")
            .arg(dir.join("berth-run.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(out.status.success(), "man -l: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("--publish"));
    }
    // Writing again over the same pages is fine (setup.sh reruns it).
    sb.ok(&["generate-man", dir.to_str().unwrap()]);
}

/// One entry of a help section: its spec (`-p, --publish <PUBLISH>`,
/// `<IMAGE>`, `run`) and whether help text goes with it.
struct Entry {
    section: String,
    spec: String,
    documented: bool,
}

/// Reads clap's help output: sections are lines ending in ':' at column
/// 0, entries are indented by two spaces, and an entry's help follows its
/// spec after two or more spaces or on the next, deeper-indented line.
/// `[default: ..]` and `[possible values: ..]` alone are not help.
fn entries(help: &str) -> Vec<Entry> {
    let is_help = |t: &str| !t.is_empty() && !t.starts_with('[');
    let indent = |l: &str| l.len() - l.trim_start().len();
    // An entry is indented by 2, or by 6 for a long flag without a short
    // one; help on lines of its own is indented deeper.
    let is_entry = |l: &str| indent(l) == 2 || indent(l) == 6 && l.trim_start().starts_with("--");
    let lines: Vec<&str> = help.lines().collect();
    let Some(usage) = lines.iter().position(|l| l.starts_with("Usage:")) else {
        return Vec::new();
    };
    let mut section = String::new();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate().skip(usage + 1) {
        if !l.starts_with(' ') && l.ends_with(':') {
            section = l.trim_end_matches(':').to_string();
            continue;
        }
        if section.is_empty() || !is_entry(l) {
            continue;
        }
        let body = l.trim_start();
        let (spec, inline) = match body.find("  ") {
            Some(at) => (&body[..at], body[at..].trim()),
            None => (body, ""),
        };
        let next = lines.get(i + 1).copied().unwrap_or("");
        let below =
            !next.trim().is_empty() && !is_entry(next) && indent(next) > 6 && is_help(next.trim());
        out.push(Entry {
            section: section.clone(),
            spec: spec.to_string(),
            documented: is_help(inline) || below,
        });
    }
    out
}

#[test]
fn every_command_and_flag_has_help() {
    let sb = Sandbox::new();
    let mut missing = Vec::new();
    let mut seen = 0;
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = berth(&sb, &args);
        assert_eq!(out.status.code(), Some(0), "berth {args:?}");
        let help = text(&out.stdout);
        let list = entries(&help);
        assert!(!list.is_empty(), "berth {args:?}: no entries in\n{help}");
        for e in list {
            seen += 1;
            if !e.documented {
                missing.push(format!(
                    "berth {} [{}] {}",
                    path.join(" "),
                    e.section,
                    e.spec
                ));
            }
            if e.section == "Commands" && e.spec != "help" {
                let mut sub = path.clone();
                sub.push(e.spec.clone());
                todo.push(sub);
            }
        }
        // The global flags stand under their own heading, after the
        // command's own.
        if !path.is_empty() {
            let global = help
                .find("\nGlobal options:")
                .unwrap_or_else(|| panic!("berth {args:?}: no Global options\n{help}"));
            let root = help.find("--root").unwrap();
            assert!(
                root > global,
                "berth {args:?}: --root is not a global option"
            );
        }
    }
    assert!(seen > 300, "only {seen} entries read: is the help parsed?");
    assert!(missing.is_empty(), "without help:\n{}", missing.join("\n"));
}

#[test]
fn entries_reads_both_help_layouts() {
    // The parser above, on the two layouts clap prints: help beside the
    // spec, and help on the next line (when a line would be too long).
    let help = [
        "About: text",
        "",
        "Usage: berth x",
        "",
        "Commands:",
        "  ls    List",
        "  rm    ",
        "",
        "Options:",
        "  -a, --all  Also stopped ones",
        "      --no-trunc  ",
        "      --format <FORMAT>  [default: table]",
        "",
        "Global options:",
        "      --root <ROOT>",
        "          Where things are",
        "      --bare <X>",
        "          [default: x]",
        "      --last",
    ]
    .join("\n");
    let got: Vec<(String, bool)> = entries(&help)
        .into_iter()
        .map(|e| (e.spec, e.documented))
        .collect();
    let want = [
        ("ls", true),
        ("rm", false),
        ("-a, --all", true),
        ("--no-trunc", false),
        ("--format <FORMAT>", false),
        ("--root <ROOT>", true),
        ("--bare <X>", false),
        ("--last", false),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(s, d)| (s.to_string(), *d))
            .collect::<Vec<_>>()
    );
}

#[test]
fn usage_errors_exit_125() {
    let sb = Sandbox::new();
    let cases: &[&[&str]] = &[
        // unknown flags, on the top level and on commands of each kind
        &["--no-such-flag", "ps"],
        &["ps", "--no-such-flag"],
        &["run", "--no-such-flag", "busybox"],
        &["container", "ls", "--bogus"],
        &["image", "ls", "--bogus"],
        &["volume", "create", "--bogus"],
        &["network", "ls", "--bogus"],
        // unknown commands
        &["no-such-command"],
        &["container", "no-such-command"],
        // missing arguments and subcommands
        &["stop"],
        &["container", "rm"],
        &["exec", "ctr"],
        &["image", "tag", "x"],
        &["volume"],
        &["container"],
        &["run"],
        // bad values
        &["run", "--cpus", "many", "busybox"],
        &["stop", "-t", "soon", "ctr"],
        &["--max-layer-size", "huge", "images"],
        &["--connect-timeout", "forever", "images"],
        &["completion", "tcsh"],
    ];
    for args in cases {
        let out = berth(&sb, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "berth {args:?}: {err}");
        assert!(!err.trim().is_empty(), "berth {args:?}: says nothing");
        assert!(
            out.stdout.is_empty(),
            "berth {args:?}: {}",
            text(&out.stdout)
        );
    }
    // Asking for help or the version is not an error.
    let helps: &[&[&str]] = &[
        &["--help"],
        &["-h"],
        &["--version"],
        &["-V"],
        &["help"],
        &["help", "run"],
        &["run", "--help"],
        &["container", "ls", "-h"],
        &["image", "--help"],
    ];
    for args in helps {
        let out = berth(&sb, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "berth {args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "berth {args:?} printed nothing");
    }
    // And an error of berth's own, after parsing, is still 125.
    let out = berth(&sb, &["inspect", "no-such-container"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
}

/// The names under `Commands:` in `berth ARGS --help`.
fn commands(sb: &Sandbox, args: &[&str]) -> BTreeSet<String> {
    let mut a = args.to_vec();
    a.push("--help");
    entries(&sb.ok(&a))
        .into_iter()
        .filter(|e| e.section == "Commands" && e.spec != "help")
        .map(|e| e.spec)
        .collect()
}

#[test]
fn container_and_image_groups_have_every_command() {
    let sb = Sandbox::new();
    let top = commands(&sb, &[]);
    let container = commands(&sb, &["container"]);
    let image = commands(&sb, &["image"]);
    // docker's `container` commands, as far as berth has them.
    for c in [
        "run", "create", "start", "stop", "kill", "rm", "ps", "ls", "inspect", "wait", "pause",
        "unpause", "rename", "exec", "attach", "logs", "cp", "port", "top", "stats", "commit",
        "diff",
    ] {
        assert!(
            container.contains(c),
            "no `berth container {c}`: {container:?}"
        );
        if c != "ls" {
            assert!(top.contains(c), "no `berth {c}`");
        }
    }
    for c in [
        "ls", "rm", "pull", "push", "inspect", "prune", "tag", "save", "load", "import",
    ] {
        assert!(image.contains(c), "no `berth image {c}`: {image:?}");
    }
    // The same command under both names: the same flags.
    for (a, b) in [
        (vec!["run"], vec!["container", "run"]),
        (vec!["logs"], vec!["container", "logs"]),
        (vec!["ps"], vec!["container", "ls"]),
        (vec!["ps"], vec!["container", "list"]),
        (vec!["pull"], vec!["image", "pull"]),
        (vec!["images"], vec!["image", "ls"]),
    ] {
        let flags = |args: &[&str]| -> Vec<String> {
            let mut a = args.to_vec();
            a.push("--help");
            entries(&sb.ok(&a)).into_iter().map(|e| e.spec).collect()
        };
        assert_eq!(flags(&a), flags(&b), "berth {a:?} and berth {b:?}");
    }
}

#[test]
fn container_commands_under_container_act_the_same() {
    let env = Env::new();
    let id = env.run_d(&["--name", "alias-a"], &["sh", "-c", "echo hi; sleep 1000"]);
    env.ok(&["create", "--name", "alias-b", &env.image, "true"]);
    // A table has a CREATED column in words ("2 seconds ago"): take a
    // pair of listings between two equal `ps` ones, so that no second
    // turned over in between.
    let mut same = false;
    for _ in 0..5 {
        let before = env.ok(&["ps", "-a"]);
        let ls = env.ok(&["container", "ls", "-a"]);
        let list = env.ok(&["container", "list", "-a"]);
        let cps = env.ok(&["container", "ps", "-a"]);
        if env.ok(&["ps", "-a"]) != before {
            continue;
        }
        assert_eq!(ls, before, "container ls -a and ps -a");
        assert_eq!(list, before, "container list -a and ps -a");
        assert_eq!(cps, before, "container ps -a and ps -a");
        assert!(before.contains("alias-a") && before.contains("alias-b"));
        same = true;
        break;
    }
    assert!(same, "ps -a never gave the same table twice");
    assert_eq!(
        env.ok(&["container", "ls", "--format", "json", "--no-trunc"]),
        env.ok(&["ps", "--format", "json", "--no-trunc"])
    );
    assert_eq!(env.ok(&["container", "ls", "-q"]), env.ok(&["ps", "-q"]));
    assert_eq!(
        env.ok(&["container", "inspect", "alias-a"]),
        env.ok(&["inspect", &id])
    );
    crate::env::wait_for("the container's output", || {
        env.ok(&["container", "logs", "alias-a"]) == "hi\n"
    });
    // Changing commands act through either name.
    env.ok(&["container", "stop", "-t", "0", "alias-a"]);
    assert_eq!(env.status("alias-a"), "exited");
    env.ok(&["container", "rm", "alias-a", "alias-b"]);
    assert!(env.ids().is_empty());
    // And the image group likewise.
    env.ok(&["image", "tag", &env.image, "localhost/alias:1"]);
    assert_eq!(env.ok(&["image", "ls"]), env.ok(&["images"]));
    assert!(env.ok(&["images"]).contains("localhost/alias"));
    env.ok(&["image", "rm", "localhost/alias:1"]);
    assert!(!env.ok(&["images"]).contains("localhost/alias"));
}
