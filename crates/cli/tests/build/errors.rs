//! Bad input: one clear error naming what and where, nothing left behind.

use std::time::{Duration, Instant};

use crate::env::Env;

fn context(e: &Env, dockerfile: &str) -> std::path::PathBuf {
    let dir = e.sb.path().join("badctx");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    dir
}

fn build_err(e: &Env, dir: &std::path::Path, extra: &[&str]) -> String {
    let base = format!("BASE={}", e.image);
    let mut args = vec!["build", "--build-arg", &base];
    args.extend(extra);
    args.push(dir.to_str().unwrap());
    let out = e.berth(&args);
    assert!(!out.status.success(), "berth {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// No working container, build lease or temporary file outlives a build.
fn assert_clean(e: &Env) {
    assert!(e.ids().is_empty(), "containers left: {:?}", e.ids());
    let tmp = e.sb.root().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn parse_errors_name_the_line_and_column() {
    let e = Env::new();
    let dir = context(&e, "ARG BASE\nFROM $BASE\nRUN true\nFROBNICATE x\n");
    let err = build_err(&e, &dir, &[]);
    assert!(
        err.contains("line 4") && err.contains("FROBNICATE"),
        "{err}"
    );
    let dir = context(&e, "ARG BASE\nFROM $BASE\nCOPY --bogus=1 a /a\n");
    let err = build_err(&e, &dir, &[]);
    assert!(err.contains("line 3") && err.contains("--bogus"), "{err}");
    assert_clean(&e);
}

#[test]
fn stages_that_do_not_exist_or_go_round() {
    let e = Env::new();
    let dir = context(&e, "ARG BASE\nFROM $BASE AS one\nRUN true\n");
    let err = build_err(&e, &dir, &["--target", "two"]);
    assert!(err.contains("--target two") && err.contains("one"), "{err}");
    let dir = context(
        &e,
        "ARG BASE\nFROM $BASE AS a\nCOPY --from=b /x /x\nFROM $BASE AS b\nCOPY --from=a /y /y\n",
    );
    let err = build_err(&e, &dir, &[]);
    assert!(err.contains("circular"), "{err}");
    assert_clean(&e);
}

#[test]
fn sources_outside_the_context_are_refused() {
    let e = Env::new();
    let dir = context(&e, "ARG BASE\nFROM $BASE\nCOPY link/passwd /stolen\n");
    std::os::unix::fs::symlink("/etc", dir.join("link")).unwrap();
    let err = build_err(&e, &dir, &[]);
    assert!(err.contains("outside the build context"), "{err}");
    let dir = context(
        &e,
        "ARG BASE\nFROM $BASE\nCOPY ../../../etc/passwd /stolen\n",
    );
    let err = build_err(&e, &dir, &[]);
    assert!(err.contains("not found"), "{err}");
    // A relative link that stays inside is followed.
    let dir = context(&e, "ARG BASE\nFROM $BASE\nCOPY inside /inside\n");
    std::fs::write(dir.join("real"), "real\n").unwrap();
    std::os::unix::fs::symlink("real", dir.join("inside")).unwrap();
    let base = format!("BASE={}", e.image);
    e.ok(&[
        "build",
        "-t",
        "in",
        "--build-arg",
        &base,
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        e.ok(&["run", "--rm", "in", "cat", "/inside"]).trim(),
        "real"
    );
    assert_clean(&e);
}

#[test]
fn a_dockerignore_that_excludes_the_dockerfile_still_builds() {
    let e = Env::new();
    let dir = context(&e, "ARG BASE\nFROM $BASE\nCOPY . /ctx/\n");
    std::fs::write(dir.join(".dockerignore"), "Dockerfile\n.dockerignore\n").unwrap();
    std::fs::write(dir.join("kept"), "k").unwrap();
    let base = format!("BASE={}", e.image);
    e.ok(&[
        "build",
        "-t",
        "ign",
        "--build-arg",
        &base,
        dir.to_str().unwrap(),
    ]);
    let out = e.ok(&["run", "--rm", "ign", "ls", "/ctx"]);
    assert_eq!(out.trim(), "kept");
}

#[test]
fn a_failing_run_reports_its_code_and_last_output() {
    let e = Env::new();
    let dir = context(
        &e,
        "ARG BASE\nFROM $BASE\nRUN echo before-failing; echo the-last-words >&2; exit 7\n",
    );
    let err = build_err(&e, &dir, &[]);
    assert!(
        err.contains("line 3")
            && err.contains("exited with code 7")
            && err.contains("the-last-words"),
        "{err}"
    );
    assert_clean(&e);
}

#[test]
fn interrupting_a_build_leaves_nothing_and_keeps_the_cache() {
    let e = Env::new();
    let dir = context(
        &e,
        "ARG BASE\nFROM $BASE\nRUN echo done-before > /x\nRUN sleep 60\n",
    );
    let base = format!("BASE={}", e.image);
    let child = e
        .cmd()
        .args([
            "build",
            "-t",
            "int",
            "--build-arg",
            &base,
            dir.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Until the sleep runs.
    let started = Instant::now();
    loop {
        let running = e
            .ok(&["ps", "--format", "{{.Command}}"])
            .contains("sleep 60");
        if running {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the RUN never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted"), "{err}");
    assert_clean(&e);
    assert!(e.berth(&["image", "inspect", "int"]).status.code() != Some(0));
    // The step before the interrupted one comes from the cache.
    std::fs::write(
        dir.join("Dockerfile"),
        "ARG BASE\nFROM $BASE\nRUN echo done-before > /x\nRUN true\n",
    )
    .unwrap();
    let out = e
        .cmd()
        .args([
            "build",
            "-t",
            "int",
            "--build-arg",
            &base,
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        log.lines().filter(|l| l.ends_with(" CACHED")).count(),
        1,
        "{log}"
    );
}
