//! `berth search` against a real registry's catalog: podman's columns
//! (checked against podman's own output where it is installed), limits,
//! templates, tags, pages of the catalog, short names through the search
//! registries, and errors that name the registry and say why.

use std::process::Command;

use berth_image::Digest;
use serde_json::{Value, json};

use crate::support::*;

/// A small image under each of `tags` of `repo`, put with the
/// distribution API (faster than skopeo for many repositories).
fn put_tiny(reg: &Registry, repo: &str, tags: &[&str]) {
    let layer = layer_tar(&[E::File("hello", 0o644, b"hi\n".to_vec())]);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]},
    }))
    .unwrap();
    let (ld, cd) = (reg.put_blob(repo, &layer), reg.put_blob(repo, &config));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": ld.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    for t in tags {
        reg.put_manifest(
            repo,
            t,
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        );
    }
}

/// Each line without the padding after its last column.
fn trimmed(out: &str) -> Vec<String> {
    out.lines().map(|l| l.trim_end().to_string()).collect()
}

/// podman's `search` with a root of its own under the sandbox, when
/// podman is installed.
fn podman(sb: &Sandbox, args: &[&str]) -> Option<String> {
    if !have("podman") {
        return None;
    }
    let out = Command::new("podman")
        .arg("--root")
        .arg(sb.path().join("podman-root"))
        .arg("--runroot")
        .arg(sb.path().join("podman-run"))
        .args(["--storage-driver", "vfs", "search"])
        .args(args)
        .env("CONTAINERS_REGISTRIES_CONF", sb.conf())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman search {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn search_lists_matching_repositories_and_tags_as_podman_does() {
    require!("docker-registry");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let host = reg.host();
    put_tiny(&reg, "busybox", &["latest", "1.36"]);
    put_tiny(&reg, "busy-extra", &["latest"]);
    put_tiny(&reg, "library/busybox", &["latest"]);
    put_tiny(&reg, "other", &["latest"]);
    let term = format!("{host}/busy");
    let insecure = "--tls-verify=false";

    // podman's columns; every repository whose name holds the term, in
    // the catalog's order.
    let out = sb.ok(&["search", insecure, &term]);
    // The NAME column is as wide as its widest name, and two spaces.
    let width = format!("{host}/library/busybox").len() + 2;
    let want = [
        format!("{:width$}DESCRIPTION", "NAME"),
        format!("{host}/busy-extra"),
        format!("{host}/busybox"),
        format!("{host}/library/busybox"),
    ];
    assert_eq!(trimmed(&out), want);
    // --limit, the whole catalog with HOST/, a template, JSON.
    let limited = sb.ok(&["search", insecure, "--limit", "2", &term]);
    assert_eq!(trimmed(&limited)[1..], want[1..3]);
    let all = sb.ok(&[
        "search",
        insecure,
        "--format",
        "{{.Name}}",
        &format!("{host}/"),
    ]);
    assert_eq!(
        trimmed(&all),
        ["busy-extra", "busybox", "library/busybox", "other"].map(|r| format!("{host}/{r}"))
    );
    let tpl = sb.ok(&[
        "search",
        insecure,
        "--format",
        "{{.Index}} {{.Name}}",
        &term,
    ]);
    assert_eq!(trimmed(&tpl)[0], format!("{host} {host}/busy-extra"));
    let js: Value =
        serde_json::from_str(&sb.ok(&["search", insecure, "--format", "json", &term])).unwrap();
    assert_eq!(js.as_array().unwrap().len(), 3, "{js}");
    assert_eq!(js[1]["Name"], format!("{host}/busybox"));
    assert_eq!(js[1]["Index"], host.as_str());
    assert_eq!(js[1]["Stars"], 0);

    // One repository's tags, in the registry's order.
    let repo = format!("{host}/busybox");
    let tags = sb.ok(&["search", insecure, "--list-tags", &repo]);
    let tag_lines = trimmed(&tags);
    assert_eq!(tag_lines.len(), 3, "{tags}");
    assert!(
        tag_lines[0].starts_with("NAME") && tag_lines[0].ends_with("TAG"),
        "{tags}"
    );
    let mut listed: Vec<&str> = tag_lines[1..]
        .iter()
        .map(|l| l.strip_prefix(&repo).unwrap().trim())
        .collect();
    listed.sort();
    assert_eq!(listed, ["1.36", "latest"]);
    assert_eq!(
        trimmed(&sb.ok(&["search", insecure, "--list-tags", "--limit", "1", &repo])).len(),
        2
    );
    let tpl = sb.ok(&[
        "search",
        insecure,
        "--list-tags",
        "--format",
        "{{.Name}}:{{.Tag}}",
        &format!("{repo}:latest"),
    ]);
    let mut refs = trimmed(&tpl);
    refs.sort();
    assert_eq!(refs, [format!("{repo}:1.36"), format!("{repo}:latest")]);
    let js: Value = serde_json::from_str(&sb.ok(&[
        "search",
        insecure,
        "--list-tags",
        "--format",
        "json",
        &repo,
    ]))
    .unwrap();
    assert_eq!(js[0]["Name"], repo.as_str());
    assert_eq!(js[0]["Tags"].as_array().unwrap().len(), 2, "{js}");

    // The same rows as podman's, where podman is here.
    for args in [
        vec![insecure, term.as_str()],
        vec![insecure, "--limit", "2", term.as_str()],
        vec![insecure, "--format", "{{.Name}} {{.Index}}", term.as_str()],
        vec![insecure, "--list-tags", repo.as_str()],
    ] {
        if let Some(theirs) = podman(&sb, &args) {
            let mut a = args.clone();
            a.insert(0, "search");
            assert_eq!(trimmed(&sb.ok(&a)), trimmed(&theirs), "{args:?}");
        }
    }

    // A short name: each unqualified-search registry, with its
    // registries.conf settings (plain HTTP allowed here).
    sb.write_conf(&format!(
        "unqualified-search-registries = [\"{host}\"]\n[[registry]]\nlocation = \"{host}\"\ninsecure = true\n"
    ));
    assert_eq!(trimmed(&sb.ok(&["search", "busy"])), trimmed(&out));
    let short_tags = sb.ok(&["search", "--list-tags", "--format", "{{.Tag}}", "busybox"]);
    assert_eq!(trimmed(&short_tags).len(), 2, "{short_tags}");
}

#[test]
fn search_follows_the_catalogs_pages() {
    require!("docker-registry");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let host = reg.host();
    // docker-registry answers 100 names a page, with a Link to the next.
    for i in 0..105 {
        put_tiny(&reg, &format!("many-{i:03}"), &["latest"]);
    }
    put_tiny(&reg, "zzz-last", &["latest"]);
    let names = |args: &[&str]| {
        let mut a = vec!["search", "--tls-verify=false", "--format", "{{.Name}}"];
        a.extend(args);
        trimmed(&sb.ok(&a))
    };
    let many = names(&["--limit", "200", &format!("{host}/many")]);
    assert_eq!(many.len(), 105);
    assert_eq!(many[104], format!("{host}/many-104"));
    // On the second page alone.
    assert_eq!(
        names(&[&format!("{host}/zzz")]),
        [format!("{host}/zzz-last")]
    );
    // podman's default limit: 25.
    assert_eq!(names(&[&format!("{host}/many")]).len(), 25);
}

#[test]
fn search_errors_name_the_registry_and_say_why() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let host = reg.host();
    put_tiny(&reg, "busybox", &["latest"]);

    // Plain HTTP answered over HTTPS, as for a pull.
    let err = sb.fails(&["search", &format!("{host}/busy")]);
    assert!(
        err.contains(&format!("registry {host}"))
            && err.contains("server gave HTTP response to HTTPS client")
            && err.contains("--tls-verify=false"),
        "{err}"
    );
    // Nothing listening.
    let dead = format!("127.0.0.1:{}", free_port());
    let err = sb.fails(&["search", "--tls-verify=false", &format!("{dead}/busy")]);
    assert!(
        err.contains(&format!("registry {dead}")) && err.contains("cannot reach"),
        "{err}"
    );
    // No such repository for --list-tags: the registry's own words.
    let err = sb.fails(&[
        "search",
        "--tls-verify=false",
        "--list-tags",
        &format!("{host}/nosuch"),
    ]);
    assert!(
        err.contains(&format!("registry {host}")) && err.contains("404 Not Found"),
        "{err}"
    );
    // Docker Hub serves no catalog: said before any request.
    sb.write_conf("unqualified-search-registries = [\"docker.io\"]\n");
    let err = sb.fails(&["search", "busybox"]);
    assert!(
        err.contains("registry docker.io") && err.contains("does not serve the registry catalog"),
        "{err}"
    );
    // No search registries: a short name has nowhere to go.
    sb.write_conf("unqualified-search-registries = []\n");
    let err = sb.fails(&["search", "busybox"]);
    assert!(err.contains("no unqualified-search registries"), "{err}");
    // One registry failing among several: a warning, the rest listed.
    sb.write_conf(&format!(
        "unqualified-search-registries = [\"{dead}\", \"{host}\"]\n[[registry]]\nlocation = \"{host}\"\ninsecure = true\n[[registry]]\nlocation = \"{dead}\"\ninsecure = true\n"
    ));
    let out = sb.berth(&["search", "--format", "{{.Name}}", "busy"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{host}/busybox\n")
    );
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(
        warn.contains(&format!("Warning: registry {dead}")),
        "{warn}"
    );

    // A registry that asks for credentials: the catalog is refused
    // without them, named; after login it answers.
    let locked = Registry::start_with(RegistryOpts {
        auth: Some(("tester".into(), "secret".into())),
        tls: false,
    });
    let lhost = locked.host();
    sb.write_conf("");
    push_image(
        &sb,
        &locked,
        "team/app:1",
        &[layer_tar(&[E::File("a", 0o644, b"a\n".to_vec())])],
        json!({}),
    );
    let err = sb.fails(&["search", "--tls-verify=false", &format!("{lhost}/")]);
    assert!(
        err.contains(&format!("registry {lhost}")) && err.contains(&format!("berth login {lhost}")),
        "{err}"
    );
    sb.ok(&[
        "login",
        "--tls-verify=false",
        "-u",
        "tester",
        "-p",
        "secret",
        &lhost,
    ]);
    assert_eq!(
        sb.ok(&[
            "search",
            "--tls-verify=false",
            "--format",
            "{{.Name}}",
            &format!("{lhost}/")
        ]),
        format!("{lhost}/team/app\n")
    );
    assert_eq!(
        sb.ok(&[
            "search",
            "--tls-verify=false",
            "--list-tags",
            "--format",
            "{{.Tag}}",
            &format!("{lhost}/team/app")
        ]),
        "1\n"
    );
}
