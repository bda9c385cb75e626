//! Pods: containers sharing network, ipc and uts namespaces held by
//! berth's own infra process.

use crate::env::*;

fn ns(pid: i64, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn a_pods_containers_share_its_namespaces_and_go_with_it() {
    let env = Env::new();
    let pod = env
        .ok(&["pod", "create", "--name", "p1", "--hostname", "podhost"])
        .trim()
        .to_string();
    assert_eq!(pod.len(), 64);
    env.ok(&[
        "run", "-d", "--pod", "p1", "--name", "a", &env.image, "httpd", "-f", "-p", "8080", "-h",
        "/www",
    ]);
    env.ok(&[
        "run", "-d", "--pod", "p1", "--name", "b", &env.image, "sleep", "1000",
    ]);
    let (pa, pb) = (
        env.inspect("a")["State"]["Pid"].as_i64().unwrap(),
        env.inspect("b")["State"]["Pid"].as_i64().unwrap(),
    );
    for kind in ["net", "ipc", "uts"] {
        assert_eq!(ns(pa, kind), ns(pb, kind), "{kind} differs");
    }
    assert_ne!(ns(pa, "pid"), ns(pb, "pid"));
    assert_eq!(env.ok(&["exec", "b", "hostname"]).trim(), "podhost");
    // b reaches a's server on localhost: one network namespace.
    let get = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 8080";
    let mut out = String::new();
    wait_for("a's server to answer b", || {
        out = String::from_utf8_lossy(&env.berth(&["exec", "b", "sh", "-c", get]).stdout)
            .into_owned();
        out.contains("hello from berth")
    });
    let ps = env.ok(&["pod", "ps"]);
    assert!(
        ps.contains("p1") && ps.contains("Running") && ps.contains(" 2"),
        "{ps}"
    );

    env.ok(&["pod", "stop", "-t", "1", "p1"]);
    assert_eq!(env.status("a"), "exited");
    assert!(env.ok(&["pod", "ps"]).contains("Exited"));
    env.ok(&["pod", "start", "p1"]);
    assert_eq!(env.status("b"), "running");
    let (_, err) = env.code(125, &["pod", "rm", "p1"]);
    assert!(err.contains("running"), "{err}");
    env.ok(&["pod", "rm", "-f", "p1"]);
    assert!(env.ids().is_empty());
    assert!(!env.ok(&["pod", "ps"]).contains("p1"));
    // The infra process (its command line names the pod's netns pin) and
    // the pin are gone.
    let pin = format!("berth-{}", &pod[..12]);
    assert!(processes_with(&pin).is_empty(), "the infra process remains");
    assert!(
        !env.runroot().join("netns").join(&pin).exists(),
        "the pin remains"
    );
}

#[test]
fn a_pod_can_share_one_pid_namespace_whose_init_reaps_and_stops() {
    let env = Env::new();
    env.ok(&[
        "pod",
        "create",
        "--name",
        "sp",
        "--network",
        "none",
        "--share",
        "+pid",
    ]);
    let a = env.run_d(&["--pod", "sp", "--name", "a"], &["sleep", "1000"]);
    // The other container sees the first one's process, and the pod's
    // init as pid 1.
    let out = env.ok(&[
        "run", "--rm", "--pod", "sp", &env.image, "ps", "-o", "pid,args",
    ]);
    assert!(out.contains("sleep 1000"), "{out}");
    let first = out.lines().nth(1).unwrap_or_default();
    assert!(
        first.trim_start().starts_with("1 ") && first.contains("pod infra"),
        "{out}"
    );
    // An orphan left in the pod is reaped by its init, not left a zombie.
    env.ok(&["exec", "a", "sh", "-c", "sleep 0.1 & exit 0"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let zombies = env.ok(&[
        "exec",
        "a",
        "sh",
        "-c",
        "grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l",
    ]);
    assert_eq!(zombies.trim(), "0", "zombies in the pod");
    let t = std::time::Instant::now();
    env.ok(&["pod", "stop", "-t", "1", "sp"]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "the pod's init took {:?} to stop",
        t.elapsed()
    );
    env.ok(&["pod", "rm", "-f", "sp"]);
    assert_gone(&env, &a);
    // This env's infra only: other berths on the host may have pods too.
    let infra: Vec<i32> = processes_with("--share-pid")
        .into_iter()
        .filter(|&pid| processes_with(&env.runroot().to_string_lossy()).contains(&pid))
        .collect();
    assert!(infra.is_empty(), "the pod's infra remains: {infra:?}");
}
