//! parse.rs's tests: each instruction's forms, each error with where it
//! points, and a few whole Dockerfiles.

use super::*;

fn s(v: &str) -> String {
    v.to_string()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|w| w.to_string()).collect()
}

/// The kind of the only instruction of `text`, written after a FROM.
fn kind(text: &str) -> Kind {
    let df = parse(&format!("FROM scratch\n{text}")).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let stage = &df.stages[0];
    assert_eq!(stage.instructions.len(), 1, "{text:?}");
    stage.instructions[0].kind.clone()
}

fn error(text: &str) -> ParseError {
    match parse(text) {
        Ok(df) => panic!("{text:?} parsed: {df:?}"),
        Err(e) => e,
    }
}

fn run(command: Command) -> Run {
    Run {
        command,
        mounts: Vec::new(),
        network: None,
        security: None,
        heredocs: Vec::new(),
    }
}

fn copy(sources: &[&str], dest: &str) -> Copy {
    Copy {
        add: false,
        sources: strings(sources),
        dest: s(dest),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        excludes: Vec::new(),
        checksum: None,
        keep_git_dir: false,
        heredocs: Vec::new(),
    }
}

fn doc(name: &str, content: &str, expand: bool) -> Heredoc {
    Heredoc {
        name: s(name),
        content: s(content),
        expand,
    }
}

#[test]
fn simple_instructions() {
    let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (s(k), s(v))).collect()
    };
    let arg = |name: &str, default: Option<&str>| ArgDecl {
        name: s(name),
        default: default.map(s),
    };
    let cases: Vec<(&str, Kind)> = vec![
        ("ARG V", Kind::Arg(vec![arg("V", None)])),
        (
            "arg A=1 B C=\"x y\" D=",
            Kind::Arg(vec![
                arg("A", Some("1")),
                arg("B", None),
                arg("C", Some("\"x y\"")),
                arg("D", Some("")),
            ]),
        ),
        ("ENV A=1", Kind::Env(kv(&[("A", "1")]))),
        (
            r#"ENV A=1 B="a b" C=a\ b D='$x' E="""#,
            Kind::Env(kv(&[
                ("A", "1"),
                ("B", "\"a b\""),
                ("C", r"a\ b"),
                ("D", "'$x'"),
                ("E", "\"\""),
            ])),
        ),
        ("ENV PATH=/x:$PATH", Kind::Env(kv(&[("PATH", "/x:$PATH")]))),
        // The old form: the value is the rest of the line as written.
        ("ENV A  b  c \"d\"", Kind::Env(kv(&[("A", "b  c \"d\"")]))),
        (
            r#"LABEL "com.example.vendor"="ACME" version=1.0 description="a \"b\"""#,
            Kind::Label(kv(&[
                ("\"com.example.vendor\"", "\"ACME\""),
                ("version", "1.0"),
                ("description", r#""a \"b\"""#),
            ])),
        ),
        (
            "LABEL maintainer me@example.com",
            Kind::Label(kv(&[("maintainer", "me@example.com")])),
        ),
        ("WORKDIR /app/$DIR", Kind::Workdir(s("/app/$DIR"))),
        ("WORKDIR \"/a b\"", Kind::Workdir(s("\"/a b\""))),
        ("USER app:app", Kind::User(s("app:app"))),
        ("STOPSIGNAL SIGTERM", Kind::StopSignal(s("SIGTERM"))),
        (
            "MAINTAINER Jane Doe <jane@example.com>",
            Kind::Maintainer(s("Jane Doe <jane@example.com>")),
        ),
        (
            "EXPOSE 80 53/udp $PORT",
            Kind::Expose(strings(&["80", "53/udp", "$PORT"])),
        ),
        (
            "VOLUME /data /logs",
            Kind::Volume(strings(&["/data", "/logs"])),
        ),
        (
            "VOLUME [\"/data\", \"/a b\"]",
            Kind::Volume(strings(&["/data", "/a b"])),
        ),
        (
            "CMD [\"nginx\", \"-g\", \"daemon off;\"]",
            Kind::Cmd(Command::Exec(strings(&["nginx", "-g", "daemon off;"]))),
        ),
        ("CMD []", Kind::Cmd(Command::Exec(Vec::new()))),
        (
            "CMD echo \"$HOME\"",
            Kind::Cmd(Command::Shell(s("echo \"$HOME\""))),
        ),
        // Not a JSON array: shell form, as BuildKit falls back.
        (
            "CMD [\"a\", 'b']",
            Kind::Cmd(Command::Shell(s("[\"a\", 'b']"))),
        ),
        (
            "ENTRYPOINT [ -f x ] && y",
            Kind::Entrypoint(Command::Shell(s("[ -f x ] && y"))),
        ),
        (
            "ENTRYPOINT [\"/bin/tini\", \"--\"]",
            Kind::Entrypoint(Command::Exec(strings(&["/bin/tini", "--"]))),
        ),
        (
            "SHELL [\"powershell\", \"-command\"]",
            Kind::Shell(strings(&["powershell", "-command"])),
        ),
        ("ONBUILD RUN make", Kind::Onbuild(s("RUN make"))),
        (
            "onbuild  copy --from=x a b",
            Kind::Onbuild(s("copy --from=x a b")),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(kind(text), want, "{text:?}");
    }
}

#[test]
fn from_lines() {
    let df = parse(
        "ARG BASE=alpine:3.20\n\
         from --platform=$BUILDPLATFORM ${BASE} As Build-1.x_y\n\
         FROM build-1.x_y\n\
         FROM scratch AS out\n",
    )
    .unwrap();
    let names: Vec<_> = df
        .stages
        .iter()
        .map(|s| (s.index, s.name.clone(), s.base.clone()))
        .collect();
    assert_eq!(
        names,
        [
            (0, Some(s("build-1.x_y")), s("${BASE}")),
            (1, None, s("build-1.x_y")),
            (2, Some(s("out")), s("scratch")),
        ]
    );
    assert_eq!(df.stages[0].platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(df.stages[0].pos, Pos { line: 2, col: 1 });
    assert_eq!(
        df.stages[0].original,
        "from --platform=$BUILDPLATFORM ${BASE} As Build-1.x_y"
    );
    assert_eq!(
        df.global_args,
        [ArgDecl {
            name: s("BASE"),
            default: Some(s("alpine:3.20"))
        }]
    );
}

#[test]
fn run_forms() {
    let cases: Vec<(&str, Run)> = vec![
        ("RUN make -j2", run(Command::Shell(s("make -j2")))),
        (
            "RUN [\"make\", \"-j2\"]",
            run(Command::Exec(strings(&["make", "-j2"]))),
        ),
        ("run [\"a\" \"b\"]", run(Command::Shell(s("[\"a\" \"b\"]")))),
        (
            "RUN --network=none --security=insecure make",
            Run {
                network: Some(s("none")),
                security: Some(s("insecure")),
                ..run(Command::Shell(s("make")))
            },
        ),
        // Flags only before the command.
        (
            "RUN echo --network=none",
            run(Command::Shell(s("echo --network=none"))),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(kind(text), Kind::Run(want), "{text:?}");
    }
    let Kind::Run(r) = kind(
        "RUN --mount=type=cache,target=/root/.cache/pip \\\n  --mount=type=secret,id=npm,target=/root/.npmrc \\\n  pip install -r requirements.txt",
    ) else {
        panic!()
    };
    assert_eq!(r.mounts.len(), 2);
    assert_eq!(r.mounts[0].kind, MountType::Cache);
    assert_eq!(r.mounts[0].target.as_deref(), Some("/root/.cache/pip"));
    assert_eq!(r.mounts[1].kind, MountType::Secret);
    assert_eq!(r.mounts[1].id.as_deref(), Some("npm"));
    assert_eq!(
        r.command,
        Command::Shell(s("pip install -r requirements.txt"))
    );
}

#[test]
fn heredocs() {
    let run_docs = |text: &str| -> (Command, Vec<Heredoc>) {
        match kind(text) {
            Kind::Run(r) => (r.command, r.heredocs),
            other => panic!("{other:?}"),
        }
    };
    let cases: Vec<(&str, &str, Vec<Heredoc>)> = vec![
        (
            "RUN <<EOF\napt-get update\n  echo $HOME\nEOF",
            "<<EOF",
            vec![doc("EOF", "apt-get update\n  echo $HOME\n", true)],
        ),
        (
            "RUN <<-EOT\n\t\tone\n\ttwo\n\tEOT",
            "<<-EOT",
            vec![doc("EOT", "one\ntwo\n", true)],
        ),
        (
            "RUN <<\"EOF\"\n$HOME\nEOF",
            "<<\"EOF\"",
            vec![doc("EOF", "$HOME\n", false)],
        ),
        (
            "RUN <<'E'\n$HOME\nE",
            "<<'E'",
            vec![doc("E", "$HOME\n", false)],
        ),
        (
            "RUN <<E\"O\"F\nx\nEOF",
            "<<E\"O\"F",
            vec![doc("EOF", "x\n", false)],
        ),
        ("RUN <<EOF\nEOF", "<<EOF", vec![doc("EOF", "", true)]),
        // An escape alone does not quote (BuildKit).
        (
            "RUN <<\\EOF\nx\nEOF",
            "<<\\EOF",
            vec![doc("EOF", "x\n", true)],
        ),
        (
            "RUN cat <<A > a && cat 3<<-B > b\n1\nA\n\t2\n\tB",
            "cat <<A > a && cat 3<<-B > b",
            vec![doc("A", "1\n", true), doc("B", "2\n", true)],
        ),
        // The terminator must be the whole line; body lines are raw.
        (
            "RUN <<EOF\n EOF\nEOF \n# not a comment\n\\\nEOF",
            "<<EOF",
            vec![doc("EOF", " EOF\nEOF \n# not a comment\n\\\n", true)],
        ),
        // The instruction's continuation lines are joined first.
        (
            "RUN python3 \\\n  <<EOF\nprint(1)\nEOF",
            "python3   <<EOF",
            vec![doc("EOF", "print(1)\n", true)],
        ),
        // Not heredocs: quoted, here-strings, a bare <<.
        (
            "RUN echo \"<<EOF\" <<<x a << b",
            "echo \"<<EOF\" <<<x a << b",
            vec![],
        ),
    ];
    for (text, command, want) in cases {
        assert_eq!(
            run_docs(text),
            (Command::Shell(s(command)), want),
            "{text:?}"
        );
    }
    // Exec form has no heredocs: the next line is an instruction.
    let df = parse("FROM a\nRUN [\"<<EOF\"]\nRUN b").unwrap();
    assert_eq!(df.stages[0].instructions.len(), 2);
    // What follows the heredoc is the next instruction.
    let df = parse("FROM a\nRUN <<EOF\nx\nEOF\nUSER me").unwrap();
    let ins = &df.stages[0].instructions;
    assert_eq!(ins[1].kind, Kind::User(s("me")));
    assert_eq!(ins[1].pos, Pos { line: 5, col: 1 });
}

#[test]
fn copy_and_add() {
    let cases: Vec<(&str, Copy)> = vec![
        ("COPY a b /dst/", copy(&["a", "b"], "/dst/")),
        ("COPY [\"a b\", \"/c d/\"]", copy(&["a b"], "/c d/")),
        (
            "COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=.git ./ /app/",
            Copy {
                from: Some(s("build")),
                chown: Some(s("app:app")),
                chmod: Some(s("0755")),
                link: true,
                parents: true,
                excludes: strings(&["*.md", ".git"]),
                ..copy(&["./"], "/app/")
            },
        ),
        ("COPY --link=false a b", copy(&["a"], "b")),
        (
            "ADD --checksum=sha256:24454f83 --keep-git-dir https://example.com/x.tar.gz /x/",
            Copy {
                add: true,
                checksum: Some(s("sha256:24454f83")),
                keep_git_dir: true,
                ..copy(&["https://example.com/x.tar.gz"], "/x/")
            },
        ),
        (
            "COPY <<EOF /etc/motd\nhello $USER\nEOF",
            Copy {
                heredocs: vec![doc("EOF", "hello $USER\n", true)],
                ..copy(&[], "/etc/motd")
            },
        ),
        (
            "COPY <<A x <<'B' /dir/\na\nA\nb\nB",
            Copy {
                heredocs: vec![doc("A", "a\n", true), doc("B", "b\n", false)],
                ..copy(&["x"], "/dir/")
            },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(kind(text), Kind::Copy(want), "{text:?}");
    }
}

#[test]
fn healthchecks() {
    let check = |test: Command| Health::Check {
        test,
        interval: None,
        timeout: None,
        start_period: None,
        start_interval: None,
        retries: None,
    };
    let cases: Vec<(&str, Health)> = vec![
        ("HEALTHCHECK NONE", Health::None),
        ("HEALTHCHECK none", Health::None),
        (
            "HEALTHCHECK CMD curl -f http://localhost/",
            check(Command::Shell(s("curl -f http://localhost/"))),
        ),
        (
            "HEALTHCHECK cmd [\"/bin/check\"]",
            check(Command::Exec(strings(&["/bin/check"]))),
        ),
        (
            "HEALTHCHECK --interval=1m30s --timeout=10s --start-period=5s --start-interval=500ms --retries=3 CMD true",
            Health::Check {
                test: Command::Shell(s("true")),
                interval: Some(s("1m30s")),
                timeout: Some(s("10s")),
                start_period: Some(s("5s")),
                start_interval: Some(s("500ms")),
                retries: Some(3),
            },
        ),
        (
            "HEALTHCHECK --interval=0 CMD true",
            Health::Check {
                test: Command::Shell(s("true")),
                interval: Some(s("0")),
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(kind(text), Kind::Healthcheck(want), "{text:?}");
    }
}

#[test]
fn durations() {
    let cases: &[(&str, Option<f64>)] = &[
        ("0", Some(0.0)),
        ("30s", Some(30.0)),
        ("1m30s", Some(90.0)),
        ("1.5h", Some(5400.0)),
        ("300ms", Some(0.3)),
        ("2µs", Some(2e-6)),
        ("10", None),
        ("", None),
        ("-1s", None),
        ("1d", None),
        ("s", None),
        (".s", None),
    ];
    for (text, want) in cases {
        let got = go_duration_secs(text);
        match (got, want) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{text:?}: {g}"),
            (g, w) => assert_eq!(g, *w, "{text:?}"),
        }
    }
}

#[test]
fn instructions_are_case_insensitive_and_original_is_joined() {
    let df = parse("from a\nRun echo \\\n    hi   \\\n  there  \nworkDir /x").unwrap();
    let ins = &df.stages[0].instructions;
    assert_eq!(ins[0].original, "Run echo     hi     there");
    assert_eq!(
        ins[0].kind,
        Kind::Run(run(Command::Shell(s("echo     hi     there"))))
    );
    assert_eq!(ins[0].pos, Pos { line: 2, col: 1 });
    assert_eq!(ins[1].pos, Pos { line: 5, col: 1 });
    assert_eq!(ins[1].kind, Kind::Workdir(s("/x")));
}

#[test]
fn directives_are_recorded() {
    let df = parse("# syntax=docker/dockerfile:1.7\n# escape=`\nFROM a\nRUN dir `\n  c:\\\nUSER x")
        .unwrap();
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    assert_eq!(df.escape, '`');
    let ins = &df.stages[0].instructions;
    assert_eq!(ins[0].kind, Kind::Run(run(Command::Shell(s("dir   c:\\")))));
    assert_eq!(ins[1].kind, Kind::User(s("x")));
}

#[test]
fn onbuild_trigger_parses_alone() {
    let i = parse_instruction("COPY --from=x a /b", '\\').unwrap();
    assert_eq!(
        i.kind,
        Kind::Copy(Copy {
            from: Some(s("x")),
            ..copy(&["a"], "/b")
        })
    );
    assert_eq!(
        parse_instruction("FROM a", '\\').unwrap_err().message,
        "FROM isn't an instruction on its own here"
    );
    assert!(
        parse_instruction("RUN <<EOF", '\\')
            .unwrap_err()
            .message
            .contains("unterminated heredoc")
    );
}

#[test]
fn errors() {
    // (Dockerfile, line, column, part of the message)
    let cases: &[(&str, usize, usize, &str)] = &[
        ("", 1, 1, "no build stage"),
        ("# just a comment\n\nARG A=1\n", 1, 1, "no build stage"),
        (
            "ARG A\nRUN x\nFROM a",
            2,
            1,
            "RUN: no build stage yet: only ARG may come before the first FROM",
        ),
        ("FROM a\nFOO bar", 2, 1, "unknown instruction: FOO"),
        ("FROM a\n  RUNN x", 2, 3, "unknown instruction: RUNN"),
        ("FROM", 1, 1, "FROM: needs an image"),
        ("FROM --platform=linux/amd64", 1, 1, "FROM: needs an image"),
        ("FROM a AS", 1, 6, "FROM: needs an image and at most a name"),
        (
            "FROM a b c",
            1,
            6,
            "FROM: needs an image and at most a name",
        ),
        ("FROM a AS 1st", 1, 11, "FROM: invalid stage name \"1st\""),
        ("FROM a AS b/c", 1, 11, "FROM: invalid stage name"),
        (
            "FROM a AS x\nFROM b AS X",
            2,
            11,
            "FROM: duplicate stage name \"x\" (first named at line 1)",
        ),
        ("FROM --plat=x a", 1, 6, "FROM: unknown flag --plat"),
        (
            "FROM a\nRUN --mount=type=cache,target=/x --foo=1 x",
            2,
            34,
            "RUN: unknown flag --foo",
        ),
        (
            "FROM a\nRUN \\\n  --mount=type=nope,target=/x x",
            3,
            3,
            "RUN: --mount: unsupported mount type \"nope\"",
        ),
        (
            "FROM a\nRUN --network=bridge x",
            2,
            5,
            "RUN: --network=\"bridge\": must be one of default, none, host",
        ),
        ("FROM a\nRUN --security=x x", 2, 5, "RUN: --security"),
        ("FROM a\nRUN", 2, 1, "RUN: requires at least one argument"),
        (
            "FROM a\nRUN --network=none",
            2,
            1,
            "RUN: requires at least one argument",
        ),
        (
            "FROM a\nRUN [\"a\", 1]",
            2,
            5,
            "RUN: JSON arrays must hold only strings",
        ),
        (
            "FROM a\nRUN <<EOF\nx\n",
            2,
            5,
            "RUN: unterminated heredoc <<EOF",
        ),
        (
            "FROM a\nRUN cat <<A <<B\nx\nA\ny",
            2,
            13,
            "RUN: unterminated heredoc <<B",
        ),
        (
            "FROM a\nCOPY a",
            2,
            6,
            "COPY: needs a source and a destination",
        ),
        (
            "FROM a\nCOPY <<EOF\nx\nEOF",
            2,
            6,
            "COPY: needs a source and a destination",
        ),
        (
            "FROM a\nCOPY a <<EOF\nx\nEOF",
            2,
            8,
            "COPY: a heredoc can't be the destination",
        ),
        (
            "FROM a\nCOPY --checksum=x a b",
            2,
            6,
            "COPY: unknown flag --checksum",
        ),
        ("FROM a\nADD --from=x a b", 2, 5, "ADD: unknown flag --from"),
        (
            "FROM a\nCOPY --link=maybe a b",
            2,
            6,
            "COPY: --link takes true or false",
        ),
        (
            "FROM a\nCOPY --from a b",
            2,
            6,
            "COPY: --from needs a value",
        ),
        (
            "FROM a\nCOPY --from=x --from=y a b",
            2,
            15,
            "COPY: --from given more than once",
        ),
        (
            "FROM a\nSHELL /bin/sh -c",
            2,
            7,
            "SHELL: takes a JSON array only",
        ),
        ("FROM a\nSHELL []", 2, 7, "SHELL: needs at least"),
        ("FROM a\nENV", 2, 1, "ENV: requires at least one argument"),
        ("FROM a\nENV A", 2, 5, "ENV: \"A\" has no value"),
        ("FROM a\nENV A=1 B", 2, 5, "ENV: \"B\" has no '='"),
        ("FROM a\nENV =1", 2, 5, "ENV: \"=1\": the name is empty"),
        ("FROM a\nLABEL a=1 b", 2, 7, "LABEL: \"b\" has no '='"),
        ("FROM a\nENV --x=1 A=1", 2, 5, "ENV: unknown flag --x"),
        ("FROM a\nARG =x", 2, 5, "ARG: \"=x\": an ARG needs a name"),
        (
            "FROM a\nVOLUME [\"\"]",
            2,
            8,
            "VOLUME: a volume can't be an empty string",
        ),
        (
            "FROM a\nHEALTHCHECK",
            2,
            1,
            "HEALTHCHECK: requires at least one argument",
        ),
        (
            "FROM a\nHEALTHCHECK NONE x",
            2,
            18,
            "HEALTHCHECK: NONE takes no arguments",
        ),
        (
            "FROM a\nHEALTHCHECK CURL x",
            2,
            13,
            "HEALTHCHECK: unknown type \"CURL\"",
        ),
        (
            "FROM a\nHEALTHCHECK CMD",
            2,
            13,
            "HEALTHCHECK: CMD needs a command",
        ),
        (
            "FROM a\nHEALTHCHECK --interval=5 CMD x",
            2,
            13,
            "HEALTHCHECK: --interval=\"5\": not a duration",
        ),
        (
            "FROM a\nHEALTHCHECK --timeout=1ns CMD x",
            2,
            13,
            "HEALTHCHECK: --timeout=1ns: less than 1ms",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=-1 CMD x",
            2,
            13,
            "HEALTHCHECK: --retries=\"-1\"",
        ),
        (
            "FROM a\nHEALTHCHECK --start_period=1s CMD x",
            2,
            13,
            "HEALTHCHECK: unknown flag --start_period",
        ),
        (
            "FROM a\nONBUILD ONBUILD RUN x",
            2,
            9,
            "ONBUILD: ONBUILD ONBUILD isn't allowed",
        ),
        (
            "FROM a\nONBUILD from b",
            2,
            9,
            "ONBUILD: FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nONBUILD MAINTAINER me",
            2,
            9,
            "ONBUILD: MAINTAINER isn't allowed",
        ),
        // A trigger's own mistakes point into the ONBUILD line.
        (
            "FROM a\nONBUILD RUN --nope x",
            2,
            13,
            "RUN: unknown flag --nope",
        ),
        (
            "FROM a\nONBUILD \\\n  BOGUS x",
            3,
            3,
            "unknown instruction: BOGUS",
        ),
        ("# escape=x\nFROM a", 1, 1, "invalid escape token"),
    ];
    for (text, line, col, want) in cases {
        let e = error(text);
        assert!(e.message.contains(want), "{text:?}: {e}");
        assert_eq!((e.pos.line, e.pos.col), (*line, *col), "{text:?}: {e}");
    }
    // Display: where, then what.
    assert_eq!(
        error("FROM a\nFOO").to_string(),
        "line 2, column 1: unknown instruction: FOO"
    );
}

#[test]
fn multi_stage_with_global_args_and_mounts() {
    let text = r#"# syntax=docker/dockerfile:1
ARG GO_VERSION=1.22
ARG TARGETOS TARGETARCH

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-alpine AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Download modules first: they change less often than the code.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,source=go.sum,target=go.sum \
    --mount=type=bind,source=go.mod,target=go.mod \
    go mod download -x
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,target=. \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /bin/server .

FROM alpine:3.20 AS final
RUN --mount=type=cache,target=/var/cache/apk \
    apk --update add ca-certificates tzdata && update-ca-certificates
ARG UID=10001
RUN adduser --disabled-password --gecos "" --home "/nonexistent" \
    --shell "/sbin/nologin" --no-create-home --uid "${UID}" appuser
USER appuser
COPY --from=build /bin/server /bin/
EXPOSE 8000
ENTRYPOINT [ "/bin/server" ]
"#;
    let df = parse(text).unwrap();
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
    let globals: Vec<_> = df.global_args.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(globals, ["GO_VERSION", "TARGETOS", "TARGETARCH"]);
    assert_eq!(df.stages.len(), 2);
    let build = &df.stages[0];
    assert_eq!(
        (build.name.as_deref(), build.base.as_str()),
        (Some("build"), "golang:${GO_VERSION}-alpine")
    );
    assert_eq!(build.instructions.len(), 5);
    let Kind::Run(download) = &build.instructions[3].kind else {
        panic!()
    };
    assert_eq!(download.mounts.len(), 3);
    assert_eq!(download.mounts[1].source.as_deref(), Some("go.sum"));
    assert_eq!(download.command, Command::Shell(s("go mod download -x")));
    assert_eq!(build.instructions[3].pos, Pos { line: 10, col: 1 });
    let final_stage = &df.stages[1];
    assert_eq!(final_stage.index, 1);
    assert_eq!(final_stage.pos, Pos { line: 18, col: 1 });
    let Kind::Run(adduser) = &final_stage.instructions[2].kind else {
        panic!()
    };
    assert!(
        matches!(&adduser.command, Command::Shell(c) if c.ends_with("--uid \"${UID}\" appuser"))
    );
    assert_eq!(
        final_stage.instructions.last().unwrap().kind,
        Kind::Entrypoint(Command::Exec(strings(&["/bin/server"])))
    );
    let Kind::Copy(c) = &final_stage.instructions[4].kind else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("build"));
}

#[test]
fn heredoc_dockerfile() {
    let text = "FROM debian:bookworm-slim
RUN <<EOT bash
  set -ex
  apt-get update
  apt-get install -y vim
EOT
COPY <<-\"EOF\" /app/run.sh
\t#!/bin/sh
\techo \"$1\"
\tEOF
RUN chmod +x /app/run.sh
COPY <<nginx.conf <<index.html /etc/nginx/
server { listen 80; }
nginx.conf
<h1>${TITLE}</h1>
index.html
CMD [\"/app/run.sh\"]
";
    let df = parse(text).unwrap();
    let ins = &df.stages[0].instructions;
    assert_eq!(ins.len(), 5);
    let Kind::Run(r) = &ins[0].kind else { panic!() };
    assert_eq!(r.command, Command::Shell(s("<<EOT bash")));
    assert_eq!(
        r.heredocs,
        [doc(
            "EOT",
            "  set -ex\n  apt-get update\n  apt-get install -y vim\n",
            true
        )]
    );
    let Kind::Copy(c) = &ins[1].kind else {
        panic!()
    };
    assert_eq!(c.heredocs, [doc("EOF", "#!/bin/sh\necho \"$1\"\n", false)]);
    assert_eq!(c.dest, "/app/run.sh");
    assert_eq!(ins[2].pos, Pos { line: 11, col: 1 });
    let Kind::Copy(c) = &ins[3].kind else {
        panic!()
    };
    assert!(c.sources.is_empty());
    assert_eq!(
        c.heredocs,
        [
            doc("nginx.conf", "server { listen 80; }\n", true),
            doc("index.html", "<h1>${TITLE}</h1>\n", true)
        ]
    );
    assert_eq!(ins[4].pos, Pos { line: 17, col: 1 });
}

#[test]
fn windows_dockerfile_with_backtick_escape() {
    let text = r#"# escape=`
FROM mcr.microsoft.com/windows/servercore:ltsc2022
SHELL ["powershell", "-Command"]
RUN New-Item -ItemType Directory C:\app ; `
    Set-Location C:\app
COPY . C:\app\
HEALTHCHECK --interval=30s --retries=5 CMD ["powershell", "-Command", "exit 0"]
ONBUILD COPY . C:\src\
"#;
    let df = parse(text).unwrap();
    assert_eq!(df.escape, '`');
    let ins = &df.stages[0].instructions;
    assert_eq!(ins.len(), 5);
    assert_eq!(
        ins[1].kind,
        Kind::Run(run(Command::Shell(s(
            r"New-Item -ItemType Directory C:\app ;     Set-Location C:\app"
        ))))
    );
    assert_eq!(ins[2].kind, Kind::Copy(copy(&["."], r"C:\app\")));
    assert_eq!(ins[2].pos, Pos { line: 6, col: 1 });
    let Kind::Healthcheck(Health::Check {
        test,
        interval,
        retries,
        ..
    }) = &ins[3].kind
    else {
        panic!("{:?}", ins[3].kind)
    };
    assert_eq!(
        *test,
        Command::Exec(strings(&["powershell", "-Command", "exit 0"]))
    );
    assert_eq!((interval.as_deref(), *retries), (Some("30s"), Some(5)));
    let Kind::Onbuild(trigger) = &ins[4].kind else {
        panic!()
    };
    let trigger = parse_instruction(trigger, df.escape).unwrap();
    assert_eq!(trigger.kind, Kind::Copy(copy(&["."], r"C:\src\")));
}
