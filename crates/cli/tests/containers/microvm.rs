//! berth-vm as a runtime (`--runtime berth-vm`): each container in a QEMU
//! VM of its own, under Debian's kernel. Observed from inside (the guest's
//! kernel and CPU answer), from the host (a published port, the logs, the
//! exit status, podman's view) and after the end (no QEMU, mount or
//! directory left), including ends the container did not choose: QEMU
//! killed, a VM that stops answering, a guest kernel that panics, a full
//! disk, the guest's OOM killer.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::env::{Env, mounts_under, processes_with, wait_within};
use crate::support::free_port;

fn host_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string()
}

/// berth-vm's directory of the VM container `id` booted.
fn vm_dir(env: &Env, id: &str) -> PathBuf {
    env.runroot()
        .join("runtime-berth-vm")
        .join(format!(".vm-{id}"))
}

/// The pid of the QEMU running container `id`.
fn qemu_pid(env: &Env, id: &str) -> i32 {
    let raw = std::fs::read(vm_dir(env, id).join("vm.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["qemu"]["pid"].as_i64().unwrap() as i32
}

/// Whether `url` answers with the test image's page.
fn serves_the_page(url: &str) -> bool {
    std::process::Command::new("curl")
        .args(["-sf", "--max-time", "2", url])
        .output()
        .is_ok_and(|o| o.stdout == b"hello from berth\n")
}

/// Nothing of the VM container `id` booted is left: no QEMU, no bind in
/// its shared directory, no directory of the VM's or the container's.
fn assert_vm_gone(env: &Env, id: &str) {
    let dir = vm_dir(env, id);
    // The holder ends after its last container; give it a moment.
    wait_within(60, "the VM to go", || !dir.exists());
    let p = processes_with(&dir.to_string_lossy());
    assert!(p.is_empty(), "QEMU remains: {p:?}");
    let m = mounts_under(&env.runroot().join("runtime-berth-vm"));
    assert!(m.is_empty(), "shared mounts remain: {m:?}");
    assert!(
        !env.runroot().join("runtime-berth-vm").join(id).exists(),
        "the container's directory remains"
    );
    crate::env::assert_gone(env, id);
}

#[test]
fn berth_vm_runs_containers_under_their_own_kernel() {
    let Some((vm, agent)) = crate::berth_vm::berth_vm() else {
        return;
    };
    let env = Env::new();
    let host = host_release();
    let rt = ["--runtime", vm.as_str(), "--runtime-flag", agent.as_str()];

    // Without a network: the guest's kernel and CPU, only loopback, and
    // a VM sized by the limits (2 vCPUs; 96 MiB plus the guest's 160).
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--cpus",
        "2",
        "--memory",
        "96m",
    ];
    args.extend(rt);
    args.extend([
        env.image.as_str(),
        "sh",
        "-c",
        "uname -r; grep -m1 'model name' /proc/cpuinfo; ip -o link | wc -l; \
         grep -c ^processor /proc/cpuinfo; grep MemTotal /proc/meminfo",
    ]);
    let out = env.ok(&args);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() == 5 && lines[0] != host,
        "the guest's kernel answers, not the host's {host}: {out}"
    );
    let host_cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let host_model = host_cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .unwrap_or("");
    assert_ne!(lines[1], host_model, "the guest's own /proc/cpuinfo: {out}");
    assert_eq!(lines[2].trim(), "1", "only lo without a network: {out}");
    let host_cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        lines[3].trim(),
        2.min(host_cpus).to_string(),
        "vCPUs from --cpus: {out}"
    );
    let kib: u64 = lines[4].split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        (160 * 1024..=256 * 1024).contains(&kib),
        "guest memory from --memory plus the overhead: {out}"
    );
    // What it supports, in runc's shape.
    let features = std::process::Command::new(&vm)
        .arg("features")
        .output()
        .unwrap();
    let f: serde_json::Value = serde_json::from_slice(&features.stdout).unwrap();
    assert_eq!(
        f["hooks"],
        serde_json::json!([]),
        "hooks are the host's: none"
    );
    assert!(f["annotations"]["io.github.berth.vm.accelerator"].is_string());

    // The host's network cannot be a VM's: refused by name, nothing made.
    let mut args = vec!["run", "--rm", "--network", "host"];
    args.extend(rt);
    args.extend([env.image.as_str(), "true"]);
    let (_, err) = env.code(125, &args);
    assert!(err.contains("host's network namespace"), "{err}");

    // On the default bridge with a published port: the guest's NIC took
    // over the container's interface.
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let mut flags = vec!["--name", "web", "-p", publish.as_str()];
    flags.extend(rt);
    let id = env.run_d(&flags, &["httpd", "-f", "-p", "80", "-h", "/www"]);
    let url = format!("http://127.0.0.1:{port}/index.html");
    wait_within(60, "the server in the VM to answer", || {
        serves_the_page(&url)
    });
    let addr = env.inspect("web")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let seen = env.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "uname -r; ip -4 -o addr show eth0",
    ]);
    assert!(!seen.starts_with(&host), "exec runs in the guest: {seen}");
    assert!(
        !addr.is_empty() && seen.contains(&format!("inet {addr}/")),
        "the guest's eth0 has the container's address {addr:?}: {seen}"
    );
    // An exec's status, its stdin, a terminal with the caller's size.
    env.code(3, &["exec", "web", "sh", "-c", "exit 3"]);
    let mut cat = env
        .cmd()
        .args(["exec", "-i", "web", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut cat.stdin.take().unwrap(), b"through the VM\n").unwrap();
    let echoed = cat.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "through the VM\n");
    let tty = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "stty rows 21 cols 77; {} exec -it web stty size",
            env.cmd_line()
        ))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&tty.stdout);
    assert!(
        said.contains("21 77"),
        "the guest's terminal has the caller's size: {said}"
    );
    // Written in the guest, on the host's disk; logged through the keeper.
    env.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "echo made-in-the-vm > /made; echo to-the-log > /proc/1/fd/1",
    ]);
    assert!(env.ok(&["diff", "web"]).contains("/made"));
    wait_within(60, "the log line", || {
        env.ok(&["logs", "web"]).contains("to-the-log")
    });
    let stats = env.ok(&["stats", "--no-stream", "--format", "{{.Name}}", "web"]);
    assert_eq!(stats.trim(), "web");
    env.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(env.status("web"), "exited");
    env.ok(&["rm", &id]);
    assert_vm_gone(&env, &id);
}

/// Waits (up to `secs`) for container `c` to have exited.
fn wait_exited(env: &Env, c: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while env.status(c) != "exited" {
        assert!(Instant::now() < deadline, "{c} did not end within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What container `c` wrote to its stderr (berth-vm's reason goes there).
fn stderr_log(env: &Env, c: &str) -> String {
    let out = env.berth(&["logs", c]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_vm_that_dies_or_stops_answering_ends_its_container_with_the_reason() {
    let Some((vm, agent)) = crate::berth_vm::berth_vm() else {
        return;
    };
    let env = Env::new();
    let rt = ["--runtime", vm.as_str(), "--runtime-flag", agent.as_str()];

    // QEMU killed: the container exits (255), its log says why.
    let mut flags = vec!["--name", "killed"];
    flags.extend(rt);
    let killed = env.run_d(&flags, &["sleep", "1000"]);
    let qemu = qemu_pid(&env, &killed);
    // SAFETY: kill(2) with integers, on the QEMU this test started.
    unsafe { libc::kill(qemu, libc::SIGKILL) };
    wait_exited(&env, "killed", 20);
    assert_eq!(env.inspect("killed")["State"]["ExitCode"], 255);
    assert!(stderr_log(&env, "killed").contains("the VM ended unexpectedly: QEMU was killed"));
    env.ok(&["rm", &killed]);
    assert_vm_gone(&env, &killed);

    // A frozen VM (QEMU stopped): its agent stops answering, the keeper
    // ends it after the agent timeout, with that reason.
    let mut run = env.cmd();
    run.env("BERTH_VM_AGENT_TIMEOUT", "3");
    run.args(["run", "-d", "--name", "frozen"]).args(rt);
    run.args([env.image.as_str(), "sleep", "1000"]);
    let out = run.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frozen = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let qemu = qemu_pid(&env, &frozen);
    // SAFETY: as above.
    unsafe { libc::kill(qemu, libc::SIGSTOP) };
    wait_exited(&env, "frozen", 30);
    assert!(stderr_log(&env, "frozen").contains("the guest agent has not answered for 3 s"));
    env.ok(&["rm", &frozen]);
    assert_vm_gone(&env, &frozen);

    // A guest kernel that crashes (as it does when its init, the agent,
    // dies): the exec in flight fails, the container exits with the panic.
    let mut flags = vec!["--name", "crashed", "--privileged"];
    flags.extend(rt);
    let crashed = env.run_d(&flags, &["sleep", "1000"]);
    let out = env.berth(&[
        "exec",
        "crashed",
        "sh",
        "-c",
        "echo c > /proc/sysrq-trigger",
    ]);
    assert!(!out.status.success());
    wait_exited(&env, "crashed", 20);
    assert_eq!(env.inspect("crashed")["State"]["ExitCode"], 255);
    let said = stderr_log(&env, "crashed");
    assert!(
        said.contains("Kernel panic - not syncing: sysrq triggered crash"),
        "{said}"
    );
    env.ok(&["rm", &crashed]);
    assert_vm_gone(&env, &crashed);
}

/// podman drives berth-vm as it drives runc: run, exec, stop, rm, with
/// conmon waiting for the keeper. Without a network: podman's default
/// one is a host-wide bridge this test could not take back.
#[test]
fn podman_runs_containers_through_berth_vm() {
    let Some((vm, agent)) = crate::berth_vm::berth_vm() else {
        return;
    };
    require!("podman");
    let env = Env::new();
    let dir = env.sb.path().join("podman");
    let p = crate::env::Podman::new(dir.clone(), &vm);
    p.ok(&["pull", "-q", "--tls-verify=false", &env.image]);
    let flag = format!("--runtime-flag={agent}");
    let host = host_release();
    let once = p.ok(&[
        &flag,
        "run",
        "--rm",
        "--network",
        "none",
        &env.image,
        "sh",
        "-c",
        "uname -r",
    ]);
    assert!(
        !once.trim().is_empty() && once.trim() != host,
        "the guest's kernel: {once}"
    );
    p.ok(&[
        &flag,
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "pv",
        &env.image,
        "sleep",
        "300",
    ]);
    let seen = p.ok(&[&flag, "exec", "pv", "sh", "-c", "uname -r; echo $((6*7))"]);
    assert_eq!(seen.lines().nth(1), Some("42"), "{seen}");
    assert!(!seen.starts_with(&host), "{seen}");
    p.ok(&[&flag, "stop", "-t", "1", "pv"]);
    p.ok(&[&flag, "rm", "pv"]);
    wait_within(60, "podman's VMs to end", || {
        processes_with("qemu-system-x86_64")
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*dir.to_string_lossy()))
            })
            .count()
            == 0
    });
    let m = mounts_under(&dir.join("run"));
    assert!(
        m.iter().all(|m| !m.contains("berth-vm")),
        "shared mounts remain: {m:?}"
    );
}

/// Unmounts a test's tmpfs when dropped, pass or fail.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A container that fills its disk gets ENOSPC, one that outgrows its
/// memory is killed by the guest's OOM killer (137): the VM and the host
/// carry on, and nothing is left.
#[test]
fn a_container_out_of_disk_or_memory_ends_cleanly() {
    let Some((vm, agent)) = crate::berth_vm::berth_vm() else {
        return;
    };
    let env = Env::new();
    let small = env.sb.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(ok.success());
    let _mounted = Tmpfs(small.clone());
    let volume = format!("{}:/data", small.display());
    let out = env.berth(&[
        "run",
        "--name",
        "greedy",
        "--memory",
        "32m",
        "-v",
        &volume,
        "--runtime",
        &vm,
        "--runtime-flag",
        &agent,
        &env.image,
        "sh",
        "-c",
        "dd if=/dev/zero of=/data/f bs=64k count=100 2>/dev/null; echo dd=$?; \
         exec dd if=/dev/zero of=/dev/null bs=64M count=1",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("dd=1"),
        "a full disk is an error to the writer: {said}"
    );
    assert_eq!(
        out.status.code(),
        Some(137),
        "the guest's OOM killer: {said}"
    );
    assert_eq!(env.inspect("greedy")["State"]["ExitCode"], 137);
    let id = env
        .ok(&["inspect", "--format", "{{.Id}}", "greedy"])
        .trim()
        .to_string();
    env.ok(&["rm", "greedy"]);
    assert_vm_gone(&env, &id);
}

/// `berth run --pod` with berth-vm: the pod's containers share one VM (one
/// guest kernel, one QEMU) and the pod's network inside it.
#[test]
fn a_berth_pod_is_one_vm() {
    let Some((vm, agent)) = crate::berth_vm::berth_vm() else {
        return;
    };
    let env = Env::new();
    env.ok(&["pod", "create", "--name", "vmpod", "--hostname", "inside"]);
    let rt = [
        "--pod",
        "vmpod",
        "--runtime",
        vm.as_str(),
        "--runtime-flag",
        agent.as_str(),
    ];
    let mut web = vec!["--name", "web"];
    web.extend(rt);
    env.run_d(&web, &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    let mut other = vec!["--name", "other"];
    other.extend(rt);
    env.run_d(&other, &["sleep", "1000"]);
    let ask = ["sh", "-c", "cat /proc/sys/kernel/random/boot_id; hostname"];
    let mut a = vec!["exec", "web"];
    a.extend(ask);
    let mut b = vec!["exec", "other"];
    b.extend(ask);
    let (a, b) = (env.ok(&a), env.ok(&b));
    assert_eq!(a, b, "one guest kernel for the pod");
    assert!(a.ends_with("inside\n"), "the pod's hostname: {a}");
    let page = env.ok(&[
        "exec",
        "other",
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1:8080/index.html",
    ]);
    assert_eq!(
        page, "hello from berth\n",
        "the pod's network, inside the guest"
    );
    let vms = std::fs::read_dir(env.runroot().join("runtime-berth-vm"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".vm-"))
        .count();
    assert_eq!(vms, 1, "one VM for the pod");
    env.ok(&["pod", "rm", "-f", "vmpod"]);
    wait_within(60, "the pod's VM to end", || {
        processes_with(&env.runroot().join("runtime-berth-vm").to_string_lossy()).is_empty()
    });
    let m = mounts_under(&env.runroot().join("runtime-berth-vm"));
    assert!(m.is_empty(), "shared mounts remain: {m:?}");
}

/// berth-vm's spare VMs under one root: ended (and their processes
/// killed) when dropped, pass or fail.
struct Spares {
    vm: String,
    agent: String,
    root: PathBuf,
}

impl Spares {
    /// `berth-vm warm` on the spares' root, keeping `warm` of them.
    fn warm(&self, warm: &str) -> std::process::Command {
        let mut c = std::process::Command::new(&self.vm);
        c.arg("--root")
            .arg(&self.root)
            .arg(format!("--{}", self.agent))
            .args(["--warm", warm, "warm"]);
        c
    }

    fn berth_vm_warm(&self, warm: &str) -> std::process::Output {
        self.warm(warm).output().unwrap()
    }

    /// The spare VMs' directories and records, claimed or not.
    fn vms(&self) -> Vec<(PathBuf, serde_json::Value)> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".vm-spare-"))
            .filter_map(|e| {
                let raw = std::fs::read(e.path().join("vm.json")).ok()?;
                Some((e.path(), serde_json::from_slice(&raw).ok()?))
            })
            .collect()
    }

    /// Spare VMs' directories, booted or booting.
    fn dirs(&self) -> usize {
        std::fs::read_dir(&self.root)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".vm-spare-"))
                    .count()
            })
            .unwrap_or(0)
    }

    fn unclaimed(&self) -> usize {
        self.vms().iter().filter(|(_, v)| v["warm"] == true).count()
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        let _ = self.berth_vm_warm("0");
        let root = self.root.join(".vm-spare-").to_string_lossy().into_owned();
        for pid in processes_with(&root) {
            // SAFETY: kill(2) of a process this test's berth-vm started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// With `--warm 1` a container starts in a VM booted before it: the
/// spare's QEMU runs it, its NIC took over the container's interface
/// (a published port answers, eth0 has the container's MAC and address),
/// a replacement boots behind it; a pod's first container claims the
/// next and its second joins it; a container of another size boots its
/// own VM, one of another agent ends the outdated spare; `warm` with
/// `--warm 0` ends the spares, a booting one too, and nothing is left.
#[test]
fn spare_vms_start_containers_without_a_boot() {
    let Some((vm, agent)) = crate::berth_vm::berth_vm() else {
        return;
    };
    let env = Env::new();
    let spares = Spares {
        vm: vm.clone(),
        agent: agent.clone(),
        root: env.runroot().join("runtime-berth-vm"),
    };
    let out = spares.berth_vm_warm("1");
    assert!(out.status.success(), "{out:?}");
    let before = spares.vms();
    assert_eq!(before.len(), 1, "one spare booted: {before:?}");
    assert_eq!(before[0].1["warm"], true);
    let spare_qemu = before[0].1["qemu"]["pid"].as_i64().unwrap();
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("vmtap"),
        "the spare's tap is out of the host's sight"
    );

    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let rt = [
        "--runtime",
        vm.as_str(),
        "--runtime-flag",
        agent.as_str(),
        "--runtime-flag",
        "warm=1",
    ];
    let mut flags = vec!["--name", "web", "-p", publish.as_str()];
    flags.extend(rt);
    env.run_d(&flags, &["httpd", "-f", "-p", "80", "-h", "/www"]);
    let (dir, claimed) = spares
        .vms()
        .into_iter()
        .find(|(_, v)| v["qemu"]["pid"] == spare_qemu)
        .unwrap_or_else(|| panic!("the spare was not claimed: {:?}", spares.vms()));
    assert_eq!(claimed["warm"], false, "the spare was claimed: {claimed}");
    let url = format!("http://127.0.0.1:{port}/index.html");
    wait_within(60, "the server in the spare VM to answer", || {
        serves_the_page(&url)
    });
    let net = &env.inspect("web")["NetworkSettings"];
    let (addr, mac) = (net["IPAddress"].as_str(), net["MacAddress"].as_str());
    let seen = env.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; cat /sys/class/net/eth0/address",
    ]);
    assert!(
        seen.contains(&format!("inet {}/", addr.unwrap())) && seen.lines().last() == mac,
        "eth0 took over {addr:?} {mac:?}: {seen}"
    );

    // The pool boots a replacement in the background.
    wait_within(120, "a new spare", || spares.unclaimed() == 1);
    // A pod's first container claims it, the second joins it.
    let (_, spare) = spares
        .vms()
        .into_iter()
        .find(|(_, v)| v["warm"] == true)
        .unwrap();
    env.ok(&["pod", "create", "--name", "vmpod"]);
    for name in ["a", "b"] {
        let mut flags = vec!["--name", name, "--pod", "vmpod"];
        flags.extend(rt);
        env.run_d(&flags, &["sleep", "1000"]);
    }
    let pod_vm = spares
        .vms()
        .into_iter()
        .find(|(_, v)| v["qemu"] == spare["qemu"])
        .unwrap_or_else(|| panic!("the pod did not claim the spare: {:?}", spares.vms()))
        .1;
    assert_eq!(pod_vm["warm"], false, "claimed for the pod: {pod_vm}");
    let boot_id = |c: &str| env.ok(&["exec", c, "cat", "/proc/sys/kernel/random/boot_id"]);
    assert_eq!(boot_id("a"), boot_id("b"), "one guest kernel for the pod");
    env.ok(&["pod", "rm", "-f", "vmpod"]);
    wait_within(120, "a new spare", || spares.unclaimed() == 1);
    // A container of another size does not fit a spare: a VM of its own.
    let mut args = vec!["run", "--rm", "--network", "none", "--memory", "96m"];
    args.extend(rt);
    args.extend([env.image.as_str(), "true"]);
    env.ok(&args);
    assert_eq!(
        spares.unclaimed(),
        1,
        "the spare stayed one: {:?}",
        spares.vms()
    );
    // A spare booted with another agent (one since upgraded) is not
    // claimed: it ends, and the container boots a VM of its own.
    let copy = env.runroot().join("berth-vm-agent.new");
    std::fs::copy(agent.strip_prefix("agent=").unwrap(), &copy).unwrap();
    let newer = format!("agent={}", copy.display());
    env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--runtime",
        vm.as_str(),
        "--runtime-flag",
        newer.as_str(),
        env.image.as_str(),
        "true",
    ]);
    wait_within(30, "the outdated spare to end", || spares.unclaimed() == 0);

    env.ok(&["rm", "-f", "web"]);
    wait_within(60, "the claimed VM to go", || !dir.exists());
    // Draining ends the ready spare and one still booting (its directory
    // is there, its record not yet).
    let mut second = spares
        .warm("2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_within(60, "a second spare to boot", || spares.dirs() == 2);
    let out = spares.berth_vm_warm("0");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(spares.dirs(), 0, "drained, the booting one too");
    let _ = second.kill();
    let _ = second.wait();
    let root = spares.root.to_string_lossy().into_owned();
    let left = processes_with(&format!("{root}/.vm-"));
    assert!(left.is_empty(), "QEMU or holders remain: {left:?}");
}
