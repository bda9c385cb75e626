//! podman's configuration files where the environment names them:
//! `CONTAINERS_CONF` (run's defaults, the runtimes table) and
//! `CONTAINERS_STORAGE_CONF` (where the store lives).

use crate::env::Env;

#[test]
fn containers_conf_gives_runs_defaults_and_runtimes() {
    let e = Env::new();
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file());
    let conf = e.sb.path().join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[containers]\nenv = [\"FROM_CONF=yes\", \"OVERRIDDEN=conf\"]\ndefault_ulimits = [\"nofile=1111:2222\", \"nproc=3333:4444\"]\ndns_servers = [\"10.9.8.7\"]\ndns_searches = [\"conf.example\"]\n\n[engine]\n[engine.runtimes]\nmine = [\"/nonexistent/runc\", \"{}\"]\nmissing = [\"/nonexistent/runc\"]\n",
            runc.unwrap_or("/usr/sbin/runc")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = e
            .cmd()
            .env("CONTAINERS_CONF", &conf)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let script = "echo $FROM_CONF $OVERRIDDEN; ulimit -n; ulimit -u; grep -E '^(nameserver|search)' /etc/resolv.conf";
    let (code, out, err) = run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "OVERRIDDEN=flag",
        "--ulimit",
        "nproc=555:666",
        &e.image,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "yes flag\n1111\n555\nsearch conf.example\nnameserver 10.9.8.7\n"
    );
    // A DNS flag replaces the file's DNS settings.
    let (_, out, _) = run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--dns",
        "10.1.1.1",
        &e.image,
        "grep",
        "-c",
        "10.9.8.7",
        "/etc/resolv.conf",
    ]);
    assert_eq!(out.trim(), "0");
    if runc.is_some() {
        let (code, out, err) = run(&[
            "run",
            "--rm",
            "--runtime",
            "mine",
            &e.image,
            "echo",
            "via runc",
        ]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out.trim(), "via runc");
    }
    let (code, _, err) = run(&["run", "--rm", "--runtime", "missing", &e.image, "true"]);
    assert_eq!(code, Some(125));
    assert!(
        err.contains("/nonexistent/runc") && err.contains("engine.runtimes"),
        "{err}"
    );
    // A broken file is named.
    std::fs::write(&conf, "[containers\n").unwrap();
    let (code, _, err) = run(&["run", "--rm", &e.image, "true"]);
    assert_eq!(code, Some(125));
    assert!(err.contains("CONTAINERS_CONF"), "{err}");
}

#[test]
fn storage_conf_places_the_store_below_its_graphroot() {
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("graph");
    let run = dir.path().join("run");
    let conf = dir.path().join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            graph.display(),
            run.display()
        ),
    )
    .unwrap();
    let berth = |args: &[&str]| {
        let out = std::process::Command::new(crate::support::berth_bin())
            .env("CONTAINERS_STORAGE_CONF", &conf)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    berth(&["volume", "create", "placed"]);
    assert!(graph.join("berth/volumes/placed").is_dir());
    berth(&["volume", "rm", "placed"]);
    crate::support::umount_under(dir.path());
}
