//! docker's everyday `run` flags: -P, --add-host, --dns*, --label-file,
//! --cidfile, --cgroup-parent, --platform, a JSON --entrypoint, --log-opt,
//! --userns; each seen from inside the container or on the host.

use std::io::{Read, Write};

use serde_json::json;

use crate::env::*;
use crate::support::Layout;

fn http_get(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn publish_all_takes_the_images_exposed_ports() {
    let env = Env::new();
    let dir = env.sb.path().join("layout-web");
    let mut l = Layout::new(&dir);
    let (desc, _) = l.image(
        &[busybox_layer()],
        true,
        "amd64",
        json!({"Cmd": ["httpd", "-f", "-p", "80", "-h", "/www"], "Env": ["PATH=/bin"],
               "ExposedPorts": {"80/tcp": {}}}),
    );
    l.tag(desc, "latest");
    env.reg
        .push_layout(&dir, "latest", "web:latest", "oci", false);
    let image = format!("{}/web:latest", env.reg.host());
    env.ok(&["pull", "-q", "--tls-verify=false", &image]);
    let id = env.ok(&["run", "-d", "-P", &image]).trim().to_string();
    let port = env.ok(&["port", &id]);
    let host_port: u16 = port
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{port}"));
    assert!(port.starts_with("80/tcp"), "{port}");
    wait_for("the published port answering", || {
        http_get(host_port).is_some_and(|r| r.contains("hello from berth"))
    });
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn hosts_dns_labels_cidfile_cgroup_platform_entrypoint_and_logs() {
    let env = Env::new();
    let img = env.image.clone();
    let out = env.ok(&[
        "run",
        "--rm",
        "--add-host",
        "db.test:10.1.2.3",
        "--add-host",
        "gw.test:host-gateway",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "ex.test",
        "--dns-option",
        "ndots:3",
        &img,
        "sh",
        "-c",
        "cat /etc/hosts /etc/resolv.conf; ip route | grep default",
    ]);
    assert!(out.contains("10.1.2.3\tdb.test"), "{out}");
    let gw = out
        .lines()
        .find(|l| l.starts_with("default"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap();
    assert!(out.contains(&format!("{gw}\tgw.test")), "{out}");
    assert!(out.contains("nameserver 192.0.2.53"), "{out}");
    assert!(out.contains("search ex.test"), "{out}");
    assert!(out.contains("ndots:3"), "{out}");

    let labels = env.sb.path().join("labels");
    std::fs::write(
        &labels,
        "# team labels\ntier=web\n\n  owner=ops\nnote=two  spaces  \n",
    )
    .unwrap();
    let cid = env.sb.path().join("cid");
    let parent = format!("berth-test-parent-{}", std::process::id());
    let id = env.run_d(
        &[
            "--label-file",
            labels.to_str().unwrap(),
            "-l",
            "owner=dev",
            "--cidfile",
            cid.to_str().unwrap(),
            "--cgroup-parent",
            &parent,
            "--platform",
            "linux/amd64",
            "--entrypoint",
            r#"["sh", "-c", "for i in $(seq 1 300); do echo line-$i-0123456789; done; sleep 1000"]"#,
            "--log-opt",
            "max-size=2k",
            "--log-opt",
            "max-file=2",
        ],
        &[],
    );
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
    let v = env.inspect(&id);
    let labels = &v["Config"]["Labels"];
    assert_eq!(labels["tier"], "web", "{labels}");
    assert_eq!(labels["owner"], "dev", "the flag goes last: {labels}");
    // Trailing spaces are the value's, as docker and podman read the file.
    assert_eq!(labels["note"], "two  spaces  ", "{labels}");
    let pid = v["State"]["Pid"].as_u64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&parent), "{cg}");
    // Rotated at 2 KiB, two old files kept at most.
    let log = std::path::PathBuf::from(v["LogPath"].as_str().unwrap());
    wait_for("the log rotated", || log.with_extension("log.1").exists());
    wait_for("the output written", || {
        env.ok(&["logs", &id]).contains("line-300-")
    });
    assert!(!log.with_extension("log.3").exists());
    assert!(std::fs::metadata(&log).unwrap().len() <= 4096);

    // The same cidfile again: refused before anything is made.
    let before = env.ids().len();
    let (_, err) = env.code(
        125,
        &[
            "run",
            "-d",
            "--cidfile",
            cid.to_str().unwrap(),
            &img,
            "true",
        ],
    );
    assert!(err.contains("exists"), "{err}");
    assert_eq!(env.ids().len(), before);
    env.ok(&["rm", "-f", &id]);

    for (flags, want) in [
        (&["--platform", "linux/arm64"][..], "linux/amd64 only"),
        (&["--userns", "auto"][..], "--uidmap"),
        (&["--add-host", "nohost"][..], "HOST:IP"),
        (&["--add-host", "a:not-an-ip"][..], "not an IP"),
        (&["--dns", "resolver"][..], "not an IP"),
        (&["--log-opt", "compress=true"][..], "max-size"),
        (&["--entrypoint", "[\"sh\""][..], "JSON array"),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend([img.as_str(), "true"]);
        let (_, err) = env.code(125, &args);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    assert!(env.ids().is_empty());
}

/// Debian's (iputils') ping and the libraries it loads, at their paths,
/// without its file capability: busybox's ping needs a raw socket (so
/// NET_RAW), iputils' falls back to an ICMP datagram socket.
fn ping_layer() -> Vec<u8> {
    use crate::support::E;
    let out = std::process::Command::new("ldd")
        .arg("/usr/bin/ping")
        .output()
        .expect("ldd");
    let mut files = vec!["/usr/bin/ping".to_string()];
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; not linux-vdso.
        if let Some(path) = l.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(path.to_string());
        }
    }
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut dirs = std::collections::BTreeSet::new();
    let mut entries = Vec::new();
    for f in &files {
        let rel = f.trim_start_matches('/');
        let mut parent = std::path::Path::new(rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.display().to_string());
            parent = p.parent();
        }
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        entries.push(E::File(leak(rel.to_string()), 0o755, data));
    }
    let mut all: Vec<E> = dirs.into_iter().map(|d| E::Dir(leak(d), 0o755)).collect();
    all.extend(entries);
    crate::support::layer_tar(&all)
}

#[test]
fn a_user_pings_in_a_default_container_without_net_raw() {
    if !std::path::Path::new("/usr/bin/ping").exists() {
        eprintln!("SKIPPED: iputils-ping is not installed");
        return;
    }
    let env = Env::new();
    let img = env.image_with("pinger", ping_layer());
    let ping = |flags: &[&str]| {
        let mut args = vec!["run", "--rm", "-u", "65534"];
        args.extend_from_slice(flags);
        args.extend([
            img.as_str(),
            "/usr/bin/ping",
            "-c",
            "1",
            "-W",
            "2",
            "127.0.0.1",
        ]);
        env.berth(&args)
    };
    // nobody, with no capability at all: an ICMP echo answered, on the
    // default network, on none (its `lo` up) and in a user namespace.
    for flags in [
        &[][..],
        &["--network", "none"][..],
        &["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"][..],
    ] {
        let out = ping(flags);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 received"),
            "{flags:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The range is what lets it: closed with --sysctl, ping is refused.
    let out = ping(&["--sysctl", "net.ipv4.ping_group_range=1 0"]);
    assert!(!out.status.success(), "{out:?}");
    // The host's own range is left alone with --network host.
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let seen = env.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        &img,
        "cat",
        "/proc/sys/net/ipv4/ping_group_range",
    ]);
    assert_eq!(seen, host, "the host's own is left alone");
    // Nor is it changed (or the run refused) through a container that
    // joins a host-networked one.
    env.run_d(
        &["--network", "host", "--name", "on-host"],
        &["sleep", "1000"],
    );
    let seen = env.ok(&[
        "run",
        "--rm",
        "--network",
        "container:on-host",
        &img,
        "cat",
        "/proc/sys/net/ipv4/ping_group_range",
    ]);
    assert_eq!(seen, host);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap(),
        host
    );
    env.ok(&["rm", "-f", "on-host"]);
}

#[test]
fn privileged_gets_the_hosts_devices() {
    use std::os::unix::fs::FileTypeExt;
    let env = Env::new();
    let img = env.image.clone();
    // A block device of the host's (a disk, a loop device).
    let dev = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
        .map(|e| e.path().display().to_string())
        .expect("a block device in /dev");
    let look = format!("test -b {dev} && echo present || echo absent");
    let seen = env.ok(&["run", "--rm", "--privileged", &img, "sh", "-c", &look]);
    assert_eq!(seen.trim(), "present", "{dev}");
    let seen = env.ok(&["run", "--rm", &img, "sh", "-c", &look]);
    assert_eq!(seen.trim(), "absent", "{dev}");
}

/// --pull never|missing|always, --memory-swap and --cpuset-cpus, each seen
/// where it acts: which image ran, the cgroup's limits, the CPUs allowed.
#[test]
fn pull_policies_memory_swap_and_cpuset() {
    use crate::support::{E, layer_tar};
    let env = Env::new();
    let img = env.image.clone();
    // never: a missing image is refused, nothing made.
    let (_, err) = env.code(
        125,
        &[
            "run",
            "--rm",
            "--pull",
            "never",
            "localhost/not-here:1",
            "true",
        ],
    );
    assert!(err.contains("never"), "{err}");
    assert!(env.ids().is_empty());
    // The registry's tag moves to an image with /marker: missing runs the
    // one in the store, always pulls the new one first.
    env.image_with(
        "moved",
        layer_tar(&[E::File("marker", 0o644, b"new\n".to_vec())]),
    );
    env.reg.push_layout(
        &env.sb.path().join("layout-moved"),
        "latest",
        "busybox:latest",
        "oci",
        false,
    );
    let cat = |policy: &str| {
        env.berth(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--pull",
            policy,
            "--tls-verify=false",
            &img,
            "cat",
            "/marker",
        ])
    };
    assert!(
        !cat("missing").status.success(),
        "the stored image has no marker"
    );
    assert!(!cat("never").status.success());
    let out = cat("always");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "new\n", "{out:?}");
    // Memory and swap together (docker's --memory-swap is their sum), and
    // the CPUs the process may run on.
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--cpuset-cpus",
        "0",
        &img,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null \
         || cat /sys/fs/cgroup/memory.swap.max; grep Cpus_allowed_list /proc/self/status",
    ]);
    let mut lines = out.lines();
    let swap = lines.next().unwrap();
    // v1: memory and swap together; v2: swap alone.
    assert!(swap == "134217728" || swap == "67108864", "{out}");
    assert_eq!(
        lines.next().unwrap().split_whitespace().last(),
        Some("0"),
        "{out}"
    );
}
