//! Image builds: `berth build` against `buildah bud --layers` on the same
//! Dockerfile and context, stores on tmpfs, base images pulled first by
//! both: a cold build (no build cache) of a two-stage Dockerfile that
//! compiles a C program with Debian's gcc and copies it into a busybox
//! stage, a rebuild with nothing changed, and a rebuild after a one-line
//! change of the source.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::pull::{clean, sh, start_registry};
use crate::run::{Tool, busybox_rootfs, layout_of_rootfs};
use crate::stats::{Sample, measure, median, ms};

/// What gcc needs to compile and link a static C program: the files of
/// the installed packages gcc depends on (documentation left out).
fn gcc_files() -> Result<Vec<String>> {
    let deps = sh(Command::new("apt-cache").args([
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
        "gcc",
        "libc6-dev",
    ]))?;
    let mut pkgs: Vec<&str> = deps
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
        .collect();
    pkgs.sort();
    pkgs.dedup();
    let mut files = Vec::new();
    for p in pkgs {
        let Ok(out) = Command::new("dpkg").arg("-L").arg(p).output() else {
            continue;
        };
        for f in String::from_utf8_lossy(&out.stdout).lines() {
            let path = Path::new(f);
            let keep = !f.starts_with("/usr/share/doc")
                && !f.starts_with("/usr/share/man")
                && !f.starts_with("/usr/share/locale")
                && !f.starts_with("/usr/share/info")
                && path.symlink_metadata().is_ok_and(|m| !m.is_dir());
            if keep {
                files.push(f.trim_start_matches('/').to_string());
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// busybox with gcc, as an OCI layout.
fn gcc_layout(dir: &Path) -> Result<()> {
    let root = dir.join("gcc-rootfs");
    busybox_rootfs(&root)?;
    // Debian's merged /usr: the packages list /lib/... paths that live in
    // /usr/lib.
    for (link, target) in [
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ] {
        std::fs::create_dir_all(root.join(target))?;
        std::os::unix::fs::symlink(target, root.join(link))?;
    }
    let list = dir.join("gcc-files");
    std::fs::write(&list, gcc_files()?.join("\n"))?;
    // /bin/sh and friends stay busybox's.
    sh(Command::new("sh").arg("-c").arg(format!(
        "tar -C / -cf - --files-from={} | tar -C {} --skip-old-files -xf -",
        list.display(),
        root.display()
    )))?;
    layout_of_rootfs(&root, &dir.join("gcc-layout"))
}

const DOCKERFILE: &str = "ARG REG
FROM ${REG}/bench/gcc:latest AS build
WORKDIR /src
COPY main.c .
RUN gcc -O2 -static -o hello main.c

FROM ${REG}/bench/busybox:latest
COPY --from=build /src/hello /usr/local/bin/hello
CMD [\"hello\"]
";

fn source(greeting: &str) -> String {
    format!(
        "#include <stdio.h>\n\nint main(void)\n{{\n    puts(\"{greeting}\");\n    return 0;\n}}\n"
    )
}

pub fn run(runs: usize, berth: Option<PathBuf>) -> Result<()> {
    let berth = crate::binary(berth, "berth")?;
    let base = PathBuf::from("/dev/shm/berth-bench-build");
    clean(&base);
    std::fs::create_dir_all(&base)?;
    let res = measure_all(&berth, &base, runs);
    // The check's `run` made the default network: its bridge and rules go.
    Tool::berth(&berth, &base).remove_all();
    clean(&base);
    res
}

fn measure_all(berth: &Path, base: &Path, runs: usize) -> Result<()> {
    eprintln!("making the busybox and gcc images...");
    let bb = base.join("bb");
    std::fs::create_dir_all(&bb)?;
    busybox_rootfs(&bb.join("rootfs"))?;
    layout_of_rootfs(&bb.join("rootfs"), &bb.join("layout"))?;
    gcc_layout(base)?;
    let (_registry, port) = start_registry(base)?;
    let reg = format!("127.0.0.1:{port}");
    for (layout, name) in [
        (bb.join("layout"), "busybox"),
        (base.join("gcc-layout"), "gcc"),
    ] {
        sh(Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{reg}/bench/{name}:latest")))?;
    }
    let ctx = base.join("context");
    std::fs::create_dir_all(&ctx)?;
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE)?;
    let s = |p: &str| base.join(p).display().to_string();
    let berth_tool = Tool::berth(berth, base);
    let buildah = Tool {
        name: "buildah",
        prefix: vec![
            "buildah".into(),
            "--root".into(),
            s("buildah"),
            "--runroot".into(),
            s("buildah-run"),
            "--storage-driver".into(),
            "overlay".into(),
        ],
        env: vec![],
    };
    let regarg = format!("REG={reg}");
    for img in ["busybox", "gcc"] {
        let name = format!("{reg}/bench/{img}:latest");
        sh(&mut berth_tool.cmd(&["pull", "-q", "--tls-verify=false", &name]))?;
        sh(&mut buildah.cmd(&["pull", "-q", "--tls-verify=false", &name]))?;
    }
    let ctxs = ctx.display().to_string();
    let berth_build: Vec<&str> = vec![
        "build",
        "-q",
        "--network",
        "host",
        "--build-arg",
        &regarg,
        "-t",
        "hello",
        &ctxs,
    ];
    let buildah_build: Vec<&str> = vec![
        "bud",
        "-q",
        "--layers",
        // crun refuses this host's hybrid cgroups.
        "--runtime",
        "runc",
        "--network",
        "host",
        "--build-arg",
        &regarg,
        "-t",
        "hello",
        &ctxs,
    ];
    let forget = |tool: &Tool| -> Result<()> {
        if tool.name == "berth" {
            let _ = sh(&mut tool.cmd(&["rmi", "hello"]));
            sh(&mut tool.cmd(&["builder", "prune", "-f"]))?;
        } else {
            let _ = sh(&mut tool.cmd(&["rmi", "hello"]));
            sh(&mut tool.cmd(&["rmi", "--prune"]))?;
        }
        Ok(())
    };
    let mut rows: Vec<(String, Vec<Sample>, Vec<Sample>)> = Vec::new();
    let mut cold = (Vec::new(), Vec::new());
    let mut nochange = (Vec::new(), Vec::new());
    let mut oneline = (Vec::new(), Vec::new());
    for i in 0..=runs {
        for (k, (tool, args)) in [(&berth_tool, &berth_build), (&buildah, &buildah_build)]
            .into_iter()
            .enumerate()
        {
            std::fs::write(ctx.join("main.c"), source("hello"))?;
            forget(tool)?;
            let c = measure(|| sh(&mut tool.cmd(args)).map(drop))
                .with_context(|| format!("{} cold build", tool.name))?;
            let n = measure(|| sh(&mut tool.cmd(args)).map(drop))?;
            std::fs::write(ctx.join("main.c"), source(&format!("hello {i}")))?;
            let o = measure(|| sh(&mut tool.cmd(args)).map(drop))?;
            // The first round warms page caches.
            if i > 0 {
                let pick = |p: &mut (Vec<Sample>, Vec<Sample>), s| {
                    if k == 0 { p.0.push(s) } else { p.1.push(s) }
                };
                pick(&mut cold, c);
                pick(&mut nochange, n);
                pick(&mut oneline, o);
            }
        }
    }
    let out = sh(&mut berth_tool.cmd(&["run", "--rm", "hello"]))?;
    anyhow::ensure!(
        out.trim() == format!("hello {runs}"),
        "berth's image says {out:?}"
    );
    rows.push((
        "cold build (build cache empty, bases pulled)".into(),
        cold.0,
        cold.1,
    ));
    rows.push(("rebuild, nothing changed".into(), nochange.0, nochange.1));
    rows.push((
        "rebuild after a one-line change of main.c".into(),
        oneline.0,
        oneline.1,
    ));
    println!(
        "`berth build` against `buildah bud --layers` (RUN on the host network for both), a two-stage Dockerfile compiling a static C program with gcc; stores on tmpfs; {runs} runs each (median)\n"
    );
    println!("| build | berth ms | buildah ms | berth / buildah |\n|---|---:|---:|---:|");
    for (name, b, h) in &rows {
        let bw = median(b.iter().map(|s| s.wall).collect());
        let hw = median(h.iter().map(|s| s.wall).collect());
        println!(
            "| {name} | {} | {} | {:.2}x |",
            ms(bw),
            ms(hw),
            bw.as_secs_f64() / hw.as_secs_f64()
        );
    }
    let version = |c: &mut Command| {
        sh(c)
            .map(|s| s.lines().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    println!(
        "\nversions: {}; {}",
        version(Command::new(berth).arg("--version")),
        version(Command::new("buildah").arg("--version"))
    );
    println!("docker buildx: not measured (no Docker daemon on this machine)");
    let _ = sh(&mut buildah.cmd(&["rmi", "-a", "-f"]));
    Ok(())
}
