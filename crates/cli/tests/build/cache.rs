//! The build cache: an unchanged context is all cache hits and the same
//! image; a one-file change rebuilds from the step that reads it;
//! --no-cache rebuilds all; `builder prune` empties it.

use crate::corpus::{build, case};
use crate::env::Env;

fn write_case(e: &Env) -> std::path::PathBuf {
    let dir = e.sb.path().join("cachectx");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "ARG BASE\nFROM $BASE\nRUN echo first > /first\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy-of-a\nCOPY b.txt /b.txt\n",
    )
    .unwrap();
    std::fs::write(dir.join("a.txt"), "a1\n").unwrap();
    std::fs::write(dir.join("b.txt"), "b1\n").unwrap();
    dir
}

fn build_log(e: &Env, dir: &std::path::Path, extra: &[&str]) -> (String, String) {
    build_on(e, &e.image, dir, "cached", extra)
}

/// Builds `dir` in `e`'s store as `tag` on `base`; its stdout (the ID)
/// and stderr (the steps).
fn build_on(
    e: &Env,
    base: &str,
    dir: &std::path::Path,
    tag: &str,
    extra: &[&str],
) -> (String, String) {
    let base = format!("BASE={base}");
    let mut args = vec![
        "build",
        "-t",
        tag,
        "--tls-verify=false",
        "--build-arg",
        &base,
    ];
    args.extend(extra);
    args.push(dir.to_str().unwrap());
    let out = e.berth(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cached_steps(log: &str) -> usize {
    log.lines().filter(|l| l.ends_with(" CACHED")).count()
}

#[test]
fn unchanged_context_is_all_cache_and_the_same_image() {
    let e = Env::new();
    let dir = write_case(&e);
    let (id1, log1) = build_log(&e, &dir, &[]);
    assert_eq!(cached_steps(&log1), 0, "{log1}");
    let (id2, log2) = build_log(&e, &dir, &[]);
    assert_eq!(cached_steps(&log2), 4, "{log2}");
    assert_eq!(id1, id2, "a build all from cache makes the same image");
    // mtime alone is not a change.
    let f = std::fs::File::options()
        .write(true)
        .open(dir.join("a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let (_, log3) = build_log(&e, &dir, &[]);
    assert_eq!(cached_steps(&log3), 4, "{log3}");
}

#[test]
fn a_changed_file_rebuilds_from_the_step_that_reads_it() {
    let e = Env::new();
    let dir = write_case(&e);
    build_log(&e, &dir, &[]);
    std::fs::write(dir.join("a.txt"), "a2\n").unwrap();
    let (_, log) = build_log(&e, &dir, &[]);
    // RUN echo first is the only hit.
    assert_eq!(cached_steps(&log), 1, "{log}");
    let out = e.ok(&["run", "--rm", "cached", "cat", "/copy-of-a"]);
    assert_eq!(out.trim(), "a2");
    let (_, log) = build_log(&e, &dir, &["--no-cache"]);
    assert_eq!(cached_steps(&log), 0, "{log}");
}

#[test]
fn builder_prune_empties_the_cache_and_keeps_images() {
    let e = Env::new();
    let dir = write_case(&e);
    build_log(&e, &dir, &[]);
    let du = e.ok(&["builder", "du"]);
    assert!(du.contains("Entries: 4"), "{du}");
    let (_, err) = e.code(125, &["builder", "prune"]);
    assert!(err.contains("--force"), "{err}");
    let out = e.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Deleted 4 cache entries"), "{out}");
    assert!(e.ok(&["builder", "du"]).contains("Entries: 0"));
    // The image keeps its layers.
    let got = e.ok(&["run", "--rm", "cached", "cat", "/copy-of-a"]);
    assert_eq!(got.trim(), "a1");
    let (_, log) = build_log(&e, &dir, &[]);
    assert_eq!(cached_steps(&log), 0, "{log}");
}

#[test]
fn keep_storage_keeps_the_most_recent_entries() {
    let e = Env::new();
    let dir = case(&e, "escape");
    build(&e, &dir, "keep", &[]);
    let out = e.ok(&["builder", "prune", "-f", "--keep-storage", "1G"]);
    assert!(out.contains("Deleted 0 cache entries"), "{out}");
    let out = e.ok(&["builder", "prune", "-f", "--keep-storage", "1"]);
    assert!(out.contains("Deleted 2 cache entries"), "{out}");
}

#[test]
fn a_registry_cache_serves_another_store() {
    let e = Env::new();
    let dir = case(&e, "multistage");
    let cache = format!("{}/cache/multistage:1", e.reg.host());
    let (id1, _) = build_on(&e, &e.image, &dir, "ms", &["--cache-to", &cache]);
    // Another store: the same registry, nothing local.
    let other = Env::new();
    let ctx = other.sb.path().join("ctx2");
    crate::corpus::copy_tree(&dir, &ctx);
    let from = format!("type=registry,ref={cache}");
    let (id2, log) = build_on(&other, &e.image, &ctx, "ms", &["--cache-from", &from]);
    // Every layer step of the stages the target needs: build's RUN, test's
    // RUN and the three COPYs.
    assert_eq!(cached_steps(&log), 5, "{log}");
    assert_eq!(id2, id1, "the same image");
    let got = other.ok(&["run", "--rm", "--entrypoint", "cat", "ms", "/tested"]);
    assert_eq!(got.trim(), "tested");
    // The cache images did not stay as images.
    assert!(!other.ok(&["images"]).contains("cache/multistage"));
}
