//! The CNI runner against Debian's real plugins, as root, in network
//! namespaces the tests create.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use berth_network::{CniError, PortMapping, link, netns};
use support::{Fixture, in_netns, private_chains};

/// Asserts that everything an attachment made on the host is gone, given
/// the private chains seen while it was up.
fn assert_host_clean(fx: &Fixture, chains: &[String]) {
    let left: Vec<String> = support::iptables_save()
        .into_iter()
        .filter(|l| chains.iter().any(|c| l.contains(c.as_str())))
        // The network's own masquerade rule stays until the network goes.
        .chain(
            fx.our_rules()
                .into_iter()
                .filter(|l| !l.contains("berth network")),
        )
        .collect();
    assert!(left.is_empty(), "iptables leftovers: {left:#?}");
    assert_eq!(fx.ipam_leases(), Vec::<String>::new(), "IPAM leases left");
    let cache = fx.cni.state_dir.join("cache").join(&fx.net.name);
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(entries.is_empty(), "cache entries left: {entries:?}");
}

#[test]
fn two_containers_on_one_network_reach_each_other() {
    let mut fx = Fixture::new("t-ping", 1);
    let (a, b) = (fx.netns("a"), fx.netns("b"));
    let (ca, cb) = (fx.cid("a"), fx.cid("b"));
    fx.track(&ca, "eth0");
    fx.track(&cb, "eth0");
    let att_a = fx.cni.attach(&fx.net, &ca, &a, "eth0", &[], &[]).unwrap();
    // CNI_ARGS reach the plugins: host-local honours a requested IP.
    let args = [
        ("IgnoreUnknown".to_string(), "1".to_string()),
        ("IP".to_string(), "10.77.201.50".to_string()),
    ];
    let att_b = fx.cni.attach(&fx.net, &cb, &b, "eth0", &[], &args).unwrap();
    assert_eq!(att_b.ips[0].to_string(), "10.77.201.50/24");

    assert_eq!(att_a.network, "t-ping");
    assert_eq!(att_a.interface, "eth0");
    assert_eq!(att_a.gateway, Some(IpAddr::V4(fx.net.gateway)));
    assert!(
        att_a.mac.as_deref().is_some_and(|m| m.len() == 17),
        "{att_a:?}"
    );
    assert_eq!(att_a.ips.len(), 1);
    let ip_b = att_b.ips[0].addr();
    assert!(ipnet::IpNet::V4(fx.net.subnet).contains(&att_a.ips[0].addr()));
    assert_ne!(att_a.ips[0], att_b.ips[0]);

    let out = in_netns(&a, &["busybox", "ping", "-c1", "-W2", &ip_b.to_string()]);
    assert!(out.status.success(), "ping a -> b: {out:?}");
    fx.cni.check(&fx.net.name, &ca, &a, "eth0").unwrap();

    let chains = private_chains(&fx.our_rules());
    let masq = fx
        .our_rules()
        .into_iter()
        .filter(|l| l.contains("MASQUERADE") && l.contains("berth network"))
        .count();
    assert_eq!(
        masq,
        1,
        "one masquerade rule for the network: {:#?}",
        fx.our_rules()
    );
    assert_eq!(fx.ipam_leases().len(), 2);
    fx.cni.detach(&fx.net.name, &ca, &a, "eth0", None).unwrap();
    fx.cni.detach(&fx.net.name, &cb, &b, "eth0", None).unwrap();
    // The container side is gone with the veth pair.
    let gone = netns::run_in(&a, || link::index("eth0").unwrap()).unwrap();
    assert_eq!(gone, None);
    assert_host_clean(&fx, &chains);
    // Idempotent, and CHECK knows it is gone.
    fx.cni.detach(&fx.net.name, &ca, &a, "eth0", None).unwrap();
    let e = fx.cni.check(&fx.net.name, &ca, &a, "eth0").unwrap_err();
    assert!(matches!(e, CniError::NotAttached { .. }), "{e}");
}

/// A TCP server inside `ns` answering each connection with "pong".
fn serve(ns: &Path, port: u16, conns: usize) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_path_buf();
    let t = std::thread::spawn(move || {
        netns::run_in(&ns, move || {
            let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
            tx.send(()).unwrap();
            for _ in 0..conns {
                let (mut s, _) = l.accept().unwrap();
                s.write_all(b"pong").unwrap();
            }
        })
        .unwrap();
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("server listening");
    t
}

fn fetch(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf
}

#[test]
fn published_port_reaches_a_server_via_localhost_and_the_gateway() {
    let mut fx = Fixture::new("t-port", 2);
    let ns = fx.netns("srv");
    let cid = fx.cid("srv");
    fx.track(&cid, "eth0");
    let ports = PortMapping::parse("8080").unwrap();
    let hp = ports[0].host_port;
    fx.cni
        .attach(&fx.net, &cid, &ns, "eth0", &ports, &[])
        .unwrap();
    // portmap sets this itself when snat is on; without it the kernel
    // drops DNATed packets from 127.0.0.1 that leave through the bridge.
    let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", fx.net.bridge);
    assert_eq!(std::fs::read_to_string(localnet).unwrap().trim(), "1");
    let server = serve(&ns, 8080, 2);
    assert_eq!(fetch(SocketAddr::from(([127, 0, 0, 1], hp))), "pong");
    assert_eq!(
        fetch(SocketAddr::new(IpAddr::V4(fx.net.gateway), hp)),
        "pong"
    );
    server.join().unwrap();

    let chains = private_chains(&fx.our_rules());
    assert!(
        chains.iter().any(|c| c.starts_with("CNI-DN-")),
        "{chains:?}"
    );
    fx.cni
        .detach(&fx.net.name, &cid, &ns, "eth0", None)
        .unwrap();
    assert_host_clean(&fx, &chains);
    // Nothing forwards the port any more.
    let refused = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], hp)),
        Duration::from_secs(2),
    );
    assert!(refused.is_err());
}

#[test]
fn detach_after_the_netns_is_gone_still_frees_everything() {
    let mut fx = Fixture::new("t-gone", 3);
    let ns = fx.netns("c");
    let cid = fx.cid("c");
    fx.track(&cid, "eth0");
    let ports = PortMapping::parse("127.0.0.1::80").unwrap();
    fx.cni
        .attach(&fx.net, &cid, &ns, "eth0", &ports, &[])
        .unwrap();
    let chains = private_chains(&fx.our_rules());
    assert!(!chains.is_empty(), "DNAT chains expected: {chains:?}");
    assert_eq!(fx.ipam_leases().len(), 1);

    netns::remove(&ns).unwrap();
    assert!(!netns::exists(&ns));
    fx.cni
        .detach(&fx.net.name, &cid, &ns, "eth0", None)
        .unwrap();
    assert_host_clean(&fx, &chains);
    fx.cni
        .detach(&fx.net.name, &cid, &ns, "eth0", None)
        .unwrap();
}

#[test]
fn an_unreadable_cache_entry_does_not_make_an_attachment_unremovable() {
    let mut fx = Fixture::new("t-badcache", 10);
    let ns = fx.netns("c");
    let cid = fx.cid("c");
    fx.track(&cid, "eth0");
    let ports = PortMapping::parse("127.0.0.1::80").unwrap();
    fx.cni
        .attach(&fx.net, &cid, &ns, "eth0", &ports, &[])
        .unwrap();
    let chains = private_chains(&fx.our_rules());
    assert_eq!(fx.ipam_leases().len(), 1);
    // What a kill -9 during an older berth's write of the entry left.
    let entry = fx
        .cni
        .state_dir
        .join("cache")
        .join(&fx.net.name)
        .join(format!("{cid}-eth0.json"));
    std::fs::write(&entry, b"").unwrap();
    let warning = fx
        .cni
        .detach(&fx.net.name, &cid, &ns, "eth0", Some((&fx.net, &ports)))
        .unwrap()
        .expect("the skipped entry is reported");
    assert!(warning.contains("unusable"), "{warning}");
    assert!(!entry.exists());
    assert_host_clean(&fx, &chains);
    assert!(fx.ipam_leases().is_empty(), "the address is released");

    // Without the network's record, the entry still goes (with a word);
    // the plugins cannot run, so this attach makes no firewall rules that
    // would stay behind.
    fx.cni.firewall = Some(false);
    fx.cni.attach(&fx.net, &cid, &ns, "eth0", &[], &[]).unwrap();
    std::fs::write(&entry, b"{").unwrap();
    let w = fx
        .cni
        .detach(&fx.net.name, &cid, &ns, "eth0", None)
        .unwrap()
        .unwrap();
    assert!(w.contains("could not run"), "{w}");
    assert!(!entry.exists());
}

/// A plugin dir with a fake `firewall` (the last plugin of the chain): the
/// real bridge and portmap run first, so a failure must undo them.
fn fake_plugin_dir(fx: &Fixture, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = fx.dir.path().join("fake-plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("firewall");
    let script =
        format!("#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\n{body}\n");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn assert_failed_attach_left_nothing(fx: &Fixture, ns: &Path) {
    assert_host_clean(fx, &[]);
    let eth0 = netns::run_in(ns, || link::index("eth0").unwrap()).unwrap();
    assert_eq!(eth0, None, "container interface left behind");
}

#[test]
fn a_plugin_error_is_reported_and_the_chain_undone() {
    let mut fx = Fixture::new("t-fail", 4);
    let ns = fx.netns("c");
    let cid = fx.cid("c");
    fx.track(&cid, "eth0");
    let dir = fake_plugin_dir(
        &fx,
        r#"echo '{"cniVersion":"1.0.0","code":100,"msg":"no firewall today","details":"fake"}'; exit 1"#,
    );
    fx.cni.plugin_dirs.insert(0, dir);
    let ports = PortMapping::parse("127.0.0.1::80").unwrap();
    let e = fx
        .cni
        .attach(&fx.net, &cid, &ns, "eth0", &ports, &[])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "network t-fail: CNI plugin firewall ADD failed: no firewall today (code 100): fake"
    );
    assert_failed_attach_left_nothing(&fx, &ns);
}

#[test]
fn garbage_output_and_hangs_are_errors_naming_the_plugin() {
    let mut fx = Fixture::new("t-junk", 5);
    let ns = fx.netns("c");
    let cid = fx.cid("c");
    fx.track(&cid, "eth0");
    let dir = fake_plugin_dir(&fx, "echo 'this is not json'");
    fx.cni.plugin_dirs.insert(0, dir);
    let e = fx
        .cni
        .attach(&fx.net, &cid, &ns, "eth0", &[], &[])
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CniError::BadOutput { .. }), "{msg}");
    assert!(
        msg.contains("plugin firewall") && msg.contains("this is not json"),
        "{msg}"
    );
    assert_failed_attach_left_nothing(&fx, &ns);

    // A child that keeps the pipes open must not keep us waiting either.
    fake_plugin_dir(&fx, "sleep 30 & sleep 30");
    fx.cni.timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let e = fx
        .cni
        .attach(&fx.net, &cid, &ns, "eth0", &[], &[])
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e, CniError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("firewall"), "{e}");
    assert_failed_attach_left_nothing(&fx, &ns);
}

#[test]
fn a_missing_plugin_fails_before_anything_runs() {
    let mut fx = Fixture::new("t-miss", 6);
    let ns = fx.netns("c");
    let cid = fx.cid("c");
    let empty = fx.dir.path().join("no-plugins");
    std::fs::create_dir_all(&empty).unwrap();
    fx.cni.plugin_dirs = vec![empty.clone()];
    let e = fx
        .cni
        .attach(&fx.net, &cid, &ns, "eth0", &[], &[])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "network t-miss: CNI plugin \"bridge\" not found in {}",
            empty.display()
        )
    );
    assert!(!fx.cni.state_dir.join("cache").exists());
}

#[test]
fn bad_inputs_are_refused_before_anything_runs() {
    let mut fx = Fixture::new("t-bad", 7);
    let ns = fx.netns("c");
    let cid = fx.cid("c");
    let mut bad = fx.net.clone();
    bad.subnet = "10.77.207.5/24".parse().unwrap();
    let e = fx
        .cni
        .attach(&bad, &cid, &ns, "eth0", &[], &[])
        .unwrap_err();
    assert!(e.to_string().contains("not a network address"), "{e}");
    let e = fx
        .cni
        .attach(&fx.net, "../../etc", &ns, "eth0", &[], &[])
        .unwrap_err();
    assert!(e.to_string().contains("container id"), "{e}");
    let e = fx
        .cni
        .attach(&fx.net, &cid, &ns, "eth0/..", &[], &[])
        .unwrap_err();
    assert!(e.to_string().contains("interface name"), "{e}");
    let args = [("K".to_string(), "a;b".to_string())];
    let e = fx
        .cni
        .attach(&fx.net, &cid, &ns, "eth0", &[], &args)
        .unwrap_err();
    assert!(e.to_string().contains("CNI argument"), "{e}");
    let e = fx
        .cni
        .attach(&fx.net, &cid, Path::new("/nonexistent"), "eth0", &[], &[])
        .unwrap_err();
    assert!(e.to_string().contains("not a network namespace"), "{e}");
    assert!(!fx.cni.state_dir.exists(), "nothing written");
}

#[test]
fn a_second_attach_of_the_same_interface_is_refused() {
    let mut fx = Fixture::new("t-twice", 8);
    let ns = fx.netns("c");
    let cid = fx.cid("c");
    fx.track(&cid, "eth0");
    fx.cni.attach(&fx.net, &cid, &ns, "eth0", &[], &[]).unwrap();
    let e = fx
        .cni
        .attach(&fx.net, &cid, &ns, "eth0", &[], &[])
        .unwrap_err();
    assert!(matches!(e, CniError::AlreadyAttached { .. }), "{e}");
    let chains = private_chains(&fx.our_rules());
    fx.cni
        .detach(&fx.net.name, &cid, &ns, "eth0", None)
        .unwrap();
    assert_host_clean(&fx, &chains);
    // remove_network takes the bridge away.
    assert!(link::index(&fx.net.bridge).unwrap().is_some());
    fx.cni.remove_network(&fx.net).unwrap();
    assert_eq!(link::index(&fx.net.bridge).unwrap(), None);
}

#[test]
fn a_failed_cleanup_keeps_the_cache_so_a_later_detach_finishes_it() {
    let mut fx = Fixture::new("t-retry", 9);
    let ns = fx.netns("c");
    let cid = fx.cid("c");
    fx.track(&cid, "eth0");
    // A firewall that fails ADD and DEL alike.
    let dir = fx.dir.path().join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("firewall");
    std::fs::write(&p, "#!/bin/sh\necho 'broken' >&2\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    fx.cni.plugin_dirs.insert(0, dir.clone());
    let e = fx
        .cni
        .attach(&fx.net, &cid, &ns, "eth0", &[], &[])
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CniError::CleanupFailed { .. }), "{msg}");
    assert!(
        msg.contains("firewall ADD failed: exit status: 3: broken"),
        "{msg}"
    );
    assert!(msg.contains("firewall DEL failed"), "{msg}");
    // bridge and portmap were undone despite the firewall's DEL failing.
    assert!(fx.ipam_leases().is_empty());
    // The entry stays, so the engine can retry once the plugin works.
    fx.cni.plugin_dirs.retain(|d| d != &dir);
    fx.cni
        .detach(&fx.net.name, &cid, &ns, "eth0", None)
        .unwrap();
    assert_failed_attach_left_nothing(&fx, &ns);
}
