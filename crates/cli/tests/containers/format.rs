//! `--format` templates and `ps --filter`, end to end: what ps, images and
//! inspect print for docker's field names, `table` headers, JSON, filters
//! combined, and the same templates through podman on equivalent
//! containers.

use crate::env::*;

/// Output lines, sorted (ps lists in no order a test should rely on).
fn sorted(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().map(String::from).collect();
    v.sort();
    v
}

/// Containers of every state, on no network: `web1` and `web2` running
/// (labels app=web and app=api), `job` exited 3 (app=web, tier=batch),
/// `idle` created.
fn four_containers(env: &Env) {
    let none = ["--network", "none"];
    env.run_d(
        &[&none[..], &["--name", "web1", "--label", "app=web"]].concat(),
        &["sleep", "1000"],
    );
    env.run_d(
        &[&none[..], &["--name", "web2", "--label", "app=api"]].concat(),
        &["sleep", "1000"],
    );
    env.run_d(
        &[
            &none[..],
            &[
                "--name",
                "job",
                "--label",
                "app=web",
                "--label",
                "tier=batch",
            ],
        ]
        .concat(),
        &["sh", "-c", "exit 3"],
    );
    wait_for("job to exit", || env.status("job") == "exited");
    env.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "idle",
        &env.image,
        "true",
    ]);
}

#[test]
fn ps_format_prints_docker_fields_tables_and_json() {
    let env = Env::new();
    four_containers(&env);

    let out = env.ok(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}} {{.State}} {{.Label \"app\"}}|{{index .Labels \"tier\"}}",
    ]);
    assert_eq!(
        sorted(&out),
        [
            "idle created |",
            "job exited web|batch",
            "web1 running web|",
            "web2 running api|"
        ]
    );

    // `table`: docker's header words, columns padded as Go's tabwriter does.
    let out = env.ok(&["ps", "--format", "table {{.ID}}\\t{{.Names}}\\t{{.Image}}"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("CONTAINER ID   NAMES     IMAGE"),
        "{out}"
    );
    let id = env.inspect("web1")["Id"].as_str().unwrap()[..12].to_string();
    assert!(
        lines.contains(&format!("{id}   web1      {}", env.image).as_str()),
        "{out}"
    );

    // `{{json .}}`: one object a line, under docker's names.
    let out = env.ok(&["ps", "--filter", "name=web1", "--format", "{{json .}}"]);
    let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(row["Names"], "web1");
    assert_eq!(row["State"], "running");
    assert_eq!(row["ID"], id);
    assert!(row["Status"].as_str().unwrap().starts_with("Up "), "{row}");
    assert!(
        row["RunningFor"].as_str().unwrap().ends_with(" ago"),
        "{row}"
    );
    assert!(
        row["CreatedAt"].as_str().unwrap().ends_with(" +0000 UTC"),
        "{row}"
    );
    let out = env.ok(&[
        "ps",
        "--filter",
        "name=web1",
        "--format",
        "{{json .Names}}{{\"!\"}}",
    ]);
    assert_eq!(out, "\"web1\"!\n");

    // if/else and range over a container's labels.
    let out = env.ok(&[
        "ps", "-a", "--filter", "name=job", "--format",
        "{{if eq .State \"exited\"}}done{{else}}busy{{end}}:{{range $k, $v := .Labels}}{{$k}}={{$v}} {{end}}",
    ]);
    assert_eq!(out, "done:app=web tier=batch \n");

    // -q wins over a format, as docker's does.
    let out = env.ok(&[
        "ps",
        "-q",
        "--filter",
        "name=web1",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(out.trim(), id);
}

#[test]
fn bad_templates_fail_with_go_positions_and_exit_125() {
    let env = Env::new();
    env.run_d(&["--network", "none", "--name", "one"], &["sleep", "1000"]);
    let (out, err) = env.code(125, &["ps", "--format", "{{.Names}} {{.Foo}}"]);
    assert_eq!(out, "");
    assert!(
        err.contains("template: :1:13: executing \"\" at <.Foo>: can't evaluate field Foo"),
        "{err}"
    );
    let (_, err) = env.code(125, &["ps", "--format", "{{.Names"]);
    assert!(err.contains("template: :1:0: unclosed action"), "{err}");
    let (_, err) = env.code(125, &["inspect", "-f", "{{nosuch .Name}}", "one"]);
    assert!(
        err.contains("template: :1:2: function \"nosuch\" not defined"),
        "{err}"
    );
    let (_, err) = env.code(125, &["inspect", "-f", "{{.State.Nope}}", "one"]);
    assert!(
        err.contains("at <.State.Nope>: can't evaluate field Nope"),
        "{err}"
    );
}

#[test]
fn ps_filters_and_across_keys_or_within_one() {
    let env = Env::new();
    four_containers(&env);
    let names = |filters: &[&str]| {
        let mut args = vec!["ps", "--format", "{{.Names}}"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        sorted(&env.ok(&args))
    };
    let all = |filters: &[&str]| {
        let mut args = vec!["ps", "-a", "--format", "{{.Names}}"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        sorted(&env.ok(&args))
    };
    // name: a regular expression, matched anywhere in the name.
    assert_eq!(names(&["name=web"]), ["web1", "web2"]);
    assert_eq!(names(&["name=^web1$"]), ["web1"]);
    assert_eq!(all(&["name=^(job|idle)$"]), ["idle", "job"]);
    // label: a key, or key=value; several labels must all be there.
    assert_eq!(all(&["label=app=web"]), ["job", "web1"]);
    assert_eq!(all(&["label=tier"]), ["job"]);
    assert_eq!(all(&["label=app=web", "label=tier=batch"]), ["job"]);
    // status: alternatives, and stopped containers without -a.
    assert_eq!(names(&["status=exited"]), ["job"]);
    assert_eq!(names(&["status=created", "status=exited"]), ["idle", "job"]);
    assert_eq!(names(&["exited=3"]), ["job"]);
    assert!(names(&["exited=0"]).is_empty());
    // Different keys: all must match.
    assert_eq!(names(&["name=web", "label=app=api"]), ["web2"]);
    assert_eq!(all(&["label=app=web", "status=running"]), ["web1"]);
    assert!(all(&["name=web2", "status=exited"]).is_empty());
    // ancestor: the image as it was named, or its ID's prefix.
    assert_eq!(all(&[&format!("ancestor={}", env.image)]).len(), 4);
    let image_id = env.inspect("web1")["Image"].as_str().unwrap().to_string();
    let hex = image_id.trim_start_matches("sha256:");
    assert_eq!(
        all(&[&format!("ancestor={}", &hex[..12]), "name=web1"]),
        ["web1"]
    );
    assert!(all(&["ancestor=no-such-image"]).is_empty());
    // id: a prefix.
    let id = env.inspect("web2")["Id"].as_str().unwrap().to_string();
    assert_eq!(all(&[&format!("id={}", &id[..8])]), ["web2"]);

    // `container ls` is the same command.
    let out = env.ok(&[
        "container",
        "ls",
        "-a",
        "--filter",
        "exited=3",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(out, "job\n");

    let (_, err) = env.code(125, &["ps", "--filter", "colour=red"]);
    assert!(
        err.contains("--filter colour=red: unknown filter \"colour\""),
        "{err}"
    );
    let (_, err) = env.code(125, &["ps", "--filter", "status=sleeping"]);
    assert!(err.contains("status is one of created, running"), "{err}");
    let (_, err) = env.code(125, &["ps", "--filter", "exited=x"]);
    assert!(err.contains("exit code"), "{err}");
}

#[test]
fn inspect_format_reads_the_inspect_record() {
    let env = Env::new();
    env.run_d(
        &["--network", "none", "--name", "a", "-e", "FOO=bar"],
        &["sleep", "1000"],
    );
    env.run_d(
        &["--network", "none", "--name", "b"],
        &["sh", "-c", "exit 7"],
    );
    wait_for("b to exit", || env.status("b") == "exited");
    let out = env.ok(&[
        "inspect",
        "-f",
        "{{.Name}} {{.State.Status}} {{.State.Running}} {{.State.ExitCode}}",
        "a",
        "b",
    ]);
    // docker's: a running container's exit code reads 0.
    assert_eq!(out, "a running true 0\nb exited false 7\n");
    let out = env.ok(&["inspect", "--format", "{{json .Config.Env}}", "a"]);
    let envs: Vec<String> = serde_json::from_str(out.trim()).unwrap();
    assert!(envs.contains(&"FOO=bar".to_string()), "{out}");
    let out = env.ok(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{if eq . \"FOO=bar\"}}found{{end}}{{end}}",
        "a",
    ]);
    assert_eq!(out, "found\n");
    // Each record's output gets its newline even when it ends in one, as
    // in docker and podman.
    let out = env.ok(&["inspect", "-f", "{{println .Name}}", "a", "b"]);
    assert_eq!(out, "a\n\nb\n\n");
    // Written as given: no HTML escapes in json.
    let out = env.ok(&["inspect", "-f", "{{json .Path}} {{json .Args}}", "b"]);
    assert_eq!(out, "\"sh\" [\"-c\",\"exit 7\"]\n");
    // `json` (and no format) keeps the JSON array.
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "-f", "json", "a"])).unwrap();
    assert_eq!(v[0]["Name"], "a");
}

#[test]
fn images_format_and_image_inspect_format() {
    let env = Env::new();
    let (repo, tag) = env.image.rsplit_once(':').unwrap();
    let out = env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(out, format!("{}\n", env.image));
    let id = env.ok(&["images", "-q"]).trim().to_string();
    let out = env.ok(&[
        "images",
        "--format",
        "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let w = repo.len() + 3;
    assert_eq!(
        lines[0],
        format!("{:w$}{:10}{:15}CREATED", "REPOSITORY", "TAG", "IMAGE ID")
    );
    assert!(
        lines[1].starts_with(&format!("{repo:w$}{tag:10}{id}   ")),
        "{out}"
    );
    let out = env.ok(&["images", "--format", "{{json .Size}} {{.Digest}}"]);
    assert!(out.starts_with("\"") && out.contains(" sha256:"), "{out}");
    let out = env.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Config.Cmd}} {{index .RepoTags 0}}",
        &env.image,
    ]);
    assert_eq!(out, format!("[sh] {}\n", env.image));
}

#[test]
fn podman_and_berth_agree_on_templates_and_filters() {
    require!("podman", "conmon", "runc");
    let env = Env::new();
    let p = env.podman_beside();
    // The same three containers in each: running, exited 3, created.
    let script: &[&[&str]] = &[
        &[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "cmp-up",
            "--label",
            "app=x",
            &env.image,
            "sleep",
            "1000",
        ],
        &[
            "run",
            "--network",
            "none",
            "--name",
            "cmp-done",
            "--label",
            "app=y",
            &env.image,
            "sh",
            "-c",
            "exit 3",
        ],
        &[
            "create",
            "--network",
            "none",
            "--name",
            "cmp-new",
            &env.image,
            "true",
        ],
    ];
    for step in script {
        let _ = p.cmd().args(*step).output().expect("podman");
        let _ = env.berth(step);
    }
    wait_for("berth's cmp-done to exit", || {
        env.status("cmp-done") == "exited"
    });
    let checks: &[&[&str]] = &[
        // (Not .State: podman 4.3 prints its status text there, docker
        // and berth the state's name.)
        &[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{index .Labels \"app\"}}",
        ],
        &["ps", "--format", "{{.Names}}"],
        &["ps", "--format", "table {{.Names}}"],
        &[
            "ps",
            "-a",
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}}",
        ],
        &[
            "ps",
            "-a",
            "--filter",
            "exited=3",
            "--format",
            "{{upper .Names}}",
        ],
        &[
            "ps",
            "-a",
            "--filter",
            "name=cmp-",
            "--filter",
            "label=app=x",
            "--format",
            "{{.Names}}",
        ],
        &[
            "ps",
            "-a",
            "--filter",
            "status=created",
            "--filter",
            "status=running",
            "--format",
            "{{json .Names}}",
        ],
        &[
            "inspect",
            "-f",
            "{{.Name}} {{.State.Status}} {{.State.Running}} {{.State.Paused}}",
            "cmp-up",
            "cmp-done",
            "cmp-new",
        ],
        &[
            "inspect",
            "-f",
            "{{.State.ExitCode}} {{json .State.Status}} {{if .State.Running}}up{{else}}down{{end}}",
            "cmp-done",
        ],
        &[
            "inspect",
            "--format",
            "{{printf \"%-10s|\" .Name}}{{len .Name}}",
            "cmp-up",
        ],
        // docker's shape of the record, as scripts read it.
        &[
            "inspect",
            "-f",
            "{{.Config.Labels.app}} {{index .Config.Cmd 0}} {{.Config.Image}} {{.Config.Tty}} {{.RestartCount}} {{.HostConfig.Privileged}} {{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{len .Mounts}} {{.State.OOMKilled}} [{{.NetworkSettings.IPAddress}}]",
            "cmp-up",
        ],
    ];
    for args in checks {
        let ours = sorted(&env.ok(args));
        let theirs = sorted(&p.ok(args));
        assert_eq!(ours, theirs, "berth and podman differ on {args:?}");
    }
}

#[test]
fn volumes_networks_pods_stats_and_events_take_templates() {
    let env = Env::new();
    env.ok(&["volume", "create", "--label", "k=v", "fmtvol"]);
    let out = env.ok(&[
        "volume",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}} {{index .Labels \"k\"}}",
    ]);
    assert_eq!(out, "fmtvol local v\n");
    let out = env.ok(&["volume", "ls", "--format", "table {{.Name}}\\t{{.Driver}}"]);
    assert_eq!(out, "VOLUME NAME   DRIVER\nfmtvol        local\n");
    // inspect -f reads the records as inspect prints them.
    let out = env.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Name}} {{len .Mountpoint}}",
        "fmtvol",
    ]);
    assert!(out.starts_with("fmtvol ") && out.trim().len() > 8, "{out}");

    env.ok(&["network", "create", "--label", "team=a", "fmtnet"]);
    let out = env.ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}} {{.Internal}} {{.Labels}}",
    ]);
    assert!(
        out.lines().any(|l| l == "fmtnet bridge false map[team:a]"),
        "{out}"
    );
    let out = env.ok(&["network", "ls", "--format", "table {{.ID}}\\t{{.Name}}"]);
    assert!(out.starts_with("NETWORK ID     NAME\n"), "{out}");
    let out = env.ok(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}} {{.Driver}} {{range .Subnets}}{{.Subnet}}{{end}}",
        "fmtnet",
    ]);
    assert!(out.starts_with("fmtnet bridge 10.77."), "{out}");
    let out = env.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Name}} {{.Driver}} {{.Labels.k}}",
        "fmtvol",
    ]);
    assert_eq!(out, "fmtvol local v\n");

    env.ok(&["pod", "create", "--name", "fmtpod"]);
    let out = env.ok(&["pod", "ps", "--format", "{{.Name}}:{{.NumberOfContainers}}"]);
    assert_eq!(out, "fmtpod:0\n");
    let out = env.ok(&["pod", "inspect", "-f", "{{.Pod.name}}", "fmtpod"]);
    assert_eq!(out, "fmtpod\n");

    env.run_d(&["--network", "none", "--name", "busy"], &["sleep", "1000"]);
    let out = env.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}} {{printf \"%.1s\" .CPUPerc}}",
        "busy",
    ]);
    assert!(out.starts_with("busy 1 ") && out.ends_with('\n'), "{out}");
    let out = env.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "table {{.Name}}\\t{{.MemPerc}}",
        "busy",
    ]);
    assert!(out.starts_with("NAME      MEM %\nbusy      "), "{out}");

    let out = env.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "container=busy",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{if eq .ID .Actor.ID}}same{{end}}",
    ]);
    assert!(
        out.lines().any(|l| l == "container start busy same"),
        "{out}"
    );
    let (_, err) = env.code(125, &["events", "--until", "0s", "--format", "{{.Nope"]);
    assert!(err.contains("template: :1:0: unclosed action"), "{err}");
}
