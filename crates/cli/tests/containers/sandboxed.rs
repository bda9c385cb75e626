//! gVisor's runsc as a runtime (`--runtime runsc`): every network mode,
//! exec, logs, stop, rm and stats, observed from inside (gVisor's own
//! kernel answers `uname -r`) and from the host (a published port).

use crate::env::{Env, wait_for};
use crate::support::free_port;

/// The kernel release the host runs.
fn host_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn runsc_runs_containers_on_every_network_mode() {
    require!("runsc");
    let env = Env::new();
    let host = host_release();
    for net in ["bridge", "none", "host"] {
        let out = env.ok(&[
            "run",
            "--rm",
            "--runtime",
            "runsc",
            "--network",
            net,
            &env.image,
            "sh",
            "-c",
            "uname -r; cat /proc/net/dev | wc -l",
        ]);
        let release = out.lines().next().unwrap_or_default();
        assert!(
            !release.is_empty() && release != host,
            "{net}: gVisor's kernel answers, not the host's {host}: {out}"
        );
    }
    // A published port reaches a server in the sandbox, on the bridge.
    let port = free_port();
    let id = env.run_d(
        &[
            "--runtime",
            "runsc",
            "--name",
            "web",
            "-p",
            &format!("127.0.0.1:{port}:80"),
        ],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let url = format!("http://127.0.0.1:{port}/index.html");
    wait_for("the sandboxed server to answer", || {
        std::process::Command::new("curl")
            .args(["-sf", "--max-time", "2", &url])
            .output()
            .is_ok_and(|o| o.stdout == b"hello from berth\n")
    });
    // exec and logs through runsc; stats from its events.
    let seen = env.ok(&["exec", "web", "sh", "-c", "uname -r"]);
    assert_ne!(seen.trim(), host);
    env.ok(&["exec", "web", "sh", "-c", "echo to-the-log > /proc/1/fd/1"]);
    wait_for("the log line", || {
        env.ok(&["logs", "web"]).contains("to-the-log")
    });
    let stats = env.berth(&["stats", "--no-stream", "--format", "{{.Name}}", "web"]);
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&stats.stdout).trim(), "web");
    env.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(env.status("web"), "exited");
    env.ok(&["rm", &id]);
    crate::env::assert_gone(&env, &id);
}

#[test]
fn runtime_flags_reach_the_runtime() {
    require!("runsc");
    let env = Env::new();
    // An unknown platform is runsc's error, named: the flag reached it.
    let (_, err) = env.code(
        125,
        &[
            "run",
            "--rm",
            "--runtime",
            "runsc",
            "--runtime-flag",
            "platform=nosuchplatform",
            &env.image,
            "true",
        ],
    );
    assert!(err.contains("nosuchplatform"), "{err}");
    // The builtin runtime takes none.
    let (_, err) = env.code(
        125,
        &["run", "--rm", "--runtime-flag", "debug", &env.image, "true"],
    );
    assert!(err.contains("the builtin runtime takes no flags"), "{err}");
    assert_eq!(
        env.ids(),
        Vec::<String>::new(),
        "a refused run leaves no container"
    );
}
