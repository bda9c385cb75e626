//! registries.conf as podman reads it: the path from the environment, the
//! registries.conf.d drop-ins, short-name aliases and modes, and the
//! error for a plain-HTTP registry reached over HTTPS.

use std::fs;
use std::path::Path;

use serde_json::json;

use crate::support::*;

/// A drop-in file in the sandbox's registries.conf.d.
fn drop_in(sb: &Sandbox, name: &str, text: &str) {
    let dir = sb.path().join("registries.conf.d");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), text).unwrap();
}

fn one_layer() -> Vec<Vec<u8>> {
    vec![layer_tar(&[E::File("hello", 0o644, b"hi\n".to_vec())])]
}

/// berth with the sandbox's root but no --registries-conf: the file comes
/// from the environment.
fn berth_env(sb: &Sandbox, env: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new(berth_bin());
    c.arg("--root").arg(sb.root());
    c.arg("--authfile").arg(sb.path().join("auth.json"));
    c.env_remove("CONTAINERS_REGISTRIES_CONF");
    c.env_remove("REGISTRIES_CONFIG_PATH");
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).stdin(std::process::Stdio::null());
    c.output().unwrap()
}

fn refusal(conf: &Path, name: &str) -> String {
    format!(
        "short-name \"{name}\" did not resolve to an alias and no unqualified-search registries are defined in \"{}\"",
        conf.display()
    )
}

#[test]
fn a_drop_in_alias_resolves_a_short_name_and_an_empty_search_list_refuses_others() {
    require!("docker-registry", "skopeo");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let host = reg.host();
    let id = push_image(&sb, &reg, "team/app:1", &one_layer(), json!({}));
    sb.write_conf("unqualified-search-registries = []\n");
    // Lexical order: 20- overrides 10-'s alias for the same short name.
    drop_in(
        &sb,
        "10-first.conf",
        "[aliases]\n\"myapp\" = \"example.invalid/nothing\"\n",
    );
    drop_in(
        &sb,
        "20-second.conf",
        &format!(
            "[[registry]]\nlocation = \"{host}\"\ninsecure = true\n\n[aliases]\n\"myapp\" = \"{host}/team/app\"\n"
        ),
    );
    // Not a .conf: ignored, broken as it is.
    drop_in(&sb, "README", "this is [not toml\n");
    let out = sb.ok(&["pull", "-q", "myapp:1"]);
    assert_eq!(out.trim(), id.hex());
    let img = inspect(&sb, "myapp:1");
    assert_eq!(img["RepoTags"], json!([format!("{host}/team/app:1")]));
    // The alias finds the stored image too, without a registry.
    drop(reg);
    sb.ok(&["image", "inspect", "myapp:1"]);
    let err = sb.fails(&["pull", "other"]);
    assert!(err.contains(&refusal(&sb.conf(), "other")), "{err}");
}

#[test]
fn the_environment_names_the_file_and_the_flag_wins() {
    let sb = Sandbox::new();
    let a = sb.path().join("a.conf");
    let b = sb.path().join("b.conf");
    fs::write(&a, "unqualified-search-registries = []\n").unwrap();
    fs::write(&b, "unqualified-search-registries = []\n").unwrap();
    for var in ["CONTAINERS_REGISTRIES_CONF", "REGISTRIES_CONFIG_PATH"] {
        let out = berth_env(&sb, &[(var, &a)], &["pull", "x"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{var}: {err}");
        assert!(err.contains(&refusal(&a, "x")), "{var}: {err}");
    }
    // CONTAINERS_REGISTRIES_CONF is the stronger of the two.
    let out = berth_env(
        &sb,
        &[
            ("CONTAINERS_REGISTRIES_CONF", &b),
            ("REGISTRIES_CONFIG_PATH", &a),
        ],
        &["pull", "x"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&refusal(&b, "x")));
    // --registries-conf beats both.
    let out = berth_env(
        &sb,
        &[("CONTAINERS_REGISTRIES_CONF", &a)],
        &["--registries-conf", b.to_str().unwrap(), "pull", "x"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&refusal(&b, "x")));
    // A file the environment names must exist, as podman says.
    let missing = sb.path().join("missing.conf");
    let out = berth_env(
        &sb,
        &[("CONTAINERS_REGISTRIES_CONF", &missing)],
        &["images"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("missing.conf"),
        "{err}"
    );
}

#[test]
fn enforcing_refuses_an_ambiguous_short_name_without_a_tty_but_uses_a_local_image() {
    let sb = Sandbox::new();
    let dead = free_port();
    sb.write_conf(&format!(
        "unqualified-search-registries = [\"127.0.0.1:{dead}\", \"localhost:{dead}\"]\nshort-name-mode = \"enforcing\"\n"
    ));
    let err = sb.fails(&["pull", "busybox"]);
    assert!(
        err.contains("short-name resolution enforced but cannot prompt without a TTY"),
        "{err}"
    );
    // A short name that is in the store is used; no registry is asked
    // (the search registries are dead).
    let tarball = sb.path().join("rootfs.tar");
    fs::write(&tarball, &one_layer()[0]).unwrap();
    let id = sb.ok(&["import", tarball.to_str().unwrap(), "busybox:1"]);
    let img = inspect(&sb, "busybox:1");
    assert_eq!(img["Id"], json!(id.trim()));
    sb.ok(&["tag", "busybox:1", "busybox:2"]);
    // permissive (the default) tries each search registry in order.
    sb.write_conf(&format!(
        "unqualified-search-registries = [\"127.0.0.1:{dead}\", \"localhost:{dead}\"]\n"
    ));
    let err = sb.fails(&["pull", "--tls-verify=false", "nothing"]);
    assert!(
        err.contains(&format!("127.0.0.1:{dead}")) && err.contains(&format!("localhost:{dead}")),
        "{err}"
    );
}

#[test]
fn a_malformed_drop_in_is_named_with_its_line() {
    let sb = Sandbox::new();
    drop_in(
        &sb,
        "50-bad.conf",
        "# a comment\nunqualified-search-registries = [\"a.example\"]\nshort-name-mode = enforcing\n",
    );
    let err = sb.fails(&["images"]);
    let file = sb.path().join("registries.conf.d/50-bad.conf");
    assert!(
        err.contains(&format!("{}: line 3: ", file.display())),
        "{err}"
    );
}

#[test]
fn an_alias_to_a_bad_reference_is_named() {
    let sb = Sandbox::new();
    sb.write_conf("[aliases]\n\"app\" = \"no-registry/app\"\n\"ok\" = \"quay.io/ok\"\n");
    let err = sb.fails(&["images"]);
    assert!(
        err.contains("[aliases] \"app\" = \"no-registry/app\"") && err.contains("registry"),
        "{err}"
    );
    sb.write_conf("[aliases]\n\"app\" = \"quay.io/Bad Name\"\n");
    let err = sb.fails(&["images"]);
    assert!(err.contains("\"quay.io/Bad Name\""), "{err}");
}

/// podman (checked with 4.3 against this docker-registry) treats
/// localhost and 127.0.0.1 registries like any other: HTTPS unless told
/// otherwise. berth does the same, and says how to allow plain HTTP.
#[test]
fn a_plain_http_registry_over_https_says_how_to_allow_it() {
    require!("docker-registry");
    let sb = Sandbox::new();
    let reg = Registry::start();
    let port = reg.host().rsplit_once(':').unwrap().1.to_string();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let err = sb.fails(&["pull", &format!("{host}/x:1")]);
        assert!(
            err.contains("server gave HTTP response to HTTPS client")
                && err.contains("--tls-verify=false")
                && err.contains("insecure = true"),
            "{host}: {err}"
        );
    }
    // run and create pull with the same flag (the image is not there, so
    // nothing is created either way).
    let run = sb.path().join("run");
    let image = format!("127.0.0.1:{port}/x:1");
    for verb in ["create", "run"] {
        let args = ["--runroot", run.to_str().unwrap(), verb, &image, "true"];
        let err = sb.fails(&args);
        assert!(
            err.contains("server gave HTTP response to HTTPS client"),
            "{verb}: {err}"
        );
        let args = [
            "--runroot",
            run.to_str().unwrap(),
            verb,
            "--tls-verify=false",
            &image,
            "true",
        ];
        let err = sb.fails(&args);
        assert!(!err.contains("HTTP response to HTTPS"), "{verb}: {err}");
    }
    // Told so in registries.conf, plain HTTP is used (the image is not
    // there: the registry's own answer).
    sb.write_conf(&format!(
        "[[registry]]\nlocation = \"127.0.0.1:{port}\"\ninsecure = true\n"
    ));
    let err = sb.fails(&["pull", &format!("127.0.0.1:{port}/x:1")]);
    assert!(!err.contains("HTTP response to HTTPS"), "{err}");
}
