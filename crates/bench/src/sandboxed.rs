//! Runtime classes side by side: `berth run --rm IMAGE true` with the
//! builtin runtime, runc and gVisor's runsc, on the bridge network and
//! without one, the same busybox image from a local registry, the store on
//! tmpfs. (berth-vm, the microVM runtime of issue 15, is not built yet.)

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::pull::{clean, sh, start_registry};
use crate::run::{Tool, busybox_layout};
use crate::stats::{Sample, measure, median, ms};

pub fn run(runs: usize, berth: Option<PathBuf>) -> Result<()> {
    crate::require(&["runc", "runsc"])?;
    let berth = crate::binary(berth, "berth")?;
    let base = PathBuf::from("/dev/shm/berth-bench-sandboxed");
    clean(&base);
    std::fs::create_dir_all(&base)?;
    let tool = Tool::berth(&berth, &base);
    let res = measure_all(&tool, &base, runs);
    tool.remove_all();
    clean(&base);
    res
}

fn measure_all(tool: &Tool, base: &std::path::Path, runs: usize) -> Result<()> {
    busybox_layout(base)?;
    let (_registry, port) = start_registry(base)?;
    let image = format!("127.0.0.1:{port}/bench/busybox:latest");
    sh(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", base.join("layout").display()))
        .arg(format!("docker://{image}")))?;
    sh(&mut tool.cmd(&["pull", "-q", "--tls-verify=false", &image]))?;
    let mut rows: Vec<(String, Vec<Sample>)> = Vec::new();
    for net in ["bridge", "none"] {
        for runtime in ["berth", "runc", "runsc"] {
            let args = [
                "run",
                "--rm",
                "--runtime",
                runtime,
                "--network",
                net,
                &image,
                "true",
            ];
            // The first run warms caches (and makes the default network).
            sh(&mut tool.cmd(&args))?;
            let s: Vec<Sample> = (0..runs)
                .map(|_| measure(|| sh(&mut tool.cmd(&args)).map(drop)))
                .collect::<Result<_>>()?;
            let name = if runtime == "berth" {
                "builtin"
            } else {
                runtime
            };
            rows.push((format!("run --rm, {name}, --network {net}"), s));
        }
    }
    let version = |c: &str| {
        sh(Command::new(c).arg("--version"))
            .map(|s| s.lines().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    println!(
        "berth run --rm IMAGE true by runtime class, busybox from a local registry, store on tmpfs, {runs} runs each after a warm-up (median)\n"
    );
    println!("| command | wall ms | CPU ms | vs builtin |\n|---|---:|---:|---:|");
    let wall = |s: &[Sample]| median(s.iter().map(|x| x.wall).collect());
    for chunk in rows.chunks(3) {
        let base = wall(&chunk[0].1);
        for (name, s) in chunk {
            println!(
                "| {name} | {} | {} | {:.2}x |",
                ms(wall(s)),
                ms(median(s.iter().map(|x| x.cpu).collect())),
                wall(s).as_secs_f64() / base.as_secs_f64()
            );
        }
    }
    println!("\nversions: {}; {}", version("runc"), version("runsc"));
    Ok(())
}
