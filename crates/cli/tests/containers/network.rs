//! Networks: the default bridge, published ports, containers reaching each
//! other, user-made networks; nothing left on the host afterwards.

use crate::env::*;

/// iptables rules (no counters) that mention `needle`.
fn rules_with(needle: &str) -> Vec<String> {
    let out = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A") && l.contains(needle))
        .map(String::from)
        .collect()
}

fn ip_of(env: &Env, c: &str) -> String {
    let i = env.inspect(c);
    i["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn an_http_server_is_reached_through_a_published_port() {
    require!("curl");
    let env = Env::new();
    let port = free_tcp_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = env.run_d(
        &["--name", "web", "-p", &publish],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    assert_eq!(
        env.ok(&["port", "web"]).trim(),
        format!("80/tcp -> 127.0.0.1:{port}")
    );
    let url = format!("http://127.0.0.1:{port}/index.html");
    let mut body = String::new();
    wait_for("the server to answer", || {
        let out = std::process::Command::new("curl")
            .args(["-sf", "--max-time", "2", &url])
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    assert_eq!(body, "hello from berth\n");
    let ip = ip_of(&env, "web");
    assert!(!rules_with(&ip).is_empty(), "no rules for {ip}?");
    env.ok(&["rm", "-f", "web"]);
    assert!(
        rules_with(&ip).is_empty(),
        "rules remain: {:?}",
        rules_with(&ip)
    );
    assert!(rules_with(&format!("--dport {port}")).is_empty());
    assert!(
        std::fs::read_dir(env.runroot().join("netns"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "a netns pin remains"
    );
    assert_gone(&env, &id);
}

#[test]
fn containers_on_one_network_reach_each_other() {
    let env = Env::new();
    let sub = format!("10.77.{}.0/24", 150 + std::process::id() % 50);
    let net = format!("n{}", std::process::id());
    env.ok(&["network", "create", "--subnet", &sub, &net]);
    assert!(env.ok(&["network", "ls"]).contains(&net));
    env.run_d(
        &["--name", "server", "--network", &net],
        &["httpd", "-f", "-p", "8080", "-h", "/www"],
    );
    let ip = ip_of(&env, "server");
    assert!(ip.starts_with(&sub[..sub.len() - 4]), "{ip} not in {sub}");
    // busybox's nc (its wget crashes under static glibc here).
    let get = format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 8080");
    let mut out = String::new();
    wait_for("the server to answer", || {
        let o = env.berth(&[
            "run",
            "--rm",
            "--network",
            &net,
            &env.image,
            "sh",
            "-c",
            &get,
        ]);
        out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.contains("hello from berth")
    });
    assert!(
        out.starts_with("HTTP/1.") && out.ends_with("hello from berth\n"),
        "{out}"
    );
    // Its own name in its /etc/hosts.
    let hosts = env.ok(&["exec", "server", "cat", "/etc/hosts"]);
    assert!(
        hosts.contains(&format!("{ip}\t")) && hosts.contains("server"),
        "{hosts}"
    );
    let (_, err) = env.code(2, &["network", "rm", &net]);
    assert!(err.contains("in use") && err.contains("server"), "{err}");
    env.ok(&["rm", "-f", "server"]);
    env.ok(&["network", "rm", &net]);
    assert!(!env.ok(&["network", "ls"]).contains(&net));
    assert!(rules_with(&sub).is_empty(), "{:?}", rules_with(&sub));
}

#[test]
fn host_none_and_container_network_modes() {
    let env = Env::new();
    // The host's default-route interface is there in host mode (other
    // tests add and remove veths meanwhile: compare one name, not all).
    let route = std::fs::read_to_string("/proc/net/route").unwrap();
    let uplink = route
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1) == Some("00000000"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("lo")
        .to_string();
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        &env.image,
        "cat",
        "/proc/net/dev",
    ]);
    assert!(
        out.contains(&format!("{uplink}:")),
        "host mode sees {uplink}: {out}"
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &env.image,
        "cat",
        "/proc/net/dev",
    ]);
    assert!(!out.contains("eth0") && out.contains("lo:"), "{out}");
    env.run_d(&["--name", "owner"], &["sleep", "1000"]);
    let ip = ip_of(&env, "owner");
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "container:owner",
        &env.image,
        "ip",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(out.contains(&ip), "{out}");
    env.code(
        125,
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "-p",
            "8080:80",
            &env.image,
            "true",
        ],
    );
    env.code(
        125,
        &[
            "run",
            "--rm",
            "--network",
            "no-such-net",
            &env.image,
            "true",
        ],
    );
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn containers_on_a_user_network_find_each_other_by_name() {
    let env = Env::new();
    let net = format!("names{}", std::process::id());
    env.ok(&["network", "create", &net]);
    let web = env.run_d(
        &["--name", "web", "--network", &net],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let client = env.run_d(&["--name", "client", "--network", &net], &["sleep", "1000"]);
    let lone = env.run_d(&["--name", "lone"], &["sleep", "1000"]);
    let hosts = |id: &str| env.ok(&["exec", id, "cat", "/etc/hosts"]);
    let ip_of = |id: &str| {
        env.inspect(id)["NetworkSettings"]["Networks"][&net]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Each sees the other, added when the second one started.
    assert!(
        hosts(&client).contains(&format!("{}\tweb", ip_of(&web))),
        "{}",
        hosts(&client)
    );
    assert!(
        hosts(&web).contains(&format!("{}\tclient", ip_of(&client))),
        "{}",
        hosts(&web)
    );
    let page = env.ok(&["exec", &client, "wget", "-qO-", "http://web/"]);
    assert!(page.contains("hello from berth"), "{page}");
    // The default network resolves no names (docker's rule).
    assert!(!hosts(&lone).contains("web"), "{}", hosts(&lone));
    // A stopped peer goes from the others' files.
    env.ok(&["stop", "-t", "1", &web]);
    assert!(!hosts(&client).contains("\tweb"), "{}", hosts(&client));
    env.ok(&["start", &web]);
    assert!(
        hosts(&client).contains(&format!("{}\tweb", ip_of(&web))),
        "{}",
        hosts(&client)
    );
    for id in [&web, &client, &lone] {
        env.ok(&["rm", "-f", id]);
    }
    env.ok(&["network", "rm", &net]);
}

#[test]
fn a_running_container_connects_to_and_disconnects_from_networks() {
    let env = Env::new();
    let net = format!("conn{}", std::process::id());
    env.ok(&["network", "create", &net]);
    let peer = env.run_d(
        &["--name", "peer", "--network", &net],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let app = env.run_d(&["--name", "app"], &["sleep", "1000"]);
    let links = |id: &str| env.ok(&["exec", id, "ip", "-o", "addr"]);
    assert!(!links(&app).contains("eth1"), "{}", links(&app));
    env.ok(&["network", "connect", &net, &app]);
    // A second interface at once, and the peer by name through it.
    assert!(links(&app).contains("eth1"), "{}", links(&app));
    let page = env.ok(&["exec", &app, "wget", "-qO-", "http://peer/"]);
    assert!(page.contains("hello from berth"), "{page}");
    let v = env.inspect(&app);
    assert!(
        v["NetworkSettings"]["Networks"][&net]["IPAddress"].is_string(),
        "{v}"
    );
    let (_, err) = env.code(125, &["network", "connect", &net, &app]);
    assert!(err.contains("already connected"), "{err}");
    // Removing the network is refused while the container uses it.
    let (_, err) = env.code(2, &["network", "rm", &net]);
    assert!(err.contains("in use"), "{err}");

    env.ok(&["network", "disconnect", &net, &app]);
    assert!(!links(&app).contains("eth1"), "{}", links(&app));
    assert!(
        !env.ok(&["exec", &app, "cat", "/etc/hosts"])
            .contains("peer")
    );
    let (_, err) = env.code(125, &["network", "disconnect", &net, &app]);
    assert!(err.contains("not connected"), "{err}");
    // Its first network still works, and a stop and start keep the change.
    env.ok(&["restart", "-t", "1", &app]);
    assert!(links(&app).contains("eth0") && !links(&app).contains("eth1"));
    let (_, err) = env.code(125, &["network", "connect", &net, "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    for id in [&peer, &app] {
        env.ok(&["rm", "-f", id]);
    }
    env.ok(&["network", "rm", &net]);
}
