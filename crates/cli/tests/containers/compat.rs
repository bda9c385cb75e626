//! One scripted session through podman and through berth, the outputs
//! compared where they must match: ps and inspect templates, exit codes,
//! env-file parsing, images and volumes as listed, and docker-archive and
//! oci-archive round trips both ways (an image made and saved by one, loaded
//! and run by the other, its ID, layers and config the same in both).
//!
//! Every step runs in podman, then in berth, before the next step; a
//! mismatch does not stop the session, and all of them are printed at the
//! end, each as the step, podman's side and berth's side.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::env::*;

/// An env file with what docker's parser has rules for: comments (also
/// indented), blank lines, a name without a value (taken from the
/// caller's environment, or dropped when unset there), an empty value,
/// inner and trailing spaces and quotes kept as they are, `=` in a value,
/// `#` after a value, a name given twice (the last wins).
const ENV_FILE: &str = "# a comment\n\
\n\
PLAIN=value\n\
EMPTY=\n\
COMPAT_FROM_ENV\n\
COMPAT_NOT_SET\n\
SPACED=a b  c\n\
QUOTED=\"in quotes\"\n\
SINGLE='single'\n\
  LEADING=lead\n\
TRAILING=trail  \n\
TABBED=\tx\t\n\
EQ=a=b=c\n\
   # an indented comment\n\
HASH=x # not a comment\n\
DUP=first\n\
DUP=second\n";

/// What the two compare on.
#[derive(Clone, Copy)]
enum Check {
    /// The exit code alone (the messages are each tool's own).
    Code,
    /// Exit code and stdout, byte for byte.
    Out,
    /// Exit code and stdout's lines in any order (listings have none).
    Sorted,
    /// Exit code and stdout as JSON values.
    Json,
    /// Exit code and an environment (`env`'s lines or a JSON array) as a
    /// set, less what each tool adds of its own.
    EnvSet,
    /// `Sorted`, with ages ("Less than a second", "3 seconds") made one
    /// word: the two ran a moment apart.
    Ages,
    /// `Out`, once for each tool's image (`{maker}`): what podman and
    /// berth say of the same image, made by one and loaded by the other.
    Both,
}

struct Step {
    args: Vec<String>,
    check: Check,
}

/// The step: `{img}` and `{envfile}` stand for the image and the env
/// file, `{mine}` and `{peer}` for this tool's archive directory and the
/// other's, `{me}` and `{other}` for the tools' names, `{maker}` for
/// each in turn (`Both`).
fn step(check: Check, args: &[&str]) -> Step {
    Step {
        args: args.iter().map(|a| a.to_string()).collect(),
        check,
    }
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Variables each tool puts in a container's environment of its own
/// accord: `container` names the tool; podman adds TERM=xterm (its
/// containers.conf default; docker sets TERM only with -t) and lists HOME
/// in Config.Env (docker and berth set it at start); HOSTNAME is the
/// container's own ID.
const OWN_VARS: &[&str] = &["container", "TERM", "HOME", "HOSTNAME"];

fn env_set(out: &str) -> BTreeSet<String> {
    let items: Vec<String> = match serde_json::from_str::<Vec<String>>(out.trim()) {
        Ok(list) => list,
        Err(_) => out.lines().map(String::from).collect(),
    };
    items
        .into_iter()
        .filter(|kv| !OWN_VARS.contains(&kv.split('=').next().unwrap_or_default()))
        .collect()
}

/// docker's ages of under a minute, made one word ("0 seconds" is none of
/// them and stays).
fn ages(out: &str) -> Vec<String> {
    let mut lines: Vec<String> = out
        .lines()
        .map(|l| {
            let mut l = l.replace("Less than a second", "SECONDS");
            l = l.replace(" 1 second ", " SECONDS ");
            for n in 1..60 {
                l = l.replace(&format!(" {n} seconds "), " SECONDS ");
            }
            l
        })
        .collect();
    lines.sort();
    lines
}

fn sorted(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().map(String::from).collect();
    v.sort();
    v
}

/// The lines of `out` that `check` compares, in the order compared.
fn view(check: Check, out: &str) -> Vec<String> {
    match check {
        Check::Code => Vec::new(),
        Check::Out | Check::Both | Check::Json => out.lines().map(String::from).collect(),
        Check::Sorted => sorted(out),
        Check::Ages => ages(out),
        Check::EnvSet => env_set(out).into_iter().collect(),
    }
}

/// None when the two agree under `check`; else why not.
fn compare(check: Check, podman: &Ran, berth: &Ran) -> Option<String> {
    if podman.code != berth.code {
        return Some(format!(
            "exit codes differ: podman {:?}, berth {:?}",
            podman.code, berth.code
        ));
    }
    let same = match check {
        // Byte for byte: a trailing space or a last newline counts.
        Check::Out | Check::Both => podman.stdout == berth.stdout,
        Check::Json => {
            let parse = |s: &str| serde_json::from_str::<Value>(s.trim()).ok();
            parse(&podman.stdout).is_some() && parse(&podman.stdout) == parse(&berth.stdout)
        }
        _ => view(check, &podman.stdout) == view(check, &berth.stdout),
    };
    (!same).then(|| "outputs differ".to_string())
}

/// The compared lines side by side: `-` podman's only, `+` berth's only,
/// `=` both (lines are compared in order, so one line missing shows the
/// rest as changed).
fn line_diff(podman: &[String], berth: &[String]) -> String {
    let mut out = String::new();
    for i in 0..podman.len().max(berth.len()) {
        match (podman.get(i), berth.get(i)) {
            (Some(x), Some(y)) if x == y => out.push_str(&format!("    = {x:?}\n")),
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!("    - {x:?}\n"));
                }
                if let Some(y) = y {
                    out.push_str(&format!("    + {y:?}\n"));
                }
            }
        }
    }
    out
}

/// One tool of the two: its command line and its archive directory.
struct Tool<'a> {
    name: &'static str,
    cmd: Box<dyn Fn() -> Command + 'a>,
    dir: PathBuf,
}

impl Tool<'_> {
    fn run(&self, args: &[String]) -> Ran {
        let mut c = (self.cmd)();
        c.args(args);
        // COMPAT_FROM_ENV is set for the env file's bare name to take;
        // COMPAT_NOT_SET is not.
        c.env("COMPAT_FROM_ENV", "from the caller");
        c.env_remove("COMPAT_NOT_SET");
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.name));
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn expand(args: &[String], img: &str, envfile: &str, mine: &Tool, peer: &Tool) -> Vec<String> {
    args.iter()
        .map(|a| {
            a.replace("{img}", img)
                .replace("{envfile}", envfile)
                .replace("{mine}", &mine.dir.display().to_string())
                .replace("{peer}", &peer.dir.display().to_string())
                .replace("{me}", mine.name)
                .replace("{other}", peer.name)
        })
        .collect()
}

/// What must be the same of one image in two stores: its ID (the config's
/// digest), its layers' diff IDs and its config.
const FACTS: &str = "{{.Id}} {{json .RootFS.Layers}} {{json .Config.Cmd}} {{json .Config.Env}} {{.Os}}/{{.Architecture}}";

/// The session, in order. Images made here are under localhost/compat/.
fn session() -> Vec<Step> {
    use Check::*;
    let none = "--network=none";
    let mut steps = vec![
        // What was pulled, as listed and inspected (before anything is
        // committed, so both stores hold the same).
        step(
            Sorted,
            &[
                "images",
                "--format",
                "{{.Repository}} {{.Tag}} {{.ID}} {{len .ID}} {{.Digest}}",
            ],
        ),
        step(Out, &["images", "-q", "--no-trunc"]),
        step(Out, &["images", "--no-trunc", "--format", "{{.ID}}"]),
        step(
            Out,
            &[
                "image",
                "inspect",
                "-f",
                "{{.Id}} {{.Digest}} {{json .Config.Cmd}} {{json .Config.Env}} {{.Os}}/{{.Architecture}} {{json .RepoTags}} {{json .RootFS.Layers}}",
                "{img}",
            ],
        ),
        // Containers: one running with everything the env file and flags
        // give, one exited 3, one created.
        step(
            Code,
            &[
                "run",
                "-d",
                none,
                "--name",
                "compat-web",
                "--label",
                "app=web",
                "--label",
                "tier=",
                "-e",
                "CLI=1",
                "-e",
                "DUP=cli",
                "-e",
                "COMPAT_NOT_SET",
                "--env-file",
                "{envfile}",
                "--restart",
                "on-failure:2",
                "{img}",
                "sleep",
                "1000",
            ],
        ),
        step(
            Out,
            &[
                "run",
                none,
                "--name",
                "compat-done",
                "--label",
                "app=batch",
                "{img}",
                "sh",
                "-c",
                "echo out; exit 3",
            ],
        ),
        step(
            Code,
            &["create", none, "--name", "compat-new", "{img}", "true"],
        ),
        step(Out, &["wait", "compat-done"]),
        // The environment a container sees (the file alone: its DUP
        // given twice) and the one inspect shows (-e DUP after it wins).
        step(
            EnvSet,
            &[
                "run",
                "--rm",
                none,
                "--env-file",
                "{envfile}",
                "{img}",
                "env",
            ],
        ),
        step(
            EnvSet,
            &["inspect", "-f", "{{json .Config.Env}}", "compat-web"],
        ),
        step(
            EnvSet,
            &[
                "inspect",
                "-f",
                "{{range .Config.Env}}{{println .}}{{end}}",
                "compat-web",
            ],
        ),
        step(
            Out,
            &[
                "exec",
                "compat-web",
                "sh",
                "-c",
                "echo \"[$TRAILING][$DUP]\"",
            ],
        ),
        // inspect templates.
        step(Out, &["inspect", "-f", "{{.State.Status}}", "compat-web"]),
        step(
            Out,
            &[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}",
                "compat-done",
                "compat-new",
            ],
        ),
        step(
            Json,
            &["inspect", "-f", "{{json .Config.Labels}}", "compat-web"],
        ),
        step(
            Out,
            &[
                "inspect",
                "-f",
                "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}",
                // (Only one given --restart: without, podman 4.3 leaves
                // the name empty where docker and berth say "no".)
                "compat-web",
            ],
        ),
        step(
            Out,
            &[
                "inspect",
                "-f",
                "{{.Name}} {{json .Config.Cmd}} {{.Config.Image}} {{.Path}} {{.Args}} {{.HostConfig.NetworkMode}}",
                "compat-web",
            ],
        ),
        // ps templates and filters.
        step(Sorted, &["ps", "-a", "--format", "{{.Names}} {{.Labels}}"]),
        step(Sorted, &["ps", "--format", "{{.Names}} {{.Image}}"]),
        step(
            Sorted,
            &[
                "ps",
                "-a",
                "--filter",
                "status=exited",
                "--format",
                "{{.Names}} {{json .Labels}}",
            ],
        ),
        // (Not of running containers: podman 4.3 says "Up 2 seconds ago"
        // where docker and berth say "Up 2 seconds".)
        step(
            Ages,
            &[
                "ps",
                "-a",
                "--filter",
                "status=exited",
                "--filter",
                "status=created",
                "--format",
                "{{.Names}} {{.Status}} .",
            ],
        ),
        step(Out, &["ps", "-a", "--no-trunc", "--format", "{{len .ID}}"]),
        // Exit codes: the container's own, a command not found (127), not
        // executable (126), a usage error (125), and the removals.
        step(Code, &["run", "--rm", none, "{img}", "sh", "-c", "exit 3"]),
        step(Code, &["run", "--rm", none, "{img}", "no-such-command"]),
        step(Code, &["run", "--rm", none, "{img}", "/no/such/path"]),
        step(Code, &["run", "--rm", none, "{img}", "/etc"]),
        step(Code, &["run", "--no-such-flag", "{img}", "true"]),
        step(Code, &["run"]),
        step(Code, &["exec", "compat-web", "sh", "-c", "exit 4"]),
        step(Code, &["exec", "compat-web", "no-such-command"]),
        step(Code, &["start", "compat-no-such"]),
        step(Code, &["rm", "compat-no-such"]),
        step(Code, &["rm", "-f", "compat-no-such"]),
        step(Code, &["rm", "compat-web"]),
        // Volumes.
        step(Out, &["volume", "create", "--label", "k=v", "compat-vol"]),
        step(
            Out,
            &[
                "volume",
                "ls",
                "--format",
                "{{.Name}} {{.Driver}} {{.Labels}}",
            ],
        ),
        step(
            Out,
            &[
                "volume",
                "inspect",
                "-f",
                "{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}} {{.Options}}",
                "compat-vol",
            ],
        ),
        step(Code, &["volume", "rm", "compat-no-such"]),
        step(Code, &["volume", "rm", "-f", "compat-no-such"]),
        step(Out, &["volume", "rm", "compat-vol"]),
        step(Out, &["volume", "ls", "-q"]),
        // An image made in each (a committed container), saved in both
        // formats, loaded by the other and run there; {mine} and {peer}
        // hold the archives, {me} and {other} name the tools.
        step(
            Code,
            &[
                "run",
                none,
                "--name",
                "compat-maker",
                "{img}",
                "sh",
                "-c",
                "echo made > /made",
            ],
        ),
        step(Code, &["commit", "compat-maker", "localhost/compat/{me}:1"]),
        step(
            Code,
            &["save", "-o", "{mine}/docker.tar", "localhost/compat/{me}:1"],
        ),
        step(
            Code,
            &[
                "save",
                "--format",
                "oci-archive",
                "-o",
                "{mine}/oci.tar",
                "localhost/compat/{me}:1",
            ],
        ),
    ];
    // Each archive of the other's loaded, the image compared, run; the
    // first taken away before the second is loaded.
    for (i, archive) in ["{peer}/docker.tar", "{peer}/oci.tar"]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            steps.push(step(Code, &["rmi", "localhost/compat/{other}:1"]));
        }
        steps.push(step(Out, &["load", "-i", archive]));
        steps.push(step(
            Both,
            &[
                "image",
                "inspect",
                "-f",
                FACTS,
                "localhost/compat/{maker}:1",
            ],
        ));
        steps.push(step(
            Out,
            &[
                "run",
                "--rm",
                none,
                "localhost/compat/{other}:1",
                "cat",
                "/made",
            ],
        ));
    }
    steps
}

/// The digest of the manifest an oci-archive's index names.
fn archived_digest(archive: &std::path::Path) -> String {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in tar.entries().unwrap() {
        let e = e.unwrap();
        if e.path().unwrap().to_str() == Some("index.json") {
            let index: Value = serde_json::from_reader(e).unwrap();
            return index["manifests"][0]["digest"]
                .as_str()
                .unwrap()
                .to_string();
        }
    }
    panic!("no index.json in {}", archive.display());
}

#[test]
fn podman_and_berth_agree_on_a_scripted_session() {
    require!("podman", "conmon", "runc");
    let env = Env::new();
    let p = env.podman_beside();
    let envfile = env.sb.path().join("compat.env");
    std::fs::write(&envfile, ENV_FILE).unwrap();
    let envfile = envfile.display().to_string();
    let tools = [
        Tool {
            name: "podman",
            cmd: Box::new(|| p.cmd()),
            dir: env.sb.path().join("compat-podman"),
        },
        Tool {
            name: "berth",
            cmd: Box::new(|| env.cmd()),
            dir: env.sb.path().join("compat-berth"),
        },
    ];
    for t in &tools {
        std::fs::create_dir_all(&t.dir).unwrap();
    }
    let mut mismatches = Vec::new();
    let mut report = |n: usize, s: &Step, args: &[String], why: String, p: &Ran, b: &Ran| {
        let check = match s.check {
            Check::Code => Check::Out,
            c => c,
        };
        mismatches.push(format!(
            "step {n}: {args:?}\n  {why}\n  stdout as compared (- podman, + berth):\n{}  stderr of podman: {}\n  stderr of berth: {}\n",
            line_diff(&view(check, &p.stdout), &view(check, &b.stdout)),
            p.stderr.trim(),
            b.stderr.trim(),
        ))
    };
    for (n, s) in session().iter().enumerate() {
        if let Check::Both = s.check {
            for maker in &tools {
                let args: Vec<String> = s
                    .args
                    .iter()
                    .map(|a| a.replace("{maker}", maker.name))
                    .collect();
                let (p, b) = (tools[0].run(&args), tools[1].run(&args));
                if let Some(why) = compare(Check::Out, &p, &b) {
                    report(
                        n,
                        s,
                        &args,
                        format!("{why} (made by {})", maker.name),
                        &p,
                        &b,
                    );
                }
            }
            continue;
        }
        let [p, b] = [0, 1].map(|i| {
            let (me, peer) = (&tools[i], &tools[1 - i]);
            let mut r = me.run(&expand(&s.args, &env.image, &envfile, me, peer));
            // Names of the tools' own images, as the steps give them.
            for (t, word) in [(me, "{me}"), (peer, "{other}")] {
                let name = format!("localhost/compat/{}:", t.name);
                r.stdout = r
                    .stdout
                    .replace(&name, &format!("localhost/compat/{word}:"));
            }
            r
        });
        if let Some(why) = compare(s.check, &p, &b) {
            report(n, s, &s.args, why, &p, &b);
        }
    }
    // An oci-archive's manifest is loaded as it is: the image's digest is
    // the one its maker's index names.
    for (i, t) in tools.iter().enumerate() {
        let peer = &tools[1 - i];
        let want = archived_digest(&peer.dir.join("oci.tar"));
        let args = [
            "image".to_string(),
            "inspect".into(),
            "-f".into(),
            "{{.Digest}}".into(),
            format!("localhost/compat/{}:1", peer.name),
        ];
        let got = t.run(&args);
        if got.stdout.trim() != want {
            mismatches.push(format!(
                "{} loaded {}'s oci-archive as {:?}, its index names {want}: {}\n",
                t.name,
                peer.name,
                got.stdout.trim(),
                got.stderr.trim()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "berth and podman differ in {} of the session's steps:\n\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
