//! What a VM runtime needs to plug a QEMU tap device into a container's
//! netns: read an interface's configuration for the guest, copy settings,
//! make a tap, and tc-redirect frames between the tap and the veth.
//! Each test works in netns of its own, removed in Drop even on failure;
//! `ip` and `tc` only check results.

mod support;

use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use berth_network::link::{self, LinkConfig, Route};
use berth_network::{netns, tc};
use ipnet::IpNet;
use serde_json::Value;

/// Network namespaces of one test, pinned in a temporary directory.
struct Namespaces {
    dir: tempfile::TempDir,
}

impl Namespaces {
    fn new() -> Namespaces {
        Namespaces {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn pins(&self) -> PathBuf {
        self.dir.path().join("netns")
    }

    fn create(&self, name: &str) -> PathBuf {
        netns::create(&self.pins(), name).unwrap()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Every interface made here dies with its netns.
        for p in std::fs::read_dir(self.pins())
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = netns::remove(&p.path());
        }
        support::unmount_all(&self.pins());
    }
}

/// Runs `cmd` (ip, tc, ...) in the netns at `ns`; it must succeed.
fn run(ns: &Path, cmd: &[&str]) -> String {
    let out = support::in_netns(ns, cmd);
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn json(ns: &Path, cmd: &[&str]) -> Value {
    serde_json::from_str(&run(ns, cmd)).unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn route(dst: &str, gateway: Option<&str>) -> Route {
    Route {
        dst: net(dst),
        gateway: gateway.map(|g| g.parse::<IpAddr>().unwrap()),
    }
}

fn sorted(mut routes: Vec<Route>) -> Vec<Route> {
    routes.sort_by_key(|r| (r.dst, r.gateway));
    routes
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// A veth pair `a`/`b` in `ns`, both up.
fn veth(ns: &Path, a: &str, b: &str) {
    run(
        ns,
        &["ip", "link", "add", a, "type", "veth", "peer", "name", b],
    );
    run(ns, &["ip", "link", "set", a, "up"]);
    run(ns, &["ip", "link", "set", b, "up"]);
}

fn in_ns<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
    netns::run_in(ns, f).unwrap()
}

#[test]
fn config_reports_what_the_guest_must_recreate() {
    let nss = Namespaces::new();
    let ns = nss.create("config");
    veth(&ns, "veth-a", "veth-b");
    for cmd in [
        "addr add 10.99.0.2/24 dev veth-a",
        "addr add fd00:99::2/64 dev veth-a",
        "route add default via 10.99.0.1",
        "route add 10.98.0.0/16 via 10.99.0.1",
    ] {
        let mut args = vec!["ip"];
        args.extend(cmd.split(' '));
        run(&ns, &args);
    }
    // The link-local address config must leave out: wait for it to exist.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !run(&ns, &["ip", "-6", "addr", "show", "dev", "veth-a"]).contains("fe80:") {
        assert!(Instant::now() < deadline, "no IPv6 link-local address");
        std::thread::sleep(Duration::from_millis(20));
    }
    // And the kernel's connected route it must leave out too.
    assert!(run(&ns, &["ip", "route"]).contains("10.99.0.0/24 dev veth-a proto kernel"));

    let c = in_ns(&ns, || link::config("veth-a")).unwrap();
    let shown = &json(&ns, &["ip", "-j", "link", "show", "veth-a"])[0];
    assert_eq!(
        c,
        LinkConfig {
            name: "veth-a".into(),
            mac: parse_mac(shown["address"].as_str().unwrap()),
            mtu: shown["mtu"].as_u64().unwrap() as u32,
            addrs: vec![net("10.99.0.2/24"), net("fd00:99::2/64")],
            routes: c.routes.clone(),
        }
    );
    assert_eq!(
        sorted(c.routes.clone()),
        sorted(vec![
            route("0.0.0.0/0", Some("10.99.0.1")),
            route("10.98.0.0/16", Some("10.99.0.1")),
        ])
    );
    // Its JSON form is what a guest agent gets.
    let back: LinkConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);

    // veth-b has no address and no route, only its link-local one.
    let b = in_ns(&ns, || link::config("veth-b")).unwrap();
    assert!(b.addrs.is_empty() && b.routes.is_empty(), "{b:?}");
    let e = in_ns(&ns, || link::config("nosuch")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
}

#[test]
fn a_tap_lives_as_long_as_its_fd() {
    let nss = Namespaces::new();
    let ns = nss.create("tap");
    let fd: OwnedFd = in_ns(&ns, || link::create_tap("tap0")).unwrap();
    let shown = &json(&ns, &["ip", "-j", "-d", "link", "show", "tap0"])[0];
    let flags: Vec<&str> = shown["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    // The tun driver reports no operstate (`state UNKNOWN`): the flags say
    // it is up, and has its carrier while the fd is open.
    assert!(
        flags.contains(&"UP") && flags.contains(&"LOWER_UP"),
        "{shown}"
    );
    let info = &shown["linkinfo"];
    assert_eq!(info["info_kind"], "tun", "{shown}");
    assert_eq!(info["info_data"]["type"], "tap", "{shown}");
    assert_eq!(info["info_data"]["pi"], false, "{shown}");
    assert_eq!(info["info_data"]["vnet_hdr"], false, "{shown}");
    assert_eq!(info["info_data"]["persist"], false, "{shown}");
    let fdflags = rustix::io::fcntl_getfd(&fd).unwrap();
    assert!(fdflags.contains(rustix::io::FdFlags::CLOEXEC));

    // The name is taken while it lives; never attached to twice.
    let e = in_ns(&ns, || link::create_tap("tap0")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
    let e = in_ns(&ns, || link::create_tap("a-name-far-too-long")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");

    drop(fd);
    let deadline = Instant::now() + Duration::from_secs(5);
    while in_ns(&ns, || link::index("tap0")).unwrap().is_some() {
        assert!(Instant::now() < deadline, "tap0 outlived its fd");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A spare VM's tap waits in one namespace and moves to the container's:
/// gone from the first, in the second under its name, its fd (QEMU's
/// NIC) still attached, and it dies with the fd there.
#[test]
fn a_tap_moves_to_another_namespace_with_its_fd() {
    let nss = Namespaces::new();
    let (from, to) = (nss.create("spare"), nss.create("container"));
    let fd: OwnedFd = in_ns(&from, || link::create_tap("vmtap0")).unwrap();
    let target = std::fs::File::open(&to).unwrap();
    in_ns(&from, || link::move_to_netns("vmtap0", target.as_fd())).unwrap();
    assert_eq!(in_ns(&from, || link::index("vmtap0")).unwrap(), None);
    in_ns(&to, || link::set_up("vmtap0")).unwrap();
    let shown = &json(&to, &["ip", "-j", "link", "show", "vmtap0"])[0];
    let flags = shown["flags"].to_string();
    // LOWER_UP: the carrier of a tap whose fd is open.
    assert!(
        flags.contains("\"UP\"") && flags.contains("LOWER_UP"),
        "{shown}"
    );
    let e = in_ns(&from, || link::move_to_netns("vmtap0", target.as_fd())).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    drop(fd);
    let deadline = Instant::now() + Duration::from_secs(5);
    while in_ns(&to, || link::index("vmtap0")).unwrap().is_some() {
        assert!(Instant::now() < deadline, "the moved tap outlived its fd");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn filters(ns: &Path, dev: &str) -> String {
    run(ns, &["tc", "filter", "show", "dev", dev, "ingress"])
}

#[test]
fn redirect_both_ways_replace_and_clear() {
    let nss = Namespaces::new();
    let ns = nss.create("redirect");
    veth(&ns, "veth-a", "veth-b");
    let _tap = in_ns(&ns, || {
        let tap = link::create_tap("tap0")?;
        tc::redirect("veth-a", "tap0")?;
        tc::redirect("tap0", "veth-a")?;
        Ok::<_, std::io::Error>(tap)
    })
    .unwrap();
    let out = filters(&ns, "veth-a");
    assert!(out.contains("u32"), "{out}");
    assert!(out.contains("match 00000000/00000000 at 0"), "{out}");
    assert!(out.contains("protocol all"), "{out}");
    let to_tap = "mirred (Egress Redirect to device tap0) stolen";
    assert_eq!(out.matches(to_tap).count(), 1, "{out}");
    let out = filters(&ns, "tap0");
    let to_veth = "mirred (Egress Redirect to device veth-a) stolen";
    assert_eq!(out.matches(to_veth).count(), 1, "{out}");

    // Again: the qdisc is replaced, still one redirect; then to elsewhere.
    in_ns(&ns, || tc::redirect("veth-a", "tap0")).unwrap();
    assert_eq!(filters(&ns, "veth-a").matches(to_tap).count(), 1);
    in_ns(&ns, || tc::redirect("veth-a", "veth-b")).unwrap();
    let out = filters(&ns, "veth-a");
    assert!(!out.contains(to_tap), "{out}");
    assert!(out.contains("to device veth-b) stolen"), "{out}");

    // Cleared: no qdisc, no filter; clearing again, or a missing
    // interface, is fine; and a redirect can be made afresh.
    in_ns(&ns, || tc::clear_redirect("veth-a")).unwrap();
    assert!(filters(&ns, "veth-a").trim().is_empty());
    let qdiscs = run(&ns, &["tc", "qdisc", "show", "dev", "veth-a"]);
    assert!(!qdiscs.contains("ingress"), "{qdiscs}");
    in_ns(&ns, || tc::clear_redirect("veth-a")).unwrap();
    in_ns(&ns, || tc::clear_redirect("nosuch")).unwrap();
    in_ns(&ns, || tc::redirect("veth-a", "tap0")).unwrap();
    assert_eq!(filters(&ns, "veth-a").matches(to_tap).count(), 1);

    // Missing devices are named.
    for (from, to) in [("veth-a", "nosuch"), ("nosuch", "tap0")] {
        let e = in_ns(&ns, || tc::redirect(from, to)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("no interface \"nosuch\""), "{e}");
    }
    // The earlier redirect survives a failed one to a missing device.
    assert_eq!(filters(&ns, "veth-a").matches(to_tap).count(), 1);

    // Someone else's clsact qdisc is not swept away.
    run(&ns, &["tc", "qdisc", "add", "dev", "veth-b", "clsact"]);
    let e = in_ns(&ns, || tc::redirect("veth-b", "tap0")).unwrap_err();
    assert!(e.to_string().contains("clsact"), "{e}");
    assert!(run(&ns, &["tc", "qdisc", "show", "dev", "veth-b"]).contains("clsact"));
}

#[test]
fn addresses_routes_mtu_and_mac_are_set() {
    let nss = Namespaces::new();
    let ns = nss.create("settings");
    run(
        &ns,
        &[
            "ip", "link", "add", "t4a", "type", "veth", "peer", "name", "t4b",
        ],
    );
    let mac = [0x02, 0x00, 0x00, 0x99, 0x00, 0x01];
    let routes = [
        route("0.0.0.0/0", Some("10.55.0.1")),
        route("10.56.0.0/16", Some("10.55.0.1")),
        route("10.57.0.0/16", None),
        route("fd00:56::/64", Some("fd00:55::1")),
    ];
    in_ns(&ns, || -> std::io::Result<()> {
        link::set_mtu("t4a", 1400)?;
        link::set_mac("t4a", mac)?;
        link::set_up("t4a")?;
        link::set_up("t4b")?;
        for a in ["10.55.0.2/24", "fd00:55::2/64"] {
            link::add_address("t4a", net(a))?;
            link::add_address("t4a", net(a))?;
        }
        for r in &routes {
            link::add_route("t4a", r)?;
        }
        // Twice is fine too; a gateway of the other family is not.
        link::add_route("t4a", &routes[0])?;
        let e = link::add_route("t4a", &route("10.58.0.0/16", Some("fd00:55::1"))).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        let e = link::add_address("nosuch", net("10.55.0.3/24")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        Ok(())
    })
    .unwrap();

    let shown = &json(&ns, &["ip", "-j", "addr", "show", "dev", "t4a"])[0];
    assert_eq!(shown["mtu"], 1400);
    assert_eq!(shown["address"], "02:00:00:99:00:01");
    let mut global: Vec<String> = shown["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    global.sort();
    assert_eq!(global, ["10.55.0.2/24", "fd00:55::2/64"]);

    let mut shown_routes: Vec<String> = Vec::new();
    for family in ["-4", "-6"] {
        let v = json(&ns, &["ip", "-j", family, "route", "show", "dev", "t4a"]);
        for r in v.as_array().unwrap() {
            if r["protocol"] != "kernel" {
                shown_routes.push(format!("{} {} {}", r["dst"], r["gateway"], r["scope"]));
            }
        }
    }
    shown_routes.sort();
    assert_eq!(
        shown_routes,
        [
            r#""10.56.0.0/16" "10.55.0.1" null"#,
            r#""10.57.0.0/16" null "link""#,
            r#""default" "10.55.0.1" null"#,
            r#""fd00:56::/64" "fd00:55::1" null"#,
        ],
    );

    // config reads back exactly what was set.
    let c = in_ns(&ns, || link::config("t4a")).unwrap();
    assert_eq!(c.mtu, 1400);
    assert_eq!(c.mac, mac);
    assert_eq!(c.addrs, [net("10.55.0.2/24"), net("fd00:55::2/64")]);
    assert_eq!(sorted(c.routes), sorted(routes.to_vec()));
}

/// Kills and reaps a child even when the test fails.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads frames from the non-blocking tap until `want` accepts one or the
/// deadline passes.
fn frame_matching(tap: &mut std::fs::File, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        match tap.read(&mut buf) {
            Ok(n) if want(&buf[..n]) => return Some(buf[..n].to_vec()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("reading the tap: {e}"),
        }
    }
    None
}

#[test]
fn redirected_frames_really_flow_between_veth_and_tap() {
    let nss = Namespaces::new();
    let n = nss.create("vm");
    let m = nss.create("peer");
    let peer = m.to_str().unwrap();
    run(
        &n,
        &[
            "ip", "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b", "netns", peer,
        ],
    );
    run(&n, &["ip", "link", "set", "veth-a", "up"]);
    run(&m, &["ip", "addr", "add", "10.77.0.1/24", "dev", "veth-b"]);
    run(&m, &["ip", "link", "set", "veth-b", "up"]);
    let tap = in_ns(&n, || {
        let tap = link::create_tap("tap0")?;
        tc::redirect("veth-a", "tap0")?;
        tc::redirect("tap0", "veth-a")?;
        Ok::<_, std::io::Error>(tap)
    })
    .unwrap();
    let fl = rustix::fs::fcntl_getfl(&tap).unwrap();
    rustix::fs::fcntl_setfl(&tap, fl | rustix::fs::OFlags::NONBLOCK).unwrap();
    let mut tap = std::fs::File::from(tap);

    let _ping = Reap(
        Command::new("nsenter")
            .arg(format!("--net={}", m.display()))
            .args(["ping", "-c1", "-W2", "10.77.0.2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // veth-b's ARP request for 10.77.0.2 comes in on veth-a and out of the
    // tap: ethertype 0x0806, opcode 1, target 10.77.0.2.
    let arp = frame_matching(&mut tap, |f| {
        f.len() >= 42
            && f[12..14] == [0x08, 0x06]
            && f[20..22] == [0, 1]
            && f[38..42] == [10, 77, 0, 2]
    })
    .expect("no ARP request for 10.77.0.2 read from the tap");
    assert_eq!(arp[28..32], [10, 77, 0, 1]);

    // The other way: a reply written to the tap leaves through veth-a, so
    // the peer learns our MAC and sends its echo request to it, back
    // through the tap.
    let guest_mac = [0x02, 0x00, 0x00, 0x77, 0x00, 0x02];
    let peer_mac = &arp[22..28];
    let mut reply = Vec::new();
    reply.extend_from_slice(peer_mac);
    reply.extend_from_slice(&guest_mac);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    reply.extend_from_slice(&guest_mac);
    reply.extend_from_slice(&[10, 77, 0, 2]);
    reply.extend_from_slice(peer_mac);
    reply.extend_from_slice(&[10, 77, 0, 1]);
    tap.write_all(&reply).unwrap();
    frame_matching(&mut tap, |f| {
        f.len() >= 34
            && f[..6] == guest_mac
            && f[12..14] == [0x08, 0x00]
            && f[23] == 1 // ICMP
            && f[30..34] == [10, 77, 0, 2]
    })
    .expect("no ICMP echo request to the guest's MAC read from the tap");
}
