//! Images and inputs built to hurt, against `berth run` and friends: a
//! device node in an image, absurd sizes and values, a caller's terminal.
//! Each is contained or refused with one clear error, and nothing is left.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::env::*;

/// A layer with host device nodes outside /dev (which is a tmpfs in the
/// container): a loop device and the host's console (fixtures/README.md).
fn device_layer() -> Vec<u8> {
    include_bytes!("fixtures/device-nodes.tar").to_vec()
}

#[test]
fn device_nodes_in_an_image_or_made_with_mknod_open_nothing_of_the_hosts() {
    let env = Env::new();
    let img = env.image_with("devices", device_layer());
    let (out, err) = env.code(
        0,
        &[
            "run",
            "--rm",
            &img,
            "sh",
            "-c",
            "head -c1 /hostloop; echo loop=$?; head -c0 /hostconsole; echo console=$?; \
             echo x > /dev/null && head -c1 /dev/zero >/dev/null && echo defaults-ok",
        ],
    );
    assert!(out.contains("loop=1") && out.contains("console=1"), "{out}");
    assert_eq!(
        err.matches("Operation not permitted").count(),
        2,
        "stdout: {out}\nstderr: {err}"
    );
    assert!(out.contains("defaults-ok"), "{out}");

    // A node made in the container is no better.
    let (out, err) = env.code(
        0,
        &[
            "run",
            "--rm",
            "--cap-add",
            "MKNOD",
            &img,
            "sh",
            "-c",
            "mknod /tmp/l b 7 0 && echo made; head -c1 /tmp/l; echo loop=$?",
        ],
    );
    assert!(out.contains("made") && out.contains("loop=1"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");

    // --device gives that device (and only it); --privileged gives all.
    let (out, err) = env.code(
        0,
        &[
            "run",
            "--rm",
            "--device",
            "/dev/loop0:/dev/xloop:r",
            &img,
            "sh",
            "-c",
            "head -c1 /dev/xloop; echo loop=$?; head -c0 /hostconsole; echo console=$?",
        ],
    );
    assert!(
        out.contains("loop=0") && out.contains("console=1"),
        "{out} {err}"
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "--privileged",
        &img,
        "sh",
        "-c",
        "head -c1 /hostloop; echo loop=$?",
    ]);
    assert!(out.contains("loop=0"), "{out}");
    let (_, err) = env.code(
        125,
        &["run", "--rm", "--device", "/etc/passwd", &img, "true"],
    );
    assert!(err.contains("not a character or block device"), "{err}");
}

fn env_file(env: &Env, name: &str, vars: usize) -> String {
    let p = env.sb.path().join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    for i in 0..vars {
        writeln!(f, "V{i}=x").unwrap();
    }
    p.to_string_lossy().into_owned()
}

#[test]
fn environments_are_taken_in_linear_time_and_capped() {
    let env = Env::new();
    let img = env.image.clone();
    let ok = env_file(&env, "ok.env", 30_000);
    let t = Instant::now();
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--env-file",
        &ok,
        &img,
        "sh",
        "-c",
        "env | grep -c '^V'",
    ]);
    assert_eq!(out.trim(), "30000");
    // Quadratic merging took seconds at this size, minutes beyond.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let too_many = env_file(&env, "many.env", 40_000);
    let t = Instant::now();
    let (_, err) = env.code(125, &["run", "--rm", "--env-file", &too_many, &img, "true"]);
    assert!(err.contains("40000 variables; at most 32768"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));

    let t = Instant::now();
    let (_, err) = env.code(
        125,
        &["run", "--rm", "--env-file", "/dev/zero", &img, "true"],
    );
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(env.ids().is_empty(), "nothing was made");
}

#[test]
fn absurd_values_are_refused_at_once_and_make_nothing() {
    let env = Env::new();
    let img = env.image.clone();
    let long = "n".repeat(300);
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--rm", "--stop-signal", "SIGNOPE", &img, "true"],
            "no such signal",
        ),
        (
            &["run", "--rm", "--cpus", "NaN", &img, "true"],
            "--cpus NaN",
        ),
        (
            &["run", "--rm", "--cpus", "inf", &img, "true"],
            "--cpus inf",
        ),
        (
            &["run", "--rm", "-p", "1-65535:1-65535", &img, "true"],
            "at most 1024",
        ),
        (&["pod", "create", "-p", "1-2000:1-2000"], "at most 1024"),
        (
            &["network", "create", &long],
            "300 bytes long, more than 128",
        ),
        (
            &["volume", "create", &long],
            "300 bytes long, more than 128",
        ),
    ];
    for (args, want) in cases {
        let t = Instant::now();
        let (_, err) = env.code(125, args);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(t.elapsed() < Duration::from_secs(5), "{args:?}");
    }
    assert!(env.ids().is_empty());
    let nets = env.ok(&["network", "ls", "-q"]);
    assert!(!nets.contains("nnnn"), "{nets}");
    let pods = env.ok(&["pod", "ps", "-q"]);
    assert!(pods.trim().is_empty(), "{pods}");
}

#[test]
fn exec_reads_stdin_only_with_i_and_a_detached_exec_holds_none_of_the_callers_stdio() {
    let env = Env::new();
    let id = env.run_d(&["--network", "none"], &["sleep", "1000"]);
    let piped = |args: &[&str]| {
        let mut child = env
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"secret typed by the user")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(piped(&["exec", &id, "cat"]), "", "no -i: nothing read");
    assert_eq!(
        piped(&["exec", "-i", &id, "cat"]),
        "secret typed by the user"
    );

    // A detached process must not hold the caller's terminal (or pipes).
    env.ok(&["exec", "-d", &id, "sleep", "777"]);
    let mut pid = None;
    wait_for("the detached exec", || {
        // /proc/<pid>/cmdline separates the arguments with NULs.
        pid = processes_with("sleep\u{0}777").first().copied();
        pid.is_some()
    });
    let pid = pid.unwrap();
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target.to_string_lossy(), "/dev/null", "fd {fd}");
    }
    env.ok(&["rm", "-f", &id]);
    assert_gone(&env, &id);
}
