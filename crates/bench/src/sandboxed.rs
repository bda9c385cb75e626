//! Runtime classes side by side: `berth run --rm IMAGE true` with the
//! builtin runtime, runc, gVisor's runsc and berth-vm (a QEMU VM per
//! container), on the bridge network and without one, the same busybox
//! image from a local registry, the store on tmpfs; then berth-vm's
//! boot-to-start (`run -d`) and where its time goes, per accelerator this
//! host can use.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::pull::{clean, sh, start_registry};
use crate::run::{Tool, busybox_layout};
use crate::stats::{Sample, measure, median, ms};

pub fn run(runs: usize, berth: Option<PathBuf>) -> Result<()> {
    crate::require(&["runc", "runsc", "qemu-system-x86_64"])?;
    let berth = crate::binary(berth.clone(), "berth")?;
    // berth-vm beside berth (its agent and kernel where it finds them:
    // BERTH_VM_AGENT, BERTH_VM_KERNEL, or installed by setup.sh).
    let vm = berth.with_file_name("berth-vm");
    anyhow::ensure!(vm.is_file(), "no berth-vm beside {}", berth.display());
    let base = PathBuf::from("/dev/shm/berth-bench-sandboxed");
    clean(&base);
    std::fs::create_dir_all(&base)?;
    let tool = Tool::berth(&berth, &base);
    let res = measure_all(&tool, &base, runs, &vm);
    tool.remove_all();
    clean(&base);
    res
}

fn measure_all(tool: &Tool, base: &std::path::Path, runs: usize, vm: &Path) -> Result<()> {
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
        let vm = vm.to_string_lossy();
        for runtime in ["berth", "runc", "runsc", &vm] {
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
            let name = match runtime {
                "berth" => "builtin",
                r if r == vm => "berth-vm",
                r => r,
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
    for chunk in rows.chunks(4) {
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
    println!(
        "\nversions: {}; {}; {}",
        version("runc"),
        version("runsc"),
        version("qemu-system-x86_64")
    );
    boot_to_start(tool, base, &image, vm, runs)
}

/// `run -d IMAGE sleep` with berth-vm: the command's wall time until the
/// container runs, and the VM's own account of its boot, per accelerator.
fn boot_to_start(tool: &Tool, base: &Path, image: &str, vm: &Path, runs: usize) -> Result<()> {
    let vm_root = base.join("berth-run/runtime-berth-vm");
    let mut accels = vec!["tcg"];
    if berth_vm::host::assets::kvm_usable() {
        accels.push("kvm");
    }
    println!(
        "\nberth-vm boot to start: `berth run -d --runtime berth-vm IMAGE sleep 60`, {runs} runs (median ms)\n"
    );
    println!(
        "| accelerator | run -d wall | QEMU + firmware | guest kernel | agent (drivers, mounts) | network takeover | rest: create + start |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    // Each accelerator cold, then from a spare VM (`--warm 1`): the pool
    // is full before each run (untimed), and the run's claim starts a
    // replacement booting beside it, as it would in use.
    let rows = accels
        .iter()
        .flat_map(|a| [(*a, false), (*a, true)])
        .collect::<Vec<_>>();
    for (accel, warm) in rows {
        let mut walls = Vec::new();
        let mut parts: [Vec<u64>; 4] = Default::default();
        for _ in 0..runs {
            let mut args = vec!["run", "-d", "--runtime", vm.to_str().unwrap_or_default()];
            if warm {
                sh(Command::new(vm)
                    .arg("--root")
                    .arg(&vm_root)
                    .args(["--warm", "1", "warm"])
                    .env("BERTH_VM_ACCEL", accel))?;
                args.extend(["--runtime-flag", "warm=1"]);
            }
            args.extend([image, "sleep", "60"]);
            let mut cmd = tool.cmd(&args);
            cmd.env("BERTH_VM_ACCEL", accel);
            let t = std::time::Instant::now();
            let id = sh(&mut cmd)?.trim().to_string();
            walls.push(t.elapsed().as_millis() as u64);
            // The VM the container ran in: booted for it, or a spare.
            let raw = std::fs::read(vm_root.join(&id).join("state.json"))?;
            let name = serde_json::from_slice::<serde_json::Value>(&raw)?["vm"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let raw = std::fs::read(vm_root.join(format!(".vm-{name}/vm.json")))?;
            let v: serde_json::Value = serde_json::from_slice(&raw)?;
            for (i, k) in ["qemu_ms", "kernel_ms", "agent_ms", "network_ms"]
                .iter()
                .enumerate()
            {
                parts[i].push(v["boot"][k].as_u64().unwrap_or(0));
            }
            sh(&mut tool.cmd(&["rm", "-f", &id]))?;
        }
        let med = |mut v: Vec<u64>| {
            v.sort();
            v[v.len() / 2]
        };
        let wall = med(walls);
        let p: Vec<u64> = parts.into_iter().map(med).collect();
        if warm {
            // The boot happened before the run: only the claim's network
            // takeover is in its time.
            let rest = wall.saturating_sub(p[3]);
            println!(
                "| {accel}, spare VM (--warm 1) | {wall} | before | before | before | {} | {rest} |",
                p[3]
            );
        } else {
            let rest = wall.saturating_sub(p.iter().sum());
            println!(
                "| {accel} | {wall} | {} | {} | {} | {} | {rest} |",
                p[0], p[1], p[2], p[3]
            );
        }
    }
    sh(Command::new(vm)
        .arg("--root")
        .arg(&vm_root)
        .args(["--warm", "0", "warm"]))?;
    if !berth_vm::host::assets::kvm_usable() {
        println!(
            "\nKVM: not usable on this host (/dev/kvm without vmx/svm: a nested host), so TCG only."
        );
    }
    Ok(())
}
