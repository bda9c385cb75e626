//! An ordinary user's berth: its namespace (the user's subordinate ids,
//! held by a pause process), images pulled, built, pushed and saved in a
//! store of the user's, containers with pasta and slirp4netns networks and
//! published ports, pods, volumes, logs and exec, berth-runtime under
//! rootless podman, and the errors of a user without ranges or with too
//! small a range. The users are made for the test and removed after it,
//! with every process they left.

use std::io::{Read, Write};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;

use crate::env::busybox_layer;
use crate::support::{E, Layout, Registry, berth_bin, free_port, have, layer_tar};

/// A user made for one test (useradd, which gives Debian's subordinate
/// ranges unless told not to), removed with its home when dropped.
struct TestUser {
    name: String,
}

/// useradd and userdel lock /etc/passwd; tests make users one at a time.
fn users_lock() -> berth_base::lock::Flock {
    berth_base::lock::Flock::acquire(
        std::path::Path::new("/tmp/berth-test-users.lock"),
        berth_base::lock::Kind::Exclusive,
        berth_base::lock::Wait::For(std::time::Duration::from_secs(60)),
    )
    .unwrap()
    .unwrap()
}

impl TestUser {
    fn new(with_ranges: bool) -> Option<TestUser> {
        if !have("useradd") || !have("newuidmap") || !have("runuser") {
            eprintln!("SKIPPED: useradd, newuidmap (uidmap) and runuser are needed");
            return None;
        }
        let name = format!("bt{}", &berth_base::ids::random_hex(4));
        let _l = users_lock();
        let mut c = Command::new("useradd");
        c.args(["-m", "-s", "/bin/sh"]);
        if !with_ranges {
            c.args(["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]);
        }
        let out = c.arg(&name).output().unwrap();
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let u = TestUser { name };
        if with_ranges
            && !std::fs::read_to_string("/etc/subuid")
                .unwrap_or_default()
                .contains(&format!("{}:", u.name))
        {
            eprintln!("SKIPPED: useradd gave {} no subordinate ids", u.name);
            return None;
        }
        Some(u)
    }

    /// A program as this user, from a directory it may read, with a
    /// login's environment and nothing of the test's.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args([
            "-u",
            &self.name,
            "--",
            "env",
            "-i",
            "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
        ])
        .arg(format!("HOME=/home/{}", self.name))
        .arg(program)
        .current_dir("/");
        c
    }

    /// berth as this user.
    fn berth(&self, args: &[&str]) -> Output {
        self.berth_with(&[], args)
    }

    /// berth as this user, with `env` set.
    fn berth_with(&self, env: &[&str], args: &[&str]) -> Output {
        let mut c = self.command("env");
        c.args(env).arg(berth_bin()).args(args).output().unwrap()
    }

    /// berth as this user, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        stdout_of(
            &format!("berth {args:?} as {}", self.name),
            self.berth(args),
        )
    }

    fn uid(&self) -> u32 {
        let out = Command::new("id")
            .args(["-u", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// The first id of the user's subordinate range in /etc/subuid.
    fn subuid_start(&self) -> u32 {
        let sub = std::fs::read_to_string("/etc/subuid").unwrap();
        let line = sub
            .lines()
            .find(|l| l.starts_with(&format!("{}:", self.name)))
            .unwrap();
        line.split(':').nth(1).unwrap().parse().unwrap()
    }

    /// Starts busybox's httpd serving /www as container `name`, with
    /// `flags` (network, ports) before the image.
    fn serve(&self, name: &str, flags: &[&str], image: &str) {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(flags);
        args.extend([image, "httpd", "-f", "-p", "80", "-h", "/www"]);
        self.ok(&args);
    }

    /// Waits until the user has `count` processes of `program`.
    fn wait_processes(&self, program: &str, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.processes(program).len() != count {
            assert!(
                std::time::Instant::now() < deadline,
                "{} {program} processes, not {count}",
                self.processes(program).len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The user's processes of `program` (by command line: pasta's
    /// process name is passt's).
    fn processes(&self, program: &str) -> Vec<String> {
        let out = Command::new("pgrep")
            .args(["-u", &self.name, "-f", &format!("^(/usr/bin/)?{program} ")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }
}

/// The stdout of `what`, which must have succeeded.
fn stdout_of(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A registry on 127.0.0.1 holding busybox as `busybox:latest` and, for
/// each (name, layer) given, busybox with that layer on top.
fn registry_with(images: &[(&str, Vec<u8>)]) -> (Registry, tempfile::TempDir) {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![("busybox", None)];
    all.extend(images.iter().map(|(n, l)| (*n, Some(l.clone()))));
    for (name, extra) in all {
        let path = dir.path().join(name);
        let mut l = Layout::new(&path);
        let mut layers = vec![busybox_layer()];
        layers.extend(extra);
        let (desc, _) = l.image(
            &layers,
            true,
            "amd64",
            json!({"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}),
        );
        l.tag(desc, "latest");
        reg.push_layout(&path, "latest", &format!("{name}:latest"), "oci", false);
    }
    (reg, dir)
}

/// A registry with busybox (`registry_with`), and busybox pulled by `u`:
/// its reference.
fn pulled_busybox(u: &TestUser) -> (Registry, tempfile::TempDir, String) {
    let (reg, dir) = registry_with(&[]);
    let image = format!("{}/busybox:latest", reg.host());
    u.ok(&["pull", "-q", "--tls-verify=false", &image]);
    (reg, dir, image)
}

/// The body of an HTTP GET of `path` on 127.0.0.1:`port`, tried until
/// the server answers (it starts in the background).
fn http_get(port: u16, path: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            if let Some((_, body)) = text.split_once("\r\n\r\n") {
                return body.to_string();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing answered on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let uid = Command::new("id")
            .args(["-u", &self.name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let _l = users_lock();
        // Its processes (the pause process, helpers) go first, and are
        // waited for: userdel refuses a user that still runs one.
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline
            && Command::new("pgrep")
                .args(["-u", &self.name])
                .output()
                .is_ok_and(|o| !o.stdout.is_empty())
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
        // berth's and berth-runtime's run roots for a user without
        // XDG_RUNTIME_DIR.
        if !uid.is_empty() {
            for dir in ["berth-run", "berth-runtime"] {
                let _ = std::fs::remove_dir_all(format!("/tmp/{dir}-{uid}"));
            }
        }
    }
}

#[test]
fn unshare_maps_the_user_to_root_and_its_subordinate_ids_above() {
    let Some(u) = TestUser::new(true) else {
        return;
    };
    let uid: u32 = String::from_utf8(
        Command::new("id")
            .args(["-u", &u.name])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let sub = std::fs::read_to_string("/etc/subuid").unwrap();
    let line = sub
        .lines()
        .find(|l| l.starts_with(&format!("{}:", u.name)))
        .unwrap();
    let f: Vec<&str> = line.split(':').collect();
    let out = u.berth(&[
        "unshare",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; echo $BERTH_USERNS; exit 3",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"]);
    assert_eq!(
        lines[1],
        ["0".to_string(), uid.to_string(), "1".into()]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(lines[2], ["1", f[1], f[2]]);
    assert_eq!(lines[3], ["1"]);
    // The user's store goes under its home (XDG), never /var/lib/berth.
    let out = u.berth(&[
        "info",
        "--format",
        "{{.Store.GraphRoot}} {{.Host.Rootless}} {{.Host.RootlessNetworkCmd}}",
    ]);
    let info = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        info.trim(),
        format!("/home/{}/.local/share/berth true pasta", u.name),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_user_without_subordinate_ids_is_told_what_to_add() {
    let Some(u) = TestUser::new(false) else {
        return;
    };
    let out = u.berth(&["unshare", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains(&format!("/etc/subuid has no range for {}", u.name))
            && err.contains("usermod --add-subuids"),
        "{err}"
    );
    // Root has no user namespace to enter.
    let out = Command::new(berth_bin())
        .args(["unshare", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("root has none"));
}

#[test]
fn a_users_containers_run_in_its_namespace_with_ports_pods_volumes_exec_and_logs() {
    let Some(u) = TestUser::new(true) else {
        return;
    };
    require!("pasta");
    let (_reg, _d, image) = pulled_busybox(&u);
    let (uid, sub) = (u.uid(), u.subuid_start());

    // Root of the namespace is the user; its ids above are the range.
    let out = u.ok(&["run", "--rm", &image, "cat", "/proc/self/uid_map"]);
    let maps: Vec<Vec<String>> = out
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(maps[0], ["0", &uid.to_string(), "1"]);
    assert_eq!(maps[1][1], sub.to_string());

    // The default network is pasta's; a published port answers on the
    // host's loopback, and the container reaches out through it.
    let port = free_port();
    u.serve("web", &["-p", &format!("127.0.0.1:{port}:80")], &image);
    assert_eq!(http_get(port, "/index.html"), "hello from berth\n");
    assert_eq!(
        u.ok(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", "web"])
            .trim(),
        "pasta"
    );
    assert_eq!(u.processes("pasta").len(), 1);
    assert_eq!(u.ok(&["exec", "web", "id", "-u"]).trim(), "0");
    // cp both ways, the copy owned by the user on the host.
    let copied = format!("/home/{}/copied", u.name);
    u.ok(&["cp", "web:/www/index.html", &copied]);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::read_to_string(&copied).unwrap(),
        "hello from berth\n"
    );
    assert_eq!(std::fs::metadata(&copied).unwrap().uid(), uid);
    u.ok(&["cp", &copied, "web:/www/back.html"]);
    assert_eq!(http_get(port, "/back.html"), "hello from berth\n");
    let addr = u.ok(&["exec", "web", "ip", "addr", "show", "eth0"]);
    assert!(addr.contains("inet "), "{addr}");

    // logs, and stop ends the container its pasta with it.
    u.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        &image,
        "sh",
        "-c",
        "echo out; echo err >&2; sleep 100",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !u.ok(&["logs", "talker"]).contains("out") {
        assert!(std::time::Instant::now() < deadline, "no logs");
        std::thread::sleep(Duration::from_millis(50));
    }
    u.ok(&["stop", "-t", "0", "talker"]);
    u.wait_processes("pasta", 1);

    // A pod's containers share its namespace and its published port.
    let pport = free_port();
    u.ok(&["pod", "create", "--name", "p", "-p", &format!("{pport}:80")]);
    u.serve("pweb", &["--pod", "p"], &image);
    assert_eq!(http_get(pport, "/index.html"), "hello from berth\n");
    let seen = u.ok(&[
        "run",
        "--rm",
        "--pod",
        "p",
        &image,
        "wget",
        "-q",
        "-O-",
        "http://127.0.0.1/index.html",
    ]);
    assert_eq!(seen, "hello from berth\n");

    // A volume's files are owned, on the host, by the ids they map to.
    u.ok(&["volume", "create", "v"]);
    u.ok(&[
        "run",
        "--rm",
        "-v",
        "v:/data",
        &image,
        "sh",
        "-c",
        "echo x > /data/f && chown 1000:1000 /data/f",
    ]);
    let mp = u.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "v"]);
    let md = std::fs::metadata(std::path::Path::new(mp.trim()).join("f")).unwrap();
    assert_eq!(
        md.uid(),
        sub + 999,
        "uid 1000 inside is the range's 1000th id"
    );

    // Limits: none where no cgroup is delegated, with podman's warning;
    // stats say why they have nothing to show.
    let out = u.berth(&["run", "--rm", "-m", "64m", &image, "true"]);
    assert!(out.status.success());
    let layout = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    if !layout.contains(" - cgroup2 ") || layout.contains(" - cgroup ") {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("resource limits are ignored"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = u.berth(&["stats", "--no-stream", "web"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert!(
            err.contains("has no cgroup to read statistics from"),
            "{err}"
        );
    }

    // Everything goes: containers, pods, volumes, helpers, mounts, pins.
    u.ok(&["pod", "rm", "-f", "p"]);
    u.ok(&["rm", "-f", "web", "talker"]);
    u.ok(&["volume", "rm", "v"]);
    assert!(u.processes("pasta").is_empty());
    assert_eq!(u.ok(&["ps", "-aq"]), "");
    let mounts = u.ok(&["unshare", "cat", "/proc/self/mountinfo"]);
    let store = format!("/home/{}/.local/share/berth", u.name);
    // (The pins' directory is a mount of its own, as `ip netns` makes
    // it; no pin is left in it.)
    let pins = format!("/tmp/berth-run-{uid}/netns/");
    assert!(
        !mounts.contains(&store) && !mounts.contains(&pins),
        "mounts left: {mounts}"
    );
}

#[test]
fn slirp4netns_publishes_ports_too() {
    let Some(u) = TestUser::new(true) else {
        return;
    };
    require!("slirp4netns");
    let (_reg, _d, image) = pulled_busybox(&u);
    let port = free_port();
    u.serve(
        "web",
        &["--network", "slirp4netns", "-p", &format!("{port}:80")],
        &image,
    );
    assert_eq!(http_get(port, "/index.html"), "hello from berth\n");
    let addr = u.ok(&["exec", "web", "ip", "addr", "show", "eth0"]);
    assert!(addr.contains("10.0.2.100/24"), "{addr}");
    assert!(!u.processes("slirp4netns").is_empty());
    u.ok(&["rm", "-f", "web"]);
    u.wait_processes("slirp4netns", 0);
}

#[test]
fn a_user_builds_pushes_and_saves_images_whose_owners_are_the_images_own() {
    let Some(u) = TestUser::new(true) else {
        return;
    };
    let (reg, _d) = registry_with(&[]);
    let image = format!("{}/busybox:latest", reg.host());
    let ctx = format!("/home/{}/ctx", u.name);
    let script = format!(
        "mkdir -p {ctx} && printf 'FROM {image}\\nRUN echo built > /built && chown 1000:1000 /built\\nCOPY f /f\\n' > {ctx}/Dockerfile && echo copied > {ctx}/f"
    );
    let out = u.command("sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success());
    u.ok(&[
        "build",
        "-q",
        "--tls-verify=false",
        "-t",
        "localhost/built",
        &ctx,
    ]);
    let seen = u.ok(&[
        "run",
        "--rm",
        "localhost/built",
        "sh",
        "-c",
        "stat -c '%u %g' /built; cat /f",
    ]);
    assert_eq!(seen, "1000 1000\ncopied\n");
    // Pushed, the layer says 1000 (the image's id), not the host's.
    let pushed = format!("{}/built:latest", reg.host());
    u.ok(&["push", "--tls-verify=false", "localhost/built", &pushed]);
    // Root's berth in a sandbox of its own (unmounted when dropped).
    let sb = crate::support::Sandbox::new();
    let as_root = |args: &[&str]| {
        let out = Command::new(berth_bin())
            .arg("--root")
            .arg(sb.path().join("root"))
            .arg("--runroot")
            .arg(sb.path().join("run"))
            .args(args)
            .output()
            .unwrap();
        stdout_of(&format!("root's berth {args:?}"), out)
    };
    as_root(&["pull", "-q", "--tls-verify=false", &pushed]);
    let seen = as_root(&[
        "run",
        "--rm",
        "--network",
        "none",
        &pushed,
        "stat",
        "-c",
        "%u",
        "/built",
    ]);
    assert_eq!(seen.trim(), "1000");
    // save writes an archive the user owns, that root's berth loads.
    let tar = format!("/home/{}/built.tar", u.name);
    u.ok(&["save", "-o", &tar, "localhost/built"]);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&tar).unwrap().uid(), u.uid());
    let loaded = as_root(&["load", "-i", &tar]);
    assert!(loaded.contains("localhost/built"), "{loaded}");
}

#[test]
fn an_image_owning_ids_beyond_the_range_is_refused_by_name_and_leaves_nothing() {
    let Some(u) = TestUser::new(true) else {
        return;
    };
    let high = layer_tar(&[E::FileX(
        "high",
        0o644,
        (70000, 70000),
        vec![],
        b"h".to_vec(),
    )]);
    let dev = layer_tar(&[
        E::Char("null2", 1, 3),
        E::File(".wh.www", 0o644, Vec::new()),
    ]);
    let (reg, _d) = registry_with(&[("high", high), ("dev", dev)]);
    let out = u.berth(&[
        "pull",
        "-q",
        "--tls-verify=false",
        &format!("{}/high:latest", reg.host()),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("chown 70000:70000") && err.contains("maps 65537 uids"),
        "{err}"
    );
    assert_eq!(u.ok(&["images", "-q"]), "");
    // A device node cannot be made in the namespace: it is left out, and
    // a whiteout (overlay's 0/0 device) still hides what it names.
    let dev = format!("{}/dev:latest", reg.host());
    u.ok(&["pull", "-q", "--tls-verify=false", &dev]);
    let seen = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &dev,
        "sh",
        "-c",
        "ls /null2 /www 2>&1; true",
    ]);
    assert!(
        seen.contains("/null2: No such file") && seen.contains("/www: No such file"),
        "{seen}"
    );
}

#[test]
fn users_see_none_of_each_others_containers_and_a_planted_run_dir_is_refused() {
    let (Some(a), Some(b)) = (TestUser::new(true), TestUser::new(true)) else {
        return;
    };
    // b's run root in /tmp, planted by a before b ever ran berth: a link
    // to a directory of a's that anyone may write. b's berth refuses it
    // and writes nothing there.
    let target = format!("/home/{}/trap", a.name);
    let planted = format!("/tmp/berth-run-{}", b.uid());
    let plant = format!("mkdir {target} && chmod 777 {target} && ln -s {target} {planted}");
    let out = a.command("sh").args(["-c", &plant]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = b.berth(&["ps"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains(&planted) && err.contains("not the user's own private directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    std::fs::remove_file(&planted).unwrap();

    // With its own run root, b sees none of a's containers, and cannot
    // open a's store.
    let (_reg, _d, image) = pulled_busybox(&a);
    a.ok(&[
        "run",
        "-d",
        "--name",
        "mine",
        "--network",
        "none",
        &image,
        "sleep",
        "100",
    ]);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    let store = format!("/home/{}/.local/share/berth", a.name);
    let out = b.berth(&["--root", &store, "ps", "-a"]);
    assert_ne!(out.status.code(), Some(0), "b read a's store");
    a.ok(&["rm", "-f", "mine"]);
}

#[test]
fn rootless_podman_runs_berth_runtime() {
    let Some(u) = TestUser::new(true) else {
        return;
    };
    require!("podman");
    let runtime = std::path::Path::new(berth_bin()).with_file_name("berth-runtime");
    let (reg, _d) = registry_with(&[]);
    let image = format!("{}/busybox:latest", reg.host());
    let conf = format!("/home/{}/.config/containers", u.name);
    let script = format!(
        "mkdir -p {conf} && printf '[containers]\\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\\n[engine]\\ncgroup_manager = \"cgroupfs\"\\nevents_logger = \"file\"\\n' > {conf}/containers.conf"
    );
    assert!(
        u.command("sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success()
    );
    let podman = |args: &[&str]| {
        let out = u.command("podman").args(args).output().unwrap();
        stdout_of(&format!("podman {args:?}"), out)
    };
    podman(&["pull", "-q", "--tls-verify=false", &image]);
    let out = podman(&[
        "--runtime",
        runtime.to_str().unwrap(),
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", &u.uid().to_string(), "1"]
    );
    podman(&["system", "migrate"]);
}

#[test]
fn rootless_limits_apply_where_a_cgroup_is_delegated() {
    let target = std::path::Path::new(berth_bin()).parent().unwrap();
    let Some((code, out)) = crate::vm::run_in_vm(false, "guest_rootless_", target) else {
        return;
    };
    assert_eq!(code, 0, "guest tests failed:\n{out}");
    assert!(out.contains("test result: ok. 1 passed"), "{out}");
}

/// In the cgroup v2 guest: a subtree delegated to the user as systemd's
/// user instance delegates one (the directory and its cgroup.procs,
/// cgroup.subtree_control and cgroup.threads the user's), the user's
/// berth in a leaf of it. Containers get cgroups there, with their
/// limits, and no warning.
#[test]
#[ignore = "runs in the cgroup v2 guest (rootless_limits_apply_where_a_cgroup_is_delegated)"]
fn guest_rootless_delegated_limits() {
    let Some(u) = TestUser::new(true) else {
        panic!("the guest has useradd, newuidmap and runuser");
    };
    let deleg = format!("/sys/fs/cgroup/berth-{}", u.name);
    std::fs::create_dir(&deleg).unwrap();
    std::fs::write(format!("{deleg}/cgroup.subtree_control"), "+memory +pids").unwrap();
    std::fs::create_dir(format!("{deleg}/cli")).unwrap();
    let owner = format!("{}:{}", u.name, u.name);
    for f in [
        "",
        "/cgroup.procs",
        "/cgroup.subtree_control",
        "/cgroup.threads",
        "/cli",
        "/cli/cgroup.procs",
    ] {
        let ok = Command::new("chown")
            .arg(&owner)
            .arg(format!("{deleg}{f}"))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let tar = format!("/home/{}/busybox.tar", u.name);
    std::fs::write(&tar, busybox_layer()).unwrap();
    let own = Command::new("chown")
        .arg(&owner)
        .arg(&tar)
        .status()
        .unwrap();
    assert!(own.success());
    // berth as the user, from the delegated leaf.
    let in_leaf = |args: &[&str]| {
        let inner = u.command(berth_bin());
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("echo $$ > {deleg}/cli/cgroup.procs && exec \"$@\""))
            .arg("sh")
            .arg(inner.get_program())
            .args(inner.get_args())
            .args(args)
            .current_dir("/");
        c.output().unwrap()
    };
    let out = in_leaf(&["import", &tar, "localhost/bb"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = in_leaf(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-m",
        "64m",
        "--pids-limit",
        "42",
        "localhost/bb",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max",
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "67108864\n42\n", "{stderr}");
    assert!(!stderr.contains("ignored"), "{stderr}");
    let _ = Command::new("pkill")
        .args(["-KILL", "-u", &u.name])
        .status();
}

#[test]
fn fuse_overlayfs_serves_a_users_snapshots_where_asked() {
    let Some(u) = TestUser::new(true) else {
        return;
    };
    require!("fuse-overlayfs");
    let layer = layer_tar(&[
        E::File(".wh.www", 0o644, Vec::new()),
        E::Dir("etc", 0o755),
        E::File("etc/.wh..wh..opq", 0o644, Vec::new()),
        E::File("etc/only", 0o644, b"o".to_vec()),
    ]);
    let (reg, _d) = registry_with(&[("opq", layer)]);
    let image = format!("{}/opq:latest", reg.host());
    u.ok(&["pull", "-q", "--tls-verify=false", &image]);
    let fuse = ["BERTH_OVERLAY_MOUNT=fuse-overlayfs"];
    let out = u.berth_with(
        &fuse,
        &[
            "run", "--name", "f", "--network", "none", &image, "sh", "-c",
            "grep -c ' / .* fuse.fuse-overlayfs ' /proc/self/mountinfo; ls /www 2>&1; ls /etc | grep -v -e hosts -e hostname -e resolv.conf; echo new > /made",
        ],
    );
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        seen.starts_with("1\n") && seen.contains("/www: No such file") && seen.contains("only\n"),
        "{seen}"
    );
    assert!(
        !seen.contains("passwd"),
        "the opaque /etc hides the lower's: {seen}"
    );
    // The upper dir it wrote is read as a kernel overlay's: commit sees
    // the new file.
    u.ok(&["commit", "f", "localhost/made"]);
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "localhost/made",
        "cat",
        "/made",
    ]);
    assert_eq!(out, "new\n");
    assert_eq!(u.processes("fuse-overlayfs").len(), 1);
    assert!(u.berth_with(&fuse, &["rm", "f"]).status.success());
    u.wait_processes("fuse-overlayfs", 0);
}

/// The host's default gateway (pasta gives a namespace the same, and
/// takes connections to it to the host's loopback), if it has one.
fn host_gateway() -> Option<std::net::Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000"))
            .then(|| u32::from_str_radix(f.get(2)?, 16).ok())
            .flatten()
            .map(|g| std::net::Ipv4Addr::from(g.to_le_bytes()))
    })
}

#[test]
fn a_users_bridge_network_joins_its_containers_by_name_reaches_out_and_publishes() {
    let Some(u) = TestUser::new(true) else {
        return;
    };
    require!("pasta");
    let (reg, _d, image) = pulled_busybox(&u);
    u.ok(&["network", "create", "mine"]);
    u.serve("srv", &["--network", "mine"], &image);
    let seen = u.ok(&[
        "run",
        "--rm",
        "--network",
        "mine",
        &image,
        "wget",
        "-q",
        "-O-",
        "http://srv/index.html",
    ]);
    assert_eq!(seen, "hello from berth\n");
    // Out through the user's bridge home and its pasta: the registry on
    // the host's loopback, by the gateway pasta maps to it.
    if let Some(gw) = host_gateway() {
        let url = format!("http://{gw}:{}/v2/", reg.port);
        let seen = u.ok(&[
            "run",
            "--rm",
            "--network",
            "mine",
            &image,
            "wget",
            "-q",
            "-O-",
            &url,
        ]);
        assert_eq!(seen.trim(), "{}");
    }
    // The bridge is in the user's bridge home (a namespace of its own).
    let bridge = u.ok(&["network", "inspect", "-f", "{{.NetworkInterface}}", "mine"]);
    let home = format!("/tmp/berth-run-{}/netns/berth-bridges", u.uid());
    let link = u.ok(&[
        "unshare",
        "nsenter",
        &format!("--net={home}"),
        "ip",
        "-d",
        "link",
        "show",
        bridge.trim(),
    ]);
    assert!(link.contains("bridge"), "{link}");
    // A port published from a bridge network answers on the host, through
    // a pasta that only publishes; the container keeps its bridge address.
    let port = free_port();
    u.serve(
        "pub",
        &["--network", "mine", "-p", &format!("{port}:80")],
        &image,
    );
    assert_eq!(http_get(port, "/index.html"), "hello from berth\n");
    let addr = u.ok(&["exec", "pub", "ip", "addr", "show", "eth0"]);
    assert!(addr.contains("inet 10.77."), "{addr}");
    u.ok(&["rm", "-f", "srv", "pub"]);
    // The bridge home's pasta stays; the publishing one went.
    u.wait_processes("pasta", 1);
    u.ok(&["network", "rm", "mine"]);
    assert_eq!(u.ok(&["network", "ls", "-q"]).trim(), "");
}

#[test]
fn berth_runtime_runs_a_rootless_spec_as_an_ordinary_user() {
    let Some(u) = TestUser::new(true) else {
        return;
    };
    let runtime = std::path::Path::new(berth_bin()).with_file_name("berth-runtime");
    let bundle = format!("/home/{}/bundle", u.name);
    let tar = format!("/home/{}/rootfs.tar", u.name);
    std::fs::write(&tar, busybox_layer()).unwrap();
    let owner = format!("{}:{}", u.name, u.name);
    assert!(
        Command::new("chown")
            .args([&owner, &tar])
            .status()
            .unwrap()
            .success()
    );
    let make = format!(
        "mkdir -p {bundle}/rootfs && tar -C {bundle}/rootfs -xf {tar} && cd {bundle} && {} spec --rootless",
        runtime.display()
    );
    let out = u.command("sh").args(["-c", &make]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The command, without a terminal: the id and the map from inside.
    let path = format!("{bundle}/config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let run = format!("cd {bundle} && {} run rootless1", runtime.display());
    let out = u.command("sh").args(["-c", &run]).output().unwrap();
    let seen = stdout_of("berth-runtime run as the user", out);
    let lines: Vec<Vec<&str>> = seen
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"]);
    assert_eq!(lines[1], ["0", &u.uid().to_string(), "1"]);
}
