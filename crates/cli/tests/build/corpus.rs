//! Each corpus Dockerfile built, its image checked from inside and in its
//! config.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::env::Env;

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/build/corpus")
}

/// The corpus case `name`, copied into the env's sandbox (the build must
/// not depend on where the repository is, and a case may be changed by a
/// test).
pub fn case(e: &Env, name: &str) -> PathBuf {
    let dest = e.sb.path().join("ctx").join(name);
    copy_tree(&corpus_dir().join(name), &dest);
    dest
}

pub fn copy_tree(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dest.join(e.file_name());
        let t = e.file_type().unwrap();
        if t.is_dir() {
            copy_tree(&e.path(), &to);
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Builds `dir` as `tag` with the env's busybox as BASE; returns the
/// image ID printed.
pub fn build(e: &Env, dir: &Path, tag: &str, extra: &[&str]) -> String {
    let base = format!("BASE={}", e.image);
    let mut args = vec![
        "build",
        "-t",
        tag,
        "--build-arg",
        &base,
        "--tls-verify=false",
    ];
    args.extend(extra);
    let d = dir.to_str().unwrap();
    args.push(d);
    e.ok(&args).trim().to_string()
}

/// The image's config (`config` of the image config).
pub fn image_config(e: &Env, image: &str) -> Value {
    let v: Value = serde_json::from_str(&e.ok(&["image", "inspect", image])).unwrap();
    v[0]["Config"].clone()
}

/// Every key of `want` has that value in `got`.
pub fn assert_subset(want: &Value, got: &Value, what: &str) {
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&got[k], v, "{what}: {k}; the whole config: {got:#}");
    }
}

/// The case's check.sh passes inside a container of `tag`, and its
/// config.json (where it has one) is in the image's config.
pub fn check_image(e: &Env, dir: &Path, tag: &str, name: &str) {
    let script = std::fs::read_to_string(dir.join("check.sh")).unwrap();
    let out = e.ok(&["run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", &script]);
    assert_eq!(out.trim_end().lines().last(), Some("ok"), "{name}: {out}");
    if let Ok(want) = std::fs::read_to_string(dir.join("config.json")) {
        let want: Value = serde_json::from_str(&want).unwrap();
        assert_subset(&want, &image_config(e, tag), name);
    }
}

fn check_case(name: &str, extra: &[&str], prepare: impl FnOnce(&Env, &Path)) {
    let e = Env::new();
    let dir = case(&e, name);
    prepare(&e, &dir);
    let tag = format!("corpus-{name}");
    build(&e, &dir, &tag, extra);
    check_image(&e, &dir, &tag, name);
}

#[test]
fn basics_every_config_instruction() {
    check_case("basics", &[], |_, _| {});
}

#[test]
fn copy_and_add_with_dockerignore_owners_modes_and_heredocs() {
    check_case("copy", &[], |_, _| {});
}

#[test]
fn multistage_builds_only_what_the_target_needs() {
    // The `unused` stage fails if it runs.
    check_case("multistage", &[], |_, _| {});
}

#[test]
fn heredocs_in_run() {
    check_case("heredoc", &[], |_, _| {});
}

#[test]
fn run_mounts_cache_bind_tmpfs_and_secrets() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s3cret\n").unwrap();
    let arg = format!("id=token,src={}", secret.path().display());
    check_case("mounts", &["--secret", &arg], |_, _| {});
}

#[test]
fn escape_directive_continuations_and_comments() {
    check_case("escape", &[], |_, _| {});
}

#[test]
fn shell_and_onbuild() {
    check_case("shell", &[], |_, _| {});
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let e = Env::new();
    let parent = case(&e, "shell");
    build(&e, &parent, "parent-with-trigger", &[]);
    let child = e.sb.path().join("child");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(
        child.join("Dockerfile"),
        "FROM parent-with-trigger\nRUN cat /triggered\n",
    )
    .unwrap();
    let mut c = e.cmd();
    let out = c
        .args(["build", "-t", "child", child.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = e.ok(&["run", "--rm", "--entrypoint", "cat", "child", "/triggered"]);
    assert_eq!(got.trim(), "triggered");
    // The trigger is not passed on to grandchildren.
    assert!(image_config(&e, "child")["OnBuild"].is_null());
}

#[test]
fn target_picks_a_stage_and_history_matches_the_steps() {
    let e = Env::new();
    let dir = case(&e, "multistage");
    build(&e, &dir, "just-build", &["--target", "build"]);
    let out = e.ok(&["run", "--rm", "just-build", "cat", "/out/app"]);
    assert_eq!(out.trim(), "compiled");
    let v: Value = serde_json::from_str(&e.ok(&["image", "inspect", "just-build"])).unwrap();
    let layers = v[0]["RootFS"]["Layers"].as_array().unwrap().len();
    // busybox's one layer and the RUN's.
    assert_eq!(layers, 2, "{v:#}");
    let history = e.ok(&["history", "--no-trunc", "just-build"]);
    assert!(history.contains("mkdir /out"), "{history}");
}

/// A one-file HTTP server on 127.0.0.1 answering every GET with `body`
/// and a Last-Modified; its URL.
fn serve_once(body: &'static [u8], times: usize) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(times) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    format!("http://127.0.0.1:{port}/files/fetched.txt")
}

#[test]
fn add_fetches_a_url_with_its_checksum_and_time() {
    let e = Env::new();
    let url = serve_once(b"from the web\n", 3);
    let digest = berth_image::digest::Digest::of(b"from the web\n");
    let dir = e.sb.path().join("addurl");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("ARG BASE\nFROM $BASE\nADD --checksum={digest} {url} /dl/\nADD {url} /named.txt\n"),
    )
    .unwrap();
    build(&e, &dir, "addurl", &[]);
    let out = e.ok(&[
        "run",
        "--rm",
        "addurl",
        "sh",
        "-c",
        "cat /dl/fetched.txt; stat -c '%a %Y' /dl/fetched.txt; cat /named.txt",
    ]);
    assert_eq!(out, "from the web\n600 784111777\nfrom the web\n");
    let bad = e.sb.path().join("addbad");
    std::fs::create_dir_all(&bad).unwrap();
    let url = serve_once(b"other\n", 1);
    std::fs::write(
        bad.join("Dockerfile"),
        format!("ARG BASE\nFROM $BASE\nADD --checksum={digest} {url} /dl/\n"),
    )
    .unwrap();
    let base = format!("BASE={}", e.image);
    let o = e.berth(&["build", "--build-arg", &base, bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--checksum"), "{err}");
    std::fs::write(
        bad.join("Dockerfile"),
        format!("ARG BASE\nFROM $BASE\nCOPY {url} /dl/\n"),
    )
    .unwrap();
    let o = e.berth(&["build", "--build-arg", &base, bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("ADD does"), "{err}");
}

#[test]
fn independent_stages_build_at_the_same_time() {
    // Each stage waits for the other to have started, through a cache
    // mount they share: built one after the other, the first would give
    // up and fail the build.
    let e = Env::new();
    let dir = e.sb.path().join("parallel");
    std::fs::create_dir_all(&dir).unwrap();
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/sync touch /sync/{me} && \
             for i in $(seq 150); do [ -e /sync/{other} ] && break; sleep 0.1; done && \
             [ -e /sync/{other} ] && echo {me} > /{me}"
        )
    };
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "ARG BASE\nFROM $BASE AS a\n{}\nFROM $BASE AS b\n{}\nFROM $BASE\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
            wait("a", "b"),
            wait("b", "a")
        ),
    )
    .unwrap();
    build(&e, &dir, "parallel", &[]);
    let out = e.ok(&["run", "--rm", "parallel", "cat", "/a", "/b"]);
    assert_eq!(out, "a\nb\n");
}
