//! Kaniko's mode: `berth build` as root inside an unprivileged berth
//! container (default capabilities, no --privileged, no socket), its
//! steps in the container's own root. A builder image holds busybox and
//! this berth (in /berth, with the libraries it links); the build context
//! and a store directory are its volumes; the base image comes from the
//! test's registry over the host's network. The result is read from that
//! store by the host's berth, run and checked with the case's check.sh,
//! and its files compared with the same Dockerfile built in the default
//! mode on the host.

use std::path::{Path, PathBuf};

use crate::buildah::berth_files;
use crate::corpus::case;
use serde_json::json;

use crate::env::{Env, busybox_layer};
use crate::support::{E, Layout, layer_tar};

/// The files the berth binary links, from ldd: `(path, content)`.
fn linked_libraries(bin: &Path) -> Vec<(String, Vec<u8>)> {
    let out = std::process::Command::new("ldd").arg(bin).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for l in text.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`.
        let path = match l.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => l.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push((p.to_string(), std::fs::read(p).unwrap()));
        }
    }
    libs
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// busybox, and berth as /berth/berth with its libraries where ldd
/// found them, BERTH_ISOLATION=rootfs in its Env: the image a builder
/// pod runs.
fn builder_image(e: &Env) -> String {
    let bin = PathBuf::from(crate::support::berth_bin());
    let mut entries = vec![
        E::Dir("berth", 0o755),
        E::File("berth/berth", 0o755, std::fs::read(&bin).unwrap()),
    ];
    for (path, data) in linked_libraries(&bin) {
        let rel = path.trim_start_matches('/');
        let mut dir = String::new();
        for part in Path::new(rel).parent().unwrap().components() {
            dir = if dir.is_empty() {
                part.as_os_str().to_string_lossy().into_owned()
            } else {
                format!("{dir}/{}", part.as_os_str().to_string_lossy())
            };
            entries.push(E::Dir(leak(dir.clone()), 0o755));
        }
        entries.push(E::File(leak(rel.to_string()), 0o755, data));
    }
    let dir = e.sb.path().join("layout-builder");
    let mut l = Layout::new(&dir);
    let (desc, _) = l.image(
        &[busybox_layer(), layer_tar(&entries)],
        true,
        "amd64",
        json!({
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "BERTH_ISOLATION=rootfs"],
        }),
    );
    l.tag(desc, "latest");
    e.reg
        .push_layout(&dir, "latest", "berth-builder:latest", "oci", false);
    let image = format!("{}/berth-builder:latest", e.reg.host());
    e.ok(&["pull", "-q", "--tls-verify=false", &image]);
    image
}

/// The builder's run: `berth build` of `context` inside a container of
/// the builder image, its store in `store` (a host directory). Returns
/// the output.
fn build_inside(
    e: &Env,
    builder: &str,
    context: &Path,
    store: &Path,
    extra: &[&str],
) -> std::process::Output {
    build_inside_with(e, builder, context, store, &[], extra)
}

/// `build_inside`, with `run` flags.
fn build_inside_with(
    e: &Env,
    builder: &str,
    context: &Path,
    store: &Path,
    run_flags: &[&str],
    extra: &[&str],
) -> std::process::Output {
    std::fs::create_dir_all(store).unwrap();
    let ctx = format!("{}:/berth/context:ro", context.display());
    let st = format!("{}:/var/lib/berth", store.display());
    let base = format!("BASE={}", e.image);
    let mut args = vec!["run", "--rm", "--network", "host", "-v", &ctx, "-v", &st];
    args.extend(run_flags);
    args.extend([
        builder,
        "/berth/berth",
        "--root",
        "/var/lib/berth",
        "build",
        "--tls-verify=false",
        "--build-arg",
        &base,
        "-t",
        "out",
    ]);
    args.extend(extra);
    args.push("/berth/context");
    e.berth(&args)
}

/// The image `out` of the builder's store, loaded into the env's store
/// as `tag`.
fn take_out(e: &Env, store: &Path, tag: &str) {
    let tar = e.sb.path().join(format!("{tag}.tar"));
    let mut c = e.sb.cmd_root(store);
    c.arg("--runroot").arg(e.sb.path().join("builder-run"));
    let out = c
        .args(["save", "-o", tar.to_str().unwrap(), "out"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "save from the builder's store: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    e.ok(&["load", "-i", tar.to_str().unwrap()]);
    e.ok(&["tag", "localhost/out:latest", tag]);
    e.ok(&["rmi", "localhost/out:latest"]);
    std::fs::remove_file(&tar).unwrap();
}

/// Builds corpus case `name` inside the builder container and on the
/// host; the inside one passes the case's check.sh and config.json, and
/// both have the same files.
fn rootfs_case(name: &str) {
    let e = Env::new();
    let builder = builder_image(&e);
    let dir = case(&e, name);
    let store = e.sb.path().join("builder-store");
    let out = build_inside(&e, &builder, &dir, &store, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} inside: {stderr}");
    // The builder image's environment chose the mode, and said so.
    assert!(
        stderr.contains("--isolation rootfs (from BERTH_ISOLATION)"),
        "{stderr}"
    );
    let tag = format!("rootfs-{name}");
    take_out(&e, &store, &tag);
    crate::corpus::check_image(&e, &dir, &tag, name);
    let host = format!("host-{name}");
    crate::corpus::build(&e, &dir, &host, &[]);
    let ours = berth_files(&e, &tag, &e.sb.path().join("rootfs-files"));
    let theirs = berth_files(&e, &host, &e.sb.path().join("host-files"));
    // Something to compare: the base's files and the steps'.
    assert!(
        ours.len() > 20 && ours.contains_key("bin/busybox"),
        "{ours:?}"
    );
    crate::buildah::assert_same_files(name, ("rootfs", &ours), ("container", &theirs));
}

#[test]
fn rootfs_builds_basics_inside_an_unprivileged_container() {
    rootfs_case("basics");
}

#[test]
fn rootfs_builds_copies_inside_an_unprivileged_container() {
    rootfs_case("copy");
}

#[test]
fn rootfs_builds_multistage_inside_an_unprivileged_container() {
    rootfs_case("multistage");
}

#[test]
fn rootfs_refuses_run_mounts_and_networks_clearly() {
    let e = Env::new();
    let builder = builder_image(&e);
    let ctx = e.sb.path().join("ctx-mount");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "ARG BASE\nFROM $BASE\nRUN --mount=type=cache,target=/cache echo hi\n",
    )
    .unwrap();
    let store = e.sb.path().join("builder-store");
    let out = build_inside(&e, &builder, &ctx, &store, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--mount"), "{err}");
    assert!(err.contains("rootfs isolation"), "{err}");
    assert!(err.contains("line 3"), "names the line: {err}");
    // Refused before anything ran: no layer was made.
    assert!(!err.contains("#2 DONE"), "{err}");
    // Nor a network of its own (--security=insecure is refused in any
    // mode).
    for (flag, says) in [
        ("--network=none", "share the builder's own network"),
        ("--network=host", "share the builder's own network"),
    ] {
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("ARG BASE\nFROM $BASE\nRUN {flag} true\n"),
        )
        .unwrap();
        let out = build_inside(&e, &builder, &ctx, &store, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(flag) && err.contains(says), "{flag}: {err}");
        assert!(err.contains("rootfs isolation"), "{err}");
    }
}

/// Where it cannot mount, berth build does not guess rootfs isolation
/// (it would empty the container's root): without the builder image's
/// BERTH_ISOLATION it says what to ask for, and its root is untouched.
#[test]
fn rootfs_is_never_chosen_unasked() {
    let e = Env::new();
    let builder = builder_image(&e);
    let ctx = e.sb.path().join("ctx-unasked");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "ARG BASE\nFROM $BASE\nRUN true\n").unwrap();
    let store = e.sb.path().join("builder-store");
    let out = build_inside_with(&e, &builder, &ctx, &store, &["-e", "BERTH_ISOLATION="], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cannot mount"), "{err}");
    assert!(err.contains("--isolation rootfs"), "{err}");
    assert!(err.contains("BERTH_ISOLATION=rootfs"), "{err}");
}

/// A stage reset empties `/` but for the kept paths: a file the builder
/// image had is gone when the stage runs, while the context, the store
/// and berth itself are untouched.
#[test]
fn rootfs_reset_keeps_only_the_builders_own_paths() {
    let e = Env::new();
    let builder = builder_image(&e);
    let ctx = e.sb.path().join("ctx-reset");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::write(ctx.join("sub/data"), "context data\n").unwrap();
    // Each RUN lists what it finds; the output is the image's.
    std::fs::write(
        ctx.join("Dockerfile"),
        "ARG BASE\n\
         FROM $BASE AS first\n\
         RUN test -x /berth/berth && echo berth-kept >> /seen; \
             test -e /lib64 || echo builder-libs-gone >> /seen; \
             test -e /berth/context/sub/data && echo context-visible >> /seen; \
             test -d /var/lib/berth/layers && echo store-visible >> /seen; \
             echo from-run > /made-by-run\n\
         FROM $BASE\n\
         RUN test ! -e /made-by-run && echo other-stage-clean > /clean\n",
    )
    .unwrap();
    let before: Vec<(PathBuf, Vec<u8>)> = walk(&ctx);
    let store = e.sb.path().join("builder-store");
    // The first stage's result is kept as an image of its own.
    let out = build_inside(&e, &builder, &ctx, &store, &["--target", "first"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    take_out(&e, &store, "reset-first");
    let seen = e.ok(&["run", "--rm", "reset-first", "cat", "/seen"]);
    // berth is kept (its directory survives), the builder's libraries
    // are not (busybox has none), the context and store are there.
    assert!(seen.contains("berth-kept"), "{seen}");
    assert!(
        seen.contains("builder-libs-gone"),
        "the builder's /lib64 survived: {seen}"
    );
    assert!(seen.contains("context-visible"), "{seen}");
    assert!(seen.contains("store-visible"), "{seen}");
    // Not in the image: the kept paths are not the image's.
    let listing = e.ok(&["run", "--rm", "reset-first", "ls", "-a", "/"]);
    for kept in ["berth", "var"] {
        assert!(
            !listing.split_whitespace().any(|n| n == kept),
            "{kept} in the image: {listing}"
        );
    }
    // The whole Dockerfile: the second stage starts from an emptied root.
    let out = build_inside(&e, &builder, &ctx, &store, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    take_out(&e, &store, "reset-second");
    let clean = e.ok(&["run", "--rm", "reset-second", "cat", "/clean"]);
    assert_eq!(clean.trim(), "other-stage-clean");
    // The context is as it was (it was mounted read-only, and the build
    // never writes there anyway); the store still opens.
    assert_eq!(walk(&ctx), before);
    let mut c = e.sb.cmd_root(&store);
    c.arg("--runroot").arg(e.sb.path().join("builder-run"));
    let out = c.args(["images", "-q"]).output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

/// Every file of a tree with its content, sorted.
fn walk(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
                out.push((p, Vec::new()));
            } else {
                let data = std::fs::read(&p).unwrap();
                out.push((p, data));
            }
        }
    }
    out.sort();
    out
}
