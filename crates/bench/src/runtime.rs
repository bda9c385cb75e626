//! The same bundle through berth-runtime, runc and crun, on tmpfs, measured
//! per run: `run` in the foreground (one invocation: create, start, wait,
//! delete), and create + start + wait + delete as four steps.
//!
//! berth-runtime is measured twice: from a read-only install (no protective
//! re-exec, see `read_only_install`) and from the writable path given.
//!
//! crun 1.8 refuses the hybrid cgroup layout, so it runs in a private mount
//! namespace without /sys/fs/cgroup/unified; berth runs there too, for a
//! like-for-like row.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::stats::{Sample, measure, median, ms};

struct Tool {
    label: &'static str,
    bin: PathBuf,
    /// Runs in the private mount namespace without the unified hierarchy.
    v1_only: bool,
}

/// Runs a command to its end. Its stderr goes to a file, not a pipe: a
/// container keeps the runtime's stdio, and a pipe would stay open.
fn sh(cmd: &mut Command) -> Result<()> {
    let err_path = std::env::temp_dir().join(format!("berth-bench-{}.err", std::process::id()));
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path)?)
        .status();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    if !status?.success() {
        bail!("{cmd:?}: {}", err.trim());
    }
    Ok(())
}

/// The bundle: Debian's static busybox running `true`, with the spec
/// template every runtime here writes the same way.
fn make_bundle(dir: &Path, berth: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).context("busybox-static")?;
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true"))?;
    sh(Command::new(berth).arg("spec").arg("--bundle").arg(dir))?;
    let path = dir.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    // The newest version every runtime here accepts (crun 1.8 knows 1.0).
    c["ociVersion"] = "1.0.2-dev".into();
    c["process"]["terminal"] = false.into();

    c["process"]["args"] = serde_json::json!(["true"]);
    std::fs::write(&path, serde_json::to_vec_pretty(&c)?)?;
    Ok(())
}

fn one_run(tool: &Tool, root: &Path, bundle: &Path, id: &str) -> Result<()> {
    let rt = |args: &[&str]| {
        let mut c = Command::new(&tool.bin);
        c.arg("--root").arg(root).args(args);
        c
    };
    let pid_file = root.join(format!("{id}.pid"));
    sh(&mut rt(&[
        "create",
        "--bundle",
        bundle.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        id,
    ]))?;
    let pid: i32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    sh(&mut rt(&["start", id]))?;
    // We are the subreaper: the container's process is ours to wait for.
    let mut status = 0;
    // SAFETY: status is a valid out-pointer for the call.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        bail!("waitpid {pid}: {}", std::io::Error::last_os_error());
    }
    sh(&mut rt(&["delete", id]))?;
    Ok(())
}

/// `run` in the foreground: the runtime creates, starts, waits for and
/// deletes the container in one invocation.
fn one_foreground_run(tool: &Tool, root: &Path, bundle: &Path, id: &str) -> Result<()> {
    sh(Command::new(&tool.bin).arg("--root").arg(root).args([
        "run",
        "--bundle",
        bundle.to_str().unwrap(),
        id,
    ]))
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Run,
    Steps,
}

/// Runs `op` `runs` times for every tool of a group, round-robin (one run
/// of each tool in turn), so that the machine's slower and faster
/// stretches fall on every runtime alike; one warm-up run each first.
fn series(
    tools: &[Tool],
    op: Op,
    work: &Path,
    bundle: &Path,
    runs: usize,
) -> Result<Vec<Vec<Sample>>> {
    let roots: Vec<PathBuf> = tools
        .iter()
        .map(|t| {
            work.join(format!(
                "root-{}",
                t.label.replace([' ', '(', ')', ','], "")
            ))
        })
        .collect();
    let once = |tool: &Tool, root: &Path, id: &str| match op {
        Op::Run => one_foreground_run(tool, root, bundle, id),
        Op::Steps => one_run(tool, root, bundle, id),
    };
    for (tool, root) in tools.iter().zip(&roots) {
        std::fs::create_dir_all(root)?;
        once(tool, root, "warmup")?;
    }
    let mut samples = vec![Vec::with_capacity(runs); tools.len()];
    for i in 0..runs {
        for (k, (tool, root)) in tools.iter().zip(&roots).enumerate() {
            samples[k].push(measure(|| once(tool, root, &format!("b{i}")))?);
        }
    }
    Ok(samples)
}

/// Enters a private mount namespace in which the unified hierarchy is not
/// mounted: a pure v1 host, as crun 1.8 needs.
fn enter_v1_only() -> Result<()> {
    // SAFETY: integer flags, and null or NUL-terminated literal pointers
    // that outlive each call; a propagation change takes no data.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            bail!("unshare: {}", std::io::Error::last_os_error());
        }
        let root = c"/";
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            bail!("make / private: {}", std::io::Error::last_os_error());
        }
        let unified = c"/sys/fs/cgroup/unified";
        if Path::new("/sys/fs/cgroup/unified").exists()
            && libc::umount2(unified.as_ptr(), libc::MNT_DETACH) != 0
        {
            bail!("umount unified: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A read-only install of berth-runtime, as docs/runtime.md recommends: a
/// copy of the binary on a tmpfs mounted read-only, in a mount namespace of
/// this process's own (nothing reaches the host's mount table). No
/// container can write a binary there, so berth-runtime does not re-execute
/// itself from a protective view (CVE-2019-5736; selfexe.rs).
fn read_only_install(work: &Path, berth: &Path) -> Result<PathBuf> {
    let dir = work.join("ro-install");
    std::fs::create_dir_all(&dir)?;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let (root, target) = (c(Path::new("/")), c(&dir));
    // SAFETY: integer flags, and null or NUL-terminated pointers (literals
    // or CStrings above) that outlive each call.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            bail!("unshare: {}", std::io::Error::last_os_error());
        }
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            bail!("make / a slave: {}", std::io::Error::last_os_error());
        }
        if libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            bail!("mount a tmpfs: {}", std::io::Error::last_os_error());
        }
    }
    let bin = dir.join("berth-runtime");
    std::fs::copy(berth, &bin).context("copy berth-runtime")?;
    // SAFETY: as above.
    if unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        )
    } != 0
    {
        bail!(
            "make the install read-only: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(bin)
}

/// A tool's `--version`, first line.
pub(crate) fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

pub fn run(runs: usize, berth: Option<PathBuf>) -> Result<()> {
    let berth = crate::binary(berth, "berth-runtime")?;
    if !berth.exists() {
        bail!(
            "{} not found: build it (cargo build --release)",
            berth.display()
        );
    }
    // Orphaned container processes come to us, as to a shim or conmon.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let work = PathBuf::from(format!("/dev/shm/berth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = (|| -> Result<()> {
        let bundle = work.join("bundle");
        make_bundle(&bundle, &berth)?;
        let which = |name: &str| -> Option<PathBuf> {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(name))
                .find(|p| p.exists())
        };
        let ro = read_only_install(&work, &berth)?;
        let mut host = vec![
            Tool {
                label: "berth-runtime (read-only install)",
                bin: ro.clone(),
                v1_only: false,
            },
            Tool {
                label: "berth-runtime (writable install)",
                bin: berth.clone(),
                v1_only: false,
            },
        ];
        if let Some(runc) = which("runc") {
            host.push(Tool {
                label: "runc",
                bin: runc,
                v1_only: false,
            });
        }
        let mut v1 = vec![
            Tool {
                label: "berth-runtime (read-only install, v1 only)",
                bin: ro.clone(),
                v1_only: true,
            },
            Tool {
                label: "berth-runtime (writable install, v1 only)",
                bin: berth.clone(),
                v1_only: true,
            },
        ];
        if let Some(crun) = which("crun") {
            v1.push(Tool {
                label: "crun (v1 only)",
                bin: crun,
                v1_only: true,
            });
        }
        let mut run_rows: Vec<(&Tool, Vec<Sample>)> = Vec::new();
        let mut step_rows: Vec<(&Tool, Vec<Sample>)> = Vec::new();
        run_rows.extend(
            host.iter()
                .zip(series(&host, Op::Run, &work, &bundle, runs)?),
        );
        step_rows.extend(
            host.iter()
                .zip(series(&host, Op::Steps, &work, &bundle, runs)?),
        );
        // The rest runs in the private mount namespace: last, since this
        // process stays in it.
        enter_v1_only()?;
        run_rows.extend(v1.iter().zip(series(&v1, Op::Run, &work, &bundle, runs)?));
        step_rows.extend(v1.iter().zip(series(&v1, Op::Steps, &work, &bundle, runs)?));
        report(
            &format!(
                "`run` (foreground: create, start, wait, delete in one invocation) of a busybox `true` bundle on tmpfs, {runs} runs each (median)"
            ),
            &run_rows,
        );
        println!();
        report(
            &format!(
                "create + start + wait + delete of a busybox `true` bundle on tmpfs, {runs} runs each (median)"
            ),
            &step_rows,
        );
        Ok(())
    })();
    let ro = std::ffi::CString::new(format!("{}/ro-install", work.display())).unwrap();
    // SAFETY: ro is a NUL-terminated path that outlives the call.
    unsafe { libc::umount2(ro.as_ptr(), libc::MNT_DETACH) };
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn report(title: &str, rows: &[(&Tool, Vec<Sample>)]) {
    let med: Vec<(
        String,
        std::time::Duration,
        std::time::Duration,
        bool,
        String,
    )> = rows
        .iter()
        .map(|(t, s)| {
            (
                t.label.to_string(),
                median(s.iter().map(|x| x.wall).collect()),
                median(s.iter().map(|x| x.cpu).collect()),
                t.v1_only,
                version(&t.bin),
            )
        })
        .collect();
    let crun = med.iter().find(|m| m.0.starts_with("crun")).map(|m| m.1);
    let runc = med.iter().find(|m| m.0 == "runc").map(|m| m.1);
    println!("{title}\n");
    println!("| runtime | wall ms | CPU ms | wall vs crun | wall vs runc | version |");
    println!("|---|---:|---:|---:|---:|---|");
    for (label, wall, cpu, _, ver) in &med {
        let ratio = |base: Option<std::time::Duration>| {
            base.map(|b| format!("{:.2}x", wall.as_secs_f64() / b.as_secs_f64()))
                .unwrap_or("-".into())
        };
        println!(
            "| {label} | {} | {} | {} | {} | {ver} |",
            ms(*wall),
            ms(*cpu),
            ratio(crun),
            ratio(runc)
        );
    }
}
